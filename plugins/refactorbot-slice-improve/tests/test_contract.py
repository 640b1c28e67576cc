"""The slice contract: lifecycle, health, schemas, idempotent migrations, bad payloads refused, fast import."""

from __future__ import annotations

from typing import Any, ClassVar

from refactorbot.testing import SliceContract
from refactorbot_slice_improve.slice import ImproveSlice


class TestImproveContract(SliceContract):
    slice_class = ImproveSlice
    plugin = "refactorbot_slice_improve.plugin"
    config: ClassVar[dict[str, Any]] = {"core": {"health_interval": 3600}}
    valid_payloads: ClassVar[dict[str, dict[str, Any]]] = {
        "run_cycle": {"slice_id": "improve", "trigger": "contract"},
        "cycles": {"limit": 5},
        "changes": {"status": "pending"},
        "audit": {"limit": 10},
        "evaluate": {},
        "overrides": {},
    }
    invalid_payloads: ClassVar[dict[str, list[dict[str, Any]]]] = {
        "run_cycle": [{"slice_id": "../x"}, {"slice_id": "flaky", "trigger": "Bad Trigger"}, {}],
        "approve": [{"id": 0}, {"id": 1, "by": ""}, {"id": 1, "colour": "red"}],
        "reject": [{}],
        "changes": [{"status": "exploded"}, {"limit": 0}],
        "evaluate": [{"id": -1}],
        "show": [{"id": "one"}],
    }
