"""docker/: what can be checked without a Docker engine, and the smoke test where there is one.

No engine runs on the development and CI machines, so the compose file, the Dagster instance
config, the workspace and the Dockerfiles are parsed and checked for the structure the deployment
relies on; `docker compose config` validates the compose file where the compose plugin exists;
the images' pip commands are resolved against the CI virtualenv (installed from the same lock);
and the full stack smoke test (docker/smoke_test.py) runs only where `docker info` answers.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
ENV_EXAMPLE = DOCKER / ".env.example"
PG_PROFILE = REPO / "deploy" / "postgres" / "dagster.yaml"

SERVICES = {"postgres", "minio", "minio_init", "user_code", "webserver", "daemon"}
DAGSTER_SERVICES = {"user_code", "webserver", "daemon"}

_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


# --------------------------------------------------------------------------- helpers


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    """Docker compose's `${VAR}`, `${VAR:-default}`, `${VAR:?error}` and `$$` rules."""
    placeholder = "\0DOLLAR\0"
    text = text.replace("$$", placeholder)

    def substitute(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        value = env.get(name)
        if op in (":-", "-"):
            return value if value not in (None, "") or (op == "-" and value is not None) else arg
        if op in (":?", "?"):
            if value is None or (op == ":?" and value == ""):
                raise KeyError(f"required variable {name} is missing: {arg}")
            return value
        return value or ""

    return _VAR.sub(substitute, text).replace(placeholder, "$")


def compose(env: dict[str, str] | None = None) -> dict:
    return yaml.safe_load(interpolate(COMPOSE.read_text(), env_example() if env is None else env))


def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    lines, current = [], ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        current += " " + stripped.rstrip("\\").strip()
        if not stripped.endswith("\\"):
            lines.append(current.strip())
            current = ""
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
    ]


def pip_installs(path: Path) -> list[list[str]]:
    """Every `pip install ...` command inside the Dockerfile's RUN steps, as argv lists."""
    commands = []
    for instruction, args in dockerfile_instructions(path):
        if instruction != "RUN":
            continue
        lexer = shlex.shlex(args, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        argv: list[str] = []
        for token in [*lexer, ";"]:
            if token in ("&&", "||", ";", "|", ">", ">>"):
                if argv[:2] == ["pip", "install"]:
                    commands.append(argv)
                argv = [] if token not in (">", ">>") else ["<redirect>"]
            else:
                argv.append(token)
    return commands


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[ ;]", name, 1)[0]).lower()


def dockerignore_allows(ignore_file: Path, path: str) -> bool:
    """Allow-list style .dockerignore (`*` then `!path`): is `path` sent to the builder?"""
    allowed = False
    for line in ignore_file.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        if pattern == "*" or path == pattern or path.startswith(pattern + "/"):
            allowed = negate
    return allowed


# --------------------------------------------------------------------------- compose


def test_compose_has_the_six_services_on_one_network_with_named_volumes():
    spec = compose()
    assert set(spec["services"]) == SERVICES
    assert list(spec["networks"]) == ["flux_depth"]
    for name, service in spec["services"].items():
        assert service["networks"] == ["flux_depth"], name
    assert set(spec["volumes"]) == {"postgres_data", "minio_data"}
    assert "postgres_data:/var/lib/postgresql/data" in spec["services"]["postgres"]["volumes"]
    assert "minio_data:/data" in spec["services"]["minio"]["volumes"]
    # The run launcher attaches run containers to this network by name.
    assert (
        spec["networks"]["flux_depth"]["name"]
        == spec["services"]["daemon"]["environment"]["FLUX_DEPTH_DOCKER_NETWORK"]
    )


def test_compose_healthchecks_and_start_order():
    services = compose()["services"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["minio"]["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]
    assert services["minio_init"]["depends_on"] == {"minio": {"condition": "service_healthy"}}
    init_script = " ".join(services["minio_init"]["command"])
    assert "mc mb --ignore-existing" in init_script and "$BUCKET" in init_script
    assert "mc admin user add" in init_script  # the app never holds the root credentials
    for name in ("webserver", "daemon"):
        assert services[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "minio_init": {"condition": "service_completed_successfully"},
            "user_code": {"condition": "service_healthy"},
        }, name
        assert "healthcheck" in services[name], name
    assert "server_info" in " ".join(services["webserver"]["healthcheck"]["test"])
    assert services["daemon"]["healthcheck"]["test"] == ["CMD", "dagster-daemon", "liveness-check"]
    # user_code's own health check is the image's HEALTHCHECK (checked below).


def test_compose_entrypoints_images_and_builds():
    services = compose()["services"]
    assert services["webserver"]["entrypoint"][:1] == ["dagster-webserver"]
    assert services["webserver"]["entrypoint"][-2:] == ["-w", "workspace.yaml"]
    assert services["daemon"]["entrypoint"] == ["dagster-daemon", "run"]
    user_code = services["user_code"]
    assert user_code["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    # The run launcher starts every run in the image the gRPC server reports.
    assert user_code["environment"]["DAGSTER_CURRENT_IMAGE"] == user_code["image"]
    for name in ("webserver", "daemon"):
        assert services[name]["build"] == {
            "context": "..",
            "dockerfile": "docker/Dockerfile.dagster",
        }
        assert services[name]["image"] == services["webserver"]["image"]
        assert "/var/run/docker.sock:/var/run/docker.sock" in services[name]["volumes"]
        assert services[name]["group_add"], f"{name} needs the socket's group to stay non-root"
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"


def test_compose_dagster_services_share_one_environment_and_storage_root_is_s3():
    services = compose()["services"]
    envs = {name: dict(services[name]["environment"]) for name in DAGSTER_SERVICES}
    envs["user_code"].pop("DAGSTER_CURRENT_IMAGE")
    assert envs["user_code"] == envs["webserver"] == envs["daemon"]
    env = envs["daemon"]
    assert env["FLUX_DEPTH_ENV"] == "prod"
    assert env["FLUX_DEPTH_HOME"] == "s3://flux-depth/data"
    assert env["AWS_ENDPOINT_URL_S3"] == "http://minio:9000"
    assert env["FLUX_DEPTH_PG_HOST"] == "postgres"
    assert env["FLUX_DEPTH_PG_PASSWORD"] == env_example()["POSTGRES_PASSWORD"]
    assert env["AWS_ACCESS_KEY_ID"] == services["minio_init"]["environment"]["APP_ACCESS_KEY"]


def test_secrets_come_only_from_the_env_file():
    raw = COMPOSE.read_text()
    required = {m["name"] for m in _VAR.finditer(raw) if m["op"] == ":?"}
    assert {"POSTGRES_PASSWORD", "MINIO_ROOT_PASSWORD", "FLUX_DEPTH_S3_SECRET_KEY"} <= required
    example = env_example()
    assert required <= set(example), f"missing from .env.example: {required - set(example)}"
    every = {m["name"] for m in _VAR.finditer(raw)}
    documented = set(example) | {
        line.split("=", 1)[0].lstrip("# ").strip()
        for line in ENV_EXAMPLE.read_text().splitlines()
        if "=" in line
    }
    assert every <= documented, f"undocumented in .env.example: {every - documented}"
    for key, value in example.items():
        if re.search(r"PASSWORD|SECRET|API_KEY", key):
            assert value == "" or value.startswith("change-me"), f"{key} looks like a real secret"
    # No literal secret in the compose file: every secret-looking variable is interpolated.
    spec = raw_compose()
    for name, service in spec["services"].items():
        environment = service.get("environment") or {}
        for key, value in dict(environment).items():
            if re.search(r"PASSWORD|SECRET", key):
                assert isinstance(value, str) and value.startswith("${"), f"{name}.{key}"
    with pytest.raises(KeyError, match="POSTGRES_PASSWORD"):
        compose({k: v for k, v in example.items() if k != "POSTGRES_PASSWORD"})
    assert ".env" in (DOCKER / ".gitignore").read_text().split()


def test_docker_compose_config_validates_where_the_plugin_exists(tmp_path):
    if (
        shutil.which("docker") is None
        or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0
    ):
        pytest.skip(
            "the docker compose plugin is not installed here; the structure is asserted "
            "by the tests above"
        )
    result = subprocess.run(
        [
            "docker",
            "compose",
            "-f",
            str(COMPOSE),
            "--env-file",
            str(ENV_EXAMPLE),
            "config",
            "--quiet",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------- dagster.yaml


@pytest.fixture
def docker_instance_env(monkeypatch):
    """The environment docker-compose.yml gives the Dagster services (from .env.example)."""
    env = compose()["services"]["daemon"]["environment"]
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    return env


def test_dagster_yaml_validates_and_builds_its_run_launcher_and_log_manager(
    tmp_path, docker_instance_env
):
    from dagster._core.instance.config import dagster_instance_config
    from dagster._core.instance.ref import InstanceRef
    from dagster._core.launcher import RunLauncher
    from dagster._core.run_coordinator import QueuedRunCoordinator, RunCoordinator
    from dagster._core.storage.compute_log_manager import ComputeLogManager
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
    from dagster_docker import DockerRunLauncher

    shutil.copy(DOCKER / "dagster.yaml", tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))  # validates against Dagster's schema
    assert config["telemetry"] == {"enabled": False}
    ref = InstanceRef.from_dir(str(tmp_path))

    launcher = ref.run_launcher_data.rehydrate(as_type=RunLauncher)
    assert isinstance(launcher, DockerRunLauncher)
    assert launcher.networks == ["flux_depth_network"]  # ...no Docker connection is made here
    assert launcher.container_kwargs["labels"] == {"com.flux-depth.role": "run"}
    # Run containers get exactly the environment the compose file gives the Dagster services.
    expected = set(docker_instance_env)
    assert set(launcher.env_vars) == expected, set(launcher.env_vars) ^ expected

    coordinator = ref.run_coordinator_data.rehydrate(as_type=RunCoordinator)
    assert isinstance(coordinator, QueuedRunCoordinator)
    limits = config["concurrency"]["runs"]["tag_concurrency_limits"]
    assert limits == [
        {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
    ]
    assert config["concurrency"]["pools"]["default_limit"] >= 1

    log_manager = ref.compute_logs_data.rehydrate(as_type=ComputeLogManager)
    assert isinstance(log_manager, S3ComputeLogManager)
    assert log_manager._s3_bucket == docker_instance_env["FLUX_DEPTH_S3_BUCKET"]
    assert log_manager._s3_session.meta.endpoint_url == "http://minio:9000"


def test_docker_and_local_postgres_profiles_share_storage_and_run_limits():
    docker_cfg = yaml.safe_load((DOCKER / "dagster.yaml").read_text())
    local_cfg = yaml.safe_load(PG_PROFILE.read_text())
    assert docker_cfg["storage"] == local_cfg["storage"]
    assert docker_cfg["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert docker_cfg["concurrency"] == local_cfg["concurrency"]
    assert docker_cfg["run_coordinator"] == local_cfg["run_coordinator"]
    assert local_cfg["telemetry"] == docker_cfg["telemetry"] == {"enabled": False}
    laptop = REPO / "deploy" / "local" / "dagster.yaml"  # `make dev`'s SQLite instance
    if laptop.exists():
        laptop_cfg = yaml.safe_load(laptop.read_text())
        assert (
            laptop_cfg["concurrency"]["runs"]["tag_concurrency_limits"]
            == docker_cfg["concurrency"]["runs"]["tag_concurrency_limits"]
        )
        assert laptop_cfg["concurrency"]["pools"] == docker_cfg["concurrency"]["pools"]


def test_workspace_points_at_the_user_code_grpc_server():
    workspace = yaml.safe_load((DOCKER / "workspace.yaml").read_text())
    (entry,) = workspace["load_from"]
    server = entry["grpc_server"]
    assert server["host"] == "user_code" and server["host"] in compose()["services"]
    cmd = dict(dockerfile_instructions(DOCKER / "Dockerfile"))["CMD"]
    assert f'"-p", "{server["port"]}"' in cmd
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert server["location_name"] == pyproject["tool"]["dagster"]["code_location_name"]
    assert f'"--location-name", "{server["location_name"]}"' in cmd
    assert f'"-m", "{pyproject["tool"]["dagster"]["module_name"]}"' in cmd


# --------------------------------------------------------------------------- Dockerfiles


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.dagster"])
def test_dockerfile_is_non_root_and_pinned(dockerfile):
    path = DOCKER / dockerfile
    steps = dockerfile_instructions(path)
    kinds = [kind for kind, _ in steps]
    user_steps = [args for kind, args in steps if kind == "USER"]
    assert user_steps and user_steps[-1] not in ("root", "0"), "the image must not run as root"
    assert kinds.index("USER") > max(
        i for i, (k, a) in enumerate(steps) if k == "RUN" and "pip install" in a
    )
    installs = pip_installs(path)
    assert installs, "no pip install step"
    pins = lock_pins()
    for argv in installs:
        assert "-c" in argv and argv[argv.index("-c") + 1].endswith("requirements.lock"), argv
        named = [
            a
            for a in argv[2:]
            if not a.startswith("-") and a != "." and not a.endswith((".lock", ".txt"))
        ]
        for requirement in named:
            assert normalise(requirement) in pins, f"{requirement} is not pinned in the lock"
    ignore = path.with_name(path.name + ".dockerignore")
    for kind, args in steps:
        if kind == "COPY":
            sources = [a for a in shlex.split(args) if not a.startswith("--")][:-1]
            for source in sources:
                assert (REPO / source).exists(), f"COPY {source}: not in the repository"
                assert dockerignore_allows(ignore, source), (
                    f"COPY {source}: excluded by {ignore.name}"
                )


def test_user_code_image_serves_grpc_with_a_healthcheck():
    steps = dict(dockerfile_instructions(DOCKER / "Dockerfile"))
    assert steps["CMD"].startswith('["dagster", "api", "grpc"')
    assert '"dagster", "api", "grpc-health-check", "-p", "4000"' in steps["HEALTHCHECK"]
    assert steps["EXPOSE"] == "4000"


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "Dockerfile.dagster"])
def test_the_images_pip_commands_resolve_to_what_ci_installed(dockerfile, tmp_path):
    """Replays each image's `pip install` against this virtualenv (installed by `make install`
    from the same requirements.lock), offline: pip must find every requirement already satisfied
    at the locked version, so the image gets exactly the versions CI tested."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(
        "\n".join(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"])
    )
    for argv in pip_installs(DOCKER / dockerfile):
        args = [a for a in argv[2:] if a not in ("-e", ".", "--no-deps")]
        args = [
            str(REPO / "requirements.lock")
            if a.endswith("requirements.lock")
            else str(requirements)
            if a.endswith("requirements.txt")
            else a
            for a in args
        ]
        if (
            not [a for a in args if not a.startswith("-") and not a.endswith((".lock", ".txt"))]
            and "-r" not in args
        ):
            continue  # `pip install --no-deps -e .`: the project itself
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--dry-run",
                "--no-index",
                "--quiet",
                "--report",
                str(tmp_path / "report.json"),
                *args,
            ],
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        import json

        report = json.loads((tmp_path / "report.json").read_text())
        assert report["install"] == [], [i["metadata"]["name"] for i in report["install"]]


# --------------------------------------------------------------------------- smoke test


def test_smoke_script_skips_cleanly_without_docker(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # no `docker` on PATH
    result = subprocess.run(
        [sys.executable, str(DOCKER / "smoke_test.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 77, result.stdout + result.stderr
    assert result.stdout.startswith("SKIPPED: no docker client on PATH")


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.timeout(1800)
def test_docker_stack_smoke():
    """Builds the images and runs the demo catalog through the whole stack (needs an engine)."""
    sys.path.insert(0, str(DOCKER))
    try:
        import smoke_test
    finally:
        sys.path.remove(str(DOCKER))
    problem = smoke_test.engine_problem()
    if problem:
        pytest.skip(f"{problem}: run `python docker/smoke_test.py` on a machine with Docker")
    assert smoke_test.main([]) == 0
