"""``@operation``: turn a slice method into a validated, self-describing operation."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Any, TypeVar, overload

from pydantic import BaseModel, TypeAdapter

from refactorbot.models import Model

F = TypeVar("F", bound=Callable[..., Any])


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

    def info(self) -> dict[str, Any]:
        """Return the operation as a JSON-ready dict with its input and output schemas."""
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_model.model_json_schema(),
            "output_schema": self.output.json_schema(),
        }


@overload
def operation(func: F, /) -> F: ...


@overload
def operation(*, name: str | None = None, description: str | None = None) -> Callable[[F], F]: ...


def operation(func: F | None = None, /, *, name: str | None = None, description: str | None = None) -> Any:
    """Mark an ``async def op(self, params: Model) -> Result`` method of a slice as an operation.

    The parameter's pydantic model validates payloads and gives the input JSON schema; the return
    annotation gives the output schema; the docstring's first line describes it.
    """

    def mark(f: F) -> F:
        if not inspect.iscoroutinefunction(f):
            raise TypeError(f"operation {f.__qualname__} must be 'async def'")
        f.__rb_operation__ = {"name": name or f.__name__, "description": description}  # type: ignore[attr-defined]
        return f

    return mark(func) if func is not None else mark


def build_spec(func: Callable[..., Any]) -> OperationSpec:
    """Return the ``OperationSpec`` of a method marked with ``@operation``."""
    meta = func.__rb_operation__  # type: ignore[attr-defined]
    hints = typing.get_type_hints(func)
    params = [p for p in inspect.signature(func).parameters.values() if p.name != "self"]
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
    )
