"""Markdown to Feishu's rich text (``msg_type = "post"``), and message content back to text.

A post is ``{"zh_cn": {"title": "", "content": [paragraph, ...]}}``; a paragraph is a list of
elements: ``{"tag": "text", "text": ..., "style": ["bold", "italic", "lineThrough"]}``,
``{"tag": "a", "text": ..., "href": ...}``, ``{"tag": "code_block", "language": ..., "text": ...}``
and ``{"tag": "hr"}``. Headings become bold paragraphs, list items keep their bullets, inline code
keeps its text; anything this does not understand stays as literal text, so nothing is lost.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["content_text", "markdown_to_post"]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([^`\s]*)[^`]*$")
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)[ \t#]*$")
_RULE = re.compile(r"^ {0,3}([-*_])([ \t]*\1){2,}[ \t]*$")
_BULLET = re.compile(r"^(\s*)[-*+][ \t]+")
_INLINE = re.compile(
    r"(?P<image>!\[(?P<alt>[^\]\n]*)\]\((?P<src>[^)\s]+)\))"
    r"|(?P<link>\[(?P<label>[^\]\n]+)\]\((?P<href>[^)\s]+)\))"
    r"|(?P<code>`(?P<code_text>[^`\n]+)`)"
    r"|(?P<bold>(?P<mark>\*\*|__)(?=\S)(?P<bold_text>.+?)(?<=\S)(?P=mark))"
    r"|(?P<strike>~~(?=\S)(?P<strike_text>.+?)(?<=\S)~~)"
    r"|(?P<italic>(?<![\w*])\*(?=\S)(?P<italic_text>[^*\n]+?)(?<=\S)\*(?![\w*])"
    r"|(?<![\w_])_(?=\S)(?P<italic_text2>[^_\n]+?)(?<=\S)_(?![\w_]))"
)
_LINK_SCHEMES = ("http://", "https://", "mailto:")


def markdown_to_post(markdown: str, title: str = "") -> dict[str, Any]:
    """Return the ``post`` content (the object, before ``json.dumps``) showing ``markdown``."""
    paragraphs: list[list[dict[str, Any]]] = []
    lines = markdown.split("\n")
    index = 0
    while index < len(lines):
        line = lines[index]
        fence = _FENCE.match(line)
        if fence is not None:
            marker, language = fence.group(1), fence.group(2)
            body: list[str] = []
            index += 1
            while index < len(lines):
                closing = lines[index].strip()
                if closing.startswith(marker[0] * len(marker)) and not closing.strip(marker[0]):
                    break
                body.append(lines[index])
                index += 1
            index += 1  # past the closing fence (or the end)
            block: dict[str, Any] = {"tag": "code_block", "text": "\n".join(body)}
            if language:
                block["language"] = language.upper()
            paragraphs.append([block])
            continue
        index += 1
        if _RULE.match(line):
            paragraphs.append([{"tag": "hr"}])
            continue
        heading = _HEADING.match(line)
        if heading is not None:
            paragraphs.append(_inline(heading.group(1), ["bold"]))
            continue
        bullet = _BULLET.match(line)
        if bullet is not None:
            line = bullet.group(1) + "• " + line[bullet.end() :]
        paragraphs.append(_inline(line, []))
    while paragraphs and not paragraphs[-1]:
        paragraphs.pop()
    return {"zh_cn": {"title": title, "content": paragraphs}}


def _inline(text: str, base: list[str]) -> list[dict[str, Any]]:
    """Return the elements of one line of Markdown."""
    elements: list[dict[str, Any]] = []

    def add_text(value: str, style: list[str]) -> None:
        if not value:
            return
        element: dict[str, Any] = {"tag": "text", "text": value}
        if style:
            element["style"] = list(style)
        elements.append(element)

    position = 0
    for match in _INLINE.finditer(text):
        add_text(text[position : match.start()], base)
        position = match.end()
        if match.group("image") or match.group("link"):
            label = match.group("alt") if match.group("image") else match.group("label")
            href = match.group("src") if match.group("image") else match.group("href")
            if href.startswith(_LINK_SCHEMES):
                element: dict[str, Any] = {"tag": "a", "text": label or href, "href": href}
                if base:
                    element["style"] = list(base)
                elements.append(element)
            else:
                add_text(match.group(0), base)
        elif match.group("code"):
            add_text(match.group("code_text"), base)
        elif match.group("bold"):
            elements.extend(_inline(match.group("bold_text"), _with(base, "bold")))
        elif match.group("strike"):
            elements.extend(_inline(match.group("strike_text"), _with(base, "lineThrough")))
        else:
            inner = match.group("italic_text") or match.group("italic_text2")
            elements.extend(_inline(inner, _with(base, "italic")))
    add_text(text[position:], base)
    return elements


def _with(style: list[str], extra: str) -> list[str]:
    return style if extra in style else [*style, extra]


def content_text(message_type: str, content: Any) -> str:
    """Return the text of an incoming message's parsed ``content`` (``text`` or ``post``); "" for other kinds."""
    if not isinstance(content, dict):
        return ""
    if message_type == "text":
        text = content.get("text")
        return text if isinstance(text, str) else ""
    if message_type != "post":
        return ""
    body = content
    if "content" not in body:  # a post keyed by language: take the first
        body = next((v for v in content.values() if isinstance(v, dict)), {})
    lines: list[str] = []
    title = body.get("title")
    if isinstance(title, str) and title:
        lines.append(title)
    paragraphs = body.get("content")
    if isinstance(paragraphs, list):
        for paragraph in paragraphs:
            if not isinstance(paragraph, list):
                continue
            pieces: list[str] = []
            for element in paragraph:
                if not isinstance(element, dict):
                    continue
                tag = element.get("tag")
                if tag in ("text", "a", "code_block", "md"):
                    value = element.get("text")
                    pieces.append(value if isinstance(value, str) else "")
                elif tag == "at":
                    key = element.get("user_id")
                    pieces.append(key if isinstance(key, str) else "")
            lines.append("".join(pieces))
    return "\n".join(lines)


def dumps(content: Any) -> str:
    """Return ``content`` as the JSON string a message's ``content`` field carries."""
    return json.dumps(content, ensure_ascii=False, separators=(",", ":"))
