"""`refactorbot slices reload` against a real `refactorbot serve`: a new plugin version, no host restart."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
from serving import clean_env, cli, serve, write_config

PLUGIN = '''
from refactorbot import hookimpl, AtomicSlice, operation
REFACTORBOT_API = 1

class Versioned(AtomicSlice):
    slice_id = "versioned"
    version = "{version}"
    uses_database = False

    @operation
    async def which(self) -> str:
        """Say which version answers."""
        return "{answer}"

@hookimpl
def register_slices(register):
    register(Versioned)
'''


def install(site: Path, version: str, code: str | None = None) -> None:
    """Install (or replace) ``rb-versioned`` ``version`` in ``site``, as ``pip install -U`` would."""
    for old in site.glob("rb_versioned-*.dist-info"):
        shutil.rmtree(old)
    site.mkdir(parents=True, exist_ok=True)
    text = PLUGIN.format(version=version, answer=f"answered by {version}") if code is None else code
    (site / "rb_versioned.py").write_text(text)
    info = site / f"rb_versioned-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: rb-versioned\nVersion: {version}\n")
    (info / "entry_points.txt").write_text("[refactorbot]\nrb_versioned = rb_versioned\n")
    (info / "RECORD").write_text("rb_versioned.py,,\n")


def test_slices_reload_picks_up_a_new_version_without_restarting_the_server(tmp_path: Path) -> None:
    home, site = tmp_path / "home", tmp_path / "site"
    install(site, "1.0")
    write_config(home, "[core]\nhealth_interval = 3600\n")
    env = clean_env(
        PYTHONPATH=str(site),
        PYTHONDONTWRITEBYTECODE="1",  # two releases written in the same second are both read
        RB_LOAD_PLUGINS="refactorbot-api,rb-versioned,refactorbot-slice-memory",
    )
    with serve(home, env=env) as served:
        assert served.call("versioned.which") == "answered by 1.0"
        memory_before = served.call("memory.stats")

        install(site, "2.0")
        reloaded = cli(home, "slices", "reload", "versioned", env=env)
        assert reloaded.returncode == 0, reloaded.stderr
        assert reloaded.stdout.strip() == "reloaded versioned: version 1.0 -> 2.0, running"
        assert served.call("versioned.which") == "answered by 2.0"
        assert served.proc.poll() is None
        assert json.loads((home / "server.json").read_text())["pid"] == served.proc.pid  # the same process
        rows = {r["slice_id"]: r for r in json.loads(cli(home, "slices", "--json", env=env).stdout)}
        assert rows["versioned"]["version"] == "2.0" and rows["versioned"]["status"] == "running"
        assert rows["memory"]["restarts"] == 0 and served.call("memory.stats") == memory_before

        install(site, "3.0", code="raise ImportError('broken release')\n")
        failed = cli(home, "slices", "reload", "versioned", env=env)
        assert failed.returncode == 1
        assert "Error: reload of versioned failed:" in failed.stderr
        assert "ImportError: broken release" in failed.stderr
        assert served.call("versioned.which") == "answered by 2.0"

        unknown = httpx.post(f"{served.url}/slices/ghost/reload", headers=served.headers, trust_env=False)
        assert unknown.status_code == 404 and "unknown slice 'ghost'" in unknown.json()["detail"]
        anonymous = httpx.post(f"{served.url}/slices/versioned/reload", trust_env=False)
        assert anonymous.status_code == 401

    stopped = cli(home, "slices", "reload", "versioned", env=env)
    assert stopped.returncode == 1
    assert "no refactorbot server is running" in stopped.stderr
