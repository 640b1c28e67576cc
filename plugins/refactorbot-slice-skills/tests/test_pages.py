"""The dashboard pages under Streamlit's AppTest, against a real host and control API over HTTP."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import QUIET, SKILLS, copy_peers
from streamlit.testing.v1 import AppTest


class ApiError(Exception):
    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.detail = detail


class Client:
    """The dashboard's client shape: ``get``/``post`` returning JSON, raising with the API's detail."""

    def __init__(self, url: str, token: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, trust_env=False)

    def _answer(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise ApiError(response.status_code, response.json().get("detail", response.text))
        return response.json()

    def get(self, path: str) -> Any:
        return self._answer(self.http.get(path))

    def post(self, path: str, json: Any = None) -> Any:
        return self._answer(self.http.post(path, json=json))


def _serve(home: Path) -> Iterator[tuple[Any, Client]]:
    from refactorbot_api.testing import running_server

    with running_server(home, [SKILLS], config=QUIET, env={"PATH": "/usr/bin:/bin"}) as server:
        yield server, Client(server.url, server.token)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Any, Client]]:
    copy_peers(tmp_path / "home" / "skills")
    yield from _serve(tmp_path / "home")


def _page() -> None:
    import streamlit as st
    from refactorbot_slice_skills import pages

    getattr(pages, st.session_state["page"])(st.session_state["api"])


def page(name: str, client: Client) -> AppTest:
    at = AppTest.from_function(_page, default_timeout=30)
    at.session_state["page"] = name
    at.session_state["api"] = client
    return at.run()


def texts(at: AppTest) -> str:
    parts = [e.value for e in at.markdown] + [e.value for e in at.caption] + [str(e.value) for e in at.error]
    parts += [str(e.value) for e in at.info] + [str(e.value) for e in at.success] + [str(e.value) for e in at.warning]
    return "\n".join(parts)


def zipped(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def test_the_list_shows_availability_with_reasons_and_usage(served: tuple[Any, Client]) -> None:
    server, client = served
    host = server.host
    assert server.run(host.call("skills.activate", name="pdf", execution_id="run-1")).success
    server.run(host.call("skills.outcome", execution_id="run-1", names=["pdf"], success=True))
    server.run(host.call("skills.outcome", execution_id="run-2", names=["pdf"], success=False, error="boom"))
    at = page("render_list", client)
    assert not at.exception, at.exception
    assert at.title[0].value == "Skills"
    table = at.dataframe[0].value
    by_name = {row["skill"]: row for row in table.to_dict("records")}
    assert set(by_name) == {"pdf", "github", "weather", "code-review", "notion", "memory-keeper"}
    assert by_name["github"]["status"] == "unavailable"
    assert by_name["github"]["why not available"] == "needs program(s) not found on PATH: gh"
    assert by_name["notion"]["why not available"] == "needs environment variable(s) set: NOTION_API_KEY"
    assert by_name["pdf"]["why not available"] == ""
    assert (by_name["pdf"]["activations"], by_name["pdf"]["turns ok"], by_name["pdf"]["turns failed"]) == (1, 1, 1)
    assert by_name["pdf"]["last used (UTC)"] != "-" and by_name["weather"]["last used (UTC)"] == "-"
    assert list(table["status"])[:4] == ["available"] * 4  # available first
    assert at.caption[0].value == "4 available, 2 unavailable"


def test_the_list_says_how_to_add_a_skill_when_there_is_none(tmp_path: Path) -> None:
    for _, client in _serve(tmp_path / "home"):
        at = page("render_list", client)
        assert not at.exception, at.exception
        assert "No skills yet" in at.info[0].value
        at = page("render_detail", client)
        assert [i.value for i in at.info] == ["No skills yet."]


def test_the_detail_page_shows_a_skill_and_disables_and_enables_it(served: tuple[Any, Client]) -> None:
    server, client = served
    at = page("render_detail", client)
    assert not at.exception, at.exception
    at.selectbox(key="skills.detail.name").set_value("github").run()
    assert at.subheader[0].value == "github — unavailable"
    assert [w.value for w in at.warning] == ["needs program(s) not found on PATH: gh"]
    shown = texts(at)
    assert "requires bins: gh" in shown and "install steps are not run" in shown
    assert at.code[0].value.startswith("# GitHub Skill")

    at.selectbox(key="skills.detail.name").set_value("pdf").run()
    assert at.subheader[0].value == "pdf — available"
    assert "# PDF Processing Guide" in at.code[0].value
    assert list(at.dataframe[0].value["version"]) == [1]
    at = at.button(key="skills.detail.toggle").click().run()
    assert not at.exception, at.exception
    assert at.subheader[0].value == "pdf — disabled"
    assert "refactorbot skills enable pdf" in at.warning[0].value
    assert "pdf" not in server.run(server.host.call("skills.prompt")).data["listed"]
    assert at.button(key="skills.detail.toggle").label == "Enable"
    at = at.button(key="skills.detail.toggle").click().run()
    assert at.subheader[0].value == "pdf — available"


def test_upload_checks_installs_and_shows_refusals_inline(served: tuple[Any, Client], tmp_path: Path) -> None:
    server, client = served
    skills = tmp_path / "home" / "skills"
    good = zipped(
        {
            "notes/SKILL.md": "---\nname: notes\ndescription: Take notes.\nmetadata:\n  nanobot:\n    emoji: x\n---\nBody\n",
            "notes/references/style.md": "# Style\n",
        }
    )
    at = page("render_upload", client)
    assert not at.exception, at.exception
    assert at.title[0].value == "Add a skill"
    assert not at.button  # nothing to send before a file is chosen
    at.file_uploader(key="skills.upload.file").set_value(("notes.zip", good, "application/zip"))
    at.checkbox(key="skills.upload.dry").check()
    at = at.run()
    assert at.button(key="skills.upload.go").label == "Check"
    at = at.button(key="skills.upload.go").click().run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == ["notes: valid"]
    assert any("metadata.nanobot" in w.value for w in at.warning)
    assert not (skills / "notes").exists()  # only checked

    at.checkbox(key="skills.upload.dry").uncheck()
    at = at.run()
    at = at.button(key="skills.upload.go").click().run()
    assert [s.value for s in at.success] == ["notes: installed"]
    assert (skills / "notes" / "references" / "style.md").read_text() == "# Style\n"
    listed = server.run(server.host.call("skills.list")).data["skills"]
    assert any(s["name"] == "notes" and s["status"] == "available" for s in listed)

    at = at.button(key="skills.upload.go").click().run()  # the same again, without replace
    assert len(at.error) == 1 and "already installed" in at.error[0].value
    at.checkbox(key="skills.upload.replace").check()
    at = at.run()
    at = at.button(key="skills.upload.go").click().run()
    assert [s.value for s in at.success] == ["notes: installed"]

    slip = zipped({"slip/SKILL.md": "---\nname: slip\ndescription: s\n---\n", "slip/../../escaped.txt": "x"})
    at.file_uploader(key="skills.upload.file").set_value(("slip.zip", slip, "application/zip"))
    at = at.run()
    at = at.button(key="skills.upload.go").click().run()
    assert len(at.error) == 1
    assert at.error[0].value.startswith("slip.zip: archive member") and "climbs out" in at.error[0].value
    assert "\n" not in at.error[0].value and not at.success
    assert not list(tmp_path.rglob("escaped.txt")) and not (skills / "slip").exists()

    bad_yaml = zipped({"tagged/SKILL.md": "---\nname: !!python/object/apply:os.system [id]\ndescription: d\n---\n"})
    at.file_uploader(key="skills.upload.file").set_value(("tagged.zip", bad_yaml, "application/zip"))
    at = at.run()
    at = at.button(key="skills.upload.go").click().run()
    assert len(at.error) == 1 and at.error[0].value.startswith("tagged.zip: ")
