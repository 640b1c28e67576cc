"""refactorbot-api: the control API of a refactorbot host (FastAPI, served by ``refactorbot serve``).

``create_app(host)`` builds the application; the entry-point module ``refactorbot_api.plugin``
starts it inside the orchestrator's event loop. Names are imported on first use so loading the
plugin never imports FastAPI.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ApiConfig", "ApiServer", "create_app"]

_LAZY = {"ApiConfig": "config", "ApiServer": "server", "create_app": "app"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'refactorbot_api' has no attribute {name!r}")
    return getattr(importlib.import_module(f"refactorbot_api.{module}"), name)
