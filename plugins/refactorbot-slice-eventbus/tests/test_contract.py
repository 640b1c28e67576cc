"""The slice contract: lifecycle, health, schemas, migrations, bad payloads refused, fast import."""

from __future__ import annotations

from typing import Any, ClassVar

from refactorbot.testing import SliceContract
from refactorbot_slice_eventbus.slice import EventBusSlice


class TestEventBusContract(SliceContract):
    slice_class = EventBusSlice
    plugin = "refactorbot_slice_eventbus.plugin"
    valid_payloads: ClassVar[dict[str, dict[str, Any]]] = {
        "publish": {"topic": "notes.added", "payload": {"id": 1}},
        "stats": {"seconds": 60},
        "events": {"limit": 10, "topic": "notes.*"},
        "dead_letters": {"status": "all"},
        "requeue": {"all": True},
        "discard": {"subscriber": "x.y"},
        "retention": {},
    }
    invalid_payloads: ClassVar[dict[str, list[dict[str, Any]]]] = {
        "publish": [
            {"topic": ""},
            {"topic": "has space"},
            {"topic": "x" * 201},
            {"topic": "ok", "payload": [1]},
            {"topic": "ok", "extra": 1},
        ],
        "stats": [{"seconds": 0}, {"seconds": 3601}],
        "events": [{"limit": 0}, {"limit": 501}, {"after": -1}],
        "dead_letters": [{"status": "gone"}, {"before_id": 0}, {"subscriber": "a\nb"}],
        "requeue": [{}, {"all": True, "ids": [1]}, {"ids": [0]}],
        "replay": [{"subscriber": "s", "from_offset": 0}, {"subscriber": ""}],
        "forget": [{}],
    }
