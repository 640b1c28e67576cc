"""Configuration, parameters and results of the skills slice."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, StringConstraints, field_validator
from refactorbot import Model, RetentionConfig

SkillName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$"),
    Field(description="a skill's name: lowercase letters, digits and single hyphens"),
]
Status = Literal["available", "unavailable", "disabled", "invalid", "shadowed"]
ProposalStatus = Literal["pending", "applied", "rejected", "stale"]


class Strict(Model):
    """A payload that refuses unknown fields."""

    model_config = ConfigDict(extra="forbid")


class SkillsConfig(RetentionConfig):
    """``[slices.skills]`` in ``refactorbot.toml`` (or ``RB_SKILLS_<FIELD>``)."""

    workspace: str | None = Field(
        None, description="the project folder (default <home>/workspace): skills/ and .agents/skills in it"
    )
    extra_dirs: list[str] = Field(
        default_factory=list,
        description="more folders of skills, after .agents/skills and before skill packs (~ expanded)",
    )
    prompt_budget_chars: int = Field(
        8000, ge=200, le=200_000, description="most characters of the <available_skills> block in the system prompt"
    )
    body_max_chars: int = Field(
        20_000, ge=500, le=500_000, description="most characters of a body loaded on activation"
    )
    read_max_bytes: int = Field(65_536, ge=1024, le=4 * 1024 * 1024, description="most bytes skill_read returns")
    max_mentions: int = Field(8, ge=0, le=64, description="most $skill-name activations taken from one message")
    user_skills_dir: str = Field(
        "~/.agents/skills",
        max_length=4096,
        description="the user's skills shared with other agents, after <workspace>/.agents/skills ('' turns it off)",
    )
    rescan_interval: float = Field(
        2.0,
        ge=0,
        le=3600,
        description="seconds between checks of the sources for changes under refactorbot serve (0: no background checks)",
    )
    keep_versions: int = Field(20, ge=2, le=1000, description="versions of each SKILL.md kept for rollback")
    retention_days: float = Field(
        90.0,
        ge=0,
        le=36_500,
        allow_inf_nan=False,
        description="days activation and outcome rows are kept (0: no age bound); their counts stay",
    )

    @field_validator("rescan_interval")
    @classmethod
    def _not_busy(cls, value: float) -> float:
        if 0 < value < 0.1:
            raise ValueError("rescan_interval is 0 (off) or at least 0.1 seconds")
        return value


class NameParams(Strict):
    """A skill, by name."""

    name: SkillName


class PromptParams(Strict):
    """Arguments of ``skills.prompt``."""

    message: str = Field(
        "", max_length=200_000, description="the user's message: $skill-name in it activates that skill"
    )
    session_id: str | None = Field(None, max_length=200)
    execution_id: str | None = Field(None, max_length=200, description="the agent run, for the activation records")
    budget_chars: int | None = Field(
        None, ge=200, le=200_000, description="override [slices.skills] prompt_budget_chars"
    )


class PromptBlock(Model):
    """What the agent adds to its system prompt."""

    text: str = Field(description="the <available_skills> block, then the bodies of activated skills")
    listed: list[str]
    omitted: list[str] = Field(description="available skills the budget left out (named in the block too)")
    activated: list[str] = Field(description="skills whose bodies the text holds: always ones and $mentions")
    notes: list[str] = Field(description="mentions that could not be activated, and why")
    tool_schemas: dict[str, Any] = Field(
        description="tool schemas to offer instead of the registered ones (skill_activate with its enum of names)"
    )


class ActivateParams(Strict):
    """Arguments of ``skills.activate``."""

    name: SkillName
    session_id: str | None = Field(None, max_length=200)
    execution_id: str | None = Field(None, max_length=200)
    how: Literal["tool", "mention", "always", "cli"] = "tool"


class Activation(Model):
    """A loaded skill body."""

    name: str
    version: int
    location: str
    text: str


class ReadParams(Strict):
    """Arguments of ``skills.read``."""

    name: SkillName
    path: str = Field(min_length=1, max_length=1024, description="a file of the skill, relative to its folder")


class FileText(Model):
    """A file of a skill."""

    name: str
    path: str
    size: int
    text: str
    truncated: bool


class RunScriptParams(Strict):
    """Arguments of ``skills.run_script``."""

    name: SkillName
    script: str = Field(
        min_length=1, max_length=1024, description="the script, relative to the skill folder (scripts/x.py)"
    )
    args: list[Annotated[str, StringConstraints(max_length=4096)]] = Field(default_factory=list, max_length=64)
    session_id: str | None = Field(None, max_length=200)
    user_id: str | None = Field(None, max_length=200)
    timeout: float | None = Field(None, gt=0, le=3600)


class PathParams(Strict):
    """A path on this machine: a skill folder, or a zip of one."""

    path: str = Field(min_length=1, max_length=4096)


class InstallParams(PathParams):
    """Arguments of ``skills.install``."""

    replace: bool = Field(False, description="replace an installed skill of the same name in <home>/skills")


class UploadParams(Strict):
    """Arguments of ``skills.upload``: a zip of one skill folder, sent as base64 (the dashboard's upload)."""

    filename: str = Field(
        min_length=1, max_length=255, pattern=r"^[^/\\\x00]+\.zip$", description="the file's name, ending in .zip"
    )
    content_base64: str = Field(min_length=4, max_length=12 * 1024 * 1024, description="the archive, base64")
    replace: bool = False
    dry_run: bool = Field(False, description="only check it")


class Validation(Model):
    """What ``skills.validate`` found."""

    ok: bool
    name: str | None = None
    error: str | None = None
    warnings: list[str] = Field(default_factory=list)
    requires: dict[str, list[str]] = Field(default_factory=dict)
    unavailable_reason: str | None = None
    content_hash: str | None = None


class OutcomeParams(Strict):
    """Arguments of ``skills.outcome``: how a turn that used skills ended."""

    execution_id: str = Field(min_length=1, max_length=200)
    names: list[SkillName] = Field(min_length=1, max_length=64)
    success: bool
    error: str | None = Field(None, max_length=2000)


class SkillInfo(Model):
    """A skill as ``skills.list`` shows it."""

    name: str
    status: Status
    reason: str | None = Field(
        None, description="why it is not available (unmet requirement, disabled, refused, shadowed)"
    )
    description: str = ""
    source: str
    location: str
    version: int | None = None
    content_hash: str | None = None
    always: bool = False
    warnings: list[str] = Field(default_factory=list)
    activations: int = 0
    successes: int = 0
    failures: int = 0
    last_used: float | None = None


class SkillList(Model):
    """Every skill met, available first."""

    skills: list[SkillInfo]


class VersionInfo(Model):
    """One recorded version of a skill's SKILL.md."""

    version: int
    content_hash: str
    note: str
    created_at: float


class SkillDetail(SkillInfo):
    """One skill with its body, files, requirements and versions."""

    body: str = ""
    files: list[str] = Field(default_factory=list)
    license: str | None = None
    compatibility: str | None = None
    allowed_tools: list[str] = Field(default_factory=list)
    requires: dict[str, list[str]] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    versions: list[VersionInfo] = Field(default_factory=list)


class ProposeParams(Strict):
    """Arguments of ``skills.propose``: a whole new SKILL.md for a new or existing skill."""

    name: SkillName
    skill_md: str = Field(
        min_length=1, max_length=256 * 1024, description="the complete SKILL.md, front matter included"
    )
    rationale: str = Field("", max_length=4000, description="why: what in the conversation asked for it")
    session_id: str | None = Field(None, max_length=200)


class ProposalId(Strict):
    """A proposal, by id."""

    id: int = Field(ge=1)


class RejectParams(ProposalId):
    """Arguments of ``skills.reject``."""

    reason: str = Field("", max_length=2000)


class ProposalsParams(Strict):
    """Arguments of ``skills.proposals``."""

    status: ProposalStatus | None = None
    limit: int = Field(50, ge=1, le=500)


class Proposal(Model):
    """A workshop proposal and what became of it."""

    id: int
    name: str
    status: ProposalStatus
    base_hash: str | None
    rationale: str
    diff: str
    reason: str | None = None
    applied_version: int | None = None
    created_at: float
    decided_at: float | None = None


class ProposalList(Model):
    """Proposals, newest first."""

    proposals: list[Proposal]


class Pruned(Model):
    """What one retention pass deleted from activations and outcomes, and what they still hold."""

    deleted: int = Field(description="rows deleted (past retention_days, or beyond retention_max_rows)")
    remaining: int = Field(description="activation and outcome rows still kept")
