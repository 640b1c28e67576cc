"""CLI start-up, side by side in one run: what a user waits for at the prompt.

Measured, each the median wall time of N runs (hyperfine when installed, else a timing loop),
with bytecode caches warm and the command cache filled by the warm-up runs:

1. ``refactorbot --version`` (the floor: interpreter, click, the root group);
2. ``refactorbot chat hello`` against a running ``refactorbot serve`` in its default
   configuration (model ``openai/gpt-4o-mini`` through the LiteLLM gateway) with OpenAI replaced
   at the network boundary by the loopback OpenAI-compatible ``ModelServer``, with the command
   cache and without it (a cache directory that cannot be written: every run scans every plugin);
3. ``llm -m loopback hello`` against the same model server, sending the same model name
   (``llm`` from PyPI, configured through its ``extra-openai-models.yaml``), when an ``llm``
   executable is found (``--llm``, ``$RB_BENCH_LLM`` or ``PATH``): the baseline of item 17 of
   issue 9. ``chat`` and ``llm`` run alternately, one of each per round, so both see the same
   load on a shared machine; the ratio is the median of the rounds' ratios, and each command's
   CPU time (user + system, from ``wait4``) is reported beside its wall time, with the load
   average before and after; then the same against a server whose model is a name LiteLLM has no
   price for (``openai/loopback``: LiteLLM then searches its price rules on every call), and
   against one whose model goes through the OpenRouter gateway (OpenAI-compatible, httpx) instead
   of LiteLLM, which shows what LiteLLM's per-call work adds to a turn;
4. ``refactorbot plugins list`` with every plugin of this environment installed: reported from the
   install cache (what a user sees once a first run filled it), and loading every plugin (no cache),
   and alternately with ``llm plugins`` when ``llm`` is found;
5. ``refactorbot call notes.add`` in-process (no server): every plugin installed, and only the
   notes example installed (``RB_LOAD_PLUGINS``) as the floor;
6. the cost of the command cache's fingerprint, and the heavy modules the ``chat`` path imports.

    python tests/bench/bench_cli.py [--runs 20] [--llm PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Iterator
from pathlib import Path

KEY_ENV = "RB_BENCH_DUMMY_KEY"
HEAVY = (
    "pydantic",
    "asyncio",
    "litellm",
    "importlib.metadata",
    "refactorbot.slice",
    "refactorbot.master",
    "urllib.request",
    "http.client",
)


def clean_env(**extra: str) -> dict[str, str]:
    """Return the environment for timed runs: bytecode caching on, no RB_* of the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RB_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(extra)
    return env


def refactorbot_command() -> list[str]:
    """Return the ``refactorbot`` console script of this interpreter (as a user runs it), else ``-m``."""
    script = Path(sys.executable).parent / "refactorbot"
    return [str(script)] if script.exists() else [sys.executable, "-m", "refactorbot"]


def median_ms(command: list[str], env: dict[str, str], runs: int, warmup: int = 3) -> float:
    """Return the median wall time of ``command`` in milliseconds (hyperfine when installed)."""
    hyperfine = shutil.which("hyperfine")
    if hyperfine:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            subprocess.run(
                [hyperfine, "-N", "--warmup", str(warmup), "--runs", str(runs), "--export-json", out.name]
                + ["--", " ".join(command)],
                env=env,
                check=True,
                capture_output=True,
            )
            times = json.loads(Path(out.name).read_text())["results"][0]["times"]
        return float(statistics.median(times)) * 1000
    for _ in range(warmup):
        subprocess.run(command, env=env, check=True, capture_output=True)
    looped: list[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True)
        looped.append(time.perf_counter() - start)
    return statistics.median(looped) * 1000


def timed_run(command: list[str], env: dict[str, str], exit_code: int = 0) -> tuple[float, float]:
    """Run ``command`` once (it must exit with ``exit_code``); return its wall and CPU time in milliseconds."""
    start = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != exit_code:
        raise SystemExit(f"{' '.join(command)} exited with {child.returncode}, not {exit_code}")
    return wall * 1000, (usage.ru_utime + usage.ru_stime) * 1000


def paired(
    first: list[str], first_env: dict[str, str], second: list[str], second_env: dict[str, str], runs: int
) -> dict[str, float]:
    """Run ``first`` and ``second`` alternately ``runs`` times (after 3 warm-up rounds).

    Return the median wall and CPU ms of each, the median of the rounds' ratios second / first,
    and the 1-minute load average before and after.
    """
    for _ in range(3):
        timed_run(first, first_env)
        timed_run(second, second_env)
    load_before = os.getloadavg()[0]
    a: list[tuple[float, float]] = []
    b: list[tuple[float, float]] = []
    for _ in range(runs):
        a.append(timed_run(first, first_env))
        b.append(timed_run(second, second_env))
    return {
        "first_ms": statistics.median(w for w, _ in a),
        "first_cpu_ms": statistics.median(c for _, c in a),
        "second_ms": statistics.median(w for w, _ in b),
        "second_cpu_ms": statistics.median(c for _, c in b),
        "ratio": statistics.median(y[0] / x[0] for x, y in zip(a, b, strict=True)),
        "cpu_ratio": statistics.median(y[1] / x[1] for x, y in zip(a, b, strict=True)),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


@contextlib.contextmanager
def served(home: Path, config: str, env: dict[str, str]) -> Iterator[Path]:
    """Run ``refactorbot serve`` on a new ``home`` whose ``refactorbot.toml`` is ``config``; yield once its API answers."""
    home.mkdir(mode=0o700)
    (home / "refactorbot.toml").write_text(config)
    server = subprocess.Popen(
        [*refactorbot_command(), "--home", str(home), "serve"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()  # "refactorbot serving ...": the API is up (its startup hook ran)
        if "serving" not in line or not (home / "server.json").exists():
            raise SystemExit(f"refactorbot serve did not start: {line!r}")
        yield home
    finally:
        server.terminate()
        server.wait(timeout=60)


def chat_imports(home: Path, env: dict[str, str]) -> list[str]:
    """Return the heavy modules a ``chat`` against the server imports (``-X importtime``) on a cache hit.

    A run that wrote the command cache scanned every plugin (the first run, or something was
    installed meanwhile on a shared machine): it is run again, up to three times. (A scan always
    writes the file: the fingerprint it records changed.)
    """
    cache = Path(env["RB_CACHE_DIR"])
    for _ in range(3):
        before = {path: path.stat().st_mtime_ns for path in cache.glob("commands-*.json")}
        done = subprocess.run(
            [*refactorbot_command(), "--home", str(home), "chat", "hello"],
            env={**env, "PYTHONPROFILEIMPORTTIME": "1"},
            capture_output=True,
            text=True,
            check=True,
        )
        if before and before == {path: path.stat().st_mtime_ns for path in cache.glob("commands-*.json")}:
            break
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    return [name for name in HEAVY if name in imported]


def fingerprint_us() -> float:
    """Return the cost of the command cache's fingerprint in this interpreter, in microseconds."""
    from refactorbot import _install_cache

    runs = 2000
    return timeit.timeit(_install_cache.fingerprint, number=runs) / runs * 1e6


def start_call_stop_ms(rounds: int) -> tuple[float, float, list[str]]:
    """Return the median ms of start + ``notes.add`` + stop in one process: every slice, and ``only={"notes"}``."""
    import asyncio

    from refactorbot.config import load_settings
    from refactorbot.master import MasterCore
    from refactorbot.plugins import PluginHost

    plugins = PluginHost(clean_env())
    plugins.load_entrypoints()

    async def once(only: set[str] | None) -> tuple[float, list[str]]:
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(Path(tmp), env={})
            start = time.perf_counter()
            async with MasterCore(settings, plugins, {}, serving=False, only=only) as host:
                response = await host.call("notes.add", title="bench")
                assert response.success, response.error_message
                started = host.running_slices()
            return (time.perf_counter() - start) * 1000, started

    async def measure() -> tuple[float, float, list[str]]:
        await once(None)
        every, subset = [], []
        for _ in range(rounds):
            every.append((await once(None))[0])
            subset.append((await once({"notes"}))[0])
        return statistics.median(every), statistics.median(subset), (await once({"notes"}))[1]

    return asyncio.run(measure())


def find_llm(given: str | None) -> str | None:
    candidate = given or os.environ.get("RB_BENCH_LLM") or shutil.which("llm")
    return candidate if candidate and Path(candidate).exists() else None


def chat_rows(
    version: float, chat: float, chat_scan: float, side: dict[str, float] | None, heavy: list[str]
) -> list[tuple[str, str, str]]:
    """Return the rows of ``--version``, ``chat`` and ``llm``."""
    rows: list[tuple[str, str, str]] = []
    rows.append(("`refactorbot --version`", f"{version:.0f} ms", "floor"))
    if side is not None:
        rows.append(
            (
                "`refactorbot chat hello`, server running, command cache filled (wall / CPU)",
                f"{side['first_ms']:.0f} / {side['first_cpu_ms']:.0f} ms",
                "≤ 250 ms",
            )
        )
    else:
        rows.append(("`refactorbot chat hello`, server running, command cache filled", f"{chat:.0f} ms", "≤ 250 ms"))
    rows.append(
        (
            "`refactorbot chat hello`, server running, no command cache (every plugin loaded)",
            f"{chat_scan:.0f} ms",
            "as before the cache",
        )
    )
    if side is not None:
        rows.append(
            (
                "`llm -m loopback hello` (model gpt-4o-mini), same model server, alternately with `chat` (wall / CPU)",
                f"{side['second_ms']:.0f} / {side['second_cpu_ms']:.0f} ms",
                "baseline",
            )
        )
        rows.append(
            (
                "llm / refactorbot chat, median of the rounds' ratios: wall (CPU)",
                f"{side['ratio']:.1f}× ({side['cpu_ratio']:.1f}×)",
                "≥ 8×",
            )
        )
        rows.append(
            (
                "1-minute load average before / after those rounds",
                f"{side['load_before']:.2f} / {side['load_after']:.2f}",
                "2 cores",
            )
        )
    else:
        rows.append(("`llm -m loopback hello`", "not measured: no `llm` executable (--llm PATH)", "issue 9: ~2.1 s"))
    rows.append(
        ("heavy modules imported by `chat` against the server", ", ".join(heavy) or "none", f"of {', '.join(HEAVY)}")
    )
    return rows


def print_rows(runs: int, rows: list[tuple[str, str, str]]) -> None:
    how = "hyperfine" if shutil.which("hyperfine") else "a timing loop"
    print(
        f"\n## CLI ({sys.platform}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, median of {runs}, {how})\n"
    )
    print("| measure | result | goal / baseline |\n|---|---|---|")
    for name, value, goal in rows:
        print(f"| {name} | {value} | {goal} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20, help="timed runs per command")
    parser.add_argument("--llm", help="path of an `llm` executable (pip install llm) to compare with")
    parser.add_argument("--chat-only", action="store_true", help="measure --version, chat and llm only")
    args = parser.parse_args()
    from refactorbot.testing.model_server import ModelServer

    rb = refactorbot_command()
    with tempfile.TemporaryDirectory() as tmp, ModelServer() as model:
        root = Path(tmp)
        env = clean_env(RB_CACHE_DIR=str(root / "cache"), **{KEY_ENV: "sk-loopback"})
        no_cache = {**env, "RB_CACHE_DIR": str(root / "not-a-folder")}
        (root / "not-a-folder").write_text("")  # the cache cannot be written there: a full scan each run
        # The default configuration (model openai/gpt-4o-mini through LiteLLM) with OpenAI replaced
        # at the network boundary by the loopback server; `llm` sends the same model name there.
        litellm_config = (
            f'[plugins.api]\nport = 0\n[gateways.litellm]\napi_base = "{model.base_url}"\napi_key_env = "{KEY_ENV}"\n'
        )
        llm = find_llm(args.llm)
        llm_env = {**env, "LLM_USER_PATH": str(root / "llm")}
        llm_command = [llm or "llm", "-m", "loopback", "hello"]
        if llm:
            (root / "llm").mkdir()
            (root / "llm" / "extra-openai-models.yaml").write_text(
                f'- model_id: loopback\n  model_name: gpt-4o-mini\n  api_base: "{model.base_url}"\n'
            )
        with served(root / "served", litellm_config, env) as home:
            version = median_ms([*rb, "--version"], env, args.runs)
            chat_command = [*rb, "--home", str(home), "chat", "hello"]
            chat_scan = median_ms(chat_command, no_cache, args.runs)
            heavy = chat_imports(home, env)
            side: dict[str, float] | None = None
            if llm:
                side = paired(chat_command, env, llm_command, llm_env, args.runs)
                chat = side["first_ms"]
            else:
                chat = median_ms(chat_command, env, args.runs)
        side_rows: list[tuple[str, str, str]] = []
        if llm:
            others = [
                (
                    "a model name LiteLLM has no price for (`openai/loopback`), through LiteLLM",
                    f'[llm]\nmodel = "openai/loopback"\n{litellm_config}',
                )
            ]
            if importlib.util.find_spec("refactorbot_gateway_openrouter") is not None:
                others.append(
                    (
                        "the model through the OpenRouter gateway (OpenAI-compatible, httpx) instead of LiteLLM",
                        f'[llm]\nmodel = "openrouter/openai/gpt-4o-mini"\n[plugins.api]\nport = 0\n'
                        f'[gateways.openrouter]\nbase_url = "{model.base_url}"\napi_key_env = "{KEY_ENV}"\n',
                    )
                )
            for index, (label, config) in enumerate(others):
                with served(root / f"other-{index}", config, env) as other_home:
                    other = paired(
                        [*rb, "--home", str(other_home), "chat", "hello"], env, llm_command, llm_env, args.runs
                    )
                side_rows.append(
                    (
                        f"`refactorbot chat hello` / `llm`, alternately, {label} (wall / CPU)",
                        f"{other['first_ms']:.0f} / {other['first_cpu_ms']:.0f} ms, "
                        f"{other['second_ms']:.0f} / {other['second_cpu_ms']:.0f} ms; "
                        f"{other['ratio']:.1f}× ({other['cpu_ratio']:.1f}×)",
                        f"load {other['load_before']:.1f} / {other['load_after']:.1f}",
                    )
                )
        if args.chat_only:
            print_rows(args.runs, chat_rows(version, chat, chat_scan, side, heavy) + side_rows)
            return
        plain = root / "plain"
        plist_command = [*rb, "--home", str(plain), "plugins", "list"]
        plist = median_ms(plist_command, env, args.runs)  # the report from the install cache
        plist_load = median_ms(plist_command, no_cache, args.runs)  # no cache: every plugin loaded each run
        plugins_side = None
        if llm:
            llm_env = {**env, "LLM_USER_PATH": str(root / "llm")}
            plugins_side = paired(plist_command, env, [llm, "plugins"], llm_env, max(5, args.runs // 2))
        installed = subprocess.run(
            [*rb, "--home", str(plain), "plugins", "list", "--json"], env=env, capture_output=True, text=True
        ).stdout.count('"name"')
        no_key = root / "no-key"
        no_key.mkdir(mode=0o700)
        (no_key / "refactorbot.toml").write_text(
            f'[llm]\nmodel = "openai/loopback"\n[gateways.litellm]\napi_key_env = "{KEY_ENV}"\n'
        )
        without_key = [*rb, "--home", str(no_key), "chat", "hello"]
        keyless_env = {k: v for k, v in env.items() if k != KEY_ENV}
        timed_run(without_key, keyless_env, exit_code=1)  # warm-up: bytecode and caches
        keyless = statistics.median(
            timed_run(without_key, keyless_env, exit_code=1)[0] for _ in range(max(5, args.runs // 2))
        )
        notes = [*rb, "--home", str(root / "notes"), "call", "notes.add", "title=bench"]
        call_all = median_ms(notes, env, args.runs)
        call_notes = median_ms(notes, {**env, "RB_LOAD_PLUGINS": "refactorbot-example-notes"}, args.runs)

    every, subset, started = start_call_stop_ms(max(5, args.runs // 2))
    rows = chat_rows(version, chat, chat_scan, side, heavy) + side_rows
    rows.append(("command-cache fingerprint (a stat per sys.path entry)", f"{fingerprint_us():.0f} µs", "< 1 ms"))
    rows.append(
        (
            f"`refactorbot plugins list`, {installed} plugins installed: reported from the install cache",
            f"{plist:.0f} ms",
            "≤ 260 ms",
        )
    )
    rows.append(
        (
            f"`refactorbot plugins list`, {installed} plugins loaded (no cache: every run imports them)",
            f"{plist_load:.0f} ms",
            "before the report cache",
        )
    )
    if plugins_side is not None:
        rows.append(
            (
                "`plugins list` / `llm plugins` run alternately (wall / CPU); llm / refactorbot: wall (CPU)",
                f"{plugins_side['first_ms']:.0f} / {plugins_side['first_cpu_ms']:.0f} ms, "
                f"{plugins_side['second_ms']:.0f} / {plugins_side['second_cpu_ms']:.0f} ms; "
                f"{plugins_side['ratio']:.1f}× ({plugins_side['cpu_ratio']:.1f}×)",
                f"≥ 8× (load {plugins_side['load_before']:.1f} / {plugins_side['load_after']:.1f})",
            )
        )
    rows.append(
        (
            "`refactorbot chat hello` in-process without the model's key: the one-line error, exit 1",
            f"{keyless:.0f} ms",
            "issue 9: well under 1 s (was about 5 s)",
        )
    )
    rows.append(
        ("`refactorbot call notes.add` in-process, every plugin installed", f"{call_all:.0f} ms", "before: 360–410 ms")
    )
    rows.append(
        ("`refactorbot call notes.add` in-process, only the notes plugin installed", f"{call_notes:.0f} ms", "floor")
    )
    rows.append(
        (
            "in one process: `MasterCore` start + `notes.add` + stop, every slice / `only={'notes'}`",
            f"{every:.0f} / {subset:.0f} ms",
            f"the subset starts {', '.join(started)}",
        )
    )
    print_rows(args.runs, rows)


if __name__ == "__main__":
    main()
