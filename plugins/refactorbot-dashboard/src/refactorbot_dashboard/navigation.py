"""Assemble the dashboard: master pages first, then every installed plugin's pages, grouped by slice."""

from __future__ import annotations

import os
import re
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from refactorbot import DashboardPage

from refactorbot_dashboard.client import TOKEN_ENV, URL_ENV, ApiClient, ApiError, ServerNotFound
from refactorbot_dashboard.gate import require_login, signed_in
from refactorbot_dashboard.launcher import START_PAGE_ENV

PLUGINS_ENV = "RB_DASHBOARD_PLUGINS"
PAGES_DIR = Path(__file__).with_name("master_pages")

#: (file under master_pages/, title, url path, icon) of the master pages, in menu order.
MASTER_PAGES = (
    ("overview.py", "Overview", "overview", ":material/dashboard:"),
    ("analytics.py", "Analytics", "analytics", ":material/monitoring:"),
    ("control.py", "Control", "control", ":material/tune:"),
    ("logs.py", "Logs", "logs", ":material/receipt_long:"),
    ("search.py", "Search", "search", ":material/search:"),
    ("settings.py", "Settings", "settings", ":material/settings:"),
)
KIND_ORDER = {"dashboard": 0, "analytics": 1, "config": 2, "other": 3}


def api() -> ApiClient:
    """Return the (cached) client of the running server."""
    url = os.environ.get(URL_ENV, "")
    token = os.environ.get(TOKEN_ENV, "")
    return _cached_client(url, token)


def _cached_client(url: str, token: str) -> ApiClient:
    import streamlit as st

    @st.cache_resource(show_spinner=False)
    def make(url: str, token: str) -> ApiClient:
        return ApiClient(url, token) if url and token else ApiClient.from_environment()

    return make(url, token)


def run_master_page(render: Callable[[Any], None]) -> None:
    """Render a master page; an unreachable or refusing server is one clear line, not a traceback."""
    import httpx
    import streamlit as st

    if not signed_in():  # only reachable through main(), which asks first; refuse anyway
        st.stop()
    try:
        render(api())
    except ApiError as exc:
        st.error(f"The API refused the request: {exc.detail} (HTTP {exc.status})")
    except httpx.HTTPError as exc:
        st.error(f"The API is unreachable ({type(exc).__name__}: {exc}). Is `refactorbot serve` still running?")


def installed_pages(env: Mapping[str, str] | None = None) -> tuple[list[DashboardPage], list[str]]:
    """Return the pages plugins register (plus those named in ``RB_DASHBOARD_PLUGINS``) and load problems.

    ``RB_DASHBOARD_PLUGINS`` names plugins as entry points do: a module (``pkg.plugin``) or an
    object in one (``pkg.plugin:PLUGIN``), comma-separated.
    """
    import pkgutil

    from refactorbot import PluginHost

    env = os.environ if env is None else env
    host = PluginHost(env)
    host.load_entrypoints()
    problems = []
    for name in filter(None, (n.strip() for n in env.get(PLUGINS_ENV, "").split(","))):
        try:
            plugin = pkgutil.resolve_name(name)
        except (ImportError, AttributeError, ValueError) as exc:
            problems.append(f"{name}: cannot import: {exc}")
            continue
        host.register(plugin, name=name)
    problems += [f"{r.name}: {r.error}" for r in host.failed]
    pages = [reg.obj for reg in host.registry.pages.values() if isinstance(reg.obj, DashboardPage)]
    pages.sort(key=lambda p: (p.group, KIND_ORDER.get(p.kind, 9), p.title))
    return pages, problems


def url_path(page: DashboardPage, taken: set[str]) -> str:
    """Return a unique, URL-safe path for ``page`` (namespaced by its group)."""
    path = re.sub(r"[^A-Za-z0-9_-]+", "-", page.path).strip("-") or f"{page.group}-{page.kind}"
    if path in taken:
        path = f"{page.group}-{path}"
    while path in taken:
        path += "-1"
    taken.add(path)
    return path


def _contributed_runner(page: DashboardPage) -> Callable[[], None]:
    def run() -> None:
        import httpx
        import streamlit as st

        if not signed_in():
            st.stop()
        try:
            page.render(api())
        except ApiError as exc:
            st.error(f"The API refused the request: {exc.detail} (HTTP {exc.status})")
        except httpx.HTTPError as exc:
            st.error(f"The API is unreachable: {exc}")
        except Exception as exc:  # a plugin's page failed: say which, keep the dashboard up
            st.error(f"The page '{page.title}' of {page.group} failed: {type(exc).__name__}: {exc}")
            with st.expander("Traceback"):
                st.code(traceback.format_exc())

    run.__name__ = f"page_{re.sub(r'[^A-Za-z0-9_]', '_', page.key)}"
    return run


def main() -> None:
    """Build the navigation from what is installed and run the selected page."""
    import streamlit as st

    st.set_page_config(page_title="refactorbot", page_icon=":material/hub:", layout="wide")
    if not require_login():  # nothing else is drawn, and no API call made, before the login
        return
    try:
        api()
    except ServerNotFound as exc:
        st.error(str(exc))
        st.stop()
    pages, problems = _cached_pages()
    taken = {path for _, _, path, _ in MASTER_PAGES}
    contributed = [(page, url_path(page, taken)) for page in pages]
    start = os.environ.get(START_PAGE_ENV) or "overview"
    if start not in taken:
        start = "overview"
    sections: dict[str, list[Any]] = {
        "Master": [
            st.Page(str(PAGES_DIR / file), title=title, url_path=path, icon=icon, default=path == start)
            for file, title, path, icon in MASTER_PAGES
        ]
    }
    for page, path in contributed:
        entry = st.Page(
            _contributed_runner(page), title=page.title, url_path=path, icon=page.icon, default=path == start
        )
        sections.setdefault(page.group, []).append(entry)
    with st.sidebar:
        for problem in problems:
            st.warning(f"Plugin problem: {problem}", icon=":material/extension_off:")
    st.navigation(sections).run()


def _cached_pages() -> tuple[list[DashboardPage], list[str]]:
    import streamlit as st

    @st.cache_resource(show_spinner=False)
    def load(selection: tuple[str | None, ...]) -> tuple[list[DashboardPage], list[str]]:
        return installed_pages()

    # Loaded once per process and plugin selection: entry points do not change while it runs.
    keys = (PLUGINS_ENV, "RB_LOAD_PLUGINS", "RB_DISABLE_PLUGINS")
    return load(tuple(os.environ.get(k) for k in keys))
