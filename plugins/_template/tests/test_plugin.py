from __future__ import annotations

from typing import Any

import pytest
from refactorbot import ErrorType
from refactorbot.testing import SliceContract
from refactorbot_slice_example.plugin import ExampleSlice

PLUGIN = "refactorbot_slice_example.plugin"


class TestExampleSlice(SliceContract):
    slice_class = ExampleSlice
    plugin = PLUGIN
    valid_payloads = {"add": {"text": "hello"}, "list": {}}
    invalid_payloads = {"add": [{"text": "   "}, {"text": "x" * 1001}, {"text": "ok", "extra": 1}]}


@pytest.fixture
def rb_plugins() -> list[Any]:
    return [PLUGIN]


@pytest.fixture
def rb_config() -> dict[str, Any]:
    return {"core": {"health_interval": 3600}, "slices": {"example": {"max_items": 2}}}


@pytest.mark.asyncio
async def test_add_then_list(rb_host: Any) -> None:
    first = await rb_host.call("example.add", text="  first ")
    assert first.success, first.error_message
    assert first.data["text"] == "first"
    await rb_host.call("example.add", text="second")
    listed = await rb_host.call("example.list")
    assert [i["text"] for i in listed.data["items"]] == ["first", "second"]


@pytest.mark.asyncio
async def test_limit_from_config(rb_host: Any) -> None:
    for text in ("a", "b"):
        assert (await rb_host.call("example.add", text=text)).success
    refused = await rb_host.call("example.add", text="c")
    assert refused.error_type is ErrorType.OPERATION_ERROR
    assert "max_items = 2" in refused.error_message
