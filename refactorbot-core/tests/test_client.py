"""ServerClient against a loopback HTTP/1.1 server that answers in each framing a server may use.

The control API (uvicorn) answers JSON with ``Content-Length`` and streams NDJSON with chunked
transfer coding; the client also reads answers delimited by the connection's close, interim
``100 Continue`` answers and a GET's redirects, and refuses malformed answers with one line.
The end-to-end runs against a real ``refactorbot serve`` are in tests/test_cli_against_server.py.
"""

from __future__ import annotations

import json
import os
import socket
import socketserver
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from refactorbot.client import MAX_HEADERS, MAX_LINE, SERVER_FILE, TOKEN_FILE, ServerClient

Respond = Callable[[socket.socket, dict[str, object]], None]


class Recorded:
    """What the server received: one dict per request (method, target, headers, body)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, object]] = []


def _read_request(conn: socket.socket) -> dict[str, object]:
    reader = conn.makefile("rb")
    method, target, version = reader.readline().decode().split()
    headers: dict[str, str] = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.lower()] = value.strip()
    body = reader.read(int(headers.get("content-length", "0")))
    return {"method": method, "target": target, "version": version, "headers": headers, "body": body}


@pytest.fixture
def server() -> Iterator[tuple[str, Recorded, list[Respond]]]:
    """A loopback server; each request is answered by the next function the test queued."""
    recorded = Recorded()
    answers: list[Respond] = []

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            request = _read_request(self.request)
            recorded.requests.append(request)
            answers.pop(0)(self.request, request)

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler) as tcp:
        tcp.daemon_threads = True
        thread = threading.Thread(target=tcp.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{tcp.server_address[1]}", recorded, answers
        finally:
            tcp.shutdown()


def fixed(status: str, body: bytes, headers: str = "Content-Type: application/json\r\n") -> Respond:
    """Answer ``status`` with ``body`` and its Content-Length."""

    def respond(conn: socket.socket, _: dict[str, object]) -> None:
        conn.sendall(f"HTTP/1.1 {status}\r\n{headers}Content-Length: {len(body)}\r\n\r\n".encode() + body)

    return respond


def raw(data: bytes) -> Respond:
    """Send ``data`` as it is, then close."""

    def respond(conn: socket.socket, _: dict[str, object]) -> None:
        conn.sendall(data)

    return respond


def chunked(*chunks: bytes, status: str = "200 OK") -> bytes:
    framed = b"".join(f"{len(c):x}\r\n".encode() + c + b"\r\n" for c in chunks)
    return f"HTTP/1.1 {status}\r\nTransfer-Encoding: chunked\r\n\r\n".encode() + framed + b"0\r\n\r\n"


def test_a_request_sends_the_token_and_json_and_reads_the_json_answer(server) -> None:  # noqa: ANN001
    url, recorded, answers = server
    answers.append(fixed("200 OK", b'{"success": true, "data": {"id": 7}}'))
    answer = ServerClient(url, "tok-123").call("notes", "add", {"title": "ü"})
    assert answer == {"success": True, "data": {"id": 7}}
    sent = recorded.requests[0]
    assert (sent["method"], sent["target"], sent["version"]) == ("POST", "/slices/notes/operations/add", "HTTP/1.1")
    headers = sent["headers"]
    assert isinstance(headers, dict)
    assert headers["authorization"] == "Bearer tok-123"
    assert headers["host"] == url.removeprefix("http://")
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert json.loads(sent["body"]) == {"title": "ü"}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "answer",
    [
        chunked(b'{"a": ', b"1}"),
        b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"a": 1}',  # delimited by the close
        b'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{"a": 1}',
        b'HTTP/1.0 200 OK\r\ncontent-length:8\r\n\r\n{"a": 1}',
    ],
    ids=["chunked", "until-close", "after-100-continue", "http-1.0-lowercase-header"],
)
def test_every_framing_of_an_answer_is_read(server, answer: bytes) -> None:  # noqa: ANN001
    url, _, answers = server
    answers.append(raw(answer))
    assert ServerClient(url, "t").request("GET", "/x") == {"a": 1}


def test_no_content_is_none(server) -> None:  # noqa: ANN001
    url, _, answers = server
    answers.append(raw(b"HTTP/1.1 204 No Content\r\n\r\n"))
    assert ServerClient(url, "t").request("DELETE", "/x") is None


def test_http_errors_return_their_json_or_fail_in_one_line(server) -> None:  # noqa: ANN001
    url, _, answers = server
    answers.append(fixed("404 Not Found", b'{"detail": "unknown slice"}'))
    answers.append(fixed("502 Bad Gateway", b"<html>proxy</html>", "Content-Type: text/html\r\n"))
    client = ServerClient(url, "t")
    assert client.request("GET", "/slices/nope") == {"detail": "unknown slice"}
    with pytest.raises(OSError, match=r"^HTTP 502: b'<html>proxy</html>'$"):
        client.request("GET", "/slices")


def test_a_target_with_spaces_or_non_ascii_is_percent_encoded(server) -> None:  # noqa: ANN001
    url, recorded, answers = server
    answers.append(fixed("404 Not Found", b'{"detail": "unknown slice"}'))
    ServerClient(url, "t").call("a b\r\nX-Injected: 1", "op", {})
    assert recorded.requests[0]["target"] == "/slices/a%20b%0D%0AX-Injected:%201/operations/op"
    headers = recorded.requests[0]["headers"]
    assert isinstance(headers, dict)
    assert "x-injected" not in headers


def test_a_token_that_would_break_the_header_is_refused_before_sending(server) -> None:  # noqa: ANN001
    url, recorded, _ = server
    with pytest.raises(ValueError, match="printable ASCII"):
        ServerClient(url, "tok\r\nX-Injected: 1").request("GET", "/health")
    assert recorded.requests == []


def test_a_stream_yields_each_line_as_it_arrives(server) -> None:  # noqa: ANN001
    url, recorded, answers = server
    first_seen = threading.Event()

    def respond(conn: socket.socket, _: dict[str, object]) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nTransfer-Encoding: chunked\r\n\r\n")
        first = b'{"delta": "he"}\n{"del'  # one line and the start of the next
        conn.sendall(f"{len(first):x}\r\n".encode() + first + b"\r\n")
        assert first_seen.wait(30), "the client did not yield the first line before the rest was sent"
        rest = b'ta": "llo"}\n\n{"reply": {"text": "hello"}}'
        conn.sendall(f"{len(rest):x}\r\n".encode() + rest + b"\r\n0\r\n\r\n")

    answers.append(respond)
    events = []
    for event in ServerClient(url, "t").stream("/chat/stream", {"text": "hi"}):
        events.append(event)
        first_seen.set()
    assert events == [{"delta": "he"}, {"delta": "llo"}, {"reply": {"text": "hello"}}]
    assert recorded.requests[0]["method"] == "POST"


def test_a_stream_refused_by_the_server_is_one_line(server) -> None:  # noqa: ANN001
    url, _, answers = server
    answers.append(fixed("401 Unauthorized", b'{"detail": "bad token"}'))
    answers.append(fixed("500 Internal Server Error", b"boom", "Content-Type: text/plain\r\n"))
    client = ServerClient(url, "t")
    with pytest.raises(OSError, match="^HTTP 401: bad token$"):
        list(client.stream("/chat/stream", {}))
    with pytest.raises(OSError, match="^HTTP 500: b'boom'$"):
        list(client.stream("/chat/stream", {}))


def test_a_get_follows_a_redirect_on_the_same_server_only(server) -> None:  # noqa: ANN001
    url, recorded, answers = server
    answers.append(fixed("307 Temporary Redirect", b"", "Location: /slices\r\n"))
    answers.append(fixed("200 OK", b"[]"))
    client = ServerClient(url, "t")
    assert client.request("GET", "/slices/") == []
    assert [r["target"] for r in recorded.requests] == ["/slices/", "/slices"]
    answers.append(fixed("302 Found", b"", "Location: http://192.0.2.1/steal\r\n"))
    with pytest.raises(OSError, match="redirected to another address"):
        client.request("GET", "/x")
    answers.append(fixed("307 Temporary Redirect", b"", "Location: /y\r\n"))
    with pytest.raises(OSError, match="^HTTP 307: b''$"):  # a POST is not sent again
        client.request("POST", "/x", {})


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "did not answer in HTTP/1.x"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "did not answer in HTTP/1.x"),
        (b"", "closed the connection before the status"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}", "ended 8 bytes early"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "unusable Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "unusable chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", "into a chunk early"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n", "longer than its size"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "unusable header line"),
        (b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_LINE + b"\r\n\r\n", "header line longer than"),
        (b"HTTP/1.1 200 OK\r\n" + b"X: 1\r\n" * (MAX_HEADERS + 1) + b"\r\n", f"more than {MAX_HEADERS} header"),
    ],
    ids=[
        "not-http",
        "bad-status",
        "closed",
        "short-body",
        "bad-length",
        "bad-chunk-size",
        "short-chunk",
        "long-chunk",
        "bad-header",
        "long-header",
        "many-headers",
    ],
)
def test_a_malformed_answer_is_one_oserror(server, answer: bytes, message: str) -> None:  # noqa: ANN001
    url, _, answers = server
    answers.append(raw(answer))
    with pytest.raises(OSError, match=message):
        ServerClient(url, "t").request("GET", "/x")


def test_a_server_that_does_not_answer_times_out(server) -> None:  # noqa: ANN001
    url, _, answers = server
    release = threading.Event()
    answers.append(lambda conn, _: release.wait(30) and None)
    try:
        with pytest.raises(TimeoutError):
            ServerClient(url, "t").request("GET", "/x", timeout=0.2)
    finally:
        release.set()


def test_unusable_addresses_are_oserrors() -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(ConnectionRefusedError):
            ServerClient(f"http://127.0.0.1:{port}", "t").request("GET", "/health")
    with pytest.raises(OSError, match="not an http"):
        ServerClient("ftp://127.0.0.1:21", "t").request("GET", "/health")
    with pytest.raises(OSError, match="unusable port"):
        ServerClient("http://127.0.0.1:99999", "t").request("GET", "/health")


def _advertise(home: Path, url: str, pid: int) -> None:
    home.mkdir(exist_ok=True)
    (home / SERVER_FILE).write_text(json.dumps({"url": url, "pid": pid}))
    (home / TOKEN_FILE).write_text("tok\n")


def test_discover_finds_a_server_that_answers_its_health_check(server, tmp_path: Path) -> None:  # noqa: ANN001
    url, recorded, answers = server
    _advertise(tmp_path, url, os.getpid())
    answers.append(fixed("200 OK", b'{"status": "ok"}'))
    client = ServerClient.discover(tmp_path)
    assert client is not None
    assert (client.url, client.token) == (url, "tok")
    assert recorded.requests[0]["target"] == "/health"


def test_discover_ignores_a_missing_a_dead_or_a_silent_server(server, tmp_path: Path) -> None:  # noqa: ANN001
    url, _, answers = server
    assert ServerClient.discover(tmp_path) is None  # no server.json
    dead = _dead_pid()
    _advertise(tmp_path, url, dead)
    assert ServerClient.discover(tmp_path) is None
    (tmp_path / SERVER_FILE).write_text("{not json")
    assert ServerClient.discover(tmp_path) is None
    answers.append(raw(b""))  # the pid lives, but what listens there closes without answering
    _advertise(tmp_path, url, os.getpid())
    assert ServerClient.discover(tmp_path) is None


def _dead_pid() -> int:
    import subprocess

    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def test_a_request_imports_neither_urllib_request_nor_http_client() -> None:
    """What a command talking to the server pays for: no email parser, ssl, hashlib or idna codec."""
    import subprocess

    code = """
import sys
before = set(sys.modules)  # what the interpreter (and coverage, when it measures) loaded already
import socket, threading
from refactorbot.client import ServerClient
listener = socket.create_server(("127.0.0.1", 0))
def answer():
    conn, _ = listener.accept()
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\n{}")
    conn.close()
threading.Thread(target=answer).start()
assert ServerClient(f"http://127.0.0.1:{listener.getsockname()[1]}", "t").request("GET", "/health") == {}
print(sorted(m for m in ("urllib.request", "http.client", "ssl", "email.parser", "hashlib", "encodings.idna")
             if m in sys.modules and m not in before))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]"
