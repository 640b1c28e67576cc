"""Dangerous options are refused however they are spelled; benign ones still pass.

Both corpora are generated from the option tables (``refactorbot_tools_exec.options``): every
dangerous option of every guarded program in every spelling its parser accepts (exact, after
other flags in a cluster, with an attached value, ``--name=value``, ``--name value``, every
prefix), and every benign option as written and by its shortest unique prefix. The last tests
check that the tables mirror the installed programs: which short options take a value (from
getopt's own error messages), and the long options their ``--help`` / ``git <cmd> -h`` list.
"""

from __future__ import annotations

import re
import shutil
import string
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from refactorbot.errors import ToolError
from refactorbot.tools import ToolContext
from refactorbot.workspace import Workspace
from refactorbot_tools_exec import ExecRun
from refactorbot_tools_exec import options as opts
from refactorbot_tools_exec.policy import CommandPolicy, ExecConfig

TABLES: dict[str, tuple[str, opts.Options]] = {
    **{name: (name, table) for name, table in opts.PROGRAMS.items() if name in ("grep", "rg", "sed", "tar", "sort")},
    **{f"git {sub}": ("git", table) for sub, table in opts.GIT.items()},
}
#: Programs (and git subcommands) that have symlink-following options.
FOLLOWING = {name: table for name, table in opts.PROGRAMS.items() if table.follows_links}
ALL = sorted({*opts.PROGRAMS, "git", "find", "awk", "gawk", "mawk", "python3"})


def _policy() -> CommandPolicy:
    return CommandPolicy(ExecConfig(allowed_programs=ALL))


def _benign_flags(table: opts.Options) -> list[str]:
    risky = {n[1] for n in (*table.dangerous, *table.follows_links) if len(n) == 2}
    return [c for c, kind in table.shorts.items() if kind == "none" and c not in risky and c.isalpha()]


def spellings(table: opts.Options, option: str) -> Iterator[list[str]]:
    """Yield every way the program reads ``option`` (with a value ``x`` when it takes one)."""
    if option.startswith("--"):
        name = option[2:]
        kind = table.longs.get(name, "none")
        yield [option]
        if kind != "none":
            yield [f"{option}=x"]
        if kind == "required":
            yield [option, "x"]
        if not table.abbreviate or name not in table.longs:
            return  # an option the program does not have is refused as written; it has no prefixes
        for cut in range(1, len(name)):
            prefix = name[:cut]
            if prefix in table.longs or (table.negate and prefix.startswith("no-") and prefix[3:] in table.longs):
                continue  # the program reads that other option, not this one
            yield [f"--{prefix}"]
            if kind != "none":
                yield [f"--{prefix}=x"]
        return
    letter = option[1]
    kind = table.shorts[letter]
    forms = [[option]]
    if kind == "required":
        forms += [[f"{option}x"], [option, "x"]]
    elif kind == "optional":
        forms += [[f"{option}x"]]
    flags = _benign_flags(table)
    for form in list(forms):
        for flag in flags:
            forms.append([f"-{flag}{form[0][1:]}", *form[1:]])
        if flags:
            forms.append([f"-{''.join(flags[:4])}{form[0][1:]}", *form[1:]])
    yield from forms
    if table.old_style:  # tar: 'cIf x a.tar' takes the values in order
        values = ["x"] if kind == "required" else []
        yield [f"c{letter}f", *values, "a.tar"]
        yield [f"{letter}cf", *values, "a.tar"]


def _command(label: str, spelling: list[str]) -> list[str]:
    program, _, sub = label.partition(" ")
    return [program, *([sub] if sub else []), *spelling]


def dangerous_corpus() -> list[tuple[str, str, list[str]]]:
    corpus = []
    for label, (_, table) in TABLES.items():
        for option in table.dangerous:
            corpus += [(label, option, spelling) for spelling in spellings(table, option)]
    return corpus


CORPUS = dangerous_corpus()


def test_corpus_covers_every_dangerous_option_in_many_spellings() -> None:
    assert len(CORPUS) > 1000
    covered = {(label, option) for label, option, _ in CORPUS}
    expected = {(label, option) for label, (_, table) in TABLES.items() for option in table.dangerous}
    assert covered == expected
    joined = {" ".join(_command(label, s)) for label, _, s in CORPUS}
    for attack in (
        "git grep -nOx",
        "git grep --open=x",
        "git grep --open-files=x",
        "git grep --ope",
        "tar cIf x a.tar",
    ):
        assert attack in joined


@pytest.mark.parametrize("label", sorted(TABLES))
def test_dangerous_option_refused_in_every_spelling(label: str, tmp_path: Path) -> None:
    policy = _policy()
    workspace = Workspace(tmp_path / "ws")
    missed = []
    table = TABLES[label][1]
    for _, option, spelling in (entry for entry in CORPUS if entry[0] == label):
        command = _command(label, spelling)
        try:
            policy.prepare(command, workspace)
        except ToolError as exc:
            # an ambiguous prefix may be refused as another dangerous option it could stand for
            named = option in str(exc) or any(f"option {d} " in str(exc) for d in table.dangerous)
            if not named or "\n" in str(exc):
                missed.append(f"{command}: refused for another reason: {exc}")
        else:
            missed.append(f"{command}: allowed")
    assert not missed, f"{len(missed)} spellings got through, e.g. {missed[:5]}"


def benign_corpus(table: opts.Options) -> Iterator[list[str]]:
    """Yield every benign option as written, with a value, and by its shortest unique prefix."""
    risky = {*table.dangerous, *table.follows_links}
    longs = table.longs
    for letter, kind in table.shorts.items():
        if f"-{letter}" in risky:
            continue
        yield [f"-{letter}x"] if kind == "required" else [f"-{letter}"]
    flags = _benign_flags(table)
    if flags:
        yield [f"-{''.join(flags)}"]
        yield [f"-{''.join(flags[:4])}"]
    for name, kind in longs.items():
        if f"--{name}" in risky:
            continue
        yield [f"--{name}=x"] if kind == "required" else [f"--{name}"]
        if kind == "required":
            yield [f"--{name}", "x"]
        if table.negate and kind == "none":
            yield [f"--no-{name}"]
        if not table.abbreviate:
            continue
        for cut in range(1, len(name)):
            prefix = name[:cut]
            owners = [n for n in longs if n.startswith(prefix)]
            if owners == [name] and not any(r.startswith(f"--{prefix}") for r in risky):
                yield [f"--{prefix}=x"] if kind == "required" else [f"--{prefix}"]
                break


@pytest.mark.parametrize("label", sorted(TABLES))
def test_benign_options_still_allowed(label: str) -> None:
    program, _, sub = label.partition(" ")
    table = TABLES[label][1]
    policy = _policy()
    refused = []
    count = 0
    for spelling in benign_corpus(table):
        count += 1
        args = [*([sub] if sub else []), *spelling]
        try:
            policy.check_arguments(program, args)
        except ToolError as exc:
            refused.append(f"{args}: {exc}")
    assert count > 10
    assert not refused, f"{len(refused)} benign spellings refused, e.g. {refused[:5]}"


@pytest.mark.parametrize("program", sorted(FOLLOWING))
def test_symlink_following_options_only_in_the_sandbox(program: str) -> None:
    table = FOLLOWING[program]
    policy = _policy()
    for option in table.follows_links:
        for spelling in spellings(table, option):
            with pytest.raises(ToolError, match="only in the OS sandbox"):
                policy.check_arguments(program, spelling)
            policy.check_arguments(program, spelling, sandboxed=True)


def test_find_words_and_awk_without_sandbox_mode() -> None:
    policy = _policy()
    for word in opts.FIND_DANGEROUS:
        with pytest.raises(ToolError, match="is not allowed"):
            policy.check_arguments("find", [".", "-name", "x", word, "y"], sandboxed=True)
    for word in opts.FIND_FOLLOWS:
        with pytest.raises(ToolError, match="only in the OS sandbox"):
            policy.check_arguments("find", [word, "."] if word == "-L" else [".", word])
        policy.check_arguments("find", [word, "."], sandboxed=True)
    mawk = shutil.which("mawk")
    assert mawk, "mawk (Debian's default awk) is a test requirement"
    with pytest.raises(ToolError, match="has no sandbox mode"):
        policy.check_arguments("awk", ['BEGIN { system("id") }'], program=mawk)
    assert policy.check_arguments("awk", ["{ print }"], program=mawk, sandboxed=True)[0] == ["{ print }"]
    assert policy.check_arguments("gawk", ["{ print }"], program="/usr/bin/gawk")[0] == ["--sandbox", "{ print }"]


def test_safety_options_are_added() -> None:
    policy = _policy()
    assert policy.check_arguments("sed", ["-n", "p", "f"])[0] == ["--sandbox", "-n", "p", "f"]
    assert policy.check_arguments("tar", ["xf", "a.tar"])[0] == ["xf", "a.tar", "--force-local"]
    assert policy.check_arguments("tar", ["-cf", "a.tar", "--", "-x"])[0] == [
        "-cf",
        "a.tar",
        "--force-local",
        "--",
        "-x",
    ]
    assert policy.check_arguments("diff", ["-r", "a", "b"])[0] == ["--no-dereference", "-r", "a", "b"]
    assert policy.check_arguments("diff", ["-r", "a", "b"], sandboxed=True)[0] == ["-r", "a", "b"]
    assert policy.check_arguments("git", ["diff", "HEAD"]) == (["diff", "--no-ext-diff", "HEAD"], "diff")


def test_options_after_dashdash_are_operands() -> None:
    policy = _policy()
    assert policy.check_arguments("git", ["grep", "-e", "x", "--", "-O"])[1] == "grep"
    assert policy.check_arguments("grep", ["-e", "x", "--", "-R"])[0] == ["-e", "x", "--", "-R"]


@pytest.mark.asyncio
async def test_the_reported_attack_no_longer_runs(workspace: Path, ctx: ToolContext, tmp_path: Path) -> None:
    """``git grep -nO<cmd>`` and ``--open=<cmd>`` ran the value as a command on main."""
    (workspace / "a.txt").write_text("needle\n")
    tool = ExecRun({"allowed_programs": ["git"], "sandbox": "off"})
    assert (await tool.run(tool.Params(command="git init -q"), ctx)).ok
    for command in (
        ["git", "grep", "--no-index", "-nOtouch pwned-cluster", "needle"],
        ["git", "grep", "--no-index", "--open=touch pwned-abbrev", "needle"],
        ["git", "grep", "--no-index", "--open-files=touch pwned-abbrev2", "needle"],
    ):
        with pytest.raises(ToolError, match="open-files-in-pager|-O"):
            await tool.run(tool.Params(command=command), ctx)
    assert not list(tmp_path.glob("**/pwned*"))


# -- the tables mirror the installed programs -----------------------------------------------------

GNU = ("grep", "sed", "tar", "ls", "cp", "du", "wc", "sort", "diff")
_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C", "LC_ALL": "C"}


def _run(argv: list[str], cwd: Path) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=_ENV, stdin=subprocess.DEVNULL, timeout=10)
    return done.stdout + done.stderr


def _probe_short(program: str, letter: str, cwd: Path) -> str | None:
    text = _run([program, f"-{letter}"], cwd)
    if any(bad in text for bad in ("invalid option", "not supported by *this* tar", "PROGRAM ERROR")):
        return None
    if "requires an argument" in text:
        return "required"
    attached = _run([program, f"-{letter}%"], cwd)
    return "none" if "invalid option -- '%'" in attached else "optional"


@pytest.mark.parametrize("program", GNU)
def test_gnu_tables_match_the_installed_program(program: str, tmp_path: Path) -> None:
    path = shutil.which(program, path=_ENV["PATH"])
    assert path, f"{program} is part of the base system and a test requirement"
    table = opts.PROGRAMS[program]
    for letter in string.ascii_letters + string.digits:
        if program == "diff" and letter == "v":
            continue  # --version exits before getopt sees the rest
        kind = _probe_short(program, letter, tmp_path)
        if kind is not None:
            assert table.shorts.get(letter) == kind, f"{program} -{letter}: the program says {kind}"
    help_text = _run([program, "--help"], tmp_path)
    listed = {m.group(1) for m in re.finditer(r"--([a-z0-9][a-z0-9-]*)", help_text)}
    for name in listed:
        if _run([program, f"--{name}"], tmp_path).count("unrecognized option"):
            continue  # only mentioned in a description
        assert name in table.longs, f"{program} --{name} is missing from the table"
        text = _run([program, f"--{name}"], tmp_path)
        if "requires an argument" in text:
            assert table.longs[name] == "required", f"{program} --{name} takes a value"
        elif table.longs[name] == "required":
            pytest.fail(f"{program} --{name} takes no required value")


_GIT_OPTION = re.compile(r"^\s{2,6}(-[^\s].*?)(?:\s{2,}.*)?$")


@pytest.mark.parametrize("sub", sorted(opts.GIT))
def test_git_tables_match_git_help(sub: str, tmp_path: Path) -> None:
    text = _run(["git", sub, "-h"], tmp_path)
    table = opts.GIT[sub]
    for line in text.splitlines():
        match = _GIT_OPTION.match(line)
        if not match or line.lstrip().startswith("or:"):
            continue
        parts = match.group(1).split(", ")
        last = re.match(r"^(-{1,2}[^\s\[=<]+)(\[=?<[^\]]*\]|\[[^\s]*\]|=<[^>]*>| <[^>]*>| \S+\|\S+)?", parts[-1])
        if not last:
            continue
        tail = last.group(2) or ""
        kind = "optional" if tail.startswith("[") else "required" if tail else "none"
        for part in parts:
            name = re.match(r"^(-{1,2}[A-Za-z0-9][^\s\[=<]*)", part)
            if not name:
                continue
            option = name.group(1)
            if option.startswith("--"):
                assert table.longs.get(option[2:]) == kind, f"git {sub} {option}: git says {kind}"
            elif len(option) == 2:
                assert table.shorts.get(option[1]) == kind, f"git {sub} {option}: git says {kind}"


EVERYDAY: list[tuple[list[str], int, str]] = [
    (["grep", "-rn", "needle", "."], 0, "./a.txt:1:needle"),
    (["grep", "-c", "--ignore-c", "NEEDLE", "a.txt"], 0, "1"),
    (["sed", "-n", "1p", "a.txt"], 0, "needle"),
    (["sed", "-i.bak", "s/needle/pin/", "a.txt"], 0, ""),
    (["tar", "czf", "a.tgz", "a.txt", "d"], 0, ""),
    (["tar", "-tzf", "a.tgz"], 0, "a.txt"),
    (["ls", "-la", "--sort=size", "d"], 0, "inner.txt"),
    (["sort", "-u", "b.txt"], 0, "hay"),
    (["wc", "-l", "b.txt"], 0, "2 b.txt"),
    (["diff", "-u", "a.txt.bak", "a.txt"], 1, "+pin"),
    (["diff", "-r", "d", "e"], 2, "No such file"),
    (["cp", "-r", "d", "e"], 0, ""),
    (["du", "-s", "--apparent-size", "e"], 0, "e"),
    (["find", ".", "-name", "*.txt", "-newer", "b.txt"], 0, ""),
]


@pytest.mark.asyncio
async def test_everyday_commands_still_run(workspace: Path, ctx: ToolContext, sandbox_mode: str) -> None:
    (workspace / "a.txt").write_text("needle\n")
    (workspace / "b.txt").write_text("hay\nhay\n")
    (workspace / "d").mkdir()
    (workspace / "d" / "inner.txt").write_text("x\n")
    tool = ExecRun({"allowed_programs": ALL, "sandbox": sandbox_mode})
    for command, code, expected in EVERYDAY:
        result = await tool.run(tool.Params(command=command), ctx)
        assert result.data["exit_code"] == code, (command, result.output)
        assert expected in result.data["stdout"] + result.data["stderr"], (command, result.output)
    assert (workspace / "a.txt").read_text() == "pin\n" and (workspace / "e" / "inner.txt").is_file()


def test_git_help_and_generic_options() -> None:
    policy = _policy()
    for command in (["--help"], ["help", "log"], ["log", "--help"], ["grep", "--help", "x"]):
        with pytest.raises(ToolError):
            policy.check_arguments("git", command)
    assert policy.check_arguments("git", ["--version"]) == (["--version"], "")  # isolated like every git call
    assert policy.check_arguments("git", ["grep", "-h", "x"])[1] == "grep"  # -h: no file names
    for arg in ("--pre=cmd", "--pre", "--exec=cmd", "--exe", "--to-comm=x", "--use-compress=x"):
        with pytest.raises(ToolError, match="run other commands"):
            policy.check_arguments("pytest", [arg])
    for arg in ("--prefix=x", "--preserve", "--text", "--exclude=x", "-k", "expr"):
        policy.check_arguments("pytest", [arg])
