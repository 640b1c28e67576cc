"""Refactory benchmark: the offline demo's wall time with 1 coder and with 2.

The whole workflow runs as `refactorbot refactory demo` does — the refactory, agent and tools slices,
the files tool, real git worktrees, commits, merges and test runs — against the testing kit's
scripted model. Each model reply is delayed by `--latency` seconds (default 0.3) to stand for a real
model's time, which is what parallel coders save; git and the tests cost the same either way. Three
tasks, one conflict re-queued; with 2 coders the two calc.py tasks are coded at once.

Run with `nox -s bench -- refactory` or `python tests/bench/bench_refactory.py [--latency S] [--rounds N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


async def one_run(agents: int, latency: float) -> tuple[float, dict[str, Any]]:
    import refactorbot.testing.loopback as loopback
    from refactorbot import PluginHost
    from refactorbot.testing import ModelServer, Reply
    from refactorbot_slice_refactory import script
    from refactorbot_slice_refactory.demo import play

    def slow(body: dict[str, Any]) -> Any:
        reply = script.responder(body)
        reply.delay = latency
        return reply if isinstance(reply, Reply) else Reply.text(str(reply), delay=latency)

    plugins = PluginHost()
    plugins.load_entrypoints()
    plugins.register(loopback, name="refactorbot-testing-loopback")
    with tempfile.TemporaryDirectory() as folder:
        repo = script.build_repo(Path(folder) / "repo")
        with ModelServer(responder=slow) as server:
            started = time.perf_counter()
            orch = await play(Path(folder) / "home", repo, server.base_url, plugins, agents, echo=False)
            elapsed = time.perf_counter() - started
    return elapsed, orch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.3, help="seconds each model reply takes")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.rounds):
        for agents in (1, 2):
            elapsed, orch = asyncio.run(one_run(agents, args.latency))
            assert orch["status"] == "done" and orch["report"]["tests_green"], orch["report"]
            results[agents].append(elapsed)
    print(
        f"refactory demo, 3 tasks (1 conflict re-queued), model latency {args.latency:g}s per reply, {args.rounds} rounds"
    )
    for agents, times in results.items():
        print(
            f"  {agents} coder(s): median {statistics.median(times):.2f}s (min {min(times):.2f}s, max {max(times):.2f}s)"
        )
    print(f"  speed-up with 2 coders: {statistics.median(results[1]) / statistics.median(results[2]):.2f}x")


if __name__ == "__main__":
    main()
