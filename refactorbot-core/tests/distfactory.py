"""Write installed-looking distributions (dist-info + module) into a folder on sys.path."""

from __future__ import annotations

import textwrap
from pathlib import Path


def make_dist(site: Path, dist: str, module: str, code: str, version: str = "1.0", ep_name: str | None = None) -> None:
    """Create ``<site>/<module>.py`` and a dist-info whose entry point names it."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(textwrap.dedent(code))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[refactorbot]\n{ep_name or module} = {module}\n")


GOOD = """
from refactorbot import hookimpl, AtomicSlice, operation
REFACTORBOT_API = 1

class {cls}(AtomicSlice):
    slice_id = "{sid}"
    uses_database = False

    @operation
    async def ping(self) -> str:
        '''Answer pong.'''
        return "pong"

@hookimpl
def register_slices(register):
    register({cls})
"""
