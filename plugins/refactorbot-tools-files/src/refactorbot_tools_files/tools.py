"""The files tools: read, write, search-and-replace, list and delete inside a workspace.

Every path goes through ``refactorbot.workspace.Workspace``: it refuses anything that could
reach outside the workspace, and files are opened without following symlinks. Writing, editing
and deleting refuse version-control metadata (``.git`` and the like), which tools may read.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, model_validator
from refactorbot import Model, Tool, ToolContext, ToolError, ToolResult, Workspace, workspace_for

PATH_FIELD = Field(min_length=1, max_length=1024, description="file path relative to the workspace, e.g. 'src/app.py'")


class FilesConfig(Model):
    """``[tools.files]``: where the tools work and how much they read, write and list."""

    model_config = ConfigDict(extra="forbid")

    workspace: str | None = Field(None, description="workspace folder (default: <home>/workspace)")
    max_file_bytes: int = Field(1_000_000, ge=1, description="largest file read, written or edited")
    max_read_bytes: int = Field(200_000, ge=1, description="most text one read returns")
    max_list_entries: int = Field(1_000, ge=1, description="most entries one listing returns")


class FilesTool(Tool):
    """Base of the files tools: configuration and the workspace."""

    config_section: ClassVar[str] = "files"
    category: ClassVar[str] = "files"
    Config: ClassVar[type[BaseModel]] = FilesConfig

    settings: FilesConfig

    def workspace(self, ctx: ToolContext) -> Workspace:
        """Return the configured workspace, or the caller's."""
        return workspace_for(self.settings.workspace, ctx.workspace)


def _io_error(rel: str, exc: OSError) -> ToolError:
    reasons = {
        errno.ENOENT: "does not exist",
        errno.EACCES: "is not accessible (permission denied)",
        errno.EPERM: "is not accessible (operation not permitted)",
        errno.EISDIR: "is a directory",
        errno.ENOTDIR: "has a file where a folder was expected",
        errno.ENOTEMPTY: "is a directory that is not empty",
        errno.ENOSPC: "cannot be written: no space left on the device",
    }
    return ToolError(f"'{rel}' {reasons.get(exc.errno or 0, f'failed: {exc.strerror or exc}')}")


def _split_last(user_path: str) -> tuple[str, str]:
    parts = [p for p in user_path.split("/") if p not in ("", ".")]
    if not parts:
        return ".", ""
    return "/".join(parts[:-1]) or ".", parts[-1]


# -- read -----------------------------------------------------------------------------------


class ReadParams(Model):
    """Arguments of ``files_read``."""

    model_config = ConfigDict(extra="forbid")

    path: str = PATH_FIELD
    start_line: int | None = Field(None, ge=1, description="first line to return, 1-based (default: 1)")
    end_line: int | None = Field(None, ge=1, description="last line to return, inclusive (default: the end)")

    @model_validator(mode="after")
    def _ordered(self) -> ReadParams:
        if self.start_line and self.end_line and self.end_line < self.start_line:
            raise ValueError("end_line must not be before start_line")
        return self


class FilesRead(FilesTool):
    """Read a text file, or a range of its lines."""

    name = "files_read"
    description = (
        "Read a UTF-8 text file in the workspace. Optional start_line/end_line (1-based, inclusive) "
        "read part of a large file."
    )
    Params = ReadParams

    async def run(self, params: ReadParams, ctx: ToolContext) -> ToolResult:
        """Return the file's text (or the requested lines)."""
        ws = self.workspace(ctx)
        return await asyncio.to_thread(self._read, ws, params)

    def _read(self, ws: Workspace, params: ReadParams) -> ToolResult:
        path = ws.resolve(params.path)
        rel = ws.relative(path)
        if path.is_dir():
            raise ToolError(f"'{rel}' is a directory; use files_list to see what it holds")
        ranged = params.start_line is not None or params.end_line is not None
        try:
            fd = ws.open_file(path)
        except OSError as exc:
            raise _io_error(rel, exc) from None
        with os.fdopen(fd, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if not ranged and size > self.settings.max_file_bytes:
                raise ToolError(
                    f"'{rel}' is {size} bytes, over the {self.settings.max_file_bytes}-byte limit; "
                    "read part of it with start_line and end_line"
                )
            if b"\x00" in handle.read(8192):
                raise ToolError(f"'{rel}' is a binary file; only text files can be read")
            handle.seek(0)
            first = params.start_line or 1
            last = params.end_line
            chunks: list[bytes] = []
            used = 0
            truncated = stopped = False
            total = 0
            for number, line in enumerate(handle, start=1):
                total = number
                if last is not None and number > last:
                    stopped = True
                    break
                if number < first:
                    continue
                if used + len(line) > self.settings.max_read_bytes:
                    truncated = stopped = True
                    break
                chunks.append(line)
                used += len(line)
        text = b"".join(chunks).decode("utf-8", errors="replace")
        shown_last = first + len(chunks) - 1
        output = text
        if truncated:
            output += (
                f"\n[... truncated after line {shown_last}: over {self.settings.max_read_bytes} bytes;"
                f" read more with start_line={shown_last + 1}]"
            )
        data = {
            "path": rel,
            "start_line": first,
            "end_line": shown_last if chunks else None,
            "total_lines": None if stopped else total,
            "bytes": size,
            "truncated": truncated,
        }
        return ToolResult(output=output, data=data)


# -- write ----------------------------------------------------------------------------------


class WriteParams(Model):
    """Arguments of ``files_write``."""

    model_config = ConfigDict(extra="forbid")

    path: str = PATH_FIELD
    content: str = Field(description="the whole new content of the file (UTF-8 text)")
    overwrite: bool = Field(True, description="replace the file if it exists (false: refuse)")
    create_dirs: bool = Field(True, description="create missing parent folders")


class FilesWrite(FilesTool):
    """Write a whole text file atomically."""

    name = "files_write"
    description = (
        "Create or replace a UTF-8 text file in the workspace with the given content. "
        "The write is atomic: readers see the old file or the new one, never half of it."
    )
    Params = WriteParams

    async def run(self, params: WriteParams, ctx: ToolContext) -> ToolResult:
        """Write the file and report its size."""
        ws = self.workspace(ctx)
        return await asyncio.to_thread(self._write, ws, params)

    def _write(self, ws: Workspace, params: WriteParams) -> ToolResult:
        data = params.content.encode("utf-8", errors="surrogatepass")
        if len(data) > self.settings.max_file_bytes:
            raise ToolError(f"content is {len(data)} bytes, over the {self.settings.max_file_bytes}-byte limit")
        path = ws.resolve(params.path, write=True)
        rel = ws.relative(path)
        if path == ws.root or path.is_dir():
            raise ToolError(f"'{rel}' is a directory; give a file path")
        existed = path.exists()
        if existed and not params.overwrite:
            raise ToolError(f"'{rel}' already exists; set overwrite=true to replace it")
        try:
            ws.write_file(path, data, create_dirs=params.create_dirs)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise ToolError(f"folder of '{rel}' does not exist; set create_dirs=true to create it") from None
            raise _io_error(rel, exc) from None
        verb = "replaced" if existed else "created"
        return ToolResult(
            output=f"{verb} {rel} ({len(data)} bytes)", data={"path": rel, "bytes": len(data), "created": not existed}
        )


# -- replace --------------------------------------------------------------------------------


class ReplaceParams(Model):
    """Arguments of ``files_replace``."""

    model_config = ConfigDict(extra="forbid")

    path: str = PATH_FIELD
    search: str = Field(min_length=1, description="exact text to find (whitespace and newlines included)")
    replace: str = Field(description="text to put in its place")
    all: bool = Field(False, description="replace every occurrence (false: the text must occur exactly once)")


class FilesReplace(FilesTool):
    """Replace exact text in a file."""

    name = "files_replace"
    description = (
        "Replace an exact piece of text in a workspace file. The search text must occur exactly once "
        "unless all=true; include surrounding lines to make it unique."
    )
    Params = ReplaceParams

    async def run(self, params: ReplaceParams, ctx: ToolContext) -> ToolResult:
        """Edit the file and report how many occurrences were replaced."""
        ws = self.workspace(ctx)
        return await asyncio.to_thread(self._replace, ws, params)

    def _replace(self, ws: Workspace, params: ReplaceParams) -> ToolResult:
        path = ws.resolve(params.path, write=True)
        rel = ws.relative(path)
        if path.is_dir():
            raise ToolError(f"'{rel}' is a directory; give a file path")
        try:
            fd = ws.open_file(path)
        except OSError as exc:
            raise _io_error(rel, exc) from None
        with os.fdopen(fd, "rb") as handle:
            raw = handle.read(self.settings.max_file_bytes + 1)
        if len(raw) > self.settings.max_file_bytes:
            raise ToolError(f"'{rel}' is over the {self.settings.max_file_bytes}-byte limit")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError(f"'{rel}' is not UTF-8 text") from None
        count = text.count(params.search)
        if count == 0:
            raise ToolError(f"search text not found in '{rel}' (it must match exactly, whitespace included)")
        if count > 1 and not params.all:
            raise ToolError(
                f"search text occurs {count} times in '{rel}'; add surrounding text to make it unique or set all=true"
            )
        updated = text.replace(params.search, params.replace)
        data = updated.encode("utf-8", errors="surrogatepass")
        if len(data) > self.settings.max_file_bytes:
            raise ToolError(f"the edited file would be {len(data)} bytes, over the limit")
        try:
            ws.write_file(path, data, create_dirs=False)
        except OSError as exc:
            raise _io_error(rel, exc) from None
        return ToolResult(
            output=f"replaced {count} occurrence{'s' if count > 1 else ''} in {rel}",
            data={"path": rel, "replaced": count, "bytes": len(data)},
        )


# -- list -----------------------------------------------------------------------------------


class ListParams(Model):
    """Arguments of ``files_list``."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(".", min_length=1, max_length=1024, description="folder relative to the workspace")
    recursive: bool = Field(False, description="list sub-folders too (symlinked folders are not entered)")
    max_entries: int | None = Field(None, ge=1, description="most entries to return (capped by configuration)")


class FilesList(FilesTool):
    """List a folder of the workspace."""

    name = "files_list"
    description = "List files and folders in a workspace folder (default: the workspace root); optionally recursive."
    Params = ListParams

    async def run(self, params: ListParams, ctx: ToolContext) -> ToolResult:
        """Return one line per entry: folders end with '/', files show their size."""
        ws = self.workspace(ctx)
        return await asyncio.to_thread(self._list, ws, params)

    def _list(self, ws: Workspace, params: ListParams) -> ToolResult:
        path = ws.resolve(params.path)
        rel = ws.relative(path)
        if not path.is_dir():
            raise ToolError(f"'{rel}' is not a folder" if path.exists() else f"'{rel}' does not exist")
        cap = min(params.max_entries or self.settings.max_list_entries, self.settings.max_list_entries)
        entries: list[dict[str, Any]] = []
        truncated = False
        fd = ws.open_dir(path)
        try:
            for prefix, names, dir_fd in _walk(fd, params.recursive):
                for name in names:
                    if len(entries) >= cap:
                        truncated = True
                        break
                    entries.append(_describe(prefix + name, name, dir_fd))
                if truncated:
                    break
        finally:
            os.close(fd)
        lines = [_format(e) for e in entries]
        if truncated:
            lines.append(f"[... more entries not shown: limit {cap}]")
        output = "\n".join(lines) if lines else f"'{rel}' is empty"
        return ToolResult(output=output, data={"path": rel, "entries": entries, "truncated": truncated})


def _walk(fd: int, recursive: bool) -> Any:
    if not recursive:
        yield "", sorted(os.listdir(fd)), fd
        return
    for dirpath, dirnames, filenames, dir_fd in os.fwalk(".", dir_fd=fd, follow_symlinks=False):
        dirnames.sort()
        prefix = "" if dirpath == "." else dirpath[2:] + "/"
        yield prefix, sorted(dirnames + filenames), dir_fd


def _describe(shown: str, name: str, dir_fd: int) -> dict[str, Any]:
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return {"path": shown, "type": "unknown", "size": None}
    if stat.S_ISLNK(info.st_mode):
        kind = "symlink"
    elif stat.S_ISDIR(info.st_mode):
        kind = "dir"
    elif stat.S_ISREG(info.st_mode):
        kind = "file"
    else:
        kind = "special"
    return {"path": shown, "type": kind, "size": info.st_size if kind == "file" else None}


def _format(entry: dict[str, Any]) -> str:
    if entry["type"] == "dir":
        return f"{entry['path']}/"
    if entry["type"] == "file":
        return f"{entry['path']} ({entry['size']} bytes)"
    return f"{entry['path']} ({entry['type']})"


# -- delete ---------------------------------------------------------------------------------


class DeleteParams(Model):
    """Arguments of ``files_delete``."""

    model_config = ConfigDict(extra="forbid")

    path: str = PATH_FIELD
    directory: bool = Field(False, description="allow deleting an empty folder (never a non-empty one)")


class FilesDelete(FilesTool):
    """Delete a file (or, explicitly, an empty folder)."""

    name = "files_delete"
    description = (
        "Delete a file in the workspace. Folders are refused unless directory=true, and only when empty. "
        "A symlink is removed itself, never what it points to."
    )
    Params = DeleteParams

    async def run(self, params: DeleteParams, ctx: ToolContext) -> ToolResult:
        """Delete the entry and say what was removed."""
        ws = self.workspace(ctx)
        return await asyncio.to_thread(self._delete, ws, params)

    def _delete(self, ws: Workspace, params: DeleteParams) -> ToolResult:
        ws.resolve(params.path)  # the whole path must be acceptable, even if only its folder is used
        parent_path, name = _split_last(params.path)
        if not name:
            raise ToolError("the workspace itself cannot be deleted")
        parent = ws.resolve(parent_path)
        ws.check_writable(parent / name)  # the entry itself: a symlink is removed, never followed
        rel = ws.relative(parent / name)
        try:
            fd = ws.open_dir(parent)
        except OSError as exc:
            raise _io_error(rel, exc) from None
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                if not params.directory:
                    raise ToolError(f"'{rel}' is a folder; set directory=true to delete it (it must be empty)")
                os.rmdir(name, dir_fd=fd)
                kind = "folder"
            else:
                os.unlink(name, dir_fd=fd)
                kind = "symlink" if stat.S_ISLNK(info.st_mode) else "file"
        except OSError as exc:
            raise _io_error(rel, exc) from None
        finally:
            os.close(fd)
        return ToolResult(output=f"deleted {kind} {rel}", data={"path": rel, "type": kind})


ALL_TOOLS: tuple[type[FilesTool], ...] = (FilesRead, FilesWrite, FilesReplace, FilesList, FilesDelete)
