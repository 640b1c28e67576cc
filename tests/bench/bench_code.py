"""Benchmark ``code_search``: indexing a generated 10,000-file repository, re-indexing, searching.

    python tests/bench/bench_code.py [--files 10000] [--queries 300]

Generates a git repository of ``--files`` files (four Python files in five, the rest Markdown and
text; 100 folders; a ``.gitignore`` hiding a build folder of 500 more files) in a temporary
folder, then, through the tool itself (BM25 only, ``embeddings = "off"``):

- the first search, which builds the index from nothing (goal ≤ 60 s);
- a search after one file changed (goal ≤ 1 s): the tree is listed and stat'ed, one file re-read;
- ``--queries`` searches of identifiers and words, p50 / p95 (goal p95 ≤ 50 ms), with the
  default ``rescan_interval`` (2 s: a search trusts a refresh younger than that) and with
  ``rescan_interval = 0`` (every search lists the tree first).

Prints a markdown table; docs/benchmarks.md records it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from refactorbot.tools import ToolContext
from refactorbot_tools_code import CodeSearch

WORDS = (
    "account balance cache client config connection cursor document engine event handler index invoice "
    "journal ledger message order parser payment queue record report request router schema session "
    "settings storage stream task token transaction user validator worker"
).split()


def pct(values: list[float], q: float) -> float:
    """Return the ``q`` percentile (0-100) of ``values``."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def python_file(rng: random.Random, n: int) -> str:
    noun, other = rng.choice(WORDS), rng.choice(WORDS)
    parts = [f'"""The {noun} module number {n}."""\n\nimport os\nimport json\n\nLIMIT_{n} = {rng.randint(1, 999)}\n']
    for k in range(rng.randint(2, 5)):
        verb = rng.choice(["load", "save", "parse", "render", "check", "build", "merge", "split"])
        parts.append(
            f"\n\ndef {verb}_{noun}_{n}_{k}(path, {other}=None):\n"
            f'    """{verb.title()} the {noun} from a {other}."""\n'
            f"    data = json.loads(open(path).read())\n"
            f"    if {other} is not None:\n"
            f"        data['{other}'] = {other}\n"
            f"    return data.get('{noun}', LIMIT_{n})\n"
        )
    cls = f"{noun.title()}{other.title()}{n}"
    parts.append(
        f"\n\nclass {cls}:\n"
        f'    """Keeps {noun} and {other} together."""\n\n'
        f"    size = {n}\n\n"
        f"    def __init__(self, {noun}):\n"
        f"        self.{noun} = {noun}\n\n"
        f"    def describe(self):\n"
        f"        return f'{{self.{noun}}} {other}'\n"
    )
    return "".join(parts)


def text_file(rng: random.Random, n: int) -> str:
    lines = [f"# Notes {n}", ""]
    for _ in range(rng.randint(20, 80)):
        lines.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))))
    return "\n".join(lines) + "\n"


def generate(root: Path, files: int) -> list[str]:
    """Write the repository; return the relative paths of its Python files."""
    rng = random.Random(12)
    python: list[str] = []
    for n in range(files):
        folder = root / f"pkg{n % 100:02d}"
        folder.mkdir(exist_ok=True)
        if n % 5:
            rel = f"pkg{n % 100:02d}/module_{n}.py"
            (root / rel).write_text(python_file(rng, n))
            python.append(rel)
        else:
            (folder / f"notes_{n}.md").write_text(text_file(rng, n))
    (root / ".gitignore").write_text("build/\n*.pyc\n")
    (root / "build").mkdir()
    for n in range(500):
        (root / "build" / f"gen_{n}.py").write_text(f"def generated_{n}():\n    return {n}\n")
    env = {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.invalid",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    }
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "generated"]):
        subprocess.run(["git", *args], cwd=root, env=env, check=True)
    return python


async def run_search(tool: CodeSearch, ctx: ToolContext, query: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    result = await tool.run(tool.Params(query=query, limit=10), ctx)
    elapsed = (time.perf_counter() - started) * 1000
    assert result.ok, result.error
    return elapsed, result.data


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root, home = Path(tmp) / "repo", Path(tmp) / "home"
        root.mkdir()
        os.environ["RB_HOME"] = str(home)
        started = time.perf_counter()
        python = generate(root, args.files)
        print(f"generated {args.files} files (+500 ignored) in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        ctx = ToolContext(workspace=root)
        build = CodeSearch({"embeddings": "off", "index_budget": 600})
        first_ms, data = await run_search(build, ctx, "parse settings")
        assert data["complete"] and data["index"]["files"] == args.files + 1, data["index"]  # and .gitignore
        rows.append(
            (
                f"first search: index {args.files:,} files from nothing ({data['index']['chunks']:,} chunks), BM25",
                f"{first_ms / 1000:.1f} s",
                "≤ 60 s",
            )
        )

        rng = random.Random(7)
        always = CodeSearch({"embeddings": "off", "rescan_interval": 0})
        reindex: list[float] = []
        for round_ in range(7):
            rel = rng.choice(python)
            with open(root / rel, "a") as handle:
                handle.write(f"\n\ndef appended_marker_{round_}():\n    return {round_}\n")
            elapsed, data = await run_search(always, ctx, f"appended_marker_{round_}")
            assert data["refresh"]["read"] == 1 and data["results"][0]["path"] == rel, data
            reindex.append(elapsed)
        rows.append(
            (
                "search after one file changed (list + stat the tree, re-read 1 file, search), median of 7",
                f"{pct(reindex, 50):.0f} ms (max {max(reindex):.0f})",
                "≤ 1 s",
            )
        )

        queries = []
        for _ in range(args.queries):
            noun = rng.choice(WORDS)
            n = rng.choice(range(1, args.files, 5))
            queries.append(rng.choice([f"parse_{noun}", f"{noun} {rng.choice(WORDS)}", f"describe {noun} {n}"]))
        default = CodeSearch({"embeddings": "off"})
        for label, tool in (("default rescan_interval (2 s)", default), ("rescan_interval = 0", always)):
            times = []
            for query in queries[:20]:
                await run_search(tool, ctx, query)  # warm-up
            for query in queries:
                elapsed, _ = await run_search(tool, ctx, query)
                times.append(elapsed)
            rows.append(
                (
                    f"`code_search`, {len(queries)} queries, {label}, p50 / p95",
                    f"{pct(times, 50):.1f} / {pct(times, 95):.1f} ms",
                    "p95 ≤ 50 ms" if tool is default else "—",
                )
            )
        size = sum(p.stat().st_size for p in (home / "cache" / "code-index").glob("*"))
        rows.append(("index size on disk (SQLite + WAL)", f"{size / 1e6:.0f} MB", "—"))
    print("| measure | result | goal |")
    print("|---|---:|---|")
    for measure, result, goal in rows:
        print(f"| {measure} | {result} | {goal} |")


if __name__ == "__main__":
    asyncio.run(main())
