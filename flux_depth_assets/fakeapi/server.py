"""A loopback HTTP server that speaks the Eachlabs prediction protocol (see design/API_NOTES.md).

Same paths, header and JSON shapes as the host, with knobs for everything a client must survive:
latency (create → terminal status), a ratio of predictions that end `failed`, a rate limit (429 with
`Retry-After`), random 500/502s, and an optional set of accepted keys (401 otherwise). Every random
choice derives from `seed`, so a run is reproducible. It keeps the accounting a test needs:
creates per image, the dollars the host would have charged, polls, requests in flight and
predictions running at once (`GET /stats`).

This module is the HTTP side (routes, validation, answer shapes); `state` holds the predictions
and the accounting.

Paths:
- `POST /v1/prediction/`             create; answers `{"status", "message", "predictionID"}`
- `GET  /v1/prediction/{id}`         poll; `status` starting → processing → success | failed
- `GET  /outputs/{id}.{png|jpg}`     the result image (no key, like a signed URL)
- `GET  /stats`                      the accounting above, as JSON (no key)
"""

from __future__ import annotations

import hashlib
import ipaddress
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from flux_depth_assets.fakeapi import imaging
from flux_depth_assets.fakeapi.faults import Faults
from flux_depth_assets.fakeapi.state import FakeApiConfig, FakePrediction, HostState


class FakeEachlabs:
    """The server's request handlers over its `HostState`. One instance per server."""

    def __init__(self, config: FakeApiConfig | None = None):
        self.config = config or FakeApiConfig()
        self.host_state = HostState(self.config)
        self.faults = Faults(self.config)  # per-host faults and create timestamps (dialects)

    # ------------------------------------------------------------------ accounting

    def stats(self) -> dict[str, Any]:
        return {**self.host_state.stats(), **self.faults.stats()}

    def request_started(self) -> None:
        self.host_state.request_started()

    def request_finished(self, status: int | None) -> None:
        self.host_state.request_finished(status)

    # ------------------------------------------------------------------ gate for /v1

    def _error(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> JSONResponse:
        return JSONResponse(
            {"status": "error", "message": message}, status_code=status, headers=headers
        )

    def _gate(self, request: Request) -> JSONResponse | None:
        """Rate limit, injected errors, then the key; None lets the request through."""
        cfg = self.config
        denial = self.host_state.admit()
        if denial is not None:
            return self._error(*denial)
        key = self.api_key_of(request)
        if not key:
            self.host_state.count_unauthorized()
            return self._error(401, f"missing {self.KEY_HEADER} header")
        if cfg.api_keys is not None and key not in cfg.api_keys:
            self.host_state.count_unauthorized()
            shown = f" {key!r}" if cfg.echo_key_in_errors else ""
            return self._error(401, f"invalid API key{shown}")
        return None

    KEY_HEADER = "X-API-Key"

    def api_key_of(self, request: Request) -> str:
        return request.headers.get(self.KEY_HEADER, "")

    # ------------------------------------------------------------------ handlers

    async def _admit(self, request: Request) -> tuple[float, dict[str, Any]] | Response:
        """A create's arrival time and JSON object body, or the answer that refuses it."""
        arrived = self.host_state.clock()
        if (denied := self._gate(request)) is not None:
            return denied
        try:
            body = await request.json()
        except Exception:  # noqa: BLE001
            return self._reject(400, "request body is not valid JSON")
        if not isinstance(body, dict):
            return self._reject(400, "request body must be a JSON object")
        return arrived, body

    async def create(self, request: Request) -> Response:
        if isinstance(admitted := await self._admit(request), Response):
            return admitted
        arrived, body = admitted
        outcome = await self.new_prediction(body.get("model"), body.get("input"), arrived)
        if isinstance(outcome, Response):
            return outcome
        return JSONResponse(
            {
                "status": "success",
                "message": "Prediction created successfully",
                "predictionID": outcome,
            }
        )

    def serves(self, model: Any) -> bool:
        return model in self.config.models and model not in self.config.retired_models

    async def new_prediction(self, model: Any, inputs: Any, arrived: float) -> str | Response:
        """Validate, run the host's create faults, register: the prediction id or the refusal.
        `arrived`: when the request reached the host (what its per-window limits count)."""
        if not self.serves(model):
            return self._reject(404, f"model {model!r} not found")
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
        output = await run_in_threadpool(
            imaging.make_output, image, prompt, fmt, self.config.bfl_like
        )
        if (denial := self.faults.create_denial(arrived)) is not None:
            return self._error(*denial)  # checked and counted with no await in between
        pid = self.host_state.register(image_key, fmt, inputs, output)
        self.faults.created(self.host_state.prediction(pid), arrived)
        return pid

    def _reject(self, status: int, message: str) -> JSONResponse:
        self.host_state.count_rejected()
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
                    f"control_image URL could not be fetched: {type(exc).__name__}"
                ) from None
            if response.status_code != 200:
                raise imaging.ControlImageError(
                    f"control_image URL answered HTTP {response.status_code}"
                )
            if len(response.content) > cfg.max_image_bytes:
                raise imaging.ControlImageError("control_image is larger than 50 MB")
            image = await run_in_threadpool(imaging.open_image, response.content, cfg.max_pixels)
            return image, key
        raise imaging.ControlImageError("control_image must be an http(s) URL or a data URI")

    async def get(self, request: Request) -> Response:
        if (denied := self._gate(request)) is not None:
            return denied
        pid = request.path_params["pid"]
        now = self.host_state.clock()
        pred = self.host_state.poll(pid)
        if pred is None:
            return self._error(404, f"prediction {pid!r} not found")
        return JSONResponse(self._describe(pred, now, str(request.base_url).rstrip("/")))

    def _describe(self, pred: FakePrediction, now: float, base: str) -> dict[str, Any]:
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
        answer["completed_at"] = datetime.now(UTC).isoformat()
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
        data = self.host_state.take_output(pid, ext)
        if data is None:
            return self._error(404, "output not found")
        media = "image/png" if ext == "png" else "image/jpeg"
        return Response(data, media_type=media)

    async def stats_endpoint(self, request: Request) -> Response:
        return JSONResponse(self.stats())

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "service": "fake-eachlabs"})

    def routes(self) -> list[Route]:
        """The host's own endpoints (`api_routes`), then the fake's `/stats` and health check."""
        return [
            *self.api_routes(),
            Route("/stats", self.stats_endpoint, methods=["GET"]),
            Route("/", self.health, methods=["GET"]),
        ]

    def api_routes(self) -> list[Route]:
        return [
            Route("/v1/prediction/", self.create, methods=["POST"]),
            Route("/v1/prediction", self.create, methods=["POST"]),
            Route("/v1/prediction/{pid}", self.get, methods=["GET"]),
            Route("/outputs/{name}", self.output, methods=["GET"]),
        ]


def _validate_inputs(inputs: dict[str, Any]) -> str | None:
    """The host's documented input ranges; None when the inputs are acceptable."""
    control = inputs.get("control_image")
    if not isinstance(control, str) or not control:
        return "input.control_image is required (a URL or a data URI)"
    checks: list[tuple[str, type | tuple[type, ...], float, float]] = [
        ("steps", int, 15, 50),
        ("guidance", (int, float), 1, 100),
        ("safety_tolerance", int, 1, 6),
    ]
    for name, kind, lo, hi in checks:
        if name not in inputs:
            continue
        value: Any = inputs[name]
        if isinstance(value, bool) or not isinstance(value, kind):
            return f"input.{name} must be a number"
        if not lo <= inputs[name] <= hi:
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


def _is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    """(ASGI app, state). The app is a Starlette application wrapped with request accounting;
    `config.dialect` picks the protocol it speaks (eachlabs, replicate, bfl)."""
    from flux_depth_assets.fakeapi.dialects import dialect_class  # the dialects subclass ours

    config = config or FakeApiConfig()
    state = dialect_class(config.dialect)(config)
    app = Starlette(routes=state.routes())
    app.router.redirect_slashes = False
    return _Accounting(app, state), state
