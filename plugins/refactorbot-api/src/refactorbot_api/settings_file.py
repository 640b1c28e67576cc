"""View and edit ``refactorbot.toml``: secrets masked on the way out, sections validated on the way in."""

from __future__ import annotations

import copy
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import tomli_w
from refactorbot.config import CONFIG_FILE, ResourceLimits, Settings, validate_section
from refactorbot.errors import ConfigError

MASK = "***"
SECRET_WORDS = ("key", "token", "secret", "password")
SINGLE_SECTIONS = ("core", "llm", "resources")
NAMED_SECTIONS = ("slices", "gateways", "tools", "channels", "plugins")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def is_secret(key: str) -> bool:
    """Return whether a configuration key names a secret (it contains key/token/secret/password)."""
    lowered = key.lower()
    return any(word in lowered for word in SECRET_WORDS)


def mask(data: Any) -> Any:
    """Return ``data`` with the value of every secret-looking key replaced by ``'***'``."""
    if isinstance(data, dict):
        return {k: (MASK if is_secret(str(k)) and not isinstance(v, dict) else mask(v)) for k, v in data.items()}
    if isinstance(data, list):
        return [mask(v) for v in data]
    return data


def _unmask(new: Any, old: Any) -> Any:
    """Return ``new`` with each ``'***'`` put back to the value it masked in ``old``."""
    if isinstance(new, dict):
        old_map = old if isinstance(old, dict) else {}
        out = {}
        for key, value in new.items():
            if value == MASK and key in old_map:
                out[key] = old_map[key]
            else:
                out[key] = _unmask(value, old_map.get(key))
        return out
    return new


def config_path(settings: Settings) -> Path:
    """Return the configuration file the host reads (it may not exist yet)."""
    return settings.config_file or settings.home / CONFIG_FILE


def read_file(path: Path) -> dict[str, Any]:
    """Return the TOML tables of ``path`` (empty when it does not exist)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def split_section(section: str) -> tuple[str, str | None]:
    """Return ``(kind, name)`` of ``core`` or ``slices.<id>``; raise ``ConfigError`` if unknown."""
    kind, _, name = section.partition(".")
    if kind in SINGLE_SECTIONS and not name:
        return kind, None
    if kind in NAMED_SECTIONS and _NAME.match(name):
        return kind, name
    choices = ", ".join(SINGLE_SECTIONS) + ", " + ", ".join(f"{k}.<name>" for k in NAMED_SECTIONS)
    raise ConfigError(f"unknown section {section!r} (use one of: {choices}; names are letters, digits, _ or -)")


def _check_toml_values(value: Any, where: str) -> None:
    if value is None:
        raise ConfigError(f"{where}: null has no TOML form; leave the key out instead")
    if isinstance(value, dict):
        for key, sub in value.items():
            _check_toml_values(sub, f"{where}.{key}")
    elif isinstance(value, list):
        for index, sub in enumerate(value):
            _check_toml_values(sub, f"{where}[{index}]")


def updated_document(
    current: dict[str, Any], section: str, values: dict[str, Any], settings: Settings, slice_config: Any = None
) -> dict[str, Any]:
    """Return the whole document with ``section`` replaced by ``values``, validated; raise ``ConfigError``."""
    kind, name = split_section(section)
    document = copy.deepcopy(current)
    if name is None:
        values = _unmask(values, document.get(kind))
        _check_toml_values(values, f"[{section}]")
        document[kind] = values
    else:
        table = document.setdefault(kind, {})
        values = _unmask(values, table.get(name))
        _check_toml_values(values, f"[{section}]")
        table[name] = values
    validate_section(Settings, {**document, "home": settings.home}, f"[{section}]")
    if kind == "slices" and name is not None:
        if slice_config is not None:
            own = {k: v for k, v in values.items() if k not in ("enabled", "resources")}
            validate_section(slice_config, own, f"[{section}]")
        if "enabled" in values and not isinstance(values["enabled"], bool):
            raise ConfigError(f"[{section}]: enabled: must be true or false")
        if "resources" in values:
            if not isinstance(values["resources"], dict):
                raise ConfigError(f"[{section}]: resources: must be a table")
            merged = {**document.get("resources", {}), **values["resources"]}
            validate_section(ResourceLimits, merged, f"[{section}.resources]")
    elif kind == "plugins" and name == "api":
        from refactorbot_api.config import ApiConfig

        validate_section(ApiConfig, values, f"[{section}]")
    return document


def write_atomically(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` as TOML to ``path`` through a temporary file and a rename (owner-only)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = tomli_w.dumps(document)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
