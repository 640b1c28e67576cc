"""refactorbot-slice-providers: LLM providers and models, cost per call, budgets and model routing."""

from __future__ import annotations

__version__ = "0.1.0"
