"""Run the CLI with ``python -m refactorbot``."""

from refactorbot.cli import main

main()
