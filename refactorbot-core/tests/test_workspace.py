"""Tests of ``refactorbot.workspace``: path confinement, race-safe opening and atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from refactorbot.errors import PathOutsideWorkspace
from refactorbot.workspace import Workspace, atomic_write


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws")


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.txt").write_text("secret")
    return folder


def test_root_is_created_and_real(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    ws = Workspace(tmp_path / "alias")
    assert ws.root == (tmp_path / "real").resolve()
    assert Workspace(tmp_path / "new" / "deep").root.is_dir()


@pytest.mark.parametrize(
    ("user_path", "expected"),
    [
        ("a.txt", "a.txt"),
        ("./a.txt", "a.txt"),
        ("dir/sub/file.py", "dir/sub/file.py"),
        ("dir//file", "dir/file"),
        ("dir/./file", "dir/file"),
        ("dir/", "dir"),
        (".", "."),
        ("...hidden", "...hidden"),
        (".env", ".env"),
        ("naïve café.txt", "naïve café.txt"),
    ],
)
def test_accepted_paths(ws: Workspace, user_path: str, expected: str) -> None:
    resolved = ws.resolve(user_path)
    assert ws.relative(resolved) == expected
    assert ws.contains(resolved)


@pytest.mark.parametrize(
    ("user_path", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("/etc/passwd", "absolute"),
        ("//etc", "absolute"),
        ("../x", "'..'"),
        ("a/../../x", "'..'"),
        ("a/..", "'..'"),
        ("a\x00b", "NUL"),
        ("a\nb", "control"),
        ("a\u202eb", "control"),
        ("..\\x", "backslash"),
        ("C:\\x", "backslash"),
        ("C:x", "drive"),
        ("\\\\server\\share", "backslash"),
        ("~/x", "'~'"),
        ("~root/x", "'~'"),
        ("$HOME/x", "'$'"),
        ("%2e%2e/x", "percent"),
        ("\uff0e\uff0e/x", "look-alike"),
        ("\u2024\u2024/x", "look-alike"),
        ("a\uff0fb", "separator"),
        ("...", "dots"),
        (". .", "dots"),
        (" a", "whitespace"),
        ("x" * 256, "255 bytes"),
        ("a/" * 600, "too long"),
        ("/".join(["d"] * 65), "too deep"),
    ],
)
def test_refused_paths(ws: Workspace, user_path: str, fragment: str) -> None:
    with pytest.raises(PathOutsideWorkspace) as err:
        ws.resolve(user_path)
    message = str(err.value)
    assert fragment in message
    assert "\n" not in message


def test_non_string_refused(ws: Workspace) -> None:
    with pytest.raises(PathOutsideWorkspace, match="must be a string"):
        ws.resolve(b"x")  # type: ignore[arg-type]


def test_symlinks_inside_are_followed(ws: Workspace) -> None:
    (ws.root / "real").mkdir()
    (ws.root / "real" / "f.txt").write_text("x")
    (ws.root / "link").symlink_to("real")
    (ws.root / "flink").symlink_to("real/f.txt")
    assert ws.resolve("link/f.txt") == ws.root / "real" / "f.txt"
    assert ws.resolve("flink") == ws.root / "real" / "f.txt"
    assert ws.resolve("link/new.txt") == ws.root / "real" / "new.txt"


def test_symlinks_outside_refused(ws: Workspace, outside: Path) -> None:
    (ws.root / "out").symlink_to(outside)
    (ws.root / "sec").symlink_to(outside / "secret.txt")
    (ws.root / "dangling").symlink_to(outside / "missing")
    for path in ("out", "out/secret.txt", "out/new.txt", "sec"):
        with pytest.raises(PathOutsideWorkspace, match="points outside"):
            ws.resolve(path)
    with pytest.raises(PathOutsideWorkspace, match="broken or loops"):
        ws.resolve("dangling")


def test_symlink_loop_refused(ws: Workspace) -> None:
    (ws.root / "a").symlink_to("b")
    (ws.root / "b").symlink_to("a")
    with pytest.raises(PathOutsideWorkspace, match="broken or loops"):
        ws.resolve("a/x")


def test_file_used_as_folder_refused(ws: Workspace) -> None:
    (ws.root / "file").write_text("x")
    with pytest.raises(PathOutsideWorkspace, match="not a directory"):
        ws.resolve("file/x")


def test_devices_and_fifos_refused(ws: Workspace) -> None:
    os.mkfifo(ws.root / "pipe")
    (ws.root / "null").symlink_to("/dev/null")
    with pytest.raises(PathOutsideWorkspace, match="devices, pipes"):
        ws.resolve("pipe")
    with pytest.raises(PathOutsideWorkspace, match="outside"):
        ws.resolve("null")


def test_open_file_reads_regular_files(ws: Workspace) -> None:
    (ws.root / "f.txt").write_text("hello")
    fd = ws.open_file(ws.resolve("f.txt"))
    with os.fdopen(fd, "rb") as handle:
        assert handle.read() == b"hello"


def test_open_file_refuses_swap_to_symlink(ws: Workspace, outside: Path) -> None:
    (ws.root / "f.txt").write_text("hello")
    checked = ws.resolve("f.txt")
    (ws.root / "f.txt").unlink()
    (ws.root / "f.txt").symlink_to(outside / "secret.txt")  # swapped after the check
    with pytest.raises(PathOutsideWorkspace, match="symlink"):
        ws.open_file(checked)


def test_open_dir_refuses_parent_swapped_for_symlink(ws: Workspace, outside: Path) -> None:
    (ws.root / "d").mkdir()
    checked = ws.resolve("d/new.txt")
    (ws.root / "d").rmdir()
    (ws.root / "d").symlink_to(outside)  # swapped after the check
    with pytest.raises(PathOutsideWorkspace, match="changed into a symlink"):
        ws.write_file(checked, "x")
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_open_file_refuses_fifo_without_blocking(ws: Workspace) -> None:
    os.mkfifo(ws.root / "pipe")
    with pytest.raises(PathOutsideWorkspace, match="not a regular file"):
        ws.open_file(ws.root / "pipe")


def test_write_file_creates_parents_atomically(ws: Workspace) -> None:
    target = ws.resolve("a/b/c.txt")
    ws.write_file(target, "content")
    assert target.read_text() == "content"
    ws.write_file(target, b"bytes")
    assert target.read_bytes() == b"bytes"
    assert sorted(p.name for p in target.parent.iterdir()) == ["c.txt"]  # no temp files left


def test_write_file_without_parents_fails(ws: Workspace) -> None:
    with pytest.raises(FileNotFoundError):
        ws.write_file(ws.resolve("missing/x.txt"), "x", create_dirs=False)


def test_atomic_write_replaces_symlink_instead_of_following(tmp_path: Path, outside: Path) -> None:
    link = tmp_path / "link.txt"
    link.symlink_to(outside / "secret.txt")
    atomic_write(link, "new")
    assert not link.is_symlink()
    assert link.read_text() == "new"
    assert (outside / "secret.txt").read_text() == "secret"


def test_atomic_write_keeps_mode_and_cleans_up_on_error(tmp_path: Path) -> None:
    target = tmp_path / "script.sh"
    target.write_text("old")
    target.chmod(0o750)
    atomic_write(target, "new")
    assert target.read_text() == "new"
    assert (target.stat().st_mode & 0o777) == 0o750
    with pytest.raises(OSError):
        atomic_write(tmp_path / "missing" / "x", "data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["script.sh"]


# -- version-control metadata is read-only -----------------------------------------------------


def _git(*args: str, cwd: Path) -> None:
    import subprocess

    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


@pytest.fixture
def repos(ws: Workspace) -> Workspace:
    """A workspace with a real repository, a bare one, and a '.git' file pointing to a third."""
    _git("init", "-q", cwd=ws.root)
    _git("init", "-q", "--bare", "bare.git", cwd=ws.root)
    _git("init", "-q", "--separate-git-dir", str(ws.root / "store"), "linked", cwd=ws.root)
    (ws.root / "sub").mkdir()
    (ws.root / "sub" / ".git").write_text("gitdir: ../store\n")
    (ws.root / "to-git").symlink_to(ws.root / ".git")
    return ws


VCS_PATHS = [
    ".git",
    ".git/config",
    ".git/hooks/pre-commit",
    ".git/new-folder/x",
    ".GIT/config",
    ".Git/HEAD",
    "sub/.git",
    "deep/er/.git/config",
    ".git./config",
    ".hg/hgrc",
    ".svn/entries",
    ".bzr/branch.conf",
    "bare.git/config",
    "bare.git/hooks/post-update",
    "store/config",
    "store/info/attributes",
    "linked/.git",
    "to-git/config",
]


@pytest.mark.parametrize("user_path", VCS_PATHS)
def test_vcs_metadata_refused_for_writing(repos: Workspace, user_path: str) -> None:
    with pytest.raises(PathOutsideWorkspace, match="metadata"):
        repos.resolve(user_path, write=True)


def test_vcs_metadata_refused_by_every_writing_primitive(repos: Workspace) -> None:
    config = repos.root / ".git" / "config"
    before = config.read_bytes()
    with pytest.raises(PathOutsideWorkspace, match="metadata"):
        repos.write_file(config, "[core]\n\thooksPath = /tmp\n")
    with pytest.raises(PathOutsideWorkspace, match="metadata"):
        repos.open_file(config, os.O_WRONLY | os.O_TRUNC)
    with pytest.raises(PathOutsideWorkspace, match="metadata"):
        repos.open_file(repos.root / "store" / "config", os.O_RDWR)
    with pytest.raises(PathOutsideWorkspace, match="metadata"):
        repos.open_dir(repos.root / ".git" / "hooks" / "new", create=True)
    with pytest.raises(PathOutsideWorkspace, match="metadata"):
        repos.write_file(repos.root / "a" / ".hg" / "hgrc", "x", create_dirs=True)
    assert config.read_bytes() == before
    assert not (repos.root / "a").exists()


def test_vcs_metadata_stays_readable(repos: Workspace) -> None:
    config = repos.resolve(".git/config")
    fd = repos.open_file(config)
    with os.fdopen(fd, "rb") as handle:
        assert b"[core]" in handle.read()
    assert repos.resolve("store/HEAD").is_file()


@pytest.mark.parametrize(
    "user_path",
    [".gitignore", ".gitattributes", ".github/workflows/ci.yml", "git/config", "my.git/config", "docs/.gitkeep", "x"],
)
def test_names_like_vcs_metadata_stay_writable(repos: Workspace, user_path: str) -> None:
    path = repos.resolve(user_path, write=True)
    repos.write_file(path, "ok\n")
    assert path.read_text() == "ok\n"
