"""``python -m refactorbot_dashboard [--home DIR] [--port N] [--page PATH]``: the same as ``refactorbot dashboard``."""

from __future__ import annotations

import argparse
from pathlib import Path

from refactorbot_dashboard.launcher import launch


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the dashboard; return the exit code."""
    from refactorbot import default_home

    parser = argparse.ArgumentParser(prog="python -m refactorbot_dashboard", description=__doc__)
    parser.add_argument("--home", type=Path, default=None, help="data directory (default: RB_HOME or the user's)")
    parser.add_argument("--port", type=int, default=8501, help="port on 127.0.0.1 (default 8501)")
    parser.add_argument("--page", default=None, help="URL path of the page to open first")
    args = parser.parse_args(argv)
    return launch(args.home or default_home(), port=args.port, start_page=args.page)


if __name__ == "__main__":
    raise SystemExit(main())
