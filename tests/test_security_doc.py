"""Every defence in docs/security.md names tests, and every test it names exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "security.md"
#: The short prefixes the page defines for long test folders.
PREFIXES = {
    "exec/": "plugins/refactorbot-tools-exec/tests/",
    "dash/": "plugins/refactorbot-dashboard/tests/",
    "core/": "refactorbot-core/tests/",
    "api/": "plugins/refactorbot-api/tests/",
}
REFERENCE = re.compile(r"`([\w./-]+\.py)::(\w+)(?:\[[^\]]*\])?`")


def _path(ref: str) -> Path:
    for short, long in PREFIXES.items():
        if ref.startswith(short):
            return ROOT / (long + ref.removeprefix(short))
    return ROOT / ref


def _table_rows() -> list[str]:
    rows = [line for line in DOC.read_text().splitlines() if line.startswith("| ")]
    return [row for row in rows if not row.startswith("| threat")]


def test_every_threat_names_a_test() -> None:
    rows = _table_rows()
    assert len(rows) > 40
    missing = [row.split("|")[1].strip() for row in rows if not REFERENCE.search(row.split("|")[-2])]
    assert not missing, f"threats without a test: {missing}"


def test_every_named_test_exists() -> None:
    refs = REFERENCE.findall(DOC.read_text())
    assert refs
    absent = []
    for file, name in refs:
        path = _path(file)
        if not path.is_file() or not re.search(rf"^\s*(async\s+)?def {name}\(", path.read_text(), re.M):
            absent.append(f"{file}::{name}")
    assert not absent, f"docs/security.md names tests that do not exist: {absent}"
