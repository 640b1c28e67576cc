"""Observability benchmarks: what tracing costs, and retention of master.db while the API serves.

Run with `nox -s bench -- otel` (or `python tests/bench/bench_otel.py [--quick]` in an environment
with the core, refactorbot-otel, refactorbot-api and the agent's slices installed). Prints a
markdown table; docs/benchmarks.md records results.

- routed no-op, sequential, without and with refactorbot-otel (the SQLite span store): ops/s and
  the overhead, alternating short rounds so that each round's variants see the same machine load;
- one chat turn with a tool call (session, memory, agent, tools, loopback model), p50 without and
  with tracing: the overhead per turn;
- 1,000,000 unified-log rows pruned to 100,000 by the host's retention while a client calls
  `GET /slices` in a loop: the prune's duration and the p50/p99/max latency seen during it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def noop_plugin() -> Any:
    from refactorbot import AtomicSlice, hookimpl, operation

    class Noop(AtomicSlice):
        slice_id = "noop"
        uses_database = False

        @operation
        async def noop(self) -> None:
            """Do nothing."""

    class Plugin:  # the routed no-op of bench_core.py: a slice and a before_operation hook
        REFACTORBOT_API = 1

        @hookimpl
        def register_slices(self, register: Any) -> None:
            register(Noop)

        @hookimpl
        def before_operation(self, request: Any) -> None:
            return None

    return Plugin()


#: The variants compared: no tracing plugin; refactorbot-otel as installed (its defaults: every
#: trace recorded up to max_traces_per_second); refactorbot-otel recording every trace however many.
VARIANTS: dict[str, dict[str, Any] | None] = {
    "plain": None,
    "otel": {},
    "every trace": {"max_traces_per_second": 0},
}


async def routed_rate(otel: dict[str, Any] | None, seconds: float) -> tuple[float, float]:
    """Return (ops/s, CPU µs of the whole process per op) of sequential routed no-ops.

    The loop gets a turn every 100 calls. A no-op never suspends, so back-to-back calls never let
    the event loop run: each call's cancelled timeout (``asyncio.timeout``) then stays in the loop's
    timer heap, with the context it captured, until the loop runs, and the garbage collector walks
    them all again and again. That made a run slower the longer it went, and a traced run (whose
    contexts hold the trace context) slower still, which a server, whose loop runs between
    requests, never sees.
    """
    from refactorbot.testing import host_running

    plugins: list[Any] = [noop_plugin()]
    config: dict[str, Any] = {"core": {"health_interval": 3600}}
    if otel is not None:
        plugins.append("refactorbot_otel.plugin")
        config["plugins"] = {"otel": otel}
    with tempfile.TemporaryDirectory() as tmp:
        async with host_running(Path(tmp), plugins, config=config) as host:
            for _ in range(2000):
                await host.call("noop.noop")
            count = 0
            cpu = time.process_time()
            start = time.perf_counter()
            end = start + seconds
            while time.perf_counter() < end:
                await host.call("noop.noop")
                count += 1
                if count % 100 == 0:  # let the loop run, as a server's does between requests (see below)
                    await asyncio.sleep(0)
            elapsed = time.perf_counter() - start
            return count / elapsed, (time.process_time() - cpu) / count * 1e6


async def bench_routing(seconds: float, rounds: int) -> list[tuple[str, str, str]]:
    """Alternate short rounds of the variants; the overhead is the median of each round's own ratio.

    Other work on a shared machine comes and goes over seconds: a round of each variant back to
    back sees the same load, so the ratio within a round is steadier than a ratio of medians.
    """
    rates: dict[str, list[float]] = {name: [] for name in VARIANTS}
    cpus: dict[str, list[float]] = {name: [] for name in VARIANTS}
    names = list(VARIANTS)
    for index in range(rounds):  # alternate, so every variant sees the same load on a shared machine
        # ... and rotate which goes first, so that no variant always follows the same one (the
        # recording of every trace leaves the most garbage and the fullest page cache behind).
        for name in names[index % len(names) :] + names[: index % len(names)]:
            rate, cpu = await routed_rate(VARIANTS[name], seconds)
            rates[name].append(rate)
            cpus[name].append(cpu)
    p = statistics.median(rates["plain"])
    pc = statistics.median(cpus["plain"])
    rows = [
        (
            "routed no-op, sequential, no tracing plugin (bench_core's: a before_operation hook)",
            f"{p:,.0f} ops/s, {pc:.1f} µs CPU/op",
            f"median of {rounds} alternating rounds of {seconds:g}s",
        )
    ]
    for name, label in (("otel", "refactorbot-otel, defaults"), ("every trace", "refactorbot-otel, every trace")):
        t, tc = statistics.median(rates[name]), statistics.median(cpus[name])
        lost = sorted((1 - r / b) * 100 for r, b in zip(rates[name], rates["plain"], strict=True))
        quartiles = statistics.quantiles(lost, n=4)
        added = statistics.median((c / b - 1) * 100 for c, b in zip(cpus[name], cpus["plain"], strict=True))
        per_op = statistics.median(1e6 / r - 1e6 / b for r, b in zip(rates[name], rates["plain"], strict=True))
        rows.append((f"routed no-op, {label}", f"{t:,.0f} ops/s, {tc:.1f} µs CPU/op", ""))
        rows.append(
            (
                f"tracing overhead on the routed no-op, {label} (throughput lost; CPU added; per op)",
                f"{statistics.median(lost):.1f} %; {added:.1f} %; {per_op:.1f} µs",
                ("goal ≤ 10 %; " if name == "otel" else "")
                + f"medians of the rounds' own ratios (throughput lost {lost[0]:.1f} to {lost[-1]:.1f} %,"
                + f" middle half {quartiles[0]:.1f} to {quartiles[2]:.1f} %)",
            )
        )
    return rows


AGENT = [
    "refactorbot_slice_session.plugin",
    "refactorbot_slice_memory.plugin",
    "refactorbot_slice_tools.plugin",
    "refactorbot_slice_agent.plugin",
    "refactorbot_tools_files.plugin",
    "refactorbot.testing.loopback",
]


async def turn_times(traced: bool, turns: int) -> list[float]:
    from refactorbot import IncomingMessage
    from refactorbot.chat import MasterChat
    from refactorbot.testing import ModelServer, Reply, host_running, loopback_config

    with ModelServer() as server, tempfile.TemporaryDirectory() as tmp:
        server.responder = lambda body: (
            Reply.text("Done.")
            if body["messages"][-1]["role"] == "tool"
            else Reply.tool_call("files_write", {"path": "n.txt", "content": "x"})
        )
        config = {"core": {"health_interval": 3600}, **loopback_config(server)}
        plugins = [*AGENT, "refactorbot_otel.plugin"] if traced else AGENT
        async with host_running(Path(tmp), plugins, config=config) as host:
            chat = MasterChat(host)
            times = []
            for i in range(turns + 5):
                message = IncomingMessage(channel="bench", chat_id=f"c{i % 4}", sender_id="u", text="write it")
                started = time.perf_counter()
                reply = await chat.process_message(message)
                if i >= 5:
                    times.append((time.perf_counter() - started) * 1000)
                assert reply.metadata["ok"], reply.metadata
            return times


async def bench_turn(turns: int, rounds: int) -> list[tuple[str, str, str]]:
    plain: list[float] = []
    traced: list[float] = []
    for _ in range(rounds):
        plain += await turn_times(False, turns)
        traced += await turn_times(True, turns)
    p, t = statistics.median(plain), statistics.median(traced)
    return [
        ("chat turn with one tool call, p50, no tracing", f"{p:.2f} ms", f"{len(plain)} turns, loopback model"),
        ("chat turn with one tool call, p50, refactorbot-otel", f"{t:.2f} ms", ""),
        ("tracing overhead per chat turn (p50)", f"{t - p:.2f} ms", f"{(t / p - 1) * 100:.1f} %"),
    ]


def bench_retention(rows: int, keep: int) -> list[tuple[str, str, str]]:
    import logging

    import httpx
    from refactorbot.metrics import percentile
    from refactorbot.state import GlobalState
    from refactorbot_api.testing import running_server

    async def fill(home: Path) -> None:  # a million rows, as a long-lived host would have
        state = GlobalState(home / "master.db")
        await state.open()
        now = time.time()
        async with state.db.transaction() as conn:
            await conn.executemany(
                "INSERT INTO logs (ts, level, level_name, slice_id, logger, message) VALUES (?, 20, 'INFO', ?, ?, ?)",
                [(now - rows + i, "noop", "refactorbot.slice.noop", f"line {i} " + "x" * 80) for i in range(rows)],
            )
        await state.close()

    pruned = threading.Event()
    report: list[str] = []

    class Watch(logging.Handler):  # the host's retention pass says when it is done
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("retention: deleted"):
                report.append(record.getMessage())
                pruned.set()

    watch = Watch()
    logging.getLogger("refactorbot.master").addHandler(watch)
    latencies: list[float] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            asyncio.run(fill(home))
            config = {"core": {"health_interval": 3600, "log_max_rows": keep, "retention_interval": 3600}}
            started = time.perf_counter()
            with running_server(home, [noop_plugin()], config=config) as server:
                with httpx.Client(base_url=server.url, headers=server.headers, timeout=30) as client:
                    while not pruned.is_set():  # the first retention pass runs as the host starts
                        t = time.perf_counter()
                        assert client.get("/slices").status_code == 200
                        latencies.append((time.perf_counter() - t) * 1000)
                took = time.perf_counter() - started
                left = server.run(server.host._state.db.scalar("SELECT count(*) FROM logs"))
    finally:
        logging.getLogger("refactorbot.master").removeHandler(watch)
    latencies.sort()
    return [
        (
            f"retention: {rows:,} log rows pruned to {keep:,} by the host (batches of 5,000)",
            f"{took:.1f} s",
            f"{report[0].removeprefix('retention: deleted ')}; {left:,} left",
        ),
        (
            "GET /slices during the prune: p50 / p99 / max",
            f"{percentile(latencies, 50):.1f} / {percentile(latencies, 99):.1f} / {latencies[-1]:.1f} ms",
            f"{len(latencies)} requests",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer rounds and rows")
    parser.add_argument("--rounds", type=int, help="rounds of the routed no-op (default 21; 5 with --quick)")
    parser.add_argument("only", nargs="*", help="run only these: routing, turn, retention")
    args = parser.parse_args()
    if args.rounds is not None and args.rounds < 2:
        parser.error("--rounds must be at least 2 (the overhead is a median over rounds, with its quartiles)")
    rows: list[tuple[str, str, str]] = []
    only = set(args.only)
    if not only or "routing" in only:
        rows += asyncio.run(bench_routing(0.5 if args.quick else 1.5, args.rounds or (5 if args.quick else 21)))
    if not only or "turn" in only:
        rows += asyncio.run(bench_turn(20 if args.quick else 60, 1 if args.quick else 3))
    if not only or "retention" in only:
        rows += bench_retention(100_000 if args.quick else 1_000_000, 10_000 if args.quick else 100_000)
    print("| benchmark | result | notes |")
    print("|---|---|---|")
    for name, value, note in rows:
        print(f"| {name} | {value} | {note} |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
