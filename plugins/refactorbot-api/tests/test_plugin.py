"""The entry-point module stays cheap to import; the token helpers behave."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from refactorbot.testing import check_import_cost
from refactorbot_api.auth import BearerGuard, ensure_token, token_matches
from refactorbot_api.settings_file import mask


def test_plugin_module_imports_fast_and_light() -> None:
    result = check_import_cost("refactorbot_api.plugin")
    assert not result["heavy"], result
    assert result["ms"] < 50, result


def test_token_created_owner_only_and_reused(tmp_path: Path) -> None:
    token = ensure_token(tmp_path / "home")
    path = tmp_path / "home" / "api-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_token(tmp_path / "home") == token
    assert token_matches(token, f"Bearer {token}")
    assert token_matches(token, f"bearer {token}")
    assert not token_matches(token, f"Bearer {token}x")
    assert not token_matches(token, token)
    assert not token_matches(token, None)
    assert not token_matches(token, "Bearer é")


def test_mask_hides_every_secret_looking_key() -> None:
    masked = mask(
        {
            "gateways": {"openrouter": {"api_key": "k", "base_url": "u"}},
            "channels": {"telegram": {"bot_token": "t", "webhook_secret": "s", "allowed": ["a"]}},
            "plugins": {"x": {"Password": "p", "keys": {"inner": 1}}},
        }
    )
    assert masked["gateways"]["openrouter"] == {"api_key": "***", "base_url": "u"}
    assert masked["channels"]["telegram"] == {"bot_token": "***", "webhook_secret": "***", "allowed": ["a"]}
    assert masked["plugins"]["x"] == {"Password": "***", "keys": {"inner": 1}}


@pytest.mark.asyncio
async def test_guard_closes_unauthorized_websockets() -> None:
    reached: list[str] = []

    async def app(scope: dict, receive: object, send: object) -> None:
        reached.append(scope.get("path", scope["type"]))

    guard = BearerGuard(app, "tok")
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    async def receive() -> dict:
        return {"type": "websocket.connect"}

    scope = {"type": "websocket", "path": "/plugins/x/ws", "headers": []}
    await guard(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": "unauthorized"}] and not reached
    await guard({**scope, "headers": [(b"authorization", b"Bearer tok")]}, receive, send)
    await guard({**scope, "path": "/hooks/x", "headers": []}, receive, send)
    await guard({"type": "lifespan"}, receive, send)
    assert reached == ["/plugins/x/ws", "/hooks/x", "lifespan"] and len(sent) == 1
