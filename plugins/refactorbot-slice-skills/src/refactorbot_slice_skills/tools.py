"""The agent's tools for skills: activate one, read its files, run its scripts, propose a change.

Each goes through the host to the skills slice (``ctx.slice.call``), so the tools slice's
validation, policy (``before_tool_call``) and log apply to them like to any tool. Scripts run only
through the exec tool (``tools.execute`` of ``exec_run``), under its policy and sandbox.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from refactorbot import OperationFailed, SliceUnavailable, Tool, ToolContext, ToolError, ToolResult

_NAME = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$"),
    Field(description="the skill's name, as listed in <available_skills>"),
]


async def _call(ctx: ToolContext, target: str, **payload: Any) -> Any:
    if ctx.slice is None:
        raise ToolError(f"{target} needs a running host")
    try:
        return await ctx.slice.call(target, **payload)
    except SliceUnavailable:
        raise ToolError("no skills slice is running (pip install refactorbot-slice-skills)") from None
    except OperationFailed as exc:
        raise ToolError(exc.error_message or str(exc)) from None


class ActivateParams(BaseModel):
    """Arguments of ``skill_activate``."""

    model_config = ConfigDict(extra="forbid")

    name: _NAME


class SkillActivate(Tool):
    """Load a skill's instructions."""

    name = "skill_activate"
    description = (
        "Load the full instructions of a skill listed in <available_skills>; call it before a task the skill's "
        "description matches, then follow the instructions."
    )
    Params = ActivateParams
    category: ClassVar[str] = "skills"

    async def run(self, params: Any, ctx: ToolContext) -> ToolResult:
        """Return the skill's body and the list of its files."""
        got = await _call(ctx, "skills.activate", name=params.name, session_id=ctx.session_id, how="tool")
        return ToolResult(output=got["text"], data={"name": got["name"], "version": got["version"]})


class ReadParams(BaseModel):
    """Arguments of ``skill_read``."""

    model_config = ConfigDict(extra="forbid")

    name: _NAME
    path: str = Field(
        min_length=1, max_length=1024, description="a file of the skill, relative to its folder: references/api.md"
    )


class SkillRead(Tool):
    """Read a file of a skill, confined to the skill's folder."""

    name = "skill_read"
    description = "Read a file that belongs to a skill (references/..., assets/..., scripts/...), by a path relative to the skill's folder."
    Params = ReadParams
    category: ClassVar[str] = "skills"

    async def run(self, params: Any, ctx: ToolContext) -> ToolResult:
        """Return the file's text (cut at ``[slices.skills] read_max_bytes``)."""
        got = await _call(ctx, "skills.read", name=params.name, path=params.path)
        cut = f"\n[cut: the file has {got['size']} bytes]" if got["truncated"] else ""
        return ToolResult(output=got["text"] + cut, data={"path": got["path"], "size": got["size"]})


class RunParams(BaseModel):
    """Arguments of ``skill_run``."""

    model_config = ConfigDict(extra="forbid")

    name: _NAME
    script: str = Field(
        min_length=1, max_length=1024, description="the script, relative to the skill folder: scripts/fill.py"
    )
    args: list[Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=list, max_length=64, description="arguments passed to the script"
    )


class SkillRun(Tool):
    """Run a skill's script through the exec tool's policy."""

    name = "skill_run"
    description = (
        "Run a script that belongs to a skill (scripts/...) with arguments, in the skill's folder, under the exec "
        "tool's policy; returns its exit code and output."
    )
    Params = RunParams
    category: ClassVar[str] = "skills"

    async def run(self, params: Any, ctx: ToolContext) -> ToolResult:
        """Return what ``exec_run`` returned."""
        got = await _call(
            ctx,
            "skills.run_script",
            name=params.name,
            script=params.script,
            args=params.args,
            session_id=ctx.session_id,
            user_id=ctx.user_id,
        )
        return ToolResult(
            ok=bool(got.get("ok")),
            output=str(got.get("output") or ""),
            data=got.get("data") or {},
            error=got.get("error"),
        )


class ProposeParams(BaseModel):
    """Arguments of ``skill_propose``."""

    model_config = ConfigDict(extra="forbid")

    name: _NAME
    skill_md: str = Field(
        min_length=1, max_length=256 * 1024, description="the complete SKILL.md: front matter, then instructions"
    )
    rationale: str = Field("", max_length=4000, description="what in the conversation this comes from")


class SkillPropose(Tool):
    """Propose a new or changed skill for a person to review; nothing is written until they apply it."""

    name = "skill_propose"
    description = (
        "Propose a new skill, or a change to one, as a complete SKILL.md (YAML front matter with name and "
        "description, then instructions). A person reviews it; it does not take effect until applied."
    )
    Params = ProposeParams
    category: ClassVar[str] = "skills"

    async def run(self, params: Any, ctx: ToolContext) -> ToolResult:
        """Return the proposal's id and diff."""
        got = await _call(
            ctx,
            "skills.propose",
            name=params.name,
            skill_md=params.skill_md,
            rationale=params.rationale,
            session_id=ctx.session_id,
        )
        summary = {"proposal": got["id"], "status": got["status"], "diff": got["diff"][:4000]}
        return ToolResult(output=json.dumps(summary), data={"proposal": got["id"]})
