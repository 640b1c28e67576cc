from __future__ import annotations

from conftest import QUIET, SKILLS
from refactorbot.testing import SliceContract
from refactorbot_slice_skills.slice import SkillsSlice


class TestSkillsContract(SliceContract):
    slice_class = SkillsSlice
    plugin = SKILLS
    config = QUIET
    valid_payloads = {
        "list": {},
        "prompt": {"message": "hello $nothing-here"},
        "reload": {},
        "proposals": {"status": "pending"},
        "validate": {"path": "/nonexistent/skill"},
    }
    invalid_payloads = {
        "show": [{"name": "Bad_Name"}, {"name": "-x"}, {"name": "a" * 65}, {}],
        "read": [{"name": "pdf", "path": ""}],
        "prompt": [{"budget_chars": 10}],
        "propose": [{"name": "x", "skill_md": ""}],
        "upload": [{"filename": "../x.zip", "content_base64": "AAAA"}],
        "outcome": [{"execution_id": "e", "names": [], "success": True}],
    }
