"""MasterChat with small in-test slices: the pipeline, its hooks and graceful degradation."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field
from refactorbot import AtomicSlice, IncomingMessage, hookimpl, operation
from refactorbot.chat import NO_AGENT, MasterChat
from refactorbot.testing import host_running


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


class RunStream:
    def __init__(self, result: dict[str, Any]) -> None:
        self.result_data = result
        self.result: dict[str, Any] | None = None

    async def _chunks(self):
        for word in self.result_data["answer"].split(" "):
            yield word + " "
        self.result = self.result_data

    def __aiter__(self):
        return self._chunks()


class MiniAgent(AtomicSlice):
    """Answers with what it was given; 'remember X' marks X as a fact; 'explode' fails."""

    slice_id = "agent"
    uses_database = False

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

    def stream_run(self, **payload: Any) -> RunStream:
        return RunStream(self._answer(Run(**payload)))


class HookRecorder:
    REFACTORBOT_API = 1

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    @hookimpl
    def message_received(self, message):
        self.seen.append(("received", message.text))

    @hookimpl
    async def message_sent(self, message):
        self.seen.append(("sent", message.text))


def slices_plugin(*classes):
    class Plugin:
        REFACTORBOT_API = 1

        @hookimpl
        def register_slices(self, register):
            for cls in classes:
                register(cls)

    return Plugin()


def incoming(text: str, sender: str = "alice", chat: str = "c1") -> IncomingMessage:
    return IncomingMessage(channel="test", chat_id=chat, sender_id=sender, text=text)


CONFIG = {"core": {"health_interval": 3600}}


@pytest.mark.asyncio
async def test_full_turn_through_every_slice(tmp_path):
    hooks = HookRecorder()
    plugin = slices_plugin(MiniSession, MiniMemory, MiniAgent)
    async with host_running(tmp_path, [plugin, hooks], config=CONFIG) as host:
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
        assert reply.metadata["ok"] is False
        assert [m["role"] for m in host.instance("session").messages["test:c1"]] == ["user", "assistant"]


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
        host.instance("session").fail_appends = True
        reply = await chat.process_message(incoming("hi"))
        assert reply.text.startswith("echo hi")
        assert any("session.append" in d and "disk full" in d for d in reply.metadata["degraded"])


@pytest.mark.asyncio
async def test_stream_message_yields_chunks_and_stores_the_turn(tmp_path):
    hooks = HookRecorder()
    plugin = slices_plugin(MiniSession, MiniMemory, MiniAgent)
    async with host_running(tmp_path, [plugin, hooks], config=CONFIG) as host:
        chat = MasterChat(host, model="m1")
        chunks = [c async for c in chat.stream_message(incoming("remember streams work"))]
        assert len(chunks) > 3 and "".join(chunks).strip() == "echo remember streams work | memories: none"
        stored = host.instance("session").messages["test:c1"]
        assert stored[0]["content"] == "remember streams work" and stored[-1]["role"] == "assistant"
        assert host.instance("memory").items[0]["content"] == "streams work"
        assert [kind for kind, _ in hooks.seen] == ["received", "sent"]
