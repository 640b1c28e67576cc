"""The slice contract: lifecycle, health, schemas, idempotent migrations, bad payloads refused, fast import."""

from __future__ import annotations

from typing import Any, ClassVar

from refactorbot.testing import SliceContract
from refactorbot_slice_scheduling.slice import SchedulingSlice

OP = {"type": "operation", "operation": "memory.prune"}


class TestSchedulingContract(SliceContract):
    slice_class = SchedulingSlice
    plugin = "refactorbot_slice_scheduling.plugin"
    config: ClassVar[dict[str, Any]] = {
        "core": {"health_interval": 3600, "timezone": "UTC"},
        "slices": {"scheduling": {"alerts_every": 0, "diagnostics_every": 0, "heartbeat_every": 0}},
    }
    valid_payloads: ClassVar[dict[str, dict[str, Any]]] = {
        "add": {"name": "nightly", "cron": "30 2 * * *", "tz": "Europe/Berlin", "target": OP},
        "list": {},
        "show": {"name": "nightly"},
        "pause": {"name": "nightly"},
        "resume": {"name": "nightly"},
        "history": {"name": "nightly", "limit": 5},
        "timeline": {"hours": 2},
        "status": {},
        "alerts": {"state": "firing"},
        "check_alerts": {},
        "diagnostics": {},
        "remove": {"name": "nightly"},
    }
    invalid_payloads: ClassVar[dict[str, list[dict[str, Any]]]] = {
        "add": [
            {"name": "Bad Name", "cron": "* * * * *", "target": OP},
            {"name": "x", "target": OP},
            {"name": "x", "cron": "* * * * *", "every": "5m", "target": OP},
            {"name": "x", "cron": "* * * * *", "target": {"type": "operation", "operation": "nodot"}},
            {"name": "x", "cron": "* * * * *", "target": {"type": "shell", "command": "rm -rf /"}},
            {"name": "x", "cron": "* * * * *", "target": OP, "misfire": "sometimes"},
            {"name": "x", "cron": "* * * * *", "target": OP, "retries": 11},
            {"name": "x", "cron": "* * * * *", "target": {"type": "prompt", "prompt": "hi", "channel": "loop"}},
            {"name": "x", "cron": "* * * * *", "target": {"type": "message", "channel": "loop", "chat_id": "c"}},
            {"name": "x", "cron": "* * * * *", "target": {"type": "workflow", "steps": []}},
            {"name": "x", "cron": "* * * * *", "target": OP, "colour": "red"},
        ],
        "history": [{"name": "x", "limit": 0}, {"name": "x", "status": "exploded"}],
        "timeline": [{"hours": 0}, {"hours": 1000}],
        "alerts": [{"state": "angry"}],
    }
