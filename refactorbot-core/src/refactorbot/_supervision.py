"""Supervision: periodic health checks, restarts with backoff, heartbeats. Internal (see ``master``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from refactorbot._slots import SliceSlot, SlotHost
from refactorbot.models import HealthState
from refactorbot.state import Retention

log = logging.getLogger("refactorbot.master")


class Supervision(SlotHost):
    """Check each slice every ``[core] health_interval`` seconds; restart failed ones with backoff."""

    async def _supervise(self) -> None:
        interval = self.settings.core.health_interval
        retention = asyncio.get_running_loop().create_task(self._retain(), name="master.db retention")
        try:
            await self._check_forever(interval)
        finally:
            retention.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await retention

    async def _retain(self) -> None:
        """Prune ``master.db`` now, then every ``[core] retention_interval`` seconds (off the request path)."""
        policy = Retention.of(self.settings.core)
        while True:
            try:
                deleted = await self._state.prune(policy)
                if any(deleted.values()):
                    log.info("retention: deleted %s from master.db", ", ".join(f"{n} {t}" for t, n in deleted.items()))
            except Exception:  # retention retries next time; the log keeps working
                log.exception("pruning master.db failed")
            await asyncio.sleep(self.settings.core.retention_interval)

    async def _check_forever(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            for slice_id in list(self._order):
                try:
                    await self._check(self._slots[slice_id])
                except Exception:  # supervision must survive anything a slice does
                    log.exception("supervising %s failed", slice_id)

    async def _check(self, slot: SliceSlot) -> None:
        if slot.instance is None:
            due = slot.next_restart_at
            retry = slot.status == "failed" and due is not None and time.monotonic() >= due
            if retry and slot.restarts < self.settings.core.restart_attempts:
                slot.restarts += 1
                log.warning("restarting slice %s (attempt %d)", slot.slice_id, slot.restarts)
                await self._bring_up(slot)
            return
        try:
            health = await asyncio.wait_for(slot.instance.health_check(), self.settings.core.stop_timeout)
            status, message = health.status, health.message
        except Exception as exc:  # an exploding health check means unhealthy
            status, message = HealthState.UNHEALTHY, f"health check failed: {type(exc).__name__}: {exc}"
        slot.health = status.value
        slot.heartbeat_at = time.time()
        if status is HealthState.UNHEALTHY:
            slot.error = message or "unhealthy"
            log.warning("slice %s unhealthy: %s", slot.slice_id, slot.error, extra={"slice_id": slot.slice_id})
            await self._take_down(slot, "failed")
            slot.next_restart_at = time.monotonic() + self._backoff(slot)
            return
        if status is HealthState.DEGRADED:  # say why, in `refactorbot slices` and the API's rows
            slot.error = message or "degraded"
        elif slot.status == "degraded":  # the degradation is over
            slot.error = None
        slot.status = "degraded" if status is HealthState.DEGRADED else "running"
        await self._state.set_slice(
            slot.slice_id, slot.status, health=slot.health, heartbeat_at=slot.heartbeat_at, error=slot.error
        )
