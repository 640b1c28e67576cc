"""The OS sandbox under ``exec_run``: bubblewrap (``bwrap``), where the machine can run it.

The policy checks decide what may run; the sandbox limits what the program can reach once it
runs. Each command gets:

- a new root that holds only the system folders programs need, read-only (``/usr``, the
  ``/bin``, ``/sbin`` and ``/lib*`` links or folders, a few files of ``/etc``, and the configured
  ``sandbox_ro_paths``), a fresh ``/dev``, a private ``/tmp``, and the workspace read-write at its
  own path. The home directory, the refactorbot home (databases, api-token) and everything
  else are simply absent;
- new user, PID, network, IPC, UTS and cgroup namespaces (``--unshare-all``): no network unless
  ``network = true``; a fresh ``/proc`` in which the server is not visible; every process of the
  call, ``setsid`` or not, is killed when the command ends, since PID 1 of the namespace exits;
- no capabilities (``--cap-drop ALL``), no nested user namespaces (``--disable-userns``), a new
  session (``--new-session``), and ``--die-with-parent``.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

#: System folders mounted read-only (symlinks, as on merged-/usr systems, are recreated as links).
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: Files of /etc programs read (loader, users, locale, time zone, MIME and file types).
ETC_FILES = (
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/passwd",
    "/etc/group",
    "/etc/nsswitch.conf",
    "/etc/locale.alias",
    "/etc/mime.types",
    "/etc/magic",
    "/etc/magic.mime",
    "/etc/os-release",
    "/etc/debian_version",
)
ETC_GLOBS = ("/etc/python3*",)
#: Added with ``network = true``: name resolution and certificates.
ETC_NETWORK = (
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
)


@dataclasses.dataclass(frozen=True)
class Sandbox:
    """How to wrap a command in bwrap; ``reason`` says why it is not ``available``."""

    bwrap: str
    network: bool
    ro_paths: tuple[str, ...]
    #: the configured program folders: mounted too, so the sandbox finds a program where the policy did
    path: tuple[str, ...] = ()
    available: bool = False
    reason: str = ""

    def argv(
        self, argv: Sequence[str], workspace: Path, cwd: Path, mounts: Sequence[tuple[str, Path]] = ()
    ) -> list[str]:
        """Return ``argv`` wrapped: bwrap, its options, ``--``, then the command itself.

        ``mounts`` are folders or files beyond the workspace, in order, ``("rw", path)`` writable or
        ``("ro", path)`` read-only (a later mount inside an earlier one wins).

        bwrap looks a program name up on the child's ``PATH`` (the configured folders, all
        mounted), so ``argv[0]`` may stay the name the model wrote.
        """
        return [self.bwrap, *self.options(workspace, cwd, mounts), "--", *argv]

    def options(self, workspace: Path, cwd: Path, mounts: Sequence[tuple[str, Path]] = ()) -> list[str]:
        """Return bwrap's options for a command in ``cwd`` with ``workspace`` writable."""
        opts = ["--unshare-all", "--unshare-user", "--disable-userns"]
        if self.network:
            opts.append("--share-net")
        opts += ["--cap-drop", "ALL", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
        for folder in SYSTEM_DIRS:
            if os.path.islink(folder):
                opts += ["--symlink", os.readlink(folder), folder]
            elif os.path.isdir(folder):
                opts += ["--ro-bind", folder, folder]
        etc = [*ETC_FILES, *(p for g in ETC_GLOBS for p in sorted(glob.glob(g)))]
        if self.network:
            etc += ETC_NETWORK
        mounted = [d for d in SYSTEM_DIRS if os.path.isdir(d)]
        extra = [p for p in self.path if not any(p == d or p.startswith(d + "/") for d in mounted)]
        for path in [*etc, *extra, *self.ro_paths]:
            opts += ["--ro-bind-try", path, path]
        # fresh, empty tmpfs mounts inside the sandbox, private to the call: the host's /tmp is never used
        opts += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/var/tmp"]  # noqa: S108
        opts += ["--bind", str(workspace), str(workspace)]
        for mode, target in mounts:
            opts += ["--bind" if mode == "rw" else "--ro-bind", str(target), str(target)]
        opts += ["--chdir", str(cwd)]
        return opts


def probe(bwrap: str, network: bool, ro_paths: Sequence[str], path: str, true: str | None) -> Sandbox:
    """Return a ``Sandbox``, available only when bwrap runs ``true`` with every option we use."""
    return _probe(bwrap, network, tuple(ro_paths), tuple(p for p in path.split(os.pathsep) if p), true)


@functools.lru_cache(maxsize=16)
def _probe(bwrap: str, network: bool, ro_paths: tuple[str, ...], path: tuple[str, ...], true: str | None) -> Sandbox:
    sandbox = Sandbox(bwrap=bwrap, network=network, ro_paths=ro_paths, path=path)
    if not os.path.isabs(bwrap) or not os.access(bwrap, os.X_OK) or not os.path.isfile(bwrap):
        found = shutil.which("bwrap")
        hint = f" (found {found}: set [tools.exec] bwrap)" if found and found != bwrap else " (install bubblewrap)"
        return dataclasses.replace(sandbox, reason=f"bwrap not found at {bwrap}{hint}")
    if true is None:
        return dataclasses.replace(sandbox, reason="no 'true' program on the configured path to test bwrap with")
    try:
        with tempfile.TemporaryDirectory(prefix="rb-bwrap-probe-") as folder:
            done = subprocess.run(  # noqa: S603  argv list, no shell: the configured absolute bwrap running `true`
                sandbox.argv([os.path.basename(true)], Path(folder), Path(folder)),
                env={"PATH": os.pathsep.join(path)},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=10,
                check=False,
            )
    except (OSError, subprocess.SubprocessError) as exc:
        return dataclasses.replace(sandbox, reason=f"bwrap cannot run: {exc}")
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        why = lines[-1] if lines else f"exit status {done.returncode}"
        return dataclasses.replace(sandbox, reason=f"bwrap cannot create the sandbox here: {why[:200]}")
    return dataclasses.replace(sandbox, available=True)
