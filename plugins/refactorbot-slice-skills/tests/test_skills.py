"""Skills from other agents, sources and precedence, gating, the prompt block, activations and the workshop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import QUIET, SKILLS, copy_peers, write_skill
from refactorbot.testing import host_running, plugin_of

TOOLS = ["refactorbot_slice_tools.plugin", "refactorbot_tools_exec.plugin"]


async def ok(host: Any, op: str, **payload: Any) -> Any:
    response = await host.call(op, **payload)
    assert response.success, response.error_message
    return response.data


@pytest.mark.asyncio
async def test_peer_skills_load_unchanged_with_their_nested_metadata(tmp_path: Path) -> None:
    copy_peers(tmp_path / "home" / "skills")
    env = {"PATH": "/usr/bin:/bin"}  # no gh here; curl and python3 are
    async with host_running(tmp_path / "home", [SKILLS], config=QUIET, env=env) as host:
        skills = {s["name"]: s for s in (await ok(host, "skills.list"))["skills"]}
        assert set(skills) == {"pdf", "github", "weather", "code-review", "notion", "memory-keeper"}
        assert all(s["status"] != "invalid" for s in skills.values()), skills
        assert skills["github"]["status"] == "unavailable"
        assert skills["github"]["reason"] == "needs program(s) not found on PATH: gh"
        assert skills["notion"]["reason"] == "needs environment variable(s) set: NOTION_API_KEY"
        assert skills["memory-keeper"]["always"] is True
        assert any("install steps are not run" in w for w in skills["github"]["warnings"])
        assert any("metadata.nanobot" in w for w in skills["weather"]["warnings"])
        pdf = await ok(host, "skills.show", name="pdf")
        assert pdf["license"] == "Proprietary. LICENSE.txt has complete terms"
        assert "scripts/check_fillable_fields.py" in pdf["files"]
        review = await ok(host, "skills.show", name="code-review")
        assert review["allowed_tools"] == ["Read", "Grep", "Glob"]
        assert review["metadata"] == {"author": "example-org", "version": "1.0"}
        github = await ok(host, "skills.show", name="github")
        assert github["requires"] == {"bins": ["gh"]}
        assert github["metadata"]["openclaw"]["emoji"] == "🐙"


@pytest.mark.asyncio
async def test_sources_in_precedence_order_with_shadowed_skills_listed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    write_skill(home / "workspace" / "skills", "deploy", "Workspace deploy.")
    write_skill(home / "skills", "deploy", "Home deploy.")
    write_skill(home / "workspace" / ".agents" / "skills", "lint", "Agents lint.")
    pack = write_skill(tmp_path / "pack", "deploy", "Pack deploy.").parent
    write_skill(pack, "packed", "Only in the pack.")
    pack_plugin = plugin_of(hooks={"register_skills": lambda register: register(pack)}, name="skillpack")
    async with host_running(home, [SKILLS, pack_plugin], config=QUIET) as host:
        listed = (await ok(host, "skills.list"))["skills"]
        deploy = [s for s in listed if s["name"] == "deploy"]
        assert [(s["status"], s["source"]) for s in deploy] == [
            ("available", "workspace"),
            ("shadowed", "home"),
            ("shadowed", "pack skillpack"),
        ]
        assert deploy[1]["reason"].startswith("shadowed by the skill in workspace")
        available = {s["name"]: s["source"] for s in listed if s["status"] == "available"}
        assert available == {"deploy": "workspace", "lint": ".agents", "packed": "pack skillpack"}


@pytest.mark.asyncio
async def test_the_prompt_block_keeps_its_budget_and_names_what_it_left_out(rb_host: Any) -> None:
    for i in range(30):
        write_skill(rb_host.home / "skills", f"skill-{i:02d}", f"Handles task number {i} " + "in detail " * 10)
    await ok(rb_host, "skills.reload")
    block = await ok(rb_host, "skills.prompt", message="hi", budget_chars=2000)
    assert len(block["text"]) <= 2000
    assert block["listed"] and block["omitted"]
    assert len(block["listed"]) + len(block["omitted"]) == 30
    assert f"Not listed for lack of room ({len(block['omitted'])})" in block["text"]
    assert block["omitted"][0] in block["text"]
    full = await ok(rb_host, "skills.prompt", message="hi", budget_chars=100_000)
    assert full["omitted"] == [] and "lack of room" not in full["text"]
    assert full["text"].count("<skill>") == 30 and "Handles task number 29" in full["text"]
    assert "Do it." not in full["text"]  # bodies load on activation only
    enum = full["tool_schemas"]["skill_activate"]["function"]["parameters"]["properties"]["name"]["enum"]
    assert enum == [f"skill-{i:02d}" for i in range(30)]


@pytest.mark.asyncio
async def test_mentions_and_always_skills_load_bodies_and_are_recorded(tmp_path: Path) -> None:
    copy_peers(tmp_path / "home" / "skills")
    async with host_running(tmp_path / "home", [SKILLS], config=QUIET, env={"PATH": "/usr/bin:/bin"}) as host:
        block = await ok(
            host, "skills.prompt", message="please $pdf this and $github that, costs $5", execution_id="run-1"
        )
        assert block["activated"] == ["memory-keeper", "pdf"]
        assert "# PDF Processing Guide" in block["text"] and "Write important facts" in block["text"]
        assert block["notes"] == [
            "skill github was asked for but is unavailable: needs program(s) not found on PATH: gh"
        ]
        await ok(
            host, "skills.outcome", execution_id="run-1", names=["pdf", "memory-keeper"], success=False, error="boom"
        )
        pdf = next(s for s in (await ok(host, "skills.list"))["skills"] if s["name"] == "pdf")
        assert (pdf["activations"], pdf["successes"], pdf["failures"]) == (1, 0, 1)


@pytest.mark.asyncio
async def test_retention_prunes_old_usage_rows_and_every_count_stays(tmp_path: Path) -> None:
    copy_peers(tmp_path / "home" / "skills")
    config = {**QUIET, "slices": {"skills": {"rescan_interval": 0, "retention_max_rows": 2}}}
    async with host_running(tmp_path / "home", [SKILLS], config=config, env={"PATH": "/usr/bin:/bin"}) as host:
        assert await ok(host, "skills.prune") == {"deleted": 0, "remaining": 0}  # after the start pass
        await ok(host, "skills.activate", name="weather", execution_id="run-w")  # the oldest row: pruned whole
        for turn in range(5):
            await ok(host, "skills.activate", name="pdf", execution_id=f"run-{turn}")
            await ok(host, "skills.outcome", execution_id=f"run-{turn}", names=["pdf"], success=turn % 2 == 0)

        def counts(listing: dict[str, Any]) -> dict[str, tuple[int, int, int, float | None]]:
            return {
                s["name"]: (s["activations"], s["successes"], s["failures"], s["last_used"])
                for s in listing["skills"]
                if s["name"] in ("pdf", "weather")
            }

        before = counts(await ok(host, "skills.list"))
        assert [v[:3] for v in before.values()] == [(5, 3, 2), (1, 0, 0)]
        pruned = await ok(host, "skills.prune")
        assert pruned == {"deleted": 4 + 3, "remaining": 2 + 2}  # the newest 2 rows of each table stay
        assert counts(await ok(host, "skills.list")) == before  # counts and last use unchanged, weather's too
        again = await ok(host, "skills.prune")
        assert again == {"deleted": 0, "remaining": 4}
        await ok(host, "skills.activate", name="pdf", execution_id="run-6")
        await ok(host, "skills.prune")
        after = counts(await ok(host, "skills.list"))
        assert after["pdf"][:3] == (6, 3, 2) and after["pdf"][3] > before["pdf"][3]
        assert after["weather"] == before["weather"]


@pytest.mark.asyncio
async def test_tools_activate_read_and_run_scripts_through_the_exec_policy(tmp_path: Path) -> None:
    copy_peers(tmp_path / "home" / "skills")
    async with host_running(tmp_path / "home", [SKILLS, *TOOLS], config=QUIET) as host:
        names = [t["name"] for t in (await ok(host, "tools.list"))["tools"]]
        assert {"skill_activate", "skill_read", "skill_run", "skill_propose"} <= set(names)
        got = await ok(host, "tools.execute", tool="skill_activate", arguments={"name": "pdf"}, session_id="s1")
        assert got["ok"] and "# PDF Processing Guide" in got["output"] and "references/reference.md" in got["output"]
        read = await ok(
            host, "tools.execute", tool="skill_read", arguments={"name": "pdf", "path": "references/reference.md"}
        )
        assert read["output"].startswith("# PDF reference")
        ran = await ok(
            host,
            "tools.execute",
            tool="skill_run",
            arguments={"name": "pdf", "script": "scripts/check_fillable_fields.py", "args": ["a.pdf"]},
        )
        assert ran["ok"], ran
        assert "checked 1 file(s): a.pdf" in ran["output"]
        escape = await ok(
            host, "tools.execute", tool="skill_run", arguments={"name": "pdf", "script": "../weather/SKILL.md"}
        )
        assert not escape["ok"] and "\n" not in escape["error"]
        unknown = await ok(host, "tools.execute", tool="skill_activate", arguments={"name": "nope"})
        assert not unknown["ok"] and "no skill 'nope'" in unknown["error"]


@pytest.mark.asyncio
async def test_a_script_the_exec_policy_refuses_does_not_run(tmp_path: Path) -> None:
    folder = write_skill(tmp_path / "home" / "skills", "shelly")
    (folder / "scripts").mkdir()
    (folder / "scripts" / "run.sh").write_text("touch pwned\n")
    async with host_running(tmp_path / "home", [SKILLS, *TOOLS], config=QUIET) as host:
        ran = await ok(
            host, "tools.execute", tool="skill_run", arguments={"name": "shelly", "script": "scripts/run.sh"}
        )
        assert not ran["ok"] and ran["error"]
        assert not (folder / "pwned").exists()


@pytest.mark.asyncio
async def test_enable_disable_install_and_versions(tmp_path: Path) -> None:
    source = write_skill(tmp_path / "incoming", "notes", "Take notes.")
    async with host_running(tmp_path / "home", [SKILLS], config=QUIET) as host:
        installed = await ok(host, "skills.install", path=str(source))
        assert (installed["name"], installed["status"], installed["version"]) == ("notes", "available", 1)
        again = await host.call("skills.install", path=str(source))
        assert not again.success and "already installed" in again.error_message
        off = await ok(host, "skills.disable", name="notes")
        assert off["status"] == "disabled" and "refactorbot skills enable notes" in off["reason"]
        assert (await ok(host, "skills.prompt"))["listed"] == []
    async with host_running(tmp_path / "home", [SKILLS], config=QUIET) as host:  # kept across restarts
        assert (await ok(host, "skills.show", name="notes"))["status"] == "disabled"
        assert (await ok(host, "skills.enable", name="notes"))["status"] == "available"
        (tmp_path / "home" / "skills" / "notes" / "SKILL.md").write_text(
            "---\nname: notes\ndescription: Take better notes.\n---\nv2\n"
        )
        shown = await ok(host, "skills.show", name="notes")
        assert shown["version"] == 2 and [v["version"] for v in shown["versions"]] == [2, 1]


@pytest.mark.asyncio
async def test_workshop_proposals_apply_go_stale_reject_and_roll_back(rb_host: Any) -> None:
    skills = rb_host.home / "skills"
    write_skill(skills, "triage", "Triage bugs.", "Step one.")
    await ok(rb_host, "skills.reload")
    v1 = await ok(rb_host, "skills.show", name="triage")
    changed = "---\nname: triage\ndescription: Triage bugs carefully.\n---\nStep one.\nStep two.\n"
    first = await ok(rb_host, "skills.propose", name="triage", skill_md=changed, rationale="user asked")
    assert first["status"] == "pending" and first["base_hash"] == v1["content_hash"]
    assert "+Step two." in first["diff"]
    assert (skills / "triage" / "SKILL.md").read_text().count("Step two") == 0  # nothing written yet
    second = await ok(rb_host, "skills.propose", name="triage", skill_md=changed.replace("two", "2"))
    applied = await ok(rb_host, "skills.apply", id=first["id"])
    assert applied["status"] == "applied" and applied["applied_version"] == 2
    assert "Step two." in (skills / "triage" / "SKILL.md").read_text()
    stale = await rb_host.call("skills.apply", id=second["id"])
    assert not stale.success and "stale" in stale.error_message
    assert (await ok(rb_host, "skills.proposals", status="stale"))["proposals"][0]["id"] == second["id"]
    bad = await rb_host.call("skills.propose", name="triage", skill_md="---\nname: other\ndescription: x\n---\n")
    assert not bad.success and bad.error_message.startswith("proposal refused:")
    new = await ok(
        rb_host, "skills.propose", name="fresh", skill_md="---\nname: fresh\ndescription: New one.\n---\nBody.\n"
    )
    rejected = await ok(rb_host, "skills.reject", id=new["id"], reason="not needed")
    assert rejected["status"] == "rejected" and not (skills / "fresh").exists()
    rolled = await ok(rb_host, "skills.rollback", name="triage")
    assert rolled["version"] == 1 and rolled["body"] == "Step one."
    again = await rb_host.call("skills.rollback", name="triage")
    assert not again.success and "no version before 1" in again.error_message
