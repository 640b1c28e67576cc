"""What ``exec_run`` may run: the allow-list, the refusals, and the argv it finally executes.

No shell is ever involved, so chaining, redirection and substitution cannot happen; they are
still refused with a clear error, because a model that writes them expects a shell and would
otherwise get a confusing result. Programs that run other programs, options that make an
allowed program run arbitrary commands (found however they are spelled, see ``options``), and
arguments that reach outside the workspace are refused too.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator
from refactorbot import Model, PathOutsideWorkspace, ToolError, Workspace

from refactorbot_tools_exec import options as opts

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"

#: Programs that exist to run other programs (or a shell); never run, whatever the allow-list says.
LAUNCHERS = frozenset(
    [
        "sh",
        "bash",
        "zsh",
        "dash",
        "ksh",
        "mksh",
        "csh",
        "tcsh",
        "fish",
        "ash",
        "busybox",
        "env",
        "sudo",
        "su",
        "doas",
        "pkexec",
        "xargs",
        "nohup",
        "setsid",
        "nice",
        "ionice",
        "timeout",
        "stdbuf",
        "chroot",
        "unshare",
        "nsenter",
        "strace",
        "ltrace",
        "gdb",
        "script",
        "expect",
        "watch",
        "parallel",
        "flock",
        "systemd-run",
        "runuser",
        "chrt",
        "taskset",
        "eval",
        "exec",
        "command",
        "builtin",
        "time",
    ]
)
#: Shell operators: chaining, pipes, background jobs, redirection and substitution.
OPERATORS = (";", "&&", "||", "|", "&", ">", "<", "`", "$(", "${", "\n", "\r")
#: For programs without an option table: options that make a program run a command of the
#: caller's choice (refused as written, and as any prefix of them).
SMUGGLING_PREFIXES = (
    "--exec",
    "--upload-pack",
    "--receive-pack",
    "--to-command",
    "--checkpoint-action",
    "--use-compress-program",
    "--compress-program",
    "--rsh",
    "--rmt-command",
    "--info-script",
    "--new-volume-script",
    "--open-files-in-pager",
    "--config-env",
    "--run-command",
    "--hostname-bin",
)
#: ... and these as whole option names only (``--pre`` runs a preprocessor; ``--prefix`` is harmless).
SMUGGLING_NAMES = frozenset({"--pre"})
SMUGGLING_TOKENS = frozenset(opts.FIND_DANGEROUS)
GIT_SUBCOMMANDS = opts.GIT_SUBCOMMANDS
#: awk implementations with a sandbox mode (no system(), pipes, redirections, extensions).
AWK_SANDBOX = {"gawk": "--sandbox"}
AWKS = frozenset({"awk", "gawk", "mawk", "nawk", "original-awk", "busybox-awk"})
_ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_PYTHON = re.compile(r"^python(\d+(\.\d+)?)?$")


class ExecConfig(Model):
    """``[tools.exec]``: what may run, where, for how long, with what environment, in what sandbox."""

    model_config = ConfigDict(extra="forbid")

    workspace: str | None = Field(None, description="workspace folder (default: <home>/workspace)")
    allowed_programs: list[str] = Field(
        default_factory=lambda: ["ls", "cat", "echo", "python", "python3", "git", "grep", "wc", "pytest"],
        description="program names that may run (launchers and shells are refused regardless)",
    )
    path: str = Field(SAFE_PATH, description="the only folders programs are looked up in (and the child's PATH)")
    timeout: float = Field(15.0, gt=0, description="default seconds before the process group is killed")
    max_timeout: float = Field(120.0, gt=0, description="largest timeout a call may ask for")
    max_output_bytes: int = Field(65_536, ge=256, description="bytes kept of stdout and of stderr each")
    env_passthrough: list[str] = Field(default_factory=list, description="variables copied from the server's env")
    lang: str = Field("C.UTF-8", description="LANG of the child")
    allow_python_c: bool = Field(False, description="allow 'python -c CODE'")
    python_modules: list[str] = Field(
        default_factory=lambda: ["pytest", "unittest", "py_compile", "json.tool"],
        description="modules 'python -m' may run",
    )
    max_args: int = Field(256, ge=1, description="most arguments in one command")
    max_command_chars: int = Field(16_384, ge=16, description="longest command, all arguments together")
    sandbox: Literal["auto", "off"] = Field(
        "auto", description="run commands in bubblewrap when it works on this machine ('auto'), or never ('off')"
    )
    require_sandbox: bool = Field(False, description="refuse every call when the sandbox is not in use")
    network: bool = Field(False, description="let sandboxed commands use the network")
    bwrap: str = Field("/usr/bin/bwrap", description="the bubblewrap program")
    sandbox_ro_paths: list[str] = Field(
        default_factory=list, description="extra folders mounted read-only in the sandbox (e.g. /opt/tools)"
    )

    @field_validator("env_passthrough")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        bad = [n for n in names if not _ENV_NAME.match(n)]
        if bad:
            raise ValueError(f"not environment variable names: {bad}")
        return names

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        parts = [p for p in value.split(os.pathsep) if p]
        if not parts or any(not os.path.isabs(p) for p in parts):
            raise ValueError("path must list absolute folders")
        return os.pathsep.join(parts)

    @field_validator("bwrap")
    @classmethod
    def _bwrap_absolute(cls, value: str) -> str:
        if not os.path.isabs(value):
            raise ValueError("bwrap must be an absolute path")
        return value

    @field_validator("sandbox_ro_paths")
    @classmethod
    def _ro_paths(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if not os.path.isabs(v) or ".." in v.split("/") or os.path.normpath(v) == "/"]
        if bad:
            raise ValueError(f"must be absolute folders other than '/': {bad}")
        return [os.path.normpath(v) for v in values]

    @model_validator(mode="after")
    def _consistent(self) -> ExecConfig:
        if self.require_sandbox and self.sandbox == "off":
            raise ValueError("require_sandbox = true needs sandbox = 'auto'")
        return self


@dataclasses.dataclass(frozen=True)
class PreparedCommand:
    """A command that passed every check: the absolute program, its arguments and its folder."""

    program: str
    args: tuple[str, ...]
    cwd: Path
    shown: str
    #: when the program is git: its subcommand ("" for none); git's environment is isolated (refactorbot.git_environment)
    git: str | None = None

    @property
    def argv(self) -> list[str]:
        """Return the full argv."""
        return [self.program, *self.args]


class CommandPolicy:
    """Turn a command from a model into a ``PreparedCommand``, or refuse it with ``ToolError``."""

    def __init__(self, config: ExecConfig) -> None:
        self.config = config

    def prepare(
        self, command: str | list[str], workspace: Workspace, cwd: str = ".", *, sandboxed: bool = False
    ) -> PreparedCommand:
        """Check ``command`` (a string is split like a shell would, but never run by one).

        ``sandboxed``: the command will run in the OS sandbox, so options that follow symlinks
        (and awk implementations without a sandbox mode) are allowed.
        """
        tokens = self._tokens(command)
        self._refuse_operators(tokens)
        if _ENV_ASSIGNMENT.match(tokens[0]):
            raise ToolError(
                f"environment assignments like '{tokens[0]}' are not allowed; the environment is fixed by configuration"
            )
        name = tokens[0]
        self._check_name(name)
        args = tokens[1:]
        try:
            program: str | None = self._locate(name)
        except ToolError as exc:
            program, missing = None, exc
        args, git = self.check_arguments(name, args, program=program, sandboxed=sandboxed)
        if program is None:  # the options were checked first: a dangerous one is refused even so
            raise missing
        folder = self._cwd(workspace, cwd)
        for arg in tokens[1:]:
            self._refuse_escape(workspace, folder, arg)
        return PreparedCommand(program=program, args=tuple(args), cwd=folder, shown=shlex.join(tokens), git=git)

    def environment(self, workspace: Workspace) -> dict[str, str]:
        """Return the child's whole environment: nothing of the server's unless configured."""
        env = {
            "PATH": self.config.path,
            "HOME": str(workspace.root),
            "LANG": self.config.lang,
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_PAGER": "cat",
            "PAGER": "cat",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONNOUSERSITE": "1",
        }
        for name in self.config.env_passthrough:
            if name in os.environ:
                env[name] = os.environ[name]
        return env

    # -- checks ----------------------------------------------------------------------------

    def _tokens(self, command: str | list[str]) -> list[str]:
        if isinstance(command, str):
            if "\n" in command or "\r" in command:
                raise ToolError("newlines are not allowed in a command; run one command per call")
            if "\x00" in command:
                raise ToolError("NUL bytes are not allowed in a command")
            try:
                tokens = shlex.split(command)
            except ValueError as exc:
                raise ToolError(f"cannot parse the command: {exc}") from None
        else:
            tokens = list(command)
        if not tokens or not tokens[0].strip():
            raise ToolError("the command is empty")
        if len(tokens) - 1 > self.config.max_args:
            raise ToolError(f"too many arguments ({len(tokens) - 1}, limit {self.config.max_args})")
        if sum(len(t) for t in tokens) > self.config.max_command_chars:
            raise ToolError(f"the command is longer than {self.config.max_command_chars} characters")
        for token in tokens:
            if any(ord(c) < 32 and c not in "\t\n\r" for c in token) or "\x7f" in token:
                raise ToolError(f"control characters are not allowed in arguments: {token!r}")
        return tokens

    @staticmethod
    def _refuse_operators(tokens: list[str]) -> None:
        for token in tokens:
            for op in OPERATORS:
                if op in token:
                    shown = op.encode("unicode_escape").decode()
                    raise ToolError(
                        f"shell syntax '{shown}' in {token!r} is not allowed: commands run without a shell"
                        " (no chaining, pipes, redirection or substitution); run one program per call"
                    )

    def _check_name(self, name: str) -> None:
        if "/" in name or "\\" in name:
            raise ToolError(f"give a program name from the allow-list, not a path: {name!r}")
        base = name.lower()
        if base in LAUNCHERS:
            raise ToolError(f"'{name}' runs other programs or a shell and is never allowed")
        if name not in self.config.allowed_programs:
            allowed = ", ".join(sorted(self.config.allowed_programs)) or "none"
            raise ToolError(f"program '{name}' is not allowed (allowed: {allowed})")

    def _locate(self, name: str) -> str:
        found = shutil.which(name, path=self.config.path)
        if found is None:
            raise ToolError(f"program '{name}' is allowed but not installed in {self.config.path}")
        if os.path.basename(os.path.realpath(found)).lower() in LAUNCHERS:
            raise ToolError(f"'{name}' resolves to a shell or launcher and is never allowed")
        return found

    @staticmethod
    def _kind(name: str, program: str | None) -> str:
        """Return which program this really is: its name, or what an alias or link resolves to."""
        real = os.path.basename(os.path.realpath(program)) if program else name
        for candidate in (real, name):
            if candidate in opts.PROGRAMS or candidate in AWKS or candidate in ("git", "find"):
                return candidate
            if _PYTHON.match(candidate):
                return "python"
        return name

    def check_arguments(
        self, name: str, args: list[str], *, program: str | None = None, sandboxed: bool = False
    ) -> tuple[list[str], str | None]:
        """Refuse dangerous options of ``name`` (found at ``program``); return the arguments to run.

        Some programs get safety options added (``sed --sandbox``, ``gawk --sandbox``, ``tar
        --force-local``, ``diff --no-dereference``, ``git diff --no-ext-diff``). The second value is
        the git subcommand when the program is git. Paths are not checked here (``prepare`` does).
        """
        return self._check_options(name, self._kind(name, program), args, sandboxed)

    def _check_options(self, name: str, kind: str, args: list[str], sandboxed: bool) -> tuple[list[str], str | None]:
        if kind == "git":
            return self._check_git(args, sandboxed)
        if kind == "python":
            self._check_python(name, args)
            return args, None
        if kind == "find":
            self._check_find(name, args, sandboxed)
            return args, None
        if kind in AWKS:
            if kind in AWK_SANDBOX:
                return [AWK_SANDBOX[kind], *args], None
            if not sandboxed:
                raise ToolError(
                    f"'{name}' ({kind}) can run shell commands with system() and has no sandbox mode;"
                    " it runs only inside the OS sandbox"
                )
            return args, None
        table = opts.PROGRAMS.get(kind)
        if table is None:
            self._refuse_generic(name, args)
            return args, None
        self._check_table(name, table, args, sandboxed)
        if kind == "sed":
            args = ["--sandbox", *args]  # GNU sed: no 'e', 'r' or 'w' commands
        elif kind == "tar":
            args = _before_dashdash(args, "--force-local")  # 'host:file' is a local file, never rsh
        elif kind == "diff" and not sandboxed:
            args = ["--no-dereference", *args]  # diff -r would follow symlinks out of the workspace
        return args, None

    @staticmethod
    def _check_table(name: str, table: opts.Options, args: list[str], sandboxed: bool, where: str = "") -> None:
        for found in opts.scan(table, args):
            dangerous = opts.dangerous_in(table, found)
            if dangerous is not None:
                spelled = "" if found.spelled == dangerous else f" (written {found.spelled!r})"
                raise ToolError(
                    f"option {dangerous}{spelled} of '{name}{where}' {table.dangerous[dangerous]} and is not allowed"
                )
            follows = None if sandboxed else opts.follows_links_in(table, found)
            if follows is not None:
                spelled = "" if found.spelled == follows else f" (written {found.spelled!r})"
                raise ToolError(
                    f"option {follows}{spelled} of '{name}' follows symlinks (or reads file names from a file),"
                    " which can lead outside the workspace; it is allowed only in the OS sandbox"
                )

    @staticmethod
    def _refuse_generic(name: str, args: list[str]) -> None:
        for arg in args:
            if arg == "--":
                break
            lowered = arg.lower()
            option = lowered.split("=", 1)[0]
            risky = lowered in SMUGGLING_TOKENS or lowered.startswith(SMUGGLING_PREFIXES) or option in SMUGGLING_NAMES
            if not risky and option.startswith("--") and len(option) > 3:
                names = (*SMUGGLING_PREFIXES, *SMUGGLING_NAMES)
                risky = any(p.startswith(option) for p in names)  # an abbreviation of one
            if risky:
                raise ToolError(f"option {arg!r} makes '{name}' run other commands or delete files and is not allowed")

    def _check_find(self, name: str, args: list[str], sandboxed: bool) -> None:
        for arg in args:
            if arg in opts.FIND_DANGEROUS:
                raise ToolError(f"'{name} {arg}' {opts.FIND_DANGEROUS[arg]} and is not allowed")
            if not sandboxed and arg in opts.FIND_FOLLOWS:
                raise ToolError(
                    f"'{name} {arg}' follows symlinks (or reads file names from a file), which can lead outside"
                    " the workspace; it is allowed only in the OS sandbox"
                )

    def _check_git(self, args: list[str], sandboxed: bool) -> tuple[list[str], str | None]:
        for index, arg in enumerate(args):
            if arg == "--version":
                return args, ""
            if arg == "--no-pager":
                continue
            if arg.startswith("-"):
                raise ToolError(
                    f"git option {arg!r} before the subcommand is not allowed (-c, -C, --git-dir and the like"
                    " change what git runs or where)"
                )
            if arg not in GIT_SUBCOMMANDS:
                raise ToolError(f"'git {arg}' is not allowed (allowed: {', '.join(sorted(GIT_SUBCOMMANDS))})")
            rest = args[index + 1 :]
            for value in rest:
                if "ext::" in value.lower():
                    raise ToolError(f"the ext:: transport in {value!r} runs a command and is not allowed")
            self._check_table("git", opts.GIT[arg], rest, sandboxed, where=f" {arg}")
            if arg == "diff":
                # git diff runs diff.external and diff drivers unless told not to
                rest = ["--no-ext-diff", *rest]
            return [*args[:index], arg, *rest], arg
        return args, ""

    def _check_python(self, name: str, args: list[str]) -> None:
        index = 0
        while index < len(args):
            arg = args[index]
            if arg in ("--version", "--help", "-V", "-h"):
                return
            if arg == "-" or not arg.startswith("-"):
                return  # a script (or stdin, which is empty): its arguments are its own
            if arg.startswith("--"):
                raise ToolError(f"{name} option {arg!r} is not allowed")
            flags = arg[1:]
            for pos, flag in enumerate(flags):
                if flag == "c":
                    if not self.config.allow_python_c:
                        raise ToolError(f"'{name} -c' (inline code) is not allowed; write a file and run it")
                    return
                if flag in "mWX":
                    value = flags[pos + 1 :] or (args[index + 1] if index + 1 < len(args) else "")
                    if flag == "m" and value not in self.config.python_modules:
                        allowed = ", ".join(self.config.python_modules) or "none"
                        raise ToolError(f"'{name} -m {value}' is not allowed (modules allowed: {allowed})")
                    if flag == "m":
                        return
                    index += 0 if flags[pos + 1 :] else 1
                    break
            index += 1

    @staticmethod
    def _cwd(workspace: Workspace, cwd: str) -> Path:
        folder = workspace.resolve(cwd)
        if not folder.is_dir():
            raise ToolError(f"working folder '{cwd}' does not exist in the workspace")
        return folder

    @staticmethod
    def _refuse_escape(workspace: Workspace, folder: Path, arg: str) -> None:
        for value in _path_candidates(arg, folder):
            if not value:
                continue
            if value.startswith("~"):
                raise PathOutsideWorkspace(f"argument {arg!r}: '~' is not expanded (no shell); use a relative path")
            if "\\" in value or _DRIVE.match(value) or value.startswith("//"):
                raise PathOutsideWorkspace(f"argument {arg!r}: Windows and network paths are not allowed")
            if not workspace.contains(os.path.join(folder, value)):
                raise PathOutsideWorkspace(f"argument {arg!r} points outside the workspace")


def _before_dashdash(args: list[str], option: str) -> list[str]:
    if "--" in args:
        index = args.index("--")
        return [*args[:index], option, *args[index:]]
    return [*args, option]


def _path_candidates(arg: str, folder: Path) -> list[str]:
    """Return the parts of ``arg`` that a program may treat as a path.

    ``--name=value``: the value. ``-abcVALUE``: a short-option cluster may end in an attached
    value after any of its letters, so every tail after the leading letters is a candidate; a
    tail is returned only when it could lead outside (absolute, ``~``, ``..``, or starting with
    a name that exists in ``folder``, which may be a symlink).
    """
    if arg.startswith("--"):
        return [arg.split("=", 1)[1]] if "=" in arg else []
    if arg.startswith("-") and len(arg) > 2:
        found = []
        for end in range(2, len(arg)):
            if not arg[end - 1].isalnum():
                break
            tail = arg[end:]
            if tail.startswith("="):
                tail = tail[1:]
            if _may_escape(tail, folder):
                found.append(tail)
        return found
    if arg.startswith("-"):
        return []
    return [arg]


def _may_escape(value: str, folder: Path) -> bool:
    if not value:
        return False
    if value[0] in "/~\\" or _DRIVE.match(value) or ".." in value.replace("\\", "/").split("/"):
        return True
    first = value.split("/", 1)[0]
    return bool(first) and os.path.lexists(os.path.join(folder, first))
