"""Parameters and results of the memory slice's operations."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, field_validator
from refactorbot import Model, SliceConfig

_ID: dict[str, Any] = {"min_length": 1, "max_length": 200}


class MemoryConfig(SliceConfig):
    """``[slices.memory]``: limits, retention and consolidation."""

    max_content_chars: int = Field(4000, ge=1, description="longest memory accepted")
    max_per_user: int | None = Field(None, ge=1, description="oldest, least used memories pruned past this")
    retention_days: float | None = Field(None, gt=0, description="prune() default: memories older than this")
    consolidation_model: str | None = Field(None, description="model for consolidation (default: host default)")
    consolidate_after_days: float = Field(30.0, ge=0, description="memories older than this get consolidated")
    search_candidates: int = Field(
        2000, ge=10, le=1_000_000, description="newest matching memories a search ranks (bounds its cost)"
    )


class _Params(Model):
    model_config = ConfigDict(extra="forbid")


def _clean_tags(tags: list[str]) -> list[str]:
    cleaned = []
    for tag in tags:
        tag = tag.strip().lower()
        if not tag or len(tag) > 64:
            raise ValueError("tags must be 1-64 characters")
        cleaned.append(tag)
    return sorted(set(cleaned))


class RememberParams(_Params):
    user_id: str = Field(description="whose memory this is", **_ID)
    content: str = Field(min_length=1, description="the fact to remember")
    session_id: str | None = Field(None, **_ID)
    kind: str = Field("fact", min_length=1, max_length=32)
    importance: float = Field(0.5, ge=0.0, le=1.0)
    tags: list[str] = Field(default_factory=list, max_length=20)

    normalize_tags = field_validator("tags")(_clean_tags)


class Memory(Model):
    """One memory of one user."""

    id: int
    user_id: str
    session_id: str | None = None
    content: str
    kind: str
    importance: float
    tags: list[str] = Field(default_factory=list)
    access_count: int = 0
    last_accessed: float | None = None
    created_at: float
    score: float | None = Field(None, description="bm25 rank of a search hit (lower is better)")


class SearchParams(_Params):
    user_id: str = Field(description="only this user's memories are searched", **_ID)
    query: str = Field("", max_length=2000, description="free text; empty returns the newest memories")
    session_id: str | None = Field(None, **_ID)
    tags: list[str] = Field(default_factory=list, max_length=20, description="every tag must be present")
    limit: int = Field(5, ge=1, le=100)
    include_consolidated: bool = Field(False, description="also return memories already summarised")
    touch: bool = Field(True, description="count this as a recall (access_count, last_accessed)")

    normalize_tags = field_validator("tags")(_clean_tags)


class SearchResult(Model):
    memories: list[Memory]
    query: str = Field(description="the sanitised FTS5 expression that ran ('' for none)")


class ForgetParams(_Params):
    user_id: str = Field(**_ID)
    memory_id: int | None = Field(None, ge=1)
    session_id: str | None = Field(None, **_ID)
    everything: bool = Field(False, description="forget every memory of the user")


class ForgetResult(Model):
    forgotten: int


class ConsolidateParams(_Params):
    user_id: str = Field(**_ID)
    older_than_days: float | None = Field(None, ge=0)
    min_memories: int = Field(3, ge=2, le=500)
    max_memories: int = Field(50, ge=2, le=500)


class ConsolidateResult(Model):
    consolidated: bool
    summary: Memory | None = None
    source_ids: list[int] = Field(default_factory=list)
    reason: str = ""


class PruneParams(_Params):
    user_id: str | None = Field(None, **_ID)
    older_than_days: float | None = Field(None, ge=0, description="default: retention_days")
    max_access_count: int = Field(0, ge=0, description="only memories recalled at most this often")


class PruneResult(Model):
    pruned: int


class StatsParams(_Params):
    user_id: str | None = Field(None, **_ID)


class MemoryStats(Model):
    memories: int
    users: int
    by_kind: dict[str, int]
    top_tags: dict[str, int]
    consolidated: int
    summaries: int
    accesses: int


class UsersParams(_Params):
    query: str | None = Field(None, max_length=200, description="only users whose id contains this")
    limit: int = Field(200, ge=1, le=5000)


class UserSummary(Model):
    """One user who has memories."""

    user_id: str
    memories: int
    last_created: float


class UpdateParams(_Params):
    user_id: str = Field(description="the memory's owner (a memory of another user is not found)", **_ID)
    memory_id: int = Field(ge=1)
    content: str | None = Field(None, min_length=1, description="new text")
    kind: str | None = Field(None, min_length=1, max_length=32)
    importance: float | None = Field(None, ge=0.0, le=1.0)
    tags: list[str] | None = Field(None, max_length=20, description="replaces every tag")

    @field_validator("tags")
    @classmethod
    def normalize_tags(cls, tags: list[str] | None) -> list[str] | None:
        return None if tags is None else _clean_tags(tags)


class FindParams(_Params):
    query: str = Field("", max_length=2000, description="free text; empty returns the newest memories")
    user_id: str | None = Field(None, description="one user only (default: every user)", **_ID)
    limit: int = Field(20, ge=1, le=500)
