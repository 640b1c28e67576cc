"""Text conventions of model answers: fallback tool calls, ``<think>`` blocks and ``REMEMBER:`` lines."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

_THINK = re.compile(r"<think>.*?(?:</think>|\Z)", re.DOTALL | re.IGNORECASE)
_TOOL_LINE = re.compile(r"^\s*TOOL:\s*(?P<name>[A-Za-z0-9_.\-]+)\s*\|\s*PARAMS:\s*(?P<params>\S.*?)\s*$", re.MULTILINE)
_DIRECTIVE_LINE = re.compile(r"^\s*(?:TOOL|REMEMBER):.*(?:\n|\Z)", re.MULTILINE)
_REMEMBER_LINE = re.compile(r"^\s*REMEMBER:\s*(?P<fact>.+?)\s*$", re.MULTILINE)
DIRECTIVES = ("TOOL:", "REMEMBER:")


@dataclass
class TextToolCall:
    """A tool call written as ``TOOL: name | PARAMS: {...}`` by a model without native tool calling."""

    name: str
    arguments: dict[str, Any]
    id: str = field(default_factory=lambda: "text_" + uuid.uuid4().hex[:12])
    error: str | None = None


def strip_think(text: str) -> str:
    """Return ``text`` without ``<think>...</think>`` blocks (an unclosed one runs to the end)."""
    return _THINK.sub("", text)


def parse_tool_lines(text: str) -> list[TextToolCall]:
    """Return the ``TOOL: name | PARAMS: {json}`` calls in ``text``; bad JSON becomes a call with an error."""
    calls = []
    for match in _TOOL_LINE.finditer(strip_think(text)):
        try:
            arguments = json.loads(match["params"])
        except json.JSONDecodeError as exc:
            calls.append(TextToolCall(match["name"], {}, error=f"PARAMS is not valid JSON: {exc.msg}"))
            continue
        if not isinstance(arguments, dict):
            calls.append(TextToolCall(match["name"], {}, error="PARAMS must be a JSON object"))
            continue
        calls.append(TextToolCall(match["name"], arguments))
    return calls


def final_answer(text: str) -> tuple[str, list[str]]:
    """Return the user-facing answer and the facts the model marked with ``REMEMBER:``."""
    text = strip_think(text)
    facts = [m["fact"] for m in _REMEMBER_LINE.finditer(text)]
    answer = _DIRECTIVE_LINE.sub("", text)
    return answer.strip(), list(dict.fromkeys(facts))


class StreamFilter:
    """Filter streamed text: drop ``<think>`` blocks and directive lines without waiting for the end."""

    _OPEN, _CLOSE = "<think>", "</think>"

    def __init__(self) -> None:
        self._buffer = ""
        self._thinking = False
        self._line = ""
        self._line_state = "undecided"  # undecided | text | directive

    def feed(self, delta: str) -> str:
        """Take a streamed delta; return the text that can be shown now."""
        self._buffer += delta
        out = []
        while self._buffer:
            if self._thinking:
                end = self._buffer.lower().find(self._CLOSE)
                if end < 0:
                    self._buffer = self._buffer[-(len(self._CLOSE) - 1) :]
                    break
                self._buffer = self._buffer[end + len(self._CLOSE) :]
                self._thinking = False
                continue
            start = self._buffer.lower().find(self._OPEN)
            if start >= 0:
                out.append(self._lines(self._buffer[:start]))
                self._buffer = self._buffer[start + len(self._OPEN) :]
                self._thinking = True
                continue
            keep = _partial_suffix(self._buffer.lower(), self._OPEN)
            ready, self._buffer = self._buffer[: len(self._buffer) - keep], self._buffer[len(self._buffer) - keep :]
            out.append(self._lines(ready))
            break
        return "".join(out)

    def finish(self) -> str:
        """Return whatever is still held back once the stream ended."""
        tail = "" if self._thinking else self._lines(self._buffer)
        self._buffer = ""
        if self._line_state != "directive":
            tail += self._line
        self._line, self._line_state = "", "undecided"
        return tail

    def _lines(self, text: str) -> str:
        out = []
        for piece in re.split(r"(\n)", text):
            if piece == "\n":
                if self._line_state != "directive":
                    out.append(self._line + "\n")
                self._line, self._line_state = "", "undecided"
            elif piece:
                if self._line_state == "text":
                    out.append(piece)
                    continue
                self._line += piece
                if self._line_state == "directive":
                    continue
                head = self._line.lstrip()
                if any(head.startswith(d) for d in DIRECTIVES):
                    self._line_state = "directive"
                elif not any(d.startswith(head) for d in DIRECTIVES):
                    self._line_state = "text"
                    out.append(self._line)
                    self._line = ""
        return "".join(out)


def _partial_suffix(text: str, tag: str) -> int:
    """Return the length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0
