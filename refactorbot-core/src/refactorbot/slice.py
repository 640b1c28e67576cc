"""``AtomicSlice``: the base class of every slice, and the context the host gives it."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import AsyncIterator, Mapping
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from refactorbot.errors import (
    OperationFailed,
    OperationTimeout,
    RefactorbotError,
    ResourceLimitExceeded,
    SliceUnavailable,
    describe_validation_error,
)
from refactorbot.models import (
    DiagnosticCheck,
    DiagnosticReport,
    ErrorType,
    HealthState,
    HealthStatus,
    ImprovementFeedback,
    ImprovementPlan,
    Model,
    OperationInfo,
    SliceCapabilities,
    SliceRequest,
    SliceResponse,
)
from refactorbot.operations import Emit, OperationSpec, build_spec

if TYPE_CHECKING:  # imported where used, so that plugin discovery stays fast
    from refactorbot.database import SliceDatabase
    from refactorbot.events import Event
    from refactorbot.llm import LLMCall, LLMChunk, LLMGateway, LLMResponse
    from refactorbot.metrics import Metrics
    from refactorbot.plugins import PluginHost


class SliceConfig(Model):
    """Base of a slice's ``Config`` model: unknown keys are configuration errors."""

    model_config = ConfigDict(extra="forbid")


class RetentionConfig(SliceConfig):
    """Base of the ``Config`` of a slice with a table it prunes: ``retention_*`` settings and their bounds.

    A subclass may declare a field again to change its default or description (the skills slice
    keeps 90 days). ``prune_bounds()`` gives ``SliceDatabase.prune``'s bounds for these settings.
    """

    retention_days: float = Field(
        30.0, ge=0, le=36_500, allow_inf_nan=False, description="days a row is kept (0: no age bound)"
    )
    retention_max_rows: int = Field(1_000_000, ge=0, description="the newest N rows are kept (0: no count bound)")
    retention_interval: float = Field(
        600.0, gt=0, allow_inf_nan=False, description="seconds between retention passes (one at start too)"
    )
    retention_batch: int = Field(5_000, ge=1, le=100_000, description="rows deleted per transaction")

    def prune_bounds(self) -> dict[str, Any]:
        """Return ``max_age_seconds``, ``max_rows`` and ``batch`` for ``SliceDatabase.prune`` (0 turns a bound off)."""
        return {
            "max_age_seconds": self.retention_days * 86_400 or None,
            "max_rows": self.retention_max_rows or None,
            "batch": self.retention_batch,
        }


class Host(Protocol):
    """What a slice may ask of the host through ``ctx.host`` (in a running host, the ``MasterCore``).

    ``SliceContext`` wraps the everyday calls (``ctx.call``, ``ctx.publish``, ``ctx.complete``,
    ``ctx.stream``, ``ctx.has_slice``, ``ctx.env``); the rest is here. ``ctx.host`` is ``None``
    for a slice built without a host (a unit test), so check it before use.
    """

    @property
    def serving(self) -> bool:
        """Whether the host serves (``refactorbot serve``); ``False`` when it runs one command."""
        ...

    @property
    def stopping(self) -> bool:
        """Whether the host is shutting down: new requests are refused as ``slice_unavailable``."""
        ...

    @property
    def env(self) -> Mapping[str, str] | None:
        """The environment the host reads ``RB_*`` variables from (``None``: ``os.environ``)."""
        ...

    @property
    def plugins(self) -> PluginHost:
        """The plugins: ``registry`` (what they registered, by kind), ``records`` (how each loaded), hook calls."""
        ...

    @property
    def metrics(self) -> Metrics:
        """Counts and latencies of every routed operation: ``metrics.snapshot(slice_id)``."""
        ...

    async def route(self, request: SliceRequest) -> SliceResponse:
        """Run one request through hooks, limits and its slice; never raises."""
        ...

    async def publish(self, event: Event) -> None:
        """Publish ``event`` on the event bus."""
        ...

    async def complete(self, call: LLMCall) -> LLMResponse:
        """Send ``call`` to its gateway after the ``before_llm_call`` veto."""
        ...

    def stream(self, call: LLMCall) -> AsyncIterator[LLMChunk]:
        """Like ``complete``, chunk by chunk."""
        ...

    def has_slice(self, slice_id: str) -> bool:
        """Return whether ``slice_id`` is running."""
        ...

    def instance(self, slice_id: str) -> AtomicSlice | None:
        """Return the running instance of ``slice_id``, or ``None``."""
        ...

    def gateway_for(self, call: LLMCall) -> LLMGateway:
        """Return the gateway ``call`` would be sent to; raise ``GatewayError`` when there is none."""
        ...

    def slice_ids(self) -> list[str]:
        """Return the ids of every installed and enabled slice, running or not, sorted."""
        ...

    def slice_class(self, slice_id: str) -> type[AtomicSlice] | None:
        """Return the class of an installed and enabled slice (its operations, capabilities), or ``None``."""
        ...

    def slice_status(self) -> list[dict[str, Any]]:
        """Return one status row per slice: state, health, heartbeat age, restarts, error, metrics."""
        ...

    def resources(self) -> dict[str, dict[str, Any]]:
        """Return each slice's resource limits and current use (``in_flight``, ``refused``), by slice id."""
        ...

    async def master_db(self) -> SliceDatabase:
        """Commit queued operation-log and log rows, then return ``master.db`` (``operation_log``, ``logs``)."""
        ...

    async def reload_slice(self, slice_id: str) -> None:
        """Restart ``slice_id`` alone with the code installed now (hot reload); ``PluginError`` saying why not."""
        ...


class SliceContext:
    """A slice's handle on the host: its home, logger, cross-slice calls, events and LLMs."""

    def __init__(self, slice_id: str, home: Path, host: Host | None = None, settings: Any = None) -> None:
        self.slice_id = slice_id
        self.home = Path(home)
        self.host = host
        self.settings = settings
        self.log = logging.getLogger(f"refactorbot.slice.{slice_id}")

    @property
    def env(self) -> Mapping[str, str]:
        """Return the environment the host reads ``RB_*`` variables from (``os.environ`` by default)."""
        import os

        env = self.host.env if self.host is not None else None
        return os.environ if env is None else env

    @property
    def data_dir(self) -> Path:
        """Return the folder of slice databases."""
        return self.home / "slices"

    @property
    def db_path(self) -> Path:
        """Return this slice's SQLite file."""
        return self.data_dir / f"{self.slice_id}.db"

    def _host(self) -> Host:
        if self.host is None:
            raise SliceUnavailable(f"slice '{self.slice_id}' runs without a host: no other slices to call")
        return self.host

    def has_slice(self, slice_id: str) -> bool:
        """Return whether ``slice_id`` is running and can be called."""
        return self.host is not None and self.host.has_slice(slice_id)

    async def call(self, target: str, /, **payload: Any) -> Any:
        """Call ``"slice.operation"`` through the host and return its data.

        Raise ``SliceUnavailable`` when the slice is absent, ``OperationFailed`` when it fails:
        ``OperationNotFound`` when it has no such operation, ``InvalidPayload`` when it refuses the payload.
        """
        slice_id, _, op = target.partition(".")
        if not op:
            raise ValueError(f"target {target!r} must be 'slice.operation'")
        request = SliceRequest(slice_id=slice_id, operation=op, payload=payload, caller=self.slice_id)
        response = await self._host().route(request)
        if response.success:
            return response.data
        if response.error_type is ErrorType.SLICE_UNAVAILABLE:
            raise SliceUnavailable(response.error_message or f"slice '{slice_id}' is unavailable")
        raise OperationFailed.of(target, response.error_type and response.error_type.value, response.error_message)

    async def publish(self, topic: str, payload: dict[str, Any] | None = None) -> None:
        """Publish an event (``topic`` is dotted, conventionally ``<slice_id>.<what>``)."""
        from refactorbot.events import Event

        await self._host().publish(Event(topic=topic, payload=payload or {}, source=self.slice_id))

    async def complete(
        self,
        messages: list[dict[str, Any]],
        model: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        **params: Any,
    ) -> LLMResponse:
        """Ask a language model through the host's gateways; the call is billed to this slice."""
        from refactorbot.llm import LLMCall

        call = LLMCall(model=model or "", messages=messages, tools=tools, slice_id=self.slice_id, params=params)
        return await self._host().complete(call)

    def stream(
        self,
        messages: list[dict[str, Any]],
        model: str | None = None,
        tools: list[dict[str, Any]] | None = None,
        **params: Any,
    ) -> AsyncIterator[LLMChunk]:
        """Stream a language model's answer through the host's gateways."""
        from refactorbot.llm import LLMCall

        call = LLMCall(
            model=model or "", messages=messages, tools=tools, slice_id=self.slice_id, params=params, stream=True
        )
        return self._host().stream(call)


class AtomicSlice:
    """Base class of every slice: one domain, one database, operations, health and self-care.

    Subclasses set ``slice_id`` and define ``@operation`` methods. Lifecycle:
    ``initialize`` (open the database, migrate) → ``start`` → ``stop`` → ``shutdown``.
    """

    slice_id: ClassVar[str]
    version: ClassVar[str] = "0.1.0"
    description: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    Config: ClassVar[type[BaseModel]] = SliceConfig
    #: Whether the slice gets its own SQLite file (``self.db``) opened by ``initialize``.
    uses_database: ClassVar[bool] = True
    _specs: ClassVar[dict[str, OperationSpec] | None] = None

    def __init__(self, ctx: SliceContext, config: BaseModel | None = None) -> None:
        self.ctx = ctx
        self.config = config if config is not None else self.Config()
        self.db: SliceDatabase | None = None
        self.log = ctx.log

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._specs = None  # resolved on first use, once annotations can be evaluated

    # -- operations ------------------------------------------------------------------------

    @classmethod
    def operations(cls) -> dict[str, OperationSpec]:
        """Return this slice's operations by name."""
        specs = cls.__dict__.get("_specs")
        if specs is None:
            specs = {}
            for klass in reversed(cls.__mro__):
                for attr, value in vars(klass).items():
                    if callable(value) and hasattr(value, "__rb_operation__"):
                        spec = build_spec(getattr(cls, attr))
                        specs[spec.name] = spec
            cls._specs = specs
        return specs

    @classmethod
    def get_capabilities(cls) -> SliceCapabilities:
        """Return the slice's operations with their JSON schemas."""
        return SliceCapabilities(
            slice_id=cls.slice_id,
            version=cls.version,
            description=cls.description or _first_line(cls.__doc__),
            requires=list(cls.requires),
            operations=[OperationInfo(**spec.info()) for spec in cls.operations().values()],
        )

    async def execute(self, request: SliceRequest, emit: Emit | None = None) -> SliceResponse:
        """Run one operation; never raises: failures come back as ``success=False``.

        ``emit`` receives the chunks of a streamed operation (dropped when ``None``).
        """
        started = time.perf_counter()

        def fail(kind: ErrorType, message: str) -> SliceResponse:
            return SliceResponse.failure(request, kind, message, (time.perf_counter() - started) * 1000)

        spec = self.operations().get(request.operation)
        if spec is None:
            names = ", ".join(sorted(self.operations())) or "none"
            return fail(
                ErrorType.UNKNOWN_OPERATION,
                f"slice '{self.slice_id}' has no operation '{request.operation}' (available: {names})",
            )
        try:
            params = spec.input_model.model_validate(request.payload)
        except ValidationError as exc:
            return fail(
                ErrorType.INVALID_PAYLOAD, f"invalid payload for {request.target}: {describe_validation_error(exc)}"
            )
        method = getattr(self, spec.method)
        args: tuple[Any, ...] = (params,) if spec.takes_params else ()
        if spec.stream:
            args += (emit or _drop,)
        try:
            result = await method(*args)
            data = spec.output.dump_python(result, mode="json")
        except OperationTimeout as exc:
            return fail(ErrorType.TIMEOUT, str(exc))
        except ResourceLimitExceeded as exc:
            return fail(ErrorType.RESOURCE_LIMIT, str(exc))
        except SliceUnavailable as exc:
            return fail(ErrorType.SLICE_UNAVAILABLE, str(exc))
        except RefactorbotError as exc:
            return fail(ErrorType.OPERATION_ERROR, str(exc))
        except ValidationError as exc:
            return fail(ErrorType.OPERATION_ERROR, f"{request.target}: {describe_validation_error(exc)}")
        except Exception as exc:  # a bug in the slice: report it, never raise to the caller
            self.log.exception("%s raised", request.target)
            return fail(ErrorType.OPERATION_ERROR, f"{request.target} raised {type(exc).__name__}: {exc}")
        return SliceResponse(
            request_id=request.request_id,
            success=True,
            data=data,
            duration_ms=(time.perf_counter() - started) * 1000,
        )

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def migrations(cls) -> Traversable | None:
        """Return the folder of numbered ``.sql`` migrations (default: ``<package>/migrations``)."""
        module = sys.modules.get(cls.__module__)
        package = getattr(module, "__package__", None) or cls.__module__
        try:
            return files(package) / "migrations"
        except (ModuleNotFoundError, TypeError):
            return None

    async def initialize(self) -> None:
        """Open the slice's database and apply its migrations."""
        if self.uses_database:
            from refactorbot.database import SliceDatabase

            self.db = SliceDatabase(self.ctx.db_path, self.migrations())
            await self.db.open()

    async def start(self) -> None:
        """Begin background work, if any (called after every required slice initialized)."""

    async def stop(self) -> None:
        """Stop background work; in-flight operations have finished or timed out."""

    async def shutdown(self) -> None:
        """Release resources: flush batched writes and close the database."""
        if self.db is not None:
            await self.db.close()
            self.db = None

    async def health_check(self) -> HealthStatus:
        """Return the slice's health (default: its database file is the one opened, and answers).

        A database file deleted or replaced while open makes the slice unhealthy: the supervisor
        restarts it, and the restart opens a fresh database (the loss is logged as an error).
        """
        if self.uses_database:
            if self.db is None or not self.db.is_open:
                return HealthStatus(status=HealthState.UNHEALTHY, message="database is not open")
            problem = self.db.file_problem()
            if problem is not None:
                return HealthStatus(status=HealthState.UNHEALTHY, message=problem)
            await self.db.scalar("SELECT 1")
        return HealthStatus()

    # -- self-care -------------------------------------------------------------------------

    async def run_self_diagnostics(self) -> DiagnosticReport:
        """Check health, database integrity, migrations and operation schemas."""
        checks = []
        try:
            health = await self.health_check()
            detail = health.status.value + (f": {health.message}" if health.message else "")
            checks.append(DiagnosticCheck(name="health", passed=health.healthy, detail=detail))
        except Exception as exc:  # a failing health check is a finding, not a crash
            checks.append(DiagnosticCheck(name="health", passed=False, detail=f"{type(exc).__name__}: {exc}"))
        if self.db is not None and self.db.is_open:
            problem = self.db.file_problem()
            checks.append(
                DiagnosticCheck(
                    name="database_file", passed=problem is None, detail=problem or f"{self.db.path} is the file opened"
                )
            )
            verdict = await self.db.integrity_check()
            checks.append(DiagnosticCheck(name="database_integrity", passed=verdict == "ok", detail=verdict))
            from refactorbot.database import migration_files

            shipped = [n for n, _, _ in migration_files(self.migrations())]
            applied = await self.db.applied_migrations()
            missing = sorted(set(shipped) - set(applied))
            checks.append(
                DiagnosticCheck(
                    name="migrations",
                    passed=not missing,
                    detail=f"applied {len(applied)} of {len(shipped)}" + (f"; missing {missing}" if missing else ""),
                )
            )
        try:
            self.get_capabilities()
            checks.append(DiagnosticCheck(name="schemas", passed=True, detail=f"{len(self.operations())} operations"))
        except Exception as exc:  # an operation whose schema cannot be generated
            checks.append(DiagnosticCheck(name="schemas", passed=False, detail=f"{type(exc).__name__}: {exc}"))
        if self.ctx.host is not None:
            for target, stats in self.ctx.host.metrics.snapshot(self.slice_id).items():
                if stats["count"] >= 10:
                    checks.append(
                        DiagnosticCheck(
                            name=f"error_rate:{target}",
                            passed=stats["error_rate"] < 0.05,
                            detail=f"{stats['errors']} errors in {stats['count']} calls",
                        )
                    )
        return DiagnosticReport(slice_id=self.slice_id, checks=checks)

    async def self_improve(self, feedback: ImprovementFeedback) -> ImprovementPlan:
        """Propose changes from metrics, diagnostics and feedback; nothing is applied here.

        The default gathers the slice's evidence (error rate, p95, recent failures with their
        messages, failed checks, feedback, settings, prompt templates) and, when there is
        something to improve, asks the slice's brain model (``[slices.<id>] brain_model``) for
        validated actions; without a model the plan is rule-based. See ``refactorbot.improve``.
        """
        from refactorbot.improve import default_self_improve

        return await default_self_improve(self, feedback)


async def _drop(chunk: Any) -> None:
    """Discard a chunk: the caller of a streamed operation did not ask for a stream."""


def _first_line(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0] if lines else ""
