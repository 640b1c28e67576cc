"""Request-body limit (413 before the body is read) and owner-only files, against a real server on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import api_sample
import httpx
import psutil
import pytest
import pytest_asyncio
import refactorbot_api.plugin
from api_sample import CONFIG, Served
from refactorbot.testing import host_running

pytestmark = pytest.mark.asyncio

MB = 1024 * 1024
ATTACK = 50 * MB
CHUNK = b"x" * (64 * 1024)


async def _raw(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(url)
    return await asyncio.open_connection(parts.hostname, parts.port)


async def _response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response with a Content-Length body."""
    status = int((await asyncio.wait_for(reader.readline(), 20)).split()[1])
    headers = {}
    while (line := await asyncio.wait_for(reader.readline(), 20)) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 20)
    return status, headers, body


def _head(path: str, token: str | None, extra: str) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n{extra}\r\n".encode()


async def _stream_until_refused(
    writer: asyncio.StreamWriter, reader: asyncio.StreamReader, chunked: bool
) -> tuple[int | None, int]:
    """Send up to ATTACK bytes of body while reading the answer; stop once answered or cut off.

    Return the status read (None when the server's close reset the connection before the
    answer could be read: it stopped reading with our bytes still in flight) and bytes sent.
    """
    answer = asyncio.ensure_future(_response(reader))
    sent = 0
    try:
        while sent < ATTACK and not answer.done():
            writer.write(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK) if chunked else CHUNK)
            await writer.drain()
            sent += len(CHUNK)
    except (ConnectionError, OSError):
        pass  # the server closed the connection after answering
    try:
        status: int | None = (await answer)[0]
    except (ConnectionError, OSError, asyncio.IncompleteReadError):
        status = None
    writer.close()
    return status, sent


@pytest_asyncio.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    async with host_running(tmp_path, [api_sample, refactorbot_api.plugin], config=CONFIG) as host:
        info = json.loads((tmp_path / "server.json").read_text())
        token = (tmp_path / "api-token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=info["url"], headers=headers, timeout=20) as client:
            yield Served(host, tmp_path, client)


def _token(served: Served) -> str:
    return (served.home / "api-token").read_text().strip()


async def test_a_declared_50_mb_body_is_413_before_a_byte_of_it_is_sent(served: Served) -> None:
    reader, writer = await _raw(served.url)
    writer.write(_head("/slices/sample/operations/add", _token(served), f"Content-Length: {ATTACK}\r\n"))
    await writer.drain()
    status, _, body = await _response(reader)  # answered with the body still unsent
    writer.close()
    assert status == 413
    assert json.loads(body) == {"detail": "request body larger than 1048576 bytes ([plugins.api] max_body_bytes)"}


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_a_streamed_50_mb_body_is_refused_early_and_memory_stays_flat(served: Served, chunked: bool) -> None:
    process = psutil.Process()  # the server runs in this process
    before = process.memory_info().rss
    reader, writer = await _raw(served.url)
    extra = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {ATTACK}\r\n"
    writer.write(_head("/slices/sample/operations/add", _token(served), extra))
    status, sent = await _stream_until_refused(writer, reader, chunked)
    grew = (process.memory_info().rss - before) / MB
    print(f"{'chunked' if chunked else 'content-length'}: sent {sent / MB:.1f} of 50 MB, RSS grew {grew:.1f} MB")
    assert status in (413, None)  # None: reset by the server's close, with the rest of our body unread
    assert sent < ATTACK  # the server stopped reading long before the end
    assert grew < 20, f"RSS grew {grew:.1f} MB for a refused body"
    # The server is still fine.
    assert (await served.client.post("/slices/sample/operations/add", json={"title": "after"})).status_code == 200


async def test_a_chunked_body_over_the_limit_is_413_with_the_reason(served: Served) -> None:
    # 17 x 64 KiB, just over 1 MiB, without a Content-Length; the body is left unfinished, so the
    # answer can only come from counting the bytes as they arrive.
    reader, writer = await _raw(served.url)
    writer.write(_head("/slices/sample/operations/add", _token(served), "Transfer-Encoding: chunked\r\n"))
    writer.write(b'18\r\n{"title": "t", "body": "\r\n')
    for _ in range(17):
        writer.write(b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK))
    await writer.drain()
    status, _, body = await _response(reader)
    writer.close()
    assert status == 413
    assert json.loads(body) == {"detail": "request body larger than 1048576 bytes ([plugins.api] max_body_bytes)"}


async def test_the_limit_covers_unauthenticated_webhooks(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.url, timeout=20) as anonymous:
        big = await anonymous.post("/hooks/sample", content=b'{"a": "' + b"x" * (2 * MB) + b'"}')
        assert big.status_code == 413
        small = await anonymous.post("/hooks/sample", json={"a": 1})
        assert small.status_code == 200


async def test_the_limit_is_configurable(tmp_path: Path) -> None:
    config = {**CONFIG, "plugins": {"api": {"port": 0, "max_body_bytes": 4096}}}
    async with host_running(tmp_path, [api_sample, refactorbot_api.plugin], config=config):
        info = json.loads((tmp_path / "server.json").read_text())
        headers = {"Authorization": f"Bearer {(tmp_path / 'api-token').read_text().strip()}"}
        async with httpx.AsyncClient(base_url=info["url"], headers=headers, timeout=20) as client:
            fits = await client.post("/slices/sample/operations/add", json={"title": "t", "body": "y" * 3000})
            assert fits.status_code == 200, fits.text
            over = await client.post("/slices/sample/operations/add", json={"title": "t", "body": "y" * 5000})
            assert over.status_code == 413
            assert over.json()["detail"] == "request body larger than 4096 bytes ([plugins.api] max_body_bytes)"
            refused = await client.put("/settings/plugins.api", json={"port": 0, "max_body_bytes": 10})
            assert refused.status_code == 422 and "max_body_bytes" in refused.json()["detail"]


async def test_the_api_writes_its_files_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        async with host_running(tmp_path, [api_sample, refactorbot_api.plugin], config=CONFIG):
            for name in ("server.json", "api-token", "refactorbot.toml"):
                assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    finally:
        os.umask(old)
