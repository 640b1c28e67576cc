"""``refactorbot refactory demo``: the whole workflow offline, on a small repository, with a scripted model.

Everything is real — the refactory, agent and tools slices, the files tool, SQLite files, git
worktrees, branches, commits and merges, the tests run as subprocesses — except the model: the
testing kit's loopback server plays planner, coders and reviewer (``script.responder``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import click
from refactorbot.cli import Env, fail

from refactorbot_slice_refactory import script

#: (kind, name, distribution) every part the demo needs.
NEEDED = (
    ("slices", "refactory", "refactorbot-slice-refactory"),
    ("slices", "agent", "refactorbot-slice-agent"),
    ("slices", "tools", "refactorbot-slice-tools"),
    ("tools", "files_read", "refactorbot-tools-files"),
    ("tools", "files_write", "refactorbot-tools-files"),
)


def missing_parts(plugins: Any) -> list[str]:
    """Return the distributions the demo needs that are not installed (or failed to load)."""
    missing: list[str] = []
    for kind, name, dist in NEEDED:
        if name not in plugins.registry.of(kind) and dist not in missing:
            missing.append(dist)
    return missing


def demo_settings(home: Path, base_url: str) -> Any:
    """Return the settings of a demo host: the loopback model, long agent runs allowed."""
    from refactorbot import load_settings

    settings = load_settings(home, env={})
    settings.core.health_interval = 3600
    settings.llm.model, settings.llm.gateway = "loopback/scripted-model", "loopback"
    settings.gateways["loopback"] = {"base_url": base_url, "timeout": 30.0}
    settings.slices["agent"] = {"resources": {"timeout": 600}}
    settings.slices["refactory"] = {"resources": {"timeout": 600}}
    return settings


async def play(
    home: Path, repo: Path, base_url: str, plugins: Any, agents: int, *, echo: bool = True
) -> dict[str, Any]:
    """Run request → plan → orchestrate on ``repo`` in a host of this process; return the orchestration."""
    import asyncio

    from refactorbot import MasterCore

    def say(text: str, **style: Any) -> None:
        if echo:
            click.secho(text, **style)

    async with MasterCore(demo_settings(home, base_url), plugins, env={}, serving=False) as host:
        request = await host.call(
            "refactory.create_request",
            title="Make the failing tests pass",
            description="Implement calc.add, calc.mul and text.shout.",
            repo=str(repo),
            test_command=script.test_command(),
        )
        if not request.success:
            raise click.ClickException(request.error_message or "could not create the request")
        say(f"request {request.data['id']}: {request.data['title']}", bold=True)
        plan = await host.call("refactory.create_plan", request_id=request.data["id"])
        if not plan.success:
            raise click.ClickException(plan.error_message or "could not plan")
        say(f"plan {plan.data['id']} ({plan.data['planner']} planner) at {plan.data['base_commit'][:12]}:")
        for task in plan.data["tasks"]:
            say(f"  task {task['id']}: {task['title']}  scope {', '.join(task['scope'])}")
        for warning in plan.data["warnings"]:
            say(f"  warning: {warning}", fg="yellow")
        started = await host.call("refactory.orchestrate", plan_id=plan.data["id"], agents=agents)
        if not started.success:
            raise click.ClickException(started.error_message or "could not orchestrate")
        say(f"orchestration {started.data['id']}: {agents} coder(s), merge queue into {started.data['integration']}")
        await asyncio.shield(getattr(host.instance("refactory"), "runners", {})[started.data["id"]])
        final = await host.call("refactory.get_orchestration", id=started.data["id"])
        for attempt in final.data["attempts"]:
            colour = "green" if attempt["outcome"] == "merged" else "yellow"
            detail = attempt["detail"].splitlines()[0] if attempt["detail"] else ""
            say(
                f"  merge task {attempt['task_id']} (try {attempt['attempt']}): {attempt['outcome']} — {detail}",
                fg=colour,
            )
        return dict(final.data)


async def run_demo(env: Env, agents: int) -> None:
    """Build the demo repository in a temporary folder and run the workflow on it; print the report.

    The folder is kept: the repository, with its task and integration branches, is the result.
    """
    try:
        from refactorbot.testing import LoopbackGateway, ModelServer, plugin_of
    except ImportError as exc:
        fail(env, f"refactorbot refactory demo needs the testing kit: pip install 'refactorbot-core[testing]' ({exc})")
    from refactorbot_slice_refactory.cli import print_report

    plugins = env.plugins()
    missing = missing_parts(plugins)
    if missing:
        fail(env, f"refactorbot refactory demo needs {', '.join(missing)}: pip install {' '.join(missing)}")
    if "loopback" not in plugins.registry.of("gateways"):
        plugins.register(plugin_of(gateways=[LoopbackGateway], name="refactorbot-testing-loopback"))
    folder = Path(tempfile.mkdtemp(prefix="refactorbot-refactory-demo-"))
    repo = script.build_repo(folder / "repo")
    click.secho("refactorbot refactory demo — real git, real slices, an offline scripted model", bold=True)
    click.echo(f"  repository: {repo} (3 failing tests)")
    started = time.perf_counter()
    with ModelServer(responder=script.responder) as server:
        orch = await play(folder / "home", repo, server.base_url, plugins, agents)
    click.echo()
    print_report(orch)
    click.echo(f"  home (the refactory database): {folder / 'home'}")
    click.echo(f"\nDone in {time.perf_counter() - started:.1f}s. Look at the result:")
    click.echo(f"  git -C {repo} log --graph --oneline --all")
    click.echo(f"  cd {repo} && git checkout {orch['integration']} && python -m unittest discover -s tests -t .")
