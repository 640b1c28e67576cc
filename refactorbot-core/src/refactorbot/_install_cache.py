"""What the installed distributions provide, cached until they change: plugin entry points, CLI commands.

Two facts only change when a distribution is installed, upgraded or removed, and are costly to
find again in every process:

- ``entry-points``: the ``refactorbot`` entry points with their distribution's name and version
  (``importlib.metadata`` reads every distribution's metadata to find them);
- ``commands``: which plugin adds which CLI command (``refactorbot chat`` must not load fifteen
  plugins to find the one that adds ``chat``) and, when the command is an attribute of a module,
  that ``module:attribute`` (imported directly: the plugin itself, and pluggy, are not loaded);
- ``plugins``: the report ``refactorbot plugins list`` prints, kept only when no plugin failed or
  hung, and valid only while the ``RB_*`` variables that steer loading and every module file the
  plugins imported from their own packages are unchanged (editing a plugin's source, editable
  installs included, refreshes it).

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
import os
import sys
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

#: Bumped when the files' layout changes; a file of another version is ignored (and rewritten).
CACHE_VERSION = 2

#: The entry point that adds a CLI command: entry-point name, value (``module[:attr]``), distribution.
CommandSource = tuple[str, str, str]
#: A cached plugin command: the entry point that adds it, and the ``module:attribute`` it is, if any.
CommandEntry = tuple[CommandSource, str | None]


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
        import logging  # only here: a command that talks to a server never imports it

        logging.getLogger(__name__).debug("could not write the install cache %s: %s", path, exc)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _strings(value: Any, size: int) -> bool:
    return isinstance(value, list) and len(value) == size and all(isinstance(v, str) for v in value)


def _entry(value: Any) -> CommandEntry | None:
    if not isinstance(value, dict) or not _strings(value.get("source"), 3):
        return None
    target = value.get("target")
    if target is not None and not (isinstance(target, str) and ":" in target):
        return None
    source = value["source"]
    return (source[0], source[1], source[2]), target


def load_commands(env: Mapping[str, str]) -> dict[str, CommandEntry] | None:
    """Return the cached map of plugin commands to where they are found, or None."""
    data = load("commands", env)
    if not isinstance(data, dict):
        return None
    entries = {str(name): _entry(value) for name, value in data.items()}
    if any(entry is None for entry in entries.values()):
        return None
    return {name: entry for name, entry in entries.items() if entry is not None}


def lookup_command(name: str, env: Mapping[str, str]) -> CommandEntry | None:
    """Return where command ``name`` is found, when a valid cache knows it."""
    commands = load_commands(env)
    return None if commands is None else commands.get(name)


def store_commands(commands: Mapping[str, CommandEntry], env: Mapping[str, str], stamp: list[Any]) -> None:
    """Record where each plugin command is found (at fingerprint ``stamp``)."""
    data = {name: {"source": list(source), "target": target} for name, (source, target) in sorted(commands.items())}
    store("commands", data, env, stamp)


#: The variables that change how plugins load, hence what ``plugins list`` reports.
REPORT_ENV = ("RB_LOAD_PLUGINS", "RB_DISABLE_PLUGINS", "RB_PLUGIN_LOAD_TIMEOUT", "RB_STRICT_PLUGINS")


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def source_files(modules: Iterable[str]) -> list[list[Any]]:
    """Return ``[path, st_mtime_ns]`` of every imported module file of the top-level packages of ``modules``."""
    tops = {name.partition(".")[0] for name in modules}
    files = {
        getattr(module, "__file__", None)
        for name, module in list(sys.modules.items())
        if name.partition(".")[0] in tops
    }
    return [[path, _mtime(path)] for path in sorted(f for f in files if isinstance(f, str))]


def load_report(env: Mapping[str, str]) -> list[dict[str, Any]] | None:
    """Return the cached plugin report when it is valid for this installation, environment and source, else None."""
    data = load("plugins", env)
    try:
        if data["env"] != [env.get(key) for key in REPORT_ENV]:
            return None
        if any(_mtime(path) != stamp for path, stamp in data["files"]):
            return None
        records = data["records"]
    except (TypeError, KeyError, ValueError):
        return None
    if not isinstance(records, list) or not all(isinstance(r, dict) and "name" in r for r in records):
        return None
    return records


def store_report(
    records: list[dict[str, Any]], modules: Iterable[str], env: Mapping[str, str], stamp: list[Any]
) -> None:
    """Record the plugin report found at fingerprint ``stamp``; one with a failed or hung plugin is not kept.

    A failure may come from something the fingerprint does not see (a variable a plugin reads at
    import, a slow disk), so it is found again on every run until it is gone.
    """
    if any(record.get("status") in ("failed", "hung") for record in records):
        with contextlib.suppress(OSError):
            cache_file("plugins", env).unlink(missing_ok=True)
        return
    data = {"env": [env.get(key) for key in REPORT_ENV], "files": source_files(modules), "records": records}
    store("plugins", data, env, stamp)
