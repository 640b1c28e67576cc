"""Entry point of refactorbot-slice-example: the ``example`` slice."""

from __future__ import annotations

import time
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from refactorbot import AtomicSlice, RefactorbotError, SliceConfig, hookimpl, operation

#: The plugin API versions this plugin supports.
REFACTORBOT_API = 1


class ExampleConfig(SliceConfig):
    """``[slices.example]`` in ``refactorbot.toml`` (or ``RB_EXAMPLE_<FIELD>``)."""

    max_items: int = Field(10_000, ge=1, description="items kept at most")


class ExampleAddParams(BaseModel):
    """Parameters of ``example.add``."""

    model_config = ConfigDict(extra="forbid")

    text: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)] = Field(
        description="what to store (1-1000 characters)"
    )


class ExampleItem(BaseModel):
    """One stored item."""

    id: int
    text: str
    created_at: float


class ExampleItems(BaseModel):
    """Every stored item, oldest first."""

    items: list[ExampleItem]


class ExampleSlice(AtomicSlice):
    """Store short texts and list them back."""

    slice_id = "example"
    Config = ExampleConfig
    config: ExampleConfig

    @operation
    async def add(self, params: ExampleAddParams) -> ExampleItem:
        """Store a text and return it with its id."""
        assert self.db is not None  # opened by initialize()
        held = await self.db.scalar("SELECT count(*) FROM items")
        if held >= self.config.max_items:
            raise RefactorbotError(f"item limit reached: {held} of max_items = {self.config.max_items}")
        now = time.time()
        item_id = await self.db.execute("INSERT INTO items (text, created_at) VALUES (?, ?)", (params.text, now))
        return ExampleItem(id=item_id, text=params.text, created_at=now)

    @operation(name="list")
    async def list_items(self) -> ExampleItems:
        """Return every stored item, oldest first."""
        assert self.db is not None
        rows = await self.db.fetchall("SELECT id, text, created_at FROM items ORDER BY id")
        return ExampleItems(items=[ExampleItem(**dict(r)) for r in rows])


@hookimpl
def register_slices(register: Any) -> None:
    """Register the slice."""
    register(ExampleSlice)
