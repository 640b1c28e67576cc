"""``refactorbot schedule``: add, list, show, remove, pause, resume, run now and read the history of jobs.

Each command uses the running server (``refactorbot serve``) when there is one, and the slice
in-process otherwise (jobs are stored either way; they fire only inside the server). In-process,
every command but ``run-now`` starts the scheduling slice alone; ``run-now`` starts every slice,
since the job's target may call any of them.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click
from refactorbot.cli import Env, call_operation, echo_json, echo_table, fail, run


def _env() -> Env:
    env = click.get_current_context().obj
    if not isinstance(env, Env):
        raise click.UsageError("run this through the refactorbot command")
    return env


def _call(operation: str, payload: dict[str, Any]) -> Any:
    return call_operation(_env(), f"scheduling.{operation}", payload)


def _run_now(name: str) -> Any:
    """Run ``scheduling.run_now`` on the server, or in a host of every slice when none runs."""
    from refactorbot import ServerClient

    env = _env()
    if ServerClient.discover(env.home) is not None:
        return _call("run_now", {"name": name})

    async def in_process() -> dict[str, Any]:
        from refactorbot import committed

        async with env.master() as host:
            result = await host.call("scheduling.run_now", name=name)
            await committed()
            return result.model_dump(mode="json")  # type: ignore[no-any-return]

    response = run(env, in_process)
    if not response.get("success"):
        fail(env, response.get("error_message") or "scheduling.run_now failed")
    return response.get("data")


def _local(seconds: float | None) -> str:
    """Return a Unix time in this machine's zone, with its offset."""
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")


def _chat(value: str, option: str) -> tuple[str, str]:
    channel, sep, chat = value.partition(":")
    if not sep or not channel or not chat:
        raise click.UsageError(f"{option} takes CHANNEL:CHAT_ID, got {value!r}")
    return channel, chat


def _json_object(value: str, option: str) -> Any:
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.UsageError(f"{option} is not valid JSON: {exc}") from None
    return data


def _target(
    operation: str | None,
    payload: str | None,
    prompt: str | None,
    chat: str | None,
    message: str | None,
    template: str | None,
    variables: tuple[str, ...],
    to: str | None,
    workflow: str | None,
) -> dict[str, Any]:
    given = [
        n
        for n, v in (
            ("--operation", operation),
            ("--prompt", prompt),
            ("--message", message),
            ("--template", template),
            ("--workflow", workflow),
        )
        if v is not None
    ]
    if len(given) != 1:
        raise click.UsageError("give one target: --operation, --prompt, --message, --template or --workflow")
    if operation is not None:
        return {"type": "operation", "operation": operation, "payload": _json_object(payload or "{}", "--payload")}
    if prompt is not None:
        target: dict[str, Any] = {"type": "prompt", "prompt": prompt}
        if chat:
            target["channel"], target["chat_id"] = _chat(chat, "--chat")
        return target
    if workflow is not None:
        return {"type": "workflow", "steps": _json_object(workflow, "--workflow")}
    if not to:
        raise click.UsageError("--message and --template need --to CHANNEL:CHAT_ID")
    channel, chat_id = _chat(to, "--to")
    if message is not None:
        return {"type": "message", "channel": channel, "chat_id": chat_id, "text": message}
    pairs = {}
    for pair in variables:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.UsageError(f"--var takes NAME=VALUE, got {pair!r}")
        pairs[key] = value
    return {"type": "message", "channel": channel, "chat_id": chat_id, "template": template, "variables": pairs}


@click.group("schedule")
def schedule_group() -> None:
    """Scheduled jobs: cron (in a zone), every, at; their runs and history."""


@schedule_group.command("add")
@click.argument("name")
@click.option("--cron", help='Cron expression: 5 fields, or 6 with seconds first ("0 9 * * 1-5").')
@click.option("--every", help="Interval: seconds, or 30s, 15m, 2h, 1d, 1h30m.")
@click.option("--at", "at_", help="One-shot ISO 8601 time (in --tz unless it has an offset).")
@click.option("--tz", help="IANA zone (default: [core] timezone, else the machine's).")
@click.option("--operation", help="Target: run SLICE.OPERATION ...")
@click.option("--payload", help="... with this JSON payload.")
@click.option("--prompt", help="Target: prompt the agent (in session cron:NAME unless --chat).")
@click.option("--chat", help="Run the prompt in CHANNEL:CHAT_ID's session and send the answer there.")
@click.option("--message", help="Target: send this text to --to.")
@click.option("--template", help="Target: send this communication template to --to.")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE", help="A template variable (repeat).")
@click.option("--to", help="CHANNEL:CHAT_ID for --message and --template.")
@click.option("--workflow", help='Target: JSON list of steps, [{"name": "a", "operation": "x.y", "payload": {}}, ...].')
@click.option("--misfire", type=click.Choice(["skip", "run_once", "catch_up"]), help="Fires missed while down.")
@click.option("--catch-up", "catch_up_max", type=int, help="With --misfire catch_up: at most this many.")
@click.option("--overlap", type=click.Choice(["skip", "queue", "allow"]), help="A fire while the last run runs.")
@click.option("--timeout", type=float, help="Seconds a run may take.")
@click.option("--retries", type=int, help="Attempts after a failed one.")
@click.option("--backoff", "retry_backoff", type=float, help="Seconds before the first retry (doubled each time).")
@click.option("--jitter", type=float, help="Random delay of up to this many seconds.")
@click.option("--keep", "keep_runs", type=int, help="Runs kept in the history (default 100).")
@click.option("--description", default="", help="What the job is for.")
@click.option("--paused", is_flag=True, help="Add it paused.")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
def add_command(name: str, as_json: bool, **options: Any) -> None:
    """Add job NAME with one schedule and one target."""
    target = _target(
        *(
            options.pop(k)
            for k in ("operation", "payload", "prompt", "chat", "message", "template", "variables", "to", "workflow")
        )
    )
    payload: dict[str, Any] = {"name": name, "target": target}
    at = options.pop("at_")
    if at is not None:
        payload["at"] = at
    for key, value in options.items():
        if value is not None and value is not False:
            payload[key] = value
    job = _call("add", payload)
    if as_json:
        echo_json(job)
        return
    click.echo(f"added {job['name']}: {job['schedule']} ({job['tz']})")
    _next_line(job)


def _next_line(job: dict[str, Any]) -> None:
    if job["next_run_at"] is None:
        click.echo("next run: none" + (" (paused)" if job["state"] == "paused" else ""))
    else:
        click.echo(f"next run: {job['next_run']} ({job['tz']}) = {_local(job['next_run_at'])} (local)")


@schedule_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include the built-in jobs (system.*).")
@click.option("--json", "as_json", is_flag=True, help="Stable, sorted JSON.")
def list_command(show_all: bool, as_json: bool) -> None:
    """List jobs: schedule, zone, next run in that zone and in local time, state, last status."""
    listed = _call("list", {"include_system": show_all})
    if as_json:
        echo_json(listed)
        return
    if not listed["jobs"]:
        click.echo("No jobs. Add one: refactorbot schedule add NAME --cron '0 9 * * *' --prompt '...'")
        return
    rows = [
        [
            j["name"],
            j["schedule"],
            j["tz"],
            j["next_run"] or "-",
            _local(j["next_run_at"]),
            j["state"],
            j["last_status"] or "-",
        ]
        for j in listed["jobs"]
    ]
    echo_table(["NAME", "SCHEDULE", "ZONE", "NEXT RUN (ZONE)", "NEXT RUN (LOCAL)", "STATE", "LAST"], rows)


@schedule_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Stable, sorted JSON.")
def show_command(name: str, as_json: bool) -> None:
    """Show job NAME."""
    job = _call("show", {"name": name})
    if as_json:
        echo_json(job)
        return
    click.echo(f"{job['name']} ({job['state']}): {job['schedule']} ({job['tz']})")
    _next_line(job)
    click.echo(f"target: {json.dumps(job['target'], sort_keys=True)}")
    click.echo(f"policy: {json.dumps(job['policy'], sort_keys=True)}")
    last = f"{job['last_status']} at {_local(job['last_run_at'])}" if job["last_status"] else "never ran"
    click.echo(f"last run: {last}; failures in a row: {job['consecutive_failures']}")


@schedule_group.command("rm")
@click.argument("name")
def rm_command(name: str) -> None:
    """Remove job NAME and its history."""
    _call("remove", {"name": name})
    click.echo(f"removed {name}")


@schedule_group.command("pause")
@click.argument("name")
def pause_command(name: str) -> None:
    """Pause job NAME."""
    _call("pause", {"name": name})
    click.echo(f"paused {name}")


@schedule_group.command("resume")
@click.argument("name")
def resume_command(name: str) -> None:
    """Resume job NAME from its next fire after now."""
    job = _call("resume", {"name": name})
    click.echo(f"resumed {name}")
    _next_line(job)


@schedule_group.command("run-now")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
def run_now_command(name: str, as_json: bool) -> None:
    """Run job NAME now and wait for its outcome (exit 1 if it did not succeed)."""
    record = _run_now(name)["run"]
    if as_json:
        echo_json(record)
    else:
        detail = record.get("error") or record.get("output") or ""
        click.echo(
            f"{name}: {record['status']} in {record.get('duration_ms') or 0:.0f} ms" + (f": {detail}" if detail else "")
        )
        if record.get("delivery"):
            click.echo(f"delivery: {record['delivery']}")
    if record["status"] != "succeeded":
        raise SystemExit(1)


@schedule_group.command("history")
@click.argument("name")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Stable, sorted JSON.")
def history_command(name: str, limit: int, as_json: bool) -> None:
    """Show the runs of job NAME, newest first."""
    runs = _call("history", {"name": name, "limit": limit})["runs"]
    if as_json:
        echo_json(runs)
        return
    if not runs:
        click.echo(f"{name} has not run yet.")
        return
    rows = [
        [
            str(r["id"]),
            _local(r["scheduled_for"]),
            _local(r["started_at"]),
            r["trigger"],
            r["status"],
            "-" if r["duration_ms"] is None else f"{r['duration_ms']:.0f} ms",
            (r.get("error") or r.get("output") or "").replace("\n", " ")[:80],
        ]
        for r in runs
    ]
    echo_table(["RUN", "SCHEDULED (LOCAL)", "STARTED", "TRIGGER", "STATUS", "TOOK", "OUTPUT / ERROR"], rows)
