"""``@operation``: turn a slice method into a validated, self-describing operation."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar, overload

from pydantic import BaseModel, TypeAdapter

from refactorbot.models import Model, SliceRequest, SliceResponse

F = TypeVar("F", bound=Callable[..., Any])

#: What a streamed operation receives to send a chunk: ``await emit(chunk)``.
Emit = Callable[[Any], Awaitable[None]]


class NoParams(Model):
    """The input model of an operation that takes no parameters."""

    model_config = {"extra": "forbid"}


@dataclasses.dataclass(frozen=True)
class OperationSpec:
    """One operation: its name, description, input model and output adapter."""

    name: str
    description: str
    method: str
    input_model: type[BaseModel]
    output: TypeAdapter[Any]
    takes_params: bool
    stream: bool = False  # takes an ``emit`` callable and sends chunks before its result

    def info(self) -> dict[str, Any]:
        """Return the operation as a JSON-ready dict with its input and output schemas."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_model.model_json_schema(),
            "output_schema": self.output.json_schema(),
            "stream": self.stream,
        }


@overload
def operation(func: F, /) -> F: ...


@overload
def operation(*, name: str | None = None, description: str | None = None, stream: bool = False) -> Callable[[F], F]: ...


def operation(
    func: F | None = None, /, *, name: str | None = None, description: str | None = None, stream: bool = False
) -> Any:
    """Mark an ``async def op(self, params: Model) -> Result`` method of a slice as an operation.

    The parameter's pydantic model validates payloads and gives the input JSON schema; the return
    annotation gives the output schema; the docstring's first line describes it.

    ``stream=True``: the method takes an ``emit`` callable after its parameters
    (``async def op(self, params: Model, emit: Emit) -> Result``) and awaits ``emit(chunk)`` for
    each piece of its answer as it is ready. ``MasterCore.astream`` yields those chunks to the
    caller as they come, then the result; ``call``/``route`` ignore them and return the result.
    """

    def mark(f: F) -> F:
        if not inspect.iscoroutinefunction(f):
            raise TypeError(f"operation {f.__qualname__} must be 'async def'")
        meta = {"name": name or f.__name__, "description": description, "stream": stream}
        f.__rb_operation__ = meta  # type: ignore[attr-defined]
        return f

    return mark(func) if func is not None else mark


def build_spec(func: Callable[..., Any]) -> OperationSpec:
    """Return the ``OperationSpec`` of a method marked with ``@operation``."""
    meta = func.__rb_operation__  # type: ignore[attr-defined]
    hints = typing.get_type_hints(func)
    params = [p for p in inspect.signature(func).parameters.values() if p.name != "self"]
    stream = bool(meta.get("stream"))
    if stream:
        if not params:
            raise TypeError(f"streamed operation {func.__qualname__} must take an 'emit' parameter last")
        params = params[:-1]
    if len(params) > 1:
        raise TypeError(f"operation {func.__qualname__} must take at most one parameter (a pydantic model)")
    if params:
        model = hints.get(params[0].name)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"operation {func.__qualname__}: parameter must be annotated with a pydantic model")
    else:
        model = NoParams
    doc = inspect.getdoc(func) or ""
    return OperationSpec(
        name=meta["name"],
        description=meta["description"] or (doc.splitlines()[0] if doc else ""),
        method=func.__name__,
        input_model=model,
        output=TypeAdapter(hints.get("return", Any)),
        takes_params=bool(params),
        stream=stream,
    )


class OperationStream:
    """The chunks of one streamed operation, then its ``SliceResponse`` (``MasterCore.astream``).

    ``async for chunk in stream`` yields what the operation emits, as it emits it; once the loop
    ends, ``stream.response`` holds the response (its ``data`` is the operation's result, or the
    one-line error when it was refused, limited, timed out or failed). Iterate it once.
    """

    def __init__(self, request: SliceRequest, source: Callable[[OperationStream], AsyncGenerator[Any, None]]) -> None:
        self.request = request
        self.response: SliceResponse | None = None
        self._chunks = source(self)  # an async generator that sets ``self.response`` as it ends

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._chunks

    async def aclose(self) -> None:
        """Stop reading early: the operation is cancelled and recorded as stopped by its caller."""
        await self._chunks.aclose()
