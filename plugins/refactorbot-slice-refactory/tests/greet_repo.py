"""A repository whose second task merges cleanly but turns the first task's acceptance red, and the
scripted model that plans it, codes it (fixing both intents once re-queued, or never) and reviews it.

- ``Implement greet`` (lib.py): ``greet()`` returns ``tone() + " world"``; acceptance tests.test_greet.
- ``Shout the tone`` (tone.py, after greet): ``tone()`` returns ``"HELLO"``; acceptance tests.test_tone.
  Merged on top of greet, greet's acceptance fails ("HELLO world"): a red merge. Re-queued, a
  fixing coder also makes ``greet`` lower-case the tone; a stubborn one changes tone.py again only.
- ``Add a README`` (README.md): independent.
- ``Document the tone`` (NOTES.md, after the tone task).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from refactorbot.testing import Reply
from refactorbot_slice_refactory.gitops import git_environment

PY = sys.executable
FILES = {
    "lib.py": "from tone import tone\n\n\ndef greet():\n    raise NotImplementedError\n",
    "tone.py": 'def tone():\n    return "hello"\n',
    "tests/__init__.py": "",
    "tests/test_greet.py": (
        "import unittest\n\nimport lib\n\n\nclass GreetTest(unittest.TestCase):\n"
        "    def test_greet(self):\n        self.assertEqual(lib.greet(), 'hello world')\n"
    ),
    "tests/test_tone.py": (
        "import unittest\n\nimport tone\n\n\nclass ToneTest(unittest.TestCase):\n"
        "    def test_tone(self):\n        self.assertEqual(tone.tone(), 'HELLO')\n"
    ),
}
GREET = 'from tone import tone\n\n\ndef greet():\n    return tone() + " world"\n'
GREET_FIXED = 'from tone import tone\n\n\ndef greet():\n    return tone().lower() + " world"\n'
TONE = 'def tone():\n    return "HELLO"\n'


def test_command() -> list[str]:
    return [PY, "-m", "unittest", "discover", "-s", "tests", "-t", "."]


def build(path: Path) -> Path:
    path.mkdir(parents=True)
    for name, content in FILES.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(content)
    env = git_environment()
    for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "greeter"]):
        subprocess.run(argv, cwd=path, env=env, check=True, capture_output=True)
    return path


def exists(name: str) -> list[str]:
    return [PY, "-c", f"import pathlib, sys; sys.exit(0 if pathlib.Path({name!r}).is_file() else 1)"]


PLAN = {
    "design": "# Greeter\n\nGreet in lower case, shout the tone, document it.",
    "tasks": [
        {
            "key": "greet",
            "title": "Implement greet",
            "detail": "greet() returns the tone followed by ' world'.",
            "scope": ["lib.py"],
            "acceptance": [PY, "-m", "unittest", "tests.test_greet"],
        },
        {
            "key": "tone",
            "title": "Shout the tone",
            "detail": "tone() returns 'HELLO'; greet() keeps saying 'hello world'.",
            "scope": ["tone.py"],
            "acceptance": [PY, "-m", "unittest", "tests.test_tone"],
            "depends_on": ["greet"],
        },
        {
            "key": "readme",
            "title": "Add a README",
            "detail": "README.md says what the greeter does.",
            "scope": ["README.md"],
            "acceptance": exists("README.md"),
        },
        {
            "key": "notes",
            "title": "Document the tone",
            "detail": "NOTES.md explains the shouted tone.",
            "scope": ["NOTES.md"],
            "acceptance": exists("NOTES.md"),
            "depends_on": ["tone"],
        },
    ],
}


def responder(fix_on_requeue: bool) -> Any:
    """Return the scripted model: planner, reviewer and the coders' tool calls."""

    def respond(body: dict[str, Any]) -> Any:
        messages = body.get("messages") or []
        first = next((str(m.get("content") or "") for m in messages if m.get("role") == "user"), "")
        system = str(messages[0].get("content") or "") if messages and messages[0].get("role") == "system" else ""
        if "You are the planner" in first:
            return Reply.text(json.dumps(PLAN))
        if "You review one task's diff" in system:
            return Reply.text("The diff does what the task asks.")
        title = re.search(r"working on task \d+ of plan \d+: (.+)", first)
        writes: list[tuple[str, str]] = []
        if title is None:
            return Reply.text("This scripted model only plays the greeter.")
        name = title.group(1)
        if name == "Implement greet":
            writes = [("lib.py", GREET)]
        elif name == "Shout the tone":
            writes = [("tone.py", TONE)]
            if fix_on_requeue and "This task was re-queued" in first:
                writes.append(("lib.py", GREET_FIXED))
        elif name == "Add a README":
            writes = [("README.md", "# Greeter\n\nSays hello.\n")]
        elif name == "Document the tone":
            writes = [("NOTES.md", "The tone is shouted; greet lower-cases it.\n")]
        done = sum(1 for m in messages if m.get("role") == "tool")
        if done < len(writes):
            path, content = writes[done]
            return Reply.tool_call("files_write", {"path": path, "content": content})
        return Reply.text(f"Done: {name}.")

    return respond
