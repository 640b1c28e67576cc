"""Watch the event loop from a thread: report code that blocks it, and end the process on signals.

Every slice, hook and the API share one event loop, so plugin code that does not await (a
synchronous ``time.sleep``, a busy loop, a blocking socket) freezes all of them, and with them
the loop's own signal handling. ``LoopWatchdog`` is a daemon thread the loop pets a few times a
second:

- when the loop has not petted it for ``threshold`` seconds it takes the loop thread's stack
  (``sys._current_frames()``), finds the slice, hook or plugin whose code holds the loop
  (``CodeOwners``) and reports a ``Block``; a second report follows when the loop is free again;
- with ``handle_signals`` it receives SIGINT/SIGTERM itself (``signal.set_wakeup_fd``), so a
  blocked loop cannot swallow them: the first asks the loop to stop and arms a deadline, and if
  the process is still alive at the deadline, or a second signal arrives, it logs what holds the
  loop, calls ``on_exit`` and ends the process with ``os._exit(128 + signal)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import faulthandler
import inspect
import logging
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from types import CodeType, FrameType
from typing import Any, Literal

log = logging.getLogger(__name__)

#: Seconds between the last-resort timer (``faulthandler``) and the watchdog's own deadline.
BACKSTOP = 3.0


@dataclasses.dataclass(frozen=True)
class Owner:
    """Whose code runs on the loop: a slice, a plugin's hook, or another object a plugin registered."""

    kind: Literal["slice", "hook", "plugin"]
    #: The slice id (``slice``) or the plugin name (``hook``, ``plugin``).
    name: str
    #: Which part: ``slice echo``, ``before_operation hook``, ``tool exec_run``.
    part: str

    @property
    def what(self) -> str:
        """Return how to name it to a person: ``slice echo``, ``before_operation hook of rb-policy``."""
        return self.part if self.kind == "slice" else f"{self.part} of {self.name}"


@dataclasses.dataclass
class Block:
    """One stretch of time the event loop did not run."""

    #: ``time.monotonic()`` of the loop's last sign of life before it.
    since: float
    #: How long it lasted (so far, until ``over``).
    seconds: float
    #: The code holding the loop, when the watchdog could tell.
    owner: Owner | None
    #: ``file:line in function`` of the owner's innermost frame (or of the innermost frame).
    where: str
    #: The loop thread's stack, most recent call last.
    stack: str
    over: bool = False

    def culprit(self) -> str:
        """Return who held the loop and where, for a log line."""
        return f"{self.owner.what if self.owner else 'unknown code'} at {self.where}"


class CodeOwners:
    """Map the code of plugin objects (functions, methods and what is nested in them) to owners."""

    def __init__(self) -> None:
        self._owners: dict[CodeType, Owner | None] = {}

    def add_function(self, func: Any, owner: Owner) -> None:
        """Record ``func`` (a function, bound method or wrapper of one) and its nested code."""
        code = getattr(inspect.unwrap(getattr(func, "__func__", func)), "__code__", None)
        if isinstance(code, CodeType):
            for nested in _code_tree(code):
                known = self._owners.get(nested, owner)
                self._owners[nested] = owner if known == owner else None  # shared code: nobody's

    def add_class(self, cls: type, owner: Owner) -> None:
        """Record the methods of ``cls`` and of its bases outside refactorbot's core."""
        for klass in cls.__mro__:
            module = getattr(klass, "__module__", "") or ""
            if klass is object or module == "builtins" or module == "refactorbot" or module.startswith("refactorbot."):
                continue
            for value in vars(klass).values():
                if isinstance(value, (staticmethod, classmethod)):
                    value = value.__func__
                elif isinstance(value, property):
                    value = value.fget
                if inspect.isfunction(value):
                    self.add_function(value, owner)

    def find(self, frame: FrameType | None) -> tuple[Owner, FrameType] | None:
        """Return the owner of the innermost frame of ``frame``'s stack that has one."""
        while frame is not None:
            owner = self._owners.get(frame.f_code)
            if owner is not None:
                return owner, frame
            frame = frame.f_back
        return None


def _code_tree(code: CodeType) -> Iterator[CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _code_tree(const)


_ASYNCIO = os.path.dirname(asyncio.__file__)


def _format_stack(frame: FrameType | None, limit: int = 30) -> str:
    """Format the stack of ``frame`` from the event loop's callback inwards (the loop's own frames left out)."""
    frames: list[FrameType] = []
    while frame is not None and len(frames) < 200:
        if os.path.dirname(frame.f_code.co_filename) == _ASYNCIO and frames:
            break  # the loop running a callback or a task step: what is above is always the same
        frames.append(frame)
        frame = frame.f_back
    summary = traceback.StackSummary.extract(((f, f.f_lineno) for f in reversed(frames[:limit])), lookup_lines=True)
    return "".join(summary.format())


def _where(frame: FrameType) -> str:
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno} in {frame.f_code.co_name}"


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    """Python-level handler: the C handler has already written the signal to the wakeup fd."""


class LoopWatchdog:
    """A daemon thread that reports a blocked event loop and enforces the stop deadline after a signal."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        threshold: float,
        owners: CodeOwners | None = None,
        on_block: Callable[[Block], None] | None = None,
        on_exit: Callable[[Block, str], None] | None = None,
    ) -> None:
        self.loop = loop
        self.threshold = threshold
        self.owners = owners or CodeOwners()
        self.on_block = on_block
        self.on_exit = on_exit
        self.interval = min(threshold / 4, 0.25)
        self._petted = time.monotonic()
        self._pet_handle: asyncio.TimerHandle | None = None
        self._loop_thread: int | None = None
        self._thread: threading.Thread | None = None
        self._rsock, self._wsock = socket.socketpair()
        self._rsock.setblocking(False)
        self._wsock.setblocking(False)
        self._stopping = False
        self._block: Block | None = None
        # signals
        self._signals: set[int] = set()
        self._saved_handlers: dict[int, Any] = {}
        self._saved_wakeup_fd = -1
        self._on_signal: Callable[[int], None] | None = None
        self._grace = 0.0
        self._received = 0
        self._deadline: float | None = None
        self._exit_code = 1

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start watching; call from the loop's thread."""
        if self._thread is not None:
            return
        self._loop_thread = threading.get_ident()
        self._petted = time.monotonic()
        self._pet_handle = self.loop.call_later(self.interval, self._pet)
        self._thread = threading.Thread(target=self._run, name="refactorbot-watchdog", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop watching the loop and give the signals back (call from the thread that started it).

        A stop deadline already armed by a signal stays armed: the thread enforces it until the
        process ends.
        """
        self._stopping = True
        if self._pet_handle is not None:
            self._pet_handle.cancel()
            self._pet_handle = None
        self.restore_signals()
        if self._deadline is not None:
            return
        self._poke(0)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._rsock.close()
        self._wsock.close()

    def _pet(self) -> None:
        self._petted = time.monotonic()
        if not self._stopping:
            self._pet_handle = self.loop.call_later(self.interval, self._pet)

    def _poke(self, byte: int) -> None:
        try:
            self._wsock.send(bytes([byte]))
        except OSError:  # closed, or the buffer is full of wake-ups already
            pass

    # -- signals ---------------------------------------------------------------------------

    @property
    def deadline(self) -> float | None:
        """Return the ``time.monotonic()`` by which the process ends, once a signal armed it."""
        return self._deadline

    def handle_signals(self, signals: Iterable[int], on_signal: Callable[[int], None], grace: float) -> None:
        """Receive ``signals`` in this thread; call from the main thread.

        The first one calls ``on_signal(signum)`` in the loop and arms a deadline ``grace``
        seconds away; at the deadline, or on a second signal, the process ends (128 + signal).
        """
        self._signals = set(signals)
        self._on_signal = on_signal
        self._grace = grace
        for sig in self._signals:
            self._saved_handlers[sig] = signal.signal(sig, _ignore_signal)
        self._saved_wakeup_fd = signal.set_wakeup_fd(self._wsock.fileno(), warn_on_full_buffer=False)

    def restore_signals(self) -> None:
        """Give the signals back to the handlers they had (call from the main thread)."""
        if not self._saved_handlers:
            return
        signal.set_wakeup_fd(self._saved_wakeup_fd)
        self._saved_wakeup_fd = -1
        for sig, handler in self._saved_handlers.items():
            signal.signal(sig, handler)
        self._saved_handlers.clear()

    def _received_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        self._received += 1
        if self._received > 1:
            self._exit_code = 128 + signum
            self._force_exit(f"{name} received again while stopping: exiting now")
            return
        self._exit_code = 128 + signum
        self._deadline = time.monotonic() + self._grace
        # last resort, without the GIL: should this thread itself get stuck, the process still ends
        faulthandler.dump_traceback_later(self._grace + BACKSTOP, exit=True)
        log.warning("%s received: stopping (the process ends within %gs)", name, self._grace)
        if self._on_signal is not None:
            try:
                self.loop.call_soon_threadsafe(self._on_signal, signum)
            except RuntimeError:  # the loop is closed: nothing left to stop gracefully
                pass

    # -- the thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            timeout = self.interval
            if self._deadline is not None:
                timeout = max(0.0, min(timeout, self._deadline - time.monotonic()))
            try:
                ready, _, _ = select.select([self._rsock], [], [], timeout)
                data = self._rsock.recv(64) if ready else b""
            except OSError:
                data = b""
            for byte in data:
                if byte in self._signals:
                    self._received_signal(byte)
                elif byte and self._saved_wakeup_fd >= 0:  # someone else's signal: pass it on
                    try:
                        os.write(self._saved_wakeup_fd, bytes([byte]))
                    except OSError:
                        pass
            if self._deadline is not None and time.monotonic() >= self._deadline:
                self._force_exit(f"the host did not stop within {self._grace:g}s")
            if self._stopping or self.loop.is_closed():  # a host never stopped: its loop is gone
                if self._deadline is None:
                    return
                continue
            if self.loop.is_running():  # a loop paused between runs is not blocked
                self._check()
            else:
                self._petted = time.monotonic()

    def _check(self) -> None:
        petted = self._petted
        if self._block is not None and petted > self._block.since:  # the loop has run again
            block, self._block = self._block, None
            block.seconds, block.over = petted - block.since, True
            self._report(block)
        if self._block is None and time.monotonic() - petted >= self.threshold:
            self._block = self.snapshot(petted)
            self._report(self._block)

    def snapshot(self, since: float | None = None) -> Block:
        """Return what the loop thread runs now: its stack and the code that owns it."""
        since = self._petted if since is None else since
        frame = sys._current_frames().get(self._loop_thread or -1)
        found = self.owners.find(frame)
        where = _where(found[1]) if found else (_where(frame) if frame is not None else "?")
        stack = _format_stack(frame)
        return Block(since, time.monotonic() - since, found[0] if found else None, where, stack)

    def _report(self, block: Block) -> None:
        if self.on_block is None:
            return
        try:
            self.on_block(block)
        except Exception:  # reporting must never stop the watchdog
            log.exception("reporting a blocked event loop failed")

    def _force_exit(self, reason: str) -> None:
        faulthandler.dump_traceback_later(BACKSTOP, exit=True)  # should anything below hang
        block = self.snapshot()
        # ending the process matters more than its last words: nothing below may prevent it
        with contextlib.suppress(Exception):
            log.critical(
                "%s; the event loop has been held for %.1fs by %s:\n%s",
                reason,
                block.seconds,
                block.culprit(),
                block.stack.rstrip(),
            )
        if self.on_exit is not None:
            try:
                self.on_exit(block, reason)
            except Exception as exc:  # the exit goes on; say why master.db has no record of it
                with contextlib.suppress(Exception):
                    log.error("recording the forced exit failed: %s: %s", type(exc).__name__, exc)
        # flushing is best effort: a stream that cannot be flushed has nowhere to report it either
        for flushable in [*logging.getLogger().handlers, *logging.getLogger("refactorbot").handlers]:
            with contextlib.suppress(Exception):
                flushable.flush()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(self._exit_code)
