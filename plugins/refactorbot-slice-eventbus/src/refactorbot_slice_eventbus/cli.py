"""``refactorbot events``: the durable event bus from the command line.

Each command uses the running server (``refactorbot serve``) when there is one, and runs the slice
in-process otherwise (the bus of the home is then this command's own, for as long as it runs).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click
from refactorbot.cli import Env, call_operation, echo_json, echo_table


def _call(operation: str, payload: dict[str, Any]) -> Any:
    env = click.get_current_context().obj
    if not isinstance(env, Env):
        raise click.UsageError("run this through the refactorbot command")
    return call_operation(env, f"eventbus.{operation}", payload)


def _when(seconds: float | None) -> str:
    if not seconds:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


@click.group("events")
def events_group() -> None:
    """The durable event bus: subscribers and their lag, the log, dead letters, requeue and replay."""


@events_group.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Stable, sorted JSON.")
def stats_command(as_json: bool) -> None:
    """Show the log's bounds, throughput and every subscriber's lag and counters."""
    stats = _call("stats", {"seconds": 60})
    if as_json:
        echo_json(stats)
        return
    first = stats["first_offset"] if stats["first_offset"] is not None else "-"
    click.echo(
        f"log: offsets {first}..{stats['last_offset']} ({stats['stored']} stored),"
        f" {stats['published_per_second']:.0f} published/s, {stats['delivered_per_second']:.0f} delivered/s,"
        f" {stats['dead_letters']} dead letters"
    )
    if not stats["running"]:
        click.echo("(the durable bus is not running here: counts are the last ones stored)")
    _subscriber_table(stats["subscribers"])


def _subscriber_table(subscribers: list[dict[str, Any]]) -> None:
    if not subscribers:
        click.echo("No subscribers yet.")
        return
    rows = [
        [
            s["name"],
            s["pattern"],
            "yes" if s["active"] else "no",
            str(s["acked_offset"]),
            str(s["lag"]),
            f"{s['overflow']}/{s['max_in_flight']}",
            str(s["delivered"]),
            str(s["retries"]),
            str(s["dead"]),
            str(s["dropped"]),
            str(s["rejected"]),
            str(s["blocked"]),
            str(s["expired"]),
        ]
        for s in subscribers
    ]
    headers = ["SUBSCRIBER", "PATTERN", "ACTIVE", "ACKED", "LAG", "OVERFLOW", "DELIVERED", "RETRIES", "DEAD"]
    echo_table(
        [*headers, "DROPPED", "REJECTED", "BLOCKED", "EXPIRED"],
        rows,
    )


@events_group.command("subscribers")
@click.option("--json", "as_json", is_flag=True, help="Stable, sorted JSON.")
def subscribers_command(as_json: bool) -> None:
    """List every subscriber the bus has seen, with its offset, lag and counters."""
    subscribers = _call("stats", {"seconds": 10})["subscribers"]
    if as_json:
        echo_json(subscribers)
    else:
        _subscriber_table(subscribers)


@events_group.command("tail")
@click.option("--topic", help="Only topics matching this shell-style pattern.")
@click.option("--limit", "-n", default=20, show_default=True, type=click.IntRange(1, 500))
@click.option("--json", "as_json", is_flag=True, help="Stable, sorted JSON.")
def tail_command(topic: str | None, limit: int, as_json: bool) -> None:
    """Show the newest events of the log."""
    payload: dict[str, Any] = {"limit": limit}
    if topic:
        payload["topic"] = topic
    items = _call("events", payload)["items"]
    if as_json:
        echo_json(items)
        return
    if not items:
        click.echo("No events.")
        return
    rows = [
        [str(e["offset"]), _when(e["published_at"]), e["topic"], e.get("source") or "", json.dumps(e["payload"])[:80]]
        for e in reversed(items)
    ]
    echo_table(["OFFSET", "PUBLISHED (UTC)", "TOPIC", "SOURCE", "PAYLOAD"], rows)


@events_group.command("publish")
@click.argument("topic")
@click.argument("payload", required=False, default="{}")
def publish_command(topic: str, payload: str) -> None:
    """Publish TOPIC with a JSON object PAYLOAD; prints the offset once it is stored."""
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        raise click.UsageError(f"PAYLOAD is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise click.UsageError("PAYLOAD must be a JSON object")
    result = _call("publish", {"topic": topic, "payload": data, "source": "cli"})
    click.echo(f"stored {result['topic']} at offset {result['offset']}")


@events_group.command("dead")
@click.option("--subscriber", help="Only this subscriber's.")
@click.option("--status", type=click.Choice(["dead", "requeued", "redelivered", "all"]), default="dead")
@click.option("--limit", "-n", default=50, show_default=True, type=click.IntRange(1, 500))
@click.option("--json", "as_json", is_flag=True, help="Stable, sorted JSON.")
def dead_command(subscriber: str | None, status: str, limit: int, as_json: bool) -> None:
    """List dead letters: events a subscriber failed on max_attempts times, and why."""
    payload: dict[str, Any] = {"status": status, "limit": limit}
    if subscriber:
        payload["subscriber"] = subscriber
    items = _call("dead_letters", payload)["items"]
    if as_json:
        echo_json(items)
        return
    if not items:
        click.echo("No dead letters.")
        return
    rows = [
        [
            str(d["id"]),
            d["subscriber"],
            str(d["offset"]),
            d["topic"],
            str(d["attempts"]),
            d["status"],
            _when(d["dead_at"]),
            d["error"][:80],
        ]
        for d in items
    ]
    echo_table(["ID", "SUBSCRIBER", "OFFSET", "TOPIC", "ATTEMPTS", "STATUS", "DEAD AT (UTC)", "ERROR"], rows)


def _selection(ids: tuple[int, ...], subscriber: str | None, everything: bool) -> dict[str, Any]:
    if sum((bool(ids), subscriber is not None, everything)) != 1:
        raise click.UsageError("give dead letter IDS, or --subscriber NAME, or --all")
    if ids:
        return {"ids": list(ids)}
    if subscriber is not None:
        return {"subscriber": subscriber}
    return {"all": True}


@events_group.command("requeue")
@click.argument("ids", nargs=-1, type=click.IntRange(1))
@click.option("--subscriber", help="Every dead letter of this subscriber.")
@click.option("--all", "everything", is_flag=True, help="Every dead letter.")
def requeue_command(ids: tuple[int, ...], subscriber: str | None, everything: bool) -> None:
    """Deliver dead letters again, each with a fresh set of attempts."""
    changed = _call("requeue", _selection(ids, subscriber, everything))
    click.echo(f"requeued {changed['count']} dead letter(s)")


@events_group.command("discard")
@click.argument("ids", nargs=-1, type=click.IntRange(1))
@click.option("--subscriber", help="Every dead letter of this subscriber.")
@click.option("--all", "everything", is_flag=True, help="Every dead letter.")
def discard_command(ids: tuple[int, ...], subscriber: str | None, everything: bool) -> None:
    """Delete dead letters for good."""
    changed = _call("discard", _selection(ids, subscriber, everything))
    click.echo(f"discarded {changed['count']} dead letter(s)")


@events_group.command("replay")
@click.argument("subscriber")
@click.option("--from", "from_offset", required=True, type=click.IntRange(1), help="First offset to deliver again.")
def replay_command(subscriber: str, from_offset: int) -> None:
    """Deliver SUBSCRIBER's events again from an offset (what retention kept)."""
    result = _call("replay", {"subscriber": subscriber, "from_offset": from_offset})
    first = result["first_offset"]
    note = f"; the oldest event kept is {first}" if first is not None and first > from_offset else ""
    click.echo(f"{subscriber} replays from offset {result['acked_offset'] + 1}{note}")


@events_group.command("forget")
@click.argument("subscriber")
def forget_command(subscriber: str) -> None:
    """Delete an inactive subscriber's offset and counters."""
    _call("forget", {"subscriber": subscriber})
    click.echo(f"forgot {subscriber}")


@events_group.command("retention")
def retention_command() -> None:
    """Apply retention now (age and count limits, old dead letters)."""
    result = _call("retention", {})
    click.echo(
        f"deleted {result['events']} event(s) up to offset {result['cut']} and {result['dead_letters']} dead letter(s)"
    )
