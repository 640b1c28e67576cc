"""Applying a change: try it on a candidate, deploy it, and undo it.

- ``config``: the new value is validated against the slice's ``Config`` (with the host's other
  settings), a candidate instance of the slice is built with it in a scratch home (initialize,
  health check, shutdown), then the value is written to ``<home>/overrides/<id>.json`` and the
  slice is hot-reloaded (``host.reload_slice``); undo restores the file and reloads again.
- ``prompt``: the template must keep the placeholders of the current version; deploy saves a
  new version (``<slice>.set_prompt``), undo makes the previous one current (``rollback_prompt``).
- ``code``: a Refactory request against the plugin's source checkout (``refactory.create_request``),
  planned and orchestrated there; the distribution's own tests on the integration branch; then a
  fast-forward of the checked-out branch and a hot reload (``code.py``); undo commits the tree
  from before the landing and reloads again.
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from refactorbot import (
    AtomicSlice,
    ImprovementAction,
    RefactorbotError,
    SliceContext,
    atomic_write,
    config_with,
    one_line,
)

from refactorbot_slice_improve.models import Change

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ChangeRefused(RefactorbotError):
    """Raise when a change cannot be tried or deployed: the reason is one line."""


# -- config ---------------------------------------------------------------------------------


def read_overrides(path: Path) -> dict[str, Any]:
    """Return the overrides file's settings (``{}`` without one)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ChangeRefused(f"{path}: unreadable ({one_line(str(exc))}); fix or remove it first") from None
    if not isinstance(data, dict):
        raise ChangeRefused(f"{path}: not a JSON object; fix or remove it first")
    return data


def write_overrides(path: Path, settings: dict[str, Any]) -> None:
    """Write the overrides file atomically, private (0600 in a 0700 folder); remove it when empty."""
    if not settings:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():  # created private, so that atomic_write keeps 0600
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    atomic_write(path, json.dumps(settings, indent=2, sort_keys=True) + "\n")


def config_candidate(host: Any, settings: Any, slice_id: str, action: ImprovementAction) -> Any:
    """Return the slice's whole configuration with the change, validated; ``ChangeRefused`` says why not."""
    cls = host.slice_class(slice_id)
    if cls is None:
        raise ChangeRefused(f"slice '{slice_id}' is not installed and enabled")
    env_name = f"RB_{slice_id.upper().replace('-', '_')}_{action.target.upper()}"
    env = os.environ if host.env is None else host.env
    if env_name in env:
        raise ChangeRefused(f"{action.target} is set by {env_name}, which an override cannot change")
    current = settings.slice_config(slice_id, cls.Config, host.env)
    try:
        return config_with(current, action.target, action.change)
    except ValueError as exc:
        raise ChangeRefused(str(exc)) from None


async def try_candidate(cls: type[AtomicSlice], slice_id: str, config: Any, settings: Any, timeout: float) -> str:
    """Start a candidate of the slice with ``config`` in a scratch home; return what it showed, or raise."""
    scratch = Path(tempfile.mkdtemp(prefix="rb-candidate-"))
    candidate = cls(SliceContext(slice_id, scratch, host=None, settings=settings), config)
    try:
        async with asyncio.timeout(timeout):
            await candidate.initialize()
            try:
                health = await candidate.health_check()
            finally:
                await candidate.shutdown()
    except TimeoutError:
        raise ChangeRefused(f"the candidate did not start and stop within {timeout:g}s") from None
    except Exception as exc:  # the candidate's failure is the finding
        raise ChangeRefused(f"the candidate failed: {type(exc).__name__}: {one_line(str(exc))}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not health.healthy:
        raise ChangeRefused(f"the candidate is {health.status.value}: {health.message}")
    return f"candidate with {config.__class__.__name__} started, {health.status.value}, stopped"


def config_diff(path: Path, before: dict[str, Any], after: dict[str, Any]) -> str:
    """Return the overrides file's change as a unified diff."""
    old = json.dumps(before, indent=2, sort_keys=True) if before else ""
    new = json.dumps(after, indent=2, sort_keys=True) if after else ""
    return text_diff(path.name, old, new)


def previous_setting(overrides: dict[str, Any], setting: str) -> dict[str, Any]:
    """Return what undoing needs: whether the file had the setting, and its value."""
    return {"present": setting in overrides, "value": overrides.get(setting)}


def restored(overrides: dict[str, Any], setting: str, previous: dict[str, Any]) -> dict[str, Any]:
    """Return ``overrides`` with ``setting`` as it was before the change."""
    result = dict(overrides)
    if previous.get("present"):
        result[setting] = previous.get("value")
    else:
        result.pop(setting, None)
    return result


# -- prompt ---------------------------------------------------------------------------------


def check_prompt(current: str, new: str) -> str:
    """Return a line about the candidate template; ``ChangeRefused`` when it drops a placeholder."""
    before = set(_PLACEHOLDER.findall(current))
    after = set(_PLACEHOLDER.findall(new))
    missing = sorted(before - after)
    if missing:
        raise ChangeRefused(f"the new template drops the placeholders {', '.join(missing)} of the current one")
    unknown = sorted(after - before)
    if unknown:
        raise ChangeRefused(f"the new template uses placeholders {', '.join(unknown)} the current one does not fill")
    return f"template keeps its {len(before)} placeholder(s)"


def text_diff(name: str, old: str, new: str) -> str:
    """Return a unified diff of two texts, one line per line."""
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), f"a/{name}", f"b/{name}", lineterm="")
    return "".join(line + "\n" for line in lines)


# -- code -----------------------------------------------------------------------------------


def source_checkout(distribution: str) -> tuple[Path, Path]:
    """Return the git work tree a distribution is installed from (editable) and the distribution's folder in it.

    ``ChangeRefused`` says why not (not installed, from an index or a URL, not in a git work tree).
    """
    from importlib import metadata
    from urllib.parse import unquote, urlparse

    try:
        raw = metadata.distribution(distribution).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        raise ChangeRefused(f"{distribution} is not an installed distribution") from None
    if not raw:
        raise ChangeRefused(f"{distribution} is installed from a package index, not a source checkout")
    url = json.loads(raw).get("url", "")
    parsed = urlparse(url)
    if parsed.scheme != "file":
        raise ChangeRefused(f"{distribution} was installed from {url}, not a local source checkout")
    folder = Path(unquote(parsed.path)).resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate, folder
    raise ChangeRefused(f"{distribution}'s source {folder} is not inside a git repository")


def code_request(change: Change, distribution: str, repo: Path, branch: str, test_command: list[str]) -> dict[str, Any]:
    """Return the ``refactory.create_request`` payload for a code change (the distribution's tests gate it)."""
    return {
        "title": change.title[:200] or f"Improve {change.slice_id}: {change.target}"[:200],
        "description": (
            f"Self-improvement of slice '{change.slice_id}' ({distribution}), change {change.id}.\n\n"
            f"Where: {change.target}\nChange: {change.change}\nWhy: {change.rationale}\n"
            f"Expected effect: {change.expected_effect}\nRisk: {change.risk}\n"
        )[:20_000],
        "repo": str(repo),
        "target_branch": branch,
        "test_command": test_command,
    }
