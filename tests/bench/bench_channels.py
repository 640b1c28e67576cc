"""Benchmarks of the channel path; prints numbers (run by ``nox -s bench``).

One host process — the communication slice, session and agent slices, the webhook channel and the
control API, with an instant in-process model (a gateway that answers at once) — serves signed
webhooks; this process signs and POSTs them and runs the callback receiver the replies go to.

1. Channel overhead: one message at a time, the time from POST to its reply arriving at the
   receiver, against the same chat turn through ``POST /chat`` on the same server (p50 of each).
   Target (issue 10): <= 5 ms.
2. Throughput: messages/s from the first POST to the last reply received, 50 chats, 32 POSTs in
   flight; the same number of turns through ``POST /chat`` alongside (the turn's own cost).
   Target: >= 300 messages/s.
3. A long run (``--long`` messages over ``--long-chats`` chats): the host's RSS and the
   throughput of each tenth. Target: RSS flat.

    python tests/bench/bench_channels.py [--messages 3000] [--chats 50] [--inflight 32] [--long 100000]
        [--event-loop auto|asyncio|uvloop] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

SECRET = "bench-webhook-secret-0123456789abcdef"

HOST = textwrap.dedent(
    """
    import asyncio, sys
    from typing import Any
    from refactorbot.llm import LLMGateway, LLMResponse, Usage
    from refactorbot.testing import build_host, plugin_of

    class InstantGateway(LLMGateway):
        name = "instant"
        prefixes = ("instant/",)

        async def complete(self, messages: list[dict[str, Any]], model: str, tools: Any = None, **kw: Any) -> LLMResponse:
            text = next(m["content"] for m in reversed(messages) if m["role"] == "user")
            return LLMResponse(content=f"ok: {text}", model=model, usage=Usage(prompt_tokens=1, completion_tokens=1), gateway="instant")

        async def stream(self, messages: list[dict[str, Any]], model: str, tools: Any = None, **kw: Any) -> Any:
            raise NotImplementedError

    async def main() -> None:
        home, callback = sys.argv[1], sys.argv[2]
        config = {
            "core": {"health_interval": 3600, "log_level": "WARNING"},
            "llm": {"model": "instant/bench", "gateway": "instant"},
            "plugins": {"api": {"port": 0}},
            "slices": {"communication": {"max_concurrent_turns": 64, "max_queue_per_chat": 1000}},
            "channels": {"webhook": {"callback_url": callback, "dm_policy": "open", "tolerance": 30}},
        }
        plugins = [
            "refactorbot_slice_communication.plugin",
            "refactorbot_slice_session.plugin",
            "refactorbot_slice_agent.plugin",
            "refactorbot_channel_webhook.plugin",
            "refactorbot_api.plugin",
            plugin_of(gateways=[InstantGateway], name="instant"),
        ]
        host = build_host(__import__("pathlib").Path(home), plugins, config=config,
                          env={"REFACTORBOT_WEBHOOK_SECRET": sys.argv[3]})
        await host.serve_forever(lambda: print("ready", flush=True))

    from refactorbot.cli.main import loop_factory

    def run() -> None:  # on the loop refactorbot serve would use for [core] event_loop = argv[4]
        with asyncio.Runner(loop_factory=loop_factory(sys.argv[4])) as runner:
            runner.run(main())

    if len(sys.argv) > 5:  # --profile: sample the whole host with pyinstrument, written when it stops
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
        try:
            run()
        finally:
            session = profiler.stop()  # saved raw (fast: the server's stop deadline still runs)
            session.save(sys.argv[5])
    else:
        run()
    """
)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 1e6


def cpu_s(pid: int) -> float:
    """Return the CPU seconds (user + system, every thread) the process has used."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def thread_cpu_s(pid: int) -> dict[int, float]:
    """Return the CPU seconds each thread of the process has used, by thread id."""
    import psutil

    return {t.id: t.user_time + t.system_time for t in psutil.Process(pid).threads()}


def main_thread_share(before: dict[int, float], after: dict[int, float], pid: int) -> float:
    """Return the share of the CPU used between ``before`` and ``after`` that the main (event-loop) thread used."""
    used = {tid: after[tid] - before.get(tid, 0.0) for tid in after}
    total = sum(used.values())
    return used.get(pid, 0.0) / total if total else 0.0


def message(i: int, chat: str, text: str | None = None) -> bytes:
    return json.dumps({"id": f"b-{i}", "chat_id": chat, "sender_id": "bench", "text": text or f"m{i}"}).encode()


async def post_all(url: str, bodies: list[bytes], inflight: int) -> dict[int, float]:
    """POST every body (signed now) with ``inflight`` requests at a time; return index -> send time.

    aiohttp rather than httpx: the load generator shares the machine's two cores with the host,
    and aiohttp costs about a third of httpx's CPU per request.
    """
    import aiohttp
    from refactorbot.testing import sign_webhook

    sent: dict[int, float] = {}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(bodies)):
        queue.put_nowait(i)
    connector = aiohttp.TCPConnector(limit=inflight)
    async with aiohttp.ClientSession(base_url=url, connector=connector, trust_env=False) as client:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                sent[i] = time.monotonic()
                headers = sign_webhook(SECRET, bodies[i])
                async with client.post("/hooks/webhook", data=bodies[i], headers=headers) as answer:
                    status = (await answer.json())["status"] if answer.status == 200 else None
                    if status != "accepted":
                        raise RuntimeError(f"message {i}: {answer.status} {await answer.text()}")

        await asyncio.gather(*(worker() for _ in range(inflight)))
    return sent


async def chat_all(url: str, token: str, count: int, chats: int, inflight: int) -> float:
    """POST /chat ``count`` turns over ``chats`` chats, ``inflight`` at a time; return the elapsed seconds."""
    import aiohttp

    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)
    headers = {"Authorization": f"Bearer {token}"}
    t0 = time.monotonic()
    connector = aiohttp.TCPConnector(limit=inflight)
    async with aiohttp.ClientSession(base_url=url, connector=connector, trust_env=False) as client:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                body = {"text": f"c{i}", "chat_id": f"api-chat-{i % chats}", "sender_id": "bench"}
                async with client.post("/chat", json=body, headers=headers) as answer:
                    if answer.status != 200:
                        raise RuntimeError(f"chat {i}: {answer.status} {await answer.text()}")
                    await answer.read()

        await asyncio.gather(*(worker() for _ in range(inflight)))
    return time.monotonic() - t0


def grouped_writes(url: str, token: str) -> tuple[int, int]:
    """Return the communication slice's per-message writes committed and the transactions that carried them."""
    import httpx

    answer = httpx.post(
        f"{url}/slices/communication/operations/status",
        json={},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
        trust_env=False,
    )
    data = answer.json()["data"]
    return int(data.get("writes_committed", 0)), int(data.get("write_transactions", 0))


def wait_replies(receiver: Any, count: int, timeout: float = 1800) -> None:
    receiver.wait_until(lambda: len(receiver.messages) >= count, timeout)


async def sequential(url: str, token: str, receiver: Any, n: int, start: int) -> tuple[list[float], list[float]]:
    """Return per-message webhook→reply times and POST /chat times (ms), one at a time."""
    import httpx
    from refactorbot.testing import sign_webhook

    hooks, chats = [], []
    async with httpx.AsyncClient(base_url=url, trust_env=False, timeout=60) as client:
        for k in range(n):
            i = start + k
            body = message(i, f"seq-{k % 5}")
            before = len(receiver.messages)
            t0 = time.monotonic()
            answer = await client.post("/hooks/webhook", content=body, headers=sign_webhook(SECRET, body))
            assert answer.json()["status"] == "accepted", answer.text
            await asyncio.to_thread(receiver.wait_until, lambda b=before: len(receiver.messages) > b, 60)
            arrived = receiver.requests[-1].at
            hooks.append((arrived - t0) * 1000)
            t0 = time.monotonic()
            reply = await client.post(
                "/chat",
                json={"text": f"m{i}", "chat_id": f"api-{k % 5}", "sender_id": "bench"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert reply.status_code == 200, reply.text
            chats.append((time.monotonic() - t0) * 1000)
    return hooks, chats


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--chats", type=int, default=50)
    parser.add_argument("--inflight", type=int, default=32)
    parser.add_argument("--sequential", type=int, default=300)
    parser.add_argument("--long", type=int, default=100_000, help="messages of the RSS run (0: skip)")
    parser.add_argument("--long-chats", type=int, default=2000, help="chats of the RSS run")
    parser.add_argument(
        "--event-loop",
        default="auto",
        choices=["auto", "asyncio", "uvloop"],
        help="the host's event loop, as [core] event_loop (auto: uvloop when installed)",
    )
    parser.add_argument(
        "--profile", help="save a pyinstrument session of the host to this file (pyinstrument --load FILE shows it)"
    )
    args = parser.parse_args()

    from refactorbot.testing import WebhookReceiver

    home = Path(tempfile.mkdtemp(prefix="rb-bench-channels-"))
    with WebhookReceiver(SECRET) as receiver:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
        proc = subprocess.Popen(
            [sys.executable, "-c", HOST, str(home), f"{receiver.url}/replies", SECRET, args.event_loop]
            + ([str(Path(args.profile).resolve())] if args.profile else []),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", (
                proc.stderr.read() if proc.stderr else ""
            )
            url = json.loads((home / "server.json").read_text())["url"]
            token = (home / "api-token").read_text().strip()
            rows: list[tuple[str, str, str]] = []

            # warm-up
            warm = [message(i, f"warm-{i % 5}") for i in range(200)]
            asyncio.run(post_all(url, warm, args.inflight))
            wait_replies(receiver, len(warm))

            # 2. overhead, one message at a time
            hooks, chats = asyncio.run(sequential(url, token, receiver, args.sequential, 1_000_000))
            overhead = statistics.median(hooks) - statistics.median(chats)
            rows.append(
                (
                    "webhook → reply at the receiver, one at a time, p50 / p95",
                    f"{pct(hooks, 50):.2f} / {pct(hooks, 95):.2f} ms",
                    "—",
                )
            )
            rows.append(
                (
                    "the same turn through POST /chat, p50 / p95",
                    f"{pct(chats, 50):.2f} / {pct(chats, 95):.2f} ms",
                    "baseline",
                )
            )
            rows.append(("channel overhead p50 (difference of the p50s)", f"{overhead:.2f} ms", "≤ 5 ms"))

            # 1. throughput
            done = len(receiver.messages)
            bodies = [message(2_000_000 + i, f"chat-{i % args.chats}") for i in range(args.messages)]
            writes0 = grouped_writes(url, token)
            cpu0, own0, threads0 = cpu_s(proc.pid), cpu_s(os.getpid()), thread_cpu_s(proc.pid)
            t0 = time.monotonic()
            asyncio.run(post_all(url, bodies, args.inflight))
            posted = time.monotonic() - t0
            wait_replies(receiver, done + len(bodies))
            elapsed = receiver.requests[-1].at - t0
            hook_cpu = (cpu_s(proc.pid) - cpu0) / args.messages * 1000
            loop_share = main_thread_share(threads0, thread_cpu_s(proc.pid), proc.pid)
            own_cpu = (cpu_s(os.getpid()) - own0) / args.messages * 1000
            load = os.getloadavg()[0]
            writes1 = grouped_writes(url, token)
            rows.append(
                (
                    f"sustained: {args.messages} messages, {args.chats} chats, {args.inflight} POSTs in flight",
                    f"{args.messages / elapsed:.0f} messages/s (POSTs answered at {args.messages / posted:.0f}/s)",
                    "≥ 300 messages/s",
                )
            )

            # the turns alone: the same number of turns through POST /chat (no channel), as many in flight
            cpu0, threads0 = cpu_s(proc.pid), thread_cpu_s(proc.pid)
            elapsed = asyncio.run(chat_all(url, token, args.messages, args.chats, args.inflight))
            chat_cpu = (cpu_s(proc.pid) - cpu0) / args.messages * 1000
            chat_share = main_thread_share(threads0, thread_cpu_s(proc.pid), proc.pid)
            rows.append(
                (
                    "host CPU per message: webhook path / POST /chat",
                    f"{hook_cpu:.2f} / {chat_cpu:.2f} ms",
                    "≤ ~2.6 ms for 300/s: host, load generator and SQLite threads on 2 cores",
                )
            )
            rows.append(
                (
                    "… of which the event-loop thread (the rest: SQLite and other threads)",
                    f"{loop_share:.0%} / {chat_share:.0%}",
                    "—",
                )
            )
            writes, transactions = writes1[0] - writes0[0], writes1[1] - writes0[1]
            rows.append(
                (
                    "the slice's per-message writes (arrival, claim, outcome): writes / transactions",
                    f"{writes} / {transactions} ({writes / max(1, transactions):.1f} a transaction)",
                    "—",
                )
            )
            rows.append(
                (
                    "this process (signing and POSTing, the receiver) CPU per webhook message",
                    f"{own_cpu:.2f} ms",
                    "shares the 2 cores with the host",
                )
            )
            rows.append(("load average (1 min) when the sustained run ended", f"{load:.2f}", "—"))
            rows.append(
                (
                    f"the same turns through POST /chat, {args.inflight} in flight (no channel)",
                    f"{args.messages / elapsed:.0f} turns/s",
                    "baseline: the turn's own cost",
                )
            )

            # 3. RSS along a long run, over many chats (each chat's session stays short)
            if args.long:
                samples = [rss_mb(proc.pid)]
                rates = []
                step = max(1, args.long // 10)
                sent = 0
                while sent < args.long:
                    done = len(receiver.messages)
                    batch = [message(3_000_000 + sent + i, f"long-{(sent + i) % args.long_chats}") for i in range(step)]
                    t0 = time.monotonic()
                    asyncio.run(post_all(url, batch, args.inflight))
                    wait_replies(receiver, done + len(batch))
                    rates.append(step / (time.monotonic() - t0))
                    sent += step
                    samples.append(rss_mb(proc.pid))
                    receiver.messages.clear()
                    receiver.requests.clear()
                trend = " → ".join(f"{s:.0f}" for s in samples)
                rows.append(
                    (f"host RSS over {args.long} messages, {args.long_chats} chats (MB, every {step})", trend, "flat")
                )
                rows.append(
                    (
                        f"… messages/s of each {step}",
                        " → ".join(f"{r:.0f}" for r in rates),
                        "steady",
                    )
                )
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    print("| measure | result | goal / baseline |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
