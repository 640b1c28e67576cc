"""``refactorbot refactory ...``: requests, plans, orchestration, tasks, reconciliation, coders and the demo."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
from refactorbot.cli import Env, call_operation, echo_json, echo_table, fail, run

STATE_CHOICE = click.Choice(["planned", "assigned", "working", "reported", "queued", "merging", "merged", "failed"])


def _env() -> Env:
    env = click.get_current_context().find_object(Env)
    if env is None:
        raise click.UsageError("refactorbot refactory must run under the refactorbot command")
    return env


@click.group("refactory")
def refactory_group() -> None:
    """Request → plan → coder agents on git worktrees → a test-gated merge queue."""


@refactory_group.group("request")
def request_group() -> None:
    """Create and list requests."""


@request_group.command("create")
@click.option("--title", required=True, help="What to do, in one line.")
@click.option("--description", default="", help="The details.")
@click.option("--repo", required=True, type=click.Path(file_okay=False, path_type=Path), help="The git repository.")
@click.option("--target-branch", default="main", show_default=True, help="The branch plans start from.")
@click.option(
    "--test-command", default=None, help="The repository's test command (split like a shell, never run by one)."
)
def request_create(title: str, description: str, repo: Path, target_branch: str, test_command: str | None) -> None:
    """Create a request."""
    payload: dict[str, Any] = {
        "title": title,
        "description": description,
        "repo": str(repo.expanduser().resolve()),
        "target_branch": target_branch,
    }
    if test_command:
        payload["test_command"] = test_command
    data = call_operation(_env(), "refactory.create_request", payload)
    click.echo(f"Request {data['id']}: {data['title']} ({data['repo']}, {data['target_branch']})")


@request_group.command("list")
def request_list() -> None:
    """List requests, newest first."""
    data = call_operation(_env(), "refactory.list_requests", {})
    echo_table(
        ["ID", "TITLE", "REPO", "BRANCH"],
        [[str(r["id"]), r["title"], r["repo"], r["target_branch"]] for r in data["requests"]],
    )


@refactory_group.group("plan")
def plan_group() -> None:
    """Create plans and show their status."""


def _print_plan(plan: dict[str, Any]) -> None:
    click.echo(
        f"Plan {plan['id']} of request {plan['request_id']} ({plan['planner']} planner), base {plan['base_commit'][:12]}"
    )
    if plan.get("planner_fallback"):
        click.secho(f"  planned WITHOUT a model (templated planner): {plan['planner_fallback']}", fg="red", bold=True)
    for warning in plan["warnings"]:
        if not (plan.get("planner_fallback") and warning.startswith("planned without a model")):
            click.secho(f"  warning: {warning}", fg="yellow")
    unreviewed = [t for t in plan["tasks"] if t.get("review_fallback")]
    for task in unreviewed:
        click.secho(f"  task {task['id']} reviewed WITHOUT a model: {task['review_fallback']}", fg="yellow")
    echo_table(
        ["TASK", "STATE", "AGENT", "ATTEMPTS", "DEPENDS", "TITLE"],
        [
            [
                str(t["id"]),
                t["state"],
                t["agent"] or "-",
                str(t["attempts"]),
                ",".join(map(str, t["depends"])) or "-",
                t["title"],
            ]
            for t in plan["tasks"]
        ],
    )


@plan_group.command("create")
@click.argument("request_id", type=int)
@click.option("--planner", type=click.Choice(["auto", "model", "template"]), default="auto", show_default=True)
def plan_create(request_id: int, planner: str) -> None:
    """Plan REQUEST_ID: a design and scoped tasks."""
    plan = call_operation(_env(), "refactory.create_plan", {"request_id": request_id, "planner": planner})
    _print_plan(plan)


@plan_group.command("status")
@click.argument("plan_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="The plan as JSON.")
def plan_status(plan_id: int, as_json: bool) -> None:
    """Show PLAN_ID: its tasks and their states."""
    plan = call_operation(_env(), "refactory.get_plan", {"id": plan_id})
    if as_json:
        echo_json(plan)
    else:
        _print_plan(plan)


def print_report(orch: dict[str, Any]) -> None:
    """Print an orchestration's outcome: what merged, what failed and why, where the result is."""
    report = orch.get("report") or {}
    colour = "green" if orch["status"] == "done" else "red"
    click.secho(f"Orchestration {orch['id']} of plan {orch['plan_id']}: {orch['status']}", fg=colour, bold=True)
    if "error" in report:
        click.echo(f"  error: {report['error']}")
        return
    if report.get("planner_fallback"):
        click.secho(f"  planned WITHOUT a model (templated planner): {report['planner_fallback']}", fg="red")
    for unreviewed in report.get("reviewed_without_model", []):
        click.secho(f"  task {unreviewed['task']} reviewed WITHOUT a model: {unreviewed['reason']}", fg="yellow")
    for merged in report.get("merged", []):
        click.echo(f"  merged  task {merged['task']}: {merged['title']} (attempts {merged['attempts']})")
    for failed in report.get("failed", []):
        click.secho(f"  failed  task {failed['task']}: {failed['title']} — {failed['reason']}", fg="red")
    click.echo(f"  merge attempts: {report.get('merge_attempts')} ({report.get('conflicts')} conflicts re-queued)")
    click.echo(f"  tests on the integration branch: {'green' if report.get('tests_green') else 'red'}")
    click.echo(
        f"  integration branch: {report.get('integration_branch')} at {str(report.get('integration_head'))[:12]}"
    )
    click.echo(f"  repository: {report.get('repo')}")
    if orch.get("land") and not report.get("landed"):
        click.secho(f"  land: {report.get('land')}", fg="red")
    else:
        click.echo(f"  land: {report.get('land')}")


async def _run_here(env: Env, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Run ``operation`` in a host of this process and wait for the orchestration it starts or resumes."""
    import asyncio

    async with env.master(only=["refactory"]) as host:
        response = await host.call(f"refactory.{operation}", **payload)
        if not response.success:
            fail(env, response.error_message or f"refactory.{operation} failed")
        orch_id = response.data["id"]
        runner = getattr(host.instance("refactory"), "runners", {}).get(orch_id)
        if runner is not None:
            click.echo(f"Orchestration {orch_id} running in this process (Ctrl-C interrupts; reconcile resumes)...")
            await asyncio.shield(runner)
        final = await host.call("refactory.get_orchestration", id=orch_id)
        return dict(final.data)


def _follow(env: Env, client: Any, orch: dict[str, Any], interval: float) -> dict[str, Any]:
    click.echo(f"Orchestration {orch['id']} running on the server; following it...")
    while orch["status"] == "running":
        time.sleep(interval)
        answer = client.call("refactory", "get_orchestration", {"id": orch["id"]})
        if not answer.get("success"):
            fail(env, answer.get("error_message") or "cannot read the orchestration")
        orch = answer["data"]
    return orch


def _start(env: Env, operation: str, payload: dict[str, Any], wait: bool, interval: float) -> None:
    from refactorbot import ServerClient

    client = ServerClient.discover(env.home)
    if client is not None:
        answer = client.call("refactory", operation, payload)
        if not answer.get("success"):
            fail(env, answer.get("error_message") or f"refactory.{operation} failed")
        orch = answer["data"]
        if not wait:
            click.echo(
                f"Orchestration {orch['id']} started; follow it with `refactorbot refactory plan status {orch['plan_id']}`"
            )
            return
        orch = _follow(env, client, orch, interval)
    else:
        orch = run(env, lambda: _run_here(env, operation, payload))
    print_report(orch)
    if orch["status"] != "done" or (orch.get("land") and not (orch.get("report") or {}).get("landed")):
        raise SystemExit(1)  # something failed, or landing was asked and refused


@refactory_group.command("orchestrate")
@click.argument("plan_id", type=int)
@click.option("--agents", default=2, show_default=True, type=click.IntRange(1, 32), help="Coder agents.")
@click.option("--target-branch", default=None, help="Branch to land on (default: the request's).")
@click.option("--land", is_flag=True, help="Fast-forward the target branch when everything merged green.")
@click.option("--external", is_flag=True, help="Coders are `refactorbot refactory coder` processes.")
@click.option("--no-wait", is_flag=True, help="Return once started (server only).")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between status polls of the server.")
def orchestrate(
    plan_id: int, agents: int, target_branch: str | None, land: bool, external: bool, no_wait: bool, interval: float
) -> None:
    """Run PLAN_ID with N coder agents and the merge queue; print the report."""
    payload: dict[str, Any] = {"plan_id": plan_id, "agents": agents, "land": land}
    if target_branch:
        payload["target_branch"] = target_branch
    if external:
        payload["coders"] = "external"
    _start(_env(), "orchestrate", payload, not no_wait, interval)


@refactory_group.command("reconcile")
@click.argument("plan_id", type=int)
@click.option("--interval", default=2.0, show_default=True, help="Seconds between status polls of the server.")
def reconcile(plan_id: int, interval: float) -> None:
    """Resume PLAN_ID's orchestration if it was interrupted, wait for the merge queue, print the report."""
    _start(_env(), "reconcile", {"plan_id": plan_id}, True, interval)


@refactory_group.group("tasks")
def tasks_group() -> None:
    """List tasks."""


@tasks_group.command("list")
@click.option("--plan-id", type=int, default=None)
@click.option("--state", type=STATE_CHOICE, default=None)
@click.option("--agent", default=None)
def tasks_list(plan_id: int | None, state: str | None, agent: str | None) -> None:
    """List tasks, filtered by plan, state and agent."""
    payload = {k: v for k, v in {"plan_id": plan_id, "state": state, "agent": agent}.items() if v is not None}
    data = call_operation(_env(), "refactory.list_tasks", payload)
    echo_table(
        ["TASK", "PLAN", "STATE", "AGENT", "ATTEMPTS", "DIFF", "TITLE"],
        [
            [
                str(t["id"]),
                str(t["plan_id"]),
                t["state"],
                t["agent"] or "-",
                str(t["attempts"]),
                str(t["diff_lines"] or "-"),
                t["title"],
            ]
            for t in data["tasks"]
        ],
    )


@refactory_group.group("task")
def task_group() -> None:
    """Inspect one task."""


@task_group.command("inspect")
@click.argument("task_id", type=int)
def task_inspect(task_id: int) -> None:
    """Show TASK_ID with its diff, acceptance and test output, and review (JSON)."""
    echo_json(call_operation(_env(), "refactory.get_task", {"id": task_id}))


@refactory_group.command("coder")
@click.option("--name", required=True, help="The coder's name (coder1, coder2, ...).")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between polls when there is no task.")
@click.option("--once", is_flag=True, help="Stop when no task is assigned to this coder.")
def coder(name: str, interval: float, once: bool) -> None:
    """Work on the tasks assigned to NAME, polling the running server's API (as the seed's coder agent)."""
    from refactorbot import ServerClient

    env = _env()
    client = ServerClient.discover(env.home)
    if client is None:
        fail(env, "no running server for this home: start `refactorbot serve` first")
    while True:
        listed = client.request("GET", f"/plugins/refactory/tasks?agent={name}&state=assigned")
        tasks = listed if isinstance(listed, list) else listed.get("tasks", [])
        claimed = None
        for task in tasks:
            answer = client.request("POST", f"/plugins/refactory/tasks/{task['id']}/claim", {"agent": name})
            if "worktree" in answer:
                claimed = answer
                break
        if claimed is None:
            if once:
                click.echo(f"{name}: no task to work on")
                return
            time.sleep(interval)
            continue
        task = claimed["task"]
        click.echo(f"{name}: task {task['id']} — {task['title']} in {claimed['worktree']}")
        result = client.request(
            "POST",
            "/slices/agent/operations/run",
            {
                "message": claimed["prompt"],
                "workspace": claimed["worktree"],
                "user_id": f"refactory-{name}",
                "mode": "single",
                "memories": [],
            },
            timeout=3600,
        )
        summary = str((result.get("data") or {}).get("answer") or result.get("error_message") or "")
        reported = client.request(
            "POST", f"/plugins/refactory/agents/{name}/prs", {"task_id": task["id"], "summary": summary[:20_000]}
        )
        click.echo(f"{name}: reported task {task['id']}: {reported.get('state', reported.get('detail'))}")


@refactory_group.command("demo")
@click.option("--agents", default=2, show_default=True, type=click.IntRange(1, 8), help="Coder agents.")
def demo(agents: int) -> None:
    """Run the whole workflow offline on a small repository with a scripted model."""
    from refactorbot_slice_refactory.demo import run_demo

    env = _env()
    run(env, lambda: run_demo(env, agents))
