"""The improve slice's database: cycles, changes and the audit trail."""

from __future__ import annotations

import json
import time
from typing import Any

from refactorbot import ImprovementAction, ImprovementPlan, RefactorbotError, SliceDatabase, WindowMetrics, one_line

from refactorbot_slice_improve.models import AuditEntry, Change, Cycle

_JSON_COLUMNS = ("change", "previous")
_METRICS_COLUMNS = ("before_metrics", "after_metrics")


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def change_of(row: Any) -> Change:
    """Return a ``changes`` row as a ``Change``."""
    data = dict(row)
    for column in _JSON_COLUMNS:
        data[column] = _loads(data[column])
    for column in _METRICS_COLUMNS:
        data[column] = None if data[column] is None else WindowMetrics.model_validate_json(data[column])
    return Change(**data)


async def add_cycle(
    db: SliceDatabase, slice_id: str, trigger: str, plan: ImprovementPlan, metrics: WindowMetrics | None
) -> int:
    """Store a planned cycle and its actions as pending changes; return the cycle's id."""
    from refactorbot import actions_of

    now = time.time()
    async with db.transaction() as conn:
        cursor = await conn.execute(
            "INSERT INTO cycles (slice_id, trigger, status, notes, plan, metrics, created_at)"
            " VALUES (?, ?, 'planned', ?, ?, ?, ?)",
            (slice_id, trigger, plan.notes, plan.model_dump_json(), metrics and metrics.model_dump_json(), now),
        )
        cycle_id = int(cursor.lastrowid or 0)
        for action in actions_of(plan):
            await conn.execute(
                "INSERT INTO changes (cycle_id, slice_id, kind, target, title, change, rationale, expected_effect,"
                " risk, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                (
                    cycle_id,
                    slice_id,
                    action.kind,
                    action.target,
                    action.title or f"{action.kind} {action.target}",
                    json.dumps(action.change),
                    action.rationale,
                    action.expected_effect,
                    action.risk,
                    now,
                    now,
                ),
            )
    return cycle_id


async def add_failed_cycle(db: SliceDatabase, slice_id: str, trigger: str, error: str) -> int:
    """Store a cycle that produced no plan, with the reason."""
    cursor_id = await db.execute(
        "INSERT INTO cycles (slice_id, trigger, status, notes, error, created_at) VALUES (?, ?, 'failed', '', ?, ?)",
        (slice_id, trigger, one_line(error), time.time()),
    )
    return cursor_id


async def audit(
    db: SliceDatabase, step: str, detail: str, *, actor: str, cycle_id: int | None = None, change_id: int | None = None
) -> None:
    """Append one step to the audit trail."""
    await db.execute(
        "INSERT INTO audit (ts, cycle_id, change_id, step, actor, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (time.time(), cycle_id, change_id, step, actor, one_line(detail)[:2000]),
    )


async def get_change(db: SliceDatabase, change_id: int) -> Change:
    """Return one change; ``RefactorbotError`` when there is none."""
    row = await db.fetchone("SELECT * FROM changes WHERE id = ?", (change_id,))
    if row is None:
        raise RefactorbotError(f"no change {change_id}")
    return change_of(row)


async def update_change(db: SliceDatabase, change_id: int, **fields: Any) -> Change:
    """Set columns of one change (JSON and metrics columns encoded) and return it."""
    values: list[Any] = []
    for column, value in fields.items():
        if column in _JSON_COLUMNS:
            value = json.dumps(value)
        elif column in _METRICS_COLUMNS and value is not None:
            value = value.model_dump_json()
        values.append(value)
    assignments = ", ".join(f"{column} = ?" for column in fields)
    await db.execute(
        f"UPDATE changes SET {assignments}, updated_at = ? WHERE id = ?",  # noqa: S608  names from our own code; values are ? parameters
        (*values, time.time(), change_id),
    )
    return await get_change(db, change_id)


async def list_changes(db: SliceDatabase, status: str | None, slice_id: str | None, limit: int) -> list[Change]:
    """Return changes, newest first, optionally of one status and slice."""
    where, args = [], []
    for column, value in (("status", status), ("slice_id", slice_id)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = await db.fetchall(f"SELECT * FROM changes{clause} ORDER BY id DESC LIMIT ?", (*args, limit))  # noqa: S608  names from our own code; values are ? parameters
    return [change_of(r) for r in rows]


async def list_cycles(db: SliceDatabase, slice_id: str | None, limit: int) -> list[Cycle]:
    """Return cycles with their changes, newest first."""
    clause, args = (" WHERE slice_id = ?", [slice_id]) if slice_id else ("", [])
    rows = await db.fetchall(f"SELECT * FROM cycles{clause} ORDER BY id DESC LIMIT ?", (*args, limit))  # noqa: S608  names from our own code; values are ? parameters
    cycles = [_cycle_of(r) for r in rows]
    if cycles:
        marks = ",".join("?" * len(cycles))
        changes = await db.fetchall(
            f"SELECT * FROM changes WHERE cycle_id IN ({marks}) ORDER BY id",  # noqa: S608  names from our own code; values are ? parameters
            [c.id for c in cycles],
        )
        by_cycle = {c.id: c for c in cycles}
        for row in changes:
            by_cycle[row["cycle_id"]].changes.append(change_of(row))
    return cycles


async def get_cycle(db: SliceDatabase, cycle_id: int) -> Cycle:
    """Return one cycle with its changes and audit trail."""
    row = await db.fetchone("SELECT * FROM cycles WHERE id = ?", (cycle_id,))
    if row is None:
        raise RefactorbotError(f"no cycle {cycle_id}")
    cycle = _cycle_of(row)
    cycle.changes = [
        change_of(r) for r in await db.fetchall("SELECT * FROM changes WHERE cycle_id = ? ORDER BY id", (cycle_id,))
    ]
    cycle.audit = await audit_trail(db, cycle_id, None, 5000)
    return cycle


async def audit_trail(db: SliceDatabase, cycle_id: int | None, change_id: int | None, limit: int) -> list[AuditEntry]:
    """Return audit entries in order, of one cycle (with its changes' entries) or one change, or the newest."""
    if cycle_id is not None:
        sql = (
            "SELECT * FROM audit WHERE cycle_id = ? OR change_id IN (SELECT id FROM changes WHERE cycle_id = ?)"
            " ORDER BY id LIMIT ?"
        )
        rows = await db.fetchall(sql, (cycle_id, cycle_id, limit))
    elif change_id is not None:
        rows = await db.fetchall("SELECT * FROM audit WHERE change_id = ? ORDER BY id LIMIT ?", (change_id, limit))
    else:
        rows = await db.fetchall("SELECT * FROM (SELECT * FROM audit ORDER BY id DESC LIMIT ?) ORDER BY id", (limit,))
    return [AuditEntry(**dict(r)) for r in rows]


async def config_epoch(db: SliceDatabase, slice_id: str, exclude: int) -> float | None:
    """Return when the slice's settings last changed through this slice (a deploy or a rollback), if ever."""
    value = await db.scalar(
        "SELECT MAX(CASE WHEN status = 'rolled_back' THEN concluded_at ELSE deployed_at END) FROM changes"
        " WHERE slice_id = ? AND id != ? AND deployed_at IS NOT NULL",
        (slice_id, exclude),
    )
    return None if value is None else float(value)


def _cycle_of(row: Any) -> Cycle:
    data = dict(row)
    data["plan"] = json.loads(data["plan"] or "{}")
    data["metrics"] = None if data["metrics"] is None else WindowMetrics.model_validate_json(data["metrics"])
    return Cycle(**data)


def action_of(change: Change) -> ImprovementAction:
    """Return the action a stored change applies."""
    return ImprovementAction(
        kind=change.kind,
        target=change.target,
        change=change.change,
        rationale=change.rationale,
        expected_effect=change.expected_effect,
        risk=change.risk,
        title=change.title,
    )
