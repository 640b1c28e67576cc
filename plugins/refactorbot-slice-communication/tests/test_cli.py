"""`refactorbot send`, `channels` and `pairing` as a user runs them: real subprocesses, against a running server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PLUGINS, host_config, running_adapter
from loop_channel import LoopPlatform
from refactorbot.channels import SendFailed
from refactorbot.testing import ModelServer


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
    return subprocess.run(
        [sys.executable, "-m", "refactorbot", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.fixture
def server(tmp_path: Path, model: ModelServer, platform: LoopPlatform) -> Iterator[Any]:
    from refactorbot_api.testing import running_server

    with running_server(tmp_path, PLUGINS, config=host_config(model, platform)) as srv:
        srv.run(running_adapter(srv.host))
        yield srv


def test_send_through_the_running_server(server: Any, tmp_path: Path, platform: LoopPlatform) -> None:
    sent = cli(tmp_path, "send", "loop", "ops-room", "Deploy **finished**.")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("sent to loop:ops-room (message 1; ids p-1)")
    assert platform.texts("ops-room") == ["Deploy **finished**."]

    as_json = cli(tmp_path, "send", "loop", "ops-room", "again", "--json")
    assert json.loads(as_json.stdout)["status"] == "sent"

    platform.send_failures.extend(SendFailed("chat is archived", permanent=True) for _ in range(1))
    failed = cli(tmp_path, "send", "loop", "old-room", "hello?")
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [
        "Error: send to loop chat old-room failed: chat is archived (recorded as failed: message 3)"
    ]

    listed = cli(tmp_path, "channels")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()[:2]
    assert header.split() == ["CHANNEL", "ENABLED", "STATUS", "IN", "OUT", "FAILED", "LAST", "ERROR"]
    assert row.split()[:6] == ["loop", "yes", "running", "0", "2", "1"]


def test_send_with_a_template(server: Any, tmp_path: Path, platform: LoopPlatform) -> None:
    server.run(server.host.call("communication.template_set", name="alert", body="**$service** is $state"))
    sent = cli(tmp_path, "send", "loop", "ops", "--template", "alert", "--var", "service=api", "--var", "state=down")
    assert sent.returncode == 0, sent.stderr
    assert platform.texts("ops") == ["**api** is down"]
    missing = cli(tmp_path, "send", "loop", "ops", "--template", "alert", "--var", "service=api")
    assert missing.returncode == 1 and "needs variable(s): state" in missing.stderr
    usage = cli(tmp_path, "send", "loop", "ops")
    assert usage.returncode == 2 and "give TEXT or --template NAME" in usage.stderr


def test_pairing_list_and_approve(server: Any, tmp_path: Path, platform: LoopPlatform) -> None:
    adapter = server.host.instance("communication").runners["loop"].adapter
    server.run(adapter.inject("hi", sender_id="eve", chat_id="dm-eve", message_id="e1", sender_name="Eve"))
    server.run(platform.wait_sent(1))
    listed = cli(tmp_path, "pairing", "list")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    code = row.split()[0]
    assert header.split()[:4] == ["CODE", "CHANNEL", "SENDER", "NAME"]
    assert row.split()[1:5] == ["loop", "eve", "Eve", "pending"]
    assert code in platform.texts("dm-eve")[0]

    approved = cli(tmp_path, "pairing", "approve", f"{code[:4]}-{code[4:]}".lower())
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == "approved eve on loop"
    twice = cli(tmp_path, "pairing", "approve", code)
    assert twice.returncode == 1 and f"pairing code {code} was already approved" in twice.stderr
    assert cli(tmp_path, "pairing", "list").stdout.strip() == "No pending pairing requests."
    every = json.loads(cli(tmp_path, "pairing", "list", "--all", "--json").stdout)
    assert [(r["sender_id"], r["status"]) for r in every] == [("eve", "approved")]
    bad = cli(tmp_path, "pairing", "deny", "nope")
    assert bad.returncode == 1 and "pairing code" in bad.stderr and "\n" not in bad.stderr.strip()


def test_without_a_server_pairing_works_on_the_database_and_send_says_what_to_do(tmp_path: Path) -> None:
    listed = cli(tmp_path, "pairing", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() == "No pending pairing requests."
    sent = cli(tmp_path, "send", "webhook", "room", "hi")
    assert sent.returncode == 1
    assert "Error:" in sent.stderr and "\n" not in sent.stderr.strip()
