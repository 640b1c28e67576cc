"""The slice contract: lifecycle, health, schemas, idempotent migrations, bad payloads refused, fast import."""

from __future__ import annotations

from typing import Any, ClassVar

from refactorbot.testing import SliceContract
from refactorbot_slice_refactory.slice import RefactorySlice


class TestRefactoryContract(SliceContract):
    slice_class = RefactorySlice
    plugin = "refactorbot_slice_refactory.plugin"
    valid_payloads: ClassVar[dict[str, dict[str, Any]]] = {
        "list_requests": {"limit": 10},
        "list_tasks": {"state": "queued", "agent": "coder1", "limit": 5},
    }
    invalid_payloads: ClassVar[dict[str, list[dict[str, Any]]]] = {
        "create_request": [
            {"title": "", "repo": "/tmp"},
            {"title": "t", "repo": ""},
            {"title": "t", "repo": "/tmp", "target_branch": "-evil"},
            {"title": "t", "repo": "/tmp", "target_branch": "a..b"},
            {"title": "t", "repo": "/tmp", "test_command": "unbalanced 'quote"},
            {"title": "t", "repo": "/tmp", "test_command": []},
            {"title": "t", "repo": "/tmp", "unknown": 1},
        ],
        "create_plan": [{"request_id": 0}, {"request_id": 1, "planner": "oracle"}],
        "orchestrate": [
            {"plan_id": 1, "agents": 0},
            {"plan_id": 1, "agents": 33},
            {"plan_id": 1, "coders": "remote"},
            {"plan_id": 1, "target_branch": "refs/../x"},
        ],
        "list_tasks": [{"state": "done"}, {"agent": "Coder 1"}, {"limit": 0}],
        "claim_task": [{"id": 1, "agent": "../coder"}],
        "report_pr": [{"agent": "coder1", "task_id": 1, "summary": "x" * 20_001}],
    }
