from __future__ import annotations

from refactorbot.testing import SliceContract
from refactorbot_example_notes.slice import NotesSlice


class TestNotesContract(SliceContract):
    slice_class = NotesSlice
    plugin = "refactorbot_example_notes.plugin"
    # Run in this order on one host: `complete` and `delete` find the note `add` created.
    valid_payloads = {
        "add": {"title": "Buy milk", "body": "two litres", "tags": ["home"]},
        "list": {"done": False, "tag": "home", "limit": 5},
        "search": {"query": "milk"},
        "complete": {"id": 1},
        "delete": {"id": 1},
    }
    invalid_payloads = {
        "add": [
            {"title": ""},
            {"title": "   "},
            {"title": "x" * 201},
            {"title": "ok", "body": "b" * 10_001},
            {"title": "ok", "tags": ["not a tag"]},
            {"title": "ok", "tags": [f"t{i}" for i in range(21)]},
            {"title": "ok", "list_name": "../etc"},
            {"title": "ok", "colour": "red"},
        ],
        "list": [{"limit": 0}, {"limit": 501}, {"offset": -1}, {"done": "maybe"}],
        "search": [{"query": ""}, {"query": "q" * 201}],
        "complete": [{"id": 0}, {"id": "one"}],
        "delete": [{}],
    }
