"""Skills benchmark: the cost of the system prompt's skills part with 200 installed skills.

Progressive disclosure (the ``<available_skills>`` block: names, descriptions, locations) against
the same 200 skills injected in full (every body in the prompt), in characters and in milliseconds
per turn through ``skills.prompt`` on a real host. Turns read the last scan: the host here rescans
in the background every 0.1 s (twenty times more often than the default), so the turn latencies
include any interference from the rescans but never wait for one. Also: the first scan of the 200
folders (read, parse, hash, register), a background rescan when nothing changed (stat only), and
the time from writing a new skill to the ``skills.changed`` event that makes the next turn list it.

Run with `nox -s bench -- skills` or `python tests/bench/bench_skills.py [--skills 200] [--turns 500]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from refactorbot.testing import host_running

SKILLS = "refactorbot_slice_skills.plugin"
BODY = "\n".join(f"{i}. Step {i} of the procedure, with the detail a model needs to do it right." for i in range(1, 60))


def make_skills(root: Path, count: int) -> None:
    """Write ``count`` skills of realistic size (a 150-character description, a ~4 KB body)."""
    for i in range(count):
        name = f"skill-{i:03d}"
        (root / name / "references").mkdir(parents=True)
        description = f"Handle requests of kind {i}: what it does and when to use it, in about one sentence or two."
        (root / name / "SKILL.md").write_text(
            f"---\nname: {name}\ndescription: '{description}'\n---\n# {name}\n{BODY}\n"
        )
        (root / name / "references" / "notes.md").write_text("reference material\n" * 50)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(count: int, turns: int, budget: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        make_skills(home / "skills", count)
        config = {
            "core": {"health_interval": 3600},
            "slices": {"skills": {"prompt_budget_chars": budget, "rescan_interval": 0.1}},
        }
        started = time.perf_counter()
        async with host_running(home, [SKILLS], config=config) as host:
            first_scan_ms = (time.perf_counter() - started) * 1000  # host start, dominated by the first scan
            slice_ = host.instance("skills")
            rescans = []
            for _ in range(20):
                t0 = time.perf_counter()
                await slice_.refresh()
                rescans.append((time.perf_counter() - t0) * 1000)
            scans_before = slice_.scans
            disclosed, lengths = [], set()
            for _ in range(turns):
                t0 = time.perf_counter()
                response = await host.call("skills.prompt", message="write the release notes")
                disclosed.append((time.perf_counter() - t0) * 1000)
                lengths.add(len(response.data["text"]))
            block = response.data
            background_scans = slice_.scans - scans_before

            async def rescan_without_pause() -> None:
                while True:
                    await slice_.refresh()

            busy = asyncio.create_task(rescan_without_pause())  # the worst case: a rescan always running
            during, scans_before = [], slice_.scans
            for _ in range(turns):
                await asyncio.sleep(0.001)  # let the rescan task run between turns, as a real loop does
                t0 = time.perf_counter()
                await host.call("skills.prompt", message="write the release notes")
                during.append((time.perf_counter() - t0) * 1000)
            busy.cancel()
            rescans_during = slice_.scans - scans_before
            changed: asyncio.Queue[float] = asyncio.Queue()

            async def on_change(event: Any) -> None:
                if "skill-new" in event.payload["available"]:
                    await changed.put(time.perf_counter())

            host.bus.subscribe("skills.changed", on_change)
            seen_ms = []
            for i in range(5):
                name = "skill-new"
                written = time.perf_counter()
                (home / "skills" / name).mkdir()
                (home / "skills" / name / "SKILL.md").write_text(f"---\nname: {name}\ndescription: New {i}.\n---\n")
                seen_ms.append((await asyncio.wait_for(changed.get(), 30) - written) * 1000)
                listed = (await host.call("skills.prompt")).data["listed"]
                assert name in listed or len(block["omitted"]) > 0
                shutil.rmtree(home / "skills" / name)
                while name in [f.name for f in slice_._view.available()]:
                    await asyncio.sleep(0.05)
            full, full_chars = [], 0
            for _ in range(turns):  # the same skills injected in full: every SKILL.md body in the prompt
                t0 = time.perf_counter()
                view = slice_._view
                text = "\n\n".join(slice_._body(item) for item in view.available())
                full.append((time.perf_counter() - t0) * 1000)
                full_chars = len(text)
    return {
        "skills": count,
        "turns": turns,
        "budget_chars": budget,
        "disclosed_chars": max(lengths),
        "disclosed_listed": len(block["listed"]),
        "disclosed_omitted": len(block["omitted"]),
        "full_chars": full_chars,
        "chars_ratio": round(full_chars / max(lengths), 1),
        "disclosed_ms_p50": round(statistics.median(disclosed), 3),
        "disclosed_ms_p99": round(percentile(disclosed, 0.99), 3),
        "full_ms_p50": round(statistics.median(full), 3),
        "full_ms_p99": round(percentile(full, 0.99), 3),
        "background_rescans_during_turns": background_scans,
        "during_rescans_ms_p50": round(statistics.median(during), 3),
        "during_rescans_ms_p99": round(percentile(during, 0.99), 3),
        "rescans_during_those_turns": rescans_during,
        "host_start_with_first_scan_ms": round(first_scan_ms, 1),
        "rescan_unchanged_ms_p50": round(statistics.median(rescans), 1),
        "change_seen_ms_max": round(max(seen_ms), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skills", type=int, default=200)
    parser.add_argument("--turns", type=int, default=500)
    args = parser.parse_args()
    for budget in (8000, 60_000):
        print(json.dumps(asyncio.run(measure(args.skills, args.turns, budget))))


if __name__ == "__main__":
    main()
