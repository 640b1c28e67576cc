"""Turn user text into a safe FTS5 query: every term quoted, no operators or syntax from the user."""

from __future__ import annotations

import re

_TERM = re.compile(r"\w+", re.UNICODE)
MAX_TERMS = 16
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "so",
        "that",
        "the",
        "their",
        "them",
        "there",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
    ]
)


def quote(value: str) -> str:
    """Return ``value`` as an FTS5 string literal."""
    return '"' + value.replace('"', '""') + '"'


def terms(text: str) -> list[str]:
    """Return the distinct search terms of ``text`` (stop words dropped unless nothing else is left)."""
    words = [w.lower() for w in _TERM.findall(text)]
    unique = list(dict.fromkeys(words))
    meaningful = [w for w in unique if w not in STOPWORDS]
    return (meaningful or unique)[:MAX_TERMS]


def match_expression(text: str, user_id: str) -> str | None:
    """Return an FTS5 MATCH expression for ``text`` within ``user_id``'s memories, or None if no terms."""
    found = terms(text)
    if not found:
        return None
    any_term = " OR ".join(quote(t) for t in found)
    if not _TERM.search(user_id):  # nothing indexable: the SQL filter on user_id alone scopes the query
        return any_term
    return f"user_id : {quote(user_id)} AND ({any_term})"
