"""Benchmarks of the agent path; prints numbers (run by ``nox -s bench``).

1. Framework overhead of one chat turn with one tool call (MasterChat → session → memory →
   agent → litellm → files tool → session/memory writes) against the instant loopback model:
   the turn's time minus the time its two model calls spent in the gateway; the same two calls
   made on the bare gateway are timed alongside for comparison. Target: overhead p50 <= 15 ms.
2. memory.search over 100,000 memories (through the host). Target: p95 <= 20 ms.
3. RSS of ``refactorbot serve`` with every installed plugin, before any LLM call, and whether
   litellm was imported by then. Target: <= 150 MB, litellm not imported.

    python tests/bench/bench_agent.py [--turns 200] [--strict]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

KEY_ENV = "RB_BENCH_DUMMY_KEY"
PLUGINS = [
    "refactorbot_slice_session.plugin",
    "refactorbot_slice_memory.plugin",
    "refactorbot_slice_tools.plugin",
    "refactorbot_slice_agent.plugin",
    "refactorbot_tools_files.plugin",
    "refactorbot_gateway_litellm.plugin",
]
WORDS = (
    "alpha beta gamma delta tea coffee python sqlite project launch rocket garden music film book travel city"
    " river mountain code data model agent memory session tool file search index query user name friend family"
    " work home deploy friday budget review design test release bug feature docs api plugin gateway"
).split()


def pct(values: list[float], q: float) -> float:
    """Return the q-th percentile (0-100) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def responder(body: dict[str, Any]) -> Any:
    from refactorbot.testing.model_server import Reply

    last = body["messages"][-1]
    if last["role"] == "tool":
        return Reply.text("Saved.")
    return Reply.tool_call("files_write", {"path": "bench.txt", "content": "x"})


MODEL_SERVER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from bench_agent import responder
    from refactorbot.testing.model_server import ModelServer

    with ModelServer(responder=responder) as server:
        print(server.base_url, flush=True)
        sys.stdin.read()
    """
)


async def bench_turn(turns: int) -> dict[str, float]:
    from refactorbot import IncomingMessage
    from refactorbot.chat import MasterChat
    from refactorbot.testing import host_running

    os.environ[KEY_ENV] = "sk-bench-dummy"
    home = Path(tempfile.mkdtemp(prefix="rb-bench-agent-"))
    # The model is another process, as a real one is: its threads do not share this process's GIL.
    server = subprocess.Popen(
        [sys.executable, "-c", MODEL_SERVER, str(Path(__file__).parent)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        config = {
            "core": {"health_interval": 3600},
            "llm": {"model": "openai/bench", "gateway": "litellm"},
            "gateways": {"litellm": {"api_base": base_url, "api_key_env": KEY_ENV}},
        }
        async with host_running(home, PLUGINS, config=config) as host:
            chat = MasterChat(host)
            gateway = host.gateway_for(__import__("refactorbot").LLMCall(model="openai/bench", messages=[]))
            tools = (await host.call("tools.list")).data["schemas"]
            first = [{"role": "system", "content": "bench"}, {"role": "user", "content": "write bench.txt"}]
            reply = await gateway.complete(first, "openai/bench", tools)
            call = reply.tool_calls[0]
            second = [
                *first,
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": call.id, "content": "created bench.txt"},
            ]

            async def bare() -> float:
                started = time.perf_counter()
                await gateway.complete(first, "openai/bench", tools)
                await gateway.complete(second, "openai/bench", tools)
                return (time.perf_counter() - started) * 1000

            in_gateway: list[float] = []
            complete = gateway.complete

            async def timed_complete(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                try:
                    return await complete(*args, **kwargs)
                finally:
                    in_gateway.append((time.perf_counter() - started) * 1000)

            gateway.complete = timed_complete  # measure the model's share of each turn

            async def turn(i: int) -> tuple[float, float]:
                message = IncomingMessage(
                    channel="bench", chat_id=f"c{i % 20}", sender_id=f"u{i % 5}", text="write bench.txt"
                )
                in_gateway.clear()
                started = time.perf_counter()
                out = await chat.process_message(message)
                elapsed = (time.perf_counter() - started) * 1000
                assert out.metadata["tool_calls"] == ["files_write"], out
                return elapsed, elapsed - sum(in_gateway)

            for i in range(20):  # warm up: imports, connections, caches
                await bare()
                await turn(i)
            bare_ms, turn_ms, overheads = [], [], []
            for i in range(turns):
                bare_ms.append(await bare())
                elapsed, overhead = await turn(i)
                turn_ms.append(elapsed)
                overheads.append(overhead)
    finally:
        server.communicate("", timeout=10)
    return {
        "bare_p50": statistics.median(bare_ms),
        "turn_p50": statistics.median(turn_ms),
        "overhead_p50": statistics.median(overheads),
        "overhead_p95": pct(overheads, 95),
    }


async def bench_turn_instant(turns: int) -> float:
    """Return the p50 of a whole turn when the model is an in-process gateway that answers at once."""
    from refactorbot import IncomingMessage, LLMGateway, LLMResponse, ToolCallRequest, hookimpl
    from refactorbot.chat import MasterChat
    from refactorbot.testing import host_running

    class InstantGateway(LLMGateway):
        name = "instant"

        async def complete(self, messages: Any, model: Any, tools: Any = None, **params: Any) -> LLMResponse:
            if messages[-1]["role"] == "tool":
                return LLMResponse(content="Saved.")
            call = ToolCallRequest(id="c1", name="files_write", arguments={"path": "bench.txt", "content": "x"})
            return LLMResponse(tool_calls=[call])

        def stream(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

    class InstantPlugin:
        REFACTORBOT_API = 1

        @hookimpl
        def register_gateways(self, register: Any) -> None:
            register(InstantGateway)

    home = Path(tempfile.mkdtemp(prefix="rb-bench-instant-"))
    config = {"core": {"health_interval": 3600}, "llm": {"model": "instant", "gateway": "instant"}}
    async with host_running(home, [*PLUGINS[:-1], InstantPlugin()], config=config) as host:
        chat = MasterChat(host)
        times = []
        for i in range(turns + 20):
            message = IncomingMessage(
                channel="bench", chat_id=f"c{i % 20}", sender_id=f"u{i % 5}", text="write bench.txt"
            )
            started = time.perf_counter()
            await chat.process_message(message)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times[20:])


async def bench_memory(count: int, searches: int) -> dict[str, float]:
    from refactorbot.testing import host_running

    home = Path(tempfile.mkdtemp(prefix="rb-bench-memory-"))
    rnd = random.Random(7)
    async with host_running(
        home, ["refactorbot_slice_memory.plugin"], config={"core": {"health_interval": 3600}}
    ) as host:
        db = host.instance("memory").db
        now = time.time()
        rows = [
            (f"user{rnd.randrange(100)}", " ".join(rnd.choice(WORDS) for _ in range(14)) + f" #{i}", now - i)
            for i in range(count)
        ]
        started = time.perf_counter()
        await db.executemany("INSERT INTO memories (user_id, content, created_at) VALUES (?, ?, ?)", rows)
        load_s = time.perf_counter() - started
        latencies = []
        for _ in range(searches):
            query = " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(1, 6)))
            started = time.perf_counter()
            response = await host.call("memory.search", user_id=f"user{rnd.randrange(100)}", query=query, limit=5)
            latencies.append((time.perf_counter() - started) * 1000)
            assert response.success, response.error_message
    return {"load_s": load_s, "p50": statistics.median(latencies), "p95": pct(latencies, 95)}


SERVE_PROBE = textwrap.dedent(
    """
    import asyncio, json, sys, psutil
    from refactorbot.master import MasterCore

    async def main():
        host = MasterCore.from_environment(sys.argv[1])
        await host.start()
        rss = psutil.Process().memory_info().rss
        print(json.dumps({"rss": rss, "litellm": "litellm" in sys.modules, "slices": host.running_slices()}))
        await host.stop()

    asyncio.run(main())
    """
)


def bench_serve_rss() -> dict[str, Any]:
    import psutil

    home = Path(tempfile.mkdtemp(prefix="rb-bench-serve-"))
    env = {**os.environ, "RB_HOME": str(home)}
    exe = Path(sys.executable).with_name("refactorbot")
    proc = subprocess.Popen(
        [str(exe), "--home", str(home), "serve"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if "serving" not in line:
            raise RuntimeError(f"refactorbot serve did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(1.0)  # let start-up hooks (the API server) settle
        process = psutil.Process(proc.pid)
        rss = process.memory_info().rss + sum(c.memory_info().rss for c in process.children(recursive=True))
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    probe = subprocess.run(
        [sys.executable, "-c", SERVE_PROBE, str(home)], capture_output=True, text=True, env=env, check=True
    )
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    return {
        "serve_rss_mb": rss / 2**20,
        "probe_rss_mb": found["rss"] / 2**20,
        "litellm": found["litellm"],
        "slices": found["slices"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--searches", type=int, default=500)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    results = []

    turn = asyncio.run(bench_turn(args.turns))
    ok = turn["overhead_p50"] <= 15.0
    results.append(ok)
    print(
        f"chat turn, 1 tool call ({args.turns} turns): turn p50 {turn['turn_p50']:.2f} ms; the same two calls on the"
        f" bare litellm gateway p50 {turn['bare_p50']:.2f} ms; framework overhead (turn minus its time in the"
        f" gateway) p50 {turn['overhead_p50']:.2f} ms"
        f" (p95 {turn['overhead_p95']:.2f} ms)  target p50 <= 15 ms  {verdict(ok)}"
    )

    instant = asyncio.run(bench_turn_instant(args.turns))
    print(f"  the same turn with an in-process gateway that answers at once (refactorbot alone): p50 {instant:.2f} ms")

    memory = asyncio.run(bench_memory(args.memories, args.searches))
    ok = memory["p95"] <= 20.0
    results.append(ok)
    print(
        f"memory.search over {args.memories:,} memories ({args.searches} queries, loaded in {memory['load_s']:.1f} s):"
        f" p50 {memory['p50']:.2f} ms, p95 {memory['p95']:.2f} ms  target p95 <= 20 ms  {verdict(ok)}"
    )

    serve = bench_serve_rss()
    ok = serve["serve_rss_mb"] <= 150 and not serve["litellm"]
    results.append(ok)
    print(
        f"refactorbot serve before the first LLM call: RSS {serve['serve_rss_mb']:.1f} MB"
        f" (same start-up in a probe: {serve['probe_rss_mb']:.1f} MB, litellm imported: {serve['litellm']},"
        f" slices: {', '.join(serve['slices'])})  target <= 150 MB, no litellm  {verdict(ok)}"
    )
    return 1 if args.strict and not all(results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
