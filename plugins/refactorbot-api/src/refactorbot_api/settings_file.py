"""View and edit ``refactorbot.toml``: credentials masked on the way out, sections validated on the way in."""

from __future__ import annotations

import copy
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import tomli_w
from pydantic import BaseModel
from refactorbot import CONFIG_FILE, ConfigError, ResourceLimits, Settings, validate_section

from refactorbot_api.credentials import MASK, mask, merge_update

__all__ = ["MASK", "config_path", "mask", "read_file", "split_section", "updated_document", "write_atomically"]

SINGLE_SECTIONS = ("core", "llm", "resources")
NAMED_SECTIONS = ("slices", "gateways", "tools", "channels", "plugins")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


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
    current: dict[str, Any],
    section: str,
    values: dict[str, Any],
    settings: Settings,
    slice_config: Any = None,
    registry: Any = None,
    env: Any = None,
) -> dict[str, Any]:
    """Return the whole document with ``section`` replaced by ``values``, validated; raise ``ConfigError``.

    Masked values sent back keep what is stored; a new credential is refused (see
    ``refactorbot_api.credentials``). The whole file is validated as the host loads it, then
    the section against the model of the plugin that reads it: the slice's ``Config``, every
    installed tool's ``Config`` whose ``config_section`` it is, the gateway or channel
    registered under that name (its ``Config``, else constructing it, as the host does), or
    this plugin's own for ``[plugins.api]``.
    """
    kind, name = split_section(section)
    document = copy.deepcopy(current)
    if name is None:
        values = merge_update(values, document.get(kind), kind, f"[{section}] ")
        _check_toml_values(values, f"[{section}]")
        document[kind] = values
    else:
        table = document.setdefault(kind, {})
        values = merge_update(values, table.get(name), name, f"[{section}] ")
        _check_toml_values(values, f"[{section}]")
        table[name] = values
    loaded = validate_section(Settings, {**document, "home": settings.home}, f"[{section}]")
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
    elif kind in ("tools", "gateways", "channels") and name is not None and registry is not None:
        check_plugin_section(registry, kind, name, loaded, env)
    return document


def _config_model(obj: Any) -> type[BaseModel] | None:
    model = getattr(obj, "Config", None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def check_plugin_section(registry: Any, kind: str, name: str, settings: Settings, env: Any = None) -> list[str]:
    """Validate ``[<kind>.<name>]`` of ``settings`` as the plugins reading it will; return who checked it.

    Raise ``ConfigError`` (one line, naming the section and field) when one of them refuses it.
    A section no installed plugin reads is not checked (the plugin may be installed later).
    """
    checked = []
    if kind == "tools":
        for tool_name, registered in sorted(registry.tools.items()):
            cls = registered.obj
            model = _config_model(cls)
            if model is not None and (getattr(cls, "config_section", None) or tool_name) == name:
                settings.section("tools", name, model, env)
                checked.append(f"tool {tool_name}")
        return checked
    registered = registry.of(kind).get(name)
    if registered is None:
        return checked
    model = _config_model(registered.obj)
    raw = dict(getattr(settings, kind).get(name, {}))
    if model is not None and kind == "channels":
        settings.section("channels", name, model, env)  # as the communication slice loads it
    elif model is not None:
        validate_section(model, raw, f"[{kind}.{name}]")  # the host gives a gateway the section as written
    else:
        try:
            registered.obj(raw)  # gateways and channels validate their section when constructed
        except ConfigError:
            raise
        except Exception as exc:  # a section the plugin cannot start with
            raise ConfigError(f"[{kind}.{name}]: {type(exc).__name__}: {exc}") from None
    checked.append(f"{kind[:-1]} {name}")
    return checked


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
