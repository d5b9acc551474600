"""Ways to run the fake Eachlabs server: blocking (`serve`), in-process for tests
(`running_fake_api`), as a child process (`fake_api_process`), and the CLI (`main`)."""

from __future__ import annotations

import argparse
import contextlib
import json
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any

import httpx
import uvicorn

from flux_depth_assets.fakeapi.options import add_dialect_arguments
from flux_depth_assets.fakeapi.server import FakeEachlabs, build_app
from flux_depth_assets.fakeapi.state import FakeApiConfig

READY_PREFIX = "fake Eachlabs API listening on "
#: the command line's options that say where and how to listen; every other one sets the
#: `FakeApiConfig` field of its name
LISTEN_OPTIONS = ("host", "port", "access_log")
#: what the ready line repeats of the config
SUMMARY = ("latency_s", "fail_ratio", "bfl_like", "rate_limit", "error_rate", "seed")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _uvicorn_server(app, access_log: bool, loop: str = "auto") -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        log_level="info" if access_log else "warning",
        access_log=access_log,
        lifespan="off",
        loop=loop,
        timeout_keep_alive=30,
        server_header=False,
    )
    return uvicorn.Server(config)


def _make_config(options: dict[str, Any]) -> FakeApiConfig:
    """The server's config from `FakeApiConfig` field values (as keywords or parsed flags)."""
    known = {f.name for f in fields(FakeApiConfig)}
    unknown = set(options) - known
    if unknown:
        raise TypeError(f"unknown fake API option(s): {sorted(unknown)}")
    if options.get("api_keys") is not None:
        options["api_keys"] = frozenset(options["api_keys"])
    if "retired_models" in options:
        options["retired_models"] = tuple(options["retired_models"])
    return FakeApiConfig(**{**options, "rate_limit": options.get("rate_limit") or None})


def serve(
    host: str = "127.0.0.1",
    port: int = 8787,
    *,
    access_log: bool = False,
    on_ready: Callable[[str], None] | None = None,
    **options: Any,
) -> None:
    """Run the fake host until SIGINT/SIGTERM. `port=0` picks a free port; `on_ready(base_url)` is
    called once the socket listens. `options`: `FakeApiConfig` fields (latency_s, seed, ...)."""
    config = _make_config(options)
    app, _state = build_app(config)
    sock = _bind(host, port)
    if on_ready:
        on_ready(_url(host, sock))
    try:
        _uvicorn_server(app, access_log).run(sockets=[sock])
    finally:
        sock.close()


@dataclass
class FakeApiServer:
    """A fake host running in this process (a background thread)."""

    base_url: str
    state: FakeEachlabs

    def stats(self) -> dict[str, Any]:
        return self.state.stats()


@contextlib.contextmanager
def running_fake_api(latency_s: float = 0.2, **options: Any) -> Iterator[FakeApiServer]:
    """Start the fake host on a free loopback port in a thread; yields its base URL and stats.
    `options`: `FakeApiConfig` fields (fail_ratio, rate_limit, seed, api_keys, dialect, ...)."""
    config = _make_config({"latency_s": latency_s, **options})
    app, state = build_app(config)
    sock = _bind("127.0.0.1", 0)
    server = _uvicorn_server(app, access_log=False, loop="asyncio")
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="fake-eachlabs", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the fake Eachlabs server did not start")
        time.sleep(0.01)
    try:
        yield FakeApiServer(_url("127.0.0.1", sock), state)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@dataclass
class FakeApiProcess:
    """A fake host running as a child process."""

    base_url: str
    process: subprocess.Popen

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.base_url}/stats", timeout=10).json()


def _cli_args(
    latency_s: float,
    fail_ratio: float,
    rate_limit: float | None,
    error_rate: float,
    seed: int,
    extra: Sequence[str],
) -> list[str]:
    args = [
        "--port",
        "0",
        "--latency",
        str(latency_s),
        "--fail-ratio",
        str(fail_ratio),
        "--error-rate",
        str(error_rate),
        "--seed",
        str(seed),
    ]
    if rate_limit:
        args += ["--rate-limit", str(rate_limit)]
    return args + list(extra)


@contextlib.contextmanager
def fake_api_process(
    latency_s: float = 0.2,
    fail_ratio: float = 0.0,
    rate_limit: float | None = None,
    error_rate: float = 0.0,
    seed: int = 0,
    extra_args: Sequence[str] = (),
    startup_timeout_s: float = 60.0,
) -> Iterator[FakeApiProcess]:
    """Run `python -m flux_depth_assets.fakeapi --port 0 ...` and yield its base URL."""
    cmd = [
        sys.executable,
        "-m",
        "flux_depth_assets.fakeapi",
        *_cli_args(latency_s, fail_ratio, rate_limit, error_rate, seed, extra_args),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1)
    try:
        base_url = _read_ready_line(proc, startup_timeout_s)
        yield FakeApiProcess(base_url, proc)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout:
            proc.stdout.close()


def _read_ready_line(proc: subprocess.Popen, timeout_s: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the fake Eachlabs server exited with code {proc.returncode}")
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if line.startswith(READY_PREFIX):
                return line[len(READY_PREFIX) :].split()[0]
    raise RuntimeError("the fake Eachlabs server did not start in time")


def build_parser(prog: str = "flux-depth fake-api") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run a loopback server that speaks the Eachlabs prediction "
        "protocol (for demos, tests and load tests). Point the eachlabs provider at it with "
        "EACHLABS_BASE_URL=http://127.0.0.1:PORT; any non-empty EACHLABS_API_KEY is accepted "
        "unless --api-key is given.",
    )
    listen = p.add_argument_group("where to listen")
    listen.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    listen.add_argument(
        "--port", type=int, default=8787, help="port; 0 picks a free one (default 8787)"
    )
    listen.add_argument("--access-log", action="store_true", help="log every request")
    p.add_argument(
        "--latency",
        dest="latency_s",
        type=float,
        default=2.0,
        help="seconds from create to success/failure (default 2.0)",
    )
    p.add_argument(
        "--latency-jitter",
        dest="latency_jitter_s",
        type=float,
        default=0.0,
        help="extra latency drawn uniformly from [0, J] per prediction (default 0)",
    )
    p.add_argument(
        "--fail-ratio",
        type=float,
        default=0.0,
        help="share of predictions that end 'failed' (default 0)",
    )
    p.add_argument(
        "--rate-limit",
        type=float,
        default=0.0,
        help="API requests per second before 429 + Retry-After (default 0 = none)",
    )
    p.add_argument(
        "--error-rate",
        type=float,
        default=0.0,
        help="share of API requests answered with a random 500/502 (default 0)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for every random choice (default 0)")
    p.add_argument(
        "--api-key",
        dest="api_keys",
        metavar="KEY",
        action="append",
        default=None,
        help="accept only this key (repeatable); default: any non-empty key",
    )
    p.add_argument(
        "--price",
        dest="price_usd",
        type=float,
        default=0.05,
        help="USD charged per create (default 0.05)",
    )
    p.add_argument(
        "--output-style",
        choices=("string", "list"),
        default="string",
        help="poll answer `output` as a URL string or a list of URLs",
    )
    p.add_argument("--report-cost", action="store_true", help="add `cost` to finished poll answers")
    p.add_argument(
        "--bfl-like",
        action="store_true",
        help="answer like Black Forest Labs' flux-depth-pro: a colour render for "
        "every prompt, the empty one included (not a depth map)",
    )
    add_dialect_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """`flux-depth fake-api --port P [--latency S] [--fail-ratio R] [--rate-limit N] [--error-rate R]`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # `flux-depth fake-api -- --port 8765` hands the separator through
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    config = {k: v for k, v in vars(args).items() if k not in LISTEN_OPTIONS}
    config["rate_limit"] = config["rate_limit"] or None  # 0: none
    summary = {k: config[k] for k in SUMMARY}

    def announce(url: str) -> None:
        print(f"{READY_PREFIX}{url} {json.dumps(summary)}", flush=True)

    try:
        serve(args.host, args.port, access_log=args.access_log, on_ready=announce, **config)
    except (OSError, ValueError, TypeError) as exc:
        print(f"fake-api: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
