"""Dashboard page of the providers slice: models and prices, budgets with progress bars, spend by slice/model/day.

Streamlit and the dashboard's table helper are imported inside ``render_providers``; the page goes
through the API client it is given (the providers slice's operations).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

OPS = "/slices/providers/operations/"
WINDOWS = {"today": 0, "7 days": 6, "30 days": 29, "90 days": 89}


def call(api: Any, operation: str, payload: dict[str, Any] | None = None) -> tuple[Any, str | None]:
    """Run ``providers.<operation>`` through ``api``; return ``(data, None)`` or ``(None, error)``."""
    try:
        answer = api.post(OPS + operation, payload or {})
    except Exception as exc:  # the API refused (422) or is gone: shown on the page
        return None, str(getattr(exc, "detail", None) or exc)
    if not answer.get("success"):
        return None, answer.get("error_message") or f"providers.{operation} failed"
    return answer.get("data"), None


def model_rows(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the models table rows."""
    return [
        {
            "model": m["name"],
            "provider": m["provider"],
            "gateway": m["gateway"] + ("" if m.get("gateway_installed") is not False else " (not installed)"),
            "key": "-"
            if not m.get("api_key_env")
            else f"{m['api_key_env']} {'set' if m.get('key_present') else 'missing'}",
            "context window": m.get("context_window"),
            "input $/Mtok": m["input_price_per_mtok"],
            "output $/Mtok": m["output_price_per_mtok"],
            "capabilities": ", ".join(m.get("capabilities") or []),
            "routes": ", ".join(m.get("routes") or []),
            "default": m.get("default", False),
        }
        for m in models
    ]


def budget_lines(budget: dict[str, Any]) -> list[tuple[str, float, str]]:
    """Return ``(label, fraction used, text)`` for each cap a budget sets (fraction capped at 1)."""
    scope = budget.get("slice_id") or "overall"
    lines = []
    for period, cap, spent in (
        ("today", budget.get("daily_usd"), budget["spent_today_usd"]),
        ("this month", budget.get("monthly_usd"), budget["spent_month_usd"]),
    ):
        if cap is None:
            continue
        share = spent / cap if cap > 0 else 1.0
        lines.append((scope, min(1.0, share), f"{scope}, {period}: ${spent:.4f} of ${cap:.2f} ({share:.0%})"))
    return lines


def spend_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return spend rows with total tokens."""
    return [
        {
            **{k: r.get(k) for k in ("day", "slice_id", "model") if k in r and r.get(k) is not None},
            "calls": r["calls"],
            "prompt tokens": r["prompt_tokens"],
            "completion tokens": r["completion_tokens"],
            "cost (USD)": round(r["cost_usd"], 6),
        }
        for r in rows
    ]


def render_providers(api: Any) -> None:
    """Draw models and prices, budgets as progress bars, and spend by day, slice and model."""
    import streamlit as st
    from refactorbot_dashboard.tables import table

    st.title("Models and spend")
    models, error = call(api, "list_models")
    if error:
        st.error(error)
        return
    st.subheader("Models")
    if models:
        table(model_rows(models), key="providers.models")
    else:
        st.info("No models configured: add [[slices.providers.models]] to refactorbot.toml.")

    st.subheader("Budgets")
    budgets, error = call(api, "get_budgets")
    if error:
        st.error(error)
    else:
        lines = [line for budget in budgets for line in budget_lines(budget)]
        for _, share, text in lines:
            st.progress(share, text=text)
        exceeded = [b.get("slice_id") or "overall" for b in budgets if b["exceeded"]]
        if exceeded:
            st.error(f"Budget spent, LLM calls refused: {', '.join(exceeded)}")
        if not lines:
            st.caption("No budget is set ([slices.providers.budgets] or `providers.set_budget`).")

    st.subheader("Spend")
    window = st.selectbox("Since", list(WINDOWS), index=2, key="providers.window")
    since = (datetime.now(UTC).date() - timedelta(days=WINDOWS[window])).isoformat()
    by_day, error = call(api, "spend", {"since": since, "group_by": ["day"]})
    if error:
        st.error(error)
        return
    cols = st.columns(2)
    cols[0].metric("Cost", f"${by_day['total_usd']:.4f}")
    cols[1].metric("LLM calls", f"{by_day['calls']:,}")
    if not by_day["rows"]:
        st.info("No LLM calls in this window.")
        return
    days = spend_rows(by_day["rows"])
    st.caption("Cost per day (USD)")
    st.bar_chart(days, x="day", y="cost (USD)")
    by_slice, error = call(api, "spend", {"since": since, "group_by": ["slice", "model"]})
    if error:
        st.error(error)
        return
    detail = spend_rows(by_slice["rows"])
    left, right = st.columns(2)
    with left:
        st.caption("Cost by slice and model (USD)")
        st.bar_chart(detail, x="slice_id", y="cost (USD)", color="model")
    with right:
        st.caption("Tokens by slice and model")
        st.bar_chart(detail, x="slice_id", y=["prompt tokens", "completion tokens"])
    table(detail, key="providers.spend.slice_model")
    full, error = call(api, "spend", {"since": since, "group_by": ["day", "slice", "model"]})
    if not error:
        with st.expander("By day, slice and model"):
            table(spend_rows(full["rows"]), key="providers.spend.day_slice_model")
