"""Settings through the API: no credential is written or shown, and no section a plugin would refuse is saved."""

from __future__ import annotations

import json
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import api_sample
import httpx
import pytest
import pytest_asyncio
import refactorbot_api.plugin
from api_sample import CONFIG, Served
from pydantic import BaseModel, ConfigDict, Field
from refactorbot import hookimpl
from refactorbot.channels import ChannelAdapter, ChannelConfig
from refactorbot.config import EnvVarName, HttpUrl, validate_section
from refactorbot.llm import LLMGateway
from refactorbot.testing import host_running
from refactorbot.tools import Tool, ToolResult

pytestmark = pytest.mark.asyncio


class CountParams(BaseModel):
    text: str = ""


class CountingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_lines: int = Field(100, ge=1)


class CountLines(Tool):
    """A tool whose settings live in ``[tools.counting]``."""

    name = "count_lines"
    description = "Count lines."
    Params = CountParams
    config_section = "counting"
    Config = CountingConfig

    async def run(self, params: Any, ctx: Any) -> ToolResult:
        return ToolResult(output=str(params.text.count("\n") + 1))


class EchoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_url: HttpUrl = "https://echo.example.com/v1"
    api_key_env: EnvVarName = "ECHO_API_KEY"


class EchoGateway(LLMGateway):
    """A gateway that, like the real ones, validates ``[gateways.echo]`` when constructed."""

    name = "echo"

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.settings = validate_section(EchoConfig, self.config, "[gateways.echo]")

    async def complete(self, messages: Any, model: str, tools: Any = None, **params: Any) -> Any:
        raise NotImplementedError

    def stream(self, messages: Any, model: str, tools: Any = None, **params: Any) -> Any:
        raise NotImplementedError


class ChatConfig(ChannelConfig):
    room: str = Field("lobby", min_length=1)


class ChatChannel(ChannelAdapter):
    """A channel whose ``[channels.chat]`` is its ``Config`` (only registered, never started here)."""

    name = "chat"
    Config = ChatConfig


class Plugins:
    REFACTORBOT_API = 1

    @hookimpl
    def register_channels(self, register: Any) -> None:
        register(ChatChannel)

    @hookimpl
    def register_tools(self, register: Any) -> None:
        register(CountLines)

    @hookimpl
    def register_gateways(self, register: Any) -> None:
        register(EchoGateway)


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with host_running(tmp_path, [api_sample, Plugins(), refactorbot_api.plugin], config=CONFIG) as host:
        info = json.loads((tmp_path / "server.json").read_text())
        token = (tmp_path / "api-token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=info["url"], headers=headers, timeout=10) as client:
            yield Served(host, tmp_path, client)


SECRETS = [
    ("slices.sample", {"api_key": "s3cret-value"}, "api_key: must be the NAME of an environment variable"),
    ("gateways.echo", {"api_key_env": "sk-proj-Abc123def456ghi789jkl012"}, "api_key_env: must be the NAME"),
    ("gateways.echo", {"api_key_env": "d41d8cd98f00b204e9800998ecf8427e"}, "api_key_env: must be the NAME"),
    ("plugins.foo", {"token": "hunter2-is-my-password"}, "[plugins.foo] token: must be the NAME"),
    ("plugins.foo", {"headers": {"Authorization": "Bearer abc.def.ghi"}}, "headers.Authorization: must be the NAME"),
    ("plugins.foo", {"password": "correct horse battery staple"}, "password: must be the NAME"),
    ("plugins.foo", {"note": "use sk-ant-api03-abcdefghijklmnopqrstuv"}, "note: holds what looks like an API key"),
    ("plugins.foo", {"auth_header": "Bearer abcdefghijkl"}, "auth_header: holds what looks like an API key"),
    ("plugins.foo", {"list": ["ok", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"]}, "list[1]: holds what looks like"),
    ("plugins.foo", {"endpoint": "https://user:pa55word@example.com/v1"}, "endpoint: holds credentials"),
    ("plugins.foo", {"endpoint": "https://example.com/v1?api_key=abcdef123"}, "endpoint: holds credentials"),
    ("gateways.echo", {"base_url": "https://user:pa55word@example.com/v1"}, "base_url: holds credentials"),
    ("plugins.foo", {"x": "***"}, "'***' stands for a masked value, but nothing is stored there"),
]

SECRET_PARTS = (
    "s3cret",
    "sk-proj",
    "d41d8cd9",
    "hunter2",
    "abc.def",
    "horse",
    "sk-ant",
    "abcdefghijkl",
    "ghp_",
    "pa55",
)


@pytest.mark.parametrize(("section", "values", "message"), SECRETS)
async def test_a_literal_secret_is_refused_and_the_file_is_untouched(
    served: Served, section: str, values: dict[str, Any], message: str
) -> None:
    config_file = served.home / "refactorbot.toml"
    before = config_file.read_bytes()
    refused = await served.client.put(f"/settings/{section}", json=values)
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"]
    assert message in detail and "\n" not in detail, detail
    for word in SECRET_PARTS:
        if word in json.dumps(values):
            assert word not in refused.text  # the refusal never repeats the secret
    assert config_file.read_bytes() == before


async def test_environment_variable_names_and_plain_urls_are_accepted(served: Served) -> None:
    ok = await served.client.put(
        "/settings/gateways.echo", json={"api_key_env": "ECHO_API_KEY", "base_url": "https://example.com/v1"}
    )
    assert ok.status_code == 200, ok.text
    ok = await served.client.put(
        "/settings/plugins.foo",
        json={"token": "FOO_TOKEN", "endpoint": "https://example.com/v1?model=x&page=2", "max_tokens": 512},
    )
    assert ok.status_code == 200, ok.text
    saved = tomllib.loads((served.home / "refactorbot.toml").read_text())
    assert saved["plugins"]["foo"]["endpoint"] == "https://example.com/v1?model=x&page=2"
    assert saved["gateways"]["echo"]["api_key_env"] == "ECHO_API_KEY"


HAND_WRITTEN = """
[plugins.foo]
authorization = "Bearer abcdef0123456789"
endpoint = "https://alice:wonderland@proxy.example.com:8443/v1?api_key=zzz123&model=gpt"
repo = "https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/o/r.git"
prompt = "call with sk-or-v1-0123456789abcdef0123 please"
api_key_env = "FOO_KEY"
max_tokens = 512

[plugins.foo.headers]
X-Api-Key = "abc123"
Accept = "application/json"
"""


async def test_get_masks_credentials_wherever_they_are_and_a_masked_view_can_be_sent_back(served: Served) -> None:
    config_file = served.home / "refactorbot.toml"
    config_file.write_text(config_file.read_text() + HAND_WRITTEN)  # as if edited by hand
    view = await served.client.get("/settings")
    assert view.status_code == 200
    foo = view.json()["sections"]["plugins"]["foo"]
    assert foo == {
        "authorization": "***",
        "endpoint": "https://alice:***@proxy.example.com:8443/v1?api_key=***&model=gpt",
        "repo": "https://***@github.com/o/r.git",
        "prompt": "call with *** please",
        "api_key_env": "FOO_KEY",
        "max_tokens": 512,
        "headers": {"X-Api-Key": "***", "Accept": "application/json"},
    }
    for secret in ("abcdef0123456789", "wonderland", "zzz123", "ghp_", "sk-or-v1", "abc123"):
        assert secret not in view.text

    # The masked view sent back (one value changed) keeps every stored credential.
    foo["max_tokens"] = 1024
    put = await served.client.put("/settings/plugins.foo", json=foo)
    assert put.status_code == 200, put.text
    for secret in ("abcdef0123456789", "wonderland", "zzz123", "ghp_", "sk-or-v1", "abc123"):
        assert secret not in put.text
    saved = tomllib.loads(config_file.read_text())["plugins"]["foo"]
    assert saved == {**tomllib.loads(HAND_WRITTEN)["plugins"]["foo"], "max_tokens": 1024}


INVALID_SECTIONS = [
    ("tools.counting", {"max_lines": 0}, "[tools.counting]: max_lines: Input should be greater than or equal to 1"),
    ("tools.counting", {"max_line": 5}, "[tools.counting]: max_line: Extra inputs are not permitted"),
    ("gateways.echo", {"base_url": "ftp://example.com"}, "[gateways.echo]: base_url: Value error, must start with"),
    ("gateways.echo", {"timeout": 5}, "[gateways.echo]: timeout: Extra inputs are not permitted"),
    ("channels.chat", {"room": ""}, "[channels.chat]: room: String should have at least 1 character"),
    ("channels.chat", {"dm_policy": "anyone"}, "[channels.chat]: dm_policy: Input should be"),
]


@pytest.mark.parametrize(("section", "values", "message"), INVALID_SECTIONS)
async def test_a_section_its_plugin_would_refuse_is_422_and_the_file_is_untouched(
    served: Served, section: str, values: dict[str, Any], message: str
) -> None:
    config_file = served.home / "refactorbot.toml"
    before = config_file.read_bytes()
    refused = await served.client.put(f"/settings/{section}", json=values)
    assert refused.status_code == 422, refused.text
    assert message in refused.json()["detail"], refused.json()
    assert config_file.read_bytes() == before


async def test_valid_plugin_sections_are_written(served: Served) -> None:
    assert (await served.client.put("/settings/tools.counting", json={"max_lines": 5})).status_code == 200
    assert (await served.client.put("/settings/channels.chat", json={"room": "ops"})).status_code == 200
    assert (
        await served.client.put("/settings/gateways.echo", json={"base_url": "http://localhost:1"})
    ).status_code == 200
    # A section no installed plugin reads cannot be checked against a model; it is written.
    assert (await served.client.put("/settings/tools.not_installed", json={"anything": 1})).status_code == 200
    saved = tomllib.loads((served.home / "refactorbot.toml").read_text())
    assert saved["tools"] == {"counting": {"max_lines": 5}, "not_installed": {"anything": 1}}
    assert saved["channels"] == {"chat": {"room": "ops"}}
