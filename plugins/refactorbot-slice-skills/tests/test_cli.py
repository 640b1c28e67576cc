"""`refactorbot skills` as a user runs it: real subprocesses, against a running server and in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import QUIET, SKILLS, copy_peers, write_skill

TRIAGE_V2 = "---\nname: triage\ndescription: Triage bugs carefully.\n---\nStep one.\nStep two.\n"


def cli(home: Path, user_home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RB_")}
    env["HOME"] = str(user_home)
    return subprocess.run(
        [sys.executable, "-m", "refactorbot", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def rows(output: str) -> dict[str, list[str]]:
    """Return the rows of ``skills list`` by name (first row wins), as their first six columns."""
    found: dict[str, list[str]] = {}
    for line in output.splitlines()[1:]:
        cells = line.split()
        found.setdefault(cells[0], cells[:6] + [" ".join(cells[6:])])
    return found


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def skill_zip(path: Path, name: str, description: str = "Take notes.") -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}/SKILL.md", f"---\nname: {name}\ndescription: {description}\n---\nWrite it down.\n")
        archive.writestr(f"{name}/references/style.md", "# Style\n")
    return path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Any]:
    from refactorbot_api.testing import running_server

    home = tmp_path / "home"
    copy_peers(home / "skills")
    write_skill(home / "skills", "triage", "Triage bugs.", "Step one.")
    with running_server(home, [SKILLS], config=QUIET, env={"PATH": "/usr/bin:/bin"}) as srv:
        yield srv


def test_list_show_and_validate_through_the_running_server(server: Any, tmp_path: Path, user_home: Path) -> None:
    home = tmp_path / "home"
    listed = cli(home, user_home, "skills", "list")
    assert listed.returncode == 0, listed.stderr
    header = listed.stdout.splitlines()[0].split()
    assert header == ["NAME", "STATUS", "SOURCE", "VERSION", "USED", "OK/FAILED", "DESCRIPTION", "OR", "REASON"]
    table = rows(listed.stdout)
    assert table["pdf"][:6] == ["pdf", "available", "home", "1", "0", "0/0"]
    assert table["github"][1] == "unavailable"
    assert table["github"][6] == "needs program(s) not found on PATH: gh"
    assert listed.stdout.index("\npdf ") < listed.stdout.index("\ngithub ")  # available ones first

    as_json = json.loads(cli(home, user_home, "skills", "list", "--json").stdout)
    assert {s["name"] for s in as_json} == {
        "pdf",
        "github",
        "weather",
        "code-review",
        "notion",
        "memory-keeper",
        "triage",
    }

    shown = cli(home, user_home, "skills", "show", "github")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == "github (unavailable: needs program(s) not found on PATH: gh)"
    assert "  requires bins: gh" in lines
    assert any(line.startswith("  warning: ") and "install steps are not run" in line for line in lines)
    pdf = cli(home, user_home, "skills", "show", "pdf").stdout
    assert "  files: " in pdf and "scripts/check_fillable_fields.py" in pdf
    assert "# PDF Processing Guide" in pdf and "  v1 " in pdf
    assert json.loads(cli(home, user_home, "skills", "show", "pdf", "--json").stdout)["license"].startswith(
        "Proprietary"
    )
    assert one_error_line(cli(home, user_home, "skills", "show", "nope")) == "Error: no skill 'nope' in any source"
    bad_name = cli(home, user_home, "skills", "show", "Bad_Name")
    assert one_error_line(bad_name).startswith("Error: ")

    incoming = write_skill(tmp_path / "incoming", "notes", "Take notes.")
    checked = cli(home, user_home, "skills", "validate", str(incoming))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("ok: notes (") and not (home / "skills" / "notes").exists()
    slip = tmp_path / "slip.zip"
    with zipfile.ZipFile(slip, "w") as archive:
        archive.writestr("slip/SKILL.md", "---\nname: slip\ndescription: s\n---\n")
        archive.writestr("slip/../../escaped.txt", "x")
    refused = one_error_line(cli(home, user_home, "skills", "validate", str(slip)))
    assert refused.startswith(f"Error: {slip}: ") and not list(tmp_path.rglob("escaped.txt"))
    gated = write_skill(
        tmp_path / "incoming", "needs-key", extra="metadata:\n  openclaw:\n    requires:\n      env: [NO_SUCH_KEY]\n"
    )
    warned = cli(home, user_home, "skills", "validate", str(gated)).stdout
    assert "unavailable here: needs environment variable(s) set: NO_SUCH_KEY" in warned


def test_install_enable_disable_and_the_workshop_through_the_running_server(
    server: Any, tmp_path: Path, user_home: Path
) -> None:
    home = tmp_path / "home"
    archive = skill_zip(tmp_path / "notes.zip", "notes")
    installed = cli(home, user_home, "skills", "install", str(archive))
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout.strip() == f"installed notes in {home / 'skills' / 'notes'} (available)"
    assert (home / "skills" / "notes" / "references" / "style.md").read_text() == "# Style\n"
    block = server.run(server.host.call("skills.prompt", message="hi")).data
    assert "notes" in block["listed"]  # the server's next turn lists it
    again = one_error_line(cli(home, user_home, "skills", "install", str(archive)))
    assert again.startswith("Error: not installed: ") and "already installed" in again
    replaced = cli(
        home, user_home, "skills", "install", str(skill_zip(archive, "notes", "Take good notes.")), "--replace"
    )
    assert replaced.returncode == 0, replaced.stderr
    assert cli(home, user_home, "skills", "show", "notes").stdout.splitlines()[1] == "  Take good notes."

    off = cli(home, user_home, "skills", "disable", "notes")
    assert off.stdout.strip() == "notes: disabled"
    assert rows(cli(home, user_home, "skills", "list").stdout)["notes"][1] == "disabled"
    assert "notes" not in server.run(server.host.call("skills.prompt")).data["listed"]
    on = cli(home, user_home, "skills", "enable", "notes")
    assert on.stdout.strip() == "notes: available"
    assert one_error_line(cli(home, user_home, "skills", "disable", "nope")).startswith("Error: no skill 'nope'")

    assert cli(home, user_home, "skills", "proposals").stdout.strip() == "No proposals."
    first = server.run(server.host.call("skills.propose", name="triage", skill_md=TRIAGE_V2, rationale="clearer"))
    assert first.success, first.error_message
    listed = cli(home, user_home, "skills", "proposals", "--diff")
    assert listed.stdout.startswith(f"#{first.data['id']} triage pending ")
    assert listed.stdout.splitlines()[0].endswith(": clearer") and "+Step two." in listed.stdout
    applied = cli(home, user_home, "skills", "apply", str(first.data["id"]))
    assert applied.stdout.strip() == f"applied #{first.data['id']}: triage is now version 2"
    assert (home / "skills" / "triage" / "SKILL.md").read_text() == TRIAGE_V2
    twice = one_error_line(cli(home, user_home, "skills", "apply", str(first.data["id"])))
    assert twice == f"Error: proposal {first.data['id']} is applied, not pending"
    second = server.run(server.host.call("skills.propose", name="triage", skill_md=TRIAGE_V2 + "Three.\n"))
    rejected = cli(home, user_home, "skills", "reject", str(second.data["id"]), "--reason", "not needed")
    assert rejected.stdout.strip() == f"rejected #{second.data['id']} (triage)"
    only = cli(home, user_home, "skills", "proposals", "--status", "rejected").stdout
    assert only.startswith(f"#{second.data['id']} triage rejected (not needed)")
    rolled = cli(home, user_home, "skills", "rollback", "triage")
    assert rolled.stdout.strip() == "triage is back to version 1"
    assert "Step two." not in (home / "skills" / "triage" / "SKILL.md").read_text()
    assert one_error_line(cli(home, user_home, "skills", "rollback", "triage")).endswith(
        "no version before 1 to roll back to"
    )


def test_without_a_server_the_commands_work_in_process(tmp_path: Path, user_home: Path) -> None:
    home = tmp_path / "home"
    write_skill(user_home / ".agents" / "skills", "shared", "Shared with other agents.")
    listed = cli(home, user_home, "skills", "list")
    assert listed.returncode == 0, listed.stderr
    assert rows(listed.stdout)["shared"][:3] == ["shared", "available", "~/.agents"]

    incoming = write_skill(tmp_path / "incoming", "notes", "Take notes.")
    installed = cli(home, user_home, "skills", "install", str(incoming))
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout.strip() == f"installed notes in {home / 'skills' / 'notes'} (available)"
    assert cli(home, user_home, "skills", "disable", "notes").stdout.strip() == "notes: disabled"
    shown = cli(home, user_home, "skills", "show", "notes")  # a new process: kept in the database
    assert (
        shown.stdout.splitlines()[0] == "notes (disabled: disabled; turn it on with: refactorbot skills enable notes)"
    )
    assert "  v1 " in shown.stdout and shown.stdout.rstrip().endswith("Do it.")
    assert cli(home, user_home, "skills", "enable", "notes").stdout.strip() == "notes: available"

    (tmp_path / "incoming" / "bad").mkdir()
    (tmp_path / "incoming" / "bad" / "SKILL.md").write_text("---\nname: !!python/object:os.system x\n---\n")
    refused = one_error_line(cli(home, user_home, "skills", "validate", str(tmp_path / "incoming" / "bad")))
    assert refused.startswith(f"Error: {tmp_path / 'incoming' / 'bad'}: ")
    missing = one_error_line(cli(home, user_home, "skills", "install", str(tmp_path / "nothing-here.zip")))
    assert missing.startswith("Error: not installed: ")
