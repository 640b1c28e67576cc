"""GET /logs?contains=: rows whose message contains a text, combined with the other filters and paging."""

from __future__ import annotations

import time

import pytest
from api_sample import Served

pytestmark = pytest.mark.asyncio


async def test_logs_contains_filters_messages(served: Served) -> None:
    base = time.time() - 100
    rows = [
        (base + i, 40 if i % 2 else 20, "ERROR" if i % 2 else "INFO", "sample", "refactorbot.test", text)
        for i, text in enumerate(
            ["disk FULL on /var", "all good", "Disk full again", "100% done", "quota: disk full", "it's 50%_off"]
        )
    ]
    async with (await served.host.master_db()).transaction() as conn:
        await conn.executemany(
            "INSERT INTO logs (ts, level, level_name, slice_id, logger, message) VALUES (?, ?, ?, ?, ?, ?)", rows
        )

    async def messages(**params: object) -> list[str]:
        page = (await served.client.get("/logs", params={"since": base - 1, **params})).json()
        return [item["message"] for item in page["items"]]

    assert await messages(contains="disk full") == ["quota: disk full", "Disk full again", "disk FULL on /var"]
    assert await messages(contains="disk full", level="ERROR") == []
    assert await messages(contains="Full", level="INFO") == ["quota: disk full", "Disk full again", "disk FULL on /var"]
    assert await messages(contains="%") == ["it's 50%_off", "100% done"]  # no wildcards: the text itself
    assert await messages(contains="_") == ["it's 50%_off"]
    first = (await served.client.get("/logs", params={"contains": "disk", "limit": 2, "since": base - 1})).json()
    assert [i["message"] for i in first["items"]] == ["quota: disk full", "Disk full again"]
    rest = (
        await served.client.get(
            "/logs", params={"contains": "disk", "since": base - 1, "before_id": first["next_before_id"]}
        )
    ).json()
    assert [i["message"] for i in rest["items"]] == ["disk FULL on /var"] and rest["next_before_id"] is None
    for bad in ("", "x" * 201):
        refused = await served.client.get("/logs", params={"contains": bad})
        assert refused.status_code == 422 and "contains" in refused.json()["detail"]
