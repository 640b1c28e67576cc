"""Configuration: ``refactorbot.toml`` in the home directory, overridden by ``RB_*`` variables.

```toml
[core]
health_interval = 15        # RB_HEALTH_INTERVAL

[resources]                 # defaults for every slice
max_concurrency = 32
timeout = 30.0

[slices.notes]              # one section per slice, validated against the slice's Config
enabled = true              # RB_NOTES_ENABLED
brain_model = "openai/gpt-4o"  # RB_NOTES_BRAIN_MODEL: the model of its self-improvement (default [llm] model)
max_notes = 1000            # RB_NOTES_MAX_NOTES
[slices.notes.resources]
rate_limit = 50             # RB_NOTES_RESOURCES_RATE_LIMIT
```

A slice's settings are, lowest first: its ``[slices.<id>]`` table, the overrides in
``<home>/overrides/<id>.json`` (written by tools such as self-improvement, never by editing the
TOML file), then ``RB_<ID>_<FIELD>`` variables.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from refactorbot.errors import ConfigError, describe_validation_error
from refactorbot.home import default_home
from refactorbot.models import Model

CONFIG_FILE = "refactorbot.toml"
M = TypeVar("M", bound=BaseModel)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
#: Keys of ``[slices.<id>]`` the host reads itself; the rest is validated against the slice's ``Config``.
RESERVED_SLICE_KEYS = ("enabled", "resources", "brain_model", "isolation", "limits", "location")
#: Folder of the home holding one ``<slice_id>.json`` of setting overrides per slice.
OVERRIDES_DIR = "overrides"
#: Largest overrides file read (bytes): a setting, not a data store.
_OVERRIDES_MAX_BYTES = 256 * 1024


def _env_var_name(value: str) -> str:
    # The message never repeats the value: a key pasted here must not reach a log.
    if not _ENV_NAME.match(value):
        raise ValueError("must be the NAME of an environment variable holding the key (letters, digits, _), not a key")
    return value


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value.rstrip("/")


#: A setting that names the environment variable holding a secret (``api_key_env``), never the secret.
EnvVarName = Annotated[str, AfterValidator(_env_var_name)]
#: An http(s) base URL, without a trailing slash.
HttpUrl = Annotated[str, AfterValidator(_http_url)]


class ResourceLimits(Model):
    """Per-slice limits the ``ResourceAllocator`` enforces."""

    model_config = ConfigDict(extra="forbid")

    max_concurrency: int = Field(32, ge=1, description="operations running at once")
    timeout: float = Field(30.0, gt=0, description="seconds before an operation is cancelled")
    rate_limit: float | None = Field(None, gt=0, description="operations per second (None: no limit)")
    burst: int | None = Field(None, ge=1, description="bucket size for the rate limit")


def machine_timezone(env: Mapping[str, str] | None = None) -> str:
    """Return the machine's IANA zone: ``TZ``, else ``/etc/localtime``'s target, else ``/etc/timezone``, else UTC."""
    env = os.environ if env is None else env
    candidates = [env.get("TZ", "").lstrip(":")]
    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        target = ""
    if "zoneinfo/" in target:
        candidates.append(target.split("zoneinfo/", 1)[1])
    try:
        candidates.append(Path("/etc/timezone").read_text(encoding="utf-8").strip())
    except OSError:
        pass
    for name in candidates:
        if name and _is_zone(name):
            return name
    return "UTC"


def _is_zone(name: str) -> bool:
    import zoneinfo

    if name.startswith(("/", ".")) or ".." in name or "\x00" in name:
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def _iana_zone(value: str) -> str:
    if not _is_zone(value):
        raise ValueError(f"unknown time zone {value!r}: use an IANA name such as Europe/Berlin or UTC")
    return value


class CoreSettings(Model):
    """Settings of the orchestrator itself."""

    model_config = ConfigDict(extra="forbid")

    health_interval: float = Field(15.0, gt=0, description="seconds between health checks")
    restart_attempts: int = Field(5, ge=0, description="restarts of a failed slice before giving up")
    restart_backoff: float = Field(1.0, gt=0, description="first restart delay, doubled each time")
    restart_backoff_max: float = Field(60.0, gt=0)
    start_timeout: float = Field(30.0, gt=0, description="seconds a slice may take to initialize, then to start")
    stop_timeout: float = Field(
        10.0, gt=0, description="seconds a slice may take to stop; after SIGINT/SIGTERM, the whole process"
    )
    drain_timeout: float = Field(10.0, gt=0, description="seconds in-flight requests get at shutdown")
    loop_block_threshold: float = Field(
        5.0, gt=0, description="seconds the event loop may be held before the watchdog reports who holds it"
    )
    event_queue_size: int = Field(10_000, ge=1)
    log_level: str = "INFO"
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        "auto", description="event loop of serve and worker: auto (uvloop when installed), asyncio or uvloop"
    )
    timezone: Annotated[str, AfterValidator(_iana_zone)] = Field(
        default_factory=machine_timezone,
        description="IANA zone schedules use when they name none (RB_TIMEZONE; default: the machine's)",
    )
    operation_log: bool = Field(True, description="log every operation to master.db")
    log_format: Literal["text", "json"] = Field(
        "text", description="console log lines: text, or one JSON object a line (with trace_id/span_id when traced)"
    )
    log_retention_days: float = Field(30.0, gt=0, description="unified-log rows older than this are deleted")
    log_max_rows: int = Field(1_000_000, ge=1000, description="the unified log keeps at most this many rows")
    operation_log_retention_days: float = Field(30.0, gt=0, description="operation-log rows older than this go")
    operation_log_max_rows: int = Field(1_000_000, ge=1000, description="the operation log keeps at most this many")
    retention_interval: float = Field(600.0, gt=0, description="seconds between retention passes over master.db")
    retention_batch: int = Field(5000, ge=100, le=100_000, description="rows deleted per transaction when pruning")


class LLMSettings(Model):
    """Which model and gateway slices get when they do not ask for one."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("openai/gpt-4o-mini", description="default model (RB_MODEL)")
    gateway: str | None = Field(None, description="default gateway name (RB_GATEWAY)")


class Settings(Model):
    """The whole configuration of one home directory."""

    model_config = ConfigDict(extra="forbid")

    home: Path
    config_file: Path | None = None
    core: CoreSettings = Field(default_factory=CoreSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    resources: ResourceLimits = Field(default_factory=ResourceLimits)
    slices: dict[str, dict[str, Any]] = Field(default_factory=dict)
    gateways: dict[str, dict[str, Any]] = Field(default_factory=dict)
    tools: dict[str, dict[str, Any]] = Field(default_factory=dict)
    channels: dict[str, dict[str, Any]] = Field(default_factory=dict)
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        """Return the folder holding one SQLite file per slice."""
        return self.home / "slices"

    @property
    def master_db(self) -> Path:
        """Return the orchestrator's database file."""
        return self.home / "master.db"

    def slice_enabled(self, slice_id: str, env: Mapping[str, str] | None = None) -> bool:
        """Return whether ``[slices.<id>] enabled`` (or ``RB_<ID>_ENABLED``) allows the slice."""
        env = os.environ if env is None else env
        raw = env.get(f"RB_{_env_key(slice_id)}_ENABLED")
        if raw is not None:
            return raw.strip().lower() not in ("0", "false", "no", "off", "")
        return bool(self.slices.get(slice_id, {}).get("enabled", True))

    def slice_config(self, slice_id: str, model: type[M], env: Mapping[str, str] | None = None) -> M:
        """Return ``[slices.<id>]``, then its overrides file, then ``RB_<ID>_<FIELD>``, validated against ``model``."""
        section = {k: v for k, v in self.slices.get(slice_id, {}).items() if k not in RESERVED_SLICE_KEYS}
        overrides = self.slice_overrides(slice_id)
        section.update(overrides)
        section.update(_env_fields(model, f"RB_{_env_key(slice_id)}_", env))
        where = f"[slices.{slice_id}]" + (f" with {self.overrides_file(slice_id)}" if overrides else "")
        return validate_section(model, section, where)

    def slice_brain_model(self, slice_id: str, env: Mapping[str, str] | None = None) -> str:
        """Return the model of the slice's self-improvement: ``RB_<ID>_BRAIN_MODEL``, ``brain_model``, ``[llm] model``."""
        env = os.environ if env is None else env
        raw = env.get(f"RB_{_env_key(slice_id)}_BRAIN_MODEL") or self.slices.get(slice_id, {}).get("brain_model")
        if raw is not None and not isinstance(raw, str):
            raise ConfigError(f"[slices.{slice_id}] brain_model: must be a model name (a string)")
        return raw.strip() if raw and raw.strip() else self.llm.model

    def overrides_file(self, slice_id: str) -> Path:
        """Return the file of the slice's setting overrides (``<home>/overrides/<id>.json``)."""
        if not _SLICE_ID.match(slice_id):
            raise ConfigError(f"slice id {slice_id!r} cannot name an overrides file")
        return self.home / OVERRIDES_DIR / f"{slice_id}.json"

    def slice_overrides(self, slice_id: str) -> dict[str, Any]:
        """Return the slice's setting overrides (``{}`` without a file); ``ConfigError`` when it is unreadable."""
        import json

        if not _SLICE_ID.match(slice_id):  # an id that cannot name a file has no overrides
            return {}
        path = self.overrides_file(slice_id)
        try:
            with path.open("rb") as handle:
                raw = handle.read(_OVERRIDES_MAX_BYTES + 1)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
        if len(raw) > _OVERRIDES_MAX_BYTES:
            raise ConfigError(f"{path}: larger than {_OVERRIDES_MAX_BYTES} bytes")
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: invalid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: must hold a JSON object of settings")
        reserved = sorted(set(data) & set(RESERVED_SLICE_KEYS))
        if reserved:
            raise ConfigError(f"{path}: {', '.join(reserved)} cannot be overridden (set them in refactorbot.toml)")
        return data

    def slice_resources(self, slice_id: str, env: Mapping[str, str] | None = None) -> ResourceLimits:
        """Return the slice's resource limits: defaults, its TOML section, then env."""
        merged = self.resources.model_dump(exclude_unset=True)
        merged.update(self.slices.get(slice_id, {}).get("resources", {}))
        merged.update(_env_fields(ResourceLimits, f"RB_{_env_key(slice_id)}_RESOURCES_", env))
        return validate_section(ResourceLimits, merged, f"[slices.{slice_id}.resources]")

    def section(self, kind: str, name: str, model: type[M], env: Mapping[str, str] | None = None) -> M:
        """Return ``[<kind>.<name>]`` (gateways, tools, channels, plugins) validated against ``model``."""
        raw = dict(getattr(self, kind).get(name, {}))
        raw.update(_env_fields(model, f"RB_{_env_key(name)}_", env))
        return validate_section(model, raw, f"[{kind}.{name}]")


_SLICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _env_key(name: str) -> str:
    return name.upper().replace("-", "_").replace(".", "_")


def _env_fields(model: type[BaseModel], prefix: str, env: Mapping[str, str] | None) -> dict[str, Any]:
    env = os.environ if env is None else env
    found: dict[str, Any] = {}
    for field in model.model_fields:
        value = env.get(prefix + field.upper())
        if value is not None:
            found[field] = value
    return found


def validate_section(model: type[M], data: Mapping[str, Any], where: str) -> M:
    """Validate ``data`` against ``model``; raise ``ConfigError`` naming the first bad field."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise ConfigError(f"{where}: {describe_validation_error(exc)}") from None


def load_settings(
    home: str | Path | None = None,
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Read ``refactorbot.toml`` (if present) and ``RB_*`` variables into validated ``Settings``."""
    env = os.environ if env is None else env
    home_dir = Path(home).expanduser() if home else default_home(env)
    path = Path(config_file or env.get("RB_CONFIG") or home_dir / CONFIG_FILE)
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read: {exc}") from None
    elif config_file or env.get("RB_CONFIG"):
        raise ConfigError(f"{path}: no such configuration file")
    for table, model in (("core", CoreSettings), ("llm", LLMSettings)):
        overrides = {k: v for k, v in _env_fields(model, "RB_", env).items() if v}
        if overrides and isinstance(data.get(table, {}), dict):
            data[table] = {**data.get(table, {}), **overrides}
    core = data.setdefault("core", {})
    if isinstance(core, dict) and "timezone" not in core:
        core["timezone"] = machine_timezone(env)  # from the env given, not the process's
    data["home"] = home_dir
    data["config_file"] = path if path.is_file() else None
    return validate_section(Settings, data, str(path))
