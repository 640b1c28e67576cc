"""Shared set-up of the refactory tests: a real host with the agent, tools and files tool, a scripted model."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
