"""The injection corpus: chaining, redirection, substitution, env tricks and argument smuggling.

Every attempt is refused with one clear line, and nothing outside the workspace changes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from refactorbot.errors import ToolError
from refactorbot.tools import ToolContext
from refactorbot_tools_exec import ExecRun

CONFIG = {
    "allowed_programs": [
        "ls",
        "cat",
        "echo",
        "python",
        "python3",
        "git",
        "grep",
        "wc",
        "pytest",
        "find",
        "tar",
        "env",
        "bash",
    ],
}

INJECTIONS: list[str | list[str]] = [
    # chaining
    "echo hi; touch ../pwned",
    "echo hi && touch ../pwned",
    "echo hi || touch ../pwned",
    "echo hi & touch ../pwned",
    "echo hi\ntouch ../pwned",
    "echo hi\rtouch ../pwned",
    ["echo", "hi;", "touch", "../pwned"],
    # pipes and redirection
    "cat secret | tee ../pwned",
    "echo PWNED > ../pwned",
    "echo PWNED >> ../sentinel/secret.txt",
    "cat < /etc/passwd",
    "echo PWNED 2>../pwned",
    ["echo", "PWNED", ">", "../pwned"],
    # substitution
    "echo $(touch ../pwned)",
    "echo `touch ../pwned`",
    "echo ${IFS}",
    "echo <(id)",
    # environment tricks
    "FOO=bar ls",
    "LD_PRELOAD=/tmp/evil.so ls",
    "PATH=/tmp ls",
    "env touch ../pwned",
    "env -i bash -c id",
    # shells, launchers and paths to programs
    "bash -c 'touch ../pwned'",
    "sh -c id",
    "xargs touch",
    "/bin/touch ../pwned",
    "./evil.sh",
    "../../bin/sh",
    "touch pwned",
    # argument smuggling
    "git -c core.sshCommand='touch ../pwned' fetch origin",
    "git -c core.pager='touch ../pwned' log",
    "git --upload-pack='touch ../pwned' clone x",
    "git clone --upload-pack=touch x y",
    "git clone ext::sh -c touch% ../pwned",
    "git -C /tmp status",
    "git --git-dir=/tmp/x status",
    "git --exec-path=/tmp status",
    "git config core.hooksPath ../hooks",
    "git grep -Otouch x",
    "git grep --open-files-in-pager=touch x",
    "find . -exec touch ../pwned ;",
    "find . -execdir touch {} +",
    ["find", ".", "-exec", "touch", "../pwned", "+"],
    "find . -delete",
    "find . -fprint ../pwned",
    "tar --to-command=sh -xf a.tar",
    "tar --checkpoint-action=exec=sh -cf a.tar .",
    'python -c \'open("../pwned","w")\'',
    "python3 -Ic 'import os'",
    "python -m http.server",
    "python3 -mhttp.server",
    # paths outside the workspace
    "cat /etc/passwd",
    "cat ../sentinel/secret.txt",
    "grep -r secret ..",
    "ls ~",
    "cat ~/secret",
    "grep -f/etc/passwd x",
    "grep --file=/etc/shadow x",
    "cat out/secret.txt",
    "ls C:\\\\Windows",
    # control characters
    ["echo", "a\x00b"],
]


def test_corpus_is_large_and_distinct() -> None:
    assert len(INJECTIONS) >= 30
    assert len({repr(c) for c in INJECTIONS}) == len(INJECTIONS)


@pytest.mark.asyncio
@pytest.mark.parametrize("command", INJECTIONS, ids=[repr(c)[:40] for c in INJECTIONS])
async def test_injection_refused(
    command: str | list[str], tmp_path: Path, workspace: Path, sentinel: Path, ctx: ToolContext, outside
) -> None:
    (workspace / "out").symlink_to(sentinel)
    before = outside()
    tool = ExecRun(CONFIG)
    with pytest.raises(ToolError) as err:
        await tool.run(tool.Params(command=command), ctx)
    message = str(err.value)
    assert message and "\n" not in message and len(message) < 400
    assert outside() == before
    assert not list(tmp_path.glob("**/pwned*"))


@pytest.mark.asyncio
async def test_error_messages_say_why(ctx: ToolContext) -> None:
    tool = ExecRun(CONFIG)
    cases = {
        "echo a && echo b": "commands run without a shell",
        "FOO=1 ls": "environment assignments",
        "bash -c id": "never allowed",
        "rm -rf x": "not allowed (allowed:",
        "/bin/ls": "not a path",
        "git -c a=b log": "before the subcommand",
        "git push": "'git push' is not allowed",
        "python -c 1": "inline code",
        "cat /etc/passwd": "outside the workspace",
        "echo 'unclosed": "cannot parse",
        "": "empty",
    }
    for command, fragment in cases.items():
        with pytest.raises(ToolError, match=fragment.replace("(", r"\(")):
            await tool.run(tool.Params(command=command), ctx)


@pytest.mark.asyncio
async def test_python_c_allowed_only_when_configured(workspace: Path, ctx: ToolContext) -> None:
    tool = ExecRun({"allowed_programs": ["python3"], "allow_python_c": True})
    result = await tool.run(tool.Params(command=["python3", "-c", "print(6 * 7)"]), ctx)
    assert result.ok and result.data["stdout"] == "42\n"
