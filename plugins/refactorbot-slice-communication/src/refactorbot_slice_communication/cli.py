"""``refactorbot send``, ``refactorbot channels`` and ``refactorbot pairing``: the communication slice from the command line.

Each command uses the running server (``refactorbot serve``) when there is one, and runs the
slice in-process otherwise (pairing and templates work on the database then; sending needs the
server, where the channels run).
"""

from __future__ import annotations

import time
from typing import Any

import click
from refactorbot.cli import Env, call_operation, echo_json, echo_table


def _call(operation: str, payload: dict[str, Any]) -> Any:
    """Run ``communication.<operation>`` on the running server, or in-process when none runs."""
    env = click.get_current_context().obj
    if not isinstance(env, Env):
        raise click.UsageError("run this through the refactorbot command")
    return call_operation(env, f"communication.{operation}", payload)


def _variables(pairs: tuple[str, ...]) -> dict[str, str]:
    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.UsageError(f"--var takes NAME=VALUE, got {pair!r}")
        found[key] = value
    return found


@click.command("send")
@click.argument("channel")
@click.argument("chat")
@click.argument("text", required=False)
@click.option("--template", "-t", help="Send this stored template instead of TEXT.")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE", help="A template variable (repeat).")
@click.option("--reply-to", help="Platform id of the message to reply to.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def send_command(
    channel: str,
    chat: str,
    text: str | None,
    template: str | None,
    variables: tuple[str, ...],
    reply_to: str | None,
    as_json: bool,
) -> None:
    """Send TEXT (Markdown) to CHAT on CHANNEL through the running server; exit 1 with the reason if it failed."""
    if (text is None) == (template is None):
        raise click.UsageError("give TEXT or --template NAME")
    payload: dict[str, Any] = {"channel": channel, "chat_id": chat}
    if text is not None:
        payload["text"] = text
    else:
        payload["template"] = template
        payload["variables"] = _variables(variables)
    if reply_to:
        payload["reply_to"] = reply_to
    result = _call("send", payload)
    if as_json:
        echo_json(result)
        return
    parts = f" in {result['parts']} parts" if result["parts"] > 1 else ""
    click.echo(f"sent to {channel}:{chat}{parts} (message {result['id']}; ids {', '.join(result['platform_ids'])})")


@click.command("channels")
@click.option("--json", "as_json", is_flag=True, help="Stable, sorted JSON.")
def channels_command(as_json: bool) -> None:
    """Show every channel: enabled, status, last error, traffic."""
    listed = _call("channels", {})
    if as_json:
        echo_json(listed)
        return
    channels = listed["channels"]
    if not channels:
        click.echo("No channels installed (pip install refactorbot-channel-<name>).")
        return
    rows = []
    for c in channels:
        status = c["status"]
        if c.get("next_retry_at") and status == "failed":
            status += f" (retry in {max(0, c['next_retry_at'] - time.time()):.0f}s)"
        elif status == "standby" and c.get("held_by"):
            status += f" (held by {c['held_by']})"
        rows.append(
            [
                c["name"],
                "yes" if c["enabled"] else "no",
                status,
                str(c["inbound"]),
                str(c["outbound"]),
                str(c["failed"]),
                c.get("last_error") or "",
            ]
        )
    echo_table(["CHANNEL", "ENABLED", "STATUS", "IN", "OUT", "FAILED", "LAST ERROR"], rows)
    if not listed["serving"]:
        click.echo("(no server is running: the status is the last one recorded)")


@click.group("pairing")
def pairing_group() -> None:
    """List, approve or deny the pairing codes of unknown senders (dm_policy = pairing)."""


@pairing_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include approved, denied and expired requests.")
@click.option("--channel", help="Only this channel.")
@click.option("--json", "as_json", is_flag=True, help="Stable, sorted JSON.")
def pairing_list(show_all: bool, channel: str | None, as_json: bool) -> None:
    """List pending pairing requests (newest first)."""
    payload: dict[str, Any] = {"status": "all" if show_all else "pending"}
    if channel:
        payload["channel"] = channel
    requests = _call("pairing_list", payload)["requests"]
    if as_json:
        echo_json(requests)
        return
    if not requests:
        click.echo("No pairing requests." if show_all else "No pending pairing requests.")
        return
    now = time.time()
    rows = [
        [
            r["code"],
            r["channel"],
            r["sender_id"],
            r.get("sender_name") or "",
            r["status"],
            f"{max(0, r['expires_at'] - now) / 60:.0f} min" if r["status"] == "pending" else "",
        ]
        for r in requests
    ]
    echo_table(["CODE", "CHANNEL", "SENDER", "NAME", "STATUS", "EXPIRES IN"], rows)


@pairing_group.command("approve")
@click.argument("code")
def pairing_approve(code: str) -> None:
    """Approve CODE: its sender may talk to the agent from now on."""
    request = _call("pairing_approve", {"code": code})
    click.echo(f"approved {request['sender_id']} on {request['channel']}")


@pairing_group.command("deny")
@click.argument("code")
def pairing_deny(code: str) -> None:
    """Deny CODE."""
    request = _call("pairing_deny", {"code": code})
    click.echo(f"denied {request['sender_id']} on {request['channel']}")
