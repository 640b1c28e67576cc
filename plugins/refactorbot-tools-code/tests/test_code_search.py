"""``code_search``: the index on disk, incremental updates, .gitignore, chunks, hybrid ranking."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from refactorbot import ToolError
from refactorbot.tools import ToolContext
from refactorbot_tools_code import ApplyPatch, CodeSearch, EditFile
from refactorbot_tools_code.chunking import chunk_file
from refactorbot_tools_code.embeddings import load_embedder, rrf
from refactorbot_tools_code.index import CodeIndex, index_path

CONFIG = '''"""Configuration."""

import json

DEFAULTS = {"debug": False}


def load_configuration(path):
    """Read the JSON settings file."""
    with open(path) as handle:
        return json.load(handle)


class SettingsStore:
    """Keeps settings."""

    cache = {}

    @staticmethod
    def parse_config(text):
        return json.loads(text)

    async def reload(self):
        return None
'''


def search_tool(**config: Any) -> CodeSearch:
    return CodeSearch({"embeddings": "off", "rescan_interval": 0, **config})


async def search(ctx: ToolContext, query: str, tool: CodeSearch | None = None, **args: Any) -> dict[str, Any]:
    tool = tool or search_tool()
    result = await tool.run(tool.Params.model_validate({"query": query, **args}), ctx)
    assert result.ok, result.error
    return {"output": result.output, **result.data}


def paths(found: dict[str, Any]) -> list[str]:
    return [r["path"] for r in found["results"]]


def test_python_chunks_follow_definitions() -> None:
    chunks = chunk_file("settings.py", CONFIG)
    shown = [(c.symbol, c.kind, c.start, c.end) for c in chunks]
    assert shown == [
        ("", "module", 1, 7),
        ("load_configuration", "function", 8, 11),
        ("SettingsStore", "class", 14, 18),
        ("SettingsStore.parse_config", "method", 19, 21),
        ("SettingsStore.reload", "method", 23, 24),
    ]
    assert chunks[3].text.startswith("    @staticmethod")


def test_other_files_and_broken_python_fall_back_to_line_windows() -> None:
    text = "".join(f"line {n}\n" for n in range(1, 131))
    for name in ("notes.md", "broken.py"):
        body = text if name == "notes.md" else "def f(:\n" + text
        chunks = chunk_file(name, body)
        assert [c.kind for c in chunks] == ["text"] * 3
        assert chunks[0].start == 1 and chunks[0].end == 60 and chunks[1].start == 51  # 10 lines of overlap
        assert chunks[-1].end == len(body.splitlines())


@pytest.mark.asyncio
async def test_finds_definitions_with_path_lines_symbol_snippet_score(workspace: Path, ctx: ToolContext) -> None:
    (workspace / "app").mkdir()
    (workspace / "app" / "settings.py").write_text(CONFIG)
    (workspace / "README.md").write_text("# Demo\n\nSettings live in app/settings.py.\n")
    found = await search(ctx, "parse_config")
    best = found["results"][0]
    assert (best["path"], best["start_line"], best["end_line"]) == ("app/settings.py", 19, 21)
    assert best["symbol"] == "SettingsStore.parse_config" and best["kind"] == "method"
    assert "20:     def parse_config(text):" in best["snippet"] and best["score"] > 0
    assert "app/settings.py:19-21 SettingsStore.parse_config (method)" in found["output"]
    camel = await search(ctx, "settings store")
    assert camel["results"][0]["symbol"] == "SettingsStore"
    only_md = await search(ctx, "settings", path_glob="*.md")
    assert paths(only_md) == ["README.md"]


@pytest.mark.asyncio
async def test_index_file_lives_in_the_home_keyed_by_workspace_and_is_private(
    workspace: Path, ctx: ToolContext, home: Path
) -> None:
    (workspace / "a.py").write_text("def alpha():\n    pass\n")
    await search(ctx, "alpha")
    key = hashlib.sha256(os.fsencode(workspace.resolve())).hexdigest()[:32]
    db = home / "cache" / "code-index" / f"{key}.sqlite3"
    assert db.is_file()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    assert not any(p.suffix.startswith(".sqlite") for p in workspace.rglob("*"))


@pytest.mark.asyncio
async def test_index_dir_inside_the_workspace_is_refused(workspace: Path, ctx: ToolContext) -> None:
    tool = search_tool(index_dir=str(workspace / "idx"))
    with pytest.raises(ToolError, match="inside the workspace"):
        await tool.run(tool.Params(query="x"), ctx)


@pytest.mark.asyncio
async def test_gitignore_is_honoured_at_every_level(workspace: Path, ctx: ToolContext, repo) -> None:
    files = {
        ".gitignore": "build/\n*.log\n!keep.log\n",
        "src/.gitignore": "generated_*.py\n",
        "src/main.py": "marker_token = 1\n",
        "src/generated_api.py": "marker_token = 2\n",
        "src/deep/generated_more.py": "marker_token = 3\n",
        "build/out.py": "marker_token = 4\n",
        "debug.log": "marker_token 5\n",
        "keep.log": "marker_token 6\n",
        "node_modules/pkg/index.js": "marker_token = 7\n",
        "docs/info.txt": "marker_token 8\n",
    }
    for rel, text in files.items():
        (workspace / rel).parent.mkdir(parents=True, exist_ok=True)
        (workspace / rel).write_text(text)
    (workspace / ".git" / "info").mkdir(exist_ok=True)
    (workspace / ".git" / "info" / "exclude").write_text("docs/\n")
    found = await search(ctx, "marker_token", limit=50)
    assert sorted(paths(found)) == ["keep.log", "src/main.py"]


@pytest.mark.asyncio
async def test_binary_huge_symlinked_and_git_files_are_skipped(
    workspace: Path, ctx: ToolContext, repo, sentinel: Path
) -> None:
    (workspace / "text.txt").write_text("needle here\n")
    (workspace / "blob.bin").write_bytes(b"needle\x00\x01\x02")
    (workspace / "huge.txt").write_text("needle\n" * 200_000)  # 1.4 MB, over max_file_bytes
    (sentinel / "secret.txt").write_text("needle outside\n")
    (workspace / "out").symlink_to(sentinel)
    (workspace / "alias.txt").symlink_to(workspace / "text.txt")
    found = await search(ctx, "needle", limit=50)
    assert paths(found) == ["text.txt"]


@pytest.mark.asyncio
async def test_incremental_only_what_changed_is_read_and_reindexed(workspace: Path, ctx: ToolContext) -> None:
    for n in range(20):
        (workspace / f"m{n}.py").write_text(f"def func_{n}():\n    return {n}\n\n\ndef other_{n}():\n    return -{n}\n")
    tool = search_tool()
    first = await search(ctx, "func_3", tool)
    assert first["refresh"]["read"] == 20 and first["refresh"]["chunks_added"] == 40
    again = await search(ctx, "func_3", tool)
    assert again["refresh"]["read"] == 0 and again["refresh"]["changed"] == 0

    # one function of one file changes: one file read, one chunk replaced, the other kept
    (workspace / "m3.py").write_text("def func_3():\n    return 'three'\n\n\ndef other_3():\n    return -3\n")
    changed = await search(ctx, "three", tool)
    assert changed["refresh"]["read"] == 1
    assert (changed["refresh"]["chunks_added"], changed["refresh"]["chunks_removed"]) == (1, 1)
    assert paths(changed) == ["m3.py"]

    # touched but same content: read and hashed, nothing re-chunked
    os.utime(workspace / "m4.py", ns=(1, 1))
    touched = await search(ctx, "func_4", tool)
    assert touched["refresh"]["read"] == 1 and touched["refresh"]["changed"] == 0

    # a line added above keeps the chunks (same hash), only their line numbers move
    (workspace / "m5.py").write_text("# header\n" + (workspace / "m5.py").read_text())
    moved = await search(ctx, "other_5", tool)
    assert moved["refresh"]["chunks_added"] == 1 and moved["refresh"]["chunks_removed"] == 0  # the new comment
    assert moved["results"][0]["start_line"] == 6

    (workspace / "m6.py").unlink()
    gone = await search(ctx, "func_6", tool)
    assert gone["refresh"]["removed"] == 1 and "m6.py" not in paths(gone)


@pytest.mark.asyncio
async def test_edits_through_the_code_tools_are_seen_by_the_next_search(workspace: Path, ctx: ToolContext) -> None:
    (workspace / "a.py").write_text("def alpha():\n    return 1\n")
    tool = search_tool(rescan_interval=3600)  # only an edit by the code tools makes it look again
    assert paths(await search(ctx, "alpha", tool)) == ["a.py"]
    patch = ApplyPatch({})
    await patch.run(patch.Params(patch="--- /dev/null\n+++ b/b.py\n@@ -0,0 +1,2 @@\n+def beta():\n+    pass\n"), ctx)
    assert paths(await search(ctx, "beta", tool)) == ["b.py"]
    editor = EditFile({})
    params = {"path": "b.py", "edits": [{"op": "replace", "search": "beta", "replace": "gamma"}]}
    await editor.run(editor.Params.model_validate(params), ctx)
    assert paths(await search(ctx, "gamma", tool)) == ["b.py"]
    assert paths(await search(ctx, "beta", tool)) == []


@pytest.mark.asyncio
async def test_a_search_indexes_within_its_budget_and_the_next_one_continues(workspace: Path, ctx: ToolContext) -> None:
    for n in range(300):
        (workspace / f"f{n:03d}.py").write_text(f"def function_{n}():\n    return {n}\n")
    tool = search_tool(index_budget=1e-6)  # the deadline passes after the first file
    first = await search(ctx, "function_299", tool)
    assert first["complete"] is False and "index incomplete" in first["output"]
    rounds = 0
    while not (await search(ctx, "function_299", tool))["complete"]:
        rounds += 1
        assert rounds < 400
    full = await search(ctx, "function_299", search_tool())
    assert full["index"]["files"] == 300 and paths(full)[0] == "f299.py"


@pytest.mark.asyncio
async def test_a_git_worktree_gets_its_own_index(tmp_path: Path, workspace: Path, repo, home: Path) -> None:
    (workspace / "lib.py").write_text("def shared_name():\n    pass\n")
    repo("add", "-A")
    repo("commit", "-q", "-m", "lib")
    tree = tmp_path / "tree"
    repo("worktree", "add", "-q", "-b", "task", str(tree))
    (tree / "lib.py").write_text("def shared_name():\n    pass\n\n\ndef only_in_tree():\n    pass\n")
    in_tree = await search(ToolContext(workspace=tree), "only_in_tree")
    in_main = await search(ToolContext(workspace=workspace), "only_in_tree")
    assert paths(in_tree) == ["lib.py"] and paths(in_main) == []
    assert len(list((home / "cache" / "code-index").glob("*.sqlite3"))) == 2


def test_rrf_fuses_rankings() -> None:
    fused = rrf([[1, 2, 3], [3, 1, 4]])
    assert [item for item, _ in fused] == [1, 3, 2, 4]
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 62)


@pytest.mark.asyncio
async def test_hybrid_ranking_finds_what_bm25_misses_and_embeds_only_new_chunks(
    workspace: Path, ctx: ToolContext
) -> None:
    (workspace / "settings.py").write_text(CONFIG)
    (workspace / "other.py").write_text("def unrelated():\n    return 42\n")
    bm25 = await search(ctx, "configurations")
    assert bm25["results"] == [] and bm25["ranking"] == "bm25"

    tool = search_tool(embeddings="trigram_embedder:factory")
    embedder: Any = load_embedder("trigram_embedder:factory")
    hybrid = await search(ctx, "configurations", tool)
    assert hybrid["ranking"] == "hybrid" and "reciprocal rank fusion" in hybrid["output"]
    top = [(r["path"], r["symbol"]) for r in hybrid["results"][:2]]
    assert ("settings.py", "load_configuration") in top and all(path == "settings.py" for path, _ in top)
    assert hybrid["index"]["vectors"] == 6

    embedder.calls.clear()
    (workspace / "other.py").write_text("def unrelated():\n    return 43\n")
    again = await search(ctx, "unrelated", tool)
    assert again["refresh"]["embedded"] == 1
    assert embedder.calls == [1, 1]  # the changed chunk, then the query
    assert again["results"][0]["path"] == "other.py"


@pytest.mark.asyncio
async def test_bm25_only_is_said_once_in_the_log_not_as_a_warning(
    ctx: ToolContext, caplog: pytest.LogCaptureFixture
) -> None:
    from refactorbot_tools_code.embeddings import model_available

    tool = CodeSearch({})
    assert tool.warnings() == []  # not a degraded tools slice: BM25 alone is a working search
    CodeSearch._said_bm25_only = False
    with caplog.at_level("INFO", logger="refactorbot.tools.code"):
        await search(ctx, "anything", tool)
        await search(ctx, "anything else", tool)
    said = [r for r in caplog.records if "BM25 only" in r.getMessage()]
    assert len(said) == (0 if model_available() else 1)


def test_index_opened_for_another_workspace_starts_empty(tmp_path: Path) -> None:
    from refactorbot import Workspace

    first, second = Workspace(tmp_path / "one"), Workspace(tmp_path / "two")
    (first.root / "x.py").write_text("def x():\n    pass\n")
    path = index_path(tmp_path / "idx", first.root)
    index = CodeIndex(path, first)
    index.refresh()
    assert index.counts()["files"] == 1
    index.close()
    reused = CodeIndex(path, second)  # the same file handed to another workspace is wiped, not mixed
    assert reused.counts() == {"files": 0, "chunks": 0, "vectors": 0}
    reused.close()
