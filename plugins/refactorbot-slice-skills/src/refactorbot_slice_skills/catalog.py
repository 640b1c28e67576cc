"""What the agent's system prompt carries: the ``<available_skills>`` block within a budget, and bodies.

Only names, descriptions and locations go into the prompt; a body loads on activation. When the
character budget cannot hold every available skill, the block ends with a line naming the ones
left out (and how to load them anyway): never a silent cut.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from xml.sax.saxutils import escape, quoteattr

#: ``$skill-name`` in a message: a ``$`` not preceded by a word character or another ``$``.
MENTION = re.compile(r"(?<![\w$])\$([a-z0-9]+(?:-[a-z0-9]+)*)(?![\w-])")
HEADER = (
    "Skills hold instructions for specific tasks. When a task matches a skill's description, call the"
    " skill_activate tool with its name before you start, then follow what it says; read the skill's other files"
    " with skill_read.\n"
)
_OPEN, _CLOSE = "<available_skills>\n", "</available_skills>"


@dataclasses.dataclass(frozen=True)
class Entry:
    """One available skill as the prompt lists it."""

    name: str
    description: str
    location: str

    def render(self) -> str:
        """Return the skill's ``<skill>`` element."""
        return (
            f"<skill>\n<name>{self.name}</name>\n<description>{escape(self.description)}</description>\n"
            f"<location>{escape(self.location)}</location>\n</skill>\n"
        )


@dataclasses.dataclass(frozen=True)
class Block:
    """The rendered block, the skills it lists and the ones the budget left out."""

    text: str
    listed: tuple[str, ...]
    omitted: tuple[str, ...]


def omitted_note(names: list[str], limit: int = 600) -> str:
    """Return the line naming skills the budget left out (cut to ``limit`` characters, with a count)."""
    shown: list[str] = []
    used = 0
    for name in names:
        if used + len(name) + 2 > limit:
            break
        shown.append(name)
        used += len(name) + 2
    rest = len(names) - len(shown)
    more = f" and {rest} more" if rest else ""
    return (
        f"Not listed for lack of room ({len(names)}): {', '.join(shown)}{more}."
        " They can still be activated by name with skill_activate.\n"
    )


def render_block(entries: Iterable[Entry], budget: int) -> Block:
    """Return the ``<available_skills>`` block of ``entries``, in order, within ``budget`` characters.

    Skills are added, in order, while the block and the note about the ones left out fit the
    budget; the note is written whenever a skill is left out, even when it alone passes the budget.
    """
    items = list(entries)
    if not items:
        return Block("", (), ())
    fixed = len(HEADER) + len(_OPEN) + len(_CLOSE)
    rendered = [e.render() for e in items]
    total = fixed + sum(len(r) for r in rendered)
    if total <= budget:
        return Block(HEADER + _OPEN + "".join(rendered) + _CLOSE, tuple(e.name for e in items), ())
    reserve = len(omitted_note([e.name for e in items]))  # the longest the note can be
    kept: list[int] = []
    used = fixed + 1
    for index, text in enumerate(rendered):
        if used + len(text) + reserve <= budget:
            kept.append(index)
            used += len(text)
    chosen = set(kept)
    omitted = [e.name for i, e in enumerate(items) if i not in chosen]
    body = "".join(rendered[i] for i in kept)
    text = HEADER + _OPEN + body + _CLOSE + "\n" + omitted_note(omitted)
    return Block(text, tuple(items[i].name for i in kept), tuple(omitted))


def mentions(message: str, limit: int = 8) -> list[str]:
    """Return the distinct ``$skill-name`` mentions of a message, in order, at most ``limit``."""
    names: list[str] = []
    for match in MENTION.finditer(message):
        if match.group(1) not in names:
            names.append(match.group(1))
        if len(names) >= limit:
            break
    return names


def body_block(name: str, location: str, body: str, files: list[str], limit: int) -> str:
    """Return an activated skill's body for the prompt or a tool result, cut at ``limit`` characters."""
    cut = ""
    if len(body) > limit:
        cut = f"\n[cut: {len(body) - limit} more characters; read SKILL.md with skill_read]"
        body = body[:limit]
    listing = ""
    others = [f for f in files if f != "SKILL.md"]
    if others:
        shown = others[:50]
        extra = f" and {len(others) - 50} more" if len(others) > 50 else ""
        listing = "\nFiles of this skill (read with skill_read): " + ", ".join(shown) + extra
    return (
        f"<skill_content name={quoteattr(name)} location={quoteattr(location)}>\n{body}{cut}{listing}\n</skill_content>"
    )
