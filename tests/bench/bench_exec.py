"""Benchmark ``exec_run``: what the policy, the git isolation and the bubblewrap sandbox cost.

    python tests/bench/bench_exec.py [--calls 300]

Runs ``true`` (and ``git status`` in a small repository) through the tool with the sandbox off
and on, interleaved so drift hits both alike, and the same programs as bare subprocesses for a
baseline. Prints a markdown table of p50 / p95 in milliseconds; docs/benchmarks.md records it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from refactorbot.tools import ToolContext
from refactorbot_tools_exec import ExecRun


def pct(values: list[float], q: float) -> float:
    """Return the ``q`` percentile (0-100) of ``values``."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    """Return how long one call of ``fn`` took, in milliseconds."""
    started = time.perf_counter()
    await fn()
    return (time.perf_counter() - started) * 1000


async def raw(argv: list[str], cwd: Path, env: dict[str, str]) -> None:
    """Run ``argv`` as a bare subprocess (no policy, no sandbox) and wait for it."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    await proc.communicate()


async def measure(cases: dict[str, Callable[[], Awaitable[Any]]], calls: int, warmup: int) -> dict[str, list[float]]:
    """Time every case ``calls`` times, round-robin, after ``warmup`` rounds."""
    for _ in range(warmup):
        for fn in cases.values():
            await fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(calls):
        for name, fn in cases.items():
            times[name].append(await timed(fn))
    return times


async def bench(calls: int, warmup: int) -> dict[str, list[float]]:
    """Return the timings of every case."""
    with tempfile.TemporaryDirectory() as folder:
        workspace = Path(folder) / "ws"
        workspace.mkdir()
        identity = {
            "GIT_AUTHOR_NAME": "b",
            "GIT_AUTHOR_EMAIL": "b@x",
            "GIT_COMMITTER_NAME": "b",
            "GIT_COMMITTER_EMAIL": "b@x",
        }
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(workspace),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
        }
        for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "x"]):
            subprocess.run(["git", *args], cwd=workspace, env={**env, **identity}, check=True)
        for index in range(20):
            (workspace / f"f{index}.txt").write_text("x\n")
        ctx = ToolContext(workspace=workspace)
        config = {"allowed_programs": ["true", "git"]}
        plain, boxed = ExecRun({**config, "sandbox": "off"}), ExecRun(config)
        sandbox = boxed.sandbox()
        if sandbox is None:
            sys.exit(f"bubblewrap is needed for this benchmark: {'; '.join(boxed.warnings())}")
        bwrap_true = sandbox.argv(["true"], workspace, workspace)

        def tool(t: ExecRun, *command: str) -> Callable[[], Awaitable[Any]]:
            params = t.Params(command=list(command))

            async def call() -> None:
                result = await t.run(params, ctx)
                assert result.ok, result.output

            return call

        return await measure(
            {
                "true: bare subprocess": lambda: raw(["/usr/bin/true"], workspace, env),
                "true: bare bwrap with the sandbox's options": lambda: raw(bwrap_true, workspace, env),
                "true: exec_run, sandbox off": tool(plain, "true"),
                "true: exec_run, sandbox on": tool(boxed, "true"),
                "git status: bare subprocess": lambda: raw(["git", "status", "--short"], workspace, env),
                "git status: exec_run, sandbox off": tool(plain, "git", "status", "--short"),
                "git status: exec_run, sandbox on": tool(boxed, "git", "status", "--short"),
            },
            calls,
            warmup,
        )


def main() -> None:
    """Parse arguments, run the benchmark, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    times = asyncio.run(bench(args.calls, args.warmup))
    print(f"\n## exec_run ({args.calls} calls per row, interleaved, after {args.warmup} warm-up rounds)\n")
    print("| what | p50 ms | p95 ms |")
    print("|---|---:|---:|")
    for name, values in times.items():
        print(f"| {name} | {pct(values, 50):.2f} | {pct(values, 95):.2f} |")


if __name__ == "__main__":
    main()
