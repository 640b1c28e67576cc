"""One veto convention for ``before_operation`` and ``before_llm_call`` (``before_tool_call`` is
tested with the tools slice that calls it): ``None`` allows, a non-empty string refuses with that
reason, and a hook that returns anything else or raises refuses with a reason naming its plugin."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from refactorbot import (
    AtomicSlice,
    ErrorType,
    LLMCall,
    LLMCallRefused,
    PluginHost,
    SliceRequest,
    hookimpl,
    operation,
)
from refactorbot.testing import ModelServer, Reply, host_running, loopback_config, plugin_of

QUIET = {"core": {"health_interval": 3600}}
CONVENTION = "a veto hook returns None to allow or a non-empty reason string to refuse"

#: What the counter slice ran, in order (a slice refused by a veto never runs).
RAN: list[str] = []


class CounterSlice(AtomicSlice):
    """Count the calls that reached it."""

    slice_id = "counter"
    uses_database = False

    @operation
    async def bump(self) -> int:
        """Count one call."""
        RAN.append("bump")
        return len(RAN)

    @operation
    async def peek(self) -> int:
        """Return the count."""
        RAN.append("peek")
        return len(RAN)


@pytest.fixture(autouse=True)
def _fresh_counter() -> None:
    RAN.clear()


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


WRONG = [
    (True, "bool True"),
    (False, "bool False"),
    ("", "str ''"),
    ("   ", "str '   '"),
    (0, "int 0"),
    ({"refuse": True}, "dict {'refuse': True}"),
]


# -- before_operation --------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("asynchronous", [False, True], ids=["def", "async def"])
async def test_before_operation_reason_refuses_and_none_allows(tmp_path, asynchronous: bool) -> None:
    def decide(request: SliceRequest) -> str | None:
        return "counting is closed today" if request.operation == "bump" else None

    async def before_operation(request: SliceRequest) -> str | None:
        return decide(request)

    hook = before_operation if asynchronous else decide
    policy = plugin_of(hooks={"before_operation": hook}, name="policy")
    async with host_running(tmp_path, [plugin_of(slices=[CounterSlice]), policy], config=QUIET) as host:
        refused = await host.call("counter.bump")
        allowed = await host.call("counter.peek")
    assert (refused.success, refused.error_type) == (False, ErrorType.REFUSED)
    assert refused.error_message == "refused: counting is closed today"
    assert allowed.success and allowed.data == 1
    assert RAN == ["peek"]  # the refused operation never ran


@pytest.mark.asyncio
async def test_the_first_refusal_wins_and_later_hooks_do_not_run(tmp_path) -> None:
    observed: list[str] = []

    @hookimpl(tryfirst=True)
    def before_operation(request: SliceRequest) -> str | None:
        return "first says no" if request.operation == "bump" else None

    def observe(request: SliceRequest) -> None:
        observed.append(request.operation)

    first = plugin_of(hooks=[before_operation], name="first")
    later = plugin_of(hooks={"before_operation": observe}, name="later")
    async with host_running(tmp_path, [plugin_of(slices=[CounterSlice]), first, later], config=QUIET) as host:
        refused = await host.call("counter.bump")
        assert (await host.call("counter.peek")).success
    assert refused.error_message == "refused: first says no"
    assert observed == ["peek"]


@pytest.mark.asyncio
@pytest.mark.parametrize(("returned", "shown"), WRONG, ids=[shown for _, shown in WRONG])
async def test_before_operation_of_the_wrong_type_refuses_with_a_clear_error(
    tmp_path, caplog, returned: Any, shown: str
) -> None:
    policy = plugin_of(hooks={"before_operation": lambda request: returned}, name="sloppy")
    caplog.set_level(logging.ERROR, logger="refactorbot.plugins")
    async with host_running(tmp_path, [plugin_of(slices=[CounterSlice]), policy], config=QUIET) as host:
        refused = await host.call("counter.bump")
    expected = f"before_operation hook of sloppy returned {shown}; {CONVENTION}"
    assert refused.error_type is ErrorType.REFUSED
    assert refused.error_message == f"refused: {expected}"
    assert RAN == []  # a broken policy never lets the request through
    assert expected in [r.getMessage() for r in caplog.records]


@pytest.mark.asyncio
async def test_before_operation_that_raises_refuses_naming_its_plugin(tmp_path, caplog) -> None:
    def before_operation(request: SliceRequest) -> None:
        raise PermissionError("the policy file is unreadable")

    policy = plugin_of(hooks=[before_operation], name="broken")
    caplog.set_level(logging.ERROR, logger="refactorbot.plugins")
    async with host_running(tmp_path, [plugin_of(slices=[CounterSlice]), policy], config=QUIET) as host:
        refused = await host.call("counter.bump")
    expected = "before_operation hook of broken raised PermissionError: the policy file is unreadable"
    assert refused.error_type is ErrorType.REFUSED
    assert refused.error_message == f"refused: {expected}"
    assert RAN == []
    assert any(r.getMessage() == expected and r.exc_info for r in caplog.records)


@pytest.mark.asyncio
async def test_a_streamed_operation_follows_the_same_convention(tmp_path) -> None:
    policy = plugin_of(hooks={"before_operation": lambda request: "no streams"}, name="policy")
    async with host_running(tmp_path, [plugin_of(slices=[CounterSlice]), policy], config=QUIET) as host:
        stream = host.astream("counter.peek")
        chunks = [chunk async for chunk in stream]
    assert chunks == []
    assert stream.response is not None and stream.response.error_message == "refused: no streams"
    assert RAN == []


# -- before_llm_call ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_before_llm_call_reason_refuses_before_any_request_and_none_allows(tmp_path) -> None:
    def before_llm_call(call: LLMCall) -> str | None:
        return "the budget is spent" if "expensive" in call.messages[-1]["content"] else None

    policy = plugin_of(hooks=[before_llm_call], name="budget")
    with ModelServer() as server:
        server.script(Reply.text("cheap answer"))
        config = {**QUIET, **loopback_config(server)}
        async with host_running(tmp_path, ["refactorbot.testing.loopback", policy], config=config) as host:
            with pytest.raises(LLMCallRefused) as refused:
                await host.complete(LLMCall(model="", messages=_user("an expensive question")))
            with pytest.raises(LLMCallRefused):
                async for _ in host.stream(LLMCall(model="", messages=_user("expensive, streamed"), stream=True)):
                    pass
            answer = await host.complete(LLMCall(model="", messages=_user("a cheap question")))
        assert str(refused.value) == "LLM call refused: the budget is spent"
        assert answer.content == "cheap answer"
        assert [r["messages"][-1]["content"] for r in server.requests] == ["a cheap question"]


@pytest.mark.asyncio
@pytest.mark.parametrize(("returned", "shown"), WRONG, ids=[shown for _, shown in WRONG])
async def test_before_llm_call_of_the_wrong_type_refuses_with_a_clear_error(
    tmp_path, returned: Any, shown: str
) -> None:
    async def before_llm_call(call: LLMCall) -> Any:
        return returned

    policy = plugin_of(hooks=[before_llm_call], name="sloppy")
    with ModelServer() as server:
        server.script(Reply.text("never sent"))
        config = {**QUIET, **loopback_config(server)}
        async with host_running(tmp_path, ["refactorbot.testing.loopback", policy], config=config) as host:
            with pytest.raises(LLMCallRefused) as refused:
                await host.complete(LLMCall(model="", messages=_user("hello")))
        assert str(refused.value) == f"LLM call refused: before_llm_call hook of sloppy returned {shown}; {CONVENTION}"
        assert server.requests == []


@pytest.mark.asyncio
async def test_before_llm_call_that_raises_refuses_naming_its_plugin(tmp_path) -> None:
    def before_llm_call(call: LLMCall) -> None:
        raise KeyError("budget table")

    policy = plugin_of(hooks=[before_llm_call], name="broken")
    with ModelServer() as server:
        config = {**QUIET, **loopback_config(server)}
        async with host_running(tmp_path, ["refactorbot.testing.loopback", policy], config=config) as host:
            with pytest.raises(LLMCallRefused) as refused:
                await host.complete(LLMCall(model="", messages=_user("hello")))
        assert str(refused.value) == "LLM call refused: before_llm_call hook of broken raised KeyError: 'budget table'"
        assert server.requests == []


# -- the dispatcher ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_aveto_is_only_for_veto_hooks() -> None:
    with pytest.raises(ValueError, match="after_operation is not a veto hook"):
        await PluginHost({}).aveto("after_operation", request=None, response=None)
    assert await PluginHost({}).aveto("before_tool_call", call=None) is None  # no implementation: allowed
