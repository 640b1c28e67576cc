"""``plugin_of``: a test plugin built from classes and functions, without writing a plugin class.

::

    from refactorbot.testing import host_running, plugin_of

    seen = []

    def after_tool_call(call, result):
        seen.append((call.tool, result.ok))

    helpers = plugin_of(slices=[RecorderSlice], tools=[EchoTool], hooks=[after_tool_call], name="helpers")
    async with host_running(tmp_path, ["refactorbot_slice_tools.plugin", helpers]) as host:
        ...

The plugin implements ``register_slices`` (and ``register_tools``, ...) for the classes given and
nothing else, so ``plugins list`` and the registry show exactly what the test asked for.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from refactorbot._version import API_VERSION
from refactorbot.hookspecs import PROJECT_NAME, hookimpl

if TYPE_CHECKING:
    from refactorbot.channels import ChannelAdapter
    from refactorbot.dashboard import DashboardPage
    from refactorbot.llm import LLMGateway
    from refactorbot.slice import AtomicSlice
    from refactorbot.tools import Tool

__all__ = ["BuiltPlugin", "plugin_of"]

_MARKER = f"{PROJECT_NAME}_impl"

HookFunctions = Mapping[str, Callable[..., Any]] | Iterable[Callable[..., Any]]


class BuiltPlugin:
    """A plugin object made by ``plugin_of``; register it like a module or any plugin instance.

    ``__name__`` is the name the host records it under; ``contents`` maps each registration hook
    to what it registers.
    """

    def __init__(
        self,
        name: str,
        api: int | Sequence[int] | None,
        contents: Mapping[str, tuple[Any, ...]],
        hooks: Mapping[str, Callable[..., Any]],
    ) -> None:
        self.__name__ = name
        if api is not None:
            self.REFACTORBOT_API = api
        self.contents = {hook: objs for hook, objs in contents.items() if objs}
        for hook, objs in self.contents.items():
            setattr(self, hook, _registrar(hook, objs))
        for hook, function in hooks.items():
            setattr(self, hook, function)

    def __repr__(self) -> str:
        return f"<plugin_of {self.__name__!r}>"


def plugin_of(
    *,
    slices: Iterable[type[AtomicSlice]] = (),
    tools: Iterable[type[Tool]] = (),
    gateways: Iterable[type[LLMGateway]] = (),
    channels: Iterable[type[ChannelAdapter]] = (),
    pages: Iterable[DashboardPage] = (),
    hooks: HookFunctions = (),
    name: str | None = None,
    api: int | Sequence[int] | None = API_VERSION,
) -> BuiltPlugin:
    """Return a plugin registering ``slices``, ``tools``, ``gateways``, ``channels`` and ``pages``.

    ``hooks`` adds runtime hooks: functions or bound methods named after the hook
    (``def before_tool_call(call): ...``), or a mapping ``{"before_tool_call": function}``. They
    need no ``@hookimpl`` (the options of one that has it, ``tryfirst`` say, are kept) and may be
    ``async``. ``name`` is what the host records (default: built from the contents; give two
    plugins with the same contents different names to register both). ``api`` is the declared
    ``REFACTORBOT_API`` (``None``: declare nothing).
    """
    contents: dict[str, tuple[Any, ...]] = {
        "register_slices": tuple(slices),
        "register_tools": tuple(tools),
        "register_gateways": tuple(gateways),
        "register_channels": tuple(channels),
        "register_dashboard_pages": tuple(pages),
    }
    named = hooks.items() if isinstance(hooks, Mapping) else ((_hook_name(f), f) for f in hooks)
    impls: dict[str, Callable[..., Any]] = {}
    for hook, function in named:
        if hook in impls or contents.get(hook):
            raise ValueError(f"plugin_of: hook {hook!r} given twice")
        impls[hook] = _as_hookimpl(hook, function)
    if name is None:
        parts = [getattr(o, "__name__", None) or getattr(o, "title", None) or type(o).__name__ for o in _flat(contents)]
        name = "plugin_of(" + ", ".join([*map(str, parts), *impls]) + ")"
    return BuiltPlugin(name, api, contents, impls)


def _flat(contents: Mapping[str, tuple[Any, ...]]) -> list[Any]:
    return [obj for objs in contents.values() for obj in objs]


def _registrar(hook: str, objs: tuple[Any, ...]) -> Callable[..., None]:
    def register_all(register: Callable[[Any], None]) -> None:
        for obj in objs:
            register(obj)

    register_all.__name__ = register_all.__qualname__ = hook
    result: Callable[..., None] = hookimpl(register_all)
    return result


def _hook_name(function: Callable[..., Any]) -> str:
    name = getattr(function, "__name__", None)
    if not name or name == "<lambda>":
        raise TypeError(f"plugin_of: cannot tell which hook {function!r} implements; pass hooks={{'hook_name': ...}}")
    return str(name)


def _as_hookimpl(hook: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """Return ``function`` marked as an implementation, leaving the caller's function untouched."""
    if getattr(function, _MARKER, None) is not None:
        return function
    if inspect.ismethod(function):
        return types.MethodType(_as_hookimpl(hook, function.__func__), function.__self__)
    if not inspect.isfunction(function):
        raise TypeError(f"plugin_of: hook {hook!r} must be a function or a bound method, not {function!r}")
    copy = types.FunctionType(
        function.__code__, function.__globals__, function.__name__, function.__defaults__, function.__closure__
    )
    copy.__kwdefaults__ = function.__kwdefaults__
    copy.__qualname__ = function.__qualname__
    copy.__module__ = function.__module__
    copy.__doc__ = function.__doc__
    copy.__annotations__ = dict(function.__annotations__)
    marked: Callable[..., Any] = hookimpl(copy)
    return marked
