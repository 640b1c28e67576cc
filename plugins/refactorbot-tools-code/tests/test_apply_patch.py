"""``apply_patch`` on real files and real git repositories: all files or none."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from refactorbot import ToolError
from refactorbot.tools import ToolContext
from refactorbot_tools_code import ApplyPatch


async def apply(ctx: ToolContext, patch: str, **extra: object) -> str:
    tool = ApplyPatch({})
    result = await tool.run(tool.Params.model_validate({"patch": patch, **extra}), ctx)
    assert result.ok, result.error
    return result.output


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` except git's metadata, with its bytes."""
    found: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] == ".git" or not path.is_file():
            continue
        found[str(rel)] = path.read_bytes()
    return found


def three_files(workspace: Path) -> None:
    (workspace / "one.py").write_text("def one():\n    return 1\n")
    (workspace / "two.txt").write_bytes(b"alpha\r\nbeta\r\ngamma\r\n")  # CRLF kept byte for byte
    (workspace / "three.py").write_text("def three():\n    return 3\n")


THIRD_FAILS = """\
--- a/one.py
+++ b/one.py
@@ -1,2 +1,2 @@
 def one():
-    return 1
+    return 11
--- a/two.txt
+++ b/two.txt
@@ -1,3 +1,3 @@
 alpha
-beta
+BETA
 gamma
--- a/three.py
+++ b/three.py
@@ -1,2 +1,2 @@
 def three():
-    return 4
+    return 44
"""


@pytest.mark.asyncio
async def test_third_file_fails_first_two_untouched_byte_for_byte(workspace: Path, ctx: ToolContext, repo) -> None:
    three_files(workspace)
    repo("add", "-A")
    repo("commit", "-q", "-m", "three files")
    before = snapshot(workspace)
    tool = ApplyPatch({})
    with pytest.raises(ToolError) as caught:
        await tool.run(tool.Params(patch=THIRD_FAILS), ctx)
    message = str(caught.value)
    assert "three.py: hunk 1" in message and "'    return 4'" in message and "'    return 3'" in message
    assert "\n" not in message
    assert snapshot(workspace) == before
    assert repo("status", "--porcelain") == ""


@pytest.mark.asyncio
async def test_same_patch_fixed_applies_all_three(workspace: Path, ctx: ToolContext) -> None:
    three_files(workspace)
    output = await apply(ctx, THIRD_FAILS.replace("return 4\n", "return 3\n"))
    assert "modified one.py" in output and "modified three.py" in output
    assert (workspace / "one.py").read_text() == "def one():\n    return 11\n"
    assert (workspace / "two.txt").read_bytes() == b"alpha\r\nBETA\r\ngamma\r\n"
    assert (workspace / "three.py").read_text() == "def three():\n    return 44\n"


WRITE_FAILS = r"""
import asyncio, resource, signal, sys
from pathlib import Path
from refactorbot import ToolError
from refactorbot.tools import ToolContext
from refactorbot_tools_code import ApplyPatch

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
tool = ApplyPatch({})
try:
    asyncio.run(tool.run(tool.Params(patch=sys.stdin.read()), ToolContext(workspace=Path(sys.argv[1]))))
except ToolError as exc:
    print(exc)
    sys.exit(3)
"""


def test_write_failure_on_third_file_restores_the_first_two(workspace: Path, tmp_path: Path, repo) -> None:
    """The third file's write really fails (the OS refuses it: RLIMIT_FSIZE); the first two are restored."""
    three_files(workspace)
    repo("add", "-A")
    repo("commit", "-q", "-m", "three files")
    before = snapshot(workspace)
    big = "".join(f"+line {n:05d} " + "x" * 60 + "\n" for n in range(100))  # ~7 KB, over the 4 KB limit
    patch = THIRD_FAILS.replace("return 4\n", "return 3\n") + "--- /dev/null\n+++ b/big.txt\n@@ -0,0 +1,100 @@\n" + big
    script = tmp_path / "apply.py"
    script.write_text(WRITE_FAILS)
    done = subprocess.run(
        [sys.executable, str(script), str(workspace)], input=patch, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 3, done.stderr
    assert "writing 'big.txt' failed" in done.stdout and "every file was restored" in done.stdout
    assert snapshot(workspace) == before
    assert repo("status", "--porcelain", "--untracked-files=all") == ""
    leftovers = [p.name for p in workspace.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


@pytest.mark.asyncio
async def test_patch_made_by_git_diff_round_trips(workspace: Path, ctx: ToolContext, repo) -> None:
    src = workspace / "src"
    src.mkdir()
    (src / "app.py").write_text("".join(f"def f{n}():\n    return {n}\n\n\n" for n in range(30)))
    (src / "old_name.py").write_text("X = 1\n")
    (src / "gone.txt").write_text("bye\n")
    (workspace / "script.sh").write_text("echo hi\n")
    repo("add", "-A")
    repo("commit", "-q", "-m", "base")
    # make changes with git's help, capture the diff, then undo them
    app = (src / "app.py").read_text().replace("return 3\n", "return 33\n").replace("return 25\n", "return 'x'\n")
    (src / "app.py").write_text(app)
    repo("mv", "src/old_name.py", "src/new_name.py")
    (src / "new_name.py").write_text("X = 1\nY = 2\n")
    repo("rm", "-q", "src/gone.txt")
    (src / "pkg").mkdir()
    (src / "pkg" / "__init__.py").write_text('"""A package."""\n')
    os.chmod(workspace / "script.sh", 0o755)
    repo("add", "-A")
    patch = repo("diff", "--cached", "-M", "HEAD")
    wanted = snapshot(workspace)
    repo("reset", "-q", "--hard", "HEAD")
    os.chmod(workspace / "script.sh", 0o644)
    assert snapshot(workspace) != wanted

    output = await apply(ctx, patch)
    assert "renamed src/old_name.py -> src/new_name.py" in output
    assert "deleted src/gone.txt" in output and "created src/pkg/__init__.py" in output
    assert snapshot(workspace) == wanted
    assert os.stat(workspace / "script.sh").st_mode & 0o777 == 0o755
    repo("add", "-A")
    assert repo("diff", "--cached", "-M", "HEAD") == patch


@pytest.mark.asyncio
async def test_offsets_are_found_and_reported(workspace: Path, ctx: ToolContext) -> None:
    lines = [f"line {n}" for n in range(1, 41)]
    (workspace / "f.txt").write_text("\n".join(lines) + "\n")
    patch = "--- a/f.txt\n+++ b/f.txt\n@@ -10,3 +10,3 @@\n line 20\n-line 21\n+LINE 21\n line 22\n"
    output = await apply(ctx, patch)
    assert "hunk 1 applied at line 20 (offset +10)" in output
    assert (workspace / "f.txt").read_text().splitlines()[20] == "LINE 21"


@pytest.mark.asyncio
async def test_ambiguous_hunk_is_refused_never_guessed(workspace: Path, ctx: ToolContext) -> None:
    (workspace / "f.py").write_text("a = 1\nreturn_value = 0\nb = 2\nreturn_value = 0\nc = 3\n")
    before = (workspace / "f.py").read_bytes()
    tool = ApplyPatch({})
    # stated at line 3, equally near to the copies at lines 2 and 4
    patch = "--- a/f.py\n+++ b/f.py\n@@ -3 +3 @@\n-return_value = 0\n+return_value = 1\n"
    with pytest.raises(ToolError, match=r"matches at lines 2, 4, none clearly the one meant"):
        await tool.run(tool.Params(patch=patch), ctx)
    assert (workspace / "f.py").read_bytes() == before


@pytest.mark.asyncio
async def test_wrong_hunk_counts_from_a_model_are_tolerated(workspace: Path, ctx: ToolContext) -> None:
    (workspace / "m.py").write_text("def f():\n    x = 1\n    return x\n")
    patch = "--- m.py\n+++ m.py\n@@ -1,9 +1,2 @@\n def f():\n-    x = 1\n+    x = 2\n     return x\n\n\n"
    await apply(ctx, patch)
    assert (workspace / "m.py").read_text() == "def f():\n    x = 2\n    return x\n"


@pytest.mark.asyncio
async def test_trailing_whitespace_difference_is_matched_and_said(workspace: Path, ctx: ToolContext) -> None:
    (workspace / "w.txt").write_text("keep   \nchange\n")
    patch = "--- a/w.txt\n+++ b/w.txt\n@@ -1,2 +1,2 @@\n keep\n-change\n+changed\n"
    output = await apply(ctx, patch)
    assert "matched ignoring trailing whitespace" in output
    assert (workspace / "w.txt").read_text() == "keep   \nchanged\n"


@pytest.mark.asyncio
async def test_no_newline_at_end_of_file_both_ways(workspace: Path, ctx: ToolContext) -> None:
    (workspace / "n.txt").write_bytes(b"a\nb")
    patch = "--- a/n.txt\n+++ b/n.txt\n@@ -1,2 +1,3 @@\n a\n-b\n\\ No newline at end of file\n+b\n+c\n"
    await apply(ctx, patch)
    assert (workspace / "n.txt").read_bytes() == b"a\nb\nc\n"
    patch = "--- a/n.txt\n+++ b/n.txt\n@@ -2,2 +2,2 @@\n b\n-c\n+d\n\\ No newline at end of file\n"
    await apply(ctx, patch)
    assert (workspace / "n.txt").read_bytes() == b"a\nb\nd"


@pytest.mark.asyncio
async def test_syntax_error_refuses_the_whole_patch(workspace: Path, ctx: ToolContext) -> None:
    (workspace / "ok.txt").write_text("one\n")
    (workspace / "mod.py").write_text("def f():\n    return 1\n")
    before = snapshot(workspace)
    patch = textwrap.dedent("""\
        --- a/ok.txt
        +++ b/ok.txt
        @@ -1 +1 @@
        -one
        +two
        --- a/mod.py
        +++ b/mod.py
        @@ -1,2 +1,2 @@
        -def f():
        +def f(:
             return 1
        """)
    tool = ApplyPatch({})
    with pytest.raises(ToolError) as caught:
        await tool.run(tool.Params(patch=patch), ctx)
    assert "mod.py:1:" in str(caught.value) and "nothing was written" in str(caught.value)
    assert snapshot(workspace) == before
    output = await apply(ctx, patch, allow_syntax_errors=True)
    assert "written although not valid Python: mod.py:1:" in output
    assert (workspace / "mod.py").read_text().startswith("def f(:")


@pytest.mark.asyncio
async def test_dry_run_writes_nothing(workspace: Path, ctx: ToolContext) -> None:
    (workspace / "a.txt").write_text("x\n")
    output = await apply(ctx, "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-x\n+y\n", dry_run=True)
    assert "applies cleanly" in output
    assert (workspace / "a.txt").read_text() == "x\n"


@pytest.mark.parametrize(
    ("patch", "reason"),
    [
        ("--- a/../outside.txt\n+++ b/../outside.txt\n@@ -0,0 +1 @@\n+x\n", "'..' is not allowed"),
        ("--- /dev/null\n+++ /etc/passwd\n@@ -0,0 +1 @@\n+x\n", "absolute paths are not allowed"),
        ("--- /dev/null\n+++ b/.git/hooks/pre-commit\n@@ -0,0 +1 @@\n+x\n", "version-control metadata"),
        ("--- a/.git/config\n+++ b/.git/config\n@@ -1 +1 @@\n-a\n+b\n", "version-control metadata"),
        ("--- /dev/null\n+++ b/link/x.txt\n@@ -0,0 +1 @@\n+x\n", "points outside the workspace"),
        ("--- /dev/null\n+++ b/README.md\n@@ -0,0 +1 @@\n+x\n", "already exists"),
        ("--- a/missing.txt\n+++ b/missing.txt\n@@ -1 +1 @@\n-a\n+b\n", "does not exist"),
        ("hello there\n", "no file changes found"),
        ("--- a/README.md\n+++ b/README.md\n-# demo\n", "outside any hunk"),
        ("diff --git a/i.png b/i.png\nBinary files a/i.png and b/i.png differ\n", "binary patches are not supported"),
        (
            "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+/etc/passwd\n",
            "symlinks and submodules are not supported",
        ),
        (
            "--- /dev/null\n+++ b/d\n@@ -0,0 +1 @@\n+x\n--- /dev/null\n+++ b/d/e\n@@ -0,0 +1 @@\n+y\n",
            "cannot both be files",
        ),
        (
            "--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-# demo\n+a\n--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-# demo\n+b\n",
            "appears twice",
        ),
    ],
)
@pytest.mark.asyncio
async def test_refusals_change_nothing_anywhere(
    workspace: Path, ctx: ToolContext, repo, sentinel: Path, outside, patch: str, reason: str
) -> None:
    (workspace / "link").symlink_to(sentinel)
    before, around = snapshot(workspace), outside()
    git_config = (workspace / ".git" / "config").read_bytes()
    tool = ApplyPatch({})
    with pytest.raises(ToolError, match=reason) as caught:
        await tool.run(tool.Params(patch=patch), ctx)
    assert "\n" not in str(caught.value)
    assert snapshot(workspace) == before and outside() == around
    assert (workspace / ".git" / "config").read_bytes() == git_config


@pytest.mark.asyncio
async def test_a_git_worktree_is_a_workspace_like_any_other(tmp_path: Path, repo, git, workspace: Path) -> None:
    (workspace / "lib.py").write_text("VALUE = 1\n")
    repo("add", "-A")
    repo("commit", "-q", "-m", "lib")
    tree = tmp_path / "tree"
    repo("worktree", "add", "-q", "-b", "task-1", str(tree))
    ctx = ToolContext(workspace=tree)
    await apply(ctx, "--- a/lib.py\n+++ b/lib.py\n@@ -1 +1 @@\n-VALUE = 1\n+VALUE = 2\n")
    assert (tree / "lib.py").read_text() == "VALUE = 2\n"
    assert (workspace / "lib.py").read_text() == "VALUE = 1\n"
    git(tree, "commit", "-qam", "task 1")
    assert git(tree, "log", "--format=%s", "-1").strip() == "task 1"
    tool = ApplyPatch({})
    with pytest.raises(ToolError, match="version-control metadata"):
        await tool.run(tool.Params(patch="--- /dev/null\n+++ b/.git\n@@ -0,0 +1 @@\n+gitdir: /tmp\n"), ctx)
