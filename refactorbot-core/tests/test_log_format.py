"""``[core] log_format = "json"``: the console handlers write one JSON object a line while the host runs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from refactorbot import logformat
from refactorbot.testing import build_host


@pytest.fixture
def console() -> Iterator[tuple[io.StringIO, logging.StreamHandler[io.StringIO]]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    plain = logging.Formatter("%(levelname)s %(message)s")
    handler.setFormatter(plain)
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    try:
        yield stream, handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.mark.asyncio
async def test_json_lines_while_the_host_runs_and_text_after(
    tmp_path: Path, console: tuple[io.StringIO, logging.StreamHandler[io.StringIO]]
) -> None:
    stream, handler = console
    before = handler.formatter
    async with build_host(tmp_path / "home", [], config={"core": {"log_format": "json", "health_interval": 3600}}):
        assert isinstance(handler.formatter, logformat.JsonFormatter)
        logging.getLogger("refactorbot.slice.memory").warning("disk is %d%% full", 91)
        logging.getLogger("refactorbot.test").info("tagged", extra={"slice_id": "agent"})
        try:
            raise ValueError("bad row")
        except ValueError:
            logging.getLogger("refactorbot.test").exception("could not save: ünïcode")
    assert handler.formatter is before  # restored when the host stopped
    logging.getLogger("refactorbot.test").info("plain again")

    lines = stream.getvalue().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    by_message = {r["message"]: r for r in records}
    memory = by_message["disk is 91% full"]
    assert (memory["level"], memory["logger"], memory["slice_id"]) == ("WARNING", "refactorbot.slice.memory", "memory")
    assert memory["ts"].endswith("+00:00") and "trace_id" not in memory
    assert by_message["tagged"]["slice_id"] == "agent"
    failed = by_message["could not save: ünïcode"]
    assert "slice_id" not in failed
    assert failed["exception"].startswith("Traceback") and failed["exception"].endswith("ValueError: bad row")
    assert lines[-1] == "INFO plain again"


def test_text_leaves_the_handlers_alone(console: tuple[io.StringIO, logging.StreamHandler[io.StringIO]]) -> None:
    _, handler = console
    before = handler.formatter
    assert logformat.use_format("text") == []
    assert handler.formatter is before
    assert handler in logformat.console_handlers()
