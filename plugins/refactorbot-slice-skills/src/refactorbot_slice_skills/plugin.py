"""Entry point of refactorbot-slice-skills: the slice, its tools, ``refactorbot skills`` and the pages."""

from __future__ import annotations

from typing import Any

from refactorbot import hookimpl

#: The plugin API versions this plugin supports.
REFACTORBOT_API = 1


@hookimpl
def register_slices(register: Any) -> None:
    """Register the skills slice."""
    from refactorbot_slice_skills.slice import SkillsSlice

    register(SkillsSlice)


@hookimpl
def register_tools(register: Any) -> None:
    """Register skill_activate, skill_read, skill_run and skill_propose."""
    from refactorbot_slice_skills.tools import SkillActivate, SkillPropose, SkillRead, SkillRun

    for tool in (SkillActivate, SkillRead, SkillRun, SkillPropose):
        register(tool)


@hookimpl
def register_commands(cli: Any) -> None:
    """Add ``refactorbot skills``."""
    from refactorbot_slice_skills.cli import skills_group

    cli.add_command(skills_group)


@hookimpl
def register_dashboard_pages(register: Any) -> None:
    """Register the skills list, detail and upload pages."""
    from refactorbot import DashboardPage

    from refactorbot_slice_skills import pages

    register(DashboardPage(group="skills", title="Skills", render=pages.render_list, url_path="skills"))
    register(DashboardPage(group="skills", title="Skill detail", render=pages.render_detail, url_path="skills-detail"))
    register(
        DashboardPage(
            group="skills", title="Add a skill", render=pages.render_upload, url_path="skills-upload", kind="config"
        )
    )
