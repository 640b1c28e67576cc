"""What the installed distributions provide, cached until they change: plugin entry points, CLI commands.

Two facts only change when a distribution is installed, upgraded or removed, and are costly to
find again in every process:

- ``entry-points``: the ``refactorbot`` entry points with their distribution's name and version
  (``importlib.metadata`` reads every distribution's metadata to find them);
- ``commands``: which plugin adds which CLI command (``refactorbot chat`` must not load fifteen
  plugins to find the one that adds ``chat``).

Each is a JSON file, ``<kind>-<key>.json``, in ``RB_CACHE_DIR`` or else platformdirs'
``user_cache_dir("refactorbot")``; the key is derived from the interpreter and ``sys.path``.
A file is valid while the installation keeps its fingerprint: the ``st_mtime_ns`` of every
``sys.path`` entry. Installing, upgrading or uninstalling a distribution (editable installs too)
adds or removes entries in a ``sys.path`` folder, which changes that folder's modification time.
The fingerprint is a few ``stat`` calls, well under a millisecond.

A file that is missing, unreadable, of another version, stale or malformed is never an error:
``load`` returns None and the caller finds the facts the slow way, then ``store``s them. Writes
are atomic (a temporary file renamed over the old one); a cache folder that cannot be written only
costs speed.
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
from typing import Any

log = logging.getLogger(__name__)

#: Bumped when the files' layout changes; a file of another version is ignored (and rewritten).
CACHE_VERSION = 1

#: The entry point that adds a CLI command: entry-point name, value (``module[:attr]``), distribution.
CommandSource = tuple[str, str, str]


def cache_dir(env: Mapping[str, str]) -> Path:
    """Return the cache folder: ``RB_CACHE_DIR`` or the per-user cache directory."""
    configured = env.get("RB_CACHE_DIR", "").strip()
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("refactorbot", appauthor=False))


def cache_file(kind: str, env: Mapping[str, str]) -> Path:
    """Return the file of ``kind`` for this interpreter and this ``sys.path``."""
    key = zlib.crc32(json.dumps([sys.executable, sys.path]).encode())
    return cache_dir(env) / f"{kind}-{key:08x}.json"


def fingerprint() -> list[Any]:
    """Return what changes when a distribution is installed, upgraded or removed."""
    stamps: list[Any] = [sys.executable]
    for entry in sys.path:
        try:
            stamps.append([entry, os.stat(entry or ".").st_mtime_ns])
        except OSError:  # a missing folder or a zip file that went away: its absence is the stamp
            stamps.append([entry, None])
    return stamps


def load(kind: str, env: Mapping[str, str]) -> Any:
    """Return the cached data of ``kind`` when it is valid for the installation as it is now, else None."""
    try:
        data = json.loads(cache_file(kind, env).read_bytes())
        if data.get("version") != CACHE_VERSION or data.get("fingerprint") != fingerprint():
            return None
        return data["data"]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):  # absent, corrupt or foreign
        return None


def store(kind: str, data: Any, env: Mapping[str, str], stamp: list[Any] | None = None) -> None:
    """Record ``data`` of ``kind``, found when the installation had fingerprint ``stamp`` (default: now).

    An unchanged file is not rewritten; a failure to write is logged (debug) and ignored.
    """
    stamp = fingerprint() if stamp is None else stamp
    if stamp == fingerprint() and load(kind, env) == data:
        return
    path = cache_file(kind, env)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"version": CACHE_VERSION, "fingerprint": stamp, "data": data}, indent=1))
        os.replace(tmp, path)
    except OSError as exc:  # a read-only or full cache folder costs speed, never the command
        log.debug("could not write the install cache %s: %s", path, exc)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _strings(value: Any, size: int) -> bool:
    return isinstance(value, list) and len(value) == size and all(isinstance(v, str) for v in value)


def load_commands(env: Mapping[str, str]) -> dict[str, CommandSource] | None:
    """Return the cached map of plugin commands to the entry points that add them, or None."""
    data = load("commands", env)
    if not isinstance(data, dict) or not all(_strings(v, 3) for v in data.values()):
        return None
    return {str(name): (v[0], v[1], v[2]) for name, v in data.items()}


def lookup_command(name: str, env: Mapping[str, str]) -> CommandSource | None:
    """Return the entry point that adds command ``name``, when a valid cache knows one."""
    commands = load_commands(env)
    return None if commands is None else commands.get(name)


def store_commands(commands: Mapping[str, CommandSource], env: Mapping[str, str], stamp: list[Any]) -> None:
    """Record which entry point adds each plugin command (found at fingerprint ``stamp``)."""
    store("commands", {name: list(source) for name, source in sorted(commands.items())}, env, stamp)
