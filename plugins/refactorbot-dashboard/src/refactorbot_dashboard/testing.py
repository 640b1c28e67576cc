"""Helpers for testing dashboard pages with Streamlit's ``AppTest`` (imported by tests only)."""

from __future__ import annotations

from typing import Any


def log_in(at: Any, token: str) -> Any:
    """Run ``at`` (an ``AppTest`` of the dashboard) and log in through its login form with ``token``.

    ``token`` is the login token (``RB_DASHBOARD_LOGIN_TOKEN``) or the API token the app uses.
    Returns ``at``, logged in and showing its start page; raises ``AssertionError`` if the login failed.
    """
    at.run()
    at.text_input(key="login.token").input(token)
    at.button[[b.label for b in at.button].index("Log in")].click().run()
    if any(t.key == "login.token" for t in at.text_input):
        raise AssertionError(f"the dashboard did not accept the token: {[e.value for e in at.error]}")
    return at
