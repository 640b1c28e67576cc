"""The shared table helper's CSV: columns, order, types, and spreadsheet formulas defused."""

from __future__ import annotations

import csv
import io

import pandas as pd
from refactorbot_dashboard.tables import file_name, to_csv


def parse(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_rows_of_dicts_keep_every_column_in_first_seen_order() -> None:
    rows = [{"a": 1, "b": "x"}, {"b": "y, with comma", "c": None, "a": 2.5}]
    assert parse(to_csv(rows)) == [["a", "b", "c"], ["1", "x", ""], ["2.5", "y, with comma", ""]]
    assert parse(to_csv(rows, ["c", "a"])) == [["c", "a"], ["", "1"], ["", "2.5"]]
    assert parse(to_csv([])) == [[]]


def test_formulas_are_defused_and_quotes_and_newlines_survive() -> None:
    rows = [
        {"text": '=HYPERLINK("http://x")'},
        {"text": "+1"},
        {"text": "-2"},
        {"text": "@SUM(A1)"},
        {"text": "\tTAB"},
        {"text": 'say "hi"\nnext line'},
        {"text": -3},
        {"text": True},
    ]
    assert [r[0] for r in parse(to_csv(rows))[1:]] == [
        '\'=HYPERLINK("http://x")',
        "'+1",
        "'-2",
        "'@SUM(A1)",
        "'\tTAB",
        'say "hi"\nnext line',
        "-3",
        "True",
    ]


def test_dataframes_include_a_named_index() -> None:
    frame = pd.DataFrame({"count": [3, 4]}, index=pd.Index(["x", "y"], name="slice"))
    assert parse(to_csv(frame)) == [["slice", "count"], ["x", "3"], ["y", "4"]]
    plain = pd.DataFrame({"a": [1], "b": ["=1+1"]})
    assert parse(to_csv(plain)) == [["a", "b"], ["1", "'=1+1"]]


def test_file_names_are_safe() -> None:
    assert file_name("session.messages.ab12") == "session-messages-ab12.csv"
    assert file_name("../../etc/passwd") == "etc-passwd.csv"
    assert file_name("...") == "table.csv"
