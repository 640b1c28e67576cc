"""Fixtures of the providers slice tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from providers_setup import KEY, KEY_ENV
from refactorbot.testing.model_server import ModelServer


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelServer]:
    """Yield a loopback model server that requires the test key (set in the environment)."""
    monkeypatch.setenv(KEY_ENV, KEY)
    with ModelServer(api_key=KEY) as model_server:
        yield model_server
