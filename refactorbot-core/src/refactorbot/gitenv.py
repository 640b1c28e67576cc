"""git with its configuration isolated: the environment every git command of refactorbot runs with.

A repository's configuration (``.git/config`` and what it includes), the system and global
configuration, and the environment can all name programs git starts by itself: hooks, filters on
``add``/``checkout``, textconv and external diff drivers, merge drivers, an fsmonitor, a pager, an
editor, credential helpers, transports, signing programs. ``git_environment`` returns an
environment with:

- nothing of the caller's environment but ``PATH``, ``LANG``, ``LC_ALL`` and ``TZ``;
- no system or global configuration (``GIT_CONFIG_NOSYSTEM``, ``GIT_CONFIG_GLOBAL=/dev/null``,
  ``GIT_ATTR_NOSYSTEM``) and ``HOME`` set by the caller;
- no prompt, pager or editor (``GIT_TERMINAL_PROMPT=0``, ``GIT_PAGER=cat``, ``GIT_EDITOR=true``);
- command-scope settings (``GIT_CONFIG_COUNT``/``KEY``/``VALUE``, which win over every
  configuration file and need no quoting, unlike ``-c``): ``GIT_FIXED`` by default, which switches
  off hooks, the fsmonitor, pagers, editors, credential helpers, every transport, signing and
  background maintenance.

A repository the caller does not trust can still name programs under keys ``GIT_FIXED`` cannot
know in advance (``filter.<name>.clean``, ``diff.<name>.textconv``, ``merge.<name>.driver``...):
``git_config_keys`` lists the keys its effective configuration defines, and ``git_overrides``
returns ``GIT_FIXED`` plus a neutral value for each of those that names a program
(``git_neutral``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from refactorbot.errors import RefactorbotError

__all__ = ["GIT_FIXED", "GitConfigUnreadable", "git_config_keys", "git_environment", "git_neutral", "git_overrides"]

#: Settings given to every git command; the command line wins over any configuration file.
GIT_FIXED: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", "/dev/null"),  # no hooks
    ("core.fsmonitor", "false"),  # no fsmonitor hook
    ("core.pager", "cat"),
    ("core.editor", "true"),
    ("sequence.editor", "true"),
    ("core.attributesFile", "/dev/null"),
    ("core.excludesFile", "/dev/null"),
    ("core.sshCommand", "false"),
    ("core.askPass", ""),
    ("credential.helper", ""),  # an empty value clears the list of helpers
    ("protocol.allow", "never"),  # no transport at all, ext:: and file:// included
    ("safe.bareRepository", "explicit"),  # a bare repository is never used unless named
    ("submodule.recurse", "false"),
    ("gc.auto", "0"),  # no background gc / maintenance
    ("maintenance.auto", "false"),
    ("init.templateDir", ""),  # git init copies no templates (hooks included)
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("log.showSignature", "false"),
    ("gpg.format", "openpgp"),
    # no signing or verifying: gpg would read its own configuration from HOME
    ("gpg.program", "false"),
    ("gpg.openpgp.program", "false"),
    ("gpg.x509.program", "false"),
    ("gpg.ssh.program", "false"),
    ("interactive.diffFilter", "cat"),
)

#: Variables of the caller's environment git keeps.
_KEPT = ("PATH", "LANG", "LC_ALL", "TZ")

#: Keys (lower case) a repository may set that name a program or a file outside: their neutral value.
_EXACT = {
    "diff.external": "",  # an empty external diff fails instead of running
    "commit.template": "/dev/null",
    "mailmap.file": "/dev/null",
    "diff.orderfile": "/dev/null",
    "blame.ignorerevsfile": "",  # an empty value clears the list
    "core.gitproxy": "",
    "core.alternaterefscommand": "",
    "gpg.ssh.defaultkeycommand": "",
    "gpg.ssh.allowedsignersfile": "/dev/null",
    "gpg.ssh.revocationfile": "/dev/null",
    "uploadpack.packobjectshook": "",
}
#: ``<section>.<name>.<key>`` families: (section, key) -> neutral value.
_FAMILIES = {
    ("filter", "clean"): "",  # an empty filter is no filter
    ("filter", "smudge"): "",
    ("filter", "process"): "",
    ("filter", "required"): "false",
    ("diff", "textconv"): "cat",  # the file as it is
    ("diff", "command"): "",
    ("diff", "cachetextconv"): "false",
    ("merge", "driver"): "false",  # a custom merge driver always reports a conflict
    ("credential", "helper"): "",
    ("remote", "uploadpack"): "",
    ("remote", "receivepack"): "",
    ("remote", "proxy"): "",
    ("remote", "vcs"): "",
    ("http", "proxy"): "",
    ("difftool", "cmd"): "",
    ("mergetool", "cmd"): "",
    ("browser", "cmd"): "",
    ("man", "cmd"): "",
    ("submodule", "update"): "none",
}
#: Last components that name a program anywhere else (a safety net for sections not listed above).
_COMMAND_KEYS = frozenset(
    {"command", "cmd", "program", "driver", "textconv", "helper", "hookspath", "sshcommand", "askpass", "tunnel"}
)
#: At most this many repository keys are neutralized; more is refused (the environment has limits).
MAX_OVERRIDES = 512


class GitConfigUnreadable(RefactorbotError):
    """The repository's git configuration could not be read (or names too many commands); git is not run."""


def git_environment(
    base: Mapping[str, str] | None = None,
    *,
    home: str | os.PathLike[str],
    settings: Sequence[tuple[str, str]] | None = None,
    identity: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Return the whole environment of a git command.

    ``base`` (default ``os.environ``) gives only ``PATH`` (``os.defpath`` when absent), ``LANG``,
    ``LC_ALL`` and ``TZ``. ``settings`` are the command-scope settings (default ``GIT_FIXED``; pass
    ``git_overrides(keys)`` for a repository you do not trust). ``identity`` adds
    ``GIT_AUTHOR_NAME`` and the like for the commits the caller makes.
    """
    source = os.environ if base is None else base
    env = {key: source[key] for key in _KEPT if key in source}
    env.setdefault("PATH", os.defpath)
    env.update(
        {
            "HOME": os.fspath(home),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_ATTR_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_PAGER": "cat",
            "PAGER": "cat",
            "GIT_EDITOR": "true",
            "GIT_SEQUENCE_EDITOR": "true",
            "GIT_MERGE_AUTOEDIT": "no",
            "GIT_NO_LAZY_FETCH": "1",
            "GIT_PROTOCOL_FROM_USER": "0",
        }
    )
    env.update(identity or {})
    chosen = GIT_FIXED if settings is None else settings
    env["GIT_CONFIG_COUNT"] = str(len(chosen))
    for index, (key, value) in enumerate(chosen):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def git_neutral(key: str) -> str | None:
    """Return the value that neutralizes ``key`` (as ``git config --list`` prints it), or None to keep it."""
    parts = key.split(".")
    section, last = parts[0].lower(), parts[-1].lower()
    if key.lower() in _EXACT:
        return _EXACT[key.lower()]
    if section == "pager" and len(parts) == 2:
        return "false"  # pager.<command>: never page
    if len(parts) >= 3 and (section, last) in _FAMILIES:
        return _FAMILIES[(section, last)]
    if last in _COMMAND_KEYS and section not in ("core", "sequence", "gpg", "interactive"):
        return ""
    return None


def git_overrides(keys: Sequence[str], extra: Sequence[tuple[str, str]] = ()) -> list[tuple[str, str]]:
    """Return ``GIT_FIXED``, then ``extra``, then a neutral setting for every key among ``keys`` that names a program.

    ``GitConfigUnreadable`` when more than ``MAX_OVERRIDES`` keys would need one.
    """
    chosen = {_canonical(name): (name, value) for name, value in (*GIT_FIXED, *extra)}
    fixed = len(chosen)
    for key in keys:
        value = git_neutral(key)
        canonical = _canonical(key)
        if value is not None and canonical not in chosen:
            chosen[canonical] = (key, value)
    if len(chosen) - fixed > MAX_OVERRIDES:
        raise GitConfigUnreadable(
            f"the repository's git configuration sets more than {MAX_OVERRIDES} commands; git is not run"
        )
    return list(chosen.values())


def _canonical(key: str) -> str:
    # Section and key are case-insensitive, a subsection is not.
    parts = key.split(".")
    if len(parts) < 3:
        return key.lower()
    return ".".join([parts[0].lower(), *parts[1:-1], parts[-1].lower()])


async def git_config_keys(
    cwd: str | os.PathLike[str], env: Mapping[str, str], *, timeout: float = 10.0, git: str = "git"
) -> list[str]:
    """Return every key of the effective configuration git sees from ``cwd`` with ``env`` (includes followed).

    ``GitConfigUnreadable`` when git fails or takes longer than ``timeout`` seconds.
    """
    try:
        proc = await asyncio.create_subprocess_exec(
            "git",
            "config",
            "--list",
            "--name-only",
            "-z",
            executable=git,
            cwd=Path(cwd),
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise GitConfigUnreadable(f"cannot start git: {exc.strerror or exc}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise GitConfigUnreadable("reading the repository's git configuration timed out; git is not run") from None
    if proc.returncode != 0:
        lines = [line for line in err.decode("utf-8", "replace").splitlines() if line.strip()]
        reason = lines[0][:200] if lines else f"status {proc.returncode}"
        raise GitConfigUnreadable(f"cannot read the repository's git configuration: {reason}")
    return [key for key in out.decode("utf-8", "surrogateescape").split("\0") if key]
