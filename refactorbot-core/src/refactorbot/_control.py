"""Control and status: which slices run, start/stop/restart one, status rows. Internal (see ``master``)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from refactorbot._isolation import IsolatedSlice, RemoteSlice
from refactorbot._slots import SliceSlot, SlotHost
from refactorbot.errors import SliceUnavailable

if TYPE_CHECKING:
    from refactorbot.database import SliceDatabase
    from refactorbot.slice import AtomicSlice


class Control(SlotHost):
    """The public members that report on and control slices (see the ``Host`` protocol)."""

    def running_slices(self) -> list[str]:
        """Return the ids of slices that serve requests, in start order."""
        return [sid for sid in self._order if self._slots[sid].instance is not None]

    def slice_ids(self) -> list[str]:
        """Return the ids of every installed and enabled slice, running or not, sorted."""
        return sorted(self._slots)

    def slice_class(self, slice_id: str) -> type[AtomicSlice] | None:
        """Return the class of an installed and enabled slice (its operations, capabilities), or ``None``."""
        slot = self._slots.get(slice_id)
        return None if slot is None else slot.cls

    @property
    def stopping(self) -> bool:
        """Return whether ``stop()`` has begun: new requests are refused as ``slice_unavailable``."""
        return self._stopping

    def has_slice(self, slice_id: str) -> bool:
        """Return whether ``slice_id`` is running."""
        slot = self._slots.get(slice_id)
        return slot is not None and slot.instance is not None

    def instance(self, slice_id: str) -> AtomicSlice | None:
        """Return the running instance of ``slice_id``, if any."""
        slot = self._slots.get(slice_id)
        return None if slot is None else slot.instance

    async def start_slice(self, slice_id: str) -> bool:
        """Start a stopped or failed slice; return whether it runs."""
        slot = self._slot(slice_id)
        if slot.instance is not None:
            return True
        return await self._bring_up(slot)

    async def stop_slice(self, slice_id: str) -> None:
        """Stop a running slice (it stays stopped until started)."""
        await self._take_down(self._slot(slice_id))

    async def restart_slice(self, slice_id: str) -> bool:
        """Stop then start a slice; return whether it runs."""
        slot = self._slot(slice_id)
        await self._take_down(slot)
        slot.restarts += 1
        return await self._bring_up(slot)

    def _slot(self, slice_id: str) -> SliceSlot:
        slot = self._slots.get(slice_id)
        if slot is None:
            known = ", ".join(sorted(self._slots)) or "none"
            raise SliceUnavailable(f"unknown slice '{slice_id}' (installed and enabled: {known})")
        return slot

    def slice_status(self) -> list[dict[str, Any]]:
        """Return one status row per slice: state, health, heartbeat age, restarts, metrics."""
        now = time.time()
        rows = []
        for sid in sorted(self._slots):
            slot = self._slots[sid]
            rows.append(
                {
                    "slice_id": sid,
                    "plugin": slot.plugin,
                    "version": slot.cls.version,
                    "status": slot.status,
                    "health": slot.health,
                    "heartbeat_age_s": None if slot.heartbeat_at is None else round(now - slot.heartbeat_at, 1),
                    "restarts": slot.restarts,
                    "error": slot.error,
                    "requires": list(slot.cls.requires),
                    **self.metrics.slice_summary(sid),
                }
            )
            if isinstance(slot.instance, IsolatedSlice):
                rows[-1]["isolation"] = slot.instance.info()
            elif isinstance(slot.instance, RemoteSlice):
                rows[-1]["location"] = slot.instance.info()
        return rows

    def resources(self) -> dict[str, dict[str, Any]]:
        """Return each slice's resource limits and current use (``in_flight``, ``refused``), by slice id."""
        return self._allocator.snapshot()

    async def master_db(self) -> SliceDatabase:
        """Commit the queued operation-log and log rows, then return ``master.db`` to read them.

        Its tables: ``operation_log`` (one row per routed operation), ``logs`` (the unified log)
        and ``slice_state`` (each slice's last recorded status).
        """
        await self._state.flush()
        return self._state.db
