"""What a plugin registers to add pages to the Streamlit dashboard."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

PageKind = Literal["dashboard", "analytics", "config", "other"]


@dataclasses.dataclass(frozen=True)
class DashboardPage:
    """One dashboard page contributed by a plugin.

    ``render(api)`` draws the page with Streamlit (imported inside it); ``api`` is a client of
    the running server with ``get(path)`` / ``post(path, json)``. Pages are grouped by
    ``group`` (usually the slice id) and served at ``/<group>-<kind>`` unless ``url_path`` is set.
    """

    group: str
    title: str
    render: Callable[[Any], None]
    kind: PageKind = "dashboard"
    icon: str | None = None
    url_path: str | None = None

    @property
    def key(self) -> str:
        """Return the unique name of the page: ``<group>/<kind or url_path>``."""
        return f"{self.group}/{self.url_path or self.kind}"

    @property
    def path(self) -> str:
        """Return the URL path segment, namespaced by group."""
        return self.url_path or f"{self.group}-{self.kind}"
