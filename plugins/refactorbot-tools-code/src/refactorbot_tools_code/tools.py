"""The code tools: ``code_search``, ``apply_patch`` and ``edit_file``.

Every path goes through ``refactorbot.Workspace`` (confinement, no symlink escapes, version-control
metadata refused for writing). Edits are computed and checked in memory, then written as one
transaction (``transaction.commit``). After an edit of a Python file the result is compiled; a
syntax error the edit introduced refuses the whole edit — nothing is written — and the error
(file, line, column, message, the offending line) goes back to the model, unless the call sets
``allow_syntax_errors``. A file that was already broken before the edit does not block it.
"""

from __future__ import annotations

import ast
import asyncio
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from refactorbot import Model, Tool, ToolContext, ToolError, ToolResult, Workspace, default_home, workspace_for

from refactorbot_tools_code.transaction import Change, commit, decode, read_original

log = logging.getLogger("refactorbot.tools.code")

DEFAULT_EXCLUDE = [
    "node_modules/",
    ".venv/",
    "venv/",
    "__pycache__/",
    ".tox/",
    ".nox/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    "*.min.js",
    "*.map",
]
_EMBEDDINGS = re.compile(r"^(auto|off|[A-Za-z_][\w.]*:[A-Za-z_]\w*)$")
PATH_FIELD = Field(min_length=1, max_length=1024, description="file path relative to the workspace, e.g. 'src/app.py'")


class CodeConfig(Model):
    """``[tools.code]``: the workspace, the index and the limits of the code tools."""

    model_config = ConfigDict(extra="forbid")

    workspace: str | None = Field(None, description="workspace folder (default: the tools slice's)")
    index_dir: str | None = Field(
        None, description="folder of the search indexes (default <home>/cache/code-index; relative to the home)"
    )
    exclude: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXCLUDE),
        description="gitignore-style patterns never indexed, below the workspace's own .gitignore files",
    )
    max_file_bytes: int = Field(1_000_000, ge=1, description="larger files are not indexed, patched or edited")
    max_patch_bytes: int = Field(2_000_000, ge=1, description="largest patch accepted")
    max_results: int = Field(50, ge=1, le=200, description="most results one search returns")
    rescan_interval: float = Field(
        2.0, ge=0, description="seconds a complete index refresh is trusted before a search looks for changes again"
    )
    index_budget: float = Field(
        15.0, gt=0, description="seconds one search may spend indexing; the rest continues on the next search"
    )
    embeddings: str = Field(
        "auto", description="'auto' (the packaged MiniLM when installed), 'off', or 'module:factory'"
    )
    max_offset: int = Field(
        100, ge=0, description="how far (lines) a hunk may be from its header's line and still apply"
    )

    @field_validator("embeddings")
    @classmethod
    def _embeddings(cls, value: str) -> str:
        if not _EMBEDDINGS.match(value):
            raise ValueError("must be 'auto', 'off' or 'module:factory'")
        return value


class CodeTool(Tool):
    """Base of the code tools: configuration and the workspace."""

    config_section: ClassVar[str] = "code"
    category: ClassVar[str] = "code"
    Config: ClassVar[type[BaseModel]] = CodeConfig

    settings: CodeConfig

    def workspace(self, ctx: ToolContext) -> Workspace:
        """Return the configured workspace, or the caller's."""
        return workspace_for(self.settings.workspace, ctx.workspace)

    def index_dir(self, ctx: ToolContext) -> Path:
        """Return the folder holding the indexes: ``index_dir``, else ``<home>/cache/code-index``."""
        home = getattr(ctx.slice, "home", None)
        base = Path(home) if home is not None else default_home()
        configured = self.settings.index_dir
        if configured:
            path = Path(configured).expanduser()
            return path if path.is_absolute() else base / path
        return base / "cache" / "code-index"


# -- syntax check ---------------------------------------------------------------------------


def syntax_error(rel: str, text: str) -> str | None:
    """Return ``file:line:col: message ('the line')`` when ``text`` is not valid Python, else None."""
    try:
        compile(text, rel, "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
    except SyntaxError as exc:
        shown = (exc.text or "").strip()
        where = f"{rel}:{exc.lineno or '?'}:{exc.offset or '?'}"
        return f"{where}: {exc.msg}" + (f" ({shown[:100]!r})" if shown else "")
    except (ValueError, RecursionError, MemoryError) as exc:
        return f"{rel}: {exc}"
    return None


def check_python(changes: list[Change], allow: bool) -> list[str]:
    """Return syntax errors the changes introduce in Python files; raise ``ToolError`` unless ``allow``."""
    errors: list[str] = []
    for change in changes:
        if change.data is None or not change.rel.endswith((".py", ".pyi")):
            continue
        error = syntax_error(change.rel, change.data.decode("utf-8", errors="replace"))
        if error is None:
            continue
        if change.original is not None and syntax_error(change.rel, change.original.decode("utf-8", "replace")):
            continue  # already broken before this edit: not this edit's doing
        errors.append(error)
    if errors and not allow:
        raise ToolError(
            "not applied, nothing was written: the result is not valid Python: "
            + "; ".join(errors)
            + " — fix the edit, or set allow_syntax_errors=true to write it anyway"
        )
    return errors


def _relative(ws: Workspace, path: Path) -> str:
    return ws.relative(path)


# -- code_search ----------------------------------------------------------------------------


class SearchParams(Model):
    """Arguments of ``code_search``."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=500, description="words, identifiers or a question about the code")
    limit: int = Field(10, ge=1, le=200, description="how many results (capped by configuration)")
    path_glob: str | None = Field(
        None,
        min_length=1,
        max_length=300,
        description="only files matching this glob, e.g. 'src/*.py' ('*' crosses folders)",
    )

    @field_validator("query")
    @classmethod
    def _has_words(cls, value: str) -> str:
        if not re.search(r"\w", value):
            raise ValueError("must contain at least one word or identifier")
        return value


class CodeSearch(CodeTool):
    """Search the workspace's code."""

    name = "code_search"
    description = (
        "Search the workspace's code by words and identifiers (BM25 over an index of functions, classes and "
        "text chunks; with local embeddings, also by meaning). Returns path, line range, symbol, a snippet and "
        "a score per result. .gitignore is honoured. Use it to find where something is defined or used."
    )
    Params = SearchParams
    #: Whether this process already said that search is BM25 only (said once, at the first search).
    _said_bm25_only: ClassVar[bool] = False

    async def run(self, params: SearchParams, ctx: ToolContext) -> ToolResult:
        """Refresh the index if needed, then search it."""
        ws = self.workspace(ctx)
        index_dir = self.index_dir(ctx)
        if ws.contains(index_dir):
            raise ToolError("index_dir is inside the workspace; put the code index outside it")
        return await asyncio.to_thread(self._search, ws, index_dir, params)

    def _search(self, ws: Workspace, index_dir: Path, params: SearchParams) -> ToolResult:
        from refactorbot_tools_code.embeddings import load_embedder
        from refactorbot_tools_code.index import index_path, open_index

        embedder = load_embedder(self.settings.embeddings)
        if embedder is None and self.settings.embeddings == "auto" and not CodeSearch._said_bm25_only:
            CodeSearch._said_bm25_only = True
            log.info(
                "code_search: BM25 only, local embeddings are not installed (pip install "
                "'refactorbot-tools-code[embeddings]' for hybrid ranking; embeddings = \"off\" silences this)"
            )
        index = open_index(
            index_path(index_dir, ws.root),
            ws,
            exclude=self.settings.exclude,
            max_file_bytes=self.settings.max_file_bytes,
            embedder=embedder,
        )
        deadline = time.monotonic() + self.settings.index_budget
        stats = index.refresh_if_stale(self.settings.rescan_interval, deadline)
        limit = min(params.limit, self.settings.max_results)
        hits = index.search(params.query, limit, params.path_glob)
        counts = index.counts()
        ranking = f"hybrid (BM25 + {embedder.name}, reciprocal rank fusion)" if embedder is not None else "BM25"
        lines = [f"{len(hits)} result{'s' if len(hits) != 1 else ''} for {params.query!r} ({ranking})"]
        if stats is not None and not stats.complete:
            lines.append(
                f"[index incomplete: {counts['files']} of {stats.files} files indexed so far; "
                "the next search continues indexing]"
            )
        for hit in hits:
            symbol = f" {hit.symbol} ({hit.kind})" if hit.symbol else f" ({hit.kind})"
            lines.append(f"\n{hit.path}:{hit.start_line}-{hit.end_line}{symbol} score {hit.score:.4g}")
            lines.append(hit.snippet)
        data: dict[str, Any] = {
            "results": [
                {
                    "path": h.path,
                    "start_line": h.start_line,
                    "end_line": h.end_line,
                    "symbol": h.symbol,
                    "kind": h.kind,
                    "score": h.score,
                    "snippet": h.snippet,
                }
                for h in hits
            ],
            "ranking": "hybrid" if embedder is not None else "bm25",
            "index": counts,
            "complete": stats.complete if stats is not None else True,
        }
        if stats is not None:
            data["refresh"] = {
                "files": stats.files,
                "read": stats.read,
                "changed": stats.changed,
                "removed": stats.removed,
                "chunks_added": stats.chunks_added,
                "chunks_removed": stats.chunks_removed,
                "embedded": stats.embedded,
                "seconds": round(stats.seconds, 3),
            }
        return ToolResult(output="\n".join(lines), data=data)


def _invalidate(root: Path) -> None:
    from refactorbot_tools_code.index import invalidate

    invalidate(root)


# -- apply_patch ----------------------------------------------------------------------------


class PatchParams(Model):
    """Arguments of ``apply_patch``."""

    model_config = ConfigDict(extra="forbid")

    patch: str = Field(
        min_length=1, description="a unified diff ('--- a/path', '+++ b/path', '@@' hunks), one or many files"
    )
    dry_run: bool = Field(False, description="only check that every hunk applies; write nothing")
    allow_syntax_errors: bool = Field(False, description="write Python files even if the result does not parse")


class ApplyPatch(CodeTool):
    """Apply a multi-file unified diff as one transaction."""

    name = "apply_patch"
    description = (
        "Apply a unified diff (as from 'git diff' or 'diff -u') to the workspace, all files or none: every hunk "
        "is checked first, files are written atomically, and any failure restores everything. Creates "
        "('--- /dev/null'), deletes ('+++ /dev/null') and renames (git 'rename from/to') files. Python results "
        "must parse. Paths are relative to the workspace (a/ and b/ prefixes are removed)."
    )
    Params = PatchParams

    async def run(self, params: PatchParams, ctx: ToolContext) -> ToolResult:
        """Check, then write, the whole patch."""
        ws = self.workspace(ctx)
        return await asyncio.to_thread(self._apply, ws, params)

    def _apply(self, ws: Workspace, params: PatchParams) -> ToolResult:
        from refactorbot_tools_code.patch import parse_patch

        size = len(params.patch.encode("utf-8", errors="surrogatepass"))
        if size > self.settings.max_patch_bytes:
            raise ToolError(f"the patch is {size} bytes, over the {self.settings.max_patch_bytes}-byte limit")
        files = parse_patch(params.patch)
        changes, notes, summary = self._plan(ws, files)
        errors = check_python(changes, params.allow_syntax_errors)
        if params.dry_run:
            output = f"the patch applies cleanly ({', '.join(summary)}); nothing was written (dry run)"
        else:
            commit(ws, changes)
            _invalidate(ws.root)
            output = f"applied: {', '.join(summary)}"
        lines = [output, *notes]
        if errors:
            lines.append("written although not valid Python: " + "; ".join(errors))
        return ToolResult(
            output="\n".join(lines),
            data={
                "files": summary,
                "notes": notes,
                "syntax_errors": errors,
                "dry_run": params.dry_run,
            },
        )

    def _plan(self, ws: Workspace, files: list[Any]) -> tuple[list[Change], list[str], list[str]]:
        from refactorbot_tools_code.patch import apply_hunks

        limit = self.settings.max_file_bytes
        changes: list[Change] = []
        notes: list[str] = []
        summary: list[str] = []
        claimed: dict[Path, str] = {}

        def claim(path: Path, rel: str) -> None:
            if path in claimed:
                raise ToolError(f"'{rel}' appears twice in the patch; put all of its hunks in one file section")
            for other, other_rel in claimed.items():
                if other in path.parents or path in other.parents:
                    raise ToolError(f"'{rel}' and '{other_rel}' cannot both be files (one is inside the other)")
            claimed[path] = rel

        for file_patch in files:
            old_path = ws.resolve(file_patch.old, write=True) if file_patch.old else None
            new_path = ws.resolve(file_patch.new, write=True) if file_patch.new else None
            for path in (old_path, new_path):
                if path is not None and (path == ws.root or path.is_dir()):
                    raise ToolError(f"'{ws.relative(path)}' is a folder; a patch changes files")
            if old_path is None and new_path is not None:
                rel = ws.relative(new_path)
                claim(new_path, rel)
                if os.path.lexists(new_path):
                    raise ToolError(f"'{rel}' already exists; the patch creates it ('--- /dev/null')")
                text, hunk_notes = apply_hunks(rel, "", file_patch.hunks, 0)
                data = text.encode("utf-8", errors="surrogatepass")
                self._check_size(rel, data)
                changes.append(Change(new_path, rel, data, None, None, mode=file_patch.new_mode))
                summary.append(f"created {rel}")
            elif new_path is None and old_path is not None:
                rel = ws.relative(old_path)
                claim(old_path, rel)
                original, mode = read_original(ws, old_path, rel, limit)
                if original is None:
                    raise ToolError(f"'{rel}' does not exist, so it cannot be deleted")
                if not file_patch.hunks and original:
                    raise ToolError(f"deleting '{rel}': the patch must remove every line of it (or use files_delete)")
                text, hunk_notes = apply_hunks(rel, decode(rel, original), file_patch.hunks, self.settings.max_offset)
                if text:
                    raise ToolError(f"deleting '{rel}': the patch leaves {len(text.splitlines())} line(s) of it")
                changes.append(Change(old_path, rel, None, original, mode))
                summary.append(f"deleted {rel}")
            else:
                assert old_path is not None and new_path is not None
                old_rel, new_rel = ws.relative(old_path), ws.relative(new_path)
                claim(old_path, old_rel)
                original, mode = read_original(ws, old_path, old_rel, limit)
                if original is None:
                    raise ToolError(f"'{old_rel}' does not exist (to create a file, use '--- /dev/null')")
                text, hunk_notes = apply_hunks(
                    old_rel, decode(old_rel, original), file_patch.hunks, self.settings.max_offset
                )
                data = text.encode("utf-8", errors="surrogatepass")
                self._check_size(new_rel, data)
                if new_path != old_path:
                    claim(new_path, new_rel)
                    if os.path.lexists(new_path):
                        raise ToolError(f"cannot rename '{old_rel}' to '{new_rel}': '{new_rel}' already exists")
                    changes.append(Change(new_path, new_rel, data, None, None, mode=file_patch.new_mode or mode))
                    changes.append(Change(old_path, old_rel, None, original, mode))
                    summary.append(f"renamed {old_rel} -> {new_rel}")
                else:
                    changes.append(Change(old_path, old_rel, data, original, mode, mode=file_patch.new_mode))
                    summary.append(
                        f"modified {old_rel} ({len(file_patch.hunks)} hunk{'s' if len(file_patch.hunks) != 1 else ''})"
                    )
            notes += hunk_notes
        return changes, notes, summary

    def _check_size(self, rel: str, data: bytes) -> None:
        if len(data) > self.settings.max_file_bytes:
            raise ToolError(f"'{rel}' would be {len(data)} bytes, over the {self.settings.max_file_bytes}-byte limit")


# -- edit_file ------------------------------------------------------------------------------


class Edit(Model):
    """One edit: ``replace`` exact text, ``insert`` after a line or an anchor, or ``append``."""

    model_config = ConfigDict(extra="forbid")

    op: Literal["replace", "insert", "append"] = Field(description="what to do")
    search: str | None = Field(
        None, min_length=1, description="replace: exact text to find (must occur once unless all)"
    )
    replace: str | None = Field(None, description="replace: the text to put in its place")
    all: bool = Field(False, description="replace: every occurrence")
    text: str | None = Field(None, description="insert / append: the lines to add")
    after_line: int | None = Field(None, ge=0, description="insert: after this line number (0: at the top)")
    anchor: str | None = Field(
        None, min_length=1, description="insert: after the line where this exact text (occurring once) ends"
    )

    @model_validator(mode="after")
    def _complete(self) -> Edit:
        if self.op == "replace":
            if self.search is None or self.replace is None:
                raise ValueError("replace needs 'search' and 'replace'")
            if self.text is not None or self.after_line is not None or self.anchor is not None:
                raise ValueError("replace takes only 'search', 'replace' and 'all'")
        elif self.op == "insert":
            if self.text is None:
                raise ValueError("insert needs 'text'")
            if (self.after_line is None) == (self.anchor is None):
                raise ValueError("insert needs exactly one of 'after_line' and 'anchor'")
            if self.search is not None or self.replace is not None or self.all:
                raise ValueError("insert takes only 'text' and 'after_line' or 'anchor'")
        else:
            if self.text is None:
                raise ValueError("append needs 'text'")
            if any(v is not None for v in (self.search, self.replace, self.after_line, self.anchor)) or self.all:
                raise ValueError("append takes only 'text'")
        return self


class EditParams(Model):
    """Arguments of ``edit_file``."""

    model_config = ConfigDict(extra="forbid")

    path: str = PATH_FIELD
    edits: list[Edit] = Field(
        min_length=1,
        max_length=100,
        description="edits applied in order, each to the text the previous ones left (line numbers included)",
    )
    allow_syntax_errors: bool = Field(False, description="write a Python file even if the result does not parse")


class EditFile(CodeTool):
    """Several edits to one file, all or none."""

    name = "edit_file"
    description = (
        "Make several edits to one existing text file at once, in order: 'replace' exact text (once, or every "
        "occurrence with all=true), 'insert' text after a line number or after the line ending an exact anchor, "
        "'append' at the end. All edits apply or none does; the write is atomic. Python results must parse."
    )
    Params = EditParams

    async def run(self, params: EditParams, ctx: ToolContext) -> ToolResult:
        """Apply the edits in memory, check them, write the file."""
        ws = self.workspace(ctx)
        return await asyncio.to_thread(self._edit, ws, params)

    def _edit(self, ws: Workspace, params: EditParams) -> ToolResult:
        path = ws.resolve(params.path, write=True)
        rel = ws.relative(path)
        if path == ws.root or path.is_dir():
            raise ToolError(f"'{rel}' is a folder; give a file path")
        original, mode = read_original(ws, path, rel, self.settings.max_file_bytes)
        if original is None:
            raise ToolError(f"'{rel}' does not exist; create it with files_write or apply_patch")
        text = decode(rel, original)
        crlf = text.count("\r\n") * 2 > text.count("\n") > 0
        done: list[str] = []
        for number, edit in enumerate(params.edits, start=1):
            text, what = _apply_edit(rel, text, edit, number, crlf)
            done.append(what)
        data = text.encode("utf-8", errors="surrogatepass")
        if len(data) > self.settings.max_file_bytes:
            raise ToolError(f"'{rel}' would be {len(data)} bytes, over the {self.settings.max_file_bytes}-byte limit")
        change = Change(path, rel, data, original, mode)
        errors = check_python([change], params.allow_syntax_errors)
        if data == original:
            return ToolResult(
                output=f"{rel} unchanged (the edits leave it as it was)", data={"path": rel, "edits": done}
            )
        commit(ws, [change])
        _invalidate(ws.root)
        output = f"edited {rel}: " + "; ".join(done)
        if errors:
            output += "\nwritten although not valid Python: " + "; ".join(errors)
        return ToolResult(output=output, data={"path": rel, "edits": done, "bytes": len(data), "syntax_errors": errors})


def _eol(value: str, crlf: bool) -> str:
    return value.replace("\r\n", "\n").replace("\n", "\r\n") if crlf else value


def _apply_edit(rel: str, text: str, edit: Edit, number: int, crlf: bool) -> tuple[str, str]:
    """Apply one edit to ``text``; return the new text and a few words saying what was done."""
    newline = "\r\n" if crlf else "\n"
    label = f"edit {number} ({edit.op})"
    if edit.op == "replace":
        assert edit.search is not None and edit.replace is not None
        search, replace = _eol(edit.search, crlf), _eol(edit.replace, crlf)
        count = text.count(search)
        if count == 0:
            raise ToolError(
                f"{label}: search text not found in '{rel}' (it must match exactly, whitespace included); nothing was written"
            )
        if count > 1 and not edit.all:
            raise ToolError(
                f"{label}: search text occurs {count} times in '{rel}'; add surrounding text to make it unique "
                "or set all=true; nothing was written"
            )
        return text.replace(search, replace), f"replaced {count} occurrence{'s' if count > 1 else ''}"
    assert edit.text is not None
    addition = _eol(edit.text, crlf)
    if addition and not addition.endswith(newline):
        addition += newline
    if edit.op == "append":
        if text and not text.endswith("\n"):
            text += newline
        return text + addition, "appended"
    lines = text.splitlines(keepends=True)
    if edit.after_line is not None:
        if edit.after_line > len(lines):
            raise ToolError(
                f"{label}: line {edit.after_line} is past the end of '{rel}' ({len(lines)} lines); nothing was written"
            )
        at = edit.after_line
        where = f"inserted after line {at}"
    else:
        assert edit.anchor is not None
        anchor = _eol(edit.anchor, crlf)
        count = text.count(anchor)
        if count != 1:
            found = "not found" if count == 0 else f"found {count} times"
            raise ToolError(f"{label}: anchor {found} in '{rel}' (it must occur exactly once); nothing was written")
        end = text.index(anchor) + len(anchor)
        if anchor.endswith("\n"):
            end -= 1  # an anchor ending with a newline ends on its last line
        at = text.count("\n", 0, end) + 1
        where = f"inserted after line {at} (anchor)"
    if at > 0 and at <= len(lines) and not lines[at - 1].endswith("\n"):
        lines[at - 1] += newline
    lines.insert(at, addition)
    return "".join(lines), where


ALL_TOOLS: tuple[type[CodeTool], ...] = (CodeSearch, ApplyPatch, EditFile)
