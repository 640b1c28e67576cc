"""`refactorbot events` as a user runs it: real subprocesses on a home, without a server (one-shot hosts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import rows


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
    env["RB_LOAD_PLUGINS"] = "refactorbot-slice-eventbus"
    return subprocess.run(
        [sys.executable, "-m", "refactorbot", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_publish_tail_stats_and_dead_letters(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = cli(home, "events", "publish", "notes.added", '{"id": 7}')
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "stored notes.added at offset 1"
    assert cli(home, "events", "publish", "notes.removed").stdout.strip() == "stored notes.removed at offset 2"
    assert rows(home, 'SELECT "offset", topic, payload, source FROM events') == [
        (1, "notes.added", '{"id":7}', "cli"),
        (2, "notes.removed", "{}", "cli"),
    ]
    tail = cli(home, "events", "tail", "--topic", "notes.add*", "--json")
    assert [e["offset"] for e in json.loads(tail.stdout)] == [1]
    stats = cli(home, "events", "stats")
    assert stats.returncode == 0 and "offsets 1..2 (2 stored)" in stats.stdout
    assert "No subscribers yet." in stats.stdout
    assert cli(home, "events", "dead").stdout.strip() == "No dead letters."
    assert cli(home, "events", "requeue", "--all").stdout.strip() == "requeued 0 dead letter(s)"


def test_bad_input_is_refused_with_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bad_json = cli(home, "events", "publish", "notes.added", "{not json")
    assert bad_json.returncode == 2 and "PAYLOAD is not JSON" in bad_json.stderr
    not_object = cli(home, "events", "publish", "notes.added", "[1]")
    assert not_object.returncode == 2 and "PAYLOAD must be a JSON object" in not_object.stderr
    bad_topic = cli(home, "events", "publish", "has space")
    assert bad_topic.returncode != 0 and "topic" in bad_topic.stderr and "Traceback" not in bad_topic.stderr
    nothing = cli(home, "events", "requeue")
    assert nothing.returncode == 2 and "give dead letter IDS, or --subscriber NAME, or --all" in nothing.stderr
    unknown = cli(home, "events", "replay", "nobody", "--from", "1")
    assert unknown.returncode == 1 and "no subscriber named 'nobody'" in unknown.stderr
