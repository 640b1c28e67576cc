"""Built-in commands: plugins, slices, call, serve, new."""

from __future__ import annotations

import json
from typing import Any

import click

from refactorbot.cli.main import Env, call_operation, echo_json, fail, main, run

pass_env = click.make_pass_decorator(Env)


# -- plugins -----------------------------------------------------------------------------------


@main.group()
def plugins() -> None:
    """Inspect installed plugins."""


@plugins.command("list")
@click.option("--json", "as_json", is_flag=True, help="Stable, sorted JSON.")
@click.option(
    "--all", "show_all", is_flag=True, help="Include plugins blocked by RB_LOAD_PLUGINS / RB_DISABLE_PLUGINS."
)
@pass_env
def plugins_list(env: Env, as_json: bool, show_all: bool) -> None:
    """List plugins with version, hooks and status (ok / failed / hung / blocked / incompatible) and warnings."""
    records = [r for r in _plugin_report(env) if show_all or r["status"] != "blocked"]
    if as_json:
        echo_json(records)
        return
    if not records:
        click.echo("No plugins installed.")
        return
    width = max(len(r["name"]) for r in records)
    for r in records:
        ok = r["status"] == "ok"
        status = click.style(r["status"], fg="green" if ok else "red" if r["status"] != "blocked" else "yellow")
        line = f"{r['name']:<{width}}  {r.get('version') or '-':<10} {status}"
        if r.get("error"):
            line += f"  {r['error']}"
        elif r.get("hooks"):
            line += f"  {', '.join(r['hooks'])}"
        if r.get("warning"):
            line += click.style(f"  (warning: {r['warning']})", fg="yellow")
        click.echo(line)


def _plugin_report(env: Env) -> list[dict[str, Any]]:
    """Return every plugin's record as ``plugins list --json`` prints it, from the install cache when valid.

    Without a valid report (see ``refactorbot._install_cache``) every plugin is loaded, as
    ``plugins doctor`` always does, and the report is stored for the next run.
    """
    import os

    from refactorbot import _install_cache

    cached = _install_cache.load_report(os.environ)
    if cached is not None:
        return cached
    stamp = _install_cache.fingerprint()  # taken first: an install during the load makes the report stale
    host = env.plugins()
    records = [{k: v for k, v in r.to_dict().items() if k != "traceback"} for r in host.sorted_records()]
    modules = [value.partition(":")[0].strip() for _, value, _ in host.sources.values()]
    _install_cache.store_report(records, modules, os.environ, stamp)
    return records


@plugins.command("doctor")
@pass_env
def plugins_doctor(env: Env) -> None:
    """Explain every plugin problem with its traceback; exit 1 when one failed. Tool warnings are printed too."""
    host = env.plugins()
    for line in _tool_warnings(env, host):
        click.secho(f"warning: {line}", fg="yellow", err=True)
    problems = [
        r
        for r in host.sorted_records()
        if r.status in ("failed", "incompatible", "hung") or (r.error and r.status == "ok")
    ]
    if not problems:
        click.echo(f"All {len(host.records)} plugins loaded cleanly.")
        return
    for r in problems:
        click.secho(f"{r.name} {r.version or ''} [{r.status}]: {r.error}", fg="red", err=True)
        if r.entry_point:
            click.echo(f"  entry point: {r.entry_point}", err=True)
        if r.traceback:
            click.echo("  " + r.traceback.rstrip().replace("\n", "\n  "), err=True)
    raise SystemExit(1)


def _tool_warnings(env: Env, host: Any) -> list[str]:
    """Return each registered tool's ``warnings()`` (e.g. no OS sandbox), built with this home's settings."""
    from refactorbot.config import load_settings
    from refactorbot.errors import RefactorbotError
    from refactorbot.tools import tool_warnings

    try:
        settings = load_settings(env.home, env.config)
    except RefactorbotError as exc:
        return [f"configuration: {exc}"]
    return tool_warnings(host.registry.tools, settings, host.env)


# -- slices ------------------------------------------------------------------------------------


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="JSON output.")
@click.pass_context
def slices(ctx: click.Context, as_json: bool) -> None:
    """Show every slice: status, health, heartbeat age, restarts (`slices show SLICE`: its operations)."""
    if ctx.invoked_subcommand is not None:
        return
    env = ctx.find_object(Env)
    assert env is not None  # the root group made it
    from refactorbot.client import ServerClient

    client = ServerClient.discover(env.home)
    if client is not None:
        rows: list[dict[str, Any]] = client.request("GET", "/slices")
    else:

        async def status() -> list[dict[str, Any]]:
            async with env.master() as host:
                return host.slice_status()  # type: ignore[no-any-return]

        rows = run(env, status)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("No slices installed.")
        return
    click.echo(f"{'SLICE':<16} {'STATUS':<12} {'HEALTH':<10} {'HEARTBEAT':>9} {'RESTARTS':>8}  ERROR")
    for r in rows:
        age = "-" if r.get("heartbeat_age_s") is None else f"{r['heartbeat_age_s']:.0f}s"
        click.echo(
            f"{r['slice_id']:<16} {r['status']:<12} {r.get('health') or '-':<10} {age:>9} {r['restarts']:>8}  {r.get('error') or ''}"
        )


def capabilities_of(env: Env, slice_id: str) -> dict[str, Any]:
    """Return a slice's capabilities (operations with their JSON schemas), from the server when one runs."""
    from refactorbot.client import ServerClient

    client = ServerClient.discover(env.home)
    if client is not None:
        detail = client.request("GET", f"/slices/{slice_id}")
        if not isinstance(detail, dict) or not isinstance(detail.get("capabilities"), dict):
            fail(env, str(detail.get("detail") if isinstance(detail, dict) else detail))
        return detail["capabilities"]  # type: ignore[no-any-return]
    registered = env.plugins().registry.slices
    if slice_id not in registered:
        fail(env, f"unknown slice '{slice_id}' (installed: {', '.join(sorted(registered)) or 'none'})")
    return registered[slice_id].obj.get_capabilities().model_dump(mode="json")  # type: ignore[no-any-return]


@slices.command("show")
@click.argument("slice_id", metavar="SLICE")
@click.option("--json", "as_json", is_flag=True, help="The capabilities as JSON (with the full JSON schemas).")
@pass_env
def slices_show(env: Env, slice_id: str, as_json: bool) -> None:
    """List a slice's operations: each field with its type, constraints, default and description."""
    from refactorbot.cli.describe import slice_lines

    capabilities = capabilities_of(env, slice_id)
    if as_json:
        echo_json(capabilities)
        return
    click.echo("\n".join(slice_lines(capabilities)))


@slices.command("reload")
@click.argument("slice_id", metavar="SLICE")
@click.option("--json", "as_json", is_flag=True, help="The slice's status row after the reload, as JSON.")
@pass_env
def slices_reload(env: Env, slice_id: str, as_json: bool) -> None:
    """Restart SLICE in the running server with the code installed now (after `pip install -U`).

    The other slices of SLICE's plugin restart with it; nothing else does. Running requests
    finish first. A failed reload exits 1 saying why, and the old version keeps running.
    """
    from refactorbot.client import ServerClient

    client = ServerClient.discover(env.home)
    if client is None:
        fail(env, f"no refactorbot server is running for {env.home}: reload acts on `refactorbot serve`")
    before = client.request("GET", f"/slices/{slice_id}")
    if not isinstance(before, dict) or "status" not in before:
        fail(env, str(before.get("detail") if isinstance(before, dict) else before))
    try:
        after = client.request("POST", f"/slices/{slice_id}/reload", timeout=600.0)
    except OSError as exc:
        fail(env, f"reload of {slice_id}: {exc}")
    if not isinstance(after, dict) or "status" not in after:
        fail(env, f"reload of {slice_id} failed: {after.get('detail') if isinstance(after, dict) else after}")
    if as_json:
        echo_json(after)
        return
    click.echo(f"reloaded {slice_id}: version {before['version']} -> {after['version']}, {after['status']}")


# -- call --------------------------------------------------------------------------------------


def parse_payload(json_text: str | None, pairs: tuple[str, ...]) -> dict[str, Any]:
    """Build a payload from ``--json`` and ``key=value`` pairs (values parsed as JSON when they can be)."""
    payload: dict[str, Any] = {}
    if json_text:
        try:
            loaded = json.loads(json_text)
        except json.JSONDecodeError as exc:
            raise click.UsageError(f"--json is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise click.UsageError("--json must be a JSON object")
        payload.update(loaded)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.UsageError(f"expected key=value, got {pair!r}")
        try:
            payload[key] = json.loads(value)
        except json.JSONDecodeError:
            payload[key] = value
    return payload


@main.command(context_settings={"help_option_names": []})
@click.argument("target", required=False)
@click.argument("pairs", nargs=-1)
@click.option("--json", "json_text", help="Payload as a JSON object.")
@click.option(
    "-h", "--help", "show_help", is_flag=True, help="Show this message; after SLICE.OP, that operation's fields."
)
@click.pass_context
def call(
    ctx: click.Context, target: str | None, pairs: tuple[str, ...], json_text: str | None, show_help: bool
) -> None:
    """Run TARGET (SLICE.OP) with a payload of key=value PAIRS and print the result as JSON.

    Values are parsed as JSON when they can be (n=3, tags='["a"]'), else taken as text.
    In-process, only SLICE and the slices it requires are started. `refactorbot call SLICE.OP --help`
    lists the operation's fields; `refactorbot slices show SLICE` lists all its operations.
    """
    env = ctx.find_object(Env)
    assert env is not None  # the root group made it
    if target is None:
        if show_help:
            click.echo(ctx.get_help())
            return
        raise click.UsageError("Missing argument 'TARGET' (SLICE.OPERATION).")
    slice_id, _, op = target.partition(".")
    if not slice_id or not op:
        raise click.UsageError(f"TARGET must be SLICE.OPERATION, got {target!r}")
    if show_help:
        _operation_help(env, slice_id, op)
        return
    echo_json(call_operation(env, target, parse_payload(json_text, pairs)))


def _operation_help(env: Env, slice_id: str, op: str) -> None:
    """Print the usage and fields of ``slice_id.op``; fail with one line when it does not exist."""
    from refactorbot.cli.describe import find_operation, operation_lines

    capabilities = capabilities_of(env, slice_id)
    spec = find_operation(capabilities, op)
    if spec is None:
        names = ", ".join(sorted(o["name"] for o in capabilities.get("operations") or [])) or "none"
        fail(env, f"slice '{slice_id}' has no operation '{op}' (available: {names})")
    click.echo(f"Usage: refactorbot call {slice_id}.{op} [KEY=VALUE]... [--json '{{...}}']\n")
    click.echo("\n".join(operation_lines(slice_id, spec)))


# -- serve -------------------------------------------------------------------------------------


@main.command()
@pass_env
def serve(env: Env) -> None:
    """Run every installed slice until SIGINT/SIGTERM (the API too, when installed)."""
    import logging

    from refactorbot.cli._logs import console_handlers

    env.configure_logging()
    for handler in console_handlers():  # a server's console shows what it does
        handler.setLevel(min(handler.level, logging.INFO))

    async def serving() -> None:
        host = env.master(serving=True)

        def ready() -> None:  # signals are handled from here on: a test may wait for this line
            running = host.running_slices()
            click.echo(f"refactorbot serving {len(running)} slice(s) from {host.home}: {', '.join(running) or 'none'}")
            for row in host.slice_status():
                if row["status"] == "failed":
                    click.secho(f"  {row['slice_id']} failed: {row['error']}", fg="red", err=True)
            for record in host.plugins.failed:
                click.secho(f"  plugin {record.name} {record.status}: {record.error}", fg="red", err=True)

        await host.serve_forever(ready)

    run(env, serving, serving=True)
    click.echo("refactorbot stopped.")


# -- new ---------------------------------------------------------------------------------------


@main.command()
@click.argument("kind", type=click.Choice(["slice", "tool", "gateway", "channel"]))
@click.argument("name")
@click.option(
    "--dest", type=click.Path(file_okay=False), help="Folder to create the plugin in (default: ./plugins or .)."
)
@pass_env
def new(env: Env, kind: str, name: str, dest: str | None) -> None:
    """Create a plugin distribution from the template, names filled in."""
    from refactorbot.scaffold import create_plugin, next_steps

    path = create_plugin(kind, name, dest)
    click.echo(f"Created {path}")
    click.echo(f"Next: {next_steps(path)}")
