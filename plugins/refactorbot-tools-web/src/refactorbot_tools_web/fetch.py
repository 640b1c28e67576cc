"""``web_fetch``: download a page with size and time caps, refusing private targets on every hop.

Each hop resolves the host name, refuses the request if *any* address it resolves to is not
public (unless ``allow_private``), and then connects to the checked address itself — the URL's
host is replaced by the IP, the ``Host`` header and TLS server name keep the original name — so
a second DNS answer (rebinding) cannot send the request elsewhere. Redirects are followed by
hand, each one checked the same way.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urljoin, urlsplit

from pydantic import BaseModel, ConfigDict, Field
from refactorbot import Model, Tool, ToolContext, ToolError, ToolResult

from refactorbot_tools_web.addresses import address_refusal
from refactorbot_tools_web.config import WebConfig
from refactorbot_tools_web.html_text import html_to_text

if TYPE_CHECKING:
    import httpx

Resolver = Callable[[str, int], Awaitable[list[str]]]
REDIRECTS = frozenset({301, 302, 303, 307, 308})
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml+xml", "application/javascript")


async def system_resolve(host: str, port: int) -> list[str]:
    """Return every address ``host`` resolves to, through the event loop's ``getaddrinfo``."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class FetchParams(Model):
    """Arguments of ``web_fetch``."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=4096, description="an http:// or https:// URL")
    max_chars: int | None = Field(
        None, ge=100, description="most characters of text to return (capped by configuration)"
    )


class Target:
    """One checked hop: the URL, its host and port, and the address to connect to."""

    def __init__(self, url: str, host: str, port: int, address: str) -> None:
        self.url = url
        self.host = host
        self.port = port
        self.address = address


class WebWithConfig(Tool):
    """Base of the web tools: configuration, an injectable resolver and HTTP transport."""

    config_section: ClassVar[str] = "web"
    category: ClassVar[str] = "web"
    Config: ClassVar[type[BaseModel]] = WebConfig

    settings: WebConfig

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__(config)
        #: Host name → addresses; tests and embedders may replace it.
        self.resolve: Resolver = system_resolve
        #: An ``httpx.AsyncBaseTransport`` to use instead of the default one (tests, proxies).
        self.transport: Any = None

    def client(self) -> httpx.AsyncClient:
        """Return an HTTP client that never follows redirects and ignores proxy variables."""
        import httpx

        return httpx.AsyncClient(
            transport=self.transport,
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(self.settings.timeout),
            headers={"User-Agent": self.settings.user_agent},
        )


class WebFetch(WebWithConfig):
    """Fetch a web page and return its text."""

    name = "web_fetch"
    description = (
        "Fetch an http(s) URL and return its readable text (HTML is reduced to text). "
        "Private, loopback and link-local addresses are refused."
    )
    Params = FetchParams

    async def run(self, params: FetchParams, ctx: ToolContext) -> ToolResult:
        """Fetch the URL, following checked redirects, within the time and size caps."""
        try:
            return await asyncio.wait_for(self._fetch(params), self.settings.timeout)
        except TimeoutError:
            raise ToolError(f"fetching {params.url} took longer than {self.settings.timeout:g}s") from None

    async def check(self, url: str) -> Target:
        """Return the checked target of ``url``, or raise ``ToolError`` saying why it is refused."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ToolError(f"invalid URL {url!r}: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise ToolError(f"only http and https URLs can be fetched, not {parts.scheme or 'a relative URL'!r}")
        if parts.username is not None or parts.password is not None:
            raise ToolError("URLs with user names or passwords are not allowed")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise ToolError(f"URL {url!r} has no host")
        port = port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            try:
                addresses = await self.resolve(host, port)
            except (OSError, UnicodeError) as exc:
                raise ToolError(f"cannot resolve {host}: {exc}") from None
        if not addresses:
            raise ToolError(f"{host} resolves to no address")
        if not self.settings.allow_private:
            for address in addresses:
                reason = address_refusal(address)
                if reason:
                    via = "" if address == host else f" ({host} resolves to it)"
                    raise ToolError(f"refused {url}: {reason}{via}")
        return Target(url, host, port, addresses[0])

    async def _fetch(self, params: FetchParams) -> ToolResult:
        import httpx

        url = params.url
        async with self.client() as client:
            for hop in range(self.settings.max_redirects + 1):
                target = await self.check(url)
                try:
                    response = await client.send(_pinned_request(client, target), stream=True)
                except httpx.HTTPError as exc:
                    raise ToolError(f"fetching {url} failed: {type(exc).__name__}: {exc}") from None
                try:
                    location = response.headers.get("location")
                    if response.status_code in REDIRECTS and location:
                        url = urljoin(url, location)
                        continue
                    try:
                        body, truncated = await _read_capped(response, self.settings.max_bytes)
                    except httpx.HTTPError as exc:
                        raise ToolError(f"reading {url} failed: {type(exc).__name__}: {exc}") from None
                    return self._result(params, target, response, body, truncated, hop)
                finally:
                    await response.aclose()
        raise ToolError(f"too many redirects (more than {self.settings.max_redirects}) from {params.url}")

    def _result(
        self, params: FetchParams, target: Target, response: httpx.Response, body: bytes, truncated: bool, hops: int
    ) -> ToolResult:
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type and not content_type.startswith(TEXT_TYPES):
            raise ToolError(f"{target.url} returned {content_type} content, which cannot be shown as text")
        text = body.decode(response.charset_encoding or "utf-8", errors="replace")
        title = ""
        if content_type in ("text/html", "application/xhtml+xml") or (
            not content_type and "<html" in text[:500].lower()
        ):
            title, text = html_to_text(text)
        cap = min(params.max_chars or self.settings.max_chars, self.settings.max_chars)
        cut = len(text) > cap
        if cut:
            text = text[:cap] + f"\n[... truncated {len(text) - cap} more characters]"
        elif truncated:
            text += f"\n[... download stopped at {self.settings.max_bytes} bytes]"
        header = [f"URL: {target.url}", f"Status: {response.status_code}"]
        if title:
            header.append(f"Title: {title}")
        ok = response.status_code < 400
        return ToolResult(
            ok=ok,
            output="\n".join(header) + "\n\n" + text,
            error=None if ok else f"HTTP {response.status_code} from {target.url}",
            data={
                "url": target.url,
                "status": response.status_code,
                "content_type": content_type,
                "title": title,
                "redirects": hops,
                "truncated": truncated or cut,
                "address": target.address,
            },
        )


def _pinned_request(client: httpx.AsyncClient, target: Target) -> httpx.Request:
    import httpx

    url = httpx.URL(target.url)
    ip = ipaddress.ip_address(target.address.split("%", 1)[0])
    default_port = 443 if url.scheme == "https" else 80
    host_header = target.host if target.port == default_port else f"{target.host}:{target.port}"
    if ":" in target.host and not target.host.startswith("["):
        host_header = f"[{target.host}]" if target.port == default_port else f"[{target.host}]:{target.port}"
    pinned = url.copy_with(host=str(ip), port=target.port)
    extensions = {"sni_hostname": target.host} if url.scheme == "https" else {}
    return client.build_request("GET", pinned, headers={"Host": host_header}, extensions=extensions)


async def _read_capped(response: httpx.Response, cap: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        if size + len(chunk) > cap:
            chunks.append(chunk[: cap - size])
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False
