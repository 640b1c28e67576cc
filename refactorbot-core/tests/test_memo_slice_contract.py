"""``SliceContract`` run against ``memo`` (tests/memo_slice.py), a slice with its own database."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from memo_slice import Memo
from refactorbot.testing import SliceContract, host_running

HERE = str(Path(__file__).parent)


class TestMemoSliceContract(SliceContract):
    slice_class = Memo
    plugin = "memo_slice"
    valid_payloads = {"add": {"text": "buy milk"}, "recent": {"limit": 5}}
    invalid_payloads = {"add": [{"text": "x" * 501}], "recent": [{"limit": 0}, {"limit": "many"}]}

    @pytest.fixture(autouse=True)
    def importable(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The import-cost check imports the plugin in a fresh interpreter: it finds it on PYTHONPATH."""
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH", "")) if p))


@pytest.mark.asyncio
async def test_notes_outlive_the_host(tmp_path: Path) -> None:
    config = {"core": {"health_interval": 3600}}
    async with host_running(tmp_path, ["memo_slice"], config=config) as host:
        added = await host.call("memo.add", text="call Ann")
        assert added.success and added.data == {"id": 1, "text": "call Ann"}
    async with host_running(tmp_path, ["memo_slice"], config=config) as host:
        listed = await host.call("memo.recent")
        assert listed.data == [{"id": 1, "text": "call Ann"}]
