"""Fixtures of the web tools' tests: a scripted loopback HTTP server."""

from __future__ import annotations

from web_loopback import server

__all__ = ["server"]
