"""refactorbot-gateway-litellm: the default LLM gateway, backed by LiteLLM (imported on first call)."""

from __future__ import annotations

__version__ = "0.1.0"
