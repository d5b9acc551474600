#!/usr/bin/env python3
"""Bring the docker/ stack up, run the demo catalog through it, check the results, tear it down.

    python docker/smoke_test.py            # exit 0: passed, 1: failed, 77: skipped (no engine)
    python docker/smoke_test.py --keep     # leave the stack running afterwards (UI port printed)

Standard library only, so it runs with any Python 3.9+ next to a Docker engine with the compose
plugin. It uses its own compose project (`flux-depth-smoke`), network, image tags, host ports and a
throwaway env file with random secrets, so it never touches a real docker/.env deployment.

What it proves: the images build with the pinned install; PostgreSQL, MinIO (+ bucket and app
user), the user-code gRPC server, webserver and daemon all report healthy; the webserver loads the
code location over gRPC; the daemon's registry sensor adds the `demo` partition; a run of
`catalog_job` for `demo` is queued, launched by the daemon in its own container
(DockerRunLauncher) and succeeds; its depth maps land in the MinIO bucket.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

SKIP = 77
HERE = Path(__file__).resolve().parent
COMPOSE_FILE = HERE / "docker-compose.yml"
PROJECT = "flux-depth-smoke"
NETWORK = "flux_depth_smoke_network"
LOCATION = "flux_depth_assets"

LOCATION_QUERY = """
{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }
"""
PARTITIONS_QUERY = """
{ assetNodeOrError(assetKey: {path: ["depth_maps"]}) {
    ... on AssetNode { partitionKeysByDimension { partitionKeys } } } }
"""
LAUNCH_MUTATION = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""
RUN_QUERY = """
query Run($runId: ID!) { runOrError(runId: $runId) { __typename
    ... on Run { status tags { key value } } } }
"""


class SmokeFailure(RuntimeError):
    pass


def log(message: str) -> None:
    print(f"[smoke {time.strftime('%H:%M:%S')}] {message}", flush=True)


def engine_problem() -> str | None:
    """Why this machine cannot run the stack, or None when it can."""
    if shutil.which("docker") is None:
        return "no docker client on PATH"
    info = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True
    )
    if info.returncode != 0 or not info.stdout.strip():
        return "no Docker engine answers (`docker info` failed)"
    compose = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if compose.returncode != 0:
        return "the docker compose plugin is missing (`docker compose version` failed)"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_env_file(directory: Path, ui_port: int) -> Path:
    sock = Path("/var/run/docker.sock")
    values = {
        "POSTGRES_DB": "dagster",
        "POSTGRES_USER": "dagster",
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "MINIO_ROOT_USER": "smoke-root",
        "MINIO_ROOT_PASSWORD": secrets.token_hex(16),
        "FLUX_DEPTH_S3_BUCKET": "flux-depth-smoke",
        "FLUX_DEPTH_S3_PREFIX": "data",
        "FLUX_DEPTH_S3_ACCESS_KEY": "smoke-app",
        "FLUX_DEPTH_S3_SECRET_KEY": secrets.token_hex(16),
        "AWS_REGION": "us-east-1",
        "EACHLABS_API_KEY": "",
        "DOCKER_GID": str(sock.stat().st_gid) if sock.exists() else "0",
        "DAGSTER_UI_PORT": str(ui_port),
        "MINIO_CONSOLE_PORT": str(free_port()),
        "FLUX_DEPTH_USER_CODE_IMAGE": "flux-depth-user-code:smoke",
        "FLUX_DEPTH_DAGSTER_IMAGE": "flux-depth-dagster:smoke",
        "FLUX_DEPTH_DOCKER_NETWORK": NETWORK,
    }
    path = directory / "smoke.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    return path


class Stack:
    def __init__(self, env_file: Path, ui_port: int) -> None:
        self.env_file = env_file
        self.url = f"http://127.0.0.1:{ui_port}"
        self.env = dict(os.environ, COMPOSE_PROJECT_NAME=PROJECT)

    def compose(
        self, *args: str, check: bool = True, capture: bool = False, timeout: float | None = None
    ) -> subprocess.CompletedProcess:
        command = [
            "docker",
            "compose",
            "-f",
            str(COMPOSE_FILE),
            "-p",
            PROJECT,
            "--env-file",
            str(self.env_file),
            *args,
        ]
        log("$ " + " ".join(command[2:]))
        result = subprocess.run(
            command, env=self.env, text=True, timeout=timeout, capture_output=capture
        )
        if check and result.returncode != 0:
            raise SmokeFailure(
                f"`docker compose {' '.join(args)}` exited {result.returncode}"
                + (f": {result.stderr[-2000:]}" if capture else "")
            )
        return result

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(
            f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=15) as response:
            payload = json.loads(response.read())
        if payload.get("errors"):
            raise SmokeFailure(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def wait_for(self, what: str, check, timeout: float, interval: float = 2.0):
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                result = check()
                if result:
                    return result
            except (urllib.error.URLError, OSError, KeyError, TypeError) as exc:
                last = exc
            time.sleep(interval)
        raise SmokeFailure(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")

    def location_loaded(self) -> bool:
        entries = self.graphql(LOCATION_QUERY)["workspaceOrError"]["locationEntries"]
        for entry in entries:
            if entry["name"] == LOCATION and entry["loadStatus"] == "LOADED":
                loaded = entry["locationOrLoadError"] or {}
                if loaded.get("__typename") == "PythonError":
                    raise SmokeFailure(f"code location failed to load: {loaded.get('message')}")
                return True
        return False

    def has_demo_partition(self) -> bool:
        node = self.graphql(PARTITIONS_QUERY)["assetNodeOrError"]
        keys = [
            k for dim in node.get("partitionKeysByDimension") or [] for k in dim["partitionKeys"]
        ]
        return "demo" in keys

    def launch_demo_run(self) -> str:
        params = {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": "__repository__",
                "jobName": "catalog_job",
            },
            "runConfigData": {},
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "demo"}]},
        }
        result = self.graphql(LAUNCH_MUTATION, {"params": params})["launchRun"]
        if result["__typename"] != "LaunchRunSuccess":
            raise SmokeFailure(f"launchRun failed: {result}")
        return result["run"]["runId"]

    def run_status(self, run_id: str) -> str:
        return self.graphql(RUN_QUERY, {"runId": run_id})["runOrError"]["status"]

    def bucket_objects(self, prefix: str) -> list[str]:
        script = (
            'mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" '
            f'>/dev/null && mc ls --recursive "local/$BUCKET/{prefix}"'
        )
        result = self.compose(
            "run",
            "--rm",
            "--no-deps",
            "--entrypoint",
            "/bin/sh",
            "minio_init",
            "-c",
            script,
            capture=True,
            check=False,
        )
        return [line.split()[-1] for line in result.stdout.splitlines() if line.strip()]

    def dump_logs(self) -> None:
        self.compose("ps", "-a", check=False)
        self.compose("logs", "--no-color", "--tail", "150", check=False)
        subprocess.run(["docker", "ps", "-a", "--filter", "label=com.flux-depth.role=run"])

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", check=False, timeout=300)
        # Run containers are started by the daemon, not by compose: remove them by label.
        listed = subprocess.run(
            [
                "docker",
                "ps",
                "-aq",
                "--filter",
                "label=com.flux-depth.role=run",
                "--filter",
                f"network={NETWORK}",
            ],
            capture_output=True,
            text=True,
        )
        ids = listed.stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True)
        subprocess.run(["docker", "network", "rm", NETWORK], capture_output=True)


def run_smoke(keep: bool, timeout: float) -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="flux-depth-smoke-") as tmp:
        ui_port = free_port()
        stack = Stack(write_env_file(Path(tmp), ui_port), ui_port)
        ok = False
        try:
            stack.compose("config", "--quiet")
            stack.compose("build", timeout=timeout)
            # Some compose releases report the finished one-shot `minio_init` as a failure of
            # `--wait`; the health of what matters is checked right after, so only warn here.
            up = stack.compose(
                "up",
                "--detach",
                "--wait",
                "--wait-timeout",
                str(int(timeout)),
                timeout=timeout + 60,
                check=False,
            )
            if up.returncode != 0:
                log(f"`up --wait` exited {up.returncode}; checking the services directly")
            stack.wait_for("the code location to load over gRPC", stack.location_loaded, 300)
            log(f"stack up after {time.monotonic() - started:.0f}s; UI at {stack.url}")
            stack.wait_for(
                "catalog_registry_sensor to add the demo partition", stack.has_demo_partition, 180
            )
            run_id = stack.launch_demo_run()
            log(f"launched run {run_id}; waiting for the daemon to dequeue and launch it")

            def finished():
                status = stack.run_status(run_id)
                return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

            status = stack.wait_for(f"run {run_id} to finish", finished, timeout, interval=5)
            if status != "SUCCESS":
                raise SmokeFailure(f"run {run_id} ended {status}")
            pngs = [
                o
                for o in stack.bucket_objects("data/catalogs/demo/depth_maps/")
                if o.endswith(".png")
            ]
            if len(pngs) < 6:
                raise SmokeFailure(f"expected 6 depth maps in the bucket, found {pngs}")
            log(
                f"PASSED in {time.monotonic() - started:.0f}s: run {run_id} succeeded in its own "
                f"container; {len(pngs)} depth maps in s3://flux-depth-smoke/data/"
            )
            ok = True
        finally:
            if not ok:
                stack.dump_logs()
            if keep:
                log(
                    f"--keep: stack left running at {stack.url}; stop it with "
                    f"`docker compose -p {PROJECT} -f {COMPOSE_FILE} down -v`"
                )
                # The env file is in a temp dir that is about to go: keep a copy for `down`.
                kept = Path(tempfile.gettempdir()) / f"{PROJECT}.env"
                shutil.copy(stack.env_file, kept)
                log(f"its env file: {kept}")
            else:
                stack.down()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the stack running")
    parser.add_argument(
        "--timeout",
        type=float,
        default=900,
        help="seconds for the build, the health waits and the run (default 900)",
    )
    args = parser.parse_args(argv)
    problem = engine_problem()
    if problem:
        print(f"SKIPPED: {problem}; the docker/ stack cannot be started on this machine.")
        return SKIP
    try:
        run_smoke(args.keep, args.timeout)
    except (SmokeFailure, subprocess.TimeoutExpired) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
