"""The ``refactorbot`` console script: the CLI, imported without garbage collection.

Importing click and the command line creates some 15,000 objects that live until the process
exits. With the collector on, the import pays for collections that find nothing, and the exit
pays for one more pass over all of them: about a fifth of ``refactorbot --version``. Here the
import runs with the collector off; what it created is then moved to the permanent generation
(``gc.freeze``, as the Python documentation suggests for long-lived start-up state) and the
collector is turned back on before any command runs, so a command, ``serve`` included, is
collected as usual and only the start-up state is never scanned again.
"""

from __future__ import annotations

import gc


def main() -> None:
    """Run the command line (``refactorbot``, ``python -m refactorbot``)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        from refactorbot.cli.main import main as cli
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
    cli()
