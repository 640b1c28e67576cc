"""``[slices.eventbus]``: delivery, overflow, retry and retention settings of the durable bus."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field
from refactorbot import Model, SliceConfig

Overflow = Literal["block", "drop_oldest", "reject"]


class SubscriberPolicy(Model):
    """Overrides for one subscriber (``[slices.eventbus.subscribers."<name>"]``)."""

    model_config = ConfigDict(extra="forbid")

    max_in_flight: int | None = Field(None, ge=1, le=100_000_000)
    overflow: Overflow | None = None
    max_attempts: int | None = Field(None, ge=1, le=100)


class EventBusConfig(SliceConfig):
    """``[slices.eventbus]`` in ``refactorbot.toml`` (or ``RB_EVENTBUS_<FIELD>``)."""

    max_in_flight: int = Field(
        10_000, ge=1, le=100_000_000, description="events a subscriber may have published but not yet acknowledged"
    )
    overflow: Overflow = Field(
        "block", description="what a publish does when a subscriber is full: block, drop_oldest or reject"
    )
    block_timeout: float = Field(
        30.0, gt=0, le=3600, description="seconds a blocked publish waits before it is rejected"
    )
    max_attempts: int = Field(5, ge=1, le=100, description="deliveries of one event before it is dead-lettered")
    retry_backoff: float = Field(0.5, gt=0, le=3600, description="seconds before the first retry; doubles each time")
    retry_backoff_max: float = Field(60.0, gt=0, le=86_400, description="longest wait between two retries")
    handler_timeout: float = Field(30.0, gt=0, le=3600, description="seconds a handler may take; past it, it failed")
    stop_timeout: float = Field(
        5.0, ge=0, le=600, description="seconds a stop lets running handlers finish; then they are cancelled"
    )
    retention_max_age: float = Field(
        7 * 86_400.0, gt=0, description="seconds an event is kept; older ones are deleted, read or not"
    )
    retention_max_events: int = Field(
        1_000_000, ge=1, description="events kept at most; the oldest beyond are deleted, read or not"
    )
    retention_interval: float = Field(60.0, gt=0, le=86_400, description="seconds between two retention passes")
    dead_letter_max_age: float = Field(30 * 86_400.0, gt=0, description="seconds a dead letter is kept")
    subscribers: dict[str, SubscriberPolicy] = Field(
        default_factory=dict, description="per-subscriber overrides of max_in_flight, overflow and max_attempts"
    )
