"""refactorbot agent tools for files confined to a workspace: read, write, replace, list, delete."""

from __future__ import annotations

from refactorbot_tools_files.tools import (
    FilesConfig,
    FilesDelete,
    FilesList,
    FilesRead,
    FilesReplace,
    FilesWrite,
)

__all__ = ["FilesConfig", "FilesDelete", "FilesList", "FilesRead", "FilesReplace", "FilesWrite"]
