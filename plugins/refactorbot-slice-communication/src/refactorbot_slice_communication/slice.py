"""The communication slice: runs the channel adapters and carries every message between them and the agent.

Inbound: adapter → ``intake`` (access control, durable de-duplication, the message log) → the
chat's lane → ``MasterChat`` → the reply. Outbound: render → split at the channel's limit →
send each part with retries (``Retry-After`` honoured) → recorded ``sent`` with the platform's
ids, or ``failed`` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sqlite3
import time
from typing import Any

from pydantic import BaseModel
from refactorbot import (
    CHANNEL_NAME,
    AtomicSlice,
    ChannelAdapter,
    ChannelConfig,
    ChannelError,
    ConfigError,
    Delivery,
    FormattingRejected,
    HealthState,
    HealthStatus,
    IncomingMessage,
    MediaRef,
    OutgoingMessage,
    RefactorbotError,
    SendFailed,
    operation,
    send_span,
)

from refactorbot_slice_communication import access
from refactorbot_slice_communication.grouped import GroupCommit
from refactorbot_slice_communication.lanes import Lanes
from refactorbot_slice_communication.models import (
    ChannelInfo,
    ChannelList,
    CommunicationConfig,
    MessagePage,
    MessageRecord,
    MessagesParams,
    NoParams,
    PairingCode,
    PairingList,
    PairingListParams,
    PairingRequest,
    Purged,
    Removed,
    SendParams,
    SendResult,
    Status,
    Template,
    TemplateList,
    TemplateName,
    TemplateSetParams,
    Traffic,
    TrafficBucket,
    TrafficParams,
    fill_template,
    template_variables,
)
from refactorbot_slice_communication.runtime import ChannelRunner, one_line
from refactorbot_slice_communication.streaming import StreamedReply


def _write_one(conn: sqlite3.Connection, sql: str, params: Any) -> tuple[int, int]:
    """Run one statement; return (lastrowid, rows changed)."""
    cursor = conn.execute(sql, params)
    return cursor.lastrowid or 0, max(0, cursor.rowcount)


_INSERT_IN = (
    "INSERT INTO messages (direction, kind, channel, chat_id, sender_id, sender_name, message_id, reply_to, text,"
    " is_group, mentions_bot, media, status, detail, created_at, updated_at)"
    " VALUES ('in', 'message', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_OUT = (
    "INSERT INTO messages (direction, kind, channel, chat_id, reply_to, text, status, in_reply_to, created_at,"
    " updated_at) VALUES ('out', ?, ?, ?, ?, ?, 'pending', ?, ?, ?)"
)
_COUNTERS = ("inbound", "outbound", "failed", "refused", "duplicates")
#: Delivery reports, furthest last (``failed`` stands apart).
_REACHED = {"sent": 1, "delivered": 2, "read": 3}
#: Reports naming an id no sent message has (yet) are kept this long, and at most this many.
ORPHAN_REPORT_TTL = 86_400.0
MAX_ORPHAN_REPORTS = 10_000


@dataclasses.dataclass(frozen=True)
class _Outgoing:
    kind: str
    channel: str
    chat_id: str
    reply_to: str | None
    text: str
    in_reply_to: int | None
    created_at: float


class SendOutcome:
    """What became of one outgoing message."""

    def __init__(self, row: int, status: str, ids: list[str], parts: int, error: str | None = None) -> None:
        self.row, self.status, self.ids, self.parts, self.error = row, status, ids, parts, error


class SliceInbound:
    """What adapters are bound to: messages go to the slice's intake, delivery reports to its record."""

    def __init__(self, owner: CommunicationSlice) -> None:
        self._owner = owner

    async def __call__(self, message: IncomingMessage) -> Delivery:
        return await self._owner.intake(message)

    async def report_delivery(
        self, channel: str, message_id: str, status: str, reason: str | None, chat_id: str | None
    ) -> bool:
        return await self._owner.report_delivery(channel, message_id, status, reason, chat_id)


class _StreamSink:
    """What a streamed reply uses of the slice: the adapter, retried sends, and the record of its parts."""

    def __init__(self, owner: CommunicationSlice, in_reply_to: int) -> None:
        self._owner = owner
        self.in_reply_to = in_reply_to
        self.created_at = time.time()

    def adapter(self, channel: str) -> ChannelAdapter:
        return self._owner._adapter(channel)

    async def send_part(self, channel: str, message: OutgoingMessage, tries: list[int]) -> list[str]:
        return await self._owner._send_part(channel, message, tries)

    async def parts_sent(self, reply: StreamedReply) -> None:
        await self._owner._record_stream_parts(reply, self)


class CommunicationSlice(AtomicSlice):
    """Chat channels: runs the adapters, access control, per-chat turns, the message log, templates."""

    slice_id = "communication"
    version = "0.1.0"
    description = "Chat channels: adapters, access control and pairing, per-chat turns, message log, templates."
    requires = ("session", "agent")
    Config = CommunicationConfig

    def __init__(self, ctx: Any, config: BaseModel | None = None) -> None:
        super().__init__(ctx, config)
        self.settings: CommunicationConfig = self.config  # type: ignore[assignment]
        self.runners: dict[str, ChannelRunner] = {}
        self.lanes = Lanes(self.settings.max_queue_per_chat, self.settings.max_concurrent_turns)
        #: Inbound rows whose turn is queued or running in this process: resuming never queues them twice.
        self._turns: set[int] = set()
        self.serving = False
        self._accepting = False
        self._counts: dict[str, dict[str, int]] = {}
        self._dirty: set[str] = set()
        self._maintenance: asyncio.Task[None] | None = None
        #: Delivery reports waiting for their message to be recorded (none: nothing to link).
        self._orphan_reports = 0
        self._grouped: GroupCommit | None = None

    @property
    def grouped(self) -> GroupCommit:
        """The group commit of the per-message writes (arrival, claim, outcome) to this slice's database."""
        assert self.db is not None
        if self._grouped is None or self._grouped.db is not self.db:
            self._grouped = GroupCommit(self.db)
        return self._grouped

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Record the registered channels; in ``refactorbot serve``, run the enabled ones."""
        self.serving = self.ctx.host is not None and self.ctx.host.serving
        self._load_channels()
        await self._load_counts()
        for runner in self.runners.values():
            await self._save_channel(runner)
        if not self.serving:
            return
        await self._recover()
        await self._purge()
        self._accepting = True
        inbound = SliceInbound(self)
        for runner in self.runners.values():
            runner.start(
                inbound,
                self._channel_changed,
                timeout=self.settings.channel_start_timeout,
                backoff=self.settings.channel_backoff,
                backoff_max=self.settings.channel_backoff_max,
                ctx=self.ctx,
            )
        self._maintenance = asyncio.get_running_loop().create_task(self._maintain(), name="communication maintenance")

    async def stop(self) -> None:
        """Stop taking messages, interrupt running turns, stop the channels, write the counters."""
        self._accepting = False
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
            self._maintenance = None
        await self.lanes.close(self.settings.stop_grace)
        self._turns.clear()  # dropped jobs: their rows stay queued for the next start
        for runner in self.runners.values():
            await runner.stop()
            if self.db is not None:
                await self._save_channel(runner)
        if self._grouped is not None:  # the writes of turns that ended meanwhile come first
            await self._grouped.drain()
        if self.db is not None and self.serving:
            now = time.time()
            await self._write(
                "UPDATE messages SET status = 'interrupted', detail = 'the server stopped during the turn',"
                " updated_at = ? WHERE direction = 'in' AND status = 'running'",
                (now,),
            )
            await self._flush_counts()

    async def shutdown(self) -> None:
        """Let the per-message writes still queued commit, then close the database."""
        if self._grouped is not None:
            await self._grouped.drain()
        await super().shutdown()

    async def health_check(self) -> HealthStatus:
        """Report the database, and degraded with one line per channel that cannot run."""
        status = await super().health_check()
        if not status.healthy:
            return status
        down = [r for r in self.runners.values() if r.enabled and r.status in ("failed", "invalid")]
        details = {name: r.summary for name, r in self.runners.items()}
        if down:
            parts = []
            for runner in down:
                retry = ""
                if runner.next_retry_at is not None:
                    retry = f" (retry in {max(0.0, runner.next_retry_at - time.time()):.0f}s)"
                parts.append(f"channel {runner.name}: {runner.error}{retry}")
            return HealthStatus(status=HealthState.DEGRADED, message="; ".join(parts), details=details)
        return HealthStatus(details=details)

    # -- channels ----------------------------------------------------------------------------------

    def _load_channels(self) -> None:
        registry = self.ctx.host.plugins.registry.channels if self.ctx.host is not None else {}
        env = self.ctx.env
        for name, registered in sorted(registry.items()):
            cls, plugin = registered.obj, registered.plugin
            if not (isinstance(cls, type) and issubclass(cls, ChannelAdapter)):
                self.runners[name] = ChannelRunner(
                    name,
                    ChannelAdapter,  # type: ignore[type-abstract]  # never started: marked invalid
                    plugin,
                    None,
                    True,
                    env,
                    invalid=f"{cls!r} is not a ChannelAdapter subclass",
                )
                continue
            if not CHANNEL_NAME.match(name):
                invalid = f"channel name {name!r} must match {CHANNEL_NAME.pattern}"
                self.runners[name] = ChannelRunner(name, cls, plugin, None, True, env, invalid=invalid)
                continue
            try:
                settings: ChannelConfig = self.ctx.settings.section("channels", name, cls.Config, env)
                enabled = settings.enabled if settings.enabled is not None else cls.enabled_by_default(settings, env)
            except ConfigError as exc:
                self.runners[name] = ChannelRunner(name, cls, plugin, None, True, env, invalid=str(exc))
                self.log.error("channel %s not run: %s", name, exc)
                continue
            except Exception as exc:  # a broken enabled_by_default is that channel's problem only
                reason = one_line(exc)
                self.runners[name] = ChannelRunner(name, cls, plugin, None, True, env, invalid=reason)
                self.log.error("channel %s not run: %s", name, reason)
                continue
            self.runners[name] = ChannelRunner(name, cls, plugin, settings, bool(enabled), env)
            self.runners[name].state_dir = self.ctx.home / "channels" / name
            if settings.stream and enabled and cls.edit is ChannelAdapter.edit:
                self.log.warning("channel %s: stream = true ignored: the channel cannot edit messages", name)

    async def _channel_changed(self, runner: ChannelRunner) -> None:
        await self._save_channel(runner)
        if runner.running:
            await self._resume_queued(runner.name)

    async def _save_channel(self, runner: ChannelRunner) -> None:
        counts = self._counts.setdefault(runner.name, dict.fromkeys(_COUNTERS, 0))
        await self._write(
            "INSERT INTO channels (name, plugin, enabled, status, last_error, last_error_at, started_at,"
            " next_retry_at, restarts, inbound_count, outbound_count, failed_count, refused_count, duplicate_count,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET"
            " plugin = excluded.plugin, enabled = excluded.enabled, status = excluded.status,"
            " last_error = COALESCE(excluded.last_error, channels.last_error),"
            " last_error_at = COALESCE(excluded.last_error_at, channels.last_error_at),"
            " started_at = excluded.started_at, next_retry_at = excluded.next_retry_at, restarts = excluded.restarts,"
            " inbound_count = excluded.inbound_count, outbound_count = excluded.outbound_count,"
            " failed_count = excluded.failed_count, refused_count = excluded.refused_count,"
            " duplicate_count = excluded.duplicate_count, updated_at = excluded.updated_at",
            (
                runner.name,
                runner.plugin,
                int(runner.enabled),
                runner.status,
                runner.error,
                runner.error_at,
                runner.started_at,
                runner.next_retry_at,
                runner.restarts,
                *(counts[c] for c in _COUNTERS),
                time.time(),
            ),
        )
        self._dirty.discard(runner.name)

    async def _load_counts(self) -> None:
        assert self.db is not None
        for row in await self.db.fetchall("SELECT * FROM channels"):
            self._counts[row["name"]] = {
                "inbound": row["inbound_count"],
                "outbound": row["outbound_count"],
                "failed": row["failed_count"],
                "refused": row["refused_count"],
                "duplicates": row["duplicate_count"],
            }

    def _count(self, channel: str, counter: str) -> None:
        self._counts.setdefault(channel, dict.fromkeys(_COUNTERS, 0))[counter] += 1
        self._dirty.add(channel)

    async def _flush_counts(self) -> None:
        for name in sorted(self._dirty):
            counts = self._counts[name]
            await self._write(
                "UPDATE channels SET inbound_count = ?, outbound_count = ?, failed_count = ?, refused_count = ?,"
                " duplicate_count = ?, updated_at = ? WHERE name = ?",
                (*(counts[c] for c in _COUNTERS), time.time(), name),
            )
        self._dirty.clear()

    def webhook_adapter(self, name: str) -> ChannelAdapter | None:
        """Return the running adapter serving ``/hooks/<name>``, if any."""
        runner = self.runners.get(name)
        if runner is None or not runner.running or not runner.cls.webhook:
            return None
        return runner.adapter

    # -- maintenance -------------------------------------------------------------------------------

    async def _maintain(self) -> None:
        last_purge = time.monotonic()
        while True:
            await asyncio.sleep(min(5.0, self.settings.maintenance_interval))
            try:
                await self._flush_counts()
                if time.monotonic() - last_purge >= self.settings.maintenance_interval:
                    last_purge = time.monotonic()
                    await self._purge()
            except Exception:  # maintenance must survive a busy or failing database
                self.log.exception("communication maintenance failed")

    async def _purge(self) -> dict[str, int]:
        """Delete log rows past ``retention_days`` or ``retention_max_rows`` (in batches), remembered ids
        past ``dedupe_days``, old pairings."""
        now = time.time()
        removed = {"messages": 0, "seen": 0, "pairing": 0, "reports": 0}
        assert self.db is not None
        # Messages still waiting or running are never deleted (they count toward the row bound).
        # Each batch is its own transaction: a pass cancelled by stop() leaves whole batches only.
        removed["messages"] = await self.db.prune(
            "messages",
            "created_at",
            max_age_seconds=self.settings.retention_days * 86_400 or None,
            max_rows=self.settings.retention_max_rows or None,
            batch=self.settings.retention_batch,
            where="status NOT IN ('queued', 'running', 'pending')",
            now=now,
        )
        removed["seen"] = await self._write_count(
            "DELETE FROM seen WHERE received_at < ?", (now - self.settings.dedupe_days * 86_400,)
        )
        removed["pairing"] = await self._write_count(
            "DELETE FROM pairing WHERE expires_at < ? AND status = 'pending'", (now - 86_400,)
        )
        removed["reports"] = await self._write_count(
            "DELETE FROM delivery_reports WHERE message_row IS NULL AND reported_at < ?", (now - ORPHAN_REPORT_TTL,)
        )
        self._orphan_reports = int(
            await self.db.scalar("SELECT COUNT(*) FROM delivery_reports WHERE message_row IS NULL") or 0
        )
        if any(removed.values()):
            self.log.info("purged %s", removed)
        return removed

    async def _recover(self) -> None:
        """After a restart: turns that were running are interrupted; sends that were pending failed."""
        now = time.time()
        await self._write(
            "UPDATE messages SET status = 'interrupted', detail = 'the server stopped during the turn',"
            " updated_at = ? WHERE direction = 'in' AND status = 'running'",
            (now,),
        )
        await self._write(
            "UPDATE messages SET status = 'failed', detail = 'the server stopped before it was sent',"
            " updated_at = ? WHERE direction = 'out' AND status = 'pending'",
            (now,),
        )

    async def _resume_queued(self, channel: str) -> None:
        """Queue again the messages of ``channel`` that were waiting when the server stopped."""
        assert self.db is not None
        rows = await self.db.fetchall(
            "SELECT * FROM messages WHERE direction = 'in' AND status = 'queued' AND channel = ? ORDER BY id",
            (channel,),
        )
        for row in rows:
            key = (channel, row["chat_id"])
            # Taken by its intake (it arrived as the channel started): marked in the transaction
            # that recorded it, so before this read could see the row.
            if row["id"] in self._turns:
                continue
            if not self.lanes.reserve(key):
                continue
            message = IncomingMessage(
                channel=channel,
                chat_id=row["chat_id"],
                sender_id=row["sender_id"] or "",
                sender_name=row["sender_name"],
                text=row["text"],
                message_id=row["message_id"] or str(row["id"]),
                is_group=bool(row["is_group"]),
                mentions_bot=bool(row["mentions_bot"]),
                reply_to=row["reply_to"],
                media=[MediaRef.model_validate(m) for m in json.loads(row["media"] or "[]")],
            )
            self._submit_turn(key, row["id"], message)

    # -- database helpers --------------------------------------------------------------------------

    async def _write(self, sql: str, params: Any = ()) -> int:
        """Run one write in its own transaction (never inside another coroutine's); return lastrowid.

        Shielded: a caller cancelled mid-write leaves the write to finish, not the connection
        inside an open transaction.
        """
        return (await asyncio.shield(self._run_write(sql, params)))[0]

    async def _write_count(self, sql: str, params: Any = ()) -> int:
        return (await asyncio.shield(self._run_write(sql, params)))[1]

    async def _run_write(self, sql: str, params: Any) -> tuple[int, int]:
        assert self.db is not None
        return await self.db.atomic(_write_one, sql, params)

    # -- inbound -----------------------------------------------------------------------------------

    async def intake(self, message: IncomingMessage) -> Delivery:
        """Take one message from an adapter: decide, de-duplicate durably, log, queue its turn."""
        runner = self.runners.get(message.channel)
        if not self._accepting or self.db is None or runner is None or runner.settings is None:
            return Delivery.UNAVAILABLE
        settings = runner.settings
        approved = False
        replied_to_bot = False
        if not message.is_group and settings.dm_policy in ("pairing", "allowlist"):
            approved = (
                await self.db.scalar(
                    "SELECT 1 FROM approved_senders WHERE channel = ? AND sender_id = ?",
                    (message.channel, message.sender_id),
                )
                is not None
            )
        if message.is_group and not message.mentions_bot and message.reply_to:
            replied_to_bot = (
                await self.db.scalar(
                    "SELECT 1 FROM sent_ids WHERE channel = ? AND chat_id = ? AND platform_id = ?",
                    (message.channel, message.chat_id, message.reply_to),
                )
                is not None
            )
        decision = access.decide(message, settings, approved=approved, replied_to_bot=replied_to_bot)
        if decision.verdict == "ignore":
            return Delivery.REFUSED
        key = (message.channel, message.chat_id)
        queued = decision.verdict in ("allow", "pair")
        if queued and not self.lanes.reserve(key):
            return Delivery.BUSY
        # Group-committed with the other messages of the moment. The row is marked taken by this
        # intake inside its transaction (``taken``), so a resume that reads the queued rows after
        # the commit leaves it to the intake. Shielded: a cancelled intake leaves the write to
        # finish, and the row, never queued here, to a later start of the channel.
        taken: list[int] = []
        recording = self.grouped.submit(self._record_inbound_now, message, decision, time.time(), taken)
        try:
            duplicate, row, code = await asyncio.shield(recording)
        except BaseException:
            if queued:
                self.lanes.release(key)
            recording.add_done_callback(lambda _: self._turns.difference_update(taken))
            raise
        if duplicate:
            if queued:
                self.lanes.release(key)
            self._count(message.channel, "duplicates")
            return Delivery.DUPLICATE
        self._count(message.channel, "inbound")
        if decision.verdict == "allow":
            self._submit_turn(key, row, message)
            return Delivery.ACCEPTED
        self._count(message.channel, "refused")
        if code is not None:
            text = access.pairing_text(code, max(1, round(self.settings.pairing_ttl / 60)))
            self.lanes.submit(key, lambda: self._send_quietly(message.channel, message.chat_id, text, "pairing", row))
        elif queued:
            self.lanes.release(key)
        return Delivery.REFUSED

    def _record_inbound_now(
        self,
        conn: sqlite3.Connection,
        message: IncomingMessage,
        decision: access.Decision,
        now: float,
        taken: list[int],
    ) -> tuple[bool, int, str | None]:
        """Record the id (a duplicate stops here) and the message; return (duplicate, row, pairing code).

        Runs on the database thread, inside the transaction (shared with the other messages
        arriving at the same moment) that commits it.
        """
        detail = decision.reason or None
        code: str | None = None
        cursor = conn.execute(
            "INSERT OR IGNORE INTO seen (channel, message_id, received_at) VALUES (?, ?, ?)",
            (message.channel, message.message_id, now),
        )
        if cursor.rowcount == 0:
            return True, 0, None
        if decision.verdict == "pair":
            code, detail = self._pairing_code(conn, message, now)
        cursor = conn.execute(
            _INSERT_IN,
            (
                message.channel,
                message.chat_id,
                message.sender_id,
                message.sender_name,
                message.message_id,
                message.reply_to,
                message.text,
                int(message.is_group),
                int(message.mentions_bot),
                json.dumps([m.model_dump(mode="json") for m in message.media]) if message.media else None,
                "queued" if decision.verdict == "allow" else "refused",
                detail,
                now,
                now,
            ),
        )
        row = cursor.lastrowid or 0
        if decision.verdict == "allow":  # before the commit: see intake
            self._turns.add(row)
            taken.append(row)
        return False, row, code

    def _pairing_code(self, conn: sqlite3.Connection, message: IncomingMessage, now: float) -> tuple[str | None, str]:
        """Create a pairing request for a new sender; return (code to send or None, the log's detail)."""
        if (
            conn.execute(
                "SELECT code FROM pairing WHERE channel = ? AND sender_id = ? AND status = 'pending' AND expires_at > ?",
                (message.channel, message.sender_id, now),
            ).fetchone()
            is not None
        ):
            return None, "waiting for the owner to approve this sender's pairing code"
        if (
            conn.execute(
                "SELECT 1 FROM pairing WHERE channel = ? AND sender_id = ? AND status = 'denied' AND decided_at > ?",
                (message.channel, message.sender_id, now - 86_400),
            ).fetchone()
            is not None
        ):
            return None, "the owner denied this sender's pairing in the last 24 hours"
        pending = conn.execute(
            "SELECT COUNT(*) FROM pairing WHERE channel = ? AND status = 'pending' AND expires_at > ?",
            (message.channel, now),
        ).fetchone()[0]
        if pending >= self.settings.max_pending_pairings:
            self.log.warning("channel %s: %d pairing requests pending; no new code sent", message.channel, pending)
            return None, "too many pairing requests pending; no code sent"
        code = access.new_code()
        conn.execute(
            "INSERT INTO pairing (code, channel, sender_id, sender_name, chat_id, status, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, 'pending', ?, ?)",
            (
                code,
                message.channel,
                message.sender_id,
                message.sender_name,
                message.chat_id,
                now,
                now + self.settings.pairing_ttl,
            ),
        )
        return code, "pairing code sent; the owner must approve it"

    def _submit_turn(self, key: tuple[str, str], row: int, message: IncomingMessage) -> None:
        self._turns.add(row)

        async def job() -> None:
            try:
                await self._turn(row, message)
            finally:
                self._turns.discard(row)

        self.lanes.submit(key, job)

    async def _turn(self, row: int, message: IncomingMessage) -> None:
        """Run one turn of a chat through ``MasterChat`` and send the reply on the same chat."""
        from refactorbot import MasterChat

        assert self.db is not None
        # The claim: only the turn that moves its row from queued to running runs (a message resumed
        # as its channel started while its intake queued it too runs once).
        _, claimed = await self.grouped.run(
            _write_one,
            "UPDATE messages SET status = 'running', updated_at = ? WHERE id = ? AND status = 'queued'",
            (time.time(), row),
        )
        if not claimed:
            self.log.debug("channel %s: message row %d is already taken by another turn", message.channel, row)
            return
        runner = self.runners.get(message.channel)
        adapter = runner.adapter if runner is not None else None
        if self.settings.typing and adapter is not None and type(adapter).typing is not ChannelAdapter.typing:
            try:
                await asyncio.wait_for(adapter.typing(message.chat_id), 5.0)
            except Exception as exc:  # a typing indicator is a nicety
                self.log.debug("channel %s: typing failed: %s", message.channel, one_line(exc))
        settings = runner.settings if runner is not None else None
        if settings is not None and settings.stream and adapter is not None and adapter.supports_edit:
            await self._streamed_turn(row, message, settings)
            return
        error: str | None
        try:
            reply = await MasterChat(self.ctx.host).process_message(message)
            error = reply.metadata.get("error")
            text = reply.text
        except Exception as exc:  # MasterChat answers failures itself; anything else is a bug, logged
            self.log.exception("channel %s: the turn of chat %s raised", message.channel, message.chat_id)
            error, text = one_line(exc), ""
        if error and self._host_stopping():
            await self._write(
                "UPDATE messages SET status = 'interrupted', detail = ?, updated_at = ? WHERE id = ?",
                (f"the server stopped during the turn: {error}", time.time(), row),
            )
            return
        if error:
            self.log.warning("channel %s: the turn of chat %s failed: %s", message.channel, message.chat_id, error)
            text = self.settings.failure_reply
        # The turn's outcome is recorded with its reply, in one transaction once the reply is sent
        # (or finally failed); until then the row says running, and a crash leaves it interrupted.
        outcome = await self.deliver(
            message.channel,
            message.chat_id,
            text,
            kind="reply",
            reply_to=message.message_id,
            in_reply_to=row,
            answered=("failed" if error else "answered", error),
        )
        if outcome.error:
            self.log.warning(
                "channel %s: the reply to chat %s failed: %s", message.channel, message.chat_id, outcome.error
            )

    async def _streamed_turn(self, row: int, message: IncomingMessage, settings: ChannelConfig) -> None:
        """Run one turn streamed into the chat: parts sent as text starts, edited as it grows, a final edit."""
        from refactorbot import MasterChat

        chat = MasterChat(self.ctx.host)
        sink = _StreamSink(self, row)
        reply = StreamedReply(
            sink,
            message.channel,
            message.chat_id,
            message.message_id,
            interval=settings.stream_interval,
            attempts=self.settings.send_attempts,
            backoff=self.settings.send_backoff,
            backoff_max=self.settings.send_backoff_max,
            max_retry_after=self.settings.max_retry_after,
        )
        error: str | None
        try:
            await reply.consume(chat.stream_message(message, announce_failure=False))
            last = chat.last_reply
            error = last.metadata.get("error") if last is not None else "the turn ended without a reply"
            text = last.text if last is not None and not error else reply.text
        except Exception as exc:  # MasterChat answers failures itself; anything else is a bug, logged
            self.log.exception("channel %s: the streamed turn of chat %s raised", message.channel, message.chat_id)
            error, text = one_line(exc), reply.text
        if error and self._host_stopping():
            detail = f"the server stopped during the turn: {error}"
            now = time.time()
            await self._write(
                "UPDATE messages SET status = 'interrupted', detail = ?, updated_at = ? WHERE id = ?",
                (detail, now, row),
            )
            if reply.row is not None:
                await self._write(
                    "UPDATE messages SET status = 'failed', detail = ?, text = ?, updated_at = ? WHERE id = ?",
                    (detail, reply.text, now, reply.row),
                )
            return
        if error:
            self.log.warning("channel %s: the turn of chat %s failed: %s", message.channel, message.chat_id, error)
            text = f"{text.rstrip()}\n\n{self.settings.failure_reply}" if text.strip() else self.settings.failure_reply
        answered = ("failed" if error else "answered", error)
        if not reply.started:  # nothing shown yet (a quick answer): an ordinary reply
            outcome = await self.deliver(
                message.channel,
                message.chat_id,
                text,
                kind="reply",
                reply_to=message.message_id,
                in_reply_to=row,
                answered=answered,
            )
            if outcome.error:
                self.log.warning(
                    "channel %s: the reply to chat %s failed: %s", message.channel, message.chat_id, outcome.error
                )
            return
        failure = await reply.finish(text)
        outgoing = _Outgoing("reply", message.channel, message.chat_id, message.message_id, text, row, sink.created_at)
        status = "failed" if failure else "sent"
        await asyncio.shield(
            self._record_out(
                reply.row, outgoing, status, reply.ids, len(reply.shown), reply.tries[0], failure, answered
            )
        )
        self._count(message.channel, "failed" if failure else "outbound")
        if failure:
            self.log.warning("channel %s: the reply to chat %s failed: %s", message.channel, message.chat_id, failure)

    async def _record_stream_parts(self, reply: StreamedReply, sink: _StreamSink) -> None:
        """Record a streamed reply's parts as they are sent: the row (pending) and its platform ids."""
        now = time.time()
        if reply.row is None:
            reply.row = await self._write(
                _INSERT_OUT,
                ("reply", reply.channel, reply.chat_id, reply.reply_to, reply.text, sink.in_reply_to, now, now),
            )
        await asyncio.shield(self._record_ids(reply.row, reply.channel, reply.chat_id, reply.ids, len(reply.shown)))

    async def _record_ids(self, row: int, channel: str, chat_id: str, ids: list[str], parts: int) -> None:
        assert self.db is not None
        if await self.db.atomic(self._record_ids_now, row, channel, chat_id, ids, parts, time.time()):
            self._count(channel, "failed")

    def _record_ids_now(
        self, conn: sqlite3.Connection, row: int, channel: str, chat_id: str, ids: list[str], parts: int, now: float
    ) -> bool:
        conn.execute(
            "UPDATE messages SET platform_ids = ?, parts = ?, updated_at = ? WHERE id = ?",
            (json.dumps(ids), parts, now, row),
        )
        conn.executemany(
            "INSERT OR IGNORE INTO sent_ids (channel, chat_id, platform_id, message_row) VALUES (?, ?, ?, ?)",
            [(channel, chat_id, platform_id, row) for platform_id in ids],
        )
        return self._link_reports(conn, row, channel, chat_id, ids, now)

    def _host_stopping(self) -> bool:
        return (self.ctx.host is not None and self.ctx.host.stopping) or not self._accepting

    # -- outbound ----------------------------------------------------------------------------------

    async def _send_quietly(
        self, channel: str, chat_id: str, text: str, kind: str, in_reply_to: int | None, reply_to: str | None = None
    ) -> None:
        outcome = await self.deliver(channel, chat_id, text, kind=kind, reply_to=reply_to, in_reply_to=in_reply_to)
        if outcome.error:
            self.log.warning("channel %s: %s to chat %s failed: %s", channel, kind, chat_id, outcome.error)

    async def deliver(
        self,
        channel: str,
        chat_id: str,
        markdown: str,
        *,
        kind: str = "send",
        reply_to: str | None = None,
        in_reply_to: int | None = None,
        answered: tuple[str, str | None] | None = None,
    ) -> SendOutcome:
        """Send Markdown to a chat: render, split, send each part with retries; record the outcome.

        A message sent on its own is recorded ``pending`` first. The reply of a turn
        (``answered`` = the turn's status and error) is recorded once, with the turn's outcome,
        when it was sent or finally failed.
        """
        now = time.time()
        row: int | None = None
        if answered is None:
            row = await self._write(_INSERT_OUT, (kind, channel, chat_id, reply_to, markdown, in_reply_to, now, now))
        runner = self.runners.get(channel)
        ids: list[str] = []
        tries = [0]
        parts: list[str] = []
        current = 0
        status, error = "sent", None
        try:
            adapter = self._adapter(channel)
            parts = [p for p in adapter.split(adapter.render(markdown)) if p.strip()]
            if not parts:
                raise SendFailed("nothing to send: the text is empty", permanent=True)
            for current, part in enumerate(parts):
                message = OutgoingMessage(
                    channel=channel,
                    chat_id=chat_id,
                    text=part,
                    reply_to=reply_to if current == 0 else None,
                    text_format="platform",
                )
                ids += await self._send_part(channel, message, tries)
        except SendFailed as exc:
            where = f"part {current + 1} of {len(parts)}: " if len(parts) > 1 else ""
            status, error = "failed", where + exc.reason
        outgoing = _Outgoing(kind, channel, chat_id, reply_to, markdown, in_reply_to, now)
        row = await self._record_out(row, outgoing, status, ids, len(parts), tries[0], error, answered)
        if status == "failed":
            self._count(channel, "failed")
        elif runner is not None:
            self._count(channel, "outbound")
        return SendOutcome(row, status, ids, len(parts), error)

    def _adapter(self, channel: str) -> ChannelAdapter:
        runner = self.runners.get(channel)
        if runner is None:
            known = ", ".join(sorted(self.runners)) or "none"
            raise SendFailed(f"unknown channel {channel!r} (registered: {known})", permanent=True)
        if runner.adapter is None:
            if not self.serving:
                raise SendFailed(
                    f"channel {channel} runs only inside `refactorbot serve`; start the server and send again",
                    permanent=True,
                )
            why = f": {runner.error}" if runner.error else ""
            raise SendFailed(f"channel {channel} is {runner.status}{why}", permanent=not runner.enabled)
        return runner.adapter

    async def _send_part(self, channel: str, message: OutgoingMessage, tries: list[int]) -> list[str]:
        """Send one part, retrying with backoff; fall back to plain text if the formatting is refused.

        ``tries[0]`` counts every attempt, for the log.
        """
        attempt = 0
        while True:
            attempt += 1
            tries[0] += 1
            try:
                adapter = self._adapter(channel)
                with send_span(channel, message) as span:
                    span.set_attribute("refactorbot.send.attempt", attempt)
                    ids = await adapter.send(message)
                    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                        raise SendFailed(f"channel {channel} returned {ids!r} instead of a list of message ids")
                    span.set_attribute("refactorbot.message_ids", ids)
                return ids
            except FormattingRejected as exc:
                if message.text_format == "plain":
                    raise SendFailed(f"refused even as plain text: {exc.reason}", permanent=True) from None
                self.log.info("channel %s refused the formatting (%s); sending plain text", channel, exc.reason)
                sent: list[str] = []
                pieces = [p for p in adapter.split(adapter.plain(message.text)) if p.strip()]
                for index, piece in enumerate(pieces):
                    update: dict[str, Any] = {"text": piece, "text_format": "plain"}
                    if index:
                        update["reply_to"] = None
                    sent += await self._send_part(channel, message.model_copy(update=update), tries)
                return sent
            except SendFailed as exc:
                failure = exc
            except Exception as exc:  # the adapter broke in an unexpected way: retried like a network error
                failure = SendFailed(one_line(exc))
            if failure.permanent or attempt >= self.settings.send_attempts:
                suffix = f" (after {attempt} attempts)" if attempt > 1 else ""
                raise SendFailed(failure.reason + suffix, permanent=True) from None
            if failure.retry_after is not None:
                if failure.retry_after > self.settings.max_retry_after:
                    raise SendFailed(
                        f"{failure.reason}; the platform asked to wait {failure.retry_after:g}s, more than"
                        f" max_retry_after ({self.settings.max_retry_after:g}s)",
                        permanent=True,
                    ) from None
                delay = failure.retry_after
            else:
                delay = min(self.settings.send_backoff * 2 ** (attempt - 1), self.settings.send_backoff_max)
            self.log.info("channel %s: send failed (%s); retry %d in %.2fs", channel, failure.reason, attempt, delay)
            await asyncio.sleep(delay)

    async def _record_out(
        self,
        row: int | None,
        out: _Outgoing,
        status: str,
        ids: list[str],
        parts: int,
        attempts: int,
        error: str | None,
        answered: tuple[str, str | None] | None,
    ) -> int:
        """Record an outgoing message's outcome (and the turn's, for a reply) atomically; return its row.

        Committed together with the other messages' writes of the moment (group commit). Shielded:
        a cancelled caller leaves the record to be written (and counted).
        """
        recording = self.grouped.submit(
            self._record_out_now, row, out, status, ids, parts, attempts, error, answered, time.time()
        )
        recording.add_done_callback(lambda done: self._count_turned_failed(out.channel, done))
        recorded, _ = await asyncio.shield(recording)
        return recorded

    def _count_turned_failed(self, channel: str, done: asyncio.Future[tuple[int, bool]]) -> None:
        """Count a message that delivery reports recorded before it turned failed when it was recorded."""
        if not done.cancelled() and done.exception() is None and done.result()[1]:
            self._count(channel, "failed")

    def _record_out_now(
        self,
        conn: sqlite3.Connection,
        row: int | None,
        out: _Outgoing,
        status: str,
        ids: list[str],
        parts: int,
        attempts: int,
        error: str | None,
        answered: tuple[str, str | None] | None,
        now: float,
    ) -> tuple[int, bool]:
        if answered is not None and out.in_reply_to is not None:
            conn.execute(
                "UPDATE messages SET status = ?, detail = ?, updated_at = ? WHERE id = ?",
                (answered[0], answered[1], now, out.in_reply_to),
            )
        if row is None:
            cursor = conn.execute(
                "INSERT INTO messages (direction, kind, channel, chat_id, reply_to, text, status, in_reply_to,"
                " platform_ids, parts, attempts, detail, created_at, updated_at)"
                " VALUES ('out', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    out.kind,
                    out.channel,
                    out.chat_id,
                    out.reply_to,
                    out.text,
                    status,
                    out.in_reply_to,
                    json.dumps(ids),
                    parts,
                    attempts,
                    error,
                    out.created_at,
                    now,
                ),
            )
            row = cursor.lastrowid or 0
        else:
            conn.execute(
                "UPDATE messages SET status = ?, text = ?, platform_ids = ?, parts = ?, attempts = ?, detail = ?,"
                " updated_at = ? WHERE id = ?",
                (status, out.text, json.dumps(ids), parts, attempts, error, now, row),
            )
        turned_failed = False
        if ids:
            conn.executemany(
                "INSERT OR IGNORE INTO sent_ids (channel, chat_id, platform_id, message_row) VALUES (?, ?, ?, ?)",
                [(out.channel, out.chat_id, platform_id, row) for platform_id in ids],
            )
            turned_failed = self._link_reports(conn, row, out.channel, out.chat_id, ids, now)
        return row, turned_failed

    def _link_reports(
        self, conn: sqlite3.Connection, row: int, channel: str, chat_id: str, ids: list[str], now: float
    ) -> bool:
        """Give message ``row`` the delivery reports that arrived for its ids before it was recorded.

        Runs inside the caller's transaction (on the database's thread); return whether the
        reports turned the message failed.
        """
        if not self._orphan_reports or not ids:
            return False
        marks = ", ".join("?" * len(ids))
        cursor = conn.execute(
            "UPDATE delivery_reports SET message_row = ? WHERE message_row IS NULL AND channel = ?"  # noqa: S608  marks is only "?, ?, ..."; ids are parameters
            f" AND chat_id IN ('', ?) AND platform_id IN ({marks})",
            (row, channel, chat_id, *ids),
        )
        if cursor.rowcount > 0:
            self._orphan_reports = max(0, self._orphan_reports - cursor.rowcount)
            return self._apply_reports(conn, row, now)
        return False

    # -- delivery reports --------------------------------------------------------------------------

    async def report_delivery(
        self, channel: str, message_id: str, status: str, reason: str | None, chat_id: str | None
    ) -> bool:
        """Record what the platform said became of a sent message; return whether a sent message has the id.

        A report for an id no message has yet (it overtook the record of a message still being
        sent) is kept for a day and applied when the message is recorded; it returns False.
        """
        if self.db is None or not self.db.is_open:
            return False
        linked, failed = await asyncio.shield(
            self._record_report(channel, message_id, str(status), reason, chat_id or "")
        )
        if failed:
            self._count(channel, "failed")
        return linked

    async def _record_report(
        self, channel: str, message_id: str, status: str, reason: str | None, chat_id: str
    ) -> tuple[bool, bool]:
        """Store one report and re-apply its message's reports; return (linked to a message, turned it failed)."""
        assert self.db is not None
        return await self.db.atomic(self._record_report_now, channel, message_id, status, reason, chat_id, time.time())

    def _record_report_now(
        self,
        conn: sqlite3.Connection,
        channel: str,
        message_id: str,
        status: str,
        reason: str | None,
        chat_id: str,
        now: float,
    ) -> tuple[bool, bool]:
        sql = "SELECT message_row FROM sent_ids WHERE channel = ? AND platform_id = ?"
        args: list[object] = [channel, message_id]
        if chat_id:
            sql += " AND chat_id = ?"
            args.append(chat_id)
        found = conn.execute(sql + " ORDER BY message_row DESC LIMIT 1", args).fetchone()
        row: int | None = found[0] if found is not None else None
        if row is None and self._orphan_reports >= MAX_ORPHAN_REPORTS:
            self.log.warning(
                "channel %s: delivery report for unknown message %r dropped (%d unmatched reports kept)",
                channel,
                message_id[:80],
                self._orphan_reports,
            )
            return False, False
        cursor = conn.execute(
            "INSERT INTO delivery_reports (channel, platform_id, chat_id, status, reason, reported_at, message_row)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (channel, platform_id, chat_id, status) DO NOTHING",
            (channel, message_id, chat_id, status, reason, now, row),
        )
        if row is None:
            self._orphan_reports += max(0, cursor.rowcount)
            return False, False
        return True, self._apply_reports(conn, row, now)

    def _apply_reports(self, conn: sqlite3.Connection, row: int, now: float) -> bool:
        """Sum up the reports of message ``row`` into its delivery columns; return whether it turned failed.

        The rule: ``delivery`` is ``failed`` once any part was reported failed, else ``read`` when
        every part was reported read, ``delivered`` when every part was reported delivered (or
        read), else ``sent``. A part reported failed turns a ``sent`` message into ``failed`` with
        the reason; nothing turns a failed message back.
        """
        message = conn.execute("SELECT status, platform_ids FROM messages WHERE id = ?", (row,)).fetchone()
        if message is None:
            return False
        ids: list[str] = json.loads(message["platform_ids"] or "[]")
        reports = conn.execute(
            "SELECT platform_id, status, reason, reported_at FROM delivery_reports WHERE message_row = ?"
            " ORDER BY reported_at, id",
            (row,),
        ).fetchall()
        failure: Any = None
        delivered: dict[str, float] = {}
        read: dict[str, float] = {}
        for report in reports:
            reached = _REACHED.get(report["status"])
            if reached is None:
                failure = failure or report
                continue
            if reached >= 2:
                delivered.setdefault(report["platform_id"], report["reported_at"])
            if reached >= 3:
                read.setdefault(report["platform_id"], report["reported_at"])
        delivered_at = max(delivered[i] for i in ids) if ids and all(i in delivered for i in ids) else None
        read_at = max(read[i] for i in ids) if ids and all(i in read for i in ids) else None
        if failure is not None:
            delivery: str | None = "failed"
        elif read_at is not None:
            delivery = "read"
        elif delivered_at is not None:
            delivery = "delivered"
        else:
            delivery = "sent" if reports else None
        turned_failed = failure is not None and message["status"] == "sent"
        if turned_failed:
            which = f"part {ids.index(failure['platform_id']) + 1} of {len(ids)} " if len(ids) > 1 else ""
            detail = f"the platform reported {which}failed: {failure['reason'] or 'no reason given'}"
            conn.execute(
                "UPDATE messages SET status = 'failed', detail = ?, delivery = ?, delivered_at = ?, read_at = ?,"
                " updated_at = ? WHERE id = ?",
                (detail, delivery, delivered_at, read_at, now, row),
            )
        else:
            conn.execute(
                "UPDATE messages SET delivery = ?, delivered_at = ?, read_at = ?, updated_at = ? WHERE id = ?",
                (delivery, delivered_at, read_at, now, row),
            )
        return turned_failed

    # -- operations: sending and channels ------------------------------------------------------------

    @operation
    async def send(self, params: SendParams) -> SendResult:
        """Send a message (text or a template) to a chat of a running channel; fails with the reason if it cannot."""
        text = params.text
        if params.template is not None:
            template = await self._template(params.template)
            try:
                text = fill_template(params.template, template.body, params.variables)
            except ValueError as exc:
                raise RefactorbotError(str(exc)) from None
        assert text is not None
        if params.channel not in self.runners:
            known = ", ".join(sorted(self.runners)) or "none"
            raise ChannelError(f"unknown channel {params.channel!r} (registered: {known})")
        outcome = await self.deliver(params.channel, params.chat_id, text, kind="send", reply_to=params.reply_to)
        if outcome.error:
            raise ChannelError(
                f"send to {params.channel} chat {params.chat_id} failed: {outcome.error}"
                f" (recorded as failed: message {outcome.row})"
            )
        return SendResult(
            id=outcome.row,
            channel=params.channel,
            chat_id=params.chat_id,
            status=outcome.status,
            parts=outcome.parts,
            platform_ids=outcome.ids,
        )

    @operation
    async def channels(self, params: NoParams) -> ChannelList:
        """List registered channels: enabled, status, last error, next retry, traffic counts."""
        await self._flush_counts()
        assert self.db is not None
        stored = {row["name"]: row for row in await self.db.fetchall("SELECT * FROM channels")}
        infos = []
        for name in sorted(set(stored) | set(self.runners)):
            runner = self.runners.get(name)
            row = stored.get(name)
            counts = self._counts.get(name, dict.fromkeys(_COUNTERS, 0))
            info = ChannelInfo(
                name=name,
                plugin=runner.plugin if runner else row["plugin"] if row else None,
                enabled=runner.enabled if runner else bool(row["enabled"]) if row else False,
                status=(runner.status if runner else "not installed") if self.serving or not row else row["status"],
                last_error=(runner.error if runner and runner.error else row["last_error"] if row else None),
                last_error_at=(
                    runner.error_at if runner and runner.error_at else row["last_error_at"] if row else None
                ),
                started_at=(runner.started_at if runner and self.serving else row["started_at"] if row else None),
                next_retry_at=(
                    runner.next_retry_at if runner and self.serving else row["next_retry_at"] if row else None
                ),
                restarts=(runner.restarts if runner and self.serving else row["restarts"] if row else 0),
                held_by=runner.held_by if runner and self.serving else None,
                inbound=counts["inbound"],
                outbound=counts["outbound"],
                failed=counts["failed"],
                refused=counts["refused"],
                duplicates=counts["duplicates"],
            )
            if runner is not None and runner.cls is not ChannelAdapter:
                info.webhook = f"/hooks/{name}" if runner.cls.webhook else None
                info.text_limit = runner.adapter.text_limit if runner.adapter else runner.cls.text_limit
                info.supports_edit = runner.cls.edit is not ChannelAdapter.edit
                info.streaming = bool(runner.settings is not None and runner.settings.stream and info.supports_edit)
            infos.append(info)
        return ChannelList(serving=self.serving, channels=infos)

    @operation
    async def status(self, params: NoParams) -> Status:
        """Return channels up and down, chats with work, turns running, pending pairings and totals."""
        assert self.db is not None
        stats = self.lanes.stats()
        now = time.time()
        pending = await self.db.scalar(
            "SELECT COUNT(*) FROM pairing WHERE status = 'pending' AND expires_at > ?", (now,)
        )
        totals = {
            (row["direction"], row["failed"]): row["n"]
            for row in await self.db.fetchall(
                "SELECT direction, status = 'failed' AS failed, COUNT(*) AS n FROM messages GROUP BY 1, 2"
            )
        }
        return Status(
            serving=self.serving,
            channels_running=sum(1 for r in self.runners.values() if r.running),
            channels_failed=sum(1 for r in self.runners.values() if r.enabled and r.status in ("failed", "invalid")),
            pending_pairings=int(pending or 0),
            messages_in=totals.get(("in", 0), 0) + totals.get(("in", 1), 0),
            messages_out=totals.get(("out", 0), 0) + totals.get(("out", 1), 0),
            failed_sends=totals.get(("out", 1), 0),
            writes_committed=self._grouped.writes if self._grouped is not None else 0,
            write_transactions=self._grouped.transactions if self._grouped is not None else 0,
            **stats,
        )

    # -- operations: the message log -----------------------------------------------------------------

    @operation
    async def messages(self, params: MessagesParams) -> MessagePage:
        """Read the message log, newest first, keyset-paged on the row id (``next_before_id``)."""
        where: list[str] = ["1 = 1"]
        args: list[object] = []
        for column in ("channel", "chat_id", "direction", "status", "delivery"):
            value = getattr(params, column)
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if params.since is not None:
            where.append("created_at >= ?")
            args.append(params.since)
        if params.until is not None:
            where.append("created_at < ?")
            args.append(params.until)
        if params.before_id is not None:
            where.append("id < ?")
            args.append(params.before_id)
        assert self.db is not None
        rows = await self.db.fetchall(
            f"SELECT * FROM messages WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",  # noqa: S608  fixed "<column> <op> ?" conditions; values are parameters
            [*args, params.limit + 1],
        )
        more = len(rows) > params.limit
        rows = rows[: params.limit]
        items = [
            MessageRecord(
                id=row["id"],
                direction=row["direction"],
                kind=row["kind"],
                channel=row["channel"],
                chat_id=row["chat_id"],
                sender_id=row["sender_id"],
                sender_name=row["sender_name"],
                message_id=row["message_id"],
                platform_ids=json.loads(row["platform_ids"] or "[]"),
                reply_to=row["reply_to"],
                text=row["text"],
                is_group=bool(row["is_group"]),
                mentions_bot=bool(row["mentions_bot"]),
                status=row["status"],
                detail=row["detail"],
                attempts=row["attempts"],
                parts=row["parts"],
                in_reply_to=row["in_reply_to"],
                delivery=row["delivery"],
                delivered_at=row["delivered_at"],
                read_at=row["read_at"],
                created_at=row["created_at"],
                updated_at=row["updated_at"],
            )
            for row in rows
        ]
        return MessagePage(items=items, next_before_id=items[-1].id if more and items else None)

    @operation
    async def traffic(self, params: TrafficParams) -> Traffic:
        """Return messages per minute, channel and direction over the last ``minutes`` (for charts)."""
        since = time.time() - params.minutes * 60
        where = "created_at >= ?"
        args: list[object] = [since]
        if params.channel is not None:
            where += " AND channel = ?"
            args.append(params.channel)
        assert self.db is not None
        rows = await self.db.fetchall(
            "SELECT CAST(created_at / 60 AS INTEGER) * 60 AS minute, channel, direction, COUNT(*) AS n,"  # noqa: S608  fixed conditions; values are parameters
            f" SUM(status = 'failed') AS failed FROM messages WHERE {where} GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
            args,
        )
        return Traffic(
            buckets=[
                TrafficBucket(
                    minute=float(row["minute"]),
                    channel=row["channel"],
                    direction=row["direction"],
                    count=row["n"],
                    failed=row["failed"] or 0,
                )
                for row in rows
            ]
        )

    # -- operations: pairing -------------------------------------------------------------------------

    @operation
    async def pairing_list(self, params: PairingListParams) -> PairingList:
        """List pairing requests (default: pending ones), newest first."""
        now = time.time()
        where: list[str] = ["1 = 1"]
        args: list[object] = []
        if params.status == "pending":
            where.append("status = 'pending' AND expires_at > ?")
            args.append(now)
        elif params.status == "expired":
            where.append("status = 'pending' AND expires_at <= ?")
            args.append(now)
        elif params.status != "all":
            where.append("status = ?")
            args.append(params.status)
        if params.channel is not None:
            where.append("channel = ?")
            args.append(params.channel)
        assert self.db is not None
        rows = await self.db.fetchall(
            f"SELECT * FROM pairing WHERE {' AND '.join(where)} ORDER BY created_at DESC LIMIT ?",  # noqa: S608  fixed conditions; values are parameters
            [*args, params.limit],
        )
        return PairingList(requests=[self._pairing(row, now) for row in rows])

    @staticmethod
    def _pairing(row: Any, now: float) -> PairingRequest:
        status = row["status"]
        if status == "pending" and row["expires_at"] <= now:
            status = "expired"
        return PairingRequest(
            code=row["code"],
            channel=row["channel"],
            sender_id=row["sender_id"],
            sender_name=row["sender_name"],
            chat_id=row["chat_id"],
            status=status,
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            decided_at=row["decided_at"],
        )

    async def _decide_pairing(self, code: str, approve: bool) -> PairingRequest:
        now = time.time()
        decided = await asyncio.shield(self._record_decision(code, approve, now))
        request = self._pairing(decided, now)
        runner = self.runners.get(request.channel)
        if approve and runner is not None and runner.running:
            key = (request.channel, request.chat_id)
            if self.lanes.reserve(key):
                self.lanes.submit(
                    key,
                    lambda: self._send_quietly(request.channel, request.chat_id, access.APPROVED_TEXT, "pairing", None),
                )
        return request

    async def _record_decision(self, code: str, approve: bool, now: float) -> Any:
        assert self.db is not None
        async with self.db.transaction() as conn:
            async with conn.execute("SELECT * FROM pairing WHERE code = ?", (code,)) as cursor:
                row = await cursor.fetchone()
            if row is None:
                raise RefactorbotError(f"no pairing request with code {code}")
            if row["status"] != "pending":
                raise RefactorbotError(f"pairing code {code} was already {row['status']}")
            if row["expires_at"] <= now:
                raise RefactorbotError(f"pairing code {code} expired; the sender gets a new one by writing again")
            await conn.execute(
                "UPDATE pairing SET status = ?, decided_at = ? WHERE code = ?",
                ("approved" if approve else "denied", now, code),
            )
            if approve:
                await conn.execute(
                    "INSERT OR REPLACE INTO approved_senders (channel, sender_id, code, approved_at) VALUES (?, ?, ?, ?)",
                    (row["channel"], row["sender_id"], code, now),
                )
            async with conn.execute("SELECT * FROM pairing WHERE code = ?", (code,)) as cursor:
                return await cursor.fetchone()

    @operation
    async def pairing_approve(self, params: PairingCode) -> PairingRequest:
        """Approve a pending pairing code: its sender may talk to the agent from now on."""
        return await self._decide_pairing(params.code, True)

    @operation
    async def pairing_deny(self, params: PairingCode) -> PairingRequest:
        """Deny a pending pairing code."""
        return await self._decide_pairing(params.code, False)

    # -- operations: templates -----------------------------------------------------------------------

    async def _template(self, name: str) -> Template:
        assert self.db is not None
        row = await self.db.fetchone("SELECT * FROM templates WHERE name = ?", (name,))
        if row is None:
            raise RefactorbotError(f"no template named {name!r}")
        return Template(
            name=row["name"],
            body=row["body"],
            description=row["description"],
            variables=json.loads(row["variables"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    @operation
    async def template_set(self, params: TemplateSetParams) -> Template:
        """Create or replace a named template (Markdown with ``$variables``)."""
        now = time.time()
        await self._write(
            "INSERT INTO templates (name, body, description, variables, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET body = excluded.body,"
            " description = excluded.description, variables = excluded.variables, updated_at = excluded.updated_at",
            (params.name, params.body, params.description, json.dumps(template_variables(params.body)), now, now),
        )
        return await self._template(params.name)

    @operation
    async def template_list(self, params: NoParams) -> TemplateList:
        """List every template, by name."""
        assert self.db is not None
        names = [row["name"] for row in await self.db.fetchall("SELECT name FROM templates ORDER BY name")]
        return TemplateList(templates=[await self._template(name) for name in names])

    @operation
    async def prune(self, params: NoParams) -> Purged:
        """Run a retention pass now: old and surplus log rows, old remembered ids, expired pairings."""
        return Purged(**await self._purge())

    @operation
    async def template_delete(self, params: TemplateName) -> Removed:
        """Delete a template."""
        return Removed(removed=await self._write_count("DELETE FROM templates WHERE name = ?", (params.name,)) > 0)
