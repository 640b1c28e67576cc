"""``SkillsSlice``: the registry of skills, their prompt block, activations, files, scripts and workshop."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from refactorbot import (
    AtomicSlice,
    BatchWriter,
    HealthState,
    HealthStatus,
    Pruner,
    RefactorbotError,
    SliceUnavailable,
    Workspace,
    operation,
)

from refactorbot_slice_skills import catalog, gating, workshop
from refactorbot_slice_skills.folder import SKILL_FILE, load_folder
from refactorbot_slice_skills.models import (
    ActivateParams,
    Activation,
    FileText,
    InstallParams,
    NameParams,
    OutcomeParams,
    PathParams,
    PromptBlock,
    PromptParams,
    Proposal,
    ProposalId,
    ProposalList,
    ProposalsParams,
    ProposeParams,
    Pruned,
    ReadParams,
    RejectParams,
    RunScriptParams,
    SkillDetail,
    SkillInfo,
    SkillList,
    SkillsConfig,
    UploadParams,
    Validation,
    VersionInfo,
)
from refactorbot_slice_skills.skillfile import SkillError
from refactorbot_slice_skills.sources import Found, Scanner, Source

#: Interpreters for scripts by suffix; the exec tool's policy decides whether each may run.
INTERPRETERS = {".py": "python3", ".sh": "sh", ".bash": "bash", ".js": "node", ".rb": "ruby", ".pl": "perl"}
_ACTIVATION = (
    "INSERT INTO activations (name, version, how, session_id, execution_id, created_at) VALUES (?, ?, ?, ?, ?, ?)"
)


@dataclasses.dataclass(frozen=True)
class View:
    """One scan's result: every folder met, the winners by name, and what each one's status is."""

    found: tuple[Found, ...]
    status: dict[str, tuple[str, str | None]]  # name -> (status, reason) for loaded skills
    generation: int

    def winner(self, name: str) -> Found | None:
        """Return the loaded skill called ``name`` (not shadowed, not refused), or None."""
        for item in self.found:
            if item.name == name and item.skill is not None:
                return item
        return None

    def available(self) -> list[Found]:
        """Return the available skills, in precedence order."""
        return [f for f in self.found if f.skill is not None and self.status[f.name][0] == "available"]


#: Fold the activation rows about to be pruned into each skill's kept counts (in the deleting transaction).
_FOLD_ACTIVATIONS = (
    "INSERT INTO usage_pruned (name, activations, last_used) SELECT name, COUNT(*), MAX(created_at) FROM activations"
    " WHERE id IN (SELECT value FROM json_each(?)) GROUP BY name"
    " ON CONFLICT (name) DO UPDATE SET activations = activations + excluded.activations,"
    " last_used = COALESCE(MAX(last_used, excluded.last_used), last_used, excluded.last_used)"
)
#: The same for outcome rows: successes and failures.
_FOLD_OUTCOMES = (
    "INSERT INTO usage_pruned (name, successes, failures) SELECT name, SUM(success), SUM(1 - success) FROM outcomes"
    " WHERE id IN (SELECT value FROM json_each(?)) GROUP BY name"
    " ON CONFLICT (name) DO UPDATE SET successes = successes + excluded.successes,"
    " failures = failures + excluded.failures"
)
#: Each skill's usage: the rows still kept plus what retention folded away.
_USAGE = (
    "SELECT name, SUM(n) AS n, MAX(last) AS last, SUM(ok) AS ok, SUM(bad) AS bad FROM ("
    " SELECT name, COUNT(*) AS n, MAX(created_at) AS last, 0 AS ok, 0 AS bad FROM activations GROUP BY name"
    " UNION ALL SELECT name, 0, NULL, SUM(success), SUM(1 - success) FROM outcomes GROUP BY name"
    " UNION ALL SELECT name, activations, last_used, successes, failures FROM usage_pruned"
    ") GROUP BY name"
)


def _folder(statement: str) -> Callable[[sqlite3.Connection, list[int]], None]:
    def fold(conn: sqlite3.Connection, rowids: list[int]) -> None:
        conn.execute(statement, (json.dumps(rowids),)).close()

    return fold


class SkillsSlice(AtomicSlice):
    """Agent Skills from the workspace, the home, .agents/skills and skill packs."""

    slice_id = "skills"
    version = "0.1.0"
    Config = SkillsConfig
    config: SkillsConfig

    def __init__(self, ctx: Any, config: Any = None) -> None:
        super().__init__(ctx, config)
        self._scanner = Scanner()
        self._view = View((), {}, 0)
        self._scan_lock = asyncio.Lock()
        self._watcher: asyncio.Task[None] | None = None
        self._one_shot = False
        self._disabled: set[str] = set()
        self._versions: dict[str, tuple[int, str]] = {}
        self._notes: dict[str, str] = {}
        self._blocks: dict[tuple[int, int], catalog.Block] = {}
        self._schemas: tuple[int, dict[str, Any]] = (-1, {})
        self._allowed_roots: set[str] = set()
        self._writer: BatchWriter | None = None
        self._pruner = Pruner(
            self._prune,
            interval=self.config.retention_interval,
            logger=self.log,
            what="skill activation and outcome rows (each skill's counts are kept)",
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def initialize(self) -> None:
        """Open the database and load the registry and the disabled skills."""
        await super().initialize()
        assert self.db is not None
        self._disabled = {r["name"] for r in await self.db.fetchall("SELECT name FROM disabled")}
        rows = await self.db.fetchall("SELECT name, version, content_hash FROM skills")
        self._versions = {r["name"]: (r["version"], r["content_hash"]) for r in rows}
        self._writer = self.db.batch_writer(_ACTIVATION)

    async def start(self) -> None:
        """Scan the sources once, so the first turn finds the skills ready; under ``serve``, keep watching them.

        One-shot commands scan once. Under ``refactorbot serve`` a background task checks the
        sources every ``rescan_interval`` seconds (stat calls only; a folder is parsed again only
        when one of its files changed), so a turn never waits for a scan.
        """
        await self.refresh()
        self._pruner.start()
        host = self.ctx.host
        self._one_shot = host is not None and not host.serving
        if host is not None and host.serving and self.config.rescan_interval > 0:
            self._watcher = asyncio.create_task(self._watch(), name="skills.watch")

    async def stop(self) -> None:
        """Stop watching the sources and the retention passes."""
        await self._pruner.stop()
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await super().stop()

    @property
    def watching(self) -> bool:
        """Whether a background task rescans the sources when they change (``refactorbot serve``)."""
        return self._watcher is not None and not self._watcher.done()

    @property
    def scans(self) -> int:
        """How many scans of the sources this slice has run (start, watcher, reloads and changes)."""
        return self._scanner.scans

    async def _watch(self) -> None:
        interval = self.config.rescan_interval
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh()
            except Exception:  # a source that cannot be read now may be readable at the next check
                self.log.exception("skills rescan failed; trying again in %.1f s", interval)

    async def health_check(self) -> HealthStatus:
        """Unhealthy when the database is; degraded when the background rescan stopped under ``serve``."""
        health = await super().health_check()
        if health.healthy and self._watcher is not None and self._watcher.done():
            return HealthStatus(status=HealthState.DEGRADED, message="the skills rescan task stopped")
        return health

    async def shutdown(self) -> None:
        """Flush the activation records and close the database."""
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
        await super().shutdown()

    # -- sources and scanning --------------------------------------------------------------

    def workspace(self) -> Path:
        """Return the project folder: configured (relative to the home) or ``<home>/workspace``."""
        if not self.config.workspace:
            return self.ctx.home / "workspace"
        path = Path(self.config.workspace).expanduser()
        return path if path.is_absolute() else self.ctx.home / path

    def home_skills(self) -> Path:
        """Return ``<home>/skills``, where installs and workshop changes go."""
        return self.ctx.home / "skills"

    def user_skills(self) -> Path | None:
        """Return the user's skills shared with other agents (``~/.agents/skills``), or None when turned off."""
        configured = self.config.user_skills_dir.strip()
        if not configured:
            return None
        if configured == "~" or configured.startswith("~/"):
            home = self.ctx.env.get("HOME") or os.path.expanduser("~")
            configured = home + configured[1:]
        path = Path(configured).expanduser()
        return path if path.is_absolute() else self.ctx.home / path

    def sources(self) -> list[Source]:
        """Return the skill sources, in precedence order."""
        ws = self.workspace()
        found = [
            Source("workspace", "workspace", ws / "skills"),
            Source("home", "home", self.home_skills()),
            Source("agents", ".agents", ws / ".agents" / "skills"),
        ]
        user = self.user_skills()
        if user is not None:
            found.append(Source("user", "~/.agents", user))
        for index, extra in enumerate(self.config.extra_dirs):
            path = Path(extra).expanduser()
            found.append(Source("extra", f"extra {index + 1}", path if path.is_absolute() else self.ctx.home / path))
        host = self.ctx.host
        packs = getattr(getattr(getattr(host, "plugins", None), "registry", None), "skills", {}) if host else {}
        for folder, registered in sorted(packs.items()):
            found.append(Source("pack", f"pack {registered.plugin}", Path(folder), writable=False))
        return found

    async def refresh(self) -> View:
        """Scan the sources now (stat calls; changed folders parsed again) and return the new view.

        Turns never call this: they read the last view (``self._view``), which the watcher, the
        management operations and ``reload`` keep current. When the view changed, ``skills.changed``
        is published with the new generation.
        """
        async with self._scan_lock:
            found = tuple(await asyncio.to_thread(self._scanner.scan, self.sources(), (self.workspace(),)))
            await self._record_versions(found)
            status = {f.name: self._status_of(f) for f in found if f.skill is not None}
            generation = self._view.generation
            changed = found != self._view.found or status != self._view.status
            if changed:
                generation += 1
                self._blocks.clear()
            self._view = View(found, status, generation)
        if changed:
            await self.ctx.publish(
                "skills.changed",
                {"generation": generation, "available": [f.name for f in self._view.available()]},
            )
        return self._view

    async def _fresh(self) -> View:
        """Return the view for a management operation: scanned now, or at start in a one-shot command."""
        return self._view if self._one_shot else await self.refresh()

    def _status_of(self, item: Found) -> tuple[str, str | None]:
        assert item.skill is not None
        if item.name in self._disabled:
            return "disabled", f"disabled; turn it on with: refactorbot skills enable {item.name}"
        reason = gating.unmet(item.skill.spec.requires, self.ctx.env)
        return ("unavailable", reason) if reason else ("available", None)

    async def _record_versions(self, found: tuple[Found, ...]) -> None:
        """Record a new version of every winning skill whose content hash changed."""
        assert self.db is not None
        for item in found:
            skill = item.skill
            if skill is None or self._versions.get(item.name, (0, ""))[1] == skill.content_hash:
                continue
            now = time.time()
            note = self._notes.pop(item.name, "found in " + item.source.label)
            async with self.db.transaction() as conn:
                async with conn.execute(
                    "SELECT version FROM skill_versions WHERE name = ? AND content_hash = ?",
                    (item.name, skill.content_hash),
                ) as cursor:
                    row = await cursor.fetchone()
                if row is not None:  # back to content seen before (a rollback): that version again
                    version = int(row[0])
                else:
                    async with conn.execute(
                        "SELECT COALESCE(MAX(version), 0) + 1 FROM skill_versions WHERE name = ?", (item.name,)
                    ) as cursor:
                        got = await cursor.fetchone()
                    version = int(got[0]) if got else 1
                    await conn.execute(
                        "INSERT INTO skill_versions (name, version, content_hash, skill_md, note, created_at)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (item.name, version, skill.content_hash, skill.skill_md, note, now),
                    )
                    await conn.execute(
                        "DELETE FROM skill_versions WHERE name = ? AND version <= ?",
                        (item.name, version - self.config.keep_versions),
                    )
                await conn.execute(
                    "INSERT INTO skills (name, source, path, description, content_hash, version, first_seen, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET source = excluded.source,"
                    " path = excluded.path, description = excluded.description, content_hash = excluded.content_hash,"
                    " version = excluded.version, updated_at = excluded.updated_at",
                    (
                        item.name,
                        item.source.label,
                        str(item.path),
                        skill.spec.description,
                        skill.content_hash,
                        version,
                        now,
                        now,
                    ),
                )
            self._versions[item.name] = (version, skill.content_hash)

    # -- the prompt ------------------------------------------------------------------------

    def _block(self, view: View, budget: int) -> catalog.Block:
        key = (view.generation, budget)
        block = self._blocks.get(key)
        if block is None:
            entries = [
                catalog.Entry(f.name, f.skill.spec.description, str(f.path / SKILL_FILE))
                for f in view.available()
                if f.skill is not None
            ]
            block = self._blocks[key] = catalog.render_block(entries, budget)
            if block.omitted:
                self.log.warning(
                    "skills prompt budget of %d characters left out %d skill(s): %s",
                    budget,
                    len(block.omitted),
                    ", ".join(block.omitted[:20]),
                )
        return block

    def _tool_schemas(self, view: View) -> dict[str, Any]:
        if self._schemas[0] != view.generation:
            from refactorbot_slice_skills.tools import SkillActivate

            names = [f.name for f in view.available()]
            schemas: dict[str, Any] = {}
            if names:
                schema = json.loads(json.dumps(SkillActivate.schema()))
                schema["function"]["parameters"]["properties"]["name"]["enum"] = names
                schemas[SkillActivate.name] = schema
            self._schemas = (view.generation, schemas)
        return self._schemas[1]

    def _body(self, item: Found) -> str:
        assert item.skill is not None
        files = [e.path for e in item.skill.files]
        return catalog.body_block(
            item.name, str(item.path / SKILL_FILE), item.skill.spec.body, files, self.config.body_max_chars
        )

    def _activated(self, item: Found, how: str, session_id: str | None, execution_id: str | None) -> None:
        if self._writer is not None:
            version = self._versions.get(item.name, (None, ""))[0]
            self._writer.add((item.name, version, how, session_id, execution_id, time.time()))

    @operation
    async def prompt(self, params: PromptParams) -> PromptBlock:
        """Return the system prompt's skills block: available skills within the budget, then activated bodies."""
        view = self._view
        block = self._block(view, params.budget_chars or self.config.prompt_budget_chars)
        parts = [block.text] if block.text else []
        activated: list[str] = []
        notes: list[str] = []
        for item in view.available():
            if item.skill is not None and item.skill.spec.always:
                parts.append(self._body(item))
                activated.append(item.name)
                self._activated(item, "always", params.session_id, params.execution_id)
        for name in catalog.mentions(params.message, self.config.max_mentions):
            mentioned = view.winner(name)
            if mentioned is None or name in activated:
                continue
            state, reason = view.status[name]
            if state != "available":
                notes.append(f"skill {name} was asked for but is {state}: {reason}")
                continue
            parts.append(self._body(mentioned))
            activated.append(name)
            self._activated(mentioned, "mention", params.session_id, params.execution_id)
        if notes:
            parts.append("\n".join(notes))
        return PromptBlock(
            text="\n\n".join(parts),
            listed=list(block.listed),
            omitted=list(block.omitted),
            activated=activated,
            notes=notes,
            tool_schemas=self._tool_schemas(view),
        )

    # -- activation, files, scripts --------------------------------------------------------

    def _loaded(self, view: View, name: str, *, available: bool = True) -> Found:
        item = view.winner(name)
        if item is None:
            known = ", ".join(f.name for f in view.available()) or "none"
            raise RefactorbotError(f"no skill {name!r} (available: {known})")
        state, reason = view.status[name]
        if available and state != "available":
            raise RefactorbotError(f"skill {name!r} is {state}: {reason}")
        return item

    @operation
    async def activate(self, params: ActivateParams) -> Activation:
        """Load a skill's body (and the list of its files); record the activation."""
        view = self._view
        item = self._loaded(view, params.name)
        self._activated(item, params.how, params.session_id, params.execution_id)
        version = self._versions.get(item.name, (0, ""))[0]
        return Activation(name=item.name, version=version, location=str(item.path), text=self._body(item))

    @operation
    async def read(self, params: ReadParams) -> FileText:
        """Read a file of a skill, confined to the skill's folder (no symlink out of it, no '..')."""
        view = self._view
        item = self._loaded(view, params.name)
        limit = self.config.read_max_bytes
        data, size, rel = await asyncio.to_thread(_read_confined, item.path, params.path, limit)
        try:
            text = data[:limit].decode("utf-8")
        except UnicodeDecodeError:
            raise RefactorbotError(f"{params.name}/{rel} is not UTF-8 text ({size} bytes)") from None
        return FileText(name=item.name, path=rel, size=size, text=text, truncated=size > limit)

    @operation
    async def run_script(self, params: RunScriptParams) -> dict[str, Any]:
        """Run a script of a skill through the exec tool (``tools.execute`` of ``exec_run``) and its policy."""
        view = self._view
        item = self._loaded(view, params.name)
        path = Workspace(item.path, create=False).resolve(params.script)
        rel = os.path.relpath(path, os.path.realpath(item.path))
        interpreter = INTERPRETERS.get(path.suffix.lower())
        if interpreter is None:
            known = ", ".join(sorted(INTERPRETERS))
            raise RefactorbotError(
                f"{params.name}/{rel}: no interpreter for {path.suffix or 'no suffix'} (known: {known})"
            )
        if not path.is_file():
            raise RefactorbotError(f"{params.name}/{rel}: no such script")
        if not self.ctx.has_slice("tools"):
            raise RefactorbotError(
                "skill scripts run only through the exec tool: install refactorbot-slice-tools and refactorbot-tools-exec"
            )
        root = str(Path(os.path.realpath(item.path)).parent)
        try:
            if root not in self._allowed_roots:
                await self.ctx.call("tools.allow_workspace_root", path=root)
                self._allowed_roots.add(root)
            arguments: dict[str, Any] = {"command": [interpreter, rel, *params.args]}
            if params.timeout is not None:
                arguments["timeout"] = params.timeout
            result: dict[str, Any] = await self.ctx.call(
                "tools.execute",
                tool="exec_run",
                arguments=arguments,
                workspace=os.path.realpath(item.path),
                session_id=params.session_id,
                user_id=params.user_id,
            )
        except SliceUnavailable as exc:
            raise RefactorbotError(f"skill scripts run only through the exec tool: {exc}") from None
        return result

    # -- registry operations ---------------------------------------------------------------

    async def _usage(self) -> dict[str, dict[str, Any]]:
        assert self.db is not None and self._writer is not None
        await self._writer.flush()
        return {
            row["name"]: {
                "activations": row["n"] or 0,
                "last_used": row["last"],
                "successes": row["ok"] or 0,
                "failures": row["bad"] or 0,
            }
            for row in await self.db.fetchall(_USAGE)
        }

    async def _prune(self) -> int:
        assert self.db is not None
        bounds = self.config.prune_bounds()
        activations = await self.db.prune(
            "activations", "created_at", before_delete=_folder(_FOLD_ACTIVATIONS), **bounds
        )
        return activations + await self.db.prune(
            "outcomes", "created_at", before_delete=_folder(_FOLD_OUTCOMES), **bounds
        )

    @operation
    async def prune(self) -> Pruned:
        """Delete activation and outcome rows past ``retention_days`` or beyond ``retention_max_rows`` now.

        Each skill's counts (activations, last use, turns ok and failed) stay as they were.
        """
        assert self.db is not None and self._writer is not None
        await self._writer.flush()
        deleted = await self._pruner.run()
        remaining = await self.db.scalar("SELECT (SELECT count(*) FROM activations) + (SELECT count(*) FROM outcomes)")
        return Pruned(deleted=deleted, remaining=remaining)

    def _info(self, view: View, item: Found, usage: dict[str, Any]) -> SkillInfo:
        base: dict[str, Any] = {"name": item.name, "source": item.source.label, "location": str(item.path)}
        if item.skill is None:
            status = "shadowed" if item.shadowed_by else "invalid"
            reason = f"shadowed by the skill in {item.shadowed_by}" if item.shadowed_by else item.error
            return SkillInfo(**base, status=status, reason=reason)
        state, reason = view.status[item.name]
        version, digest = self._versions.get(item.name, (None, None))
        return SkillInfo(
            **base,
            status=state,  # type: ignore[arg-type]
            reason=reason,
            description=item.skill.spec.description,
            version=version,
            content_hash=digest,
            always=item.skill.spec.always,
            warnings=list(item.skill.spec.warnings),
            **usage.get(item.name, {}),
        )

    @operation(name="list")
    async def list_skills(self) -> SkillList:
        """List every skill met: available ones first, then unavailable, disabled, refused and shadowed, with why."""
        return await self._list(await self._fresh())

    async def _list(self, view: View) -> SkillList:
        usage = await self._usage()
        order = {"available": 0, "unavailable": 1, "disabled": 2, "invalid": 3, "shadowed": 4}
        infos = [self._info(view, f, usage) for f in view.found]
        return SkillList(skills=sorted(infos, key=lambda i: (order[i.status], i.name)))

    @operation
    async def show(self, params: NameParams) -> SkillDetail:
        """Return one skill: status, body, files, requirements, metadata, usage and versions."""
        view = await self._fresh()
        matches = [f for f in view.found if f.name == params.name]
        if not matches:
            raise RefactorbotError(f"no skill {params.name!r} in any source")
        item = next((f for f in matches if f.skill is not None), matches[0])
        info = self._info(view, item, (await self._usage()).get(item.name, {}))
        detail = SkillDetail(**info.model_dump())
        assert self.db is not None
        rows = await self.db.fetchall(
            "SELECT version, content_hash, note, created_at FROM skill_versions WHERE name = ? ORDER BY version DESC",
            (params.name,),
        )
        detail.versions = [VersionInfo(**dict(r)) for r in rows]
        if item.skill is not None:
            spec = item.skill.spec
            detail.body = spec.body
            detail.files = [e.path for e in item.skill.files]
            detail.license, detail.compatibility = spec.license, spec.compatibility
            detail.allowed_tools = list(spec.allowed_tools)
            detail.requires = _requires(spec.requires)
            detail.metadata = spec.metadata
        return detail

    async def _set_disabled(self, name: str, disabled: bool) -> SkillInfo:
        view = await self._fresh()
        item = self._loaded(view, name, available=False)
        assert self.db is not None
        if disabled:
            await self.db.execute(
                "INSERT OR IGNORE INTO disabled (name, disabled_at) VALUES (?, ?)", (name, time.time())
            )
            self._disabled.add(name)
        else:
            await self.db.execute("DELETE FROM disabled WHERE name = ?", (name,))
            self._disabled.discard(name)
        view = await self.refresh()
        return self._info(view, item, (await self._usage()).get(name, {}))

    @operation
    async def enable(self, params: NameParams) -> SkillInfo:
        """Turn a skill on again: it is offered to the agent when its requirements are met."""
        return await self._set_disabled(params.name, False)

    @operation
    async def disable(self, params: NameParams) -> SkillInfo:
        """Turn a skill off: it stays listed, as disabled, and is no longer offered or activated."""
        return await self._set_disabled(params.name, True)

    @operation
    async def reload(self) -> SkillList:
        """Scan every source again now, and list the skills."""
        return await self._list(await self.refresh())

    @operation
    async def validate(self, params: PathParams) -> Validation:
        """Check a skill folder or a zip of one without installing it; a refusal is ``ok: false`` with one line."""
        source = Path(params.path).expanduser()
        try:
            skill = await asyncio.to_thread(_validate, source, self.home_skills())
        except SkillError as exc:
            return Validation(ok=False, error=str(exc))
        spec = skill.spec
        return Validation(
            ok=True,
            name=spec.name,
            warnings=list(spec.warnings),
            requires=_requires(spec.requires),
            unavailable_reason=gating.unmet(spec.requires, self.ctx.env),
            content_hash=skill.content_hash,
        )

    @operation
    async def install(self, params: InstallParams) -> SkillInfo:
        """Install a skill folder or zip into ``<home>/skills`` after checking it (zip-slip and zip bombs refused)."""
        from refactorbot_slice_skills import archive

        source = Path(params.path).expanduser()
        try:
            name, _ = await asyncio.to_thread(archive.install, source, self.home_skills(), replace=params.replace)
        except SkillError as exc:
            raise RefactorbotError(f"not installed: {exc}") from None
        self._notes[name] = "installed"
        view = await self.refresh()
        item = next((f for f in view.found if f.name == name and f.source.kind == "home"), None)
        if item is None:  # removed or replaced between the copy and the scan
            raise RefactorbotError(f"{name} was installed in {self.home_skills()} but is no longer there")
        return self._info(view, item, {})

    @operation
    async def upload(self, params: UploadParams) -> Validation:
        """Check, and unless ``dry_run`` install, a zip sent as base64; a refusal is ``ok: false`` with one line."""
        import base64
        import binascii
        import tempfile

        try:
            data = base64.b64decode(params.content_base64, validate=True)
        except (binascii.Error, ValueError):
            return Validation(ok=False, error=f"{params.filename}: not valid base64")
        skills = self.home_skills()
        skills.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".upload-", dir=skills) as scratch:
            archive_path = Path(scratch) / "upload.zip"
            archive_path.write_bytes(data)
            checked = await self.validate(PathParams(path=str(archive_path)))
            if not checked.ok or params.dry_run:
                if checked.error:
                    checked.error = f"{params.filename}: {checked.error}"
                return checked
            try:
                await self.install(InstallParams(path=str(archive_path), replace=params.replace))
            except RefactorbotError as exc:
                return Validation(ok=False, name=checked.name, error=f"{params.filename}: {exc}")
        return checked

    @operation
    async def outcome(self, params: OutcomeParams) -> dict[str, int]:
        """Record how an agent turn that used these skills ended."""
        assert self.db is not None
        now = time.time()
        await self.db.executemany(
            "INSERT INTO outcomes (name, execution_id, success, error, created_at) VALUES (?, ?, ?, ?, ?)",
            [(n, params.execution_id, int(params.success), params.error, now) for n in dict.fromkeys(params.names)],
        )
        return {"recorded": len(dict.fromkeys(params.names))}

    # -- the workshop ----------------------------------------------------------------------

    @operation
    async def propose(self, params: ProposeParams) -> Proposal:
        """Propose a new or changed skill (a whole SKILL.md); nothing is written until it is applied."""
        view = await self._fresh()
        assert self.db is not None
        return await workshop.propose(self.db, view.winner(params.name), params)

    @operation
    async def proposals(self, params: ProposalsParams) -> ProposalList:
        """List workshop proposals, newest first."""
        assert self.db is not None
        return ProposalList(proposals=await workshop.listed(self.db, params.status, params.limit))

    @operation
    async def apply(self, params: ProposalId) -> Proposal:
        """Apply a pending proposal: refused as stale when the skill changed since; versions the skill."""
        assert self.db is not None
        view = await self._fresh()
        row = await workshop.pending(self.db, params.id)
        current = view.winner(row["name"])
        problem = workshop.stale_reason(row, current)
        if problem:
            await workshop.decide(self.db, params.id, "stale", problem)
            raise RefactorbotError(f"proposal {params.id} is stale: {problem}; propose it again")
        await asyncio.to_thread(self._write_skill_md, row["name"], current, row["skill_md"])
        self._notes[row["name"]] = f"proposal {params.id}"
        await self.refresh()
        version = self._versions.get(row["name"], (None, ""))[0]
        return await workshop.decide(self.db, params.id, "applied", None, version)

    @operation
    async def reject(self, params: RejectParams) -> Proposal:
        """Reject a pending proposal, with a reason."""
        assert self.db is not None
        await workshop.pending(self.db, params.id)
        return await workshop.decide(self.db, params.id, "rejected", params.reason or None)

    @operation
    async def rollback(self, params: NameParams) -> SkillDetail:
        """Restore the previous recorded version of a skill's SKILL.md."""
        assert self.db is not None
        view = await self._fresh()
        item = self._loaded(view, params.name, available=False)
        current = self._versions.get(params.name, (0, ""))[0]
        row = await self.db.fetchone(
            "SELECT version, skill_md FROM skill_versions WHERE name = ? AND version < ? ORDER BY version DESC LIMIT 1",
            (params.name, current),
        )
        if row is None:
            raise RefactorbotError(f"skill {params.name!r} has no version before {current} to roll back to")
        await asyncio.to_thread(self._write_skill_md, params.name, item, row["skill_md"])
        self._notes[params.name] = f"rollback to version {row['version']}"
        await self.refresh()
        return await self.show(NameParams(name=params.name))

    def _write_skill_md(self, name: str, current: Found | None, text: str) -> None:
        """Write a SKILL.md where the skill lives, or in ``<home>/skills`` (new skills, skill packs' copies)."""
        import shutil

        if current is not None and current.writable:
            real = Path(os.path.realpath(current.linked_to or current.path))  # a linked skill changes where it is
            root, folder = real.parent, real
        else:
            root, folder = self.home_skills(), self.home_skills() / name
            root.mkdir(parents=True, exist_ok=True)
            if current is not None and not folder.exists():  # a pack's skill: changed in a copy that shadows it
                shutil.copytree(current.linked_to or current.path, folder, symlinks=True)
        space = Workspace(root, create=False)
        target = space.resolve(f"{folder.name}/{SKILL_FILE}", write=True)
        space.write_file(target, text)


def _requires(requires: Any) -> dict[str, list[str]]:
    shown = {"bins": requires.bins, "anyBins": requires.any_bins, "env": requires.env, "os": requires.os}
    return {k: list(v) for k, v in shown.items() if v}


def _read_confined(folder: Path, user_path: str, limit: int) -> tuple[bytes, int, str]:
    space = Workspace(folder, create=False)
    path = space.resolve(user_path)
    fd = space.open_file(path)
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        data = handle.read(limit)
    return data, size, space.relative(path)


def _validate(source: Path, skills_dir: Path) -> Any:
    """Return the checked skill at ``source`` (a folder, or a zip unpacked in a staging folder that is removed)."""
    if source.is_dir() or source.is_symlink():
        return load_folder(source)
    import shutil
    import tempfile

    from refactorbot_slice_skills import archive

    skills_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=archive.STAGING_PREFIX, dir=skills_dir))
    try:
        _, folder = archive.install(source, scratch)
        return load_folder(folder)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
