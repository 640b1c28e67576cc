"""MasterChat with small in-test slices: the pipeline, its hooks and graceful degradation."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest
from pydantic import BaseModel, Field
from refactorbot import AtomicSlice, ErrorType, IncomingMessage, operation
from refactorbot.chat import NO_AGENT, MasterChat
from refactorbot.testing import host_running, plugin_of


class GetOrCreate(BaseModel):
    channel: str
    chat_id: str
    user_id: str


class Append(BaseModel):
    session_id: str
    role: str
    content: str = ""
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    duration_ms: float | None = None


class MiniSession(AtomicSlice):
    """Sessions in a dict."""

    slice_id = "session"
    uses_database = False
    fail_appends = False

    def __init__(self, ctx, config=None):
        super().__init__(ctx, config)
        self.messages: dict[str, list[dict[str, Any]]] = {}

    @operation
    async def get_or_create(self, params: GetOrCreate) -> dict:
        """Return the session of a chat."""
        sid = f"{params.channel}:{params.chat_id}"
        self.messages.setdefault(sid, [])
        return {"session_id": sid}

    @operation
    async def append(self, params: Append) -> dict:
        """Store a message."""
        if self.fail_appends:
            raise RuntimeError("disk full")
        self.messages[params.session_id].append(params.model_dump(exclude_none=True))
        return {"id": len(self.messages[params.session_id])}


class Search(BaseModel):
    user_id: str
    query: str = ""
    limit: int = 5


class Remember(BaseModel):
    user_id: str
    content: str
    session_id: str | None = None
    tags: list[str] = Field(default_factory=list)


class MiniMemory(AtomicSlice):
    """Memories in a list, matched by shared words."""

    slice_id = "memory"
    uses_database = False

    def __init__(self, ctx, config=None):
        super().__init__(ctx, config)
        self.items: list[dict[str, Any]] = []

    @operation
    async def search(self, params: Search) -> dict:
        """Return the user's memories sharing a word with the query (newest when the query is empty)."""
        words = set(params.query.lower().split())
        mine = [m for m in self.items if m["user_id"] == params.user_id]
        if words:
            mine = [m for m in mine if words & set(m["content"].lower().split())]
        return {"memories": mine[-params.limit :]}

    @operation
    async def remember(self, params: Remember) -> dict:
        """Store a memory."""
        self.items.append(params.model_dump())
        return {"id": len(self.items)}


class Run(BaseModel):
    message: str
    session_id: str | None = None
    user_id: str | None = None
    mode: str = "auto"
    model: str | None = None
    memories: list[str] | None = None


class MiniAgent(AtomicSlice):
    """Answers with what it was given; 'remember X' marks X as a fact; 'explode' fails."""

    slice_id = "agent"
    uses_database = False

    def __init__(self, ctx, config=None):
        super().__init__(ctx, config)
        self.gate: asyncio.Event | None = None  # when set up, a stream waits on it after its first chunk
        self.started = self.active = self.peak = 0
        self.cancelled = False

    def _answer(self, params: Run) -> dict[str, Any]:
        if "explode" in params.message:
            raise RuntimeError("model unreachable")
        remember = [params.message.split("remember ", 1)[1]] if "remember " in params.message else []
        answer = f"echo {params.message} | memories: {', '.join(params.memories or []) or 'none'}"
        return {
            "answer": answer,
            "steps": 1,
            "tool_calls": [{"tool": "files_read"}],
            "tokens": {"total_tokens": 7},
            "execution_id": "x1",
            "remember": remember,
            "messages": [
                {"role": "assistant", "content": "", "tool_calls": [{"id": "c1"}]},
                {"role": "tool", "content": "file body", "tool_call_id": "c1"},
                {"role": "assistant", "content": answer},
            ],
        }

    @operation
    async def run(self, params: Run) -> dict:
        """Answer a message."""
        return self._answer(params)

    @operation(stream=True)
    async def stream_run(self, params: Run, emit) -> dict:
        """Answer a message, word by word."""
        self.started += 1
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            result = self._answer(params)
            for i, word in enumerate(result["answer"].split(" ")):
                await emit(word + " ")
                if i == 0 and self.gate is not None:
                    await self.gate.wait()
            return result
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.active -= 1


class HookRecorder:
    """Records the message hooks; ``plugin`` is the test plugin implementing them."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.plugin = plugin_of(hooks=[self.message_received, self.message_sent], name="hook-recorder")

    def message_received(self, message):
        self.seen.append(("received", message.text))

    async def message_sent(self, message):
        self.seen.append(("sent", message.text))


def slices_plugin(*classes):
    return plugin_of(slices=classes)


def incoming(text: str, sender: str = "alice", chat: str = "c1") -> IncomingMessage:
    return IncomingMessage(channel="test", chat_id=chat, sender_id=sender, text=text)


CONFIG = {"core": {"health_interval": 3600}}


@pytest.mark.asyncio
async def test_full_turn_through_every_slice(tmp_path):
    hooks = HookRecorder()
    plugin = slices_plugin(MiniSession, MiniMemory, MiniAgent)
    async with host_running(tmp_path, [plugin, hooks.plugin], config=CONFIG) as host:
        chat = MasterChat(host)
        first = await chat.process_message(incoming("please remember tea is great"))
        assert first.text == "echo please remember tea is great | memories: none"
        assert first.reply_to and first.metadata["session_id"] == "test:c1"
        assert first.metadata["tool_calls"] == ["files_read"] and first.metadata["remembered"] == ["tea is great"]
        assert host.instance("memory").items[0] == {
            "user_id": "alice",
            "content": "tea is great",
            "session_id": "test:c1",
            "tags": ["agent"],
        }
        second = await chat.process_message(incoming("is tea good?"))
        assert second.text.endswith("memories: tea is great")
        other = await chat.process_message(incoming("is tea good?", sender="bob", chat="c2"))
        assert other.text.endswith("memories: none")
        stored = host.instance("session").messages["test:c1"]
        assert [m["role"] for m in stored] == ["user", "assistant", "tool", "assistant"] * 2
        assert stored[0]["content"] == "please remember tea is great" and "duration_ms" in stored[3]
        assert stored[1]["tool_calls"] == [{"id": "c1"}] and stored[2]["tool_call_id"] == "c1"
        assert hooks.seen[:2] == [("received", "please remember tea is great"), ("sent", first.text)]
        assert first.metadata["degraded"] == [] and first.metadata["ok"] is True


@pytest.mark.asyncio
async def test_no_agent_is_a_clear_reply(tmp_path):
    async with host_running(tmp_path, [slices_plugin(MiniSession)], config=CONFIG) as host:
        reply = await MasterChat(host).process_message(incoming("hello"))
        assert reply.text == NO_AGENT and "pip install refactorbot-slice-agent" in reply.text
        assert reply.metadata["ok"] is False and reply.metadata["error"] == "no agent slice"
        # the notice is for the user, not a turn of the conversation: the session keeps only the question
        assert [m["role"] for m in host.instance("session").messages["test:c1"]] == ["user"]


@pytest.mark.asyncio
async def test_nothing_installed_still_answers(tmp_path):
    async with host_running(tmp_path, [], config=CONFIG) as host:
        chat = MasterChat(host)
        assert (await chat.process_message(incoming("hello"))).text == NO_AGENT
        assert [c async for c in chat.stream_message(incoming("hello"))] == [NO_AGENT]


@pytest.mark.asyncio
async def test_agent_only(tmp_path):
    async with host_running(tmp_path, [slices_plugin(MiniAgent)], config=CONFIG) as host:
        reply = await MasterChat(host).process_message(incoming("remember x"))
        assert reply.text == "echo remember x | memories: none" and reply.metadata["session_id"] is None


@pytest.mark.asyncio
async def test_failures_degrade(tmp_path):
    async with host_running(tmp_path, [slices_plugin(MiniSession, MiniAgent)], config=CONFIG) as host:
        chat = MasterChat(host)
        failed = await chat.process_message(incoming("explode now"))
        assert failed.text.startswith("Sorry, the agent failed:") and "model unreachable" in failed.text
        assert failed.metadata["ok"] is False and "model unreachable" in failed.metadata["error"]
        assert [m["role"] for m in host.instance("session").messages["test:c1"]] == ["user"]
        host.instance("session").fail_appends = True
        reply = await chat.process_message(incoming("hi"))
        assert reply.text.startswith("echo hi")
        assert any("session.append" in d and "disk full" in d for d in reply.metadata["degraded"])


@pytest.mark.asyncio
async def test_stream_message_yields_chunks_and_stores_the_turn(tmp_path):
    hooks = HookRecorder()
    plugin = slices_plugin(MiniSession, MiniMemory, MiniAgent)
    async with host_running(tmp_path, [plugin, hooks.plugin], config=CONFIG) as host:
        chat = MasterChat(host, model="m1")
        chunks = [c async for c in chat.stream_message(incoming("remember streams work"))]
        assert len(chunks) > 3 and "".join(chunks).strip() == "echo remember streams work | memories: none"
        stored = host.instance("session").messages["test:c1"]
        assert stored[0]["content"] == "remember streams work" and stored[-1]["role"] == "assistant"
        assert host.instance("memory").items[0]["content"] == "streams work"
        assert [kind for kind, _ in hooks.seen] == ["received", "sent"]


# -- streamed turns go through the host like every other call ---------------------------------------


class Policy:
    """A ``before_operation`` veto for one target, and a record of what the host routed; ``plugin`` implements it."""

    def __init__(self, refuse: str | None = None) -> None:
        self.refuse = refuse
        self.before: list[str] = []
        self.after: list[tuple[str, bool]] = []
        self.changed = asyncio.Event()
        self.plugin = plugin_of(hooks=[self.before_operation, self.after_operation], name="policy")

    def before_operation(self, request):
        self.before.append(request.target)
        self.changed.set()
        return "no streaming today" if request.target == self.refuse else None

    def after_operation(self, request, response):
        self.after.append((request.target, response.success))
        self.changed.set()


async def wait_for(condition, policy: Policy, deadline: float = 10.0) -> None:
    """Wait until ``condition()`` holds, woken by the policy's hooks (fail after ``deadline``)."""

    async def until() -> None:
        while not condition():
            policy.changed.clear()
            await policy.changed.wait()

    await asyncio.wait_for(until(), deadline)


def operation_log(home) -> list[tuple[str, str, int, str | None]]:
    with sqlite3.connect(home / "master.db") as db:
        return db.execute("SELECT slice_id, operation, success, error_type FROM operation_log ORDER BY id").fetchall()


@pytest.mark.asyncio
async def test_streamed_turn_is_measured_logged_and_observed(tmp_path):
    policy = Policy()
    async with host_running(tmp_path, [slices_plugin(MiniSession, MiniAgent), policy.plugin], config=CONFIG) as host:
        chunks = [c async for c in MasterChat(host).stream_message(incoming("hello there"))]
        assert "".join(chunks).strip() == "echo hello there | memories: none"
        assert "agent.stream_run" in policy.before
        assert host.metrics.snapshot("agent")["agent.stream_run"]["count"] == 1
        await wait_for(lambda: ("agent.stream_run", True) in policy.after, policy)
    assert ("agent", "stream_run", 1, None) in operation_log(tmp_path)


@pytest.mark.asyncio
async def test_streamed_turn_is_refused_by_before_operation(tmp_path):
    policy = Policy(refuse="agent.stream_run")
    async with host_running(tmp_path, [slices_plugin(MiniSession, MiniAgent), policy.plugin], config=CONFIG) as host:
        chat = MasterChat(host)
        chunks = [c async for c in chat.stream_message(incoming("hello"))]
        assert chunks == ["Sorry, the agent failed: refused: no streaming today"]
        reply = chat.last_reply
        assert reply.metadata["ok"] is False and reply.metadata["error"] == "refused: no streaming today"
        assert host.instance("agent").started == 0  # the operation never ran
        assert [m["role"] for m in host.instance("session").messages["test:c1"]] == ["user"]
        stats = host.metrics.snapshot("agent")["agent.stream_run"]
        assert (stats["count"], stats["errors"]) == (1, 1)
    assert ("agent", "stream_run", 0, "refused") in operation_log(tmp_path)


@pytest.mark.asyncio
async def test_streamed_turns_honour_the_concurrency_limit(tmp_path):
    policy = Policy()
    config = {**CONFIG, "slices": {"agent": {"resources": {"max_concurrency": 1, "timeout": 60}}}}
    async with host_running(tmp_path, [slices_plugin(MiniSession, MiniAgent), policy.plugin], config=config) as host:
        agent = host.instance("agent")
        agent.gate = asyncio.Event()
        first = MasterChat(host).stream_message(incoming("one two three", chat="c1"))
        assert await anext(first) == "echo "  # the first turn holds the agent's only slot, paused
        assert host.resources()["agent"]["in_flight"] == 1

        async def collect(stream) -> str:
            return "".join([c async for c in stream])

        second = asyncio.ensure_future(collect(MasterChat(host).stream_message(incoming("four", chat="c2"))))
        await wait_for(lambda: policy.before.count("agent.stream_run") == 2, policy)
        for _ in range(20):  # let the second request go as far as it can: it must wait for the slot
            await asyncio.sleep(0)
        assert agent.started == 1 and not second.done()
        agent.gate.set()
        rest = await collect(first)
        assert (await asyncio.wait_for(second, 10)).strip() == "echo four | memories: none"
        assert rest.strip() == "one two three | memories: none"
        assert agent.started == 2 and agent.peak == 1


@pytest.mark.asyncio
async def test_failed_stream_stores_no_answer(tmp_path):
    async with host_running(tmp_path, [slices_plugin(MiniSession, MiniAgent)], config=CONFIG) as host:
        chat = MasterChat(host)
        text = "".join([c async for c in chat.stream_message(incoming("explode please"))])
        assert text.startswith("Sorry, the agent failed: agent.stream_run raised RuntimeError: model unreachable")
        assert chat.last_reply.metadata["ok"] is False
        assert [m["role"] for m in host.instance("session").messages["test:c1"]] == ["user"]


@pytest.mark.asyncio
async def test_stream_of_an_agent_without_a_streamed_operation(tmp_path):
    class RunOnlyAgent(AtomicSlice):
        """A third-party agent with only ``run``."""

        slice_id = "agent"
        uses_database = False
        _answer = MiniAgent._answer
        run = MiniAgent.run

    async with host_running(tmp_path, [slices_plugin(MiniSession, RunOnlyAgent)], config=CONFIG) as host:
        chunks = [c async for c in MasterChat(host).stream_message(incoming("hi"))]
        assert chunks == ["echo hi | memories: none"]
        assert "agent.run" in host.metrics.snapshot("agent")


@pytest.mark.asyncio
async def test_astream_limits_and_early_exit(tmp_path):
    config = {**CONFIG, "slices": {"agent": {"resources": {"timeout": 0.2}}}}
    async with host_running(tmp_path, [slices_plugin(MiniAgent)], config=config) as host:
        agent = host.instance("agent")
        agent.gate = asyncio.Event()  # never set: the stream pauses after its first chunk
        timed_out = host.astream("agent.stream_run", message="slow answer")
        assert [c async for c in timed_out] == ["echo "]
        assert timed_out.response.error_type is ErrorType.TIMEOUT  # the timeout bounds the whole stream
        assert timed_out.response.error_message == "agent.stream_run timed out after 0.2s"

        left = host.astream("agent.stream_run", message="left early")
        async for _ in left:
            break
        await left.aclose()
        assert agent.cancelled and agent.active == 0
        assert left.response.error_message == "agent.stream_run: the caller stopped reading after 1 chunk(s)"
        assert host.resources()["agent"]["in_flight"] == 0

        bad = host.astream("agent.stream_run", words=3)
        assert [c async for c in bad] == [] and bad.response.error_type is ErrorType.INVALID_PAYLOAD
        plain = host.astream("agent.run", message="not streamed")
        assert [c async for c in plain] == [] and plain.response.data["answer"].startswith("echo not streamed")
        ghost = host.astream("ghost.op")
        assert [c async for c in ghost] == [] and ghost.response.error_type is ErrorType.SLICE_UNAVAILABLE
        # called without a stream, a streamed operation just answers
        agent.gate = None
        direct = await host.call("agent.stream_run", message="direct")
        assert direct.success and direct.data["answer"] == "echo direct | memories: none"


class BeginTurn(GetOrCreate):
    content: str
    model: str | None = None


class TurnSession(MiniSession):
    """A session slice that starts a turn in one call (``begin_turn``), like refactorbot-slice-session."""

    @operation
    async def begin_turn(self, params: BeginTurn) -> dict:
        """Get or create the session, store the user's message, return the history."""
        if self.fail_appends:
            raise RuntimeError("disk full")
        sid = f"{params.channel}:{params.chat_id}"
        stored = self.messages.setdefault(sid, [])
        stored.append({"session_id": sid, "role": "user", "content": params.content})
        history = [{"role": m["role"], "content": m.get("content", "")} for m in stored]
        return {"session": {"session_id": sid}, "message": {"id": len(stored)}, "history": {"messages": history}}


class RunWithHistory(Run):
    history: list[dict[str, Any]] | None = None


class HistoryAgent(MiniAgent):
    """An agent that takes the history from its caller, and says how many messages it got."""

    @operation
    async def run(self, params: RunWithHistory) -> dict:
        """Answer a message."""
        result = self._answer(params)
        result["answer"] += f" | history: {'none' if params.history is None else len(params.history)}"
        return result


@pytest.mark.asyncio
async def test_a_turn_starts_with_one_session_call_and_hands_its_history_to_the_agent(tmp_path):
    async with host_running(tmp_path, [slices_plugin(TurnSession, HistoryAgent)], config=CONFIG) as host:
        chat = MasterChat(host)
        first = await chat.process_message(incoming("hello"))
        assert first.text == "echo hello | memories: none | history: 1" and first.metadata["session_id"] == "test:c1"
        second = await chat.process_message(incoming("again"))
        assert second.text.endswith("| history: 5")  # hello, the 3 messages of the first answer, again
        stored = host.instance("session").messages["test:c1"]
        assert [m["role"] for m in stored] == ["user", "assistant", "tool", "assistant"] * 2
        counts = {target: stats["count"] for target, stats in host.metrics.snapshot().items()}
        # begin_turn and agent.run once a turn, no get_or_create and no append of the user's message;
        # this session slice has no extend: the answer's messages fall back to one append each
        assert counts == {"session.begin_turn": 2, "agent.run": 2, "session.extend": 2, "session.append": 6}

        host.instance("session").fail_appends = True
        degraded = await chat.process_message(incoming("hi"))
        assert degraded.text == "echo hi | memories: none | history: none"
        assert any("session.begin_turn" in d and "disk full" in d for d in degraded.metadata["degraded"])


@pytest.mark.asyncio
async def test_an_agent_that_takes_no_history_is_not_given_one(tmp_path):
    async with host_running(tmp_path, [slices_plugin(TurnSession, MiniAgent)], config=CONFIG) as host:
        reply = await MasterChat(host).process_message(incoming("hello"))
        assert reply.text == "echo hello | memories: none" and reply.metadata["degraded"] == []
