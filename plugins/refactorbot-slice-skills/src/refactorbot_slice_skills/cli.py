"""``refactorbot skills``: list, show, validate, install, enable and disable skills; the workshop.

Each command uses the running server (``refactorbot serve``) when there is one, and the skills
slice in-process otherwise.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

import click
from refactorbot.cli import Env, call_operation, echo_json, echo_table, fail


def _env() -> Env:
    env = click.get_current_context().obj
    if not isinstance(env, Env):
        raise click.UsageError("run this through the refactorbot command")
    return env


def _call(operation: str, payload: dict[str, Any] | None = None) -> Any:
    return call_operation(_env(), f"skills.{operation}", payload or {})


def _when(seconds: float | None) -> str:
    return datetime.fromtimestamp(seconds).astimezone().strftime("%Y-%m-%d %H:%M") if seconds else "-"


@click.group("skills")
def skills_group() -> None:
    """Agent Skills: list, inspect, validate, install, enable and disable; review proposals."""


@skills_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(as_json: bool) -> None:
    """List every skill met, with its status and, when it cannot be used, why."""
    skills = _call("list")["skills"]
    if as_json:
        echo_json(skills)
        return
    if not skills:
        click.echo("No skills. Add one: refactorbot skills install PATH_OR_ZIP")
        return
    rows = [
        [
            s["name"],
            s["status"],
            s["source"],
            str(s["version"] or "-"),
            str(s["activations"]),
            f"{s['successes']}/{s['failures']}",
            (s["reason"] or s["description"]).replace("\n", " ")[:90],
        ]
        for s in skills
    ]
    echo_table(["NAME", "STATUS", "SOURCE", "VERSION", "USED", "OK/FAILED", "DESCRIPTION OR REASON"], rows)


@skills_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_command(name: str, as_json: bool) -> None:
    """Show one skill: status, requirements, files, versions and its instructions."""
    skill = _call("show", {"name": name})
    if as_json:
        echo_json(skill)
        return
    click.echo(f"{skill['name']} ({skill['status']}{': ' + skill['reason'] if skill['reason'] else ''})")
    click.echo(f"  {skill['description']}")
    click.echo(f"  source: {skill['source']}  location: {skill['location']}")
    click.echo(f"  version: {skill['version'] or '-'}  hash: {(skill['content_hash'] or '-')[:16]}")
    click.echo(
        f"  used: {skill['activations']} time(s), last {_when(skill['last_used'])}; turns ok/failed: {skill['successes']}/{skill['failures']}"
    )
    for key, values in skill["requires"].items():
        click.echo(f"  requires {key}: {', '.join(values)}")
    for warning in skill["warnings"]:
        click.echo(f"  warning: {warning}")
    if skill["files"]:
        click.echo("  files: " + ", ".join(skill["files"]))
    for version in skill["versions"]:
        click.echo(
            f"  v{version['version']} {version['content_hash'][:12]} {_when(version['created_at'])} {version['note']}"
        )
    if skill["body"]:
        click.echo("")
        click.echo(skill["body"])


@skills_group.command("validate")
@click.argument("path")
def validate_command(path: str) -> None:
    """Check a skill folder or a zip of one without installing it (exit 1 when refused)."""
    result = _call("validate", {"path": os.path.abspath(os.path.expanduser(path))})
    if not result["ok"]:
        fail(_env(), f"{path}: {result['error']}")
    click.echo(f"ok: {result['name']} ({result['content_hash'][:12]})")
    for warning in result["warnings"]:
        click.echo(f"warning: {warning}")
    if result["unavailable_reason"]:
        click.echo(f"unavailable here: {result['unavailable_reason']}")


@skills_group.command("install")
@click.argument("path_or_zip")
@click.option("--replace", is_flag=True, help="Replace an installed skill of the same name.")
def install_command(path_or_zip: str, replace: bool) -> None:
    """Install a skill folder or zip into <home>/skills."""
    path = os.path.abspath(os.path.expanduser(path_or_zip))
    skill = _call("install", {"path": path, "replace": replace})
    reason = f": {skill['reason']}" if skill["reason"] else ""
    click.echo(f"installed {skill['name']} in {skill['location']} ({skill['status']}{reason})")


@skills_group.command("enable")
@click.argument("name")
def enable_command(name: str) -> None:
    """Turn a skill on."""
    skill = _call("enable", {"name": name})
    click.echo(f"{skill['name']}: {skill['status']}" + (f" ({skill['reason']})" if skill["reason"] else ""))


@skills_group.command("disable")
@click.argument("name")
def disable_command(name: str) -> None:
    """Turn a skill off (it stays listed, as disabled)."""
    skill = _call("disable", {"name": name})
    click.echo(f"{skill['name']}: {skill['status']}")


@skills_group.command("proposals")
@click.option("--status", type=click.Choice(["pending", "applied", "rejected", "stale"]))
@click.option("--diff", "show_diff", is_flag=True, help="Print each proposal's diff.")
def proposals_command(status: str | None, show_diff: bool) -> None:
    """List the workshop's proposals, newest first."""
    payload: dict[str, Any] = {"status": status} if status else {}
    proposals = _call("proposals", payload)["proposals"]
    if not proposals:
        click.echo("No proposals.")
        return
    for p in proposals:
        reason = f" ({p['reason']})" if p["reason"] else ""
        click.echo(f"#{p['id']} {p['name']} {p['status']}{reason} {_when(p['created_at'])}: {p['rationale'][:80]}")
        if show_diff:
            click.echo(p["diff"])


@skills_group.command("apply")
@click.argument("proposal_id", type=int)
def apply_command(proposal_id: int) -> None:
    """Apply a pending proposal (refused as stale when the skill changed since)."""
    p = _call("apply", {"id": proposal_id})
    click.echo(f"applied #{p['id']}: {p['name']} is now version {p['applied_version']}")


@skills_group.command("reject")
@click.argument("proposal_id", type=int)
@click.option("--reason", default="", help="Why.")
def reject_command(proposal_id: int, reason: str) -> None:
    """Reject a pending proposal."""
    p = _call("reject", {"id": proposal_id, "reason": reason})
    click.echo(f"rejected #{p['id']} ({p['name']})")


@skills_group.command("rollback")
@click.argument("name")
def rollback_command(name: str) -> None:
    """Restore the previous version of a skill's SKILL.md."""
    skill = _call("rollback", {"name": name})
    click.echo(f"{skill['name']} is back to version {skill['version']}")
