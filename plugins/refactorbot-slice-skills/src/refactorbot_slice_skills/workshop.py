"""The workshop: proposals of new or changed skills, bound to the content hash of what they change.

A proposal holds a whole ``SKILL.md``, checked like any skill when it is made. It is ``pending``
until someone applies or rejects it; applying one whose skill changed since (another content hash,
or a skill that appeared or went away) marks it ``stale`` instead of writing anything.
"""

from __future__ import annotations

import difflib
import time
from typing import TYPE_CHECKING, Any

from refactorbot import RefactorbotError

from refactorbot_slice_skills.models import Proposal, ProposeParams
from refactorbot_slice_skills.skillfile import SkillError, parse_skill

if TYPE_CHECKING:
    from refactorbot import SliceDatabase

    from refactorbot_slice_skills.sources import Found


def diff(old: str, new: str, name: str) -> str:
    """Return a unified diff of a SKILL.md (``/dev/null`` for a new skill)."""
    before = f"a/{name}/SKILL.md" if old else "/dev/null"
    lines = difflib.unified_diff(old.splitlines(True), new.splitlines(True), before, f"b/{name}/SKILL.md")
    return "".join(lines)


def _stored_diff(row: Any) -> str | None:
    keys = row.keys()  # an aiosqlite Row: ``in`` would look at its values
    return str(row["diff"]) if "diff" in keys else None


def _proposal(row: Any, current_md: str = "") -> Proposal:
    return Proposal(
        id=row["id"],
        name=row["name"],
        status=row["status"],
        base_hash=row["base_hash"],
        rationale=row["rationale"],
        diff=_stored_diff(row) or diff(current_md, row["skill_md"], row["name"]),
        reason=row["reason"],
        applied_version=row["applied_version"],
        created_at=row["created_at"],
        decided_at=row["decided_at"],
    )


async def propose(db: SliceDatabase, current: Found | None, params: ProposeParams) -> Proposal:
    """Record a pending proposal after checking its SKILL.md; raise ``RefactorbotError`` when refused."""
    try:
        parse_skill(params.skill_md, params.name)
    except SkillError as exc:
        raise RefactorbotError(f"proposal refused: {exc}") from None
    old = current.skill.skill_md if current is not None and current.skill is not None else ""
    if old == params.skill_md:
        raise RefactorbotError(f"proposal refused: it is the SKILL.md of {params.name!r} as it is now")
    base = current.skill.content_hash if current is not None and current.skill is not None else None
    now = time.time()
    proposal_id = await db.execute(
        "INSERT INTO proposals (name, base_hash, skill_md, rationale, status, session_id, created_at)"
        " VALUES (?, ?, ?, ?, 'pending', ?, ?)",
        (params.name, base, params.skill_md, params.rationale, params.session_id, now),
    )
    row = await db.fetchone(
        "SELECT *, ? AS diff FROM proposals WHERE id = ?", (diff(old, params.skill_md, params.name), proposal_id)
    )
    return _proposal(row)


async def pending(db: SliceDatabase, proposal_id: int) -> Any:
    """Return a pending proposal's row, or raise saying what became of it."""
    row = await db.fetchone("SELECT * FROM proposals WHERE id = ?", (proposal_id,))
    if row is None:
        raise RefactorbotError(f"no proposal {proposal_id}")
    if row["status"] != "pending":
        raise RefactorbotError(f"proposal {proposal_id} is {row['status']}, not pending")
    return row


def stale_reason(row: Any, current: Found | None) -> str | None:
    """Return why a proposal no longer applies to the skill as it is, or ``None``."""
    now = current.skill.content_hash if current is not None and current.skill is not None else None
    base = row["base_hash"]
    if now == base:
        return None
    if base is None:
        return f"a skill named {row['name']!r} appeared since it was proposed"
    if now is None:
        return f"the skill {row['name']!r} is gone"
    return f"the skill changed since it was proposed (content hash {base[:12]} is now {now[:12]})"


async def decide(
    db: SliceDatabase, proposal_id: int, status: str, reason: str | None, version: int | None = None
) -> Proposal:
    """Set a proposal's outcome and return it."""
    await db.execute(
        "UPDATE proposals SET status = ?, reason = ?, applied_version = ?, decided_at = ? WHERE id = ?",
        (status, reason, version, time.time(), proposal_id),
    )
    row = await db.fetchone("SELECT * FROM proposals WHERE id = ?", (proposal_id,))
    assert row is not None  # checked pending by the caller
    previous = (
        await db.fetchone(
            "SELECT skill_md FROM skill_versions WHERE name = ? AND content_hash = ?", (row["name"], row["base_hash"])
        )
        if row["base_hash"]
        else None
    )
    return _proposal(row, previous["skill_md"] if previous else "")


async def listed(db: SliceDatabase, status: str | None, limit: int) -> list[Proposal]:
    """Return proposals, newest first, with their diffs against the version they were made on."""
    where, args = ("WHERE p.status = ?", (status,)) if status else ("", ())
    rows = await db.fetchall(
        "SELECT p.*, COALESCE(v.skill_md, '') AS base_md FROM proposals p LEFT JOIN skill_versions v"  # noqa: S608  fixed clause; values are ? parameters
        f" ON v.name = p.name AND v.content_hash = p.base_hash {where} ORDER BY p.id DESC LIMIT ?",
        (*args, limit),
    )
    return [_proposal(r, r["base_md"]) for r in rows]
