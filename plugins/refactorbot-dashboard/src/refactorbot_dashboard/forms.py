"""Build a Streamlit form from an operation's JSON schema (the same schema the API validates with)."""

from __future__ import annotations

import json
from typing import Any


def resolve(schema: dict[str, Any], root: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Return ``schema`` with a local ``$ref`` followed and ``anyOf [X, null]`` unwrapped, and if null is allowed."""
    nullable = False
    for _ in range(10):  # refs to refs, bounded
        if "$ref" in schema and schema["$ref"].startswith("#/$defs/"):
            schema = {**root.get("$defs", {}).get(schema["$ref"].split("/")[-1], {}), **_without(schema, "$ref")}
            continue
        options = schema.get("anyOf") or schema.get("oneOf")
        if options:
            concrete = [o for o in options if o.get("type") != "null"]
            nullable = nullable or len(concrete) < len(options)
            if len(concrete) == 1:
                schema = {**concrete[0], **_without(schema, "anyOf", "oneOf")}
                continue
        break
    return schema, nullable


def _without(schema: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in keys}


def field_kind(schema: dict[str, Any]) -> str:
    """Return the widget a property gets: enum, string, integer, number, boolean or json."""
    if "enum" in schema or "const" in schema:
        return "enum"
    kind = schema.get("type")
    return kind if kind in ("string", "integer", "number", "boolean") else "json"


def schema_form(st: Any, schema: dict[str, Any], key: str) -> tuple[dict[str, Any], list[str]]:
    """Draw one widget per property; return the payload and problems found before sending (bad JSON)."""
    payload: dict[str, Any] = {}
    problems: list[str] = []
    required = set(schema.get("required", []))
    for name, raw in schema.get("properties", {}).items():
        prop, nullable = resolve(raw, schema)
        label = name + (" *" if name in required else "")
        help_text = prop.get("description") or raw.get("description")
        default = prop.get("default", raw.get("default"))
        widget_key = f"{key}.{name}"
        kind = field_kind(prop)
        if kind == "enum":
            options = list(prop.get("enum") or [prop.get("const")])
            choices = ([None] if name not in required else []) + options
            index = choices.index(default) if default in choices else 0
            value = st.selectbox(label, choices, index=index, help=help_text, key=widget_key)
        elif kind == "string":
            text = st.text_input(label, value="" if default is None else str(default), help=help_text, key=widget_key)
            value = text if (text or name in required) else None
        elif kind == "integer":
            value = st.number_input(label, value=default, step=1, format="%d", help=help_text, key=widget_key)
            value = None if value is None else int(value)
        elif kind == "number":
            value = st.number_input(label, value=default, help=help_text, key=widget_key)
        elif kind == "boolean":
            value = st.checkbox(label, value=bool(default), help=help_text, key=widget_key)
        else:
            initial = "" if default is None else json.dumps(default)
            text = st.text_area(f"{label} (JSON)", value=initial, help=help_text, key=widget_key, height=80)
            value = None
            if text.strip():
                try:
                    value = json.loads(text)
                except json.JSONDecodeError as exc:
                    problems.append(f"{name}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
        if value is None and (name not in required or nullable):
            continue
        payload[name] = value
    return payload, problems
