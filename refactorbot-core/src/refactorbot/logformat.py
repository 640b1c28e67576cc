"""``[core] log_format``: console log lines as text, or as one JSON object a line.

A JSON line carries ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, ``slice_id`` when
the record names one, ``exception`` (the traceback) when there is one, and ``trace_id`` /
``span_id`` when the record was logged inside a span (tracing on, see ``refactorbot.tracing``).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from refactorbot import tracing


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object on one line."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as JSON."""
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        slice_id = getattr(record, "slice_id", None)
        if slice_id is None and record.name.startswith("refactorbot.slice."):
            slice_id = record.name.split(".")[2]
        if slice_id is not None:
            line["slice_id"] = slice_id
        ids = tracing.current_ids()
        if ids is not None:
            line["trace_id"], line["span_id"] = ids
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def console_handlers() -> list[logging.Handler]:
    """Return the root logger's console handlers (plain ``StreamHandler``s, as ``logging.basicConfig`` adds)."""
    return [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]


def use_format(log_format: str) -> list[tuple[logging.Handler, logging.Formatter | None]]:
    """Give the console handlers the ``json`` formatter (``text`` leaves them); return what to restore."""
    if log_format != "json":
        return []
    saved = [(h, h.formatter) for h in console_handlers()]
    for handler, _ in saved:
        handler.setFormatter(JsonFormatter())
    return saved


def restore(saved: list[tuple[logging.Handler, logging.Formatter | None]]) -> None:
    """Put back the formatters ``use_format`` replaced."""
    for handler, formatter in saved:
        handler.setFormatter(formatter)
