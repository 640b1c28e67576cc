"""``refactorbot models`` and ``refactorbot spend``: read the providers slice from the command line."""

from __future__ import annotations

from datetime import date
from typing import Any

import click
from refactorbot.cli import Env, call_operation, echo_json, echo_table


def _call(operation: str, payload: dict[str, Any]) -> Any:
    """Run ``providers.<operation>`` on the running server, or in-process when none runs."""
    env = click.get_current_context().obj
    if not isinstance(env, Env):
        raise click.UsageError("run this through the refactorbot command")
    return call_operation(env, f"providers.{operation}", payload)


def _key(model: dict[str, Any]) -> str:
    if not model.get("api_key_env"):
        return "-"
    return f"{model['api_key_env']} ({'set' if model.get('key_present') else 'missing'})"


@click.command("models")
@click.option("--provider", help="Only this provider's models.")
@click.option("--capability", help="Only models with this capability (tools, vision, ...).")
@click.option("--json", "as_json", is_flag=True, help="Stable, sorted JSON.")
def models_command(provider: str | None, capability: str | None, as_json: bool) -> None:
    """List the default model and the configured ones: prices, key status, the gateway serving each."""
    payload = {k: v for k, v in {"provider": provider, "capability": capability}.items() if v}
    models = _call("list_models", payload)
    if as_json:
        echo_json(models)
        return
    if not models:
        click.echo("No model matches these filters.")
        return
    rows = []
    for m in models:
        if m.get("gateway_installed") is False:
            gateway = "none installed" if m["gateway"] == "-" else f"{m['gateway']} (not installed)"
        else:
            gateway = m["gateway"]
        configured = m.get("configured", True)
        prices = f"{m['input_price_per_mtok']:g} / {m['output_price_per_mtok']:g}" if configured else "-"
        rows.append(
            [
                m["name"] + (" (default)" if m.get("default") else ""),
                m["provider"],
                gateway,
                _key(m),
                str(m.get("context_window") or "-"),
                prices,
                ",".join(m.get("capabilities") or []) or "-",
                ",".join(m.get("routes") or []) or "-",
            ]
        )
    echo_table(["MODEL", "PROVIDER", "GATEWAY", "KEY", "CONTEXT", "USD/MTOK IN/OUT", "CAPABILITIES", "ROUTES"], rows)
    default = next((m for m in models if m.get("default")), None)
    if default is not None and default.get("key_present") is False:
        click.echo(
            f"\nThe default model {default['name']} needs {default['api_key_env']}, which is not set: "
            "export it, or choose another model with RB_MODEL."
        )
    if not any(m.get("configured", True) for m in models):
        click.echo("No models configured for prices and routing (add them under [slices.providers] models).")


@click.command("spend")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="First UTC day (YYYY-MM-DD).")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Last UTC day (YYYY-MM-DD).")
@click.option("--slice", "slice_id", help="Only this slice's calls.")
@click.option("--model", help="Only this model's calls.")
@click.option(
    "--by",
    "group_by",
    multiple=True,
    type=click.Choice(["day", "slice", "model"]),
    help="Group by (repeatable; default: day, slice and model).",
)
@click.option("--json", "as_json", is_flag=True, help="Stable, sorted JSON.")
def spend_command(
    since: Any, until: Any, slice_id: str | None, model: str | None, group_by: tuple[str, ...], as_json: bool
) -> None:
    """Show LLM cost and tokens by day, slice and model."""
    payload: dict[str, Any] = {"group_by": list(group_by)} if group_by else {}  # none: the slice's default
    for key, value in (("since", since), ("until", until)):
        if value is not None:
            payload[key] = date.isoformat(value.date())
    payload.update({k: v for k, v in {"slice_id": slice_id, "model": model}.items() if v})
    report = _call("spend", payload)
    if as_json:
        echo_json(report)
        return
    if not report["rows"]:
        click.echo("No LLM calls recorded in this range.")
        return
    columns = [c for c in ("day", "slice_id", "model") if any(c in r and r[c] is not None for r in report["rows"])]
    rows = [
        [
            *(str(r[c]) for c in columns),
            str(r["calls"]),
            str(r["prompt_tokens"] + r["completion_tokens"]),
            f"${r['cost_usd']:.4f}",
        ]
        for r in report["rows"]
    ]
    rows.append([*([""] * len(columns)), str(report["calls"]), "", f"${report['total_usd']:.4f}"])
    headers = [{"slice_id": "SLICE"}.get(c, c.upper()) for c in columns]
    echo_table([*headers, "CALLS", "TOKENS", "COST"], rows)


def add_commands(cli: click.Group) -> None:
    """Add the commands to the root group."""
    cli.add_command(models_command)
    cli.add_command(spend_command)
