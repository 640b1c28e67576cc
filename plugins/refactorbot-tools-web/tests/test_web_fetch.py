"""``web_fetch``: private targets refused after DNS and on every redirect; caps; text extraction."""

from __future__ import annotations

from pathlib import Path

import pytest
from refactorbot.errors import ToolError
from refactorbot.tools import ToolContext
from refactorbot_tools_web import WebFetch, address_refusal
from web_loopback import PUBLIC_IP, LoopbackServer, MapToLoopback, Route, fake_resolver


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    return ToolContext(workspace=tmp_path)


async def fetch(tool: WebFetch, ctx: ToolContext, url: str, **extra):
    return await tool.run(tool.Params(url=url, **extra), ctx)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://127.0.0.1:{port}/", "127.0.0.1 is a loopback address"),
        ("http://localhost:{port}/", "loopback address (localhost resolves to it)"),
        ("http://[::1]:{port}/", "::1 is a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.0.0.1/", "10.0.0.1 is a private address"),
        ("http://192.168.1.1/", "private address"),
        ("http://172.16.0.1/", "private address"),
        ("http://100.64.0.1/", "not a public address"),
        ("http://0.0.0.0:{port}/", "unspecified"),
        ("http://[::ffff:127.0.0.1]:{port}/", "::ffff:127.0.0.1"),
        ("http://2130706433:{port}/", "127.0.0.1 is a loopback address (2130706433 resolves to it)"),
        ("http://0x7f.1:{port}/", "loopback"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[fe80::1]/", "link-local"),
    ],
)
async def test_private_targets_refused(server: LoopbackServer, ctx: ToolContext, url: str, fragment: str) -> None:
    server.routes["/"] = Route(body="secret")
    with pytest.raises(ToolError) as err:
        await fetch(WebFetch(), ctx, url.format(port=server.port))
    assert fragment in str(err.value) and "\n" not in str(err.value)
    assert server.hits == []


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("ftp://example.com/x", "only http and https"),
        ("gopher://example.com/", "only http and https"),
        ("/relative/path", "only http and https"),
        ("http://user:pass@example.com/", "user names or passwords"),
        ("http:///nohost", "has no host"),
        ("http://example.com:99999/", "invalid URL"),
    ],
)
async def test_bad_urls_refused(ctx: ToolContext, url: str, fragment: str) -> None:
    with pytest.raises(ToolError, match=fragment):
        await fetch(WebFetch(), ctx, url)


@pytest.mark.asyncio
async def test_name_resolving_to_loopback_refused(server: LoopbackServer, ctx: ToolContext) -> None:
    server.routes["/"] = Route(body="secret")
    tool = WebFetch()
    tool.resolve = fake_resolver({"evil.example": ["127.0.0.1"], "mixed.example": [PUBLIC_IP, "10.1.2.3"]})
    tool.transport = MapToLoopback(server.port)
    with pytest.raises(ToolError, match=r"127.0.0.1 is a loopback address \(evil.example resolves to it\)"):
        await fetch(tool, ctx, f"http://evil.example:{server.port}/")
    with pytest.raises(ToolError, match="10.1.2.3 is a private address"):
        await fetch(tool, ctx, "http://mixed.example/")  # any private answer refuses the name
    assert server.hits == [] and tool.transport.seen == []


@pytest.mark.asyncio
async def test_public_name_is_pinned_to_the_checked_address(server: LoopbackServer, ctx: ToolContext) -> None:
    server.routes["/page"] = Route(
        body="<html><head><title>Hi there</title><style>p{}</style></head>"
        "<body><h1>Heading</h1><p>First &amp; second</p><script>alert(1)</script></body></html>",
        headers={"Content-Type": "text/html; charset=utf-8"},
    )
    tool = WebFetch()
    tool.resolve = fake_resolver({"public.example": [PUBLIC_IP]})
    tool.transport = MapToLoopback(server.port)
    result = await fetch(tool, ctx, "http://public.example/page")
    assert result.ok, result.error
    assert result.data["title"] == "Hi there" and result.data["address"] == PUBLIC_IP
    assert result.output == "URL: http://public.example/page\nStatus: 200\nTitle: Hi there\n\nHeading\nFirst & second"
    # connected to the address that was checked (no second lookup), with the name in Host
    assert tool.transport.seen == [(PUBLIC_IP, "public.example")]
    assert server.hits[0]["host"] == "public.example"


@pytest.mark.asyncio
async def test_redirect_to_loopback_refused(server: LoopbackServer, ctx: ToolContext) -> None:
    server.routes["/start"] = Route(302, headers={"Location": f"http://127.0.0.1:{server.port}/secret"})
    server.routes["/via-name"] = Route(301, headers={"Location": "http://evil.example/secret"})
    server.routes["/secret"] = Route(body="internal secret")
    tool = WebFetch()
    tool.resolve = fake_resolver({"public.example": [PUBLIC_IP], "evil.example": ["127.0.0.1"]})
    tool.transport = MapToLoopback(server.port)
    with pytest.raises(ToolError, match=rf"refused http://127.0.0.1:{server.port}/secret: 127.0.0.1 is a loopback"):
        await fetch(tool, ctx, "http://public.example/start")
    with pytest.raises(ToolError, match="evil.example resolves to it"):
        await fetch(tool, ctx, "http://public.example/via-name")
    assert server.paths == ["/start", "/via-name"]  # the secret was never requested


@pytest.mark.asyncio
async def test_allowed_redirects_followed_and_limited(server: LoopbackServer, ctx: ToolContext) -> None:
    server.routes["/a"] = Route(302, headers={"Location": "/b"})
    server.routes["/b"] = Route(307, headers={"Location": "http://public.example/c"})
    server.routes["/c"] = Route(body="arrived")
    server.routes["/loop"] = Route(302, headers={"Location": "/loop"})
    tool = WebFetch({"max_redirects": 3})
    tool.resolve = fake_resolver({"public.example": [PUBLIC_IP]})
    tool.transport = MapToLoopback(server.port)
    result = await fetch(tool, ctx, "http://public.example/a")
    assert result.output.endswith("\n\narrived") and result.data["redirects"] == 2
    with pytest.raises(ToolError, match="too many redirects"):
        await fetch(tool, ctx, "http://public.example/loop")
    assert server.paths.count("/loop") == 4


@pytest.mark.asyncio
async def test_allow_private_for_loopback_targets(server: LoopbackServer, ctx: ToolContext) -> None:
    server.routes["/"] = Route(body='{"ok": true}', headers={"Content-Type": "application/json"})
    result = await fetch(WebFetch({"allow_private": True}), ctx, f"http://127.0.0.1:{server.port}/")
    assert result.ok and result.output.endswith('{"ok": true}')


@pytest.mark.asyncio
async def test_size_time_and_type_caps(server: LoopbackServer, ctx: ToolContext) -> None:
    server.routes["/big"] = Route(body="y" * 50_000)
    server.routes["/slow"] = Route(body="late", delay=2.0)
    server.routes["/image"] = Route(body=b"\x89PNG", headers={"Content-Type": "image/png"})
    server.routes["/missing"] = Route(404, body="nope")
    base = f"http://127.0.0.1:{server.port}"
    capped = await fetch(WebFetch({"allow_private": True, "max_bytes": 2048}), ctx, base + "/big")
    assert capped.data["truncated"] is True and "download stopped at 2048 bytes" in capped.output
    short = await fetch(WebFetch({"allow_private": True}), ctx, base + "/big", max_chars=100)
    assert "[... truncated 49900 more characters]" in short.output
    with pytest.raises(ToolError, match="took longer than 0.5s"):
        await fetch(WebFetch({"allow_private": True, "timeout": 0.5}), ctx, base + "/slow")
    with pytest.raises(ToolError, match="image/png content"):
        await fetch(WebFetch({"allow_private": True}), ctx, base + "/image")
    missing = await fetch(WebFetch({"allow_private": True}), ctx, base + "/missing")
    assert not missing.ok and missing.error == f"HTTP 404 from {base}/missing"


@pytest.mark.asyncio
async def test_connection_failure_is_one_line(ctx: ToolContext) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ToolError, match="failed: ConnectError") as err:
        await fetch(WebFetch({"allow_private": True}), ctx, f"http://127.0.0.1:{port}/")
    assert "\n" not in str(err.value)


def test_address_policy() -> None:
    assert address_refusal(PUBLIC_IP) is None
    assert address_refusal("2606:4700:4700::1111") is None
    assert "embeds an IPv4 address" in address_refusal("2002:a00:1::1")
    assert address_refusal("not-an-ip") == "not-an-ip is not an IP address"
