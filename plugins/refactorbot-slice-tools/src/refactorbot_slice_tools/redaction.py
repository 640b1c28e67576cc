"""Prepare tool arguments and results for the log: secrets masked, long values cut."""

from __future__ import annotations

import json
import re
from typing import Any

MASK = "***"
#: Keys whose values are secrets, whatever they hold.
SECRET_KEY = re.compile(
    r"(?i)(passw(or)?d|passphrase|secret|token|api[-_]?key|apikey|authorization|(^|[-_])auth($|[-_])|credential|private[-_]?key|"
    r"access[-_]?key|cookie|session[-_]?key|signature|bearer)"
)
#: Values that look like credentials wherever they appear.
SECRET_VALUE = re.compile(
    r"(?i)(\bbearer\s+[A-Za-z0-9._~+/-]{8,}=*|\b(sk|rk|pk)-[A-Za-z0-9_-]{16,}|\bgh[opsu]_[A-Za-z0-9]{16,}"
    r"|\bxox[abpr]-[A-Za-z0-9-]{10,}|\bAKIA[0-9A-Z]{16}\b|\bsk-or-v1-[a-f0-9]{16,})"
)


def mask_text(text: str) -> str:
    """Return ``text`` with credential-looking substrings replaced by ``***``."""
    return SECRET_VALUE.sub(MASK, text)


def redact(value: Any, max_chars: int) -> Any:
    """Return a copy of ``value`` with secret keys masked and strings cut to ``max_chars``."""
    if isinstance(value, dict):
        return {
            str(k): MASK if SECRET_KEY.search(str(k)) and v not in (None, "") else redact(v, max_chars)
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(v, max_chars) for v in value]
    if isinstance(value, str):
        value = mask_text(value)
        if len(value) > max_chars:
            return value[:max_chars] + f"...[{len(value) - max_chars} more chars]"
        return value
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact(str(value), max_chars)


def to_log_json(arguments: Any, max_chars: int) -> str:
    """Return the redacted arguments as JSON text for the execution log."""
    return json.dumps(redact(arguments, max_chars), ensure_ascii=False, sort_keys=True)


def cut(text: str | None, max_chars: int) -> str | None:
    """Return ``text`` masked and cut to ``max_chars`` (with a marker), or None."""
    if text is None:
        return None
    text = mask_text(text)
    if len(text) > max_chars:
        return text[:max_chars] + f"...[{len(text) - max_chars} more chars]"
    return text
