from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dashboard_sample
import pytest
from refactorbot_api.testing import RunningServer, running_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A host with the sample slice and the API, served from a background thread."""
    home: Path = tmp_path_factory.mktemp("dash-home")
    with running_server(home, [dashboard_sample]) as srv:
        yield srv


@pytest.fixture
def dashboard_env(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> RunningServer:
    """Point the dashboard (run in-process by AppTest) at ``server``; load only the sample plugin."""
    monkeypatch.setenv("RB_DASHBOARD_API_URL", server.url)
    monkeypatch.setenv("RB_DASHBOARD_API_TOKEN", server.token)
    monkeypatch.setenv("RB_DASHBOARD_PLUGINS", "dashboard_sample")
    monkeypatch.setenv("RB_LOAD_PLUGINS", "")
    monkeypatch.delenv("RB_DASHBOARD_START_PAGE", raising=False)
    return server
