"""Plugin discovery and registration: entry points in, isolated plugins and a registry out.

One entry-point scan per process. Every plugin is loaded, validated and registered inside its
own ``try``; a failure is recorded with the distribution, version, error and traceback, and the
host goes on (``RB_STRICT_PLUGINS=1`` raises instead). ``sys.exit()`` or ``KeyboardInterrupt``
in a plugin's import or registration hook is a failure like any other.

Imports and registration hooks run in a worker thread with a time limit
(``RB_PLUGIN_LOAD_TIMEOUT``, 10 s by default): a plugin past it is reported ``hung`` with the
stack it was stuck in, and skipped. The worker is a daemon thread, so a hung one never keeps the
process alive; the next plugin gets a fresh worker.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import os
import queue
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from types import CodeType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import pluggy

from refactorbot import hookspecs
from refactorbot._selection import blocked
from refactorbot._version import API_VERSION
from refactorbot.errors import ConfigError, PluginError

if TYPE_CHECKING:  # importlib.metadata is imported where entry points are scanned, not by the CLI's fast path
    from importlib.metadata import EntryPoint

log = logging.getLogger(__name__)
T = TypeVar("T")

ENTRY_POINT_GROUP = "refactorbot"
PluginStatus = Literal["ok", "failed", "blocked", "incompatible", "hung"]
#: Seconds a plugin's import, and then its registration hooks, may take (``RB_PLUGIN_LOAD_TIMEOUT``).
DEFAULT_LOAD_TIMEOUT = 10.0
#: Attribute set on the log record of a plugin that failed to load, so a console can fold them.
PLUGIN_FAILURE = "refactorbot_plugin_failure"
#: Hooks run in the bounded worker: called once at start, they must return promptly.
BOUNDED_HOOKS = frozenset({*hookspecs.REGISTRATION_HOOKS, "register_routes", "register_commands"})


def load_timeout(env: Mapping[str, str]) -> float:
    """Return ``RB_PLUGIN_LOAD_TIMEOUT`` in seconds, or raise ``ConfigError`` saying what is wrong."""
    raw = env.get("RB_PLUGIN_LOAD_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_LOAD_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ConfigError(f"RB_PLUGIN_LOAD_TIMEOUT must be a positive number of seconds, got {raw!r}")
    return value


def describe_exception(exc: BaseException) -> str:
    """Return ``Type: message``, or ``called sys.exit(code)`` for a ``SystemExit``."""
    if isinstance(exc, Escaped):
        exc = exc.exc
    if isinstance(exc, SystemExit):
        return "called sys.exit()" if exc.code is None else f"called sys.exit({exc.code!r})"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Escaped(Exception):
    """A ``SystemExit``, ``KeyboardInterrupt`` or other ``BaseException`` that plugin code raised.

    Caught where plugin code runs and raised as an ordinary exception, so it cannot end the host.
    """

    def __init__(self, exc: BaseException) -> None:
        super().__init__(describe_exception(exc))
        self.exc = exc


class Hung(Exception):
    """Raised by ``BoundedRunner.run`` when the work did not finish in time."""

    def __init__(self, seconds: float, stack: str) -> None:
        super().__init__(f"did not finish within {seconds:g}s")
        self.seconds = seconds
        self.stack = stack


class BoundedRunner:
    """Run plugin code in a daemon worker thread and wait for it at most ``timeout`` seconds.

    An exception the code raises is raised in the caller; a ``SystemExit``, ``KeyboardInterrupt``
    or other ``BaseException`` comes back as ``Escaped`` (a real Ctrl-C reaches the waiting main
    thread, never the worker, and is not caught). Work past the limit raises ``Hung`` with the
    worker's stack; that worker is abandoned (it may finish later, unobserved, and then ends) and
    the next call starts a new one. An idle worker ends after ``idle`` seconds.
    """

    def __init__(self, timeout: float, idle: float = 1.0) -> None:
        self.timeout = timeout
        self.idle = idle
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], list[Any], threading.Event]] | None = None
        self._thread: threading.Thread | None = None

    def _worker(self, jobs: queue.SimpleQueue[tuple[Callable[[], Any], list[Any], threading.Event]]) -> None:
        while True:
            try:
                func, box, done = jobs.get(timeout=self.idle)
            except queue.Empty:
                with self._lock:  # ``run`` puts jobs under the same lock: none can be missed
                    if not jobs.empty():
                        continue
                    if self._jobs is jobs:
                        self._jobs, self._thread = None, None
                    return
            try:
                box.append((True, func()))
            except BaseException as exc:  # everything plugin code raises goes back to the caller
                box.append((False, exc))
            finally:
                done.set()
            if self._jobs is not jobs:  # abandoned while this job hung: nobody waits any more
                return

    def run(self, func: Callable[[], T], what: str = "plugin") -> T:
        """Return ``func()`` run in the worker, or raise what it raised, or ``Hung``."""
        box: list[Any] = []
        done = threading.Event()
        with self._lock:
            if self._jobs is None or self._thread is None:
                self._jobs = queue.SimpleQueue()
                self._thread = threading.Thread(target=self._worker, args=(self._jobs,), daemon=True)
                self._thread.start()
            thread = self._thread
            thread.name = f"refactorbot-load:{what}"  # names the plugin a hung worker is stuck in
            self._jobs.put((func, box, done))
        if not done.wait(self.timeout):
            frame = sys._current_frames().get(thread.ident or -1)
            stack = "".join(traceback.format_stack(frame)) if frame is not None else ""
            with self._lock:
                if self._thread is thread:  # abandoned: the next job gets a fresh worker
                    self._jobs, self._thread = None, None
            raise Hung(self.timeout, stack)
        ok, value = box[0]
        if ok:
            return value  # type: ignore[no-any-return]
        if isinstance(value, Exception):
            raise value
        raise Escaped(value) from value


@functools.cache
def scan_entry_points() -> tuple[EntryPoint, ...]:
    """Return the ``refactorbot`` entry points installed, scanned once per process."""
    from importlib.metadata import entry_points

    return tuple(sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name))


#: One installed plugin: its entry point's name and value, its distribution's name and version.
PluginSource = tuple[str, str, str, str | None]


def installed_plugins(env: Mapping[str, str]) -> list[PluginSource]:
    """Return every installed plugin, sorted by entry-point name.

    From the install cache (``refactorbot._install_cache``) while no distribution was installed,
    upgraded or removed since it was written; else scanned with ``importlib.metadata`` (each
    distribution's metadata parsed once) and cached.
    """
    from refactorbot import _install_cache

    cached = _install_cache.load("entry-points", env)
    if isinstance(cached, list) and all(
        isinstance(row, list) and len(row) == 4 and all(isinstance(v, str) for v in row[:3]) for row in cached
    ):
        return [(row[0], row[1], row[2], row[3] if isinstance(row[3], str) else None) for row in cached]
    stamp = _install_cache.fingerprint()  # taken first: an install during the scan makes the cache stale
    scan_entry_points.cache_clear()  # the installation changed since (sys.path, an install): scan it again
    found: list[PluginSource] = [(ep.name, ep.value, *_dist_of(ep)) for ep in scan_entry_points()]
    _install_cache.store("entry-points", [list(row) for row in found], env, stamp)
    return found


def import_entry_point(value: str) -> Any:
    """Return the object an entry point's value names, as ``EntryPoint.load`` does: ``module[:attr.attr]``."""
    import importlib

    module, _, attrs = value.partition("[")[0].partition(":")  # extras (``[...]``) are not imported
    target = importlib.import_module(module.strip())
    for attr in filter(None, attrs.strip().split(".")):
        target = getattr(target, attr)
    return target


@dataclasses.dataclass
class PluginRecord:
    """What the host knows of one plugin: where it came from and how loading went."""

    name: str
    version: str | None = None
    entry_point: str | None = None
    status: PluginStatus = "ok"
    hooks: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None
    traceback: str | None = None
    #: Loaded, but something to know: ``declares no REFACTORBOT_API; assumed compatible with API 1``.
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict with stable keys."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Registered:
    """One registered object and the plugin that registered it."""

    obj: Any
    plugin: str


class Registry:
    """What plugins registered, by kind then name; collisions are errors naming both plugins."""

    KINDS = {
        "register_slices": "slices",
        "register_channels": "channels",
        "register_tools": "tools",
        "register_gateways": "gateways",
        "register_dashboard_pages": "pages",
        "register_skills": "skills",
    }

    def __init__(self) -> None:
        self.slices: dict[str, Registered] = {}
        self.channels: dict[str, Registered] = {}
        self.tools: dict[str, Registered] = {}
        self.gateways: dict[str, Registered] = {}
        self.pages: dict[str, Registered] = {}
        #: Skill-pack folders, by their resolved path; the skills slice reads them.
        self.skills: dict[str, Registered] = {}

    def of(self, kind: str) -> dict[str, Registered]:
        """Return the mapping for ``kind`` (``slices``, ``tools``, ...)."""
        table: dict[str, Registered] = getattr(self, kind)
        return table


def registered_name(kind: str, obj: Any) -> str:
    """Return the name ``obj`` registers under, or raise ``TypeError`` saying what is missing."""
    if kind == "skills":
        return _skill_folder(obj)
    attr = {"slices": "slice_id", "pages": "key"}.get(kind, "name")
    name = getattr(obj, attr, None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{kind[:-1]} {obj!r} has no {attr!r} string attribute")
    return name


def _skill_folder(obj: Any) -> str:
    """Return a skill pack's folder as a resolved path, or raise saying why it cannot be one."""
    from pathlib import Path

    if not isinstance(obj, str | os.PathLike) or not str(obj):
        raise TypeError(f"skills: register takes the path of a folder of skills, not {obj!r}")
    path = Path(obj).resolve()
    if not path.is_dir():
        raise TypeError(f"skills: {str(path)!r} is not a folder")
    return str(path)


class PluginHost:
    """The pluggy manager plus what each plugin registered and how loading went."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env: Mapping[str, str] = os.environ if env is None else env
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        #: Where each entry-point plugin came from: record name -> (entry-point name, value, distribution).
        self.sources: dict[str, tuple[str, str, str]] = {}
        self.registry = Registry()
        self.strict = self.env.get("RB_STRICT_PLUGINS", "") not in ("", "0", "false")
        self.load_timeout = load_timeout(self.env)
        self._runner = BoundedRunner(self.load_timeout)

    # -- loading ---------------------------------------------------------------------------

    def load_entrypoints(self, entry_points: Iterable[EntryPoint] | None = None) -> None:
        """Load every installed plugin (or ``entry_points``) allowed by ``RB_LOAD_PLUGINS`` / ``RB_DISABLE_PLUGINS``.

        The installed plugins are known from the install cache when nothing was installed since
        (see ``installed_plugins``): ``importlib.metadata`` is then not even imported.
        """
        loads: list[Callable[[], Any]]
        if entry_points is None:
            sources = installed_plugins(self.env)
            loads = [functools.partial(import_entry_point, value) for _, value, _, _ in sources]
        else:
            eps = sorted(entry_points, key=lambda ep: ep.name)
            sources = [(ep.name, ep.value, *_dist_of(ep)) for ep in eps]
            loads = [ep.load for ep in eps]
        per_dist: dict[str, int] = {}
        for _, _, dist_name, _ in sources:
            per_dist[dist_name] = per_dist.get(dist_name, 0) + 1
        for (ep_name, value, dist_name, version), load in zip(sources, loads, strict=True):
            name = dist_name if per_dist[dist_name] == 1 else f"{dist_name}:{ep_name}"
            record = PluginRecord(name=name, version=version, entry_point=f"{ep_name} = {value}")
            self._load(record, (ep_name, value, dist_name), load)

    def load_entry_point(self, name: str, value: str, dist: str, *, registration: bool = True) -> PluginRecord:
        """Load the one plugin an entry point names (``name = value`` of distribution ``dist``).

        Nothing else is scanned or imported: the CLI uses this to add one plugin's commands. With
        ``registration=False`` the registration hooks (``register_slices``, ...) are not run.
        ``RB_LOAD_PLUGINS`` / ``RB_DISABLE_PLUGINS`` apply as in ``load_entrypoints``.
        """
        record = PluginRecord(name=dist, entry_point=f"{name} = {value}")
        self._load(record, (name, value, dist), functools.partial(import_entry_point, value), registration=registration)
        return record

    def _load(
        self, record: PluginRecord, source: tuple[str, str, str], load: Callable[[], Any], *, registration: bool = True
    ) -> None:
        """Import one entry point's plugin (unless blocked) in the bounded worker, then ``add`` it."""
        self.records[record.name] = record
        self.sources[record.name] = source
        if blocked(source[2], self.env):
            record.status = "blocked"
            record.error = "disabled by RB_LOAD_PLUGINS / RB_DISABLE_PLUGINS"
            return
        try:
            plugin = self._runner.run(load, record.name)
        except Hung as hung:
            self._hang(record, f"import did not finish within {hung.seconds:g}s", hung.stack)
            return
        except Escaped as exc:  # sys.exit() or KeyboardInterrupt at import
            self._fail(record, f"{exc} at import")
            return
        except Exception as exc:  # any import-time error of a third-party module
            self._fail(record, f"import failed: {type(exc).__name__}: {exc}")
            return
        self.add(plugin, record, registration=registration)

    def register(self, plugin: Any, name: str | None = None, version: str | None = None) -> PluginRecord:
        """Register a plugin object (a module or instance) directly, as tests and embedders do."""
        name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        return self.add(plugin, PluginRecord(name=name, version=version))

    def add(self, plugin: Any, record: PluginRecord, *, registration: bool = True) -> PluginRecord:
        """Check, register and run the registration hooks of one loaded plugin (unless ``registration=False``)."""
        self.records[record.name] = record
        problem = _api_problem(plugin)
        if getattr(plugin, "REFACTORBOT_API", None) is None:  # a declaration, not a gate
            record.warning = f"declares no REFACTORBOT_API; assumed compatible with API {API_VERSION}"
        if problem:
            record.status = "incompatible"
            record.error = problem
            if self.strict:
                raise PluginError(f"plugin {record.name}: {problem}")
            return record
        try:
            self.pm.register(plugin, name=record.name)
        except Exception as exc:  # pluggy validation, duplicate registration
            self._fail(record, f"hook validation failed: {exc}")
            return record
        wrapper = _wrapper_problem(self.pm, plugin)
        if wrapper is not None:  # refused whole: none of its hooks may run without the wrapper
            self.pm.unregister(plugin)
            self._fail(record, wrapper)
            return record
        running: list[str] = []
        try:
            unknown = [hc.name for hc in (self.pm.get_hookcallers(plugin) or []) if not hc.has_spec()]
            if unknown:
                raise PluginError(f"implements unknown hook(s): {', '.join(sorted(unknown))}")
            record.hooks = sorted(hc.name for hc in self.pm.get_hookcallers(plugin) or [])
            if not registration:
                return record
            staged = self._runner.run(lambda: self._run_registration(plugin, running), record.name)
        except Hung as hung:  # a registration hook that does not return
            self.pm.unregister(plugin)
            record.hooks = []
            hook = running[-1] if running else "registration"
            self._hang(record, f"{hook} did not return within {hung.seconds:g}s", hung.stack)
            return record
        except Exception as exc:  # a third-party registration hook raised
            self.pm.unregister(plugin)
            record.hooks = []
            hook = running[-1] if running else "registration"
            self._fail(record, f"{hook} {exc}" if isinstance(exc, Escaped) else describe_exception(exc))
            return record
        self._merge(staged, record)
        return record

    def _run_registration(self, plugin: Any, running: list[str]) -> list[tuple[str, str, Any]]:
        staged: list[tuple[str, str, Any]] = []
        for hook_name, kind in Registry.KINDS.items():
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                if impl.plugin is not plugin:
                    continue

                def register(obj: Any, _kind: str = kind) -> None:
                    staged.append((_kind, registered_name(_kind, obj), obj))

                running.append(hook_name)
                _call_impl(impl, register=register)
        return staged

    def _merge(self, staged: list[tuple[str, str, Any]], record: PluginRecord) -> None:
        for kind, name, obj in staged:
            table = self.registry.of(kind)
            if name in table and table[name].plugin != record.name:
                other = table[name].plugin
                msg = f"{kind[:-1]} {name!r} registered by both {other} and {record.name}; kept {other}'s"
                record.error = f"{record.error}; {msg}" if record.error else msg
                log.error(msg)
                if self.strict:
                    raise PluginError(msg)
                continue
            table[name] = Registered(obj, record.name)

    def _fail(self, record: PluginRecord, message: str) -> None:
        record.status = "failed"
        record.error = message.splitlines()[0] if message else message
        record.traceback = traceback.format_exc() if sys.exc_info()[0] is not None else None
        # the command line folds these into one hint per command (refactorbot.cli.main.plugin_hint)
        log.error("plugin %s failed: %s", record.name, record.error, extra={PLUGIN_FAILURE: record.name})
        if self.strict:
            raise PluginError(f"plugin {record.name}: {record.error}")

    def _hang(self, record: PluginRecord, message: str, stack: str) -> None:
        record.status = "hung"
        record.error = f"{message} (RB_PLUGIN_LOAD_TIMEOUT); skipped"
        record.traceback = f"Stack of the hung plugin code (most recent call last):\n{stack}" if stack else None
        log.error("plugin %s hung: %s", record.name, record.error, extra={PLUGIN_FAILURE: record.name})
        if self.strict:
            raise PluginError(f"plugin {record.name}: {record.error}")

    # -- calling hooks ---------------------------------------------------------------------

    def call_isolated(self, hook_name: str, *, only_plugin: str | None = None, **kwargs: Any) -> list[Any]:
        """Call every implementation of ``hook_name`` on its own; failures are recorded.

        Registration-time hooks (``register_commands``, ``register_routes``, ...) run in the
        bounded worker: one that does not return within the load timeout is reported ``hung``.
        ``only_plugin`` restricts the call to that plugin's implementation.
        """
        bounded = hook_name in BOUNDED_HOOKS
        results = []
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            if only_plugin is not None and impl.plugin_name != only_plugin:
                continue
            record = self.records.get(impl.plugin_name)
            try:
                if bounded:
                    results.append(self._runner.run(functools.partial(_call_impl, impl, **kwargs), impl.plugin_name))
                else:
                    results.append(_call_catching_exit(impl, **kwargs))
            except Hung as hung:
                message = f"{hook_name} did not return within {hung.seconds:g}s"
                if record is not None:
                    self._hang(record, message, hung.stack)
                else:
                    log.error("plugin %s hung: %s", impl.plugin_name, message)
            except Exception as exc:  # a third-party hook raised: record it, go on
                message = f"{hook_name}: {describe_exception(exc)}"
                if record is not None:
                    self._fail(record, message)
                else:
                    log.exception("hook %s of %s failed", hook_name, impl.plugin_name)
        return results

    def has_impls(self, hook_name: str) -> bool:
        """Return whether any plugin implements ``hook_name``."""
        return bool(getattr(self.pm.hook, hook_name).get_hookimpls())

    async def acall(self, hook_name: str, **kwargs: Any) -> list[Any]:
        """Call a runtime hook and await every awaitable result.

        A ``SystemExit`` from an implementation becomes a ``PluginError`` naming the plugin.
        """
        try:
            results = getattr(self.pm.hook, hook_name)(**kwargs)
            return [await r if inspect.isawaitable(r) else r for r in results]
        except SystemExit as exc:
            raise self._escaped(hook_name, exc) from exc

    async def afirstresult(self, hook_name: str, **kwargs: Any) -> Any:
        """Call a ``firstresult`` hook, awaiting implementations until one returns non-None."""
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            try:
                result = _call_impl(impl, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
            except SystemExit as exc:
                raise self._escaped(hook_name, exc) from exc
            if result is not None:
                return result
        return None

    async def aveto(self, hook_name: str, **kwargs: Any) -> str | None:
        """Call a veto hook (``hookspecs.VETO_HOOKS``) and return why it refuses, or ``None``.

        The one convention of ``before_operation``, ``before_llm_call`` and ``before_tool_call``:
        an implementation returns ``None`` to allow and a non-empty string, the reason, to refuse.
        Implementations run in pluggy's order; the first refusal wins and the rest do not run. An
        implementation that raises (``sys.exit()`` included) or returns anything else refuses too,
        with a reason naming the hook and its plugin, and is logged: a broken policy never lets
        a call through.
        """
        if hook_name not in hookspecs.VETO_HOOKS:
            raise ValueError(f"{hook_name} is not a veto hook ({', '.join(hookspecs.VETO_HOOKS)})")
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            try:
                result = _call_impl(impl, **kwargs)
                if inspect.isawaitable(result):
                    result = await result
            except (Exception, SystemExit) as exc:  # a broken policy refuses; it never allows
                verb = "" if isinstance(exc, SystemExit) else "raised "
                reason = f"{hook_name} hook of {impl.plugin_name} {verb}{describe_exception(exc)}"
                log.error("%s", reason, exc_info=not isinstance(exc, SystemExit))
                return reason
            if result is None:
                continue
            if isinstance(result, str) and result.strip():
                return result
            shown = repr(result) if len(repr(result)) <= 60 else repr(result)[:57] + "..."
            reason = (
                f"{hook_name} hook of {impl.plugin_name} returned {type(result).__name__} {shown}; a veto hook"
                " returns None to allow or a non-empty reason string to refuse"
            )
            log.error("%s", reason)
            return reason
        return None

    def owner_of(self, hook_name: str, coro: Any) -> str | None:
        """Return the plugin whose ``hook_name`` implementation returned the coroutine ``coro``, or None."""
        code = getattr(coro, "cr_code", None)
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            if code is not None and _code_of(impl.function) is code:
                return str(impl.plugin_name)
        return None

    def _escaped(self, hook_name: str, exc: SystemExit) -> PluginError:
        """Return the error that replaces a ``SystemExit`` raised by a runtime hook."""
        owners = {
            _code_of(impl.function): impl.plugin_name for impl in getattr(self.pm.hook, hook_name).get_hookimpls()
        }
        tb = exc.__traceback__
        plugin = None
        while tb is not None:
            plugin = owners.get(tb.tb_frame.f_code, plugin)
            tb = tb.tb_next
        message = f"{hook_name} hook of {plugin or 'a plugin'} {describe_exception(exc)}"
        log.error(message)
        return PluginError(message)

    def sorted_records(self) -> list[PluginRecord]:
        """Return plugin records sorted by name."""
        return [self.records[k] for k in sorted(self.records)]

    @property
    def failed(self) -> list[PluginRecord]:
        """Return the records of plugins that did not load cleanly."""
        return [r for r in self.sorted_records() if r.status in ("failed", "incompatible", "hung")]


def _dist_of(ep: EntryPoint) -> tuple[str, str | None]:
    """Return the distribution name and version of ``ep`` (its metadata is parsed once)."""
    if ep.dist is None:
        return ep.name, None
    meta = ep.dist.metadata
    return meta["Name"], meta["Version"]


def _wrapper_problem(pm: pluggy.PluginManager, plugin: Any) -> str | None:
    """Return why ``plugin`` is refused when it implements a hook as a pluggy wrapper, or None.

    The host calls every implementation itself (each isolated, awaiting ``async def`` ones), so a
    wrapper's generator would be taken for its result (a veto of every LLM call, for one) or its
    body would never run. Wrappers are refused at load, with this reason, rather than misread.
    """
    for caller in pm.get_hookcallers(plugin) or []:
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and (impl.wrapper or impl.hookwrapper):
                marker = "wrapper=True" if impl.wrapper else "hookwrapper=True"
                return (
                    f"{caller.name} is a hook wrapper (@hookimpl({marker})), which refactorbot does not support:"
                    " implement it as a plain or async function (see docs/hooks.md)"
                )
    return None


def _call_impl(impl: pluggy.HookImpl, **kwargs: Any) -> Any:
    """Call one implementation with the arguments it names (wrappers never get here: see ``_wrapper_problem``)."""
    func: Callable[..., Any] = impl.function
    return func(**{k: kwargs[k] for k in impl.argnames if k in kwargs})


def _call_catching_exit(impl: pluggy.HookImpl, **kwargs: Any) -> Any:
    try:
        return _call_impl(impl, **kwargs)
    except SystemExit as exc:  # a plugin must not end the host
        raise Escaped(exc) from exc


def _code_of(func: Any) -> CodeType | None:
    """Return the code object of a function or bound method (decorators unwrapped)."""
    func = inspect.unwrap(getattr(func, "__func__", func))
    code = getattr(func, "__code__", None)
    return code if isinstance(code, CodeType) else None


def _api_problem(plugin: Any) -> str | None:
    """Return why ``plugin`` is ``incompatible``: it declares API versions that exclude the host's.

    ``REFACTORBOT_API`` is a declaration, not a gate: a plugin that declares nothing is loaded
    (with a warning in its record). One that declares something unreadable is refused, saying so.
    """
    declared = getattr(plugin, "REFACTORBOT_API", None)
    if declared is None:
        return None
    if isinstance(declared, int) and not isinstance(declared, bool):
        versions = {declared}
    elif isinstance(declared, (tuple, list, set, frozenset)) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in declared
    ):
        versions = set(declared)
    else:
        return f"REFACTORBOT_API must be an int or a tuple of ints, got {declared!r}"
    if API_VERSION not in versions:
        return f"supports API {sorted(versions)}, this host offers API {API_VERSION}"
    return None
