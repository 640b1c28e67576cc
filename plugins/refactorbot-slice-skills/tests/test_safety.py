"""A corpus of malicious skills: each refused with one line, and nothing written outside the skills folder."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import QUIET, SKILLS, write_skill
from refactorbot.testing import host_running

LAUGHS = "\n".join(
    [
        "---",
        "name: lol",
        "description: laughs",
        "metadata:",
        '  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
    ]
    + [f"  {chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
    + ["---", "boom"]
)


def _md(root: Path, name: str, text: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text(text)
    return folder


def _zip(path: Path, members: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return path


def _ok_md(name: str) -> bytes:
    return f"---\nname: {name}\ndescription: fine\n---\nbody\n".encode()


def _symlink_member(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _lying_zip(path: Path) -> Path:
    """A member whose central directory declares 10 bytes while it holds 2 MiB of zeros."""
    data = b"\0" * (2 * 1024 * 1024)
    _zip(path, [("liar/SKILL.md", _ok_md("liar")), ("liar/assets/big.bin", data)])
    raw = bytearray(path.read_bytes())
    central = raw.rfind(b"PK\x01\x02")
    raw[central + 24 : central + 28] = (10).to_bytes(4, "little")  # uncompressed size in the central directory
    path.write_bytes(bytes(raw))
    return path


#: Each case builds one malicious skill folder under ``skills`` (or an archive next to it) and returns its path.
FOLDER_CASES: dict[str, Callable[[Path, Path], Path]] = {
    "python-object-tag": lambda s, o: _md(
        s, "tag1", "---\nname: tag1\ndescription: !!python/object/apply:os.system ['touch x']\n---\n"
    ),
    "python-name-tag": lambda s, o: _md(s, "tag2", "---\nname: !!python/name:os.system\ndescription: x\n---\n"),
    "custom-tag": lambda s, o: _md(s, "tag3", "---\nname: tag3\ndescription: !shell rm -rf /\n---\n"),
    "billion-laughs": lambda s, o: _md(s, "lol", LAUGHS),
    "deep-nesting": lambda s, o: _md(
        s, "deep", "---\nname: deep\ndescription: d\nmetadata: " + "[" * 40 + "]" * 40 + "\n---\n"
    ),
    "huge-front-matter": lambda s, o: _md(
        s,
        "huge",
        "---\nname: huge\ndescription: h\nmetadata:\n" + "".join(f"  k{i}: v\n" for i in range(5000)) + "---\n",
    ),
    "oversize-skill-md": lambda s, o: _md(s, "big", "---\nname: big\ndescription: b\n---\n" + "x" * (300 * 1024)),
    "traversal-name": lambda s, o: _md(s, "trav", "---\nname: ../../etc\ndescription: t\n---\n"),
    "name-differs-from-folder": lambda s, o: _md(s, "honest", "---\nname: other-skill\ndescription: t\n---\n"),
    "uppercase-name": lambda s, o: _md(s, "Shout", "---\nname: Shout\ndescription: t\n---\n"),
    "double-hyphen": lambda s, o: _md(s, "a--b", "---\nname: a--b\ndescription: t\n---\n"),
    "leading-hyphen": lambda s, o: _md(s, "-lead", "---\nname: -lead\ndescription: t\n---\n"),
    "name-too-long": lambda s, o: _md(s, "n" * 65, f"---\nname: {'n' * 65}\ndescription: t\n---\n"),
    "description-missing": lambda s, o: _md(s, "nodesc", "---\nname: nodesc\n---\n"),
    "description-too-long": lambda s, o: _md(s, "longdesc", f"---\nname: longdesc\ndescription: {'d' * 1025}\n---\n"),
    "no-front-matter": lambda s, o: _md(s, "plain", "# just markdown\n"),
    "unclosed-front-matter": lambda s, o: _md(s, "open", "---\nname: open\ndescription: o\n"),
    "front-matter-a-list": lambda s, o: _md(s, "listy", "---\n- name\n- description\n---\n"),
    "nul-byte": lambda s, o: _md(s, "nul", "---\nname: nul\ndescription: n\n---\n\x00"),
    "not-utf8": lambda s, o: _binary(s),
    "symlink-out": lambda s, o: _link(write_skill(s, "leak"), "refs", o),
    "symlinked-skill-md": lambda s, o: _linked_md(s, o),
    "skill-folder-is-symlink": lambda s, o: _linked_folder(s, o),
    "fifo-in-skill": lambda s, o: _fifo(write_skill(s, "pipe")),
    "oversize-asset": lambda s, o: _big_file(write_skill(s, "heavy")),
}

ZIP_CASES: dict[str, Callable[[Path], Path]] = {
    "zip-slip-dotdot": lambda d: _zip(
        d / "slip.zip", [("slip/SKILL.md", _ok_md("slip")), ("slip/../../../escaped.txt", b"x")]
    ),
    "zip-slip-absolute": lambda d: _zip(
        d / "abs.zip", [("abs/SKILL.md", _ok_md("abs")), ("/tmp/escaped-abs.txt", b"x")]
    ),
    "zip-slip-backslash": lambda d: _zip(
        d / "bs.zip", [("bs/SKILL.md", _ok_md("bs")), ("bs\\..\\..\\escaped.txt", b"x")]
    ),
    "zip-symlink-member": lambda d: _zip(
        d / "ln.zip", [("ln/SKILL.md", _ok_md("ln")), (_symlink_member("ln/passwd", "/etc/passwd"), b"/etc/passwd")]
    ),
    "zip-bomb-ratio": lambda d: _zip(
        d / "bomb.zip", [("bomb/SKILL.md", _ok_md("bomb")), ("bomb/assets/zeros.bin", b"\0" * (12 * 1024 * 1024))]
    ),
    "zip-lies-about-size": lambda d: _lying_zip(d / "liar.zip"),
    "zip-too-many-members": lambda d: _zip(
        d / "many.zip", [("many/SKILL.md", _ok_md("many"))] + [(f"many/f{i}", b"") for i in range(1001)]
    ),
    "zip-two-skills": lambda d: _zip(d / "two.zip", [("one/SKILL.md", _ok_md("one")), ("two/SKILL.md", _ok_md("two"))]),
    "zip-skill-md-at-top": lambda d: _zip(d / "top.zip", [("SKILL.md", _ok_md("top"))]),
    "zip-bad-folder-name": lambda d: _zip(d / "bad.zip", [("Bad Name/SKILL.md", _ok_md("bad-name"))]),
    "not-a-zip": lambda d: _write(d / "fake.zip", b"PK\x03\x04 this is not really a zip"),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _binary(root: Path) -> Path:
    folder = root / "binary"
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_bytes(b"---\nname: binary\ndescription: \xff\xfe\n---\n")
    return folder


def _link(folder: Path, name: str, outside: Path) -> Path:
    (folder / name).symlink_to(outside)
    return folder


def _linked_md(root: Path, outside: Path) -> Path:
    folder = root / "linked"
    folder.mkdir(parents=True)
    (outside / "SKILL.md").write_text("---\nname: linked\ndescription: from elsewhere\n---\n")
    (folder / "SKILL.md").symlink_to(outside / "SKILL.md")
    return folder


def _linked_folder(root: Path, outside: Path) -> Path:
    real = write_skill(outside, "elsewhere")
    (root / "elsewhere").symlink_to(real, target_is_directory=True)
    return root / "elsewhere"


def _fifo(folder: Path) -> Path:
    os.mkfifo(folder / "pipe")
    return folder


def _big_file(folder: Path) -> Path:
    with open(folder / "huge.bin", "wb") as handle:
        handle.truncate(17 * 1024 * 1024)  # sparse: over the 16 MiB file limit without writing it
    return folder


def test_the_corpus_has_at_least_thirty_cases() -> None:
    assert len(FOLDER_CASES) + len(ZIP_CASES) >= 30


def _snapshot(root: Path, *skip: Path) -> set[str]:
    """Return every path under ``root`` except in ``skip`` (the skills folder, the slices' databases)."""
    seen = set()
    for current, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if Path(current, d) not in skip]
        seen.update(os.path.join(current, n) for n in dirs + files)
    return seen


@pytest.mark.asyncio
async def test_every_malicious_folder_is_refused_with_one_line_and_listed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    skills, outside = home / "skills", tmp_path / "outside"
    skills.mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    paths = {case: build(skills, outside) for case, build in FOLDER_CASES.items()}
    write_skill(skills, "good")
    async with host_running(home, [SKILLS], config=QUIET) as host:
        listed = (await host.call("skills.list")).data["skills"]
        by_location = {s["location"]: s for s in listed}
        for case, path in paths.items():
            info = by_location[str(path)]
            assert info["status"] == "invalid", (case, info)
            assert info["reason"] and "\n" not in info["reason"], (case, info)
            checked = (await host.call("skills.validate", path=str(path))).data
            assert not checked["ok"] and "\n" not in checked["error"], (case, checked)
        assert [s["name"] for s in listed if s["status"] == "available"] == ["good"]
        block = (await host.call("skills.prompt", message="$leak $linked")).data
        assert block["listed"] == ["good"] and block["activated"] == []
        assert "secret" not in block["text"]


@pytest.mark.asyncio
async def test_every_malicious_archive_is_refused_and_nothing_is_written_outside(tmp_path: Path) -> None:
    home, uploads = tmp_path / "home", tmp_path / "uploads"
    uploads.mkdir()
    archives = {case: build(uploads) for case, build in ZIP_CASES.items()}
    async with host_running(home, [SKILLS], config=QUIET) as host:
        before = _snapshot(tmp_path, home / "skills", home / "slices")
        for case, archive in archives.items():
            refused = await host.call("skills.install", path=str(archive))
            assert not refused.success, case
            assert refused.error_message.startswith("not installed: "), (case, refused.error_message)
            assert "\n" not in refused.error_message, case
            checked = (await host.call("skills.validate", path=str(archive))).data
            assert not checked["ok"] and checked["error"], case
        assert _snapshot(tmp_path, home / "skills", home / "slices") == before
        assert not list(tmp_path.rglob("escaped*"))
        assert not Path("/tmp/escaped-abs.txt").exists()
        assert sorted(os.listdir(home / "skills")) == []  # no staging folder left behind
        assert (await host.call("skills.list")).data["skills"] == []


@pytest.mark.asyncio
async def test_skill_read_is_confined_to_the_skill_folder(tmp_path: Path, rb_host: Any) -> None:
    skills = rb_host.home / "skills"
    folder = write_skill(skills, "guide")
    (folder / "references").mkdir()
    (folder / "references" / "api.md").write_text("the api")
    (folder / "references" / "self.md").symlink_to(folder / "references" / "api.md")
    write_skill(skills, "neighbour", body="neighbour secret")
    await rb_host.call("skills.reload")
    read = await rb_host.call("skills.read", name="guide", path="references/api.md")
    assert read.data["text"] == "the api"
    assert (await rb_host.call("skills.read", name="guide", path="references/self.md")).data["text"] == "the api"
    for path in (
        "../neighbour/SKILL.md",
        "/etc/passwd",
        "references/../../neighbour/SKILL.md",
        "%2e%2e/neighbour/SKILL.md",
    ):
        refused = await rb_host.call("skills.read", name="guide", path=path)
        assert not refused.success, path
        assert "\n" not in refused.error_message


def test_a_valid_upload_round_trips_through_a_zip(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("fine/SKILL.md", _ok_md("fine"))
    assert zipfile.is_zipfile(io.BytesIO(buffer.getvalue()))
