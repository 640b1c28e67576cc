"""The offline demonstration: a small repository with failing tests and a scripted model that plays
planner, coders and reviewer over the real protocol (through the testing kit's loopback server).

Tasks 1 and 2 both register their operation on the same line of ``calc.py``, so whichever merges
second conflicts; re-queued on top of the integration branch, its coder reads the file again and
keeps both operations.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from refactorbot_slice_refactory.gitops import git_environment

CALC = '''"""A tiny calculator."""

OPERATIONS = []


def add(a, b):
    raise NotImplementedError


def mul(a, b):
    raise NotImplementedError
'''

TEXT = '''"""Text helpers."""


def shout(text):
    raise NotImplementedError
'''

TESTS = {
    "tests/__init__.py": "",
    "tests/test_add.py": (
        "import unittest\n\nimport calc\n\n\nclass AddTest(unittest.TestCase):\n"
        "    def test_add(self):\n        self.assertEqual(calc.add(2, 3), 5)\n        self.assertIn('add', calc.OPERATIONS)\n"
    ),
    "tests/test_mul.py": (
        "import unittest\n\nimport calc\n\n\nclass MulTest(unittest.TestCase):\n"
        "    def test_mul(self):\n        self.assertEqual(calc.mul(2, 3), 6)\n        self.assertIn('mul', calc.OPERATIONS)\n"
    ),
    "tests/test_text.py": (
        "import unittest\n\nimport text\n\n\nclass ShoutTest(unittest.TestCase):\n"
        "    def test_shout(self):\n        self.assertEqual(text.shout('hi'), 'HI!')\n"
    ),
}

#: What each task changes: (keyword in the task title, file, function, new body, operation registered).
CHANGES = {
    "add": ("calc.py", "add", "return a + b", "add"),
    "mul": ("calc.py", "mul", "return a * b", "mul"),
    "shout": ("text.py", "shout", "return text.upper() + '!'", None),
}


def test_command() -> list[str]:
    """Return the demo repository's test command."""
    return [sys.executable, "-m", "unittest", "discover", "-s", "tests", "-t", "."]


def build_repo(path: Path) -> Path:
    """Create the demo repository at ``path`` on branch ``main``: three failing tests, one commit."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "calc.py").write_text(CALC)
    (path / "text.py").write_text(TEXT)
    for name, content in TESTS.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(content)
    env = git_environment()
    for argv in (
        ["git", "init", "-q", "-b", "main"],
        ["git", "add", "-A"],
        ["git", "commit", "-q", "-m", "calculator"],
    ):
        subprocess.run(argv, cwd=path, env=env, check=True, capture_output=True)  # noqa: S603  fixed git argv, no shell
    return path


def plan_json() -> str:
    """Return the scripted planner's answer: three tasks, two of them sharing ``calc.py``."""
    python = sys.executable
    tasks = [
        {
            "key": "add",
            "title": "Implement add",
            "detail": "calc.add returns the sum and 'add' is listed in calc.OPERATIONS.",
            "scope": ["calc.py"],
            "acceptance": [python, "-m", "unittest", "tests.test_add"],
        },
        {
            "key": "mul",
            "title": "Implement mul",
            "detail": "calc.mul returns the product and 'mul' is listed in calc.OPERATIONS.",
            "scope": ["calc.py"],
            "acceptance": [python, "-m", "unittest", "tests.test_mul"],
        },
        {
            "key": "shout",
            "title": "Implement shout",
            "detail": "text.shout returns the text in capitals followed by '!'.",
            "scope": ["text.py"],
            "acceptance": [python, "-m", "unittest", "tests.test_text"],
            "depends_on": [],
        },
    ]
    design = "# Calculator and text helpers\n\nImplement the three missing functions; each has its own test."
    return json.dumps({"design": design, "tasks": tasks})


def apply_change(source: str, function: str, body: str, registered: str | None) -> str:
    """Return ``source`` with ``function``'s body replaced and ``registered`` added to ``OPERATIONS``."""
    source = re.sub(
        rf"(def {function}\([^)]*\):\n)    raise NotImplementedError\n", rf"\g<1>    {body}\n", source, count=1
    )
    if registered:
        match = re.search(r"^OPERATIONS = (\[.*\])$", source, re.MULTILINE)
        if match:
            names = json.loads(match.group(1).replace("'", '"'))
            if registered not in names:
                names.append(registered)
            source = source.replace(match.group(0), "OPERATIONS = " + json.dumps(names))
    return source


def _task_change(text: str) -> tuple[str, str, str, str | None] | None:
    title = re.search(r"working on task \d+ of plan \d+: (.+)", text)
    if not title:
        return None
    for keyword, change in CHANGES.items():
        if keyword in title.group(1).lower():
            return change
    return None


def responder(body: dict[str, Any]) -> Any:
    """Answer as the planner, a coder or the reviewer would, from what the request holds."""
    from refactorbot.testing import Reply

    messages = body.get("messages") or []
    first_user = next((str(m.get("content") or "") for m in messages if m.get("role") == "user"), "")
    system = str(messages[0].get("content") or "") if messages and messages[0].get("role") == "system" else ""
    if "You are the planner" in first_user:
        return Reply.text(plan_json())
    if "You review one task's diff" in system:
        title = re.search(r"Task: (.+)", first_user)
        return Reply.text(f"The diff does what '{title.group(1) if title else 'the task'}' asks, in its scope.")
    change = _task_change(first_user)
    if change is None:
        return Reply.text("This scripted model only plays the refactory demo.")
    path, function, code, registered = change
    results = [m for m in messages if m.get("role") == "tool"]
    if not results:
        return Reply.tool_call("files_read", {"path": path})
    if len(results) == 1:
        source = str(results[0].get("content") or "")
        return Reply.tool_call(
            "files_write", {"path": path, "content": apply_change(source, function, code, registered)}
        )
    return Reply.text(f"Implemented {function} in {path}.")
