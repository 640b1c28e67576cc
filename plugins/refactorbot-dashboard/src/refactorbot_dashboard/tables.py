"""Table views with CSV export: every table of the dashboard and of the slices' pages is drawn by ``table``.

``table(rows, key=...)`` draws ``st.dataframe`` and, under it, an "Export CSV" ``st.download_button``
with exactly the rows shown (all columns, in the order shown). Cells a spreadsheet would read as a
formula (text starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return) are written
with a leading ``'`` so opening the file cannot run one; numbers are written as numbers.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

#: First characters that make Excel, LibreOffice and Google Sheets evaluate a cell as a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """Return ``value`` as a CSV cell: ``None`` empty, lists and dicts as text, formulas defused."""
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def _records(rows: Any) -> tuple[list[str], list[list[Any]]]:
    """Return (columns, cell rows) of a list of dicts or a pandas DataFrame."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # a DataFrame: its index is part of the view
        frame = rows.reset_index() if getattr(rows.index, "name", None) or rows.index.nlevels > 1 else rows
        return [str(c) for c in frame.columns], [list(r) for r in frame.itertuples(index=False, name=None)]
    items = list(rows)
    columns: list[str] = []
    for item in items:
        for column in item:
            if column not in columns:
                columns.append(column)
    return columns, [[item.get(c) for c in columns] for item in items]


def to_csv(rows: Iterable[Mapping[str, Any]] | Any, columns: Sequence[str] | None = None) -> str:
    """Return ``rows`` (dicts, or a DataFrame) as CSV text with a header row.

    ``columns`` picks and orders the columns (default: every column, in first-seen order).
    """
    found, cells = _records(rows)
    order = list(columns) if columns else found
    index = {c: i for i, c in enumerate(found)}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(order)
    for row in cells:
        writer.writerow([_cell(row[index[c]]) if c in index else "" for c in order])
    return out.getvalue()


def file_name(key: str) -> str:
    """Return the download's file name for table ``key`` (``sessions.list`` -> ``sessions-list.csv``)."""
    return (re.sub(r"[^A-Za-z0-9_-]+", "-", key).strip("-") or "table") + ".csv"


def table(rows: Any, *, key: str, column_order: Sequence[str] | None = None, **dataframe: Any) -> Any:
    """Draw ``rows`` with ``st.dataframe`` and an "Export CSV" button for them; return the dataframe element.

    ``key`` names the table (unique on its page; it is also the CSV's file name). Other keyword
    arguments go to ``st.dataframe`` (``column_config``, ``height``...); ``hide_index`` and
    ``width="stretch"`` are the defaults.
    """
    import streamlit as st

    dataframe.setdefault("hide_index", True)
    dataframe.setdefault("width", "stretch")
    if column_order is not None:
        dataframe["column_order"] = list(column_order)
    shown = st.dataframe(rows, **dataframe)
    st.download_button(
        "Export CSV",
        to_csv(rows, column_order),
        file_name=file_name(key),
        mime="text/csv",
        key=f"csv.{key}",
        on_click="ignore",
        icon=":material/download:",
    )
    return shown
