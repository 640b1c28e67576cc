"""Change detection off the turn's path, the user's ~/.agents/skills, and symlinked skill folders."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import QUIET, SKILLS, write_skill
from refactorbot import Event
from refactorbot.testing import host_running

WATCHING: dict[str, Any] = {"core": {"health_interval": 3600}, "slices": {"skills": {"rescan_interval": 0.1}}}


async def ok(host: Any, op: str, **payload: Any) -> Any:
    response = await host.call(op, **payload)
    assert response.success, response.error_message
    return response.data


def changes(host: Any) -> asyncio.Queue[dict[str, Any]]:
    """Return a queue that receives the payload of every ``skills.changed`` event."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def handler(event: Event) -> None:
        await queue.put(event.payload)

    host.bus.subscribe("skills.changed", handler)
    return queue


async def next_change(queue: asyncio.Queue[dict[str, Any]], name: str) -> dict[str, Any]:
    """Wait for the ``skills.changed`` event whose available skills include ``name``."""
    while True:
        payload = await asyncio.wait_for(queue.get(), 30)
        if name in payload["available"]:
            return payload


@pytest.mark.asyncio
async def test_a_turn_never_scans_the_sources(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_skill(home / "skills", "first", "The first skill.")
    async with host_running(home, [SKILLS], config=QUIET) as host:
        skills = host.instance("skills")
        scans = skills.scans
        write_skill(home / "skills", "second", "Added while the host runs.")
        for _ in range(20):
            block = await ok(host, "skills.prompt", message="use $first", execution_id="t")
            assert block["listed"] == ["first"]
        await ok(host, "skills.activate", name="first")
        await ok(host, "skills.read", name="first", path="SKILL.md")
        assert skills.scans == scans  # neither prompts, activations nor reads scanned
        await ok(host, "skills.reload")
        assert (await ok(host, "skills.prompt"))["listed"] == ["first", "second"]


@pytest.mark.asyncio
async def test_under_serve_a_background_rescan_finds_changes_and_the_next_turn_sees_them(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_skill(home / "skills", "first", "The first skill.", "Version one.")
    async with host_running(home, [SKILLS], config=WATCHING) as host:
        skills = host.instance("skills")
        assert skills.watching
        queue = changes(host)
        write_skill(home / "skills", "second", "Added while the host runs.")
        seen = await next_change(queue, "second")
        block = await ok(host, "skills.prompt")
        assert block["listed"] == ["first", "second"]
        enum = block["tool_schemas"]["skill_activate"]["function"]["parameters"]["properties"]["name"]["enum"]
        assert enum == ["first", "second"]

        # A turn does not wait for a scan in progress: with the scan lock held, prompts still answer.
        async with skills._scan_lock:
            held = await asyncio.wait_for(host.call("skills.prompt", message="$first"), 30)
            assert held.success and "Version one." in held.data["text"]

        (home / "skills" / "first" / "SKILL.md").write_text(
            "---\nname: first\ndescription: The first skill, changed.\n---\nVersion two.\n"
        )
        while True:
            payload = await asyncio.wait_for(queue.get(), 30)
            if payload["generation"] > seen["generation"]:
                break
        block = await ok(host, "skills.prompt", message="$first")
        assert "Version two." in block["text"] and "The first skill, changed." in block["text"]
        assert (await ok(host, "skills.show", name="first"))["version"] == 2
        assert (await host.instance("skills").health_check()).healthy
    assert not skills.watching  # stopped with the host


@pytest.mark.asyncio
async def test_one_shot_commands_scan_once_and_do_not_watch(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_skill(home / "skills", "first")
    async with host_running(home, [SKILLS], config=WATCHING, serving=False) as host:
        skills = host.instance("skills")
        assert not skills.watching and skills.scans == 1
        assert [s["name"] for s in (await ok(host, "skills.list"))["skills"]] == ["first"]
        await ok(host, "skills.show", name="first")
        assert skills.scans == 1


def test_the_rescan_interval_is_off_or_modest() -> None:
    from pydantic import ValidationError
    from refactorbot_slice_skills.models import SkillsConfig

    assert SkillsConfig(rescan_interval=0).rescan_interval == 0
    with pytest.raises(ValidationError, match="at least 0.1 seconds"):
        SkillsConfig(rescan_interval=0.001)


@pytest.mark.asyncio
async def test_the_users_agents_skills_come_after_the_workspaces_and_before_extra_dirs(
    tmp_path: Path, user_home: Path
) -> None:
    home = tmp_path / "home"
    user = user_home / ".agents" / "skills"
    write_skill(user, "shared", "From ~/.agents/skills.")
    write_skill(user, "lint", "User lint.")
    write_skill(home / "workspace" / ".agents" / "skills", "lint", "Project lint.")
    write_skill(tmp_path / "extra", "shared", "From an extra folder.")
    config = {**QUIET, "slices": {"skills": {"rescan_interval": 0, "extra_dirs": [str(tmp_path / "extra")]}}}
    async with host_running(home, [SKILLS], config=config) as host:
        listed = (await ok(host, "skills.list"))["skills"]
        assert [(s["name"], s["status"], s["source"]) for s in listed] == [
            ("lint", "available", ".agents"),
            ("shared", "available", "~/.agents"),
            ("lint", "shadowed", "~/.agents"),
            ("shared", "shadowed", "extra 1"),
        ]
        assert listed[1]["location"] == str(user / "shared")
    off = {**QUIET, "slices": {"skills": {"rescan_interval": 0, "user_skills_dir": ""}}}
    async with host_running(home, [SKILLS], config=off) as host:
        assert [s["source"] for s in (await ok(host, "skills.list"))["skills"]] == [".agents"]


@pytest.mark.asyncio
async def test_a_workspace_that_is_the_user_home_reads_agents_skills_once(tmp_path: Path, user_home: Path) -> None:
    write_skill(user_home / ".agents" / "skills", "shared", "Once.")
    config = {**QUIET, "slices": {"skills": {"rescan_interval": 0, "workspace": str(user_home)}}}
    async with host_running(tmp_path / "home", [SKILLS], config=config) as host:
        listed = (await ok(host, "skills.list"))["skills"]
        assert [(s["name"], s["status"], s["source"]) for s in listed] == [("shared", "available", ".agents")]


@pytest.mark.asyncio
async def test_symlinked_skill_folders_inside_a_source_or_the_workspace_load(tmp_path: Path, user_home: Path) -> None:
    home = tmp_path / "home"
    workspace = home / "workspace"
    # Another agent's installer: one copy in ~/.agents/skills, a link to it in an agent's folder.
    canonical = write_skill(user_home / ".agents" / "skills", "pdf", "PDF tools.", "Use pdftotext.")
    (canonical / "references").mkdir()
    (canonical / "references" / "forms.md").write_text("# Forms\n")
    (workspace / "skills").mkdir(parents=True)
    (workspace / "skills" / "pdf").symlink_to(canonical, target_is_directory=True)
    # A project keeping its skills elsewhere in the workspace, linked into .agents/skills.
    kept = write_skill(workspace / "ai" / "skills", "review", "Review code.", "Step one.")
    (workspace / ".agents" / "skills").mkdir(parents=True)
    (workspace / ".agents" / "skills" / "review").symlink_to(Path("../../ai/skills/review"))
    # Refused: a link out of every source, and a link to a whole source.
    outside = write_skill(tmp_path / "outside", "stray", "Not in any source.")
    (home / "skills").mkdir(parents=True)
    (home / "skills" / "stray").symlink_to(outside, target_is_directory=True)
    (home / "skills" / "loop").symlink_to(home / "skills", target_is_directory=True)
    async with host_running(home, [SKILLS], config=QUIET) as host:
        listed = {(s["name"], s["source"]): s for s in (await ok(host, "skills.list"))["skills"]}
        pdf = listed[("pdf", "workspace")]
        assert pdf["status"] == "available" and pdf["location"] == str(workspace / "skills" / "pdf")
        assert listed[("pdf", "~/.agents")]["status"] == "shadowed"
        assert listed[("review", ".agents")]["status"] == "available"
        stray = listed[("stray", "home")]
        assert stray["status"] == "invalid"
        assert stray["reason"].startswith(f"the skill folder is a symlink to {os.path.realpath(outside)}, outside")
        assert listed[("loop", "home")]["reason"] == "the skill folder is a symlink to a whole skill source"
        read = await ok(host, "skills.read", name="pdf", path="references/forms.md")
        assert read["text"] == "# Forms\n"
        escape = await host.call("skills.read", name="pdf", path="../review/SKILL.md")
        assert not escape.success and "\n" not in escape.error_message

        # The workshop changes a linked skill where it lives; the link stays a link.
        changed = "---\nname: review\ndescription: Review code.\n---\nStep one.\nStep two.\n"
        proposal = await ok(host, "skills.propose", name="review", skill_md=changed)
        await ok(host, "skills.apply", id=proposal["id"])
        assert (kept / "SKILL.md").read_text() == changed
        assert (workspace / ".agents" / "skills" / "review").is_symlink()
        assert (await ok(host, "skills.show", name="review"))["version"] == 2
