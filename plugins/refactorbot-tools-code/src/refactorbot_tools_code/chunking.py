"""Cutting files into search chunks: Python along its definitions, everything else in line windows.

A Python file gives one chunk per top-level function, one per method (symbol ``Class.method``),
one for each class's own lines (its header, docstring and attributes, up to the first method) and
line windows for the module-level code between definitions; decorators belong to what they
decorate. A definition longer than ``max_lines`` is cut into windows that keep its symbol. A
file ``ast`` cannot parse, and every other text file, is cut into windows of ``window`` lines
that overlap by ``overlap`` lines.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib

WINDOW = 60
OVERLAP = 10
MAX_LINES = 200


@dataclasses.dataclass(frozen=True)
class Chunk:
    """A piece of a file: 1-based inclusive line range, the symbol it defines (or ''), its text."""

    start: int
    end: int
    symbol: str
    kind: str  # function, class, method, module, text
    text: str

    @property
    def digest(self) -> str:
        """Hash of what is indexed (symbol, kind and text), the same wherever the chunk moves."""
        text = f"{self.kind}\0{self.symbol}\0{self.text}".encode(errors="surrogatepass")
        return hashlib.sha1(text, usedforsecurity=False).hexdigest()  # a change detector, not a signature


def chunk_file(rel: str, text: str) -> list[Chunk]:
    """Return the chunks of the file ``rel`` holding ``text``."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        return []
    if rel.endswith((".py", ".pyi")):
        chunks = _python_chunks(text, lines)
        if chunks is not None:
            return chunks
    return _windows(lines, 1, len(lines), "", "text")


def _windows(lines: list[str], first: int, last: int, symbol: str, kind: str) -> list[Chunk]:
    """Cut lines ``first``..``last`` (1-based, inclusive) into overlapping windows."""
    out: list[Chunk] = []
    start = first
    while start <= last:
        end = min(last, start + WINDOW - 1)
        body = "\n".join(lines[start - 1 : end])
        if body.strip():
            out.append(Chunk(start, end, symbol, kind, body))
        if end == last:
            break
        start = end - OVERLAP + 1
    return out


def _python_chunks(text: str, lines: list[str]) -> list[Chunk] | None:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    chunks: list[Chunk] = []
    covered_until = 0  # last line already in a definition chunk
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        start = _first_line(node)
        end = node.end_lineno or node.lineno
        if start > covered_until + 1:
            chunks += _windows(lines, covered_until + 1, start - 1, "", "module")
        if isinstance(node, ast.ClassDef):
            chunks += _class_chunks(node, lines, start, end)
        else:
            chunks += _definition(lines, start, end, node.name, "function")
        covered_until = end
    if covered_until < len(lines):
        chunks += _windows(lines, covered_until + 1, len(lines), "", "module")
    return chunks


def _class_chunks(node: ast.ClassDef, lines: list[str], start: int, end: int) -> list[Chunk]:
    methods = [n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    if not methods:
        return _definition(lines, start, end, node.name, "class")
    chunks: list[Chunk] = []
    head_end = _first_line(methods[0]) - 1
    chunks += _definition(lines, start, head_end, node.name, "class")
    previous_end = head_end
    for method in methods:
        m_start, m_end = _first_line(method), method.end_lineno or method.lineno
        if m_start > previous_end + 1:  # class attributes between methods
            chunks += _windows(lines, previous_end + 1, m_start - 1, node.name, "class")
        chunks += _definition(lines, m_start, m_end, f"{node.name}.{method.name}", "method")
        previous_end = m_end
    if previous_end < end:
        chunks += _windows(lines, previous_end + 1, end, node.name, "class")
    return chunks


def _definition(lines: list[str], start: int, end: int, symbol: str, kind: str) -> list[Chunk]:
    if end - start + 1 > MAX_LINES:
        return _windows(lines, start, end, symbol, kind)
    body = "\n".join(lines[start - 1 : end])
    return [Chunk(start, end, symbol, kind, body)] if body.strip() else []


def _first_line(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> int:
    return min([node.lineno, *(d.lineno for d in node.decorator_list)])
