"""Describe a slice's operations in plain text, from the JSON schemas of its capabilities.

``refactorbot slices show SLICE`` and ``refactorbot call SLICE.OP --help`` print what an
operation takes (each field with its type, constraints, default and description) and what it
returns. The schemas are those of ``AtomicSlice.get_capabilities()``, as ``GET /slices/{id}``
serves them, so the CLI shows the same thing in-process and against a running server.
"""

from __future__ import annotations

import json
from typing import Any

#: JSON-schema keywords shown after a field's type, and how.
_CONSTRAINTS = (
    ("minLength", "min length {}"),
    ("maxLength", "max length {}"),
    ("minimum", ">= {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "<= {}"),
    ("exclusiveMaximum", "< {}"),
    ("minItems", "min items {}"),
    ("maxItems", "max items {}"),
    ("pattern", "pattern {}"),
)


def type_text(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    """Return a short type for ``schema``: ``string``, ``integer | null``, ``array of string``, ``"a" | "b"``."""
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        target = defs.get(name, {})
        return type_text(target, defs) if "enum" in target else name
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(dict.fromkeys(type_text(s, defs) for s in schema[key]))
    if len(schema.get("allOf", ())) == 1:
        return type_text(schema["allOf"][0], defs)
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    if "const" in schema:
        return json.dumps(schema["const"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(str(k) for k in kind)
    if kind == "array":
        items = schema.get("items")
        return f"array of {type_text(items, defs)}" if isinstance(items, dict) and items else "array"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"object of {type_text(schema['additionalProperties'], defs)}"
    return str(kind) if kind else "any"


def constraints(schema: dict[str, Any]) -> list[str]:
    """Return the field's constraints (``max length 1000``, ``>= 1``), nested ``anyOf`` branches included."""
    found = [text.format(schema[key]) for key, text in _CONSTRAINTS if key in schema]
    for branch in schema.get("anyOf", ()):
        found += [c for c in constraints(branch) if c not in found]
    return found


def field_rows(input_schema: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Return ``(name, type, default, description)`` for each field of an operation's input schema."""
    defs = input_schema.get("$defs", {})
    required = set(input_schema.get("required", ()))
    rows = []
    for name, schema in input_schema.get("properties", {}).items():
        kind = type_text(schema, defs)
        limits = constraints(schema)
        if limits:
            kind += f" ({', '.join(limits)})"
        if name in required:
            default = "required"
        elif "default" in schema:
            default = f"default {json.dumps(schema['default'])}"
        else:
            default = "optional"
        rows.append((name, kind, default, " ".join(str(schema.get("description", "")).split())))
    return rows


def returns_text(output_schema: dict[str, Any]) -> str:
    """Return what an operation answers: its model's name, or a short type."""
    if output_schema.get("type") == "object" and output_schema.get("title"):
        return str(output_schema["title"])
    return type_text(output_schema, output_schema.get("$defs", {}))


def operation_lines(slice_id: str, op: dict[str, Any], indent: str = "") -> list[str]:
    """Return the description of one operation (an ``operations`` item of a slice's capabilities)."""
    target = f"{slice_id}.{op['name']}"
    lines = [f"{indent}{target}" + (f" - {op['description']}" if op.get("description") else "")]
    rows = field_rows(op.get("input_schema") or {})
    if rows:
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            cells = [row[i].ljust(widths[i]) for i in range(3)]
            lines.append(f"{indent}  {'  '.join(cells)}  {row[3]}".rstrip())
    else:
        lines.append(f"{indent}  (no fields)")
    lines.append(f"{indent}  returns {returns_text(op.get('output_schema') or {})}")
    if op.get("stream"):
        lines.append(f"{indent}  streams chunks before its result")
    return lines


def slice_lines(capabilities: dict[str, Any]) -> list[str]:
    """Return the description of a slice and all its operations."""
    slice_id = capabilities["slice_id"]
    head = f"{slice_id} {capabilities.get('version', '')}".rstrip()
    if capabilities.get("description"):
        head += f" - {capabilities['description']}"
    lines = [head, f"requires: {', '.join(capabilities.get('requires') or []) or '-'}"]
    operations = capabilities.get("operations") or []
    if not operations:
        lines.append("No operations.")
    for op in operations:
        lines.append("")
        lines += operation_lines(slice_id, op, indent="  ")
    return lines


def find_operation(capabilities: dict[str, Any], name: str) -> dict[str, Any] | None:
    """Return the operation called ``name`` in ``capabilities``, or None."""
    return next((op for op in capabilities.get("operations") or [] if op.get("name") == name), None)
