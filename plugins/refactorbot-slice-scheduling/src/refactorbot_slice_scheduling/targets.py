"""What a run does: call an operation, prompt the agent, send a message, or run a workflow's steps.

Every target goes through the host (``ctx.call``, ``MasterChat``): hooks, limits and the operation
log apply as to any other caller, and a slice that is not installed fails the run with the reason.
"""

from __future__ import annotations

import json
import string
import time
from typing import Any

from refactorbot import IncomingMessage, MasterChat, OperationFailed, SliceContext, SliceUnavailable


class RunFailed(Exception):
    """A run that did not succeed, with the reason and what became of its delivery."""

    def __init__(self, reason: str, delivery: str | None = None, steps: list[dict[str, Any]] | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delivery = delivery
        self.steps = steps


class RunSkipped(RunFailed):
    """A run with nothing to do: recorded ``skipped`` with the reason, not counted as a failure."""


class Outcome:
    """A successful run: its output, what became of its delivery, the steps of a workflow."""

    def __init__(self, output: str, delivery: str | None = None, steps: list[dict[str, Any]] | None = None) -> None:
        self.output, self.delivery, self.steps = output, delivery, steps


def as_text(data: Any) -> str:
    """Return operation data as text: strings as they are, anything else as JSON."""
    return data if isinstance(data, str) else json.dumps(data, sort_keys=True, default=str)


async def call(ctx: SliceContext, operation: str, payload: dict[str, Any]) -> Any:
    """Call ``slice.operation``; raise ``RunFailed`` with the reason when it fails or is unavailable."""
    try:
        return await ctx.call(operation, **payload)
    except SliceUnavailable as exc:
        raise RunFailed(f"{operation}: {exc}") from None
    except OperationFailed as exc:
        raise RunFailed(str(exc)) from None


async def send(ctx: SliceContext, channel: str, chat_id: str, **message: Any) -> str:
    """Send through the communication slice; return ``sent to ...`` or raise ``RunFailed`` with ``failed: ...``.

    ``communication.send`` answers once the platform took the message (its status is ``sent``);
    later delivery reports of platforms that have them are in the communication slice's message log,
    under the message number recorded here.
    """
    try:
        sent = await ctx.call("communication.send", channel=channel, chat_id=chat_id, **message)
    except SliceUnavailable as exc:
        reason = f"not delivered to {channel}:{chat_id}: {exc}"
        raise RunFailed(reason, delivery=f"failed: {exc}") from None
    except OperationFailed as exc:
        reason = exc.error_message or str(exc)
        raise RunFailed(reason, delivery=f"failed: {reason}") from None
    ids = ", ".join(sent.get("platform_ids") or [])
    return f"{sent.get('status') or 'sent'} to {channel}:{chat_id} (message {sent['id']}; platform ids {ids})"


async def prompt(ctx: SliceContext, job: str, text: str, channel: str | None = None, chat_id: str | None = None) -> str:
    """Run one agent turn: in session ``cron:<job>``, or in the session of ``channel``/``chat_id``."""
    if ctx.host is None:
        raise RunFailed("no host to run the agent in")
    if not ctx.has_slice("agent"):
        raise RunFailed("no agent slice is running: pip install refactorbot-slice-agent")
    message = IncomingMessage(
        channel=channel or "cron",
        chat_id=chat_id or job,
        sender_id="scheduler" if channel is None else f"scheduler:{job}",
        sender_name="scheduler",
        text=text,
        metadata={"job": job},
    )
    reply = await MasterChat(ctx.host).process_message(message)
    if not reply.metadata.get("ok"):
        raise RunFailed(f"the agent did not answer: {reply.metadata.get('error') or reply.text}")
    return reply.text


def fill(value: Any, outputs: dict[str, Any]) -> Any:
    """Fill ``$prev`` and ``$<step>`` in strings (a string that is only ``$name`` gets the data itself)."""
    if isinstance(value, str):
        if value.startswith("$") and value[1:] in outputs:
            return outputs[value[1:]]
        texts = {k: as_text(v) for k, v in outputs.items()}
        return string.Template(value).safe_substitute(texts)
    if isinstance(value, dict):
        return {k: fill(v, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, outputs) for v in value]
    return value


async def workflow(ctx: SliceContext, job: str, steps: list[dict[str, Any]], limit: int) -> Outcome:
    """Run steps in order, each seeing earlier outputs; stop at the first failure, keeping each step's record."""
    outputs: dict[str, Any] = {}
    record: list[dict[str, Any]] = []
    for step in steps:
        started = time.time()
        entry: dict[str, Any] = {"name": step["name"], "started_at": started}
        record.append(entry)
        try:
            if step.get("operation"):
                entry["operation"] = step["operation"]
                data = await call(ctx, step["operation"], fill(step.get("payload") or {}, outputs))
            else:
                data = await prompt(ctx, job, str(fill(step["prompt"], outputs)))
        except RunFailed as exc:
            entry.update(status="failed", error=exc.reason[:limit], ended_at=time.time())
            raise RunFailed(f"step {step['name']} failed: {exc.reason}", steps=record) from None
        entry.update(status="succeeded", output=as_text(data)[:limit], ended_at=time.time())
        outputs[step["name"]] = outputs["prev"] = data
    return Outcome(as_text(outputs["prev"]), steps=record)


async def run_target(ctx: SliceContext, job: str, target: dict[str, Any], limit: int) -> Outcome:
    """Run one attempt of a job's target."""
    kind = target["type"]
    if kind == "operation":
        return Outcome(as_text(await call(ctx, target["operation"], target.get("payload") or {})))
    if kind == "prompt":
        answer = await prompt(ctx, job, target["prompt"], target.get("channel"), target.get("chat_id"))
        if target.get("channel") and target.get("deliver", True):
            delivery = await _deliver_answer(ctx, target["channel"], target["chat_id"], answer)
            return Outcome(answer, delivery)
        return Outcome(answer)
    if kind == "message":
        message = {k: target[k] for k in ("text", "template") if target.get(k) is not None}
        if target.get("template") is not None:
            message["variables"] = target.get("variables") or {}
        delivery = await send(ctx, target["channel"], target["chat_id"], **message)
        return Outcome(delivery, delivery)
    if kind == "workflow":
        return await workflow(ctx, job, target["steps"], limit)
    raise RunFailed(f"unknown target type {kind!r}")


async def _deliver_answer(ctx: SliceContext, channel: str, chat_id: str, answer: str) -> str:
    try:
        return await send(ctx, channel, chat_id, text=answer)
    except RunFailed as exc:
        raise RunFailed(f"the agent answered, but {exc.reason}", delivery=exc.delivery) from None
