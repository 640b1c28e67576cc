"""Which plugin adds which CLI command, cached so a plugin command starts without loading every plugin.

``refactorbot chat`` must not import and register fifteen plugins to find the one that adds
``chat``. The first full scan records, for each plugin command, the entry point that added it
(``commands-<key>.json`` in the user cache directory: ``RB_CACHE_DIR``, else platformdirs'
``user_cache_dir("refactorbot")``). Later invocations load only that plugin.

The cache is valid for one interpreter and one ``sys.path`` (the file name is derived from
both) while the installed distributions stay the same. Installing, upgrading or uninstalling a
distribution (editable installs too) adds or removes entries in a ``sys.path`` directory, which
changes that directory's modification time, so the fingerprint is the ``st_mtime_ns`` of every
``sys.path`` entry: a few ``stat`` calls, well under a millisecond.

A cache that is missing, unreadable, of another version, stale, or that names a plugin which no
longer adds the command is never an error: the caller falls back to the full scan, which writes
a fresh cache. Writes are atomic (a temporary file renamed over the old one); a cache directory
that cannot be written only costs speed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

#: Bumped when the file's layout changes; a file of another version is ignored (and rewritten).
CACHE_VERSION = 1


class CommandSource(NamedTuple):
    """The entry point that adds a command: its name and value, and the distribution it belongs to."""

    entry_point: str
    value: str
    dist: str


def cache_dir(env: Mapping[str, str]) -> Path:
    """Return the directory of the command cache: ``RB_CACHE_DIR`` or the per-user cache directory."""
    configured = env.get("RB_CACHE_DIR", "").strip()
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("refactorbot", appauthor=False))


def cache_file(env: Mapping[str, str]) -> Path:
    """Return this interpreter's and this ``sys.path``'s cache file."""
    key = zlib.crc32(json.dumps([sys.executable, sys.path]).encode())
    return cache_dir(env) / f"commands-{key:08x}.json"


def fingerprint() -> list[Any]:
    """Return what changes when a distribution is installed, upgraded or removed."""
    stamps: list[Any] = [sys.executable]
    for entry in sys.path:
        try:
            stamps.append([entry, os.stat(entry or ".").st_mtime_ns])
        except OSError:  # a missing folder or a zip file that went away: its absence is the stamp
            stamps.append([entry, None])
    return stamps


def load(env: Mapping[str, str]) -> dict[str, CommandSource] | None:
    """Return the cached command map when it is valid for the installed distributions, else None."""
    try:
        data = json.loads(cache_file(env).read_bytes())
        if data.get("version") != CACHE_VERSION or data.get("fingerprint") != fingerprint():
            return None
        return {str(name): CommandSource(*map(str, source)) for name, source in data["commands"].items()}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):  # absent, corrupt or foreign: rescan
        return None


def lookup(name: str, env: Mapping[str, str]) -> CommandSource | None:
    """Return the entry point that adds command ``name``, when a valid cache knows one."""
    commands = load(env)
    return None if commands is None else commands.get(name)


def store(commands: Mapping[str, CommandSource], env: Mapping[str, str], stamp: list[Any] | None = None) -> None:
    """Record ``commands``, found when the installation had fingerprint ``stamp`` (default: now).

    An unchanged cache is not rewritten; a failure to write is logged (debug) and ignored.
    """
    stamp = fingerprint() if stamp is None else stamp
    if stamp == fingerprint() and load(env) == dict(commands):
        return
    path = cache_file(env)
    data = {
        "version": CACHE_VERSION,
        "fingerprint": stamp,
        "commands": {name: list(source) for name, source in sorted(commands.items())},
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
    except OSError as exc:  # a read-only or full cache directory costs speed, never the command
        log.debug("could not write the command cache %s: %s", path, exc)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
