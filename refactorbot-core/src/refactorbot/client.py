"""Find and call a running ``refactorbot serve`` (its control API), so the CLI stays warm-fast.

The API plugin writes ``<home>/server.json`` (``{"url": ..., "pid": ...}``) and the bearer token
to ``<home>/api-token`` (mode 0600) when it starts, and removes ``server.json`` when it stops.

The client speaks HTTP/1.1 over a plain socket (one request per connection, ``Connection:
close``): ``urllib.request`` and ``http.client`` pull in the email parser, ``ssl``, ``hashlib`` and
more, about a fifth of what a command that talks to the server costs at start-up. Answers are
read by ``Content-Length``, chunked transfer coding or until the server closes; proxies from the
environment are not used (the server is the address it advertised, usually loopback).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from io import BufferedReader

SERVER_FILE = "server.json"
TOKEN_FILE = "api-token"  # noqa: S105  the name of the file holding the token, not a token

#: Longest status, header or chunk-size line accepted, and most header lines (as http.client).
MAX_LINE = 65536
MAX_HEADERS = 100
#: Redirects followed for a GET to the same server (urllib followed them too); other methods fail.
MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
#: Characters kept as they are in a request target; anything else (spaces, controls, non-ASCII) is %-encoded.
_TARGET_SAFE = "!#$%&'()*+,/:;=?@[]~"


class _Answer:
    """The status, headers and body reader of one HTTP response."""

    def __init__(self, sock: socket.socket, reader: BufferedReader, status: int, headers: dict[str, str]) -> None:
        self.sock = sock
        self.reader = reader
        self.status = status
        self.headers = headers

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def pieces(self, method: str) -> Iterator[bytes]:
        """Yield the body as it arrives (chunked, by ``Content-Length`` or until the server closes)."""
        if method == "HEAD" or self.status in (204, 304):
            return
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            yield from self._chunks()
            return
        length = self.headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                raise OSError(f"the server sent an unusable Content-Length: {length[:40]!r}")
            left = int(length)
            while left > 0:
                data = self.reader.read1(min(left, 65536))
                if not data:
                    raise OSError(f"the answer ended {left} bytes early")
                left -= len(data)
                yield data
            return
        while data := self.reader.read1(65536):
            yield data

    def _chunks(self) -> Iterator[bytes]:
        while True:
            line = _line(self.reader, "chunk size")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise OSError(f"the server sent an unusable chunk size: {line[:40]!r}") from None
            if size < 0:
                raise OSError(f"the server sent an unusable chunk size: {line[:40]!r}")
            if size == 0:
                for _ in range(MAX_HEADERS + 1):  # trailers, up to the blank line
                    if _line(self.reader, "trailer", eof_ok=True) in (b"", b"\r\n", b"\n"):
                        return
                raise OSError(f"the server sent more than {MAX_HEADERS} trailer lines")
            data = self.reader.read(size)
            if len(data) < size:
                raise OSError(f"the answer ended {size - len(data)} bytes into a chunk early")
            if _line(self.reader, "chunk end") not in (b"\r\n", b"\n"):
                raise OSError("the server sent a chunk longer than its size")
            yield data

    def body(self, method: str) -> bytes:
        return b"".join(self.pieces(method))


def _line(reader: BufferedReader, what: str, *, eof_ok: bool = False) -> bytes:
    """Return one line of the answer; a line too long or a connection closed mid-answer is an ``OSError``."""
    line = reader.readline(MAX_LINE + 1)
    if len(line) > MAX_LINE:
        raise OSError(f"the server sent a {what} line longer than {MAX_LINE} bytes")
    if not line and not eof_ok:
        raise OSError(f"the server closed the connection before the {what}")
    return line


class ServerClient:
    """A small synchronous client of the control API (stdlib only, for fast CLI start-up)."""

    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout

    @classmethod
    def discover(cls, home: Path) -> ServerClient | None:
        """Return a client of the server running for ``home``, or None when none answers."""
        try:
            info = json.loads((home / SERVER_FILE).read_text())
            token = (home / TOKEN_FILE).read_text().strip()
            os.kill(int(info["pid"]), 0)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        client = cls(str(info["url"]), token)
        try:
            client.request("GET", "/health", timeout=1.0)
        except OSError:
            return None
        return client

    def request(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        """Send one request and return the decoded JSON body (HTTP errors included)."""
        answer = self._send(method, path, body, timeout or self.timeout)
        try:
            payload = answer.body(method)
        finally:
            answer.close()
        if answer.status < 300:
            return json.loads(payload or b"null")
        try:
            return json.loads(payload)
        except ValueError:
            raise OSError(f"HTTP {answer.status}: {payload[:200]!r}") from None

    def stream(self, path: str, body: Any) -> Iterator[Any]:
        """POST ``body`` and yield each JSON line of an NDJSON response as it arrives.

        Raise ``OSError`` when the server cannot be reached or answers with an HTTP error.
        """
        answer = self._send("POST", path, body, self.timeout)
        try:
            if answer.status >= 300:
                payload = answer.body("POST")
                try:
                    detail = json.loads(payload).get("detail")
                except (ValueError, AttributeError):
                    detail = payload[:200]
                raise OSError(f"HTTP {answer.status}: {detail}")
            pending = b""
            for piece in answer.pieces("POST"):
                pending += piece
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)
            if pending.strip():
                yield json.loads(pending)
        finally:
            answer.close()

    def call(self, slice_id: str, operation: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Run an operation on the server; return the ``SliceResponse`` as a dict."""
        result: dict[str, Any] = self.request("POST", f"/slices/{slice_id}/operations/{operation}", payload)
        return result

    def _send(self, method: str, path: str, body: Any, timeout: float) -> _Answer:
        """Send the request and read the answer's head; follow a GET's redirects on the same server."""
        from urllib.parse import quote, urljoin, urlsplit  # already imported with pathlib: free

        if any(not 0x21 <= ord(c) <= 0x7E for c in self.token + method):
            raise ValueError("the API token and the method must be printable ASCII without spaces")
        data = None if body is None else json.dumps(body).encode()
        url = self.url + quote(path, safe=_TARGET_SAFE)
        for _ in range(MAX_REDIRECTS + 1):
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise OSError(f"the server's address is not an http(s) URL: {self.url!r}")
            try:
                port = parts.port or (443 if parts.scheme == "https" else 80)
            except ValueError:
                raise OSError(f"the server's address has an unusable port: {self.url!r}") from None
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            head = [
                f"{method} {target} HTTP/1.1",
                f"Host: {parts.netloc.rpartition('@')[2]}",
                f"Authorization: Bearer {self.token}",
                "Content-Type: application/json",
                "Accept-Encoding: identity",
                "Connection: close",
            ]
            if data is not None or method in ("POST", "PUT", "PATCH"):
                head.append(f"Content-Length: {len(data or b'')}")
            answer = _exchange(
                parts.scheme, parts.hostname, port, timeout, "\r\n".join(head).encode() + b"\r\n\r\n", data
            )
            location = answer.headers.get("location")
            if method != "GET" or answer.status not in _REDIRECTS or not location:
                return answer
            answer.close()
            following = urljoin(url, location)
            if urlsplit(following)[:2] != parts[:2]:
                raise OSError(f"the server redirected to another address: {location[:200]!r}")
            url = following
        raise OSError(f"the server redirected more than {MAX_REDIRECTS} times")


def _exchange(scheme: str, host: str, port: int, timeout: float, head: bytes, data: bytes | None) -> _Answer:
    """Connect, send ``head`` and ``data``, and return the answer with its status and headers read."""
    sock = _connect(host, port, timeout)
    try:
        if scheme == "https":
            import ssl

            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        sock.sendall(head + (data or b""))
        reader: BufferedReader = sock.makefile("rb")
        try:
            while True:
                status_line = _line(reader, "status")
                version, _, rest = status_line.decode("latin-1").rstrip("\r\n").partition(" ")
                code = rest[:3]
                if not version.startswith("HTTP/1.") or not code.isdigit() or rest[3:4] not in ("", " "):
                    raise OSError(f"the server did not answer in HTTP/1.x: {status_line[:80]!r}")
                headers: dict[str, str] = {}
                for _ in range(MAX_HEADERS + 1):
                    line = _line(reader, "header")
                    if line in (b"\r\n", b"\n"):
                        break
                    name, colon, value = line.decode("latin-1").partition(":")
                    if not colon or not name.strip():
                        raise OSError(f"the server sent an unusable header line: {line[:80]!r}")
                    headers[name.strip().lower()] = value.strip()
                else:
                    raise OSError(f"the server sent more than {MAX_HEADERS} header lines")
                if not 100 <= int(code) < 200:  # an interim answer (100 Continue) is followed by the real one
                    return _Answer(sock, reader, int(code), headers)
        except BaseException:
            reader.close()
            raise
    except BaseException:
        sock.close()
        raise


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    """Return a socket connected to ``host:port`` (each address in turn, as ``socket.create_connection``).

    The host is passed as bytes: given a str, ``getaddrinfo`` imports the idna codec to encode it,
    even for an IP address.
    """
    name = host.encode() if host.isascii() else host.encode("idna")
    error: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(name, port, 0, socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error or OSError(f"no address found for {host}")
