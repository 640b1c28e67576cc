"""Unified diffs: parsing (plain and git flavours) and applying hunks to text in memory.

The parser reads what ``diff -u`` and ``git diff`` write, and what models write by hand: hunk
header counts that do not add up are tolerated (the hunk's lines are taken as written), blank
context lines that lost their leading space are context lines. Every hunk is then matched
against the file's real lines before anything is written: at the line the header names, else
at the one nearest position within ``max_offset`` lines (reported as an offset), else at the
only place in the file it matches. A hunk that matches nowhere, or at several places equally
near, is refused — context lines are never dropped to make a hunk fit, so a patch never
lands somewhere it was not meant to.
"""

from __future__ import annotations

import dataclasses
import re

from refactorbot import ToolError

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_GIT_HEADER = re.compile(r"^diff --git (\"(?:[^\"\\]|\\.)*\"|\S+) (\"(?:[^\"\\]|\\.)*\"|\S+)$")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"'}
NO_NEWLINE = "\\ No newline at end of file"


@dataclasses.dataclass
class Hunk:
    """One ``@@`` block: its stated position and its lines (``' '``, ``'-'``, ``'+'`` plus text)."""

    old_start: int
    old_count: int | None
    new_start: int
    new_count: int | None
    line_no: int  # where it starts in the patch, for error messages
    lines: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    #: The last old / new line has no newline at the end ("\ No newline at end of file").
    old_no_eol: bool = False
    new_no_eol: bool = False
    #: How many of the last lines were empty in the patch (not even a space): maybe not part of the hunk.
    blank_tail: int = 0

    @property
    def old_lines(self) -> list[str]:
        """The lines the hunk expects in the file (context and removed)."""
        return [text for kind, text in self.lines if kind != "+"]

    @property
    def new_lines(self) -> list[str]:
        """The lines the hunk leaves (context and added)."""
        return [text for kind, text in self.lines if kind != "-"]


@dataclasses.dataclass
class FilePatch:
    """The changes to one file: ``old`` / ``new`` are None for a created / deleted file."""

    old: str | None
    new: str | None
    line_no: int
    hunks: list[Hunk] = dataclasses.field(default_factory=list)
    new_mode: int | None = None  # 0o755 or 0o644 when the patch sets it
    binary: bool = False

    @property
    def shown(self) -> str:
        """The path to name in messages."""
        return self.new or self.old or "?"


def parse_patch(text: str) -> list[FilePatch]:
    """Parse a unified diff (one or many files); raise ``ToolError`` naming the patch line at fault."""
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    files: list[FilePatch] = []
    current: FilePatch | None = None
    git_paths: tuple[str | None, str | None] | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        number = index + 1
        git = _GIT_HEADER.match(line)
        if git:
            old, new = _strip_prefix(_unquote(git.group(1)), _unquote(git.group(2)))
            current = FilePatch(old=old, new=new, line_no=number)
            files.append(current)
            git_paths = (old, new)
            index += 1
            continue
        if line.startswith("--- ") and index + 1 < len(lines) and lines[index + 1].startswith("+++ "):
            old_raw, new_raw = _header_path(line[4:]), _header_path(lines[index + 1][4:])
            old, new = _strip_prefix(old_raw, new_raw)
            if current is not None and git_paths is not None and not current.hunks:
                # the ---/+++ lines of a git section: they say which side is /dev/null
                current.old, current.new = old, new
            else:
                current = FilePatch(old=old, new=new, line_no=number)
                files.append(current)
            git_paths = None
            index += 2
            continue
        if current is not None and git_paths is not None and not current.hunks and _git_extended(current, line, number):
            index += 1
            continue
        hunk = _HUNK.match(line)
        if hunk:
            if current is None:
                raise ToolError(f"patch line {number}: a hunk ('@@') before any '--- a/path' / '+++ b/path' header")
            index = _read_hunk(current, hunk, lines, index)
            continue
        if current is not None and current.hunks and line.strip() == "":
            index += 1  # blank lines between files
            continue
        if current is not None and (line.startswith(("+", "-")) and not line.startswith(("+++", "---"))):
            raise ToolError(f"patch line {number}: a changed line outside any hunk (missing '@@ -l,n +l,n @@' line?)")
        index += 1  # commentary before, between or after files is ignored, as patch(1) does
    files = [f for f in files if f.hunks or f.old is None or f.new is None or f.binary or f.old != f.new or f.new_mode]
    if not files:
        raise ToolError(
            "no file changes found in the patch (expected a unified diff: '--- a/path', '+++ b/path', '@@' hunks)"
        )
    return files


def _git_extended(current: FilePatch, line: str, number: int) -> bool:
    """Read one git extended header line into ``current``; return whether it was one."""
    if line.startswith(("new file mode 120000", "new mode 120000", "new file mode 160000", "new mode 160000")):
        raise ToolError(f"patch line {number}: symlinks and submodules are not supported ('{current.shown}')")
    if line.startswith("new file mode "):
        current.old = None
        current.new_mode = _mode(line[len("new file mode ") :])
    elif line.startswith("deleted file mode "):
        current.new = None
    elif line.startswith("new mode "):
        current.new_mode = _mode(line[len("new mode ") :])
    elif line.startswith("rename from "):
        current.old = _unquote(line[len("rename from ") :])
    elif line.startswith("rename to "):
        current.new = _unquote(line[len("rename to ") :])
    elif line.startswith(("copy from ", "copy to ")):
        raise ToolError(f"patch line {number}: copies are not supported; create the new file with its full content")
    elif line.startswith(("Binary files ", "GIT binary patch")):
        raise ToolError(f"patch line {number}: binary patches are not supported ('{current.shown}')")
    elif not line.startswith(("old mode ", "index ", "similarity index ", "dissimilarity index ")):
        return False
    return True


def _mode(text: str) -> int:
    return 0o755 if text.strip().endswith("755") else 0o644


def _read_hunk(current: FilePatch, match: re.Match[str], lines: list[str], index: int) -> int:
    """Read the hunk starting at ``lines[index]``; return the index after it."""
    number = index + 1
    old_count = int(match.group(2)) if match.group(2) is not None else 1
    new_count = int(match.group(4)) if match.group(4) is not None else 1
    hunk = Hunk(int(match.group(1)), old_count, int(match.group(3)), new_count, number)
    index += 1
    while index < len(lines):
        line = lines[index]
        if line.startswith("@@") or line.startswith("diff --git "):
            break
        if line.startswith("--- ") and index + 1 < len(lines) and lines[index + 1].startswith("+++ "):
            break
        if line.startswith("\\"):
            if not hunk.lines:
                raise ToolError(f"patch line {index + 1}: '\\' marker before any line of the hunk")
            kind = hunk.lines[-1][0]
            if kind in " -":
                hunk.old_no_eol = True
            if kind in " +":
                hunk.new_no_eol = True
        elif line == "":
            hunk.lines.append((" ", ""))  # a blank context line whose space was stripped
            hunk.blank_tail += 1
        elif line[0] in " -+":
            hunk.lines.append((line[0], line[1:]))
            hunk.blank_tail = 0
        else:
            break  # commentary after the hunk
        index += 1
    # trailing blank lines beyond the stated counts belong to the text around the patch
    while hunk.blank_tail and _counts(hunk) > (old_count, new_count):
        hunk.lines.pop()
        hunk.blank_tail -= 1
    if not hunk.lines:
        raise ToolError(f"patch line {number}: empty hunk in '{current.shown}'")
    current.hunks.append(hunk)
    return index


def _counts(hunk: Hunk) -> tuple[int, int]:
    return len(hunk.old_lines), len(hunk.new_lines)


def _header_path(raw: str) -> str | None:
    path = raw.split("\t", 1)[0].rstrip()
    path = _unquote(path)
    return None if path == "/dev/null" else path


def _unquote(path: str) -> str:
    """Undo git's C-style quoting of unusual names (``"a/na\\303\\257ve.txt"``)."""
    if not (len(path) >= 2 and path.startswith('"') and path.endswith('"')):
        return path
    body = path[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        char = body[i]
        if char == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in "01234567" and i + 3 < len(body) + 1 and re.match(r"[0-7]{3}", body[i + 1 : i + 4]):
                out.append(int(body[i + 1 : i + 4], 8))
                i += 4
                continue
            out += _ESCAPES.get(nxt, nxt).encode()
            i += 2
            continue
        out += char.encode()
        i += 1
    return out.decode("utf-8", errors="surrogateescape")


def _strip_prefix(old: str | None, new: str | None) -> tuple[str | None, str | None]:
    """Drop git's ``a/`` and ``b/`` prefixes when the patch uses them (``-p1``), else keep paths."""
    prefixed = all(p is None or p.startswith(pre) for p, pre in ((old, "a/"), (new, "b/"))) and (old or new)
    if prefixed:
        return (old[2:] if old else None), (new[2:] if new else None)
    return old, new


# -- applying -------------------------------------------------------------------------------


@dataclasses.dataclass
class Line:
    """A line of a text file: its text and its ending (``\\n``, ``\\r\\n`` or ``''`` for the last)."""

    text: str
    eol: str


def split_lines(text: str) -> list[Line]:
    """Split ``text`` on ``\\n`` (as diff does), keeping each line's ending (``\\r\\n`` included)."""
    parts = text.split("\n")
    last = parts.pop()
    out = [Line(raw[:-1], "\r\n") if raw.endswith("\r") else Line(raw, "\n") for raw in parts]
    if last:
        out.append(Line(last, ""))
    return out


def join_lines(lines: list[Line]) -> str:
    """Join lines back into text."""
    return "".join(line.text + line.eol for line in lines)


def dominant_eol(lines: list[Line]) -> str:
    """Return the file's usual line ending (``\\n`` for a new or one-line file)."""
    crlf = sum(1 for line in lines if line.eol == "\r\n")
    return "\r\n" if crlf * 2 > len(lines) else "\n"


def apply_hunks(rel: str, original: str, hunks: list[Hunk], max_offset: int) -> tuple[str, list[str]]:
    """Apply ``hunks`` to ``original``; return the new text and notes (offsets used).

    Raise ``ToolError`` when a hunk does not match, naming the file, the hunk and what differs.
    """
    lines = split_lines(original)
    eol = dominant_eol(lines)
    notes: list[str] = []
    result: list[Line] = []
    cursor = 0  # lines before it are already copied to result
    drift = 0  # how far earlier hunks landed from where their headers said
    for number, hunk in enumerate(hunks, start=1):
        old = hunk.old_lines
        expected = (hunk.old_start - 1 if old else hunk.old_start) + drift
        if not old and hunk.old_start == 0:
            expected = 0
        try:
            position, loose = _locate(rel, lines, old, expected, cursor, max_offset, number, hunk)
        except ToolError:
            if not hunk.blank_tail:
                raise
            # empty lines after the hunk may be spacing around the patch rather than blank context
            del hunk.lines[-hunk.blank_tail :]
            hunk.blank_tail = 0
            old = hunk.old_lines
            position, loose = _locate(rel, lines, old, expected, cursor, max_offset, number, hunk)
        if position != expected:
            notes.append(f"{rel}: hunk {number} applied at line {position + 1} (offset {position - expected:+d})")
        if loose:
            notes.append(f"{rel}: hunk {number} matched ignoring trailing whitespace")
        drift += position - expected
        result.extend(lines[cursor:position])
        replaced = lines[position : position + len(old)]
        old_iter = iter(replaced)
        for kind, text in hunk.lines:
            if kind == "-":
                next(old_iter)
            elif kind == " ":
                result.append(next(old_iter))  # the file's own line (and ending) stays
            else:
                result.append(Line(text, eol))
        cursor = position + len(old)
        if hunk.new_no_eol and cursor >= len(lines) and hunk.lines[-1][0] == "+":
            result[-1] = Line(result[-1].text, "")
    result.extend(lines[cursor:])
    for index, line in enumerate(result[:-1]):
        if line.eol == "":
            result[index] = Line(line.text, eol)  # a formerly last line that is no longer last
    return join_lines(result), notes


def _locate(
    rel: str, lines: list[Line], old: list[str], expected: int, floor: int, max_offset: int, number: int, hunk: Hunk
) -> tuple[int, bool]:
    """Return where the hunk's old lines are (and whether trailing whitespace was ignored)."""
    if not old:
        if expected < floor or expected > len(lines):
            raise ToolError(
                f"{rel}: hunk {number} (patch line {hunk.line_no}) inserts at line {expected + 1}, "
                f"but the file has {len(lines)} lines"
            )
        return expected, False
    texts = [line.text for line in lines]
    for loose in (False, True):
        want = [t.rstrip() for t in old] if loose else old
        have = [t.rstrip() for t in texts] if loose else texts
        matches = [p for p in range(floor, len(have) - len(want) + 1) if _matches_at(have, want, p)]
        if not matches:
            continue
        if expected in matches:
            return expected, loose
        near = [p for p in matches if abs(p - expected) <= max_offset]
        if near:
            best = min(abs(p - expected) for p in near)
            closest = [p for p in near if abs(p - expected) == best]
            if len(closest) == 1:
                return closest[0], loose
        elif len(matches) == 1:
            return matches[0], loose
        shown = ", ".join(str(p + 1) for p in matches[:5])
        raise ToolError(
            f"{rel}: hunk {number} (patch line {hunk.line_no}) matches at lines {shown}, none clearly the one meant "
            f"(header says line {hunk.old_start}); add context lines to make it unique"
        )
    raise ToolError(_mismatch(rel, texts, old, expected, floor, number, hunk))


def _matches_at(have: list[str], want: list[str], position: int) -> bool:
    if have[position] != want[0]:
        return False
    return have[position : position + len(want)] == want


def _mismatch(rel: str, texts: list[str], old: list[str], expected: int, floor: int, number: int, hunk: Hunk) -> str:
    """Say where the hunk came closest to matching and the first line that differs."""
    best_pos, best_score = max(expected, floor), -1
    for position in range(floor, max(floor, len(texts) - len(old)) + 1):
        score = sum(1 for a, b in zip(texts[position : position + len(old)], old, strict=False) if a == b)
        if score > best_score or (score == best_score and abs(position - expected) < abs(best_pos - expected)):
            best_pos, best_score = position, score
    for offset, want in enumerate(old):
        line_index = best_pos + offset
        have = texts[line_index] if line_index < len(texts) else None
        if have != want:
            found = "end of file" if have is None else repr(_cut(have))
            return (
                f"{rel}: hunk {number} (patch line {hunk.line_no}) does not match the file: at line {line_index + 1} "
                f"the patch expects {_cut(want)!r} but the file has {found}; re-read the file and rebuild the hunk"
            )
    return f"{rel}: hunk {number} (patch line {hunk.line_no}) does not match the file"


def _cut(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
