"""The dashboard's door, attacked over real HTTP and WebSocket handshakes against `refactorbot dashboard`."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest
from conftest import ServedDashboard
from refactorbot_api.testing import RunningServer
from refactorbot_dashboard.gate import COOKIE_NAME, SessionStore, served_hosts, token_matches
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

STREAM = "/_stcore/stream"
FOREIGN = ["evil.example", "attacker.test", "127.0.0.1.nip.io", "localhost.evil.example", "10.0.0.1"]


class Http:
    """One fresh connection per request, no cookie jar: each request carries exactly the cookie it is given."""

    @staticmethod
    def request(method: str, url: str, session: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if session:
            headers["Cookie"] = f"{COOKIE_NAME}={session}"
        return httpx.request(method, url, headers=headers, trust_env=False, timeout=15, **kwargs)

    def get(self, url: str, session: str | None = None, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, session, **kwargs)

    def post(self, url: str, session: str | None = None, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, session, **kwargs)

    def put(self, url: str, session: str | None = None, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, session, **kwargs)


@pytest.fixture(scope="module")
def http() -> Http:
    return Http()


@pytest.fixture(scope="module")
def session(served: ServedDashboard, http: Http) -> str:
    """A logged-in session id, obtained the way a browser does: the printed link."""
    response = http.get(f"{served.url}/?token={served.token}")
    assert response.status_code == 303, response.text
    return response.cookies[COOKIE_NAME]


def _handshake(served: ServedDashboard, headers: dict[str, str], host: str | None = None) -> int:
    """Open Streamlit's WebSocket on the dashboard's port, claiming ``host``; return the HTTP status (101 = open)."""
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=15)
    uri = f"ws://{host or f'127.0.0.1:{served.port}'}{STREAM}"
    try:
        with connect(uri, sock=sock, additional_headers=headers, subprotocols=["streamlit"], open_timeout=15):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


# --- Host and Origin -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FOREIGN)
def test_plain_http_with_a_foreign_host_is_refused(
    served: ServedDashboard, http: Http, session: str, name: str
) -> None:
    for path in ("/", "/_stcore/health", "/_stcore/host-config", f"/?token={served.token}"):
        response = http.get(f"{served.url}{path}", headers={"Host": f"{name}:{served.port}"}, session=session)
        assert response.status_code == 403, (path, response.status_code)
        assert COOKIE_NAME not in response.cookies


def test_a_loopback_name_on_another_port_is_refused(served: ServedDashboard, http: Http, session: str) -> None:
    for host in (f"127.0.0.1:{served.port + 1}", "localhost", f"localhost:{served.port}0", "127.0.0.1:80"):
        response = http.get(f"{served.url}/", headers={"Host": host}, session=session)
        assert response.status_code == 403, host


def test_the_served_addresses_are_accepted(served: ServedDashboard, http: Http, session: str) -> None:
    for name in ("127.0.0.1", "localhost", "LOCALHOST", "[::1]"):
        response = http.get(f"{served.url}/", headers={"Host": f"{name}:{served.port}"}, session=session)
        assert response.status_code == 200, name
        assert '<div id="root">' in response.text  # Streamlit's page, now that the session is valid
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["content-security-policy"] == "frame-ancestors 'none'"


def test_a_foreign_origin_is_refused_on_plain_http(served: ServedDashboard, http: Http, session: str) -> None:
    origins = [
        "http://evil.example",
        f"http://evil.example:{served.port}",
        "http://localhost:3000",
        "null",
        f"https://127.0.0.1:{served.port}",
    ]
    for origin in origins:
        page = http.get(f"{served.url}/", headers={"Origin": origin}, session=session)
        login = http.post(f"{served.url}/_refactorbot/login", data={"token": served.token}, headers={"Origin": origin})
        assert (page.status_code, login.status_code) == (403, 403), origin
        assert COOKIE_NAME not in login.cookies
    same = http.get(f"{served.url}/", headers={"Origin": served.url}, session=session)
    assert same.status_code == 200


@pytest.mark.parametrize(
    "origin",
    ["http://evil.example", "http://evil.example:{port}", "http://localhost:3000", "null", "https://127.0.0.1:{port}"],
)
def test_a_websocket_with_a_foreign_origin_is_refused_even_with_a_session(
    served: ServedDashboard, session: str, origin: str
) -> None:
    headers = {"Origin": origin.format(port=served.port), "Cookie": f"{COOKIE_NAME}={session}"}
    assert _handshake(served, headers) == 403


@pytest.mark.parametrize("name", FOREIGN)
def test_a_websocket_with_a_foreign_host_is_refused_even_with_a_session(
    served: ServedDashboard, session: str, name: str
) -> None:
    host = f"{name}:{served.port}"
    # A DNS-rebinding page is same-origin with the name it rebound: Origin and Host agree.
    headers = {"Origin": f"http://{host}", "Cookie": f"{COOKIE_NAME}={session}"}
    assert _handshake(served, headers, host=host) == 403


# --- Login -----------------------------------------------------------------------------------------


def test_a_websocket_without_a_session_is_refused(served: ServedDashboard) -> None:
    assert _handshake(served, {"Origin": served.url}) == 403
    assert _handshake(served, {"Origin": served.url, "Cookie": f"{COOKIE_NAME}=forged"}) == 403
    assert _handshake(served, {"Origin": served.url, "Cookie": f"{COOKIE_NAME}={served.token}"}) == 403


def test_a_websocket_with_a_session_from_a_served_origin_opens(served: ServedDashboard, session: str) -> None:
    for name in ("127.0.0.1", "localhost", "[::1]"):
        host = f"{name}:{served.port}"
        assert _handshake(served, {"Origin": f"http://{host}", "Cookie": f"{COOKIE_NAME}={session}"}, host) == 101


def test_without_a_session_only_the_login_page_answers(served: ServedDashboard, http: Http) -> None:
    for path in ("/", "/control", "/settings?x=1", "/_stcore/host-config", "/_stcore/metrics", "/static/index.html"):
        response = http.get(f"{served.url}{path}")
        assert response.status_code == 401, path
        assert 'action="/_refactorbot/login"' in response.text
        assert '<div id="root">' not in response.text and "<script" not in response.text
        assert response.headers["x-frame-options"] == "DENY"
    upload = http.put(f"{served.url}/_stcore/upload_file/s/f", content=b"x")
    assert upload.status_code == 401
    assert http.get(f"{served.url}/_stcore/health").text == "ok"  # the liveness probe stays open


def test_xsrf_protection_is_on_behind_the_login(served: ServedDashboard, http: Http, session: str) -> None:
    upload = http.put(f"{served.url}/_stcore/upload_file/s/f", session, files={"file": ("a.txt", b"x")})
    assert upload.status_code == 403 and "XSRF" in upload.text  # Streamlit's own check, past ours


def test_the_token_link_sets_a_strict_http_only_cookie_and_drops_the_token(served: ServedDashboard, http: Http) -> None:
    response = http.get(f"{served.url}/logs?token={served.token}&level=ERROR")
    assert response.status_code == 303
    assert response.headers["location"] == "/logs?level=ERROR"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE_NAME}=")
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= attributes
    assert served.token not in cookie
    page = http.get(f"{served.url}/logs", session=response.cookies[COOKIE_NAME])
    assert page.status_code == 200 and '<div id="root">' in page.text


@pytest.mark.parametrize("wrong", ["", "wrong-guess-7Qz", "{token}x", "{token_head}", "{token_upper}"])
def test_a_wrong_token_gives_no_session_and_is_not_echoed(served: ServedDashboard, http: Http, wrong: str) -> None:
    guess = wrong.format(token=served.token, token_head=served.token[:-1], token_upper=served.token.upper())
    for response in (
        http.get(f"{served.url}/?token={guess}"),
        http.post(f"{served.url}/_refactorbot/login", data={"token": guess, "next": "/"}),
    ):
        assert response.status_code == 401
        assert COOKIE_NAME not in response.cookies
        assert served.token not in response.text and (not guess or guess not in response.text)


def test_the_login_form_takes_the_api_token_and_redirects_only_locally(
    served: ServedDashboard, http: Http, server: RunningServer
) -> None:
    response = http.post(f"{served.url}/_refactorbot/login", data={"token": server.token, "next": "/control"})
    assert response.status_code == 303 and response.headers["location"] == "/control"
    assert response.cookies[COOKIE_NAME]
    for target in ("//evil.example/", "http://evil.example/", "/\\evil.example", "javascript:alert(1)"):
        response = http.post(f"{served.url}/_refactorbot/login", data={"token": served.token, "next": target})
        assert response.status_code == 303 and response.headers["location"] == "/", target


def test_the_login_form_refuses_oversized_and_non_form_bodies(served: ServedDashboard, http: Http) -> None:
    big = http.post(f"{served.url}/_refactorbot/login", data={"token": "x" * 10_000})
    assert big.status_code == 413
    as_json = http.post(f"{served.url}/_refactorbot/login", json={"token": served.token})
    assert as_json.status_code == 415 and COOKIE_NAME not in as_json.cookies


def test_the_token_is_printed_once_and_logged_nowhere_else(served: ServedDashboard, http: Http) -> None:
    http.get(f"{served.url}/?token=wrong-{served.token[:8]}")
    http.get(f"{served.url}/", headers={"Host": "evil.example"})
    output = served.output()
    assert output.count(served.token) == 1
    assert f"http://127.0.0.1:{served.port}/?token={served.token}" in output


# --- The pieces on their own -----------------------------------------------------------------------


def test_served_hosts() -> None:
    assert served_hosts("127.0.0.1", 8501) == {"127.0.0.1:8501", "localhost:8501", "[::1]:8501"}
    assert served_hosts("0.0.0.0", 8501) == served_hosts("127.0.0.1", 8501)  # a wildcard names nothing more
    assert "dash.lan:9000" in served_hosts("Dash.LAN", 9000)
    assert "[fd00::5]:9000" in served_hosts("fd00::5", 9000)
    assert "localhost" in served_hosts("127.0.0.1", 80)


def test_token_matches() -> None:
    assert token_matches("abc", ["zzz", "abc"])
    assert not token_matches("abc", ["abcd", ""])
    assert not token_matches("", [""])
    assert not token_matches(None, ["abc"])
    assert not token_matches("\udcff", ["abc"])


def test_sessions_expire_and_are_bounded() -> None:
    now = [1000.0]
    store = SessionStore(max_age=60, limit=3, clock=lambda: now[0])
    first = store.create()
    assert store.valid(first) and not store.valid("forged") and not store.valid(None)
    now[0] += 61
    assert not store.valid(first)
    ids = [store.create() for _ in range(4)]
    assert not store.valid(ids[0]) and all(store.valid(i) for i in ids[1:])
    store.end(ids[1])
    assert not store.valid(ids[1])
