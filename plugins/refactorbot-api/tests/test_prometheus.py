"""GET /metrics/prometheus: the text format, parsed by prometheus_client's own parser; bearer or scrape token."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import api_sample
import httpx
import pytest
import pytest_asyncio
import refactorbot_api.plugin
from prometheus_client.parser import text_string_to_metric_families
from refactorbot.testing import host_running

pytestmark = pytest.mark.asyncio

SCRAPE_ENV = "RB_TEST_SCRAPE_TOKEN"
SCRAPE = "scrape-only-token-for-the-tests"


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Any, str, str]]:
    config = {"core": {"health_interval": 3600}, "plugins": {"api": {"port": 0, "scrape_token_env": SCRAPE_ENV}}}
    env = {SCRAPE_ENV: SCRAPE}
    async with host_running(tmp_path, [api_sample, refactorbot_api.plugin], config=config, env=env) as host:
        url = json.loads((tmp_path / "server.json").read_text())["url"]
        yield host, url, (tmp_path / "api-token").read_text().strip()


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(family: Any, name: str, **labels: str) -> list[float]:
    return [s.value for s in family.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


async def test_prometheus_text_parses_with_operations_histograms_and_slices(served: tuple[Any, str, str]) -> None:
    host, url, token = served
    for i in range(3):
        assert (await host.call("sample.add", title=f"n{i}")).success
    assert not (await host.call("sample.fail")).success
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        answer = await client.get("/metrics/prometheus", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    parsed = families(answer.text)

    ops = parsed["refactorbot_operations"]
    assert ops.type == "counter"
    assert samples(ops, "refactorbot_operations_total", slice="sample", operation="add", outcome="success") == [3.0]
    assert samples(ops, "refactorbot_operations_total", slice="sample", operation="fail", outcome="error") == [1.0]
    latency = parsed["refactorbot_operation_duration_seconds"]
    assert latency.type == "histogram"
    name = "refactorbot_operation_duration_seconds"
    buckets = [s for s in latency.samples if s.name == name + "_bucket" and s.labels["operation"] == "add"]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts) and buckets[-1].labels["le"] == "+Inf" and counts[-1] == 3.0
    assert samples(latency, name + "_count", slice="sample", operation="add") == [3.0]
    assert samples(latency, name + "_sum", slice="sample", operation="add")[0] > 0

    assert samples(parsed["refactorbot_slice_up"], "refactorbot_slice_up", slice="sample") == [1.0]
    assert samples(parsed["refactorbot_bus_queued_events"], "refactorbot_bus_queued_events") == [0.0]
    assert "refactorbot_llm_tokens" in parsed and "refactorbot_tool_calls" in parsed

    await host.stop_slice("sample")
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        again = families((await client.get("/metrics/prometheus", headers={"Authorization": f"Bearer {token}"})).text)
    assert samples(again["refactorbot_slice_up"], "refactorbot_slice_up", slice="sample") == [0.0]
    assert samples(again["refactorbot_slice_state"], "refactorbot_slice_state", slice="sample", state="stopped") == [
        1.0
    ]


async def test_the_scrape_token_opens_only_the_scrape(served: tuple[Any, str, str]) -> None:
    _, url, token = served
    scrape = {"Authorization": f"Bearer {SCRAPE}"}
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        assert (await client.get("/metrics/prometheus", headers=scrape)).status_code == 200
        assert (await client.get("/metrics", headers=scrape)).status_code == 401
        assert (await client.get("/slices", headers=scrape)).status_code == 401
        assert (await client.get("/metrics/prometheus")).status_code == 401
        wrong = await client.get("/metrics/prometheus", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and SCRAPE not in wrong.text
        unknown = await client.get("/metrics/prometheus?x=1", headers={"Authorization": f"Bearer {token}"})
        assert unknown.status_code == 422
