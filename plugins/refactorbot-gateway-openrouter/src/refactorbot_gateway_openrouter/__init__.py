"""refactorbot-gateway-openrouter: OpenRouter's OpenAI-compatible API over httpx (imported on first call)."""

from __future__ import annotations

__version__ = "0.1.0"
