"""Parameters and results of the eventbus slice's operations."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Topic = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
Pattern = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
SubscriberName = Annotated[str, StringConstraints(min_length=1, max_length=300, pattern=r"^[^\x00-\x1f\x7f]+$")]


class Params(BaseModel):
    """Base of the operations' parameters: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class PublishParams(Params):
    """Parameters of ``eventbus.publish``."""

    topic: Topic = Field(description="dotted topic, printable characters without spaces (1-200)")
    payload: dict[str, Any] = Field(default_factory=dict, description="JSON object carried by the event")
    source: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = Field(
        None, description="who published it (default: eventbus)"
    )


class Published(BaseModel):
    """A stored event's position."""

    offset: int
    topic: str


class StatsParams(Params):
    """Parameters of ``eventbus.stats``."""

    seconds: int = Field(300, ge=10, le=3600, description="throughput over the last this many seconds")


class SubscriberRow(BaseModel):
    """One subscriber: position, lag, policy and what happened to its events."""

    name: str
    pattern: str
    active: bool
    acked_offset: int
    lag: int = Field(description="matching events not yet acknowledged (active subscribers; else counted)")
    behind: int = Field(description="offsets between the last event and the acknowledged one")
    in_delivery: int | None = None
    max_in_flight: int
    overflow: str
    max_attempts: int
    delivered: int
    failures: int
    retries: int
    dead: int
    dropped: int
    rejected: int
    blocked: int
    blocked_seconds: float
    block_timeouts: int
    expired: int
    dead_letters: int = Field(description="dead letters waiting (status dead)")
    last_error: str | None = None
    last_seen_at: float


class Bucket(BaseModel):
    """Events in one second."""

    second: int
    published: int
    delivered: int
    failed: int


class Stats(BaseModel):
    """The log, throughput and every subscriber."""

    running: bool = Field(description="whether this process runs the durable bus")
    first_offset: int | None
    last_offset: int
    stored: int
    published: int = Field(description="events stored since the bus started")
    batches: int
    write_errors: int
    started_at: float | None
    published_per_second: float
    delivered_per_second: float
    throughput: list[Bucket]
    subscribers: list[SubscriberRow]
    dead_letters: int


class EventsParams(Params):
    """Parameters of ``eventbus.events``."""

    after: int = Field(0, ge=0, description="only events after this offset")
    topic: Pattern | None = Field(None, description="only topics matching this shell-style pattern")
    limit: int = Field(50, ge=1, le=500)
    newest: bool = Field(True, description="the newest first (else the oldest after `after` first)")


class StoredEvent(BaseModel):
    """One event of the log."""

    offset: int
    topic: str
    payload: dict[str, Any]
    source: str | None
    published_at: float


class EventPage(BaseModel):
    """A page of the log."""

    items: list[StoredEvent]


class DeadLettersParams(Params):
    """Parameters of ``eventbus.dead_letters``."""

    subscriber: SubscriberName | None = None
    status: Literal["dead", "requeued", "redelivered", "all"] = "dead"
    limit: int = Field(50, ge=1, le=500)
    before_id: int | None = Field(None, ge=1, description="page: ids below this one")


class DeadLetter(BaseModel):
    """An event a subscriber failed on, with why."""

    id: int
    subscriber: str
    offset: int
    topic: str
    payload: dict[str, Any]
    source: str | None
    published_at: float
    attempts: int
    error: str
    status: str
    dead_at: float
    requeued_at: float | None
    redelivered_at: float | None


class DeadLetterPage(BaseModel):
    """A page of dead letters, newest first."""

    items: list[DeadLetter]
    next_before_id: int | None


class SelectLetters(Params):
    """Which dead letters: ``ids``, or every one of ``subscriber``, or ``all``."""

    ids: list[Annotated[int, Field(ge=1)]] | None = Field(None, max_length=1000)
    subscriber: SubscriberName | None = None
    all: bool = False

    @model_validator(mode="after")
    def _one_selection(self) -> SelectLetters:
        chosen = sum((self.ids is not None, self.subscriber is not None, self.all))
        if chosen != 1:
            raise ValueError("give exactly one of ids, subscriber or all=true")
        return self


class Changed(BaseModel):
    """How many rows an operation changed."""

    count: int


class ReplayParams(Params):
    """Parameters of ``eventbus.replay``."""

    subscriber: SubscriberName
    from_offset: int = Field(ge=1, description="deliver again from this offset (events still retained)")


class Replayed(BaseModel):
    """Where a subscriber now stands."""

    subscriber: str
    acked_offset: int
    first_offset: int | None = Field(description="oldest event still retained")


class ForgetParams(Params):
    """Parameters of ``eventbus.forget``."""

    subscriber: SubscriberName


class RetentionResult(BaseModel):
    """What a retention pass deleted."""

    events: int
    dead_letters: int
    cut: int
