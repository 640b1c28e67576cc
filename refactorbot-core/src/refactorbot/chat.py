"""``MasterChat``: one chat turn through whatever slices are installed.

session (get or create, store the user's turn, read the history: ``session.begin_turn``) → memory recall → agent (LLM + tools) → session
(store the turn's messages) → memory (facts the agent marked) → reply. Each step degrades when
its slice is absent or fails: the turn still gets a clear answer, never an exception.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from refactorbot import tracing
from refactorbot.models import ErrorType, IncomingMessage, OutgoingMessage

log = logging.getLogger(__name__)

NO_AGENT = (
    "No agent slice is installed, so there is no one to answer yet. "
    "Install one with: pip install refactorbot-slice-agent (plus an LLM gateway such as refactorbot-gateway-litellm)."
)


class ChatTurn:
    """What one turn gathered on its way through the slices."""

    def __init__(self, message: IncomingMessage) -> None:
        self.message = message
        self.started = time.perf_counter()
        self.session_id: str | None = None
        self.memories: list[str] | None = None
        self.history: list[dict[str, Any]] | None = None  # the session's history, when begin_turn read it
        self.result: dict[str, Any] = {}
        self.degraded: list[str] = []
        self.error: str | None = None  # why the turn failed, when the agent could not run


class MasterChat:
    """Turn an ``IncomingMessage`` into an ``OutgoingMessage`` with the host's session, memory and agent."""

    def __init__(self, host: Any, *, model: str | None = None, mode: str = "auto", recall_limit: int = 5) -> None:
        self.host = host
        self.model = model
        self.mode = mode
        self.recall_limit = recall_limit
        self.last_reply: OutgoingMessage | None = None  # the reply of the latest turn (streamed ones too)

    # -- slices ----------------------------------------------------------------------------

    async def _call(self, turn: ChatTurn, target: str, **payload: Any) -> Any:
        """Call a slice operation; on failure note it in ``turn.degraded`` and return None."""
        slice_id = target.partition(".")[0]
        if not self.host.has_slice(slice_id):
            return None
        response = await self.host.call(target, **payload)
        if not response.success:
            log.warning("%s failed: %s", target, response.error_message)
            turn.degraded.append(f"{target}: {response.error_message}")
            return None
        return response.data

    def _offers(self, slice_id: str, operation: str, field: str | None = None) -> bool:
        """Return whether the running ``slice_id`` has ``operation`` (taking the payload ``field``, when named)."""
        instance = self.host.instance(slice_id)
        spec = type(instance).operations().get(operation) if instance is not None else None
        return spec is not None and (field is None or field in spec.input_model.model_fields)

    async def _begin(self, message: IncomingMessage) -> ChatTurn:
        turn = ChatTurn(message)
        await self._hook("message_received", message=message)
        where = {"channel": message.channel, "chat_id": message.chat_id, "user_id": message.sender_id}
        if self._offers("session", "begin_turn"):
            # one call: the chat's session, the user's message stored, the history the agent reads
            budget = {"model": self.model} if self.model else {}
            started = await self._call(turn, "session.begin_turn", **where, content=message.text, **budget)
            if started is not None:
                turn.session_id = started["session"]["session_id"]
                turn.history = started["history"]["messages"]
        else:
            session = await self._call(turn, "session.get_or_create", **where)
            if session is not None:
                turn.session_id = session["session_id"]
                await self._call(turn, "session.append", session_id=turn.session_id, role="user", content=message.text)
        if self.host.has_slice("memory") and self.recall_limit:
            found = await self._call(
                turn, "memory.search", user_id=message.sender_id, query=message.text, limit=self.recall_limit
            )
            if found is not None and not found["memories"]:
                found = await self._call(turn, "memory.search", user_id=message.sender_id, limit=self.recall_limit)
            if found is not None:
                turn.memories = [m["content"] for m in found["memories"]]
        return turn

    def _run_payload(self, turn: ChatTurn, target: str) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "message": turn.message.text,
            "session_id": turn.session_id,
            "user_id": turn.message.sender_id,
            "mode": self.mode,
            "memories": turn.memories,
        }
        if self.model:
            payload["model"] = self.model
        if turn.history is not None and self._offers("agent", target.partition(".")[2], "history"):
            payload["history"] = turn.history  # read by session.begin_turn: the agent need not read it again
        return payload

    async def _end(self, turn: ChatTurn, answer: str) -> OutgoingMessage:
        duration_ms = (time.perf_counter() - turn.started) * 1000
        if turn.session_id is not None:
            await self._store_turn(turn, answer, duration_ms)
        for fact in turn.result.get("remember") or []:
            await self._call(
                turn,
                "memory.remember",
                user_id=turn.message.sender_id,
                content=fact,
                session_id=turn.session_id,
                tags=["agent"],
            )
        reply = OutgoingMessage(
            channel=turn.message.channel,
            chat_id=turn.message.chat_id,
            text=answer,
            reply_to=turn.message.message_id,
            metadata={
                # the agent answered: it ran, and did not report a failure or a limit hit
                "ok": bool(turn.result) and bool(turn.result.get("success", True)),
                # why it did not, in one line (None when it answered or only hit a limit)
                "error": turn.error or turn.result.get("error") or (None if turn.result else "no agent slice"),
                "session_id": turn.session_id,
                "tool_calls": [c.get("tool") for c in turn.result.get("tool_calls") or []],
                "steps": turn.result.get("steps", 0),
                "tokens": (turn.result.get("tokens") or {}).get("total_tokens", 0),
                "execution_id": turn.result.get("execution_id"),
                "remembered": turn.result.get("remember") or [],
                "degraded": turn.degraded,
                "duration_ms": round(duration_ms, 3),
            },
        )
        await self._hook("message_sent", message=reply)
        self.last_reply = reply
        return reply

    async def _store_turn(self, turn: ChatTurn, answer: str, duration_ms: float) -> None:
        """Store the turn's messages with ``session.extend`` (``session.append`` each, if it has none).

        Only what the agent produced is stored: a failed turn (no agent, the agent failed, the model
        or its key was missing) keeps the user's message but never an error text as an answer.
        """
        produced = turn.result.get("messages")
        if produced is None:
            answered = bool(turn.result) and turn.result.get("success", True) and not turn.result.get("error")
            produced = [{"role": "assistant", "content": answer}] if answered else []
        if not produced:
            return
        items = []
        for item in produced:
            fields = {k: item[k] for k in ("role", "content", "tool_calls", "tool_call_id") if item.get(k)}
            fields.setdefault("content", "")
            items.append(fields)
        items[-1]["duration_ms"] = round(duration_ms, 3)
        response = await self.host.call("session.extend", session_id=turn.session_id, messages=items)
        if response.success:
            return
        if response.error_type is not ErrorType.UNKNOWN_OPERATION:
            turn.degraded.append(f"session.extend: {response.error_message}")
            return
        for fields in items:
            await self._call(turn, "session.append", session_id=turn.session_id, **fields)

    async def _hook(self, name: str, **kwargs: Any) -> None:
        try:
            await self.host.plugins.acall(name, **kwargs)
        except Exception:  # an observer must not break the conversation
            log.exception("%s hook failed", name)

    # -- entry points ----------------------------------------------------------------------

    async def process_message(self, message: IncomingMessage) -> OutgoingMessage:
        """Answer one message: session → memory recall → agent → session → memory → reply.

        With a tracer installed, the turn is one ``chat_turn <channel>`` span over all of it.
        """
        if tracing.tracer() is None:
            return await self._answer(await self._begin(message))
        with _turn_span(message) as span:
            reply = await self._answer(await self._begin(message))
            _turn_attributes(span, reply)
            return reply

    async def stream_message(self, message: IncomingMessage, *, announce_failure: bool = True) -> AsyncIterator[str]:
        """Yield the answer's text as it arrives; the turn is stored like ``process_message`` does.

        The agent runs through the host (``host.astream``), so hooks, limits, the operation log and
        metrics apply as for any call: its streamed operation ``agent.stream_run`` when it has one,
        else ``agent.run``, whose answer then comes as one piece.

        When the turn fails, the failure's text is yielded last; with ``announce_failure=False``
        it is not (a caller that shows its own failure text reads ``last_reply.metadata["error"]``).
        """
        if tracing.tracer() is None:
            async for text in self._stream_turn(message, announce_failure):
                yield text
            return
        with _turn_span(message) as span:
            async for text in self._stream_turn(message, announce_failure):
                yield text
            if self.last_reply is not None:
                _turn_attributes(span, self.last_reply)

    async def _stream_turn(self, message: IncomingMessage, announce_failure: bool) -> AsyncIterator[str]:
        turn = await self._begin(message)
        if not self.host.has_slice("agent"):
            reply = await self._end(turn, NO_AGENT)
            if announce_failure:
                yield reply.text
            return
        target = self._stream_target()
        stream = self.host.astream(target, **self._run_payload(turn, target))
        shown: list[str] = []
        async for chunk in stream:
            text = str(chunk)
            shown.append(text)
            yield text
        response = stream.response
        if response is None or not response.success:
            error = response.error_message if response is not None else "the stream ended without a response"
            failure = self._failed(turn, f"{stream.request.target}: {error}", error)
            if announce_failure:
                yield ("\n" if shown else "") + failure
            await self._end(turn, failure)
            return
        turn.result = dict(response.data or {})
        answer = str(turn.result.get("answer", "".join(shown)))
        if not shown:
            yield answer
        await self._end(turn, answer)

    def _stream_target(self) -> str:
        agent = self.host.instance("agent")
        spec = type(agent).operations().get("stream_run") if agent is not None else None
        return "agent.stream_run" if spec is not None and spec.stream else "agent.run"

    def _failed(self, turn: ChatTurn, where: str, error: str | None) -> str:
        """Note a failed agent call (in ``degraded`` and ``error``); return the text the user sees."""
        turn.degraded.append(where)
        turn.error = error or "the agent failed"
        return f"Sorry, the agent failed: {error}"

    async def _answer(self, turn: ChatTurn) -> OutgoingMessage:
        if not self.host.has_slice("agent"):
            return await self._end(turn, NO_AGENT)
        response = await self.host.call("agent.run", **self._run_payload(turn, "agent.run"))
        if not response.success:
            failure = self._failed(turn, f"agent.run: {response.error_message}", response.error_message)
            return await self._end(turn, failure)
        turn.result = response.data
        return await self._end(turn, str(turn.result["answer"]))


def _turn_span(message: IncomingMessage) -> tracing.SpanScope:
    """Return the span of one chat turn (the root of its trace, unless a caller's span is current)."""
    attributes: dict[str, tracing.AttributeValue] = {
        "gen_ai.operation.name": "chat_turn",
        "refactorbot.channel": message.channel,
        "refactorbot.message_id": message.message_id,
    }
    return tracing.span(f"chat_turn {message.channel}", kind="server", attributes=attributes)


def _turn_attributes(span: tracing.Span, reply: OutgoingMessage) -> None:
    meta = reply.metadata
    if meta.get("session_id"):
        span.set_attribute("gen_ai.conversation.id", str(meta["session_id"]))
    span.set_attribute("refactorbot.turn.steps", int(meta.get("steps") or 0))
    span.set_attribute("refactorbot.turn.tool_calls", [str(t) for t in meta.get("tool_calls") or []])
    if meta.get("degraded"):
        span.set_attribute("refactorbot.turn.degraded", [str(d) for d in meta["degraded"]])
    if not meta.get("ok"):
        span.set_error("turn_failed", str(meta.get("error") or "the turn failed"))
