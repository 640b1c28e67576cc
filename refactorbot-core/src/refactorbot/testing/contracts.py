"""Contract tests every plugin subclasses: the same checks for every slice, tool and gateway."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, ClassVar

import pytest

from refactorbot.models import ErrorType, ImprovementFeedback, SliceRequest
from refactorbot.slice import AtomicSlice, SliceContext
from refactorbot.testing.host import host_running

#: Libraries a plugin's entry-point module must not import at module level.
HEAVY_MODULES = (
    "litellm",
    "openai",
    "streamlit",
    "fastapi",
    "uvicorn",
    "starlette",
    "httpx",
    "aiohttp",
    "pandas",
    "numpy",
    "torch",
    "discord",
    "telegram",
    "lark_oapi",
    "playwright",
)
IMPORT_BUDGET_MS = 50.0


def check_import_cost(module: str, repeat: int = 3) -> dict[str, Any]:
    """Import ``module`` in fresh interpreters; return its best time (ms) and heavy modules it pulled.

    The core (``refactorbot``, pydantic, pluggy) is imported first, so only the plugin's own
    cost is measured.
    """
    script = textwrap.dedent(
        f"""
        import json, sys, time, importlib
        import refactorbot, refactorbot.slice, refactorbot.tools, refactorbot.llm, refactorbot.channels
        import refactorbot.hookspecs, refactorbot.operations, refactorbot.events, refactorbot.dashboard
        before = set(sys.modules)
        t = time.perf_counter()
        importlib.import_module({module!r})
        ms = (time.perf_counter() - t) * 1000
        heavy = sorted({{m.split('.')[0] for m in set(sys.modules) - before}} & set({list(HEAVY_MODULES)!r}))
        print(json.dumps({{"ms": ms, "heavy": heavy}}))
        """
    )
    best: dict[str, Any] | None = None
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)  # noqa: S603  the running interpreter with a script built here, no shell
        if out.returncode != 0:
            raise AssertionError(f"importing {module} failed:\n{out.stderr}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        if best is None or result["ms"] < best["ms"]:
            best = result
    assert best is not None
    return best


def _bad_value(schema: dict[str, Any]) -> Any:
    kinds = schema.get("type")
    if kinds in ("string", "integer", "number", "boolean", "array"):
        return {"not": "a " + str(kinds)}
    return None


class SliceContract:
    """Subclass with ``slice_class`` (and ``plugin``, the entry-point module) to test a slice.

    Optional: ``config`` (TOML tables for the host), ``valid_payloads`` (operation → payload that
    must succeed), ``invalid_payloads`` (operation → list of payloads that must be refused).
    """

    slice_class: ClassVar[type[AtomicSlice]]
    plugin: ClassVar[str]
    config: ClassVar[dict[str, Any]] = {}
    valid_payloads: ClassVar[dict[str, dict[str, Any]]] = {}
    invalid_payloads: ClassVar[dict[str, list[dict[str, Any]]]] = {}

    def _config(self) -> dict[str, Any]:
        return {"core": {"health_interval": 3600}, **self.config}

    @pytest.mark.asyncio
    async def test_lifecycle(self, tmp_path: Path) -> None:
        sid = self.slice_class.slice_id
        async with host_running(tmp_path, [self.plugin], config=self._config()) as host:
            assert sid in host.running_slices(), host.slice_status()
            assert (tmp_path / "slices" / f"{sid}.db").exists() or not self.slice_class.uses_database
        states = {s["slice_id"]: s["status"] for s in host.slice_status()}
        assert states[sid] == "stopped"

    @pytest.mark.asyncio
    async def test_health(self, tmp_path: Path) -> None:
        async with host_running(tmp_path, [self.plugin], config=self._config()) as host:
            instance = host.instance(self.slice_class.slice_id)
            assert instance is not None
            health = await instance.health_check()
            assert health.healthy, health

    def test_capabilities_schemas_valid(self) -> None:
        from jsonschema.validators import validator_for

        caps = self.slice_class.get_capabilities()
        assert caps.slice_id == self.slice_class.slice_id
        assert caps.operations, "a slice offers at least one operation"
        for op in caps.operations:
            assert op.description, f"operation {op.name} has no description (docstring)"
            for schema in (op.input_schema, op.output_schema):
                validator_for(schema).check_schema(schema)
            json.dumps(op.input_schema)

    @pytest.mark.asyncio
    async def test_migrations_idempotent(self, tmp_path: Path) -> None:
        if not self.slice_class.uses_database:
            pytest.skip("slice has no database")
        ctx = SliceContext(self.slice_class.slice_id, tmp_path)
        dumps = []
        for _ in range(2):
            instance = self.slice_class(ctx)
            await instance.initialize()
            assert instance.db is not None
            rows = await instance.db.fetchall("SELECT type, name, sql FROM sqlite_master ORDER BY name")
            dumps.append([tuple(r) for r in rows])
            assert await instance.db.migrate() == []
            await instance.shutdown()
        assert dumps[0] == dumps[1]

    @pytest.mark.asyncio
    async def test_valid_payloads_succeed(self, tmp_path: Path) -> None:
        if not self.valid_payloads:
            pytest.skip("no valid_payloads declared")
        async with host_running(tmp_path, [self.plugin], config=self._config()) as host:
            for op, payload in self.valid_payloads.items():
                response = await host.route(
                    SliceRequest(slice_id=self.slice_class.slice_id, operation=op, payload=payload)
                )
                assert response.success, f"{op}: {response.error_message}"

    @pytest.mark.asyncio
    async def test_invalid_payloads_rejected(self, tmp_path: Path) -> None:
        sid = self.slice_class.slice_id
        async with host_running(tmp_path, [self.plugin], config=self._config()) as host:
            instance = host.instance(sid)
            assert instance is not None
            cases: list[tuple[str, dict[str, Any]]] = []
            for name, spec in self.slice_class.operations().items():
                schema = spec.input_model.model_json_schema()
                if schema.get("required"):
                    cases.append((name, {}))
                for prop, sub in schema.get("properties", {}).items():
                    bad = _bad_value(sub)
                    if bad is not None:
                        cases.append((name, {**self.valid_payloads.get(name, {}), prop: bad}))
            cases += [(op, p) for op, payloads in self.invalid_payloads.items() for p in payloads]
            for op, payload in cases:
                response = await instance.execute(SliceRequest(slice_id=sid, operation=op, payload=payload))
                assert not response.success, f"{op} accepted invalid payload {payload!r}"
                assert response.error_type is ErrorType.INVALID_PAYLOAD, (op, payload, response)
                assert response.error_message and "\n" not in response.error_message
            unknown = await instance.execute(SliceRequest(slice_id=sid, operation="no_such_operation"))
            assert unknown.error_type is ErrorType.UNKNOWN_OPERATION

    @pytest.mark.asyncio
    async def test_self_diagnostics_pass_when_fresh(self, tmp_path: Path) -> None:
        async with host_running(tmp_path, [self.plugin], config=self._config()) as host:
            instance = host.instance(self.slice_class.slice_id)
            assert instance is not None
            report = await instance.run_self_diagnostics()
            assert report.passed, report
            plan = await instance.self_improve(ImprovementFeedback())
            assert plan.slice_id == self.slice_class.slice_id

    def test_import_fast_and_light(self) -> None:
        result = check_import_cost(self.plugin)
        assert not result["heavy"], f"{self.plugin} imports heavy libraries at module level: {result['heavy']}"
        assert result["ms"] < IMPORT_BUDGET_MS, f"{self.plugin} took {result['ms']:.1f} ms to import"
