"""The dashboard's API client and the schema-driven form helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel, Field
from refactorbot_api.testing import RunningServer
from refactorbot_dashboard.client import ApiClient, ApiError, ServerNotFound
from refactorbot_dashboard.forms import field_kind, resolve
from refactorbot_dashboard.views.settings import parse_section, sections_of


def test_client_from_home_files(server: RunningServer, tmp_path: Path) -> None:
    client = ApiClient.from_environment({"RB_HOME": str(server.host.home)})
    assert client.get("/slices")[0]["slice_id"] == "sample"
    with pytest.raises(ApiError) as info:
        client.post("/slices/sample/operations/add", json={"title": ""})
    assert info.value.status == 422 and "title" in info.value.detail
    client.close()
    with pytest.raises(ServerNotFound, match="refactorbot serve"):
        ApiClient.from_environment({"RB_HOME": str(tmp_path)})


def test_client_prefers_environment_variables(server: RunningServer) -> None:
    env = {"RB_DASHBOARD_API_URL": server.url, "RB_DASHBOARD_API_TOKEN": server.token, "RB_HOME": "/nonexistent"}
    assert ApiClient.from_environment(env).get("/logs", params={"limit": 1, "slice_id": None})["items"] is not None


class Inner(BaseModel):
    a: int


class Params(BaseModel):
    name: str
    mode: str = Field("fast", json_schema_extra={"enum": ["fast", "slow"]})
    limit: int | None = None
    ratio: float = 0.5
    flag: bool = False
    inner: Inner | None = None
    items: list[str] = Field(default_factory=list)


def test_schema_resolution_and_widget_kinds() -> None:
    schema = Params.model_json_schema()
    kinds = {}
    for name, raw in schema["properties"].items():
        prop, nullable = resolve(raw, schema)
        kinds[name] = (field_kind(prop), nullable)
    assert kinds == {
        "name": ("string", False),
        "mode": ("enum", False),
        "limit": ("integer", True),
        "ratio": ("number", False),
        "flag": ("boolean", False),
        "inner": ("json", True),
        "items": ("json", False),
    }
    inner, _ = resolve(schema["properties"]["inner"], schema)
    assert inner["properties"] == {"a": {"title": "A", "type": "integer"}}


def test_settings_sections_and_toml_parsing() -> None:
    document = {"core": {"health_interval": 5}, "slices": {"notes": {"max_notes": 3}}, "plugins": {"api": {"port": 0}}}
    assert list(sections_of(document)) == ["core", "slices.notes", "plugins.api"]
    assert parse_section("a = 1\n[resources]\nb = 2") == ({"a": 1, "resources": {"b": 2}}, None)
    values, problem = parse_section("a = ")
    assert values is None and problem and problem.startswith("not valid TOML")
    assert json.dumps(sections_of({"core": 1})) == "{}"
