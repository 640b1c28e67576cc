"""``ToolContract``: the checks every tool's tests inherit.

```python
from refactorbot.testing.tool_contract import ToolContract

class TestFilesRead(ToolContract):
    tool_class = FilesRead
    plugin = "refactorbot_tools_files.plugin"
    valid_arguments = {"path": "notes.txt"}
    invalid_arguments = [{}, {"path": 3}]

    def prepare(self, workspace):
        (workspace / "notes.txt").write_text("hello")
```
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import ValidationError

from refactorbot.testing.contracts import IMPORT_BUDGET_MS, check_import_cost
from refactorbot.tools import Tool, ToolContext, ToolResult

#: What OpenAI (and compatible APIs) accept as a function name.
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class ToolContract:
    """Subclass with ``tool_class``, ``plugin``, ``valid_arguments`` and ``invalid_arguments``.

    Optional: ``config`` (the tool's ``[tools.<name>]`` table), ``expect_ok`` (whether a run with
    ``valid_arguments`` succeeds without more setup) and ``prepare(workspace)`` to create files first.
    """

    tool_class: ClassVar[type[Tool]]
    plugin: ClassVar[str]
    valid_arguments: ClassVar[dict[str, Any]] = {}
    invalid_arguments: ClassVar[list[dict[str, Any]]] = []
    config: ClassVar[dict[str, Any]] = {}
    expect_ok: ClassVar[bool] = True

    def prepare(self, workspace: Path) -> None:
        """Create whatever a run with ``valid_arguments`` needs in ``workspace``."""

    def make_tool(self) -> Tool:
        """Return the tool under test, configured with ``config``."""
        return self.tool_class(dict(self.config))

    def make_context(self, tmp_path: Path) -> ToolContext:
        """Return a context whose workspace is a fresh folder."""
        workspace = tmp_path / "workspace"
        workspace.mkdir(parents=True, exist_ok=True)
        return ToolContext(workspace=workspace, session_id="contract-session", user_id="contract-user")

    def test_name_is_a_valid_function_name(self) -> None:
        assert TOOL_NAME.match(self.tool_class.name), f"{self.tool_class.name!r} is not a valid function name"

    def test_schema_is_an_openai_function(self) -> None:
        from jsonschema.validators import validator_for

        schema = self.tool_class.schema()
        assert schema["type"] == "function"
        function = schema["function"]
        assert function["name"] == self.tool_class.name
        assert isinstance(function["description"], str) and function["description"].strip()
        parameters = function["parameters"]
        assert parameters.get("type") == "object", "parameters must be a JSON object schema"
        assert isinstance(parameters.get("properties", {}), dict)
        validator_for(parameters).check_schema(parameters)
        for field in parameters.get("required", []):
            assert field in parameters["properties"], f"required field {field!r} has no schema"
        json.dumps(schema)

    def test_valid_arguments_accepted(self) -> None:
        self.tool_class.Params.model_validate(self.valid_arguments)

    def test_invalid_arguments_rejected(self) -> None:
        assert self.invalid_arguments, "declare at least one invalid_arguments case"
        for arguments in self.invalid_arguments:
            with pytest.raises(ValidationError):
                self.tool_class.Params.model_validate(arguments)

    @pytest.mark.asyncio
    async def test_run_returns_tool_result(self, tmp_path: Path) -> None:
        ctx = self.make_context(tmp_path)
        self.prepare(ctx.workspace)
        tool = self.make_tool()
        params = self.tool_class.Params.model_validate(self.valid_arguments)
        try:
            result = await tool.run(params, ctx)
        except Exception as exc:  # a refusal is allowed only as ToolError
            from refactorbot.errors import ToolError

            assert isinstance(exc, ToolError), f"run raised {type(exc).__name__}, not ToolError: {exc}"
            assert not self.expect_ok, f"run refused valid arguments: {exc}"
            assert str(exc) and "\n" not in str(exc)
            return
        assert isinstance(result, ToolResult)
        if self.expect_ok:
            assert result.ok, result.error
        json.dumps(result.model_dump(mode="json"))

    def test_plugin_registers_the_tool(self) -> None:
        module = importlib.import_module(self.plugin)
        assert getattr(module, "REFACTORBOT_API", None) is not None
        registered: list[Any] = []
        module.register_tools(registered.append)
        assert self.tool_class in registered

    def test_import_fast_and_light(self) -> None:
        result = check_import_cost(self.plugin)
        assert not result["heavy"], f"{self.plugin} imports heavy libraries at module level: {result['heavy']}"
        assert result["ms"] < IMPORT_BUDGET_MS, f"{self.plugin} took {result['ms']:.1f} ms to import"
