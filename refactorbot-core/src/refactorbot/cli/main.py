"""Root command group, shared options and error handling."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from refactorbot._version import __version__
from refactorbot.errors import RefactorbotError

T = TypeVar("T")


class Env:
    """What every command gets: the chosen home, config file and debug flag."""

    def __init__(
        self, home: str | None, config: str | None, debug: bool, meta: dict[str, Any], *, everything: bool = False
    ) -> None:
        self.home_option = home
        self.config = config
        self.debug = debug
        self.meta = meta
        self._logging: tuple[bool, bool] | None = (debug or everything, everything)

    def configure_logging(self) -> None:
        """Set up the console's logging (see ``refactorbot.cli._logs``), once; every command that loads
        plugins or runs a host does it first. A command that does neither (``chat`` against a server)
        never imports ``logging``: it is configured as soon as the command's module imported it.
        """
        if self._logging is not None:
            debug, everything = self._logging
            self._logging = None
            from refactorbot.cli._logs import configure_logging

            configure_logging(debug=debug, everything=everything)

    @property
    def home(self) -> Path:
        """Return the home directory (``--home``, ``RB_HOME`` or the per-user default)."""
        from refactorbot.home import default_home

        return Path(self.home_option).expanduser() if self.home_option else default_home()

    def plugins(self) -> Any:
        """Return the plugin host, loaded once per invocation."""
        self.configure_logging()
        return plugin_host(self.meta)

    def master(self, *, serving: bool = False, only: Iterable[str] | None = None) -> Any:
        """Return a ``MasterCore`` for this home, with the installed plugins (one-shot unless ``serving``).

        ``only``: start just these slices and what they need (see ``MasterCore``), not every one.
        """
        from refactorbot.config import load_settings
        from refactorbot.master import MasterCore

        return MasterCore(load_settings(self.home, self.config), self.plugins(), serving=serving, only=only)


def run(env: Env, coro_fn: Callable[[], Coroutine[Any, Any, T]], *, serving: bool = False) -> T:
    """Run a coroutine for a command: one clear line on error, the traceback with ``--debug``.

    ``serving``: a long-running server (``serve``, ``worker``) runs on the loop ``[core] event_loop`` names.
    """
    import asyncio

    env.configure_logging()
    try:
        if not serving:
            return asyncio.run(coro_fn())
        from refactorbot.config import load_settings

        factory = loop_factory(load_settings(env.home, env.config).core.event_loop)
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro_fn())
    except RefactorbotError as exc:
        fail(env, str(exc))
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def loop_factory(choice: str) -> Callable[[], Any] | None:
    """Return what makes the event loop ``choice`` names (``None``: asyncio's own).

    ``auto`` is uvloop when it is installed, asyncio's loop otherwise; ``uvloop`` requires it.
    """
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            from refactorbot.errors import ConfigError

            raise ConfigError(
                '[core] event_loop = "uvloop", but uvloop is not installed (pip install uvloop, or set "auto")'
            ) from None
        return None
    factory: Callable[[], Any] = uvloop.new_event_loop
    return factory


def fail(env: Env | None, message: str, code: int = 1) -> NoReturn:
    """Print ``Error: message`` (plus the traceback under ``--debug``) and exit non-zero."""
    if env is not None and env.debug and sys.exc_info()[0] is not None:
        import traceback

        traceback.print_exc()
    click.secho(f"Error: {message}", fg="red", err=True)
    raise SystemExit(code)


def echo_json(data: Any) -> None:
    """Print ``data`` as stable, sorted, indented JSON."""
    import json

    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def echo_table(headers: list[str], rows: list[list[str]]) -> None:
    """Print ``rows`` under ``headers`` in left-aligned columns."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def call_operation(env: Env, target: str, payload: dict[str, Any]) -> Any:
    """Run ``target`` (``SLICE.OP``) on the running server, or in-process when none runs; return its data.

    In-process, only the slice and what it requires are started, and the answer is returned once
    its rows are committed. A failed operation is one ``Error:`` line and exit 1.
    """
    from refactorbot.client import ServerClient

    slice_id, _, op = target.partition(".")
    client = ServerClient.discover(env.home)
    if client is not None:
        response = client.call(slice_id, op, payload)
    else:
        from refactorbot.database import committed

        async def in_process() -> dict[str, Any]:
            async with env.master(only={slice_id}) as host:  # the target and what it requires, not every slice
                result = await host.call(target, **payload)
                await committed()  # acknowledged means logged, as the API answers: its rows are on disk
                return result.model_dump(mode="json")  # type: ignore[no-any-return]

        response = run(env, in_process)
    if not response.get("success"):
        fail(env, response.get("error_message") or response.get("detail") or f"{target} failed")
    return response.get("data")


def plugin_hint(ctx: click.Context) -> None:
    """Print one line when plugins failed to load: how many, which, and where to look.

    Not after ``plugins`` (list and doctor show the failures in full) or ``serve`` (it lists them).
    """
    host = ctx.meta.get("refactorbot.plugins")
    if host is None or ctx.invoked_subcommand in ("plugins", "serve"):
        return
    failed = [record.name for record in host.failed]
    if failed:
        count = f"{len(failed)} plugin{'s' if len(failed) > 1 else ''}"
        click.secho(
            f"{count} failed to load ({', '.join(failed)}); run `refactorbot plugins doctor`", fg="yellow", err=True
        )


def plugin_host(meta: dict[str, Any]) -> Any:
    """Return the invocation's ``PluginHost`` (installed plugins loaded on first use)."""
    host = meta.get("refactorbot.plugins")
    if host is None:
        from refactorbot.plugins import PluginHost

        host = meta["refactorbot.plugins"] = PluginHost()
        host.load_entrypoints()
    return host


def command_target(command: click.Command) -> str | None:
    """Return ``module:attribute`` where ``command`` is defined at the top of a module, else None."""
    module_name = getattr(command.callback, "__module__", None)
    module = sys.modules.get(module_name) if isinstance(module_name, str) else None
    if module is None:
        return None
    for attribute, value in vars(module).items():
        if value is command:
            return f"{module_name}:{attribute}"
    return None


def command_at(target: str, dist: str) -> click.Command | None:
    """Return the command at ``module:attribute`` of distribution ``dist``, or None (then the plugin is loaded).

    ``RB_LOAD_PLUGINS`` / ``RB_DISABLE_PLUGINS`` apply: a blocked distribution's command is not imported.
    """
    from refactorbot._selection import blocked

    if blocked(dist, os.environ):
        return None
    module_name, _, attribute = target.partition(":")
    try:
        __import__(module_name)  # the import statement's path: ``-X importtime`` shows it
        command = getattr(sys.modules[module_name], attribute, None)
    except Exception:  # a module that no longer imports: loading its plugin reports why
        return None
    return command if isinstance(command, click.Command) else None


class RefactorbotGroup(click.Group):
    """The root group: adds plugin commands lazily, and turns errors into one clear line.

    A plugin command is found through the command cache (``refactorbot._install_cache``): the
    module it is an attribute of is imported, or else only the plugin that adds it is loaded. Without a valid cache entry, or when that plugin no longer
    adds the command, every plugin's ``register_commands`` runs (as ``--help`` does) and the
    cache is rewritten.
    """

    def _plugin_commands(self, ctx: click.Context) -> None:
        if ctx.meta.get("refactorbot.commands_added"):
            return
        ctx.meta["refactorbot.commands_added"] = True
        from refactorbot import _install_cache

        stamp = _install_cache.fingerprint()  # taken first: an install during the scan makes the cache stale
        host = plugin_host(ctx.meta)
        entries: dict[str, _install_cache.CommandEntry] = {}
        for impl in reversed(host.pm.hook.register_commands.get_hookimpls()):
            before = dict(self.commands)
            host.call_isolated("register_commands", only_plugin=impl.plugin_name, cli=self)
            source = host.sources.get(impl.plugin_name)
            for name, command in self.commands.items():
                if source is not None and before.get(name) is not command:
                    entries[name] = (source, command_target(command))
        _install_cache.store_commands(entries, os.environ, stamp)

    def _cached_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Return ``cmd_name`` as the command cache finds it, or None to scan every plugin.

        A command that is an attribute of a module is imported from there (the plugin is not
        loaded); otherwise the one plugin that adds it is loaded and its ``register_commands`` run.
        """
        from refactorbot import _install_cache

        entry = _install_cache.lookup_command(cmd_name, os.environ)
        if entry is None:
            return None
        source, target = entry
        if target is not None:
            command = command_at(target, source[2])
            if command is not None:
                self.add_command(command, cmd_name)
                return command
        import logging

        from refactorbot.plugins import PluginHost

        quiet = logging.getLogger("refactorbot.plugins")  # the full scan that follows a failure reports it
        saved, quiet.disabled = quiet.disabled, True
        try:
            host = PluginHost()
            record = host.load_entry_point(*source, registration=False)
            if record.status == "ok":
                host.call_isolated("register_commands", cli=self)
            if record.status != "ok":
                return None
        except Exception:  # strict mode, a bad RB_PLUGIN_LOAD_TIMEOUT: the full scan reports it
            return None
        finally:
            quiet.disabled = saved
        return super().get_command(ctx, cmd_name)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Return a built-in command, or the plugin command of that name (see the class docstring)."""
        command = super().get_command(ctx, cmd_name)
        if command is None and not ctx.meta.get("refactorbot.commands_added"):
            command = self._cached_command(ctx, cmd_name)
            if command is None:
                self._plugin_commands(ctx)
                command = super().get_command(ctx, cmd_name)
        return command

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Return every command, plugin ones included."""
        self._plugin_commands(ctx)
        return super().list_commands(ctx)

    def invoke(self, ctx: click.Context) -> Any:
        """Invoke a command; a ``RefactorbotError`` becomes one line and exit 1."""
        try:
            return super().invoke(ctx)
        except RefactorbotError as exc:
            env = ctx.obj if isinstance(ctx.obj, Env) else None
            fail(env, str(exc))


@click.group(cls=RefactorbotGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--home", envvar="RB_HOME", type=click.Path(file_okay=False), help="Data directory (RB_HOME).")
@click.option("--config", "config", envvar="RB_CONFIG", type=click.Path(dir_okay=False), help="Configuration file.")
@click.option(
    "--debug",
    is_flag=True,
    help="Show tracebacks and refactorbot's debug logs (RB_DEBUG_LOGGERS=aiosqlite,LiteLLM adds those loggers').",
)
@click.option("--debug-all", is_flag=True, help="Like --debug, with the debug logs of every library too.")
@click.version_option(__version__, prog_name="refactorbot")
@click.pass_context
def main(ctx: click.Context, home: str | None, config: str | None, debug: bool, debug_all: bool) -> None:
    """Run and inspect a refactorbot host: plugins, slices, operations."""
    env = ctx.obj = Env(home, config, debug or debug_all, ctx.meta, everything=debug_all)
    if env.debug or "logging" in sys.modules:  # the command's module may log: configure the console now
        env.configure_logging()
    ctx.call_on_close(lambda: plugin_hint(ctx))


def __getattr__(name: str) -> Any:
    """The console-logging names, from ``refactorbot.cli._logs`` (imported on first use)."""
    if name in (
        "LOG_FORMAT",
        "ConsoleFormatter",
        "ConsoleFilter",
        "console_handlers",
        "configure_logging",
        "debug_loggers",
        "PLUGIN_FAILURE",
    ):
        from refactorbot.cli import _logs

        return getattr(_logs, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _register_builtin() -> None:
    from refactorbot.cli import commands  # noqa: F401  (registers commands on ``main``)


_register_builtin()
