"""The deployment examples (``examples/deployment``): what they name exists, and their command lines run.

No container engine runs on the test machines, so the images and clusters themselves are not
started. What is checked instead: the Dockerfile's stages, user, ``ENV``, ``EXPOSE`` and ``CMD``;
that every command, module, port and environment variable the Compose file and the Kubernetes
manifests name exists in the installed project; that keys only come from secrets; and
``refactorbot serve`` and two ``refactorbot worker`` processes run with exactly the command lines
(argv) of ``compose.yaml`` (the Kubernetes ones are asserted equal) and its environment, the
shared ``refactorbot.toml`` included, against a real password-protected ``redis-server``. Only
what a container would give differently is substituted: the home and workspace folders, the
API's port (8787 may be taken on a shared machine), and the Redis host and port.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from refactorbot_bus_redis.testing import RedisServer, RedisServerMissing
from serving import clean_env, wait_until

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "examples" / "deployment"
CONFIG = DEPLOY / "refactorbot.toml"
BIN = Path(sys.executable).parent
SECRET_NAME = re.compile(r"(KEY|PASSWORD|TOKEN|SECRET)")
#: The dashboard's script inside the image (the venv of python:3.11-slim's interpreter).
IMAGE_ENTRY = "/opt/venv/lib/python3.11/site-packages/refactorbot_dashboard/streamlit_entry.py"


# --- reading the files -------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


def manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def kind(name: str) -> list[dict[str, Any]]:
    return [doc for doc in manifests() if doc["kind"] == name]


def containers() -> dict[str, dict[str, Any]]:
    """Every container of the Kubernetes Deployments, by name."""
    return {c["name"]: c for d in kind("Deployment") for c in d["spec"]["template"]["spec"]["containers"]}


def dockerfile() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions per stage: (INSTRUCTION, arguments), continuation lines joined."""
    stages: list[list[tuple[str, str]]] = []
    logical = ""
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if not logical and (not line.strip() or line.lstrip().startswith("#")):
            continue
        logical += line.rstrip("\\").strip() + " " if line.endswith("\\") else line.strip()
        if line.endswith("\\"):
            continue
        instruction, _, args = logical.partition(" ")
        logical = ""
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), args.strip()))
    return stages


def dockerfile_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in stage:
        if instruction == "ENV":
            for pair in args.split():
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def env_names(environment: Any) -> list[str]:
    return list(environment) if isinstance(environment, dict) else [item.split("=", 1)[0] for item in environment]


def secrets_example() -> dict[str, str]:
    pairs = {}
    for line in (DEPLOY / "secrets.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def api_port() -> int:
    return int(tomllib.loads(CONFIG.read_text())["plugins"]["api"]["port"])


# --- what a name refers to ----------------------------------------------------------------------------


def known_variable(name: str) -> str | None:
    """Return what reads the environment variable ``name`` in the installed project, or None."""
    import refactorbot
    import refactorbot_dashboard.client as dashboard_client
    from refactorbot.cli.main import main as cli_main
    from refactorbot_api.config import ApiConfig
    from refactorbot_bus_redis.config import RedisConfig

    if name == "RB_HOME" and refactorbot.default_home({"RB_HOME": "/x/y"}) == Path("/x/y"):
        return "refactorbot.default_home"
    if any(getattr(p, "envvar", None) == name for p in cli_main.params):
        return "the refactorbot command's option"
    if name in (dashboard_client.URL_ENV, dashboard_client.TOKEN_ENV):
        return "refactorbot_dashboard.client"
    if name.startswith("RB_REDIS_") and name[len("RB_REDIS_") :].lower() in RedisConfig.model_fields:
        return "[plugins.redis]"
    if name.startswith("RB_API_") and name[len("RB_API_") :].lower() in ApiConfig.model_fields:
        return "[plugins.api]"
    for model in ("openai/gpt-4o-mini", "anthropic/claude-3-5-haiku", "openrouter/openai/gpt-4o-mini"):
        if name in refactorbot.provider_key_envs(model):
            return f"the key of {model}"
    return None


# --- static checks ------------------------------------------------------------------------------------


def test_the_dockerfile_builds_in_a_builder_stage_and_runs_as_a_non_root_user_with_its_home_on_a_volume() -> None:
    builder, final = dockerfile()
    assert builder[0] == ("FROM", "python:3.11-slim AS builder")
    assert final[0] == ("FROM", "python:3.11-slim")
    # what the builder copies exists in the checkout, and the extra it installs is the root pyproject's
    for instruction, args in builder:
        if instruction == "COPY":
            *sources, _ = args.split()
            for source in sources:
                assert (ROOT / source).exists(), source
    installs = [args for instruction, args in builder if instruction == "RUN" and "pip install" in args]
    assert installs == ['pip install ".[dashboard]"']
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "dashboard" in extras
    # the final stage takes the virtual environment, not the sources
    assert ("COPY", "--from=builder /opt/venv /opt/venv") in final
    assert not [args for instruction, args in final if instruction == "COPY" and "--from=builder" not in args]
    user = [args for instruction, args in final if instruction == "USER"]
    assert user == ["10001:10001"]
    env = dockerfile_env(final)
    assert env["PATH"].startswith("/opt/venv/bin:")
    for name in env:
        assert name in ("PATH", "PYTHONUNBUFFERED") or known_variable(name), name
    volumes = [json.loads(args) for instruction, args in final if instruction == "VOLUME"]
    assert volumes == [["/data"]] and env["RB_HOME"].startswith("/data/")
    exposed = [int(port) for instruction, args in final if instruction == "EXPOSE" for port in args.split()]
    assert exposed == [api_port(), 8501]
    assert [json.loads(args) for instruction, args in final if instruction == "CMD"] == [["refactorbot", "serve"]]
    assert not [i for i, _ in final if i == "ENTRYPOINT"]
    assert "examples/deployment/secrets.env" in (DEPLOY / "Dockerfile.dockerignore").read_text().split()


def service_commands() -> dict[str, list[str]]:
    return {name: service["command"] for name, service in compose()["services"].items() if name != "redis"}


def test_every_command_and_module_named_exists_and_kubernetes_runs_the_compose_command_lines() -> None:
    import importlib.metadata
    import importlib.util

    from refactorbot_dashboard import launcher

    commands = service_commands()
    assert commands["orchestrator"] == ["refactorbot", "serve"]
    assert (
        commands["worker-1"]
        == commands["worker-2"]
        == ["refactorbot", "worker", "--slices", "tools", "--concurrency", "16"]
    )
    assert [
        e.value
        for e in __import__("importlib.metadata").metadata.entry_points(group="console_scripts", name="refactorbot")
    ] == ["refactorbot._console:main"]
    for name in ("orchestrator", "worker-1"):
        command = commands[name]
        helped = subprocess.run(
            [str(BIN / "refactorbot"), command[1], "--help"], capture_output=True, text=True, env=clean_env()
        )
        assert helped.returncode == 0, helped.stderr
        for option in (arg for arg in command if arg.startswith("--")):
            assert option in helped.stdout, (name, option)
    # the dashboard runs the command line `refactorbot dashboard` builds, on every address of its network
    dashboard = commands["dashboard"]
    assert dashboard[:4] == ["python", "-m", "streamlit", "run"]
    assert importlib.util.find_spec("streamlit") is not None
    assert dashboard[4] == IMAGE_ENTRY
    assert Path(*launcher.ENTRY.parts[-2:]) == Path(*Path(IMAGE_ENTRY).parts[-2:]) and launcher.ENTRY.exists()
    expected = launcher.streamlit_command(8501, "0.0.0.0")
    assert expected[:5] == [sys.executable, "-m", "streamlit", "run", str(launcher.ENTRY)]
    assert dashboard[5:] == expected[5:]
    # Kubernetes runs the same command lines
    k8s = containers()
    assert k8s["orchestrator"]["command"] == commands["orchestrator"]
    assert k8s["worker"]["command"] == commands["worker-1"]
    assert k8s["dashboard"]["command"] == dashboard


def test_ports_agree_across_the_image_compose_and_kubernetes_and_are_published_on_loopback_only() -> None:
    services = compose()["services"]
    api, ui = api_port(), 8501
    published = services["orchestrator"]["ports"]
    assert published == [f"127.0.0.1:{api}:{api}", f"127.0.0.1:{ui}:{ui}"]
    assert services["dashboard"]["network_mode"] == "service:orchestrator"
    assert f"http://127.0.0.1:{api}/health" in services["orchestrator"]["healthcheck"]["test"][-1]
    assert f"http://127.0.0.1:{ui}/_stcore/health" in services["dashboard"]["healthcheck"]["test"][-1]
    for name in ("worker-1", "worker-2"):
        assert "ports" not in services[name]
        assert services[name]["environment"]["RB_API_ENABLED"] == "false"  # one API: the orchestrator's
    assert {"name": "RB_API_ENABLED", "value": "false"} in containers()["worker"]["env"]
    k8s = containers()
    assert k8s["orchestrator"]["ports"] == [{"name": "api", "containerPort": api}]
    assert k8s["dashboard"]["ports"] == [{"name": "dashboard", "containerPort": ui}]
    for name, path in (("orchestrator", "/health"), ("dashboard", "/_stcore/health")):
        for probe in ("readinessProbe", "livenessProbe"):
            assert k8s[name][probe]["httpGet"]["path"] == path
            assert k8s[name][probe]["httpGet"]["port"] == k8s[name]["ports"][0]["name"]
    (service,) = kind("Service")
    assert {(p["port"], p["targetPort"]) for p in service["spec"]["ports"]} == {(api, "api"), (ui, "dashboard")}
    (orchestrator,) = [d for d in kind("Deployment") if d["metadata"]["name"] == "refactorbot"]
    assert service["spec"]["selector"] == orchestrator["spec"]["selector"]["matchLabels"]


def test_every_environment_variable_named_is_read_by_the_project() -> None:
    names = set(secrets_example())
    for service in compose()["services"].values():
        names |= set(env_names(service.get("environment", {})))
    for container in containers().values():
        names |= {item["name"] for item in container.get("env", [])}
    names |= set(dockerfile_env(dockerfile()[-1])) - {"PATH", "PYTHONUNBUFFERED"}
    unknown = sorted(name for name in names if known_variable(name) is None)
    assert not unknown
    assert {"RB_HOME", "RB_CONFIG", "RB_REDIS_URL", "RB_REDIS_PASSWORD", "OPENAI_API_KEY"} <= names


def test_keys_come_only_from_secrets() -> None:
    assert all(value == "" for value in secrets_example().values())
    tracked = subprocess.run(["git", "ls-files", str(DEPLOY)], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "examples/deployment/secrets.env" not in tracked.stdout.split()
    for name, service in compose()["services"].items():
        assert service.get("env_file", ["secrets.env"]) == ["secrets.env"], name
        environment = service.get("environment", {})
        assert not [key for key in env_names(environment) if SECRET_NAME.search(key)], name
    for name, container in containers().items():
        for item in container.get("env", []):
            if SECRET_NAME.search(item["name"]):
                assert (
                    set(item) == {"name", "valueFrom"}
                    and item["valueFrom"]["secretKeyRef"]["name"] == "refactorbot-keys"
                )
    assert not kind("Secret")  # created by hand, never committed
    # the Redis password reaches redis-server's configuration on standard input, not its command line
    redis = compose()["services"]["redis"]
    assert "requirepass $$RB_REDIS_PASSWORD" in redis["command"][-1]
    assert "--requirepass" not in " ".join(redis["command"])


def test_the_configmap_holds_the_compose_configuration_and_the_pods_run_as_non_root() -> None:
    (config_map,) = kind("ConfigMap")
    assert config_map["data"]["refactorbot.toml"] == CONFIG.read_text()
    settings = tomllib.loads(CONFIG.read_text())
    assert settings["slices"]["tools"]["location"] == "redis"
    for deployment in kind("Deployment"):
        context = deployment["spec"]["template"]["spec"]["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == 10001
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
    (hpa,) = kind("HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "refactorbot-worker"
    (worker,) = [d for d in kind("Deployment") if d["metadata"]["name"] == "refactorbot-worker"]
    assert (
        "replicas" in worker["spec"]
        and worker["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]
    )
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in (DEPLOY / "k8s").glob("*.yaml") if p.name != "kustomization.yaml"
    )


# --- the command lines, run ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, str]]:
    """A real redis-server asking for a password, as the Compose file's Redis does."""
    try:
        server = RedisServer(tmp_path_factory.mktemp("redis"))
    except RedisServerMissing as exc:
        pytest.fail(str(exc))
    server.start()
    password = secrets.token_urlsafe(16)
    subprocess.run(
        ["redis-cli", "-p", str(server.port), "CONFIG", "SET", "requirepass", password], check=True, capture_output=True
    )
    yield server, password
    server.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_env(name: str, tmp: Path, redis: RedisServer, password: str, namespace: str, port: int) -> dict[str, str]:
    """The service's environment from compose.yaml and secrets.env, with the container's paths and addresses mapped here."""
    environment = compose()["services"][name]["environment"]
    env = clean_env(**{key: str(value) for key, value in environment.items()})
    env.update({key: "" for key in secrets_example()})
    env["RB_REDIS_PASSWORD"] = password
    assert env["RB_HOME"] == "/data/home" and env["RB_CONFIG"] == "/etc/refactorbot/refactorbot.toml"
    assert env["RB_REDIS_URL"] == "redis://redis:6379/0"
    env.update(
        RB_HOME=str(tmp / name / "home"),
        RB_CONFIG=str(CONFIG),
        RB_REDIS_URL=f"redis://127.0.0.1:{redis.port}/0",
        RB_REDIS_NAMESPACE=namespace,
        RB_TOOLS_WORKSPACE=str(tmp / "workspace"),
    )
    if name == "orchestrator":
        env["RB_API_PORT"] = str(port)
    return env


def run(command: list[str], env: dict[str, str], log: Path, stdout: Any = None) -> subprocess.Popen[str]:
    """Start ``command`` as the container would: argv as written, ``refactorbot`` being the installed script."""
    argv = [str(BIN / command[0]) if command[0] == "refactorbot" else command[0], *command[1:]]
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=stdout or log.open("a"),
        stderr=log.open("a"),
        text=True,
    )


def stop(process: subprocess.Popen[str]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def test_serve_and_two_workers_run_with_the_compose_command_lines_and_serve_tool_calls(
    tmp_path: Path, redis_server: tuple[RedisServer, str]
) -> None:
    from refactorbot_dashboard.client import ApiClient

    redis, password = redis_server
    namespace = f"deploy{secrets.token_hex(3)}"
    port = free_port()
    commands = service_commands()
    (tmp_path / "workspace").mkdir()
    processes: list[subprocess.Popen[str]] = []
    try:
        for name in ("worker-1", "worker-2"):
            env = service_env(name, tmp_path, redis, password, namespace, port)
            worker = run(commands[name], env, tmp_path / f"{name}.log", stdout=subprocess.PIPE)
            processes.append(worker)
            assert worker.stdout is not None
            line = worker.stdout.readline()  # its ready line: it reads its stream from here on
            assert line.startswith("refactorbot worker serving tools from Redis at redis://127.0.0.1:"), (
                line,
                (tmp_path / f"{name}.log").read_text(),
            )
            assert password not in line
        env = service_env("orchestrator", tmp_path, redis, password, namespace, port)
        home = Path(env["RB_HOME"])
        orchestrator = run(commands["orchestrator"], env, tmp_path / "orchestrator.log")
        processes.append(orchestrator)

        def listening() -> bool:
            try:
                return json.loads((home / "server.json").read_text())["pid"] == orchestrator.pid
            except (OSError, ValueError, KeyError):
                return orchestrator.poll() is not None

        wait_until(listening, timeout=120, explain=lambda: (tmp_path / "orchestrator.log").read_text())
        assert orchestrator.poll() is None, (tmp_path / "orchestrator.log").read_text()
        # the Compose health check, as written but for the port
        check = compose()["services"]["orchestrator"]["healthcheck"]["test"]
        assert check[0] == "CMD"
        probe = [sys.executable, *check[2:-1], check[-1].replace(f":{api_port()}/", f":{port}/")]
        assert subprocess.run(probe, env=clean_env(), capture_output=True).returncode == 0

        # the dashboard's way in: the address in server.json (every address, [plugins.api] host) and
        # the token in api-token, read from the orchestrator's home as the dashboard container mounts it
        api = ApiClient.from_environment({"RB_HOME": str(home)})
        assert api.url == f"http://0.0.0.0:{port}"
        assert api.get("/health")["status"] == "ok"
        slices = {row["slice_id"]: row for row in api.get("/slices")}
        assert slices["tools"]["status"] == "running"
        assert "eventbus" not in slices or slices["eventbus"]["status"] != "running"
        listed = api.post("/slices/tools/operations/list", json={})
        assert listed["success"], listed
        assert "files_write" in {tool["name"] for tool in listed["data"]["tools"]}
        # tool calls run on the workers, in the workspace they share
        for index in range(6):
            answer = api.post(
                "/slices/tools/operations/execute",
                json={"tool": "files_write", "arguments": {"path": f"note-{index}.txt", "content": f"hello {index}"}},
            )
            assert answer["success"] and answer["data"]["ok"], answer
        for index in range(6):
            assert (tmp_path / "workspace" / f"note-{index}.txt").read_text() == f"hello {index}"
        assert not (home / "workspace").exists()
        for name in ("worker-1", "worker-2"):
            assert (tmp_path / name / "home" / "slices" / "tools.db").exists()
            assert not (tmp_path / name / "home" / "server.json").exists()  # no API on a worker
        assert not (home / "slices" / "tools.db").exists()
        # no key in any log
        for log in tmp_path.glob("*.log"):
            assert password not in log.read_text(), log
        # SIGTERM, as `docker compose stop` and Kubernetes send it: each stops gracefully
        assert stop(orchestrator) == 0, (tmp_path / "orchestrator.log").read_text()
        assert not (home / "server.json").exists()
        for worker in processes[:2]:
            assert stop(worker) == 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
