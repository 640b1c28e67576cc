"""Telegram's HTML dialect: Markdown rendered to it, cut into well-formed parts, and read back as plain text.

Telegram counts a message's length in UTF-16 code units (an emoji outside the Basic Multilingual
Plane counts twice). Parts are measured that way over the whole HTML, tags included: Telegram
counts only the text left after parsing, so a part always fits, with some room to spare when it
holds much markup.
"""

from __future__ import annotations

import bisect
import html as _html
import re

from refactorbot import TextPart

__all__ = ["html_to_plain", "render_html", "split_html", "split_html_parts", "utf16_len"]

#: The tags Telegram's HTML parse mode knows (https://core.telegram.org/bots/api#html-style).
TAGS = frozenset(
    {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "blockquote", "tg-spoiler"}
    | {"span", "tg-emoji"}
)
#: The longest link rendered as a link; a longer URL stays as text (its tag would crowd a part).
MAX_LINK = 200

_TAG = re.compile(r"<(/?)([a-z][a-z0-9-]*)((?:\s[^<>]*)?)>")
_ENTITY = re.compile(r"&(?:#[0-9]{1,7}|#x[0-9a-fA-F]{1,6}|[a-zA-Z]{2,8});")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([^\s`]*)[^`]*$")
_LANGUAGE = re.compile(r"^[A-Za-z0-9_+#.-]{1,32}$")
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)[ \t#]*$")
_BULLET = re.compile(r"^(\s*)[-*+][ \t]+(.*)$")
_QUOTE = re.compile(r"^ {0,3}>[ ]?(.*)$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"\[([^\]\n]+)\]\(((?:https?|tg|mailto):[^)\s]+)\)")
_EMPHASIS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1"), r"<b>\2</b>"),
    (re.compile(r"~~(?=\S)(.+?)(?<=\S)~~"), r"<s>\1</s>"),
    (re.compile(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])"), r"<i>\1</i>"),
    (re.compile(r"(?<![\w_])_(?=\S)([^_]+?)(?<=\S)_(?![\w_])"), r"<i>\1</i>"),
)
_SLOT = re.compile("\x00([0-9]+)\x00")


def utf16_len(text: str) -> int:
    """Return the length of ``text`` as Telegram counts it: UTF-16 code units."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def escape(text: str) -> str:
    """Return ``text`` with ``&``, ``<``, ``>`` and ``"`` written as the entities Telegram knows."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


# -- Markdown to HTML ----------------------------------------------------------------------------


def render_html(markdown: str) -> str:
    """Return the agent's Markdown as Telegram HTML: bold, italic, strike, code, links, quotes, code blocks.

    Every character of text is escaped; a line whose emphasis would not nest is kept unformatted,
    so the result always parses.
    """
    lines = markdown.replace("\x00", "").replace("\r\n", "\n").split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is not None:
            marker, language = fence.group(1), fence.group(2)
            body: list[str] = []
            i += 1
            while i < len(lines) and not _closes(lines[i], marker):
                body.append(lines[i])
                i += 1
            out.append(_code_block("\n".join(body), language))
        elif _QUOTE.match(lines[i]):
            quoted: list[str] = []
            while i < len(lines) and (match := _QUOTE.match(lines[i])) and not _FENCE.match(lines[i]):
                quoted.append(_line(match.group(1)))
                i += 1
            out.append("<blockquote>" + "\n".join(quoted) + "</blockquote>")
            continue
        else:
            out.append(_line(lines[i]))
        i += 1
    return "\n".join(out)


def _closes(line: str, marker: str) -> bool:
    """Return whether ``line`` closes a fence opened with ``marker``."""
    stripped = line.strip()
    indent = len(line) - len(line.lstrip(" "))
    return indent <= 3 and len(stripped) >= len(marker) and set(stripped) == {marker[0]}


def _code_block(code: str, language: str) -> str:
    if not code:
        return ""
    if _LANGUAGE.match(language):
        return f'<pre><code class="language-{language}">{escape(code)}</code></pre>'
    return f"<pre>{escape(code)}</pre>"


def _line(line: str) -> str:
    heading = _HEADING.match(line)
    if heading is not None:
        return f"<b>{_inline(heading.group(1))}</b>" if heading.group(1) else ""
    bullet = _BULLET.match(line)
    if bullet is not None and not re.match(r"^\s*([-*_])(\s*\1){2,}\s*$", line):
        return f"{bullet.group(1)}• {_inline(bullet.group(2))}"
    return _inline(line)


def _inline(text: str) -> str:
    """Return one line of Markdown as HTML: code spans and links kept aside while emphasis is applied."""
    slots: list[str] = []

    def keep(html: str) -> str:
        slots.append(html)
        return f"\x00{len(slots) - 1}\x00"

    def code(match: re.Match[str]) -> str:
        return keep(f"<code>{escape(match.group(2).strip() or match.group(2))}</code>")

    def link(match: re.Match[str]) -> str:
        label, url = match.group(1), match.group(2)
        if len(url) > MAX_LINK:
            return match.group(0)
        return keep(f'<a href="{escape(url)}">') + label + keep("</a>")

    text = _CODE_SPAN.sub(code, text)
    text = _LINK.sub(link, text)
    escaped = escape(text)
    formatted = escaped
    for pattern, replacement in _EMPHASIS:
        formatted = pattern.sub(replacement, formatted)
    if not well_formed(_SLOT.sub(lambda m: slots[int(m.group(1))], formatted)):
        formatted = escaped  # emphasis that crosses a link or another emphasis: keep the line plain
    return _SLOT.sub(lambda m: slots[int(m.group(1))], formatted)


def well_formed(html: str) -> bool:
    """Return whether every tag in ``html`` is known and closed in order."""
    stack: list[str] = []
    for match in _TAG.finditer(html):
        closing, name = match.group(1), match.group(2)
        if name not in TAGS:
            return False
        if not closing:
            stack.append(name)
        elif not stack or stack.pop() != name:
            return False
    return not stack


# -- HTML to plain text --------------------------------------------------------------------------

_ANCHOR = re.compile(r'<a href="([^"]*)">(.*?)</a>', re.DOTALL)


def html_to_plain(html: str) -> str:
    """Return Telegram HTML as plain text: tags dropped, entities decoded, links as ``text (url)``."""

    def anchor(match: re.Match[str]) -> str:
        url, label = _html.unescape(match.group(1)), match.group(2)
        shown = _TAG.sub("", label)
        return label if _html.unescape(shown) == url else f"{label} ({escape(url)})"

    text = _ANCHOR.sub(anchor, html)
    text = _TAG.sub(lambda m: m.group(0) if m.group(2) not in TAGS else "", text)
    return _html.unescape(text)


# -- splitting ----------------------------------------------------------------------------------


class _Scan:
    """Where a cut may fall in an HTML text (not inside a tag or an entity), and which tags are open there."""

    def __init__(self, html: str) -> None:
        self.html = html
        self.units = [0]  # units[i]: UTF-16 length of html[:i]
        total = 0
        for c in html:
            total += 2 if ord(c) > 0xFFFF else 1
            self.units.append(total)
        self.atom_starts: list[int] = []
        self.atom_ends: list[int] = []
        self.events: list[int] = [0]  # positions just after a known tag
        self.stacks: list[tuple[tuple[str, str], ...]] = [()]  # open (name, opening tag) there
        stack: list[tuple[str, str]] = []
        spans: list[tuple[int, int, re.Match[str] | None]] = [
            (m.start(), m.end(), m) for m in _TAG.finditer(html) if m.group(2) in TAGS
        ]
        spans += [(m.start(), m.end(), None) for m in _ENTITY.finditer(html)]
        for start, end, match in sorted(spans, key=lambda s: s[0]):
            self.atom_starts.append(start)
            self.atom_ends.append(end)
            if match is None:
                continue
            if match.group(1):
                if stack and stack[-1][0] == match.group(2):
                    stack.pop()
            else:
                stack.append((match.group(2), match.group(0)))
            self.events.append(end)
            self.stacks.append(tuple(stack))

    def safe(self, position: int) -> bool:
        """Return whether a cut before ``position`` leaves every tag and entity whole."""
        i = bisect.bisect_right(self.atom_starts, position - 1) - 1
        return i < 0 or position >= self.atom_ends[i] or position <= self.atom_starts[i]

    def stack(self, position: int) -> tuple[tuple[str, str], ...]:
        """Return the tags open at ``position``."""
        return self.stacks[bisect.bisect_right(self.events, position) - 1]

    def length(self, start: int, end: int) -> int:
        """Return the UTF-16 length of ``html[start:end]``."""
        return self.units[end] - self.units[start]


def _opener(stack: tuple[tuple[str, str], ...]) -> str:
    return "".join(tag for _, tag in stack)


def _closer(stack: tuple[tuple[str, str], ...]) -> str:
    return "".join(f"</{name}>" for name, _ in reversed(stack))


def split_html_parts(html: str, limit: int) -> list[TextPart]:
    """Split Telegram HTML into parts of at most ``limit`` UTF-16 units, each well formed.

    Cuts fall at the last paragraph break in the second half of a part, else the last line
    break there, else after the last space, else anywhere outside a tag or an entity. Tags open
    at a cut are closed at the end of the part and reopened (with their attributes) at the start
    of the next, so a code block stays a code block; the parts' bodies joined give back ``html``.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if utf16_len(html) <= limit:
        return [TextPart("", html, "")]
    scan = _Scan(html)
    parts: list[TextPart] = []
    position = 0
    while True:
        opener = _opener(scan.stack(position))
        if utf16_len(opener) + scan.length(position, len(html)) <= limit:
            parts.append(TextPart(opener, html[position:], ""))
            return parts
        cut, closer = _cut(scan, position, limit - utf16_len(opener))
        parts.append(TextPart(opener, html[position:cut], closer))
        position = cut


def _cut(scan: _Scan, position: int, budget: int) -> tuple[int, str]:
    """Return the end of the part starting at ``position`` with ``budget`` units, and what closes it."""
    html = scan.html
    high = bisect.bisect_right(scan.units, scan.units[position] + budget, position) - 1
    half = position + (high - position) // 2

    def attempt(cut: int) -> tuple[int, str] | None:
        if cut <= position or not scan.safe(cut):
            return None
        while (match := _TAG.match(html, cut)) and match.group(1) and match.group(2) in TAGS:
            cut = match.end()  # closing tags that follow come along: the next part starts cleanly
        closer = _closer(scan.stack(cut))
        if scan.length(position, cut) + utf16_len(closer) > budget:
            return None
        return cut, closer

    for separator in ("\n\n", "\n"):
        index = html.rfind(separator, half, high)
        while index != -1:
            found = attempt(index + len(separator))
            if found is not None:
                return found
            index = html.rfind(separator, half, index + len(separator) - 1)
    for cut in range(high, position, -1):
        if html[cut - 1] in " \t":
            found = attempt(cut)
            if found is not None:
                return found
    for cut in range(high, position, -1):
        found = attempt(cut)
        if found is not None:
            return found
    return high, ""  # no well-formed cut fits (a tag larger than a part): Telegram refuses it, plain text follows


def split_html(html: str, limit: int) -> list[str]:
    """Return ``html`` cut into well-formed parts of at most ``limit`` UTF-16 units (see ``split_html_parts``)."""
    return [part.text for part in split_html_parts(html, limit)]
