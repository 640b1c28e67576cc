"""Group commit: durable writes of many messages committed together, in one trip to the database thread.

Every message costs the slice three durable writes (its id and log row on arrival, the claim of its
turn, its reply's outcome), each of which must be committed before the slice goes on. Under load
many messages are in flight at once, and a trip to the database's thread costs more than the
statements it carries (waking the thread, which then takes the GIL back). ``GroupCommit`` queues
the writes asked for while a transaction is on its way and sends them together in the next one;
each write runs inside its own savepoint, so one that raises is rolled back alone and its caller
gets the exception, while the others commit. A caller's future resolves only once the transaction
holding its write committed (or failed as a whole): nothing is reported written before it is on
disk. With one write at a time it costs what one ``atomic`` call does.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from refactorbot import SliceDatabase

T = TypeVar("T")

#: Writes sent in one transaction at most (the rest wait for the next).
MAX_GROUP = 256

_Write = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]


def _run_group(conn: sqlite3.Connection, writes: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> list[Any]:
    """Run each write in its own savepoint (inside the caller's transaction); return results or exceptions."""
    outcomes: list[Any] = []
    for fn, args in writes:
        conn.execute("SAVEPOINT grouped_write").close()
        try:
            result = fn(conn, *args)
        except Exception as exc:  # this write only: rolled back, handed to its caller
            conn.execute("ROLLBACK TO grouped_write").close()
            conn.execute("RELEASE grouped_write").close()
            outcomes.append(_Failed(exc))
            continue
        conn.execute("RELEASE grouped_write").close()
        outcomes.append(result)
    return outcomes


def _retrieved(future: asyncio.Future[Any]) -> None:
    """Mark a failure as seen: its caller, if still waiting, gets it; one that left does not need it."""
    if not future.cancelled():
        future.exception()


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


class GroupCommit:
    """Queue writes ``fn(connection, *args)`` and commit those waiting together, one transaction at a time."""

    def __init__(self, db: SliceDatabase) -> None:
        self.db = db
        self._waiting: list[_Write] = []
        self._task: asyncio.Task[None] | None = None
        #: Transactions committed and the writes they committed (the group size is their ratio).
        self.transactions = 0
        self.writes = 0

    def submit(self, fn: Callable[..., T], /, *args: Any) -> asyncio.Future[T]:
        """Queue one write; return the future of its result (set once its transaction committed).

        The write runs even when nobody awaits the future any more: cancelling a waiter does not
        take back a write that may already be on its way.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        future.add_done_callback(_retrieved)
        self._waiting.append((fn, args, future))
        if self._task is None:
            self._task = loop.create_task(self._commit_waiting(), name=f"group commit {self.db.path.name}")
        return future

    async def run(self, fn: Callable[..., T], /, *args: Any) -> T:
        """Queue one write and return its result once committed (shielded: a cancelled caller leaves it to finish)."""
        return await asyncio.shield(self.submit(fn, *args))

    async def drain(self) -> None:
        """Return once every write queued so far is committed or failed."""
        while self._task is not None:
            await asyncio.wait([self._task])  # however the task ends; a cancelled caller is cancelled

    async def _commit_waiting(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting[:MAX_GROUP], self._waiting[MAX_GROUP:]
                # Sent, the transaction runs to its end on the database thread: wait for it even if
                # this task is cancelled, so every write's future says what became of it.
                writes = [(fn, args) for fn, args, _ in group]
                work = asyncio.get_running_loop().create_task(self.db.atomic(_run_group, writes))
                cancelled = False
                while not work.done():
                    try:
                        await asyncio.shield(work)
                    except asyncio.CancelledError:
                        cancelled = True
                    except Exception:  # noqa: S110  handed to every write of the group just below
                        pass
                if work.cancelled():
                    failure: BaseException | None = RuntimeError("the write was cancelled on the database thread")
                else:
                    failure = work.exception()
                if failure is not None:
                    for _, _, future in group:
                        if not future.done():
                            future.set_exception(failure)
                else:
                    outcomes = work.result()
                    self.transactions += 1
                    self.writes += sum(1 for outcome in outcomes if not isinstance(outcome, _Failed))
                    for (_, _, future), outcome in zip(group, outcomes, strict=True):
                        if future.done():
                            continue
                        if isinstance(outcome, _Failed):
                            future.set_exception(outcome.error)
                        else:
                            future.set_result(outcome)
                if cancelled:
                    for _, _, future in self._waiting:
                        if not future.done():
                            future.set_exception(RuntimeError("the write was not sent: the slice is stopping"))
                    self._waiting = []
                    raise asyncio.CancelledError
        finally:
            self._task = None
