"""Markdown to WhatsApp's own text markers, and back to plain text.

WhatsApp formats plain text by markers: ``*bold*``, ``_italic_``, ``~strike~``, ```` ```mono``` ````
(a block) and ```` `code` ```` (inline). There is no escape character, no headings and no links.
The agent's Markdown is rendered to those markers where the meaning is unambiguous:

- ``**bold**`` / ``__bold__`` → ``*bold*``; ``*italic*`` / ``_italic_`` → ``_italic_``;
  ``~~strike~~`` → ``~strike~``; inline code is kept;
- a heading becomes a bold line; ``[text](url)`` becomes ``text (url)`` (WhatsApp links bare URLs);
- a fenced code block keeps its fences without the language (WhatsApp would show it as text),
  its content verbatim;
- everything else (lists, quotes ``>``) is already how WhatsApp shows it.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")

# Placeholders that cannot occur in chat text, so one marker is not read again by the next rule.
_BOLD = "\x00B"
_ITALIC = "\x00I"
_STRIKE = "\x00S"
_CODE = "\x00C"

_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_RENDER_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"!\[([^\]\n]*)\]\(([^)\s]+)\)"), r"\1 (\2)"),  # images
    (re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)\)"), r"\1 (\2)"),  # links
    (re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)[ \t#]*$", re.MULTILINE), _BOLD + r"\1" + _BOLD),  # headings
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), _BOLD + r"\2" + _BOLD),  # bold
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), _ITALIC + r"\1" + _ITALIC),  # *italic*
    (re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"), _ITALIC + r"\1" + _ITALIC),  # _italic_
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"), _STRIKE + r"\1" + _STRIKE),  # strike-through
)
_PLAIN_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), r"\1"),
    (re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"), r"\1"),
    (re.compile(r"(?<![\w~])~(?=\S)([^~\n]+?)(?<=\S)~(?![\w~])"), r"\1"),
    (re.compile(r"`([^`\n]+)`"), r"\1"),
)


def _blocks(text: str) -> list[tuple[str, str]]:
    """Return each line of ``text`` (breaks kept) with its kind: ``prose``, ``code`` or ``fence`` (a delimiter)."""
    out: list[tuple[str, str]] = []
    fence: str | None = None
    for line in text.splitlines(keepends=True):
        match = _FENCE.match(line.rstrip("\r\n"))
        if fence is None:
            if match is not None and not (match.group(1)[0] == "`" and "`" in match.group(2)):
                fence = match.group(1)
                out.append((line, "fence"))
            else:
                out.append((line, "prose"))
        elif (
            match is not None
            and match.group(1)[0] == fence[0]
            and len(match.group(1)) >= len(fence)
            and not match.group(2).strip()
        ):
            fence = None
            out.append((line, "fence"))
        else:
            out.append((line, "code"))
    return out


def render(markdown: str) -> str:
    """Return the agent's Markdown with WhatsApp's markers (see the module's docstring)."""
    out: list[str] = []
    prose: list[str] = []

    def flush() -> None:
        if not prose:
            return
        chunk = "".join(prose)
        prose.clear()
        spans: list[str] = []

        def keep(match: re.Match[str]) -> str:
            spans.append(match.group(0))
            return f"{_CODE}{len(spans) - 1}{_CODE}"

        chunk = _CODE_SPAN.sub(keep, chunk)
        for pattern, replacement in _RENDER_RULES:
            chunk = pattern.sub(replacement, chunk)
        chunk = chunk.replace(_BOLD, "*").replace(_ITALIC, "_").replace(_STRIKE, "~")
        chunk = re.sub(f"{_CODE}([0-9]+){_CODE}", lambda m: spans[int(m.group(1))], chunk)
        out.append(chunk)

    for line, kind in _blocks(markdown):
        if kind == "prose":
            prose.append(line)
            continue
        flush()
        if kind == "fence":
            out.append("```" + line[len(line.rstrip("\r\n")) :])  # the fence, without its language
        else:
            out.append(line)
    flush()
    return "".join(out)


def plain(text: str) -> str:
    """Return WhatsApp-formatted text without its markers: fences dropped, code kept verbatim."""
    out: list[str] = []
    for line, kind in _blocks(text):
        if kind == "code":
            out.append(line)
        elif kind == "prose":
            for pattern, replacement in _PLAIN_RULES:
                line = pattern.sub(replacement, line)
            out.append(line)
    return "".join(out)
