"""``refactorbot improve``: run a cycle, list changes, approve or reject them, evaluate, roll back, read the audit.

Each command uses the running server (``refactorbot serve``) when there is one. Without one,
listing commands start the improve slice alone; ``run``, ``approve``, ``evaluate``, ``land`` and
``rollback`` start every slice, since they ask a slice for its plan or deploy to it (and
evaluations then conclude only when called: the window's timer runs in a server).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click
from refactorbot.cli import Env, call_operation, echo_json, echo_table, fail, run

#: Operations that reach other slices: without a server they run in a host of every slice.
_WHOLE_HOST = frozenset({"run_cycle", "approve", "evaluate", "rollback", "land"})


def _env() -> Env:
    env = click.get_current_context().obj
    if not isinstance(env, Env):
        raise click.UsageError("run this through the refactorbot command")
    return env


def _call(operation: str, payload: dict[str, Any]) -> Any:
    from refactorbot import ServerClient

    env = _env()
    if operation not in _WHOLE_HOST or ServerClient.discover(env.home) is not None:
        return call_operation(env, f"improve.{operation}", payload)

    async def in_process() -> dict[str, Any]:
        from refactorbot import committed

        async with env.master() as host:
            result = await host.call(f"improve.{operation}", **payload)
            await committed()
            return result.model_dump(mode="json")  # type: ignore[no-any-return]

    response = run(env, in_process)
    if not response.get("success"):
        fail(env, response.get("error_message") or f"improve.{operation} failed")
    return response.get("data")


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")


def _value(value: Any, width: int = 40) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _changes_table(changes: list[dict[str, Any]]) -> None:
    if not changes:
        click.echo("No changes.")
        return
    echo_table(
        ["ID", "CYCLE", "SLICE", "KIND", "TARGET", "CHANGE", "RISK", "STATUS", "VERDICT"],
        [
            [
                str(c["id"]),
                str(c["cycle_id"]),
                c["slice_id"],
                c["kind"],
                c["target"],
                _value(c["change"]),
                c["risk"],
                c["status"],
                c["verdict"] or "-",
            ]
            for c in changes
        ],
    )


@click.group("improve")
def improve_group() -> None:
    """Self-improvement: cycles, changes waiting for approval, evaluation and rollback."""


@improve_group.command("run")
@click.argument("slice_id")
@click.option("--feedback", default="", help="What went wrong or could be better, in words.")
@click.option("--json", "as_json", is_flag=True, help="Print the cycle as JSON.")
def run_cycle(slice_id: str, feedback: str, as_json: bool) -> None:
    """Run an improvement cycle for SLICE_ID: its plan, stored as changes."""
    payload: dict[str, Any] = {"slice_id": slice_id, "trigger": "cli"}
    if feedback:
        payload["feedback"] = {"source": "cli", "summary": feedback}
    cycle = _call("run_cycle", payload)
    if as_json:
        echo_json(cycle)
        return
    click.echo(
        f"Cycle {cycle['id']} for {cycle['slice_id']}: {cycle['status']}. {cycle['notes'] or cycle['error'] or ''}"
    )
    _changes_table(cycle["changes"])


@improve_group.command("list")
@click.option("--status", help="pending (default), approved, evaluating, kept, rolled_back, rejected, failed, all.")
@click.option("--slice", "slice_id", help="Only this slice's changes.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_changes(status: str | None, slice_id: str | None, as_json: bool) -> None:
    """List changes (by default those waiting for approval), newest first."""
    payload: dict[str, Any] = {}
    if status != "all":
        payload["status"] = status or "pending"
    if slice_id:
        payload["slice_id"] = slice_id
    changes = _call("changes", payload)
    if as_json:
        echo_json(changes)
        return
    _changes_table(changes)


@improve_group.command("cycles")
@click.option("--slice", "slice_id", help="Only this slice's cycles.")
@click.option("--limit", type=int, default=20, show_default=True)
def list_cycles(slice_id: str | None, limit: int) -> None:
    """List cycles, newest first."""
    payload: dict[str, Any] = {"limit": limit}
    if slice_id:
        payload["slice_id"] = slice_id
    cycles = _call("cycles", payload)
    if not cycles:
        click.echo("No cycles.")
        return
    echo_table(
        ["ID", "SLICE", "TRIGGER", "STATUS", "CHANGES", "WHEN", "NOTES"],
        [
            [
                str(c["id"]),
                c["slice_id"],
                c["trigger"],
                c["status"],
                str(len(c["changes"])),
                _when(c["created_at"]),
                _value(c["notes"] or c["error"] or "", 50),
            ]
            for c in cycles
        ],
    )


@improve_group.command("show")
@click.argument("cycle_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show(cycle_id: int, as_json: bool) -> None:
    """Show a cycle: its plan notes, each change with its diff and metrics, and the audit trail."""
    cycle = _call("show", {"id": cycle_id})
    if as_json:
        echo_json(cycle)
        return
    click.echo(f"Cycle {cycle['id']} for {cycle['slice_id']} ({cycle['trigger']}, {_when(cycle['created_at'])})")
    click.echo(f"Plan: {cycle['notes'] or cycle['error'] or '-'}")
    for change in cycle["changes"]:
        click.echo(f"\nChange {change['id']}: {change['title']} [{change['status']}]")
        click.echo(f"  {change['kind']} {change['target']} → {_value(change['change'], 200)} (risk {change['risk']})")
        click.echo(f"  why: {change['rationale']}")
        click.echo(f"  expected: {change['expected_effect']}")
        for side in ("before_metrics", "after_metrics"):
            m = change[side]
            if m:
                click.echo(
                    f"  {side.split('_')[0]}: {m['calls']} calls, error rate {m['error_rate']:.1%}, p95 {m['p95_ms']:.1f} ms"
                )
        if change["verdict"]:
            click.echo(f"  verdict: {change['verdict']} ({change['reason'] or ''})")
        if change["diff"]:
            click.echo("  " + change["diff"].replace("\n", "\n  ").rstrip())
    click.echo("\nAudit trail:")
    for entry in cycle["audit"]:
        target = f" change {entry['change_id']}" if entry["change_id"] else ""
        click.echo(f"  {_when(entry['ts'])} {entry['step']}{target} by {entry['actor']}: {entry['detail']}")


def _decide(operation: str, change_id: int, reason: str) -> None:
    import getpass

    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "cli"
    change = _call(operation, {"id": change_id, "by": f"cli:{who}"[:80], "reason": reason})
    line = f"Change {change['id']}: {change['status']}"
    if change["reason"] and change["status"] in ("failed", "rolled_back"):
        line += f" ({change['reason']})"
    click.echo(line)


@improve_group.command("approve")
@click.argument("change_id", type=int)
@click.option("--reason", default="", help="Why (kept in the audit trail).")
def approve(change_id: int, reason: str) -> None:
    """Approve a pending change: it is tried, deployed by hot reload and evaluated."""
    _decide("approve", change_id, reason)


@improve_group.command("reject")
@click.argument("change_id", type=int)
@click.option("--reason", default="", help="Why (kept in the audit trail).")
def reject(change_id: int, reason: str) -> None:
    """Reject a pending change."""
    _decide("reject", change_id, reason)


@improve_group.command("rollback")
@click.argument("change_id", type=int)
@click.option("--reason", default="", help="Why (kept in the audit trail).")
def rollback(change_id: int, reason: str) -> None:
    """Undo a kept or evaluating change."""
    _decide("rollback", change_id, reason)


@improve_group.command("land")
@click.argument("change_id", type=int)
@click.option("--reason", default="", help="Why (kept in the audit trail).")
def land(change_id: int, reason: str) -> None:
    """Land a ready_to_land code change (fast-forward), hot-reload its slice and evaluate it."""
    _decide("land", change_id, reason)


@improve_group.command("evaluate")
@click.argument("change_id", type=int, required=False)
@click.option("--final", is_flag=True, help="Conclude now, even with too few calls (inconclusive: kept).")
def evaluate(change_id: int | None, final: bool) -> None:
    """Evaluate deployed changes that have enough calls since their deploy (all of them, or CHANGE_ID)."""
    payload: dict[str, Any] = {"final": final}
    if change_id is not None:
        payload["id"] = change_id
    result = _call("evaluate", payload)
    for change in result["concluded"]:
        click.echo(f"Change {change['id']}: {change['verdict']}, {change['status']} ({change['reason']})")
    for line in result["waiting"]:
        click.echo(f"Waiting: {line}")
    if not result["concluded"] and not result["waiting"]:
        click.echo("Nothing is being evaluated.")


@improve_group.command("overrides")
def overrides() -> None:
    """Show the setting overrides slices run with (<home>/overrides/<slice>.json)."""
    found = _call("overrides", {})
    if not found:
        click.echo("No overrides.")
        return
    for item in found:
        click.echo(f"{item['slice_id']} ({item['file']}):")
        for key, value in sorted(item["settings"].items()):
            click.echo(f"  {key} = {json.dumps(value)}")
