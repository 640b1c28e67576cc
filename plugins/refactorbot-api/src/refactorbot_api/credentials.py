"""Credentials in configuration values: recognized, masked on the way out, refused on the way in.

Three things count as a credential:

- the value of a *secret-named* key: one whose last word is ``key``, ``token``, ``secret``,
  ``password``, ``authorization``, ``credentials``, ``cookie``, ... (``api_key``, ``apiKey``,
  ``X-Api-Key``, ``Authorization``; not ``max_tokens``);
- a key-shaped string anywhere: provider key prefixes (``sk-``, ``sk_live_``, ``ghp_``,
  ``github_pat_``, ``glpat-``, ``xox?-``, ``AKIA``, ``AIza``, ``hf_``), JWTs, PEM private keys,
  ``Bearer``/``Basic``/``Token`` authorization values;
- the password (or a token-like user name) in a URL's userinfo (``https://user:pass@host``), and
  the value of a secret-named query parameter (``?api_key=...``, ``&token=...``, ``&sig=...``).

Configuration holds *names* of environment variables instead (``api_key_env = "OPENAI_API_KEY"``).
Nothing here ever repeats a value it refuses.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from refactorbot import ConfigError

MASK = "***"

#: Last words of a key (or query parameter) whose value is a secret.
SECRET_WORDS = frozenset(
    {
        "key",
        "apikey",
        "token",
        "secret",
        "password",
        "passwd",
        "pwd",
        "passphrase",
        "authorization",
        "auth",
        "credential",
        "credentials",
        "cookie",
        "sig",
        "signature",
    }
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_WORDS = re.compile(r"[a-z0-9]+")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_KEY_SHAPES = re.compile(
    r"""
      (?<![A-Za-z0-9])(?:sk|pk|rk)-[A-Za-z0-9_\-]{16,}          # OpenAI, Anthropic, OpenRouter, ...
    | (?<![A-Za-z0-9])(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{10,} # Stripe
    | (?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{20,}                # GitHub
    | (?<![A-Za-z0-9])github_pat_[A-Za-z0-9_]{20,}
    | (?<![A-Za-z0-9])glpat-[A-Za-z0-9_\-]{20,}                 # GitLab
    | (?<![A-Za-z0-9])xox[abposr]-[A-Za-z0-9\-]{10,}            # Slack
    | (?<![A-Za-z0-9])AKIA[0-9A-Z]{16}(?![A-Za-z0-9])           # AWS access key id
    | (?<![A-Za-z0-9])AIza[0-9A-Za-z_\-]{35}                    # Google
    | (?<![A-Za-z0-9])hf_[A-Za-z0-9]{30,}                       # Hugging Face
    | (?<![A-Za-z0-9])eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}  # JWT
    | -----BEGIN[ A-Z]*PRIVATE\ KEY-----[^-]*(?:-----END[ A-Z]*PRIVATE\ KEY-----)?
    """,
    re.VERBOSE,
)
_AUTH_VALUE = re.compile(r"\b(Bearer|Basic|Token|Digest)(\s+)([^\s\"',;]+)", re.IGNORECASE)
_URL_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s/@:?#]*)(?::(?P<password>[^\s/@?#]*))?@"
)
_QUERY_PARAM = re.compile(r"(?P<lead>[?&;])(?P<name>[^=&#\s;]+)=(?P<value>[^&#\s;]*)")


def _words(key: str) -> list[str]:
    return _WORDS.findall(_CAMEL.sub(r"\1_\2", key).lower())


def is_secret_key(key: str) -> bool:
    """Return whether ``key`` names a secret value (its last word is a secret word)."""
    words = _words(key)
    return bool(words) and words[-1] in SECRET_WORDS


def is_env_name_key(key: str) -> bool:
    """Return whether ``key`` holds the NAME of an environment variable (it ends with ``_env``)."""
    words = _words(key)
    return len(words) > 1 and words[-1] == "env"


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def looks_random(value: str) -> bool:
    """Return whether ``value`` contains a long run that looks generated rather than named.

    Environment-variable names are words joined by ``_``; a key is a long run mixing letters
    and digits: a run of 20+ characters with digits and letters and high entropy counts.
    """
    for run in re.split(r"[_\-.]", value):
        if len(run) >= 20 and any(c.isdigit() for c in run) and any(c.isalpha() for c in run) and _entropy(run) >= 3.3:
            return True
    return False


def _token_like_user(user: str) -> bool:
    return bool(_KEY_SHAPES.search(user)) or looks_random(user) or len(user) >= 32


def _mask_query(match: re.Match[str]) -> str:
    name, value = match.group("name"), match.group("value")
    if value and is_secret_key(name):
        value = MASK
    return f"{match.group('lead')}{name}={value}"


def _mask_userinfo(match: re.Match[str]) -> str:
    user, password = match.group("user"), match.group("password")
    if password is not None:
        return f"{match.group('scheme')}{user}:{MASK}@"
    if _token_like_user(user):
        return f"{match.group('scheme')}{MASK}@"
    return match.group(0)


def mask_text(text: str) -> str:
    """Return ``text`` with every credential in it (key shapes, URL userinfo, query tokens) masked."""
    text = _URL_USERINFO.sub(_mask_userinfo, text)
    text = _QUERY_PARAM.sub(_mask_query, text)
    text = _AUTH_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    return _KEY_SHAPES.sub(MASK, text)


def _plain_env_name(value: str) -> bool:
    return bool(_ENV_NAME.match(value)) and not looks_random(value) and not _KEY_SHAPES.search(value)


def mask_value(key: str, value: Any) -> Any:
    """Return ``value`` (stored under ``key``) as it may be shown: credentials replaced by ``'***'``."""
    if isinstance(value, dict):
        return {k: mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_value(key, v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if is_env_name_key(key):
        return value if isinstance(value, str) and _plain_env_name(value) else MASK
    if is_secret_key(key):
        return MASK if value != "" else value
    return mask_text(value) if isinstance(value, str) else value


def mask(data: Any) -> Any:
    """Return a configuration document (or any part of it) with every credential masked."""
    if isinstance(data, dict):
        return {k: mask_value(str(k), v) for k, v in data.items()}
    return mask_value("", data)


def check_value(key: str, value: str, where: str) -> None:
    """Raise ``ConfigError`` when ``value`` (to be stored under ``key``) is or holds a credential."""
    if value == "":
        return
    if is_env_name_key(key) or is_secret_key(key):
        if not _plain_env_name(value):
            raise ConfigError(
                f"{where}: must be the NAME of an environment variable holding the secret (letters, digits, _),"
                " not the secret itself; the value was not saved"
            )
        return
    if _KEY_SHAPES.search(value) or _AUTH_VALUE.search(value):
        raise ConfigError(
            f"{where}: holds what looks like an API key or token; secrets never go into the configuration file"
            " (name an environment variable instead); the value was not saved"
        )
    if mask_text(value) != value:
        raise ConfigError(
            f"{where}: holds credentials (a URL's user:password@ or a token in its query string);"
            " keep them in the environment; the value was not saved"
        )


def merge_update(new: Any, old: Any, key: str, where: str) -> Any:
    """Return ``new`` ready to store: masked values sent back become the stored ones; new secrets refused.

    A string equal to the masked form of the value stored at the same place (``'***'``, or
    ``https://user:***@host``) keeps the stored value. Any other string is checked with
    ``check_value``; ``'***'`` where nothing is stored is refused. ``where`` names the place in
    errors (``"[gateways.litellm] "`` for a section's table).
    """
    if isinstance(new, dict):
        old_map = old if isinstance(old, dict) else {}
        joint = "" if where.endswith(" ") else "."
        return {k: merge_update(v, old_map.get(k), str(k), f"{where}{joint}{k}") for k, v in new.items()}
    if isinstance(new, list):
        old_list = old if isinstance(old, list) else []
        return [
            merge_update(v, old_list[i] if i < len(old_list) else None, key, f"{where}[{i}]") for i, v in enumerate(new)
        ]
    if isinstance(new, str):
        if old is not None and not isinstance(old, dict | list) and new != old and new == mask_value(key, old):
            return old
        if new == MASK:
            raise ConfigError(f"{where}: '{MASK}' stands for a masked value, but nothing is stored there to keep")
        check_value(key, new, where)
    return new
