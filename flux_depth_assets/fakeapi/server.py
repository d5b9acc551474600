"""A loopback HTTP server that speaks the Eachlabs prediction protocol (see design/API_NOTES.md).

Same paths, header and JSON shapes as the host, with knobs for everything a client must survive:
latency (create → terminal status), a ratio of predictions that end `failed`, a rate limit (429 with
`Retry-After`), random 500/502s, and an optional set of accepted keys (401 otherwise). Every random
choice derives from `seed`, so a run is reproducible. It keeps the accounting a test needs:
creates per image, the dollars the host would have charged, polls, requests in flight and
predictions running at once (`GET /stats`).

Paths:
- `POST /v1/prediction/`             create; answers `{"status", "message", "predictionID"}`
- `GET  /v1/prediction/{id}`         poll; `status` starting → processing → success | failed
- `GET  /outputs/{id}.{png|jpg}`     the result image (no key, like a signed URL)
- `GET  /stats`                      the accounting above, as JSON (no key)
"""

from __future__ import annotations

import hashlib
import heapq
import ipaddress
import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flux_depth_assets.fakeapi import imaging

MiB = 1024 * 1024


@dataclass(frozen=True)
class FakeApiConfig:
    """The server's behaviour. Ratios are in [0, 1]; `rate_limit` is API requests per second."""

    latency_s: float = 2.0
    latency_jitter_s: float = 0.0  # each prediction takes latency_s + U(0, jitter), seeded
    fail_ratio: float = 0.0
    rate_limit: float | None = None  # None or 0: unlimited
    error_rate: float = 0.0  # share of API requests answered 500/502 before doing anything
    seed: int = 0
    api_keys: frozenset[str] | None = None  # None: any non-empty key is accepted
    price_usd: float = 0.05  # charged per created prediction, failed ones included
    output_style: Literal["string", "list"] = "string"
    report_cost: bool = False  # add `"cost": price_usd` to poll answers
    echo_key_in_errors: bool = False  # a careless host: 401 messages repeat the key (for tests)
    models: tuple[str, ...] = ("flux-depth-pro",)
    max_image_bytes: int = 50 * MiB
    max_pixels: int = 4 * MiB  # "up to about 4 megapixels"
    fetch_loopback_urls: bool = True  # http(s) control images on loopback are fetched; others → gradient

    def __post_init__(self) -> None:
        for name in ("fail_ratio", "error_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        if self.latency_s < 0 or self.latency_jitter_s < 0:
            raise ValueError("latency_s and latency_jitter_s must be >= 0")
        if self.rate_limit is not None and self.rate_limit < 0:
            raise ValueError("rate_limit must be >= 0")


@dataclass
class _Prediction:
    id: str
    image_key: str
    created_at: float  # monotonic
    created_wall: str
    done_at: float
    fails: bool
    fmt: str
    public_input: dict[str, Any]
    output: bytes | None = None
    error: str | None = None


@dataclass
class _Counters:
    requests: int = 0
    api_requests: int = 0
    creates: int = 0
    polls: int = 0
    downloads: int = 0
    rate_limited: int = 0
    injected_errors: int = 0
    unauthorized: int = 0
    rejected_inputs: int = 0
    failed_predictions: int = 0
    charged_usd: float = 0.0
    inflight_requests: int = 0
    max_inflight_requests: int = 0
    max_active_predictions: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    creates_per_image: dict[str, int] = field(default_factory=dict)
    polled_ids: set[str] = field(default_factory=set)


def _unit(*parts: object) -> float:
    """A deterministic number in [0, 1) from `parts` (independent of request interleaving)."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FakeEachlabs:
    """The server's state and request handlers. One instance per server."""

    def __init__(self, config: FakeApiConfig | None = None):
        self.config = config or FakeApiConfig()
        self._lock = threading.Lock()  # stats() may be read from another thread (in-process tests)
        self._c = _Counters()
        self._predictions: dict[str, _Prediction] = {}
        self._window: deque[float] = deque()  # API request times in the last second (rate limit)
        self._active: list[float] = []  # heap of done_at of predictions not finished yet
        self._error_rng = random.Random(f"{self.config.seed}:errors")

    # ------------------------------------------------------------------ accounting

    def stats(self) -> dict[str, Any]:
        with self._lock:
            c = self._c
            return {
                "requests": c.requests,
                "api_requests": c.api_requests,
                "creates": c.creates,
                "creates_per_image": dict(c.creates_per_image),
                "charged_usd": round(c.charged_usd, 6),
                "polls": c.polls,
                "polled_predictions": len(c.polled_ids),
                "downloads": c.downloads,
                "rate_limited": c.rate_limited,
                "injected_errors": c.injected_errors,
                "unauthorized": c.unauthorized,
                "rejected_inputs": c.rejected_inputs,
                "failed_predictions": c.failed_predictions,
                "inflight_requests": c.inflight_requests,
                "max_inflight_requests": c.max_inflight_requests,
                "active_predictions": self._active_now(time.monotonic()),
                "max_active_predictions": c.max_active_predictions,
                "status_counts": dict(c.status_counts),
                "predictions": len(self._predictions),
            }

    def _active_now(self, now: float) -> int:
        while self._active and self._active[0] <= now:
            heapq.heappop(self._active)
        return len(self._active)

    def request_started(self) -> None:
        with self._lock:
            self._c.requests += 1
            self._c.inflight_requests += 1
            self._c.max_inflight_requests = max(self._c.max_inflight_requests,
                                                self._c.inflight_requests)

    def request_finished(self, status: int | None) -> None:
        with self._lock:
            self._c.inflight_requests -= 1
            key = str(status) if status is not None else "none"
            self._c.status_counts[key] = self._c.status_counts.get(key, 0) + 1

    # ------------------------------------------------------------------ gate for /v1

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"status": "error", "message": message}, status_code=status,
                            headers=headers)

    def _gate(self, request: Request) -> JSONResponse | None:
        """Rate limit, injected errors, then the key; None lets the request through."""
        cfg = self.config
        now = time.monotonic()
        with self._lock:
            self._c.api_requests += 1
            if cfg.rate_limit:
                while self._window and self._window[0] <= now - 1.0:
                    self._window.popleft()
                if len(self._window) >= cfg.rate_limit:
                    self._c.rate_limited += 1
                    wait = max(1, math.ceil(self._window[0] + 1.0 - now))
                    return self._error(429, "rate limit exceeded, slow down",
                                       {"Retry-After": str(wait)})
                self._window.append(now)
            if cfg.error_rate and self._error_rng.random() < cfg.error_rate:
                self._c.injected_errors += 1
                status = self._error_rng.choice((500, 502))
                return self._error(status, "internal error" if status == 500 else "bad gateway")
        key = request.headers.get("x-api-key", "")
        if not key:
            with self._lock:
                self._c.unauthorized += 1
            return self._error(401, "missing X-API-Key header")
        if cfg.api_keys is not None and key not in cfg.api_keys:
            with self._lock:
                self._c.unauthorized += 1
            shown = f" {key!r}" if cfg.echo_key_in_errors else ""
            return self._error(401, f"invalid API key{shown}")
        return None

    # ------------------------------------------------------------------ handlers

    async def create(self, request: Request) -> Response:
        if (denied := self._gate(request)) is not None:
            return denied
        try:
            body = await request.json()
        except Exception:  # noqa: BLE001
            return self._reject(400, "request body is not valid JSON")
        if not isinstance(body, dict):
            return self._reject(400, "request body must be a JSON object")
        model = body.get("model")
        if model not in self.config.models:
            return self._reject(404, f"model {model!r} not found")
        inputs = body.get("input")
        if not isinstance(inputs, dict):
            return self._reject(422, "'input' must be an object")
        problem = _validate_inputs(inputs)
        if problem:
            return self._reject(422, problem)
        control = inputs["control_image"]
        try:
            image, image_key = await self._load_control(control)
        except imaging.ControlImageError as exc:
            return self._reject(400, str(exc))
        fmt = inputs.get("output_format", "jpg")
        prompt = inputs.get("prompt", "") or ""
        output = await run_in_threadpool(imaging.make_output, image, prompt, fmt)
        return JSONResponse(self._register(image_key, fmt, inputs, output))

    def _reject(self, status: int, message: str) -> JSONResponse:
        with self._lock:
            self._c.rejected_inputs += 1
        return self._error(status, message)

    async def _load_control(self, control: str):
        cfg = self.config
        if control.startswith("data:"):
            data = imaging.decode_data_uri(control, cfg.max_image_bytes)
            key = hashlib.sha256(data).hexdigest()
            image = await run_in_threadpool(imaging.open_image, data, cfg.max_pixels)
            return image, key
        if control.startswith(("http://", "https://")):
            key = "url:" + hashlib.sha256(control.encode()).hexdigest()
            if not (cfg.fetch_loopback_urls and _is_loopback(control)):
                return imaging.gradient_image(control), key
            try:
                async with httpx.AsyncClient(timeout=10.0) as client:
                    response = await client.get(control)
            except httpx.HTTPError as exc:
                raise imaging.ControlImageError(
                    f"control_image URL could not be fetched: {type(exc).__name__}") from None
            if response.status_code != 200:
                raise imaging.ControlImageError(
                    f"control_image URL answered HTTP {response.status_code}")
            if len(response.content) > cfg.max_image_bytes:
                raise imaging.ControlImageError("control_image is larger than 50 MB")
            image = await run_in_threadpool(imaging.open_image, response.content, cfg.max_pixels)
            return image, key
        raise imaging.ControlImageError("control_image must be an http(s) URL or a data URI")

    def _register(self, image_key: str, fmt: str, inputs: dict[str, Any], output: bytes) -> dict:
        cfg = self.config
        now = time.monotonic()
        with self._lock:
            n = self._c.creates
            self._c.creates += 1
            nth_for_image = self._c.creates_per_image.get(image_key, 0)
            self._c.creates_per_image[image_key] = nth_for_image + 1
            self._c.charged_usd += cfg.price_usd
            pid = hashlib.sha256(f"{cfg.seed}:{n}".encode()).hexdigest()[:8] + "-" + \
                hashlib.sha256(f"{cfg.seed}:{n}:{image_key}".encode()).hexdigest()[:24]
            fails = _unit(cfg.seed, "fail", image_key, nth_for_image) < cfg.fail_ratio
            latency = cfg.latency_s + cfg.latency_jitter_s * _unit(cfg.seed, "latency", n)
            pred = _Prediction(
                id=pid, image_key=image_key, created_at=now,
                created_wall=datetime.now(timezone.utc).isoformat(), done_at=now + latency,
                fails=fails, fmt=fmt,
                public_input={k: v for k, v in inputs.items() if k != "control_image"},
                output=None if fails else output,
                error="Prediction failed: the model could not process this image (simulated)"
                if fails else None,
            )
            if fails:
                self._c.failed_predictions += 1
            self._predictions[pid] = pred
            heapq.heappush(self._active, pred.done_at)
            self._c.max_active_predictions = max(self._c.max_active_predictions,
                                                 self._active_now(now))
        return {"status": "success", "message": "Prediction created successfully",
                "predictionID": pid}

    async def get(self, request: Request) -> Response:
        if (denied := self._gate(request)) is not None:
            return denied
        pid = request.path_params["pid"]
        now = time.monotonic()
        with self._lock:
            pred = self._predictions.get(pid)
            if pred is not None:
                self._c.polls += 1
                self._c.polled_ids.add(pid)
        if pred is None:
            return self._error(404, f"prediction {pid!r} not found")
        return JSONResponse(self._describe(pred, now, str(request.base_url).rstrip("/")))

    def _describe(self, pred: _Prediction, now: float, base: str) -> dict[str, Any]:
        cfg = self.config
        elapsed = now - pred.created_at
        total = pred.done_at - pred.created_at
        answer: dict[str, Any] = {
            "id": pred.id,
            "model": cfg.models[0],
            "version": "0.0.1",
            "input": pred.public_input,
            "created_at": pred.created_wall,
            "urls": {"get": f"{base}/v1/prediction/{pred.id}"},
            "output": None,
            "error": None,
            "logs": None,
            "metrics": {},
        }
        if now < pred.done_at:
            answer["status"] = "starting" if elapsed < 0.1 * total else "processing"
            answer["logs"] = f"step {int(elapsed / max(total, 1e-9) * 50)}/50"
            return answer
        answer["metrics"] = {"predict_time": round(total, 3)}
        answer["completed_at"] = datetime.now(timezone.utc).isoformat()
        if cfg.report_cost:
            answer["cost"] = cfg.price_usd
        if pred.fails:
            answer["status"] = "failed"
            answer["error"] = pred.error
            return answer
        url = f"{base}/outputs/{pred.id}.{pred.fmt}"
        answer["status"] = "success"
        answer["output"] = [url] if cfg.output_style == "list" else url
        answer["logs"] = "step 50/50"
        return answer

    async def output(self, request: Request) -> Response:
        name = request.path_params["name"]
        pid, _, ext = name.rpartition(".")
        with self._lock:
            pred = self._predictions.get(pid)
            ready = pred is not None and pred.output is not None and \
                time.monotonic() >= pred.done_at and ext == pred.fmt
            if ready:
                self._c.downloads += 1
        if not ready:
            return self._error(404, "output not found")
        media = "image/png" if ext == "png" else "image/jpeg"
        return Response(pred.output, media_type=media)

    async def stats_endpoint(self, request: Request) -> Response:
        return JSONResponse(self.stats())

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "service": "fake-eachlabs"})


def _validate_inputs(inputs: dict[str, Any]) -> str | None:
    """The host's documented input ranges; None when the inputs are acceptable."""
    control = inputs.get("control_image")
    if not isinstance(control, str) or not control:
        return "input.control_image is required (a URL or a data URI)"
    checks: list[tuple[str, type | tuple[type, ...], float | None, float | None]] = [
        ("steps", int, 15, 50), ("guidance", (int, float), 1, 100),
        ("safety_tolerance", int, 1, 6),
    ]
    for name, kind, lo, hi in checks:
        if name not in inputs:
            continue
        value = inputs[name]
        if isinstance(value, bool) or not isinstance(value, kind):
            return f"input.{name} must be a number"
        if not lo <= value <= hi:
            return f"input.{name} must be between {lo} and {hi}"
    if inputs.get("output_format", "jpg") not in ("jpg", "png"):
        return "input.output_format must be 'jpg' or 'png'"
    seed = inputs.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        return "input.seed must be an integer"
    if not isinstance(inputs.get("prompt", ""), str):
        return "input.prompt must be a string"
    if not isinstance(inputs.get("prompt_upsampling", False), bool):
        return "input.prompt_upsampling must be a boolean"
    return None


class _Accounting:
    """Raw ASGI wrapper counting requests in flight and answers by status (cheap, no buffering)."""

    def __init__(self, app, state: FakeEachlabs):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status: list[int] = []

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        self.state.request_started()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.state.request_finished(status[0] if status else None)


def build_app(config: FakeApiConfig | None = None):
    """(ASGI app, state). The app is a Starlette application wrapped with request accounting."""
    state = FakeEachlabs(config)
    routes = [
        Route("/v1/prediction/", state.create, methods=["POST"]),
        Route("/v1/prediction", state.create, methods=["POST"]),
        Route("/v1/prediction/{pid}", state.get, methods=["GET"]),
        Route("/outputs/{name}", state.output, methods=["GET"]),
        Route("/stats", state.stats_endpoint, methods=["GET"]),
        Route("/", state.health, methods=["GET"]),
    ]
    app = Starlette(routes=routes)
    app.router.redirect_slashes = False
    return _Accounting(app, state), state
