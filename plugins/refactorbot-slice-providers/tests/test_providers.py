"""Cost per call, budgets, key checks and routing through a real host, gateway and HTTP server."""

from __future__ import annotations

import logging
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from providers_setup import KEY, KEY_ENV, LOOPBACK, PLUGIN, home_with, providers_config
from refactorbot import ErrorType, LLMCall, LLMCallRefused
from refactorbot.testing import host_running
from refactorbot.testing.model_server import ModelServer, Reply


def ask(text: str = "hi", model: str = "loop/cheap", slice_id: str | None = "agent") -> LLMCall:
    return LLMCall(model=model, messages=[{"role": "user", "content": text}], slice_id=slice_id)


def rows(home: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(home / "slices" / "providers.db") as conn:
        return conn.execute(sql).fetchall()


@pytest.mark.asyncio
async def test_cost_from_price_table_and_from_gateway(server: ModelServer, tmp_path: Path) -> None:
    server.script(Reply.text("a", usage=(1000, 500)), Reply.text("b", usage=(10, 10), cost=0.125))
    home = home_with(tmp_path, providers_config(server))
    async with host_running(home, [PLUGIN, LOOPBACK]) as host:
        await host.complete(ask())
        await host.complete(ask(model="loop/strong", slice_id="memory"))
        report = (await host.call("providers.spend", group_by=["slice", "model"])).data
    by_slice = {r["slice_id"]: r for r in report["rows"]}
    assert by_slice["agent"]["cost_usd"] == pytest.approx((1000 * 1.0 + 500 * 2.0) / 1e6)
    assert by_slice["memory"]["cost_usd"] == pytest.approx(0.125)  # the gateway's figure wins
    assert report["total_usd"] == pytest.approx(0.002 + 0.125)
    assert report["calls"] == 2
    logged = rows(
        home, "SELECT slice_id, model, gateway, prompt_tokens, cost_source, success FROM llm_calls ORDER BY id"
    )
    assert logged == [
        ("agent", "loop/cheap", "loopback", 1000, "price_table", 1),
        ("memory", "loop/strong", "loopback", 10, "gateway", 1),
    ]
    assert rows(home, "SELECT MIN(latency_ms) > 0 FROM llm_calls") == [(1,)]


@pytest.mark.asyncio
async def test_overall_daily_budget_refuses_before_any_request(server: ModelServer, tmp_path: Path) -> None:
    server.script(Reply.text("costly", usage=(2000, 0)))
    home = home_with(tmp_path, providers_config(server, budgets={"overall": {"daily_usd": 0.002}}))
    async with host_running(home, [PLUGIN, LOOPBACK]) as host:
        events: list[Any] = []
        host.bus.subscribe("providers.*", events.append)
        await host.complete(ask())  # spend 0.002: the cap is now reached
        with pytest.raises(LLMCallRefused, match=r"budget exceeded: all calls together spent \$0.0020 today"):
            await host.complete(ask(slice_id="other"))
        status = (await host.call("providers.get_budgets")).data
    assert len(server.requests) == 1
    assert rows(home, "SELECT COUNT(*) FROM llm_calls") == [(1,)]
    assert status == [
        {
            "slice_id": None,
            "daily_usd": 0.002,
            "monthly_usd": None,
            "spent_today_usd": pytest.approx(0.002),
            "spent_month_usd": pytest.approx(0.002),
            "exceeded": True,
        }
    ]
    assert [e.topic for e in events] == ["providers.budget_exceeded"]


@pytest.mark.asyncio
async def test_slice_budget_set_by_operation_only_limits_that_slice(server: ModelServer, tmp_path: Path) -> None:
    home = home_with(tmp_path, providers_config(server))
    async with host_running(home, [PLUGIN, LOOPBACK]) as host:
        set_ = await host.call("providers.set_budget", slice_id="agent", monthly_usd=0.5)
        assert set_.success and set_.data["exceeded"] is False
        await host.call("providers.record_call", model="loop/strong", slice_id="agent", cost_usd=0.5)
        before = len(server.requests)
        with pytest.raises(LLMCallRefused, match="slice 'agent' spent \\$0.5000 this month, monthly cap \\$0.50"):
            await host.complete(ask(slice_id="agent"))
        assert len(server.requests) == before
        answer = await host.complete(ask("still fine", slice_id="memory"))
        assert answer.content == "echo: still fine"
        cleared = await host.call("providers.set_budget", slice_id="agent")
        assert cleared.data["daily_usd"] is None and cleared.data["monthly_usd"] is None
        await host.complete(ask(slice_id="agent"))
    # an operation's budget survives a restart; configured ones are re-applied from the file
    async with host_running(home, [PLUGIN, LOOPBACK]) as host:
        await host.call("providers.set_budget", slice_id="memory", daily_usd=3.0)
    async with host_running(home, [PLUGIN, LOOPBACK]) as host:
        budgets = (await host.call("providers.get_budgets")).data
    assert [(b["slice_id"], b["daily_usd"]) for b in budgets] == [("memory", 3.0)]


@pytest.mark.asyncio
async def test_unknown_model_in_strict_mode_refused_nothing_written(server: ModelServer, tmp_path: Path) -> None:
    home = home_with(tmp_path, providers_config(server, strict=True))
    async with host_running(home, [PLUGIN, LOOPBACK]) as host:
        with pytest.raises(LLMCallRefused, match="model 'loop/mystery' is not configured") as info:
            await host.complete(ask(model="loop/mystery"))
        recorded = await host.call("providers.record_call", model="loop/mystery", cost_usd=1.0)
    assert "\n" not in str(info.value)
    assert not recorded.success and "unknown model 'loop/mystery'" in (recorded.error_message or "")
    assert server.requests == []
    assert rows(home, "SELECT COUNT(*) FROM llm_calls") == [(0,)]


@pytest.mark.asyncio
async def test_unknown_model_allowed_but_unpriced_when_not_strict(server: ModelServer, tmp_path: Path) -> None:
    home = home_with(tmp_path, providers_config(server))
    async with host_running(home, [PLUGIN, LOOPBACK]) as host:
        await host.complete(ask(model="loop/mystery"))
        refused = await host.call("providers.record_call", model="loop/mystery")
    assert not refused.success and "cannot be priced" in (refused.error_message or "")
    assert rows(home, "SELECT model, cost_usd, cost_source FROM llm_calls") == [("loop/mystery", 0.0, "unpriced")]


@pytest.mark.asyncio
async def test_missing_api_key_variable_refused_before_request(
    server: ModelServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV)
    home = home_with(tmp_path, providers_config(server))
    async with host_running(home, [PLUGIN, LOOPBACK]) as host:
        with pytest.raises(LLMCallRefused, match=f"environment variable {KEY_ENV} is not set") as info:
            await host.complete(ask())
        models = (await host.call("providers.list_models")).data
    assert "provider 'loop'" in str(info.value) and "\n" not in str(info.value)
    assert server.requests == []
    assert rows(home, "SELECT COUNT(*) FROM llm_calls") == [(0,)]
    assert {m["name"]: m["key_present"] for m in models} == {"loop/cheap": False, "loop/strong": False}


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"providers": [{"name": "p", "api_key_env": "sk-live-abcdef123456"}]}, "providers.0.api_key_env"),
        ({"providers": [{"name": "p", "base_url": "ftp://x"}]}, "providers.0.base_url"),
        ({"providers": [{"name": "p"}, {"name": "p"}]}, "duplicate name 'p'"),
        ({"providers": [{"name": "p", "api_key": "sk-live-abcdef123456"}]}, "providers.0.api_key"),
        ({"models": [{"name": "m", "provider": "nowhere"}]}, "unknown provider 'nowhere'"),
        (
            {"providers": [{"name": "p"}], "models": [{"name": "m", "provider": "p", "input_price_per_mtok": -1}]},
            "models.0",
        ),
        ({"providers": [{"name": "p"}], "routing": {"simple": "ghost"}}, "routing.simple names unknown model 'ghost'"),
        ({"providers": "openai"}, "providers"),
    ],
)
async def test_malformed_config_is_one_clear_error_and_writes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, section: dict[str, Any], message: str
) -> None:
    home = home_with(tmp_path, {"core": {"health_interval": 3600}, "slices": {"providers": section}})
    with caplog.at_level(logging.ERROR):
        async with host_running(home, [PLUGIN]) as host:
            (status,) = host.slice_status()
            assert host.instance("providers") is None
    assert status["status"] == "failed"
    error = status["error"]
    assert error.startswith("[slices.providers]: ") and message in error and "\n" not in error
    assert "sk-live" not in error and "sk-live" not in caplog.text  # a pasted key is never repeated
    assert not (home / "slices" / "providers.db").exists()


@pytest.mark.asyncio
async def test_keys_never_stored_or_logged(
    server: ModelServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    home = home_with(tmp_path, providers_config(server, budgets={"slices": {"agent": {"daily_usd": 10}}}))
    with caplog.at_level(logging.DEBUG):
        async with host_running(home, [PLUGIN, LOOPBACK]) as host:
            await host.complete(ask())
            models = (await host.call("providers.list_models")).data
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"  # the key reached the wire...
    for path in (home / "slices").iterdir():
        assert KEY.encode() not in path.read_bytes(), path  # ...and nowhere else
    assert KEY.encode() not in (home / "master.db").read_bytes()
    assert KEY not in caplog.text and KEY not in str(models)
    assert rows(home, "SELECT name, api_key_env FROM providers") == [("loop", KEY_ENV)]


@pytest.mark.asyncio
async def test_spend_by_day_slice_model_with_date_range(server: ModelServer, tmp_path: Path) -> None:
    now = time.time()
    days = [datetime.fromtimestamp(now - d * 86400, UTC).date().isoformat() for d in (0, 1, 2)]
    home = home_with(tmp_path, providers_config(server))
    async with host_running(home, [PLUGIN, LOOPBACK]) as host:
        for back, slice_id, model, tokens in [
            (0, "agent", "loop/cheap", 1_000_000),
            (0, "agent", "loop/cheap", 1_000_000),
            (1, "agent", "loop/strong", 100_000),
            (2, "memory", "loop/cheap", 500_000),
        ]:
            r = await host.call(
                "providers.record_call",
                model=model,
                slice_id=slice_id,
                prompt_tokens=tokens,
                timestamp=now - back * 86400,
            )
            assert r.success, r.error_message
        full = (await host.call("providers.spend")).data
        recent = (await host.call("providers.spend", since=days[1], group_by=["day"])).data
        agent = (await host.call("providers.spend", slice_id="agent", group_by=["model"])).data
        total = (await host.call("providers.spend", group_by=[])).data
        repeated = await host.call("providers.spend", group_by=["slice", "model", "slice"])
    assert [(r["day"], r["slice_id"], r["model"], r["calls"]) for r in full["rows"]] == [
        (days[2], "memory", "loop/cheap", 1),
        (days[1], "agent", "loop/strong", 1),
        (days[0], "agent", "loop/cheap", 2),
    ]
    assert full["total_usd"] == pytest.approx(2.0 + 1.0 + 0.5)
    assert [(r["day"], r["cost_usd"]) for r in recent["rows"]] == [(days[1], 1.0), (days[0], 2.0)]
    assert [(r["model"], r["cost_usd"]) for r in agent["rows"]] == [("loop/cheap", 2.0), ("loop/strong", 1.0)]
    assert total["rows"][0]["calls"] == 4 and total["total_usd"] == pytest.approx(3.5)
    assert not repeated.success and repeated.error_type is ErrorType.INVALID_PAYLOAD
    assert "group_by names slice more than once" in (repeated.error_message or "")
    assert "\n" not in (repeated.error_message or "")


def test_spend_grouping_default_is_in_the_schema() -> None:
    from refactorbot_slice_providers.models import SpendQuery

    schema = SpendQuery.model_json_schema()["properties"]["group_by"]
    assert schema["default"] == ["day", "slice", "model"] and schema["maxItems"] == 3


@pytest.mark.asyncio
async def test_route_and_list_models(server: ModelServer, tmp_path: Path) -> None:
    home = home_with(tmp_path, providers_config(server))
    async with host_running(home, [PLUGIN, LOOPBACK]) as host:
        simple = (await host.call("providers.route", task="simple")).data
        planning = (await host.call("providers.route", task="planning")).data
        unknown = await host.call("providers.route", task="translate")
        vision = (await host.call("providers.list_models", capability="vision")).data
        every = (await host.call("providers.list_models")).data
    assert simple == {
        "task": "simple",
        "model": "loop/cheap",
        "provider": "loop",
        "gateway": "loopback",
        "rule": "simple",
    }
    assert planning["model"] == "loop/strong"
    assert not unknown.success and "no routing rule for task 'translate'" in (unknown.error_message or "")
    assert [m["name"] for m in vision] == ["loop/strong"]
    cheap = every[0]
    assert cheap["gateway_installed"] is True and cheap["key_present"] is True
    assert (cheap["context_window"], cheap["routes"], cheap["api_key_env"]) == (16000, ["simple"], KEY_ENV)


@pytest.mark.asyncio
async def test_default_route_catches_other_tasks(server: ModelServer, tmp_path: Path) -> None:
    config = providers_config(server)
    config["slices"]["providers"]["routing"]["default"] = "loop/cheap"
    home = home_with(tmp_path, config)
    async with host_running(home, [PLUGIN, LOOPBACK]) as host:
        routed = (await host.call("providers.route", task="translate")).data
    assert (routed["model"], routed["rule"]) == ("loop/cheap", "default")


@pytest.mark.asyncio
async def test_streamed_calls_are_recorded_and_vetoed(server: ModelServer, tmp_path: Path) -> None:
    server.script(Reply.text("streamed", usage=(100, 50)))
    home = home_with(tmp_path, providers_config(server, budgets={"slices": {"agent": {"daily_usd": 0.0002}}}))
    async with host_running(home, [PLUGIN, LOOPBACK]) as host:
        call = ask()
        call.stream = True
        assert "".join([c.content async for c in host.stream(call)]) == "streamed"
        with pytest.raises(LLMCallRefused, match="budget"):
            async for _ in host.stream(ask()):
                pass
    assert len(server.requests) == 1
    assert rows(home, "SELECT prompt_tokens, completion_tokens, cost_usd FROM llm_calls") == [(100, 50, 0.0002)]


@pytest.mark.asyncio
async def test_hooks_are_inert_without_a_running_slice(server: ModelServer, tmp_path: Path) -> None:
    home = home_with(tmp_path, {**providers_config(server), "slices": {"providers": {"enabled": False}}})
    async with host_running(home, [PLUGIN, LOOPBACK]) as host:
        answer = await host.complete(ask("no slice"))
    assert answer.content == "echo: no slice"
    assert not (home / "slices" / "providers.db").exists()


def test_month_bounds_cross_the_year() -> None:
    from refactorbot_slice_providers.slice import _month_bounds

    assert _month_bounds(datetime(2026, 12, 31).date()) == ("2026-12-01", "2027-01-01")
    assert _month_bounds(datetime(2026, 2, 1).date() + timedelta(days=27)) == ("2026-02-01", "2026-03-01")
