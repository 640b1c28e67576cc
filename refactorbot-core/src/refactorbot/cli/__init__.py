"""The ``refactorbot`` command line (click); plugins add commands with ``register_commands``.

The public names a command plugin uses (see docs/authoring.md, "The public API"):

- ``Env``: what every command gets (``env.home``, ``env.debug``, ``env.plugins()``, ``env.master()``),
  read with ``click.pass_obj``;
- ``run(env, coro_fn)``: run a coroutine, a ``RefactorbotError`` becoming one ``Error:`` line;
- ``fail(env, message)``: print ``Error: message`` and exit non-zero;
- ``echo_json(data)``: print sorted, indented JSON; ``echo_table(headers, rows)``: print columns;
- ``call_operation(env, "SLICE.OP", payload)``: run an operation on the running server, or
  in-process when none runs, and return its data (a failure is one ``Error:`` line).

Import them inside the ``register_commands`` hook (or a module it imports), never at the top of
the entry-point module: this module imports click.
"""

from __future__ import annotations

from refactorbot.cli.main import Env, call_operation, echo_json, echo_table, fail, main, run

__all__ = ["Env", "call_operation", "echo_json", "echo_table", "fail", "main", "run"]
