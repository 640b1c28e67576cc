"""Run the CLI with ``python -m refactorbot``."""

from refactorbot._console import main

main()
