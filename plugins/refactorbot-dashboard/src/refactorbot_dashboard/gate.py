"""The dashboard's door: Host/Origin checks and login, before Streamlit sees a request or opens a session.

``DashboardGate`` is an ASGI middleware that ``streamlit_entry.app`` (an ``st.App``) puts in front of
Streamlit's own routes, so it runs for every HTTP request and every WebSocket handshake:

1. The ``Host`` header must name an address the dashboard serves (``served_hosts``), and an
   ``Origin`` header, when sent, must be ``http://`` plus one of them. Anything else is refused
   with 403 (a WebSocket is closed before it is accepted, which the server answers with 403).
2. Only ``/_stcore/health`` and the login answer without a session. A valid token, as
   ``?token=`` on any URL or posted by the login form, is exchanged for a random session id in an
   ``HttpOnly; SameSite=Strict`` cookie, and the browser is redirected to the URL without the
   token. Every other request without a valid session gets the login page (401), and a WebSocket
   without one is refused, so no Streamlit session exists before the person has logged in.

``require_login`` is the same rule inside the app script (defence in depth): the app renders only
a login form unless the session cookie is valid in this process or the token was entered there.
Tokens are compared with ``hmac.compare_digest`` and are never logged or put on a page.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from refactorbot_dashboard.client import ServerNotFound, server_from_environment

#: The per-launch login token ``refactorbot dashboard`` generates and hands to the Streamlit process.
LOGIN_TOKEN_ENV = "RB_DASHBOARD_LOGIN_TOKEN"  # noqa: S105  the variable's name, not a token
COOKIE_NAME = "rb_dashboard_session"
LOGIN_PATH = "/_refactorbot/login"
HEALTH_PATH = "/_stcore/health"
TOKEN_PARAM = "token"  # noqa: S105  the query parameter's name, not a token
#: A session lasts this long (seconds), or until the dashboard stops.
SESSION_MAX_AGE = 12 * 3600
#: At most this many live sessions are kept; the oldest is dropped first.
MAX_SESSIONS = 1000
#: The login form's body limit (bytes).
MAX_LOGIN_BODY = 4096
#: ``st.session_state`` key set when the token was entered in the app's own login form.
SIGNED_IN_KEY = "_refactorbot_signed_in"

_LOG = logging.getLogger(__name__)
#: Addresses that name every interface: recognized so that they add no accepted Host, never bound here.
_WILDCARDS = {"", "0.0.0.0", "::"}  # noqa: S104  compared against, never bound
_FRAME_HEADERS = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}
_PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make the form's Origin "null"
    "Cache-Control": "no-store",
}


def served_hosts(address: str, port: int) -> frozenset[str]:
    """Return the ``Host`` header values (lower case) of a dashboard served on ``address``:``port``.

    Always the loopback names (``127.0.0.1``, ``localhost``, ``[::1]``), plus ``address`` when it is a
    specific address. A wildcard address adds nothing: the names it is reached by are unknown.
    """
    names = {"127.0.0.1", "localhost", "[::1]"}
    address = address.strip().lower()
    if address not in _WILDCARDS:
        names.add(f"[{address.strip('[]')}]" if ":" in address else address)
    hosts = {f"{name}:{port}" for name in names}
    if port == 80:
        hosts |= names
    return frozenset(hosts)


def token_matches(candidate: object, accepted: Iterable[str]) -> bool:
    """Return whether ``candidate`` equals one of the ``accepted`` tokens (constant time, no short cut)."""
    if not isinstance(candidate, str) or not candidate:
        return False
    given = candidate.encode("utf-8", "surrogatepass")
    matched = False
    for token in accepted:
        if token:
            matched |= hmac.compare_digest(given, token.encode("utf-8"))
    return matched


def accepted_tokens(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Return the tokens that log in: the per-launch login token and the API token the dashboard holds."""
    env = os.environ if env is None else env
    tokens = [env.get(LOGIN_TOKEN_ENV, "").strip()]
    try:
        tokens.append(server_from_environment(env)[1])
    except ServerNotFound:
        pass
    return tuple(t for t in tokens if t)


class SessionStore:
    """Live login sessions of this process: random ids, kept only as SHA-256 digests, with an expiry."""

    def __init__(
        self, max_age: float = SESSION_MAX_AGE, limit: int = MAX_SESSIONS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_age = max_age
        self._limit = limit
        self._clock = clock
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(session_id: str) -> str:
        return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()

    def create(self) -> str:
        """Start a session; return its id (the cookie value)."""
        session_id = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            for key in [k for k, expiry in self._expiry.items() if expiry <= now]:
                del self._expiry[key]
            while len(self._expiry) >= self._limit:
                del self._expiry[next(iter(self._expiry))]
            self._expiry[self._key(session_id)] = now + self.max_age
        return session_id

    def valid(self, session_id: object) -> bool:
        """Return whether ``session_id`` is a live session of this process."""
        if not isinstance(session_id, str) or not session_id:
            return False
        key = self._key(session_id)
        with self._lock:
            expiry = self._expiry.get(key)
            if expiry is None:
                return False
            if expiry <= self._clock():
                del self._expiry[key]
                return False
            return True

    def end(self, session_id: str | None) -> None:
        """End ``session_id`` (unknown ids are ignored)."""
        if session_id:
            with self._lock:
                self._expiry.pop(self._key(session_id), None)


#: The sessions of this process, shared by the middleware and the app script.
SESSIONS = SessionStore()


def _safe_next(path: str) -> str:
    """Return ``path`` if it is a local path (no scheme, host or control characters), else ``/``."""
    if re.fullmatch(r"/(?![/\\])[\x21-\x7e]*", path) and "\\" not in path:
        return path
    return "/"


def _without_token(path: str, query: str) -> str:
    """Return ``path`` with ``query`` minus the token parameter."""
    rest = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != TOKEN_PARAM]
    return _safe_next(path + (f"?{urlencode(rest)}" if rest else ""))


def login_page(next_path: str = "/", message: str | None = None) -> str:
    """Return the HTML of the login page (no script; the token is never part of it)."""
    notice = f'<p class="error">{html.escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>refactorbot dashboard: log in</title>
<style>body{{font-family:system-ui,sans-serif;max-width:34rem;margin:4rem auto;padding:0 1rem;color:#222}}
input{{font:inherit;padding:.4rem;width:100%;box-sizing:border-box}}button{{font:inherit;margin-top:.8rem;padding:.4rem 1.2rem}}
.error{{color:#b00020}}code{{background:#f2f2f2;padding:0 .2rem}}</style></head>
<body><h1>Log in to the refactorbot dashboard</h1>{notice}
<p>Open the link <code>refactorbot dashboard</code> printed in its terminal, or enter its token here.
The API token (the file <code>api-token</code> in the refactorbot home directory) works too.</p>
<form method="post" action="{LOGIN_PATH}">
<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="off" autofocus required>
<input type="hidden" name="next" value="{html.escape(next_path, quote=True)}">
<button type="submit">Log in</button>
</form></body></html>
"""


class DashboardGate:
    """ASGI middleware: refuse foreign Host/Origin, and anything but the login before a session exists."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._hosts: frozenset[str] | None = None
        self._tokens = accepted_tokens()
        self._sessions = SESSIONS
        if not self._tokens:
            _LOG.error(
                "the dashboard has no login token (%s) and no API token: every request is refused", LOGIN_TOKEN_ENV
            )

    def hosts(self) -> frozenset[str]:
        """Return the accepted ``Host`` values: those of Streamlit's ``server.address`` and ``server.port``."""
        if self._hosts is None:  # read on the first request, when Streamlit's configuration is final
            from streamlit import config

            self._hosts = served_hosts(
                str(config.get_option("server.address") or ""), int(config.get_option("server.port"))
            )
        return self._hosts

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        from starlette.datastructures import Headers
        from starlette.requests import cookie_parser

        headers = Headers(scope=scope)
        refusal = self._foreign(headers)
        if refusal:
            _LOG.warning("refused %s %s: %s", scope["type"], scope.get("path"), refusal)
            await self._refuse(scope, receive, send, 403, f"Forbidden: {refusal}.")
            return
        session_id = cookie_parser(headers.get("cookie", "")).get(COOKIE_NAME)
        signed_in = bool(self._tokens) and self._sessions.valid(session_id)
        if scope["type"] == "websocket":
            if signed_in:
                await self.app(scope, receive, send)
            else:
                _LOG.warning("refused a WebSocket without a login session")
                await self._refuse(scope, receive, send, 403, "")
            return
        await self._http(scope, receive, send, signed_in)

    def _foreign(self, headers: Any) -> str | None:
        hosts = self.hosts()
        host_values = headers.getlist("host")
        if len(host_values) != 1 or host_values[0].strip().lower() not in hosts:
            return "this Host is not an address of the dashboard"
        origins = headers.getlist("origin")
        if len(origins) > 1 or (origins and origins[0].strip().lower() not in {f"http://{h}" for h in hosts}):
            return "requests from another origin are not accepted"
        return None

    async def _http(self, scope: MutableMapping[str, Any], receive: Any, send: Any, signed_in: bool) -> None:
        from starlette.responses import HTMLResponse, PlainTextResponse

        path, method = scope["path"], scope["method"]
        query = scope.get("query_string", b"").decode("latin-1")
        if path == LOGIN_PATH:
            await self._login_form(scope, receive, send)
            return
        given = [v for k, v in parse_qsl(query, keep_blank_values=True) if k == TOKEN_PARAM]
        if given:
            token = given[0] if len(given) == 1 else None
            target = _without_token(path, query)
            if token_matches(token, self._tokens):
                await self._signed_in(target)(scope, receive, send)
            else:
                page = login_page(target, "That token is not valid.")
                await HTMLResponse(page, status_code=401, headers=_PAGE_HEADERS)(scope, receive, send)
            return
        if signed_in or (path == HEALTH_PATH and method in ("GET", "HEAD")):
            await self.app(scope, receive, _with_headers(send, _FRAME_HEADERS))
            return
        if method in ("GET", "HEAD"):
            page = login_page(_safe_next(path + (f"?{query}" if query else "")))
            await HTMLResponse(page, status_code=401, headers=_PAGE_HEADERS)(scope, receive, send)
        else:
            response = PlainTextResponse("Log in first.", status_code=401, headers=_PAGE_HEADERS)
            await response(scope, receive, send)

    async def _login_form(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        from starlette.requests import Request
        from starlette.responses import HTMLResponse, PlainTextResponse

        request = Request(scope, receive)
        if scope["method"] != "POST":
            await HTMLResponse(login_page(), status_code=200, headers=_PAGE_HEADERS)(scope, receive, send)
            return
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            await PlainTextResponse("The login form is sent as a URL-encoded form.", status_code=415)(
                scope, receive, send
            )
            return
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_LOGIN_BODY:
                await PlainTextResponse("The login form is too large.", status_code=413)(scope, receive, send)
                return
        try:
            fields = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except (UnicodeDecodeError, ValueError):
            await PlainTextResponse("The login form is not valid.", status_code=400)(scope, receive, send)
            return
        target = _safe_next(fields.get("next", "/"))
        if token_matches(fields.get(TOKEN_PARAM), self._tokens):
            await self._signed_in(target)(scope, receive, send)
        else:
            page = login_page(target, "That token is not valid.")
            await HTMLResponse(page, status_code=401, headers=_PAGE_HEADERS)(scope, receive, send)

    def _signed_in(self, target: str) -> Any:
        from starlette.responses import RedirectResponse

        response = RedirectResponse(target, status_code=303, headers=_PAGE_HEADERS)
        response.set_cookie(
            COOKIE_NAME,
            self._sessions.create(),
            max_age=int(self._sessions.max_age),
            path="/",
            httponly=True,
            samesite="strict",
        )
        return response

    @staticmethod
    async def _refuse(scope: MutableMapping[str, Any], receive: Any, send: Any, status: int, text: str) -> None:
        if scope["type"] == "websocket":
            # Closing before accepting: the server answers the handshake with 403; no session is made.
            await send({"type": "websocket.close", "code": 1008, "reason": ""})
            return
        from starlette.responses import PlainTextResponse

        await PlainTextResponse(text, status_code=status, headers=_FRAME_HEADERS)(scope, receive, send)


def _with_headers(send: Any, extra: Mapping[str, str]) -> Any:
    async def wrapped(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            from starlette.datastructures import MutableHeaders

            headers = MutableHeaders(scope=message)
            for name, value in extra.items():
                if name not in headers:
                    headers[name] = value
        await send(message)

    return wrapped


def signed_in() -> bool:
    """Return whether this Streamlit session has logged in (valid session cookie, or token entered here)."""
    import streamlit as st

    if st.session_state.get(SIGNED_IN_KEY) is True:
        return True
    try:
        session_id = st.context.cookies.get(COOKIE_NAME)
    except Exception:  # no client context (bare mode, tests): not signed in by cookie
        return False
    return SESSIONS.valid(session_id)


def require_login() -> bool:
    """Return True when signed in; otherwise render only the login form and return False."""
    import streamlit as st

    if signed_in():
        return True
    st.title("Log in")
    st.write(
        "Open the link `refactorbot dashboard` printed in its terminal, or enter its token here. "
        "The API token (`api-token` in the refactorbot home directory) works too."
    )
    with st.form("login", clear_on_submit=True):
        token = st.text_input("Token", type="password", key="login.token")
        submitted = st.form_submit_button("Log in")
    if submitted:
        if token_matches(token, accepted_tokens()):
            st.session_state[SIGNED_IN_KEY] = True
            st.rerun()
        st.error("That token is not valid.")
    return False
