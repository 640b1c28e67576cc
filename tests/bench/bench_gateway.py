"""Benchmark the LLM gateways against a loopback model server and print a markdown table.

    python tests/bench/bench_gateway.py [--calls 300]

Measures, after warm-up, what each layer adds to the same request:
- ``LiteLLMGateway.complete`` versus a direct ``litellm.acompletion`` (target: p50 <= 1 ms, p99 <= 5 ms);
- ``MasterCore.complete`` (hooks, providers slice cost logging) versus the same direct call;
- ``OpenRouterGateway.complete`` versus a bare ``httpx`` POST;
and, in fresh interpreters, the cold cost of the first LLM call (the LiteLLM import) and whether
``refactorbot plugins list`` imports any heavy library (``python -X importtime``).
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
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from refactorbot import LLMCall
from refactorbot.testing import host_running
from refactorbot.testing.gateway_contract import write_config
from refactorbot.testing.model_server import ModelServer

KEY_ENV = "RB_BENCH_KEY"
MESSAGES = [{"role": "user", "content": "Reply with a short sentence."}]
HEAVY = ("litellm", "openai", "httpx", "tiktoken", "tokenizers", "aiohttp", "fastapi", "streamlit")


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


async def paired(
    baseline: Callable[[], Awaitable[Any]], candidate: Callable[[], Awaitable[Any]], calls: int, warmup: int
) -> dict[str, float]:
    """Interleave both callables (so drift hits both alike); return their percentiles and the differences."""
    for _ in range(warmup):
        await baseline()
        await candidate()
    base, cand = [], []
    for _ in range(calls):
        base.append(await timed(baseline))
        cand.append(await timed(candidate))
    return {
        "base_p50": pct(base, 50),
        "base_p99": pct(base, 99),
        "p50": pct(cand, 50),
        "p99": pct(cand, 99),
        "extra_p50": pct(cand, 50) - pct(base, 50),
        "extra_p99": pct(cand, 99) - pct(base, 99),
        "extra_median_of_pairs": statistics.median(c - b for b, c in zip(base, cand, strict=True)),
    }


async def bench_overhead(calls: int, warmup: int) -> dict[str, dict[str, float]]:
    """Measure each gateway layer against its direct client on one loopback server."""
    import httpx
    from refactorbot_gateway_litellm.gateway import LiteLLMGateway, load_litellm
    from refactorbot_gateway_openrouter.gateway import OpenRouterGateway

    os.environ[KEY_ENV] = "sk-bench"
    results: dict[str, dict[str, float]] = {}
    with ModelServer(api_key="sk-bench") as server:
        litellm = await load_litellm()
        gateway = LiteLLMGateway({"api_base": server.base_url, "api_key_env": KEY_ENV, "timeout": 30})
        direct_kwargs = {
            "model": "openai/bench-model",
            "api_base": server.base_url,
            "api_key": "sk-bench",
            "timeout": 30,
            "num_retries": 0,
        }

        async def direct() -> Any:
            return await litellm.acompletion(messages=MESSAGES, **direct_kwargs)

        async def through_gateway() -> Any:
            return await gateway.complete(MESSAGES, "openai/bench-model")

        results["LiteLLMGateway.complete vs litellm.acompletion"] = await paired(direct, through_gateway, calls, warmup)

        with tempfile.TemporaryDirectory() as home:
            plugins = ["refactorbot_gateway_litellm.plugin"]
            config: dict[str, Any] = {
                "core": {"health_interval": 3600, "operation_log": False},
                "gateways": {"litellm": {"api_base": server.base_url, "api_key_env": KEY_ENV, "timeout": 30}},
            }
            try:
                import refactorbot_slice_providers  # noqa: F401

                plugins.append("refactorbot_slice_providers.plugin")
                config["slices"] = {
                    "providers": {
                        "providers": [{"name": "bench", "gateway": "litellm", "api_key_env": KEY_ENV}],
                        "models": [{"name": "openai/bench-model", "provider": "bench", "input_price_per_mtok": 1}],
                        "budgets": {"overall": {"daily_usd": 1000}},
                    }
                }
            except ImportError:
                pass
            write_config(Path(home), config)
            async with host_running(Path(home), plugins) as host:

                async def through_host() -> Any:
                    return await host.complete(LLMCall(model="openai/bench-model", messages=MESSAGES, slice_id="bench"))

                label = "MasterCore.complete (+ providers hooks) vs litellm.acompletion"
                if len(plugins) == 1:
                    label = "MasterCore.complete vs litellm.acompletion"
                results[label] = await paired(direct, through_host, calls, warmup)

        openrouter = OpenRouterGateway({"base_url": server.base_url, "api_key_env": KEY_ENV, "max_retries": 0})
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:

            async def bare() -> Any:
                body = {"model": "bench/model", "messages": MESSAGES, "usage": {"include": True}}
                response = await client.post(
                    "/chat/completions", json=body, headers={"Authorization": "Bearer sk-bench"}
                )
                return response.json()

            async def through_openrouter() -> Any:
                return await openrouter.complete(MESSAGES, "openrouter/bench/model")

            results["OpenRouterGateway.complete vs httpx POST"] = await paired(bare, through_openrouter, calls, warmup)
        await openrouter.aclose()
    return results


def bench_cold_first_call() -> dict[str, float]:
    """Return, in a fresh interpreter, the first LLM call (LiteLLM import included) and the second."""
    with ModelServer() as server:
        script = textwrap.dedent(
            f"""
            import asyncio, json, os, time
            os.environ[{KEY_ENV!r}] = "sk-bench"
            from refactorbot_gateway_litellm.gateway import LiteLLMGateway
            gw = LiteLLMGateway({{"api_base": {server.base_url!r}, "api_key_env": {KEY_ENV!r}}})
            async def main():
                t0 = time.perf_counter()
                await gw.complete([{{"role": "user", "content": "cold"}}], "openai/bench-model")
                t1 = time.perf_counter()
                await gw.complete([{{"role": "user", "content": "warm"}}], "openai/bench-model")
                t2 = time.perf_counter()
                return (t1 - t0) * 1000, (t2 - t1) * 1000
            first, second = asyncio.run(main())
            print(json.dumps({{"first_ms": first, "second_ms": second}}))
            """
        )
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=300)
        result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    code = "import os, time; os.environ['LITELLM_LOCAL_MODEL_COST_MAP']='True'; t=time.perf_counter(); import litellm; print((time.perf_counter()-t)*1000)"
    imports = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
        for _ in range(2)
    ]
    result["import_ms"] = min(imports)
    return result


def bench_plugins_list() -> dict[str, Any]:
    """Run ``refactorbot plugins list`` under ``-X importtime``; return wall time and heavy imports."""
    code = "import sys; from refactorbot.cli import main; sys.argv = ['refactorbot', 'plugins', 'list']; main()"
    walls, heavy, listed = [], set(), ""
    for _ in range(3):
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True, check=False
        )
        walls.append((time.perf_counter() - started) * 1000)
        listed = out.stdout
        for line in out.stderr.splitlines():
            if line.startswith("import time:") and "|" in line:
                name = line.rsplit("|", 1)[1].strip().split(".")[0]
                if name in HEAVY:
                    heavy.add(name)
    plugins = [line.split()[0] for line in listed.splitlines() if line.strip()]
    return {"wall_ms": min(walls), "heavy": sorted(heavy), "plugins": plugins}


def report(calls: int, overhead: dict[str, dict[str, float]], cold: dict[str, float], cli: dict[str, Any]) -> str:
    """Return the results as markdown."""
    lines = [
        f"### Gateway overhead ({calls} calls after warm-up, loopback server, ms)",
        "",
        "| path | baseline p50 | baseline p99 | p50 | p99 | extra p50 | extra p99 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in overhead.items():
        lines.append(
            f"| {name} | {r['base_p50']:.2f} | {r['base_p99']:.2f} | {r['p50']:.2f} | {r['p99']:.2f} "
            f"| {r['extra_p50']:+.2f} | {r['extra_p99']:+.2f} |"
        )
    lines += [
        "",
        "### Cold start",
        "",
        "| measure | ms |",
        "|---|---:|",
        f"| `import litellm` (fresh interpreter, local cost map) | {cold['import_ms']:.0f} |",
        f"| first `LiteLLMGateway.complete` (import included) | {cold['first_ms']:.0f} |",
        f"| second call | {cold['second_ms']:.1f} |",
        f"| `refactorbot plugins list` wall time ({len(cli['plugins'])} plugins) | {cli['wall_ms']:.0f} |",
        "",
        f"Heavy modules imported by `refactorbot plugins list`: {', '.join(cli['heavy']) or 'none'}.",
    ]
    return "\n".join(lines)


def main() -> None:
    """Run every benchmark and print the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args()
    overhead = asyncio.run(bench_overhead(args.calls, args.warmup))
    cold = bench_cold_first_call()
    cli = bench_plugins_list()
    print(report(args.calls, overhead, cold, cli))
    main_row = overhead["LiteLLMGateway.complete vs litellm.acompletion"]
    ok = main_row["extra_p50"] <= 1.0 and main_row["extra_p99"] <= 5.0 and "litellm" not in cli["heavy"]
    print(f"\nTargets (extra p50 <= 1 ms, extra p99 <= 5 ms, no litellm at CLI start): {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
