"""The command line's console logging: one line per record, each record once, plugin failures as one hint.

Imported when a command first needs logging (``Env.configure_logging``), not by every command:
``logging`` is a few milliseconds of a command that talks to a server and logs nothing.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ConsoleFormatter(logging.Formatter):
    """Format records on one line: tracebacks go to the unified log, and to the console with --debug."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record without its traceback or stack."""
        saved = record.exc_info, record.exc_text, record.stack_info
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        try:
            return super().format(record)
        finally:
            record.exc_info, record.exc_text, record.stack_info = saved


def console_handlers() -> list[logging.Handler]:
    """Return the root logger's plain console handlers (those ``logging.basicConfig`` adds)."""
    return [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]


#: Set on the log record of a plugin that failed to load (``refactorbot.plugins.PLUGIN_FAILURE``): the
#: console folds those records into one hint line per command (``plugin_hint``), not each raw error.
PLUGIN_FAILURE = "refactorbot_plugin_failure"


def _prints_its_own(record: logging.LogRecord) -> bool:
    """Return whether a logger between ``record``'s and the root already printed it to the console.

    Some libraries (LiteLLM) give their loggers a console handler and let records propagate too:
    the root's console handler then skips them, so each line is printed once.
    """
    logger: logging.Logger | None = logging.getLogger(record.name)
    consoles = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    while logger is not None and logger is not logging.root:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) in consoles:
                return record.levelno >= handler.level
        if not logger.propagate:
            return False
        logger = logger.parent
    return False


class ConsoleFilter(logging.Filter):
    """What the console skips: lines a library printed itself, and plugin load failures (one hint instead)."""

    def __init__(self, show_plugin_failures: bool) -> None:
        super().__init__()
        self.show_plugin_failures = show_plugin_failures

    def filter(self, record: logging.LogRecord) -> bool:
        """Return whether the console prints ``record``."""
        if not self.show_plugin_failures and getattr(record, PLUGIN_FAILURE, None):
            return False
        return not _prints_its_own(record)


def debug_loggers(env: Mapping[str, str]) -> list[str]:
    """Return the loggers ``RB_DEBUG_LOGGERS`` opens to ``--debug`` (comma-separated logger names)."""
    return [name.strip() for name in env.get("RB_DEBUG_LOGGERS", "").split(",") if name.strip()]


def configure_logging(*, debug: bool = False, everything: bool = False, env: Mapping[str, str] | None = None) -> None:
    """Set up the console: warnings by default; ``debug``: refactorbot's debug lines and tracebacks.

    Other libraries' loggers stay at WARNING (aiosqlite logs every statement at DEBUG) unless
    ``RB_DEBUG_LOGGERS`` names them (with ``debug``) or ``everything`` (``--debug-all``) opens
    every logger. The root's console handler prints each record once (see ``_prints_its_own``).
    """
    debug = debug or everything
    root = logging.getLogger()
    logging.basicConfig(format=LOG_FORMAT)  # a stderr handler, unless the root has handlers already
    root.setLevel(logging.DEBUG if everything else logging.WARNING)
    level = logging.DEBUG if debug else logging.WARNING
    for handler in console_handlers():  # the console shows warnings (serve: info) or --debug
        handler.setLevel(level)
        handler.filters = [f for f in handler.filters if not isinstance(f, ConsoleFilter)]
        handler.addFilter(ConsoleFilter(show_plugin_failures=debug))
        handler.setFormatter(logging.Formatter(LOG_FORMAT) if debug else ConsoleFormatter(LOG_FORMAT))
    if debug:
        logging.getLogger("refactorbot").setLevel(logging.DEBUG)
        for name in debug_loggers(os.environ if env is None else env):
            logging.getLogger(name).setLevel(logging.DEBUG)
