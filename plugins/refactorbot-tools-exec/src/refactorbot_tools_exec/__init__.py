"""refactorbot agent tool ``exec_run``: allow-listed programs, no shell, confined to a workspace."""

from __future__ import annotations

from refactorbot_tools_exec.policy import CommandPolicy, ExecConfig, PreparedCommand
from refactorbot_tools_exec.tool import ExecRun, RunParams

__all__ = ["CommandPolicy", "ExecConfig", "ExecRun", "PreparedCommand", "RunParams"]
