"""The host's side of the event-loop watchdog: who owns the code that blocks, what to record.

Internal (see ``master`` and ``refactorbot.watchdog``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time

from refactorbot._slots import SliceSlot, SlotHost
from refactorbot.watchdog import Block, CodeOwners, LoopWatchdog, Owner

log = logging.getLogger("refactorbot.master")


class WatchdogGlue(SlotHost):
    """Start the watchdog with a map of code owners; log and record what blocks the loop."""

    _watchdog: LoopWatchdog | None

    def _ensure_watchdog(self) -> LoopWatchdog:
        if self._watchdog is None:
            self._watchdog = LoopWatchdog(
                asyncio.get_running_loop(),
                threshold=self.settings.core.loop_block_threshold,
                owners=self._code_owners(),
                on_block=self._on_block,
                on_exit=self._last_words,
            )
            self._watchdog.start()
        return self._watchdog

    def _code_owners(self) -> CodeOwners:
        """Map the code of every registered slice, object and hook to the slice or plugin it belongs to."""
        owners = CodeOwners()
        registry = self.plugins.registry
        for slice_id, reg in registry.slices.items():
            owners.add_class(reg.obj, Owner("slice", slice_id, f"slice {slice_id}"))
        for kind in ("tools", "gateways", "channels"):
            for name, reg in registry.of(kind).items():
                if isinstance(reg.obj, type):
                    owners.add_class(reg.obj, Owner("plugin", reg.plugin, f"{kind[:-1]} {name}"))
        for hook_name, caller in vars(self.plugins.pm.hook).items():
            for impl in caller.get_hookimpls():
                owners.add_function(impl.function, Owner("hook", impl.plugin_name, f"{hook_name} hook"))
        return owners

    def _on_block(self, block: Block) -> None:
        """Log a blocked event loop and mark the slice or plugin whose code held it (watchdog thread)."""
        owner = block.owner
        slot = self._slots.get(owner.name) if owner is not None and owner.kind == "slice" else None
        extra = {"slice_id": slot.slice_id} if slot is not None else {}
        if block.over:
            log.warning("the event loop was blocked for %.1fs by %s", block.seconds, block.culprit(), extra=extra)
            mark = f"blocked the event loop for {block.seconds:.1f}s at {block.where}"
        else:
            log.error(
                "the event loop has been blocked for %.1fs by %s; its stack (most recent call last):\n%s",
                block.seconds,
                block.culprit(),
                block.stack.rstrip(),
                extra=extra,
            )
            mark = f"blocking the event loop (for {block.seconds:.1f}s so far) at {block.where}"
        if slot is not None:
            slot.error = mark
            if block.over:
                with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to record
                    asyncio.run_coroutine_threadsafe(self._record_block(slot), self._watchdog_loop())
        elif owner is not None and (record := self.plugins.records.get(owner.name)) is not None:
            record.error = f"{owner.part} {mark}"

    def _watchdog_loop(self) -> asyncio.AbstractEventLoop:
        assert self._watchdog is not None
        return self._watchdog.loop

    async def _record_block(self, slot: SliceSlot) -> None:
        if self._running and not self._stopping:
            await self._state.set_slice(slot.slice_id, slot.status, error=slot.error)

    def _last_words(self, block: Block, reason: str) -> None:
        """Record a forced exit in ``master.db`` from the watchdog thread, the loop being stuck."""
        path = self.settings.master_db
        if not path.exists():
            return
        owner = block.owner
        slice_id = owner.name if owner is not None and owner.kind == "slice" else None
        message = f"{reason}; the event loop was held by {block.culprit()}\n{block.stack}"
        db = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=1.0)
        try:
            db.execute(
                "INSERT INTO logs (ts, level, level_name, slice_id, logger, message) VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), logging.CRITICAL, "CRITICAL", slice_id, log.name, message[:8000]),
            )
            if slice_id is not None:
                db.execute(
                    "UPDATE slice_state SET error = ?, updated_at = ? WHERE slice_id = ?",
                    (f"held the event loop when the host was stopped: {block.where}", time.time(), slice_id),
                )
            db.commit()
        finally:
            db.close()
