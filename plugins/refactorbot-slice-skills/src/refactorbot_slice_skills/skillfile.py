"""Read one ``SKILL.md``: YAML front matter (safe, capped) and the Markdown body.

Strict where the Agent Skills specification is: ``name`` (1-64 of ``a-z0-9-``, no leading,
trailing or double hyphen) and ``description`` (1-1024 characters) are required and checked.
Lenient where other agents extend it: ``metadata`` may nest objects (``metadata.openclaw``,
``metadata.nanobot``, ...); their requirements are read, and what is not understood becomes a
warning, never a refusal.

The front matter is parsed by PyYAML's ``safe_load`` only, after a streaming pass over its parse
events that refuses anchors and aliases past a small count (billion-laughs documents) and
documents of too many nodes, before anything is built.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

#: Largest ``SKILL.md`` accepted, in bytes.
MAX_SKILL_MD_BYTES = 256 * 1024
#: Largest front matter accepted, in characters.
MAX_FRONT_MATTER_CHARS = 32 * 1024
#: Most YAML parse events (nodes, starts and ends) in a front matter.
MAX_YAML_EVENTS = 4000
#: Most aliases (``*name``) in a front matter; real skills use none.
MAX_YAML_ALIASES = 16
#: Deepest nesting of mappings and sequences in a front matter.
MAX_YAML_DEPTH = 16
#: Most values in the loaded front matter with every alias expanded (what JSON of it would hold).
MAX_EXPANDED_VALUES = 20_000

NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
NAME_MAX = 64
DESCRIPTION_MAX = 1024
COMPATIBILITY_MAX = 500
SPEC_FIELDS = frozenset({"name", "description", "license", "compatibility", "metadata", "allowed-tools"})
#: Fields other agents write at the top level that are understood here.
KNOWN_EXTRAS = frozenset({"always"})
#: Peers whose ``metadata.<peer>`` blocks carry requirements in the OpenClaw shape.
PEERS = ("openclaw", "nanobot", "clawdbot", "clawdis", "refactorbot")
_OS_NAMES = {"darwin": "darwin", "macos": "darwin", "linux": "linux", "win32": "win32", "windows": "win32"}


class SkillError(ValueError):
    """A skill refused, with one line saying why."""


@dataclasses.dataclass(frozen=True)
class Requirements:
    """What a skill needs to be usable here: programs, environment variables, operating systems."""

    bins: tuple[str, ...] = ()
    any_bins: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    os: tuple[str, ...] = ()

    def merged(self, other: Requirements) -> Requirements:
        """Return both sets of requirements together, without duplicates."""

        def join(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
            return tuple(dict.fromkeys((*a, *b)))

        return Requirements(
            join(self.bins, other.bins),
            join(self.any_bins, other.any_bins),
            join(self.env, other.env),
            join(self.os, other.os),
        )


@dataclasses.dataclass(frozen=True)
class SkillSpec:
    """A parsed ``SKILL.md``."""

    name: str
    description: str
    body: str
    license: str | None = None
    compatibility: str | None = None
    allowed_tools: tuple[str, ...] = ()
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    requires: Requirements = Requirements()
    always: bool = False
    warnings: tuple[str, ...] = ()


def split_front_matter(text: str) -> tuple[str, str]:
    """Return ``(front matter, body)`` of a ``SKILL.md``, or raise ``SkillError``."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if not lines or lines[0].rstrip("\r ") != "---":
        raise SkillError("SKILL.md must start with a '---' line opening its YAML front matter")
    for index in range(1, len(lines)):
        if lines[index].rstrip("\r ") == "---":
            front = "\n".join(lines[1:index])
            if len(front) > MAX_FRONT_MATTER_CHARS:
                raise SkillError(f"front matter is {len(front)} characters, over the limit of {MAX_FRONT_MATTER_CHARS}")
            return front, "\n".join(lines[index + 1 :]).strip("\n")
    raise SkillError("SKILL.md front matter is not closed by a '---' line")


def load_yaml(front: str) -> Any:
    """Return the front matter parsed with ``yaml.safe_load``, after checking its size and aliases."""
    import yaml

    if len(front) > MAX_FRONT_MATTER_CHARS:
        raise SkillError(f"front matter is {len(front)} characters, over the limit of {MAX_FRONT_MATTER_CHARS}")
    events = aliases = depth = 0
    try:
        for event in yaml.parse(front, Loader=yaml.SafeLoader):
            events += 1
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_YAML_ALIASES:
                    raise SkillError(f"front matter uses more than {MAX_YAML_ALIASES} YAML aliases; refused")
            elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise SkillError(f"front matter nests deeper than {MAX_YAML_DEPTH} levels; refused")
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                depth -= 1
            if events > MAX_YAML_EVENTS:
                raise SkillError(f"front matter has more than {MAX_YAML_EVENTS} YAML nodes; refused")
        data = yaml.safe_load(front)
    except yaml.YAMLError as exc:
        raise SkillError(f"front matter is not safe YAML: {_yaml_problem(exc)}") from None
    except RecursionError:
        raise SkillError("front matter nests too deeply; refused") from None
    if _expanded_values(data, MAX_EXPANDED_VALUES) > MAX_EXPANDED_VALUES:
        raise SkillError(f"front matter expands to more than {MAX_EXPANDED_VALUES} values through its aliases; refused")
    return data


def _expanded_values(data: Any, limit: int) -> int:
    """Count the values of ``data`` as if every alias were copied, stopping past ``limit``."""
    count, stack = 0, [data]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def _yaml_problem(exc: Any) -> str:
    problem = getattr(exc, "problem", None) or str(exc)
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1})" if mark is not None else ""
    return " ".join(str(problem).split())[:200] + where


def check_name(name: Any, folder: str | None = None) -> str:
    """Return ``name`` if it is a valid skill name (and equals ``folder``), else raise ``SkillError``."""
    if not isinstance(name, str):
        raise SkillError(f"name must be a string, not {type(name).__name__}")
    if not 1 <= len(name) <= NAME_MAX:
        raise SkillError(f"name must be 1-{NAME_MAX} characters, got {len(name)}")
    if not NAME.match(name):
        raise SkillError(
            f"name {name[:80]!r} must be lowercase letters, digits and single hyphens, not starting or ending with one"
        )
    if folder is not None and name != folder:
        raise SkillError(f"name {name!r} differs from its folder {folder[:80]!r}")
    return name


def _description(value: Any) -> str:
    if not isinstance(value, str):
        raise SkillError("description is required (a string of 1-1024 characters)")
    text = value.strip()
    if not 1 <= len(text) <= DESCRIPTION_MAX:
        raise SkillError(f"description must be 1-{DESCRIPTION_MAX} characters, got {len(text)}")
    return text


def _optional_text(data: dict[str, Any], key: str, warnings: list[str], limit: int = 10_000) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str | int | float):
        warnings.append(f"{key}: expected a string, got {type(value).__name__}; ignored")
        return None
    text = str(value).strip()
    if len(text) > limit:
        warnings.append(f"{key}: {len(text)} characters, over {limit}; cut")
        text = text[:limit]
    return text


def _allowed_tools(value: Any, warnings: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):  # the spec: space-delimited; Claude Code writes "Read, Grep"
        return tuple(t for t in re.split(r"[\s,]+", value) if t)
    if isinstance(value, list) and all(isinstance(t, str) for t in value):
        return tuple(t.strip() for t in value if t.strip())
    warnings.append(f"allowed-tools: expected a string or a list of strings, got {type(value).__name__}; ignored")
    return ()


def _strings(value: Any, where: str, warnings: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(v for v in value if v)
    warnings.append(f"{where}: expected a list of strings; ignored")
    return ()


def requirements_of(block: Any, where: str, warnings: list[str]) -> tuple[Requirements, bool]:
    """Return the requirements and ``always`` flag of one peer block (``metadata.openclaw``, ...)."""
    if not isinstance(block, dict):
        return Requirements(), False
    requires = block.get("requires") or {}
    if not isinstance(requires, dict):
        warnings.append(f"{where}.requires: expected a mapping; ignored")
        requires = {}
    for key in requires:
        if key not in ("bins", "anyBins", "env", "config"):
            warnings.append(f"{where}.requires.{key}: not understood; not checked")
    if requires.get("config"):
        warnings.append(f"{where}.requires.config: another agent's configuration; not checked")
    if block.get("install"):
        warnings.append(f"{where}.install: install steps are not run; install what the skill needs yourself")
    systems = []
    for name in _strings(block.get("os"), f"{where}.os", warnings):
        known = _OS_NAMES.get(name.lower())
        if known is None:
            warnings.append(f"{where}.os: unknown system {name!r}; ignored")
        else:
            systems.append(known)
    found = Requirements(
        bins=_strings(requires.get("bins"), f"{where}.requires.bins", warnings),
        any_bins=_strings(requires.get("anyBins"), f"{where}.requires.anyBins", warnings),
        env=_strings(requires.get("env"), f"{where}.requires.env", warnings),
        os=tuple(systems),
    )
    return found, block.get("always") is True


def _metadata(value: Any, warnings: list[str]) -> tuple[dict[str, Any], Requirements, bool]:
    if value is None:
        return {}, Requirements(), False
    if isinstance(value, str):  # some peers write it as one line of JSON text
        try:
            value = json.loads(value)
        except ValueError:
            warnings.append("metadata: a string that is not a JSON object; ignored")
            return {}, Requirements(), False
    if not isinstance(value, dict):
        warnings.append(f"metadata: expected a mapping, got {type(value).__name__}; ignored")
        return {}, Requirements(), False
    requires, always = Requirements(), False
    for key, item in value.items():
        if isinstance(item, dict | list):
            where = f"metadata.{key}"
            if key in PEERS:
                found, peer_always = requirements_of(item, where, warnings)
                requires, always = requires.merged(found), always or peer_always
                warnings.append(f"{where}: nested metadata of another agent; requirements read from it")
            else:
                warnings.append(f"{where}: nested metadata (the specification expects strings); kept, not used")
    return value, requires, always


def parse_skill(text: str, folder: str | None = None) -> SkillSpec:
    """Return the ``SkillSpec`` of a ``SKILL.md``'s text, or raise ``SkillError`` with one line.

    ``folder`` is the name of the skill's folder, which ``name`` must equal.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SKILL_MD_BYTES:
        raise SkillError(f"SKILL.md is over the limit of {MAX_SKILL_MD_BYTES} bytes")
    if "\x00" in text:
        raise SkillError("SKILL.md contains a NUL character")
    front, body = split_front_matter(text)
    data = load_yaml(front)
    if not isinstance(data, dict):
        raise SkillError("front matter must be a YAML mapping (name: ..., description: ...)")
    if any(not isinstance(k, str) for k in data):
        raise SkillError("front matter keys must be strings")
    name = check_name(data.get("name"), folder)
    description = _description(data.get("description"))
    warnings: list[str] = [
        f"{key}: not an Agent Skills field; ignored" for key in data if key not in SPEC_FIELDS | KNOWN_EXTRAS
    ]
    compatibility = _optional_text(data, "compatibility", warnings, COMPATIBILITY_MAX)
    metadata, requires, always = _metadata(data.get("metadata"), warnings)
    if "always" in data:
        if isinstance(data["always"], bool):
            always = always or data["always"]
        else:
            warnings.append("always: expected true or false; ignored")
    return SkillSpec(
        name=name,
        description=description,
        body=body,
        license=_optional_text(data, "license", warnings),
        compatibility=compatibility,
        allowed_tools=_allowed_tools(data.get("allowed-tools"), warnings),
        metadata=metadata,
        requires=requires,
        always=always,
        warnings=tuple(warnings),
    )
