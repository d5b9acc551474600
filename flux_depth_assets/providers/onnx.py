"""The `onnx` provider: a learned monocular depth model (Depth Anything V2, MiDaS) run by onnxruntime.

    provider: {name: onnx, model_path: models/depth_anything_v2_vits.onnx, family: depth_anything_v2}

The model file is the user's (weights are never downloaded; see docs/onnx.md for where to get an
export and how to make one). What the provider does around the graph is the family's own recipe:

- **preprocessing**: RGB → resize with the aspect ratio kept so the *shorter* side is `input_size`
  and both sides are multiples of the family's patch size (14 for Depth Anything V2's ViT, 32 for
  MiDaS), bicubic; scale to [0, 1]; ImageNet mean/std normalisation; NCHW float32. A model exported
  with a fixed spatial size gets exactly that size instead.
- **postprocessing**: the output (N, H, W) or (N, 1, H, W) is the model's relative inverse depth
  (larger = nearer, unknown scale and shift); each map is resized bilinearly back to its source
  image's size and returned as is (non-finite values mark invalid pixels).

onnxruntime is imported only when a session is created, never at package import. The CUDA execution
provider is used when onnxruntime offers it, else the CPU one (or the list in `execution_providers`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from flux_depth_assets.config.models import OnnxProviderConfig
from flux_depth_assets.providers.base import (
    DepthPrediction,
    DepthProvider,
    ProgressFn,
    ProviderInput,
    ProviderNotReady,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PREFERRED_EXECUTION_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
MAX_ASPECT_STRETCH = 4  # the long side never exceeds this many times `input_size`


@dataclass(frozen=True)
class FamilyRecipe:
    multiple: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


FAMILIES: dict[str, FamilyRecipe] = {
    "depth_anything_v2": FamilyRecipe(multiple=14, mean=IMAGENET_MEAN, std=IMAGENET_STD),
    "midas": FamilyRecipe(multiple=32, mean=IMAGENET_MEAN, std=IMAGENET_STD),
}


class OnnxModelError(ProviderNotReady):
    """The configured model cannot be used (missing, unreadable, not ONNX, wrong signature)."""


# --------------------------------------------------------------------------- pure helpers


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _round_to_multiple(x: float, multiple: int) -> int:
    return max(multiple, round(x / multiple) * multiple)


def target_size(
    width: int, height: int, input_size: int, multiple: int, fixed: tuple[int, int] | None = None
) -> tuple[int, int]:
    """The (width, height) the network sees.

    `fixed` (width, height) wins when the graph has a static spatial size. Otherwise the aspect ratio is
    kept with the shorter side at `input_size` ("lower bound" resizing, as the reference code does),
    each side rounded to a multiple of `multiple`, and the long side capped at MAX_ASPECT_STRETCH ×
    `input_size` for extreme panoramas.
    """
    if fixed is not None:
        return fixed
    if width <= 0 or height <= 0:
        raise ValueError(f"image has no pixels ({width}x{height})")
    scale = input_size / min(width, height)
    scale = min(scale, MAX_ASPECT_STRETCH * input_size / max(width, height))
    return _round_to_multiple(width * scale, multiple), _round_to_multiple(height * scale, multiple)


def preprocess(image: Image.Image, size: tuple[int, int], recipe: FamilyRecipe) -> np.ndarray:
    """RGB image → (3, H, W) float32, resized (bicubic) to `size` = (width, height), normalised."""
    rgb = image.convert("RGB")
    if rgb.size != size:
        rgb = rgb.resize(size, Image.Resampling.BICUBIC)
    x: np.ndarray = np.asarray(rgb, dtype=np.float32) / np.float32(255.0)
    x = (x - np.asarray(recipe.mean, np.float32)) / np.asarray(recipe.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def postprocess(output: np.ndarray, width: int, height: int) -> np.ndarray:
    """One network output map ((H', W') or (1, H', W')) → float32 (height, width), bilinear."""
    out = np.asarray(output, dtype=np.float32)
    if out.ndim == 3 and out.shape[0] == 1:
        out = out[0]
    if out.ndim != 2:
        raise OnnxModelError(
            f"model output per image has shape {tuple(out.shape)}; expected (H, W) or (1, H, W)"
        )
    if (out.shape[1], out.shape[0]) != (width, height):
        out = np.asarray(
            Image.fromarray(np.ascontiguousarray(out), "F").resize(
                (width, height), Image.Resampling.BILINEAR
            )
        )
    return out.astype(np.float32)


def _dim(v: Any) -> int | None:
    """A static dimension, or None for a symbolic/unknown one."""
    return v if isinstance(v, int) and v > 0 else None


# --------------------------------------------------------------------------- the provider


class OnnxProvider(DepthProvider):
    name = "onnx"

    def __init__(self, config: OnnxProviderConfig):
        if config.family not in FAMILIES:
            raise ValueError(
                f"unknown ONNX model family {config.family!r}; known: {sorted(FAMILIES)}"
            )
        self.config = config
        self.path = Path(config.model_path).expanduser()
        self.model = self.path.name
        self.recipe = FAMILIES[config.family]
        self.price_usd = config.price_usd
        self._sha256: str | None = None
        self._sha_stamp: tuple[int, int] | None = None
        self._session: Any = None  # an onnxruntime InferenceSession (untyped)
        self._input_name = ""
        self._input_dtype: type[np.floating[Any]] = np.float32
        self._fixed_size: tuple[int, int] | None = None
        self._fixed_batch: int | None = None
        self.execution_providers: list[str] = []

    # -- identity ---------------------------------------------------------------------------------

    def model_sha256(self) -> str:
        """The model file's sha256 (recomputed only when its size or mtime changes)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise OnnxModelError(
                f"ONNX model file not found: {self.path} (provider.model_path in the catalog YAML; "
                f"weights are not downloaded, see docs/onnx.md)"
            ) from None
        except OSError as exc:
            raise OnnxModelError(f"cannot read ONNX model file {self.path}: {exc}") from None
        if not self.path.is_file():
            raise OnnxModelError(f"ONNX model path is not a file: {self.path}")
        stamp = (st.st_size, st.st_mtime_ns)
        if self._sha256 is None or stamp != self._sha_stamp:
            try:
                self._sha256 = file_sha256(self.path)
            except OSError as exc:
                raise OnnxModelError(f"cannot read ONNX model file {self.path}: {exc}") from None
            self._sha_stamp = stamp
            self._session = None  # a changed file needs a new session
        return self._sha256

    @property
    def model_version(self) -> str:  # type: ignore[override]
        return self.model_sha256()[:12]

    def cache_params(self) -> dict[str, Any]:
        return {
            "model_sha256": self.model_sha256(),
            "family": self.config.family,
            "input_size": self.config.input_size,
            "multiple": self.recipe.multiple,
            "mean": list(self.recipe.mean),
            "std": list(self.recipe.std),
        }

    # -- session ----------------------------------------------------------------------------------

    def check_ready(self) -> None:
        self._ensure_session()

    def _ensure_session(self) -> Any:
        self.model_sha256()  # clear error when missing; drops a stale session when the file changed
        if self._session is not None:
            return self._session
        import onnxruntime as ort  # lazy: never at package import

        available = ort.get_available_providers()
        wanted = self.config.execution_providers or list(PREFERRED_EXECUTION_PROVIDERS)
        chosen = [p for p in wanted if p in available]
        if not chosen:
            raise OnnxModelError(
                f"none of the execution providers {wanted} is available in this "
                f"onnxruntime build (available: {available})"
            )
        try:
            session = ort.InferenceSession(str(self.path), providers=chosen)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types for a bad file
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise OnnxModelError(
                f"cannot load ONNX model {self.path}: not a valid ONNX model or "
                f"unsupported by onnxruntime {ort.__version__} ({msg})"
            ) from None
        self._inspect_signature(session)
        self._session = session
        self.execution_providers = list(session.get_providers())
        return session

    def _inspect_signature(self, session: Any) -> None:
        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1:
            raise OnnxModelError(
                f"ONNX model {self.path} has {len(inputs)} inputs "
                f"({[i.name for i in inputs]}); a depth model takes one image tensor"
            )
        inp = inputs[0]
        shape = list(inp.shape)
        if len(shape) != 4 or _dim(shape[1]) not in (3, None):
            raise OnnxModelError(
                f"ONNX model {self.path}: input {inp.name!r} has shape {shape}; expected "
                f"[batch, 3, height, width] (RGB, NCHW)"
            )
        if inp.type not in ("tensor(float)", "tensor(float16)"):
            raise OnnxModelError(
                f"ONNX model {self.path}: input {inp.name!r} is {inp.type}; expected a float tensor"
            )
        out_shape = list(outputs[0].shape) if outputs else []
        if (
            not outputs
            or (out_shape and len(out_shape) not in (3, 4))
            or (len(out_shape) == 4 and _dim(out_shape[1]) not in (1, None))
        ):
            raise OnnxModelError(
                f"ONNX model {self.path}: output has shape {out_shape}; expected "
                f"[batch, height, width] or [batch, 1, height, width]"
            )
        self._input_name = inp.name
        self._input_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        h, w = _dim(shape[2]), _dim(shape[3])
        self._fixed_size = (w, h) if h and w else None
        self._fixed_batch = _dim(shape[0])

    # -- inference --------------------------------------------------------------------------------

    def _run(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        n = len(batch)
        x = np.stack(batch)
        if self._fixed_batch and self._fixed_batch != n:  # pad a static batch with copies
            x = np.concatenate([x] + [x[-1:]] * (self._fixed_batch - n))
        out = self._session.run(None, {self._input_name: x.astype(self._input_dtype, copy=False)})[
            0
        ]
        out = np.asarray(out)
        if out.ndim not in (3, 4) or out.shape[0] < n:
            raise OnnxModelError(
                f"model returned shape {tuple(out.shape)} for a batch of {n}; expected "
                f"[batch, height, width] or [batch, 1, height, width]"
            )
        return [out[i] for i in range(n)]

    def predict_many(
        self, items: Sequence[ProviderInput], progress: ProgressFn | None = None
    ) -> list[DepthPrediction]:
        results: list[DepthPrediction | None] = [None] * len(items)
        try:
            self._ensure_session()
        except OnnxModelError as exc:  # the model itself is unusable: every image fails, clearly
            return [DepthPrediction(it.image_id, status="failed", error=str(exc)) for it in items]
        batch_cap = self.config.batch_size
        if self._fixed_batch:
            batch_cap = min(batch_cap, self._fixed_batch)

        pending: list[
            tuple[int, np.ndarray, tuple[int, int], float]
        ] = []  # (index, input, size, s)

        def flush() -> None:
            if not pending:
                return
            t0 = time.perf_counter()
            try:
                outs = self._run([p[1] for p in pending])
                share = (time.perf_counter() - t0) / len(pending)
                for (i, _x, (w, h), prep_s), out in zip(pending, outs):
                    results[i] = DepthPrediction(
                        items[i].image_id,
                        depth=postprocess(out, w, h),
                        latency_s=prep_s + share,
                        extra={
                            "execution_provider": self.execution_providers[0]
                            if self.execution_providers
                            else None
                        },
                    )
            except Exception as exc:  # noqa: BLE001 - a batch that fails: retry its images one by one
                if len(pending) > 1:
                    singles = list(pending)
                    pending.clear()
                    for single in singles:
                        pending.append(single)
                        flush()
                    return
                i = pending[0][0]
                results[i] = DepthPrediction(
                    items[i].image_id,
                    status="failed",
                    error=f"{type(exc).__name__}: {exc}",
                    latency_s=time.perf_counter() - t0,
                )
            pending.clear()

        for n, item in enumerate(items, 1):
            t0 = time.perf_counter()
            try:
                image = item.load_image()
                w, h = image.size
                size = target_size(
                    w, h, self.config.input_size, self.recipe.multiple, self._fixed_size
                )
                x = preprocess(image, size, self.recipe)
            except Exception as exc:  # noqa: BLE001 - one bad image never sinks the batch
                results[n - 1] = DepthPrediction(
                    item.image_id,
                    status="failed",
                    error=f"{type(exc).__name__}: {exc}",
                    latency_s=time.perf_counter() - t0,
                )
            else:
                if pending and pending[0][1].shape != x.shape:
                    flush()  # a batch holds one input size
                pending.append((n - 1, x, (w, h), time.perf_counter() - t0))
                if len(pending) >= batch_cap:
                    flush()
            if progress and (n % 10 == 0 or n == len(items)):
                progress(f"onnx depth ({self.model}): {n}/{len(items)} images")
        flush()
        return [r for r in results if r is not None]
