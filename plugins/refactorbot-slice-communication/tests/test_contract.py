"""The slice contract: lifecycle, health, schemas, idempotent migrations, bad payloads refused, fast import."""

from __future__ import annotations

from typing import Any, ClassVar

from refactorbot.testing import SliceContract
from refactorbot_slice_communication.slice import CommunicationSlice


class TestCommunicationContract(SliceContract):
    slice_class = CommunicationSlice
    plugin = "refactorbot_slice_communication.plugin"
    valid_payloads: ClassVar[dict[str, dict[str, Any]]] = {
        "channels": {},
        "status": {},
        "messages": {"limit": 10, "direction": "in"},
        "traffic": {"minutes": 30},
        "pairing_list": {"status": "all"},
        "template_set": {"name": "greeting", "body": "Hello $name"},
        "template_list": {},
        "template_delete": {"name": "greeting"},
    }
    invalid_payloads: ClassVar[dict[str, list[dict[str, Any]]]] = {
        "send": [
            {"channel": "Webhook!", "chat_id": "c", "text": "x"},
            {"channel": "webhook", "chat_id": "", "text": "x"},
            {"channel": "webhook", "chat_id": "c"},
            {"channel": "webhook", "chat_id": "c", "text": "x", "template": "t"},
            {"channel": "webhook", "chat_id": "c", "text": "x", "variables": {"a": "b"}},
            {"channel": "webhook", "chat_id": "c", "text": "x" * 100_001},
        ],
        "messages": [{"limit": 0}, {"limit": 501}, {"before_id": 0}, {"status": "DROP TABLE"}],
        "pairing_approve": [{"code": "short"}, {"code": "ABCD-EFG1"}, {"code": "ABCD-EFGH-IJKL-MNOP-QRST-UVWX-YZ23"}],
        "template_set": [
            {"name": "Bad Name", "body": "x"},
            {"name": "ok", "body": ""},
            {"name": "ok", "body": "costs $5"},
            {"name": "ok", "body": "x", "unknown": 1},
        ],
        "traffic": [{"minutes": 0}, {"minutes": 10_081}],
    }
