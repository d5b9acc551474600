"""The fake host in other hosts' dialects: Replicate's and BFL's wire protocols over the same
predictions, accounting and faults (`flux-depth fake-api --dialect replicate|bfl`).

Replicate (`--dialect replicate`):
- `POST /v1/models/{owner}/{name}/predictions` with `Authorization: Bearer <token>` and
  `{"input": {...}}` → 201 with the prediction (`id`, `status: starting`, `urls.get`);
  `Cancel-After: 30s|5m|1h30m` cancels it if it is still running then;
- `GET /v1/predictions/{id}`: `starting` → `processing` → `succeeded` | `failed` | `canceled`,
  `output` a URL; moderated ones fail with Replicate's E005 message;
- errors are `{"title", "detail", "status"}`; a 429 carries `retry_after` in the body (no header);
- outputs are deleted `output_ttl_s` after success (default: kept), then 404.

BFL (`--dialect bfl`):
- `POST /v1/{model}` with `x-key` and the inputs as the body (`control_image` raw base64 or a URL)
  → `{"id", "polling_url"}`;
- `GET /v1/get_result?id=` → `Pending` | `Ready` (`result.sample`) | `Error` | `Content Moderated`
  | `Request Moderated` | `Task not found` (HTTP 200, like the host);
- `result.sample` is a signed URL (`exp`, `sig`) that expires `output_ttl_s` after success
  (default 600 s, the host's 10 minutes), then 403; errors are `{"detail": ...}`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from flux_depth_assets.fakeapi.server import FakeEachlabs
from flux_depth_assets.fakeapi.state import FakeApiConfig, FakePrediction, unit

CANCEL_AFTER_RE = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?$")
MODERATION_ERROR = (
    "The input or output was flagged as sensitive. Please try again with different inputs. (E005)"
)
TITLES = {
    400: "Bad Request",
    401: "Unauthenticated",
    402: "Payment Required",
    404: "Not found",
    422: "Input validation failed",
    429: "Request was throttled",
}


def parse_cancel_after(value: str) -> float | None:
    """Seconds from a `Cancel-After` value (`90`, `30s`, `5m`, `1h30m45s`); None if malformed."""
    match = CANCEL_AFTER_RE.match(value.strip())
    if not match or not any(match.groups()):
        return None
    h, m, s = (int(g) if g else 0 for g in match.groups())
    return float(h * 3600 + m * 60 + s)


class _Dialect(FakeEachlabs):
    """What both dialects add: the model each one serves by default."""

    MODEL = ""

    def serves(self, model: Any) -> bool:
        cfg = self.config
        return model not in cfg.retired_models and (model == self.MODEL or model in cfg.models)


class FakeReplicate(_Dialect):
    KEY_HEADER = "Authorization"
    MODEL = "black-forest-labs/flux-depth-pro"

    def __init__(self, config: FakeApiConfig | None = None):
        super().__init__(config)
        self._deadlines: dict[str, float] = {}

    def api_key_of(self, request: Request) -> str:
        value = request.headers.get("authorization", "")
        return value[7:].strip() if value[:7].lower() == "bearer " else ""

    def _error(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> JSONResponse:
        headers = dict(headers or {})
        body: dict[str, Any] = {
            "title": TITLES.get(status, "Error"),
            "detail": message,
            "status": status,
        }
        if status == 429:  # Replicate says when to come back in the body
            body["retry_after"] = int(headers.pop("Retry-After", "1"))
        return JSONResponse(body, status_code=status, headers=headers or None)

    async def create_for_model(self, request: Request) -> Response:
        if isinstance(admitted := await self._admit(request), Response):
            return admitted
        arrived, body = admitted
        deadline = None
        if "cancel-after" in request.headers:
            deadline = parse_cancel_after(request.headers["cancel-after"])
            if deadline is None or deadline < 5:
                return self._reject(400, "Cancel-After must be a duration of at least 5s")
        model = f"{request.path_params['owner']}/{request.path_params['name']}"
        outcome = await self.new_prediction(model, body.get("input"), arrived)
        if isinstance(outcome, Response):
            return outcome
        if deadline is not None:
            self._deadlines[outcome] = deadline
        pred = self.host_state.prediction(outcome)
        assert pred is not None
        return JSONResponse(
            self._describe(pred, self.host_state.clock(), _base(request)), status_code=201
        )

    def _canceled(self, pred: FakePrediction) -> float | None:
        """The deadline that cancels this prediction, if it runs past it."""
        deadline = self._deadlines.get(pred.id)
        return (
            deadline if deadline is not None and pred.done_at - pred.created_at > deadline else None
        )

    def _describe(self, pred: FakePrediction, now: float, base: str) -> dict[str, Any]:
        elapsed = now - pred.created_at
        total = pred.done_at - pred.created_at
        answer: dict[str, Any] = {
            "id": pred.id,
            "model": self.MODEL,
            "version": "hidden",
            "input": pred.public_input,
            "created_at": pred.created_wall,
            "status": "processing",
            "output": None,
            "error": None,
            "logs": "",
            "metrics": {},
            "urls": {
                "get": f"{base}/v1/predictions/{pred.id}",
                "cancel": f"{base}/v1/predictions/{pred.id}/cancel",
            },
        }
        deadline = self._canceled(pred)
        if deadline is not None and elapsed >= deadline:
            answer.update(status="canceled", metrics={"predict_time": deadline})
            return answer
        if now < pred.done_at:
            answer["status"] = "starting" if elapsed < 0.1 * total else "processing"
            return answer
        answer["metrics"] = {"predict_time": round(total, 3)}
        if pred.fails:
            answer.update(status="failed", error=pred.error)
        elif self.faults.moderated(pred):
            answer.update(status="failed", error=MODERATION_ERROR)
        else:
            answer.update(status="succeeded", output=f"{base}/outputs/{pred.id}.{pred.fmt}")
        return answer

    async def output(self, request: Request) -> Response:
        pid = request.path_params["name"].rpartition(".")[0]
        pred = self.host_state.prediction(pid)
        if (
            pred is None
            or self.faults.moderated(pred)
            or self._canceled(pred) is not None
            or self.faults.output_expired(pred, self.host_state.clock())
        ):
            return self._error(404, "output not found (outputs are deleted after an hour)")
        return await super().output(request)

    def api_routes(self) -> list[Route]:
        return [
            Route("/v1/models/{owner}/{name}/predictions", self.create_for_model, methods=["POST"]),
            Route("/v1/predictions/{pid}", self.get, methods=["GET"]),
            Route("/outputs/{name}", self.output, methods=["GET"]),
        ]


class FakeBfl(_Dialect):
    KEY_HEADER = "x-key"
    MODEL = "flux-pro-1.0-depth"
    DEFAULT_OUTPUT_TTL_S = 600.0

    def __init__(self, config: FakeApiConfig | None = None):
        super().__init__(config)
        self._signing_key = hashlib.sha256(f"{self.config.seed}:bfl-delivery".encode()).digest()

    def _error(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=status, headers=headers)

    async def create_task(self, request: Request) -> Response:
        if isinstance(admitted := await self._admit(request), Response):
            return admitted
        arrived, body = admitted
        control = body.get("control_image")
        if (
            isinstance(control, str)
            and control
            and not control.startswith(("http://", "https://", "data:"))
        ):
            body["control_image"] = "data:image/*;base64," + control  # raw base64, as BFL takes
        outcome = await self.new_prediction(request.path_params["model"], body, arrived)
        if isinstance(outcome, Response):
            return outcome
        return JSONResponse(
            {"id": outcome, "polling_url": f"{_base(request)}/v1/get_result?id={outcome}"}
        )

    async def get_result(self, request: Request) -> Response:
        if (denied := self._gate(request)) is not None:
            return denied
        pid = request.query_params.get("id", "")
        pred = self.host_state.poll(pid)
        if pred is None:
            return JSONResponse({"id": pid, "status": "Task not found", "result": None})
        now = self.host_state.clock()
        answer: dict[str, Any] = {"id": pid, "status": "Pending", "result": None, "progress": None}
        if now < pred.done_at:
            answer["progress"] = round(
                (now - pred.created_at) / max(pred.done_at - pred.created_at, 1e-9), 3
            )
        elif pred.fails:
            answer.update(status="Error", details={"message": pred.error})
        elif self.faults.moderated(pred):
            which = unit(self.config.seed, "moderation-kind", pred.id) < 0.5
            answer["status"] = "Content Moderated" if which else "Request Moderated"
        else:
            answer.update(
                status="Ready",
                result={
                    "sample": self._signed(pred, _base(request)),
                    "prompt": pred.public_input.get("prompt", ""),
                    "duration": round(pred.done_at - pred.created_at, 3),
                },
            )
        return JSONResponse(answer)

    def _ttl(self) -> float:
        ttl = self.config.output_ttl_s
        return self.DEFAULT_OUTPUT_TTL_S if ttl is None else ttl

    def _signature(self, name: str, expires: str) -> str:
        return hmac.new(
            self._signing_key, f"{name}:{expires}".encode(), hashlib.sha256
        ).hexdigest()[:32]

    def _signed(self, pred: FakePrediction, base: str) -> str:
        expires = f"{time.time() + (pred.done_at + self._ttl() - self.host_state.clock()):.3f}"
        name = f"{pred.id}.{pred.fmt}"
        return f"{base}/delivery/{name}?exp={expires}&sig={self._signature(name, expires)}"

    async def delivery(self, request: Request) -> Response:
        name = request.path_params["name"]
        expires = request.query_params.get("exp", "")
        sig = request.query_params.get("sig", "")
        if not hmac.compare_digest(sig, self._signature(name, expires)):
            return PlainTextResponse("AuthenticationFailed: signature mismatch", status_code=403)
        try:
            expired = time.time() > float(expires)
        except ValueError:
            expired = True
        if expired:
            return PlainTextResponse("AuthenticationFailed: signed URL expired", status_code=403)
        return await self.output(request)

    def api_routes(self) -> list[Route]:
        return [
            Route("/v1/get_result", self.get_result, methods=["GET"]),
            Route("/v1/{model}", self.create_task, methods=["POST"]),
            Route("/delivery/{name}", self.delivery, methods=["GET"]),
        ]


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


DIALECTS: dict[str, type[FakeEachlabs]] = {
    "eachlabs": FakeEachlabs,
    "replicate": FakeReplicate,
    "bfl": FakeBfl,
}


def dialect_class(name: str) -> type[FakeEachlabs]:
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(f"unknown dialect {name!r}; known: {', '.join(DIALECTS)}") from None
