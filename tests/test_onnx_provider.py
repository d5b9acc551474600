"""The `onnx` provider on tiny graphs built here with the `onnx` helper API (no weights, no network)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from flux_depth_assets.config.models import CatalogConfig, OnnxProviderConfig  # noqa: E402
from flux_depth_assets.providers.base import ProviderInput  # noqa: E402
from flux_depth_assets.providers.factory import build_provider  # noqa: E402
from flux_depth_assets.providers.onnx import (  # noqa: E402
    FAMILIES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    OnnxModelError,
    OnnxProvider,
    file_sha256,
    postprocess,
    preprocess,
    target_size,
)

# --------------------------------------------------------------------------- tiny models


def save_model(path: Path, input_shape, kind: str = "red", input_type=TensorProto.FLOAT) -> Path:
    """A one-node "depth model".

    kind="red":  output[n, 0] = input[n, 0] (the normalised red channel), shape [N, 1, H, W];
    kind="mean": output[n]    = mean over channels, shape [N, H, W];
    kind="same": output       = input (wrong output signature for a depth model).
    """
    x = helper.make_tensor_value_info("pixel_values", input_type, list(input_shape))
    n, _c, h, w = input_shape
    if kind == "red":
        idx = helper.make_tensor("idx", TensorProto.INT64, [1], [0])
        node = helper.make_node("Gather", ["pixel_values", "idx"], ["depth"], axis=1)
        y = helper.make_tensor_value_info("depth", input_type, [n, 1, h, w])
        graph = helper.make_graph([node], "tiny", [x], [y], initializer=[idx])
    elif kind == "mean":
        node = helper.make_node("ReduceMean", ["pixel_values"], ["depth"], axes=[1], keepdims=0)
        y = helper.make_tensor_value_info("depth", input_type, [n, h, w])
        graph = helper.make_graph([node], "tiny", [x], [y])
    elif kind == "same":
        node = helper.make_node("Identity", ["pixel_values"], ["depth"])
        y = helper.make_tensor_value_info("depth", input_type, list(input_shape))
        graph = helper.make_graph([node], "tiny", [x], [y])
    else:
        raise ValueError(kind)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def red_model(tmp_path) -> Path:
    return save_model(tmp_path / "red.onnx", ["batch", 3, "height", "width"], "red")


def provider_for(path: Path, **kw) -> OnnxProvider:
    return OnnxProvider(OnnxProviderConfig(model_path=str(path), **kw))


def gradient_image(w: int, h: int, colour=(1.0, 0.0, 0.0)) -> Image.Image:
    """A smooth horizontal ramp (resizing it changes little), tinted by `colour`."""
    ramp = np.linspace(0, 1, w, dtype=np.float32)[None, :].repeat(h, 0)
    rgb = np.stack([ramp * c for c in colour], -1)
    return Image.fromarray((rgb * 255).round().astype(np.uint8))


def item(
    image_id: str, image: Image.Image | None = None, error: Exception | None = None
) -> ProviderInput:
    def load():
        if error is not None:
            raise error
        return image

    return ProviderInput(image_id=image_id, source_sha256="0" * 64, cache_key="k", load_image=load)


# --------------------------------------------------------------------------- pure pre/post-processing


@pytest.mark.parametrize(
    "w,h,input_size,multiple,expected",
    [
        (640, 480, 518, 14, (686, 518)),  # shorter side → 518, aspect kept, multiples of 14
        (480, 640, 518, 14, (518, 686)),
        (1000, 1000, 518, 14, (518, 518)),
        (640, 480, 384, 32, (512, 384)),  # MiDaS: multiples of 32
        (100, 50, 518, 14, (1036, 518)),  # small images are enlarged to the network's size
        (5000, 100, 70, 14, (280, 14)),  # extreme panorama: long side capped at 4 × input_size
    ],
)
def test_target_size_keeps_aspect_and_multiple(w, h, input_size, multiple, expected):
    tw, th = target_size(w, h, input_size, multiple)
    assert (tw, th) == expected
    assert tw % multiple == 0 and th % multiple == 0


def test_target_size_fixed_graph_wins():
    assert target_size(640, 480, 518, 14, fixed=(256, 256)) == (256, 256)


def test_preprocess_imagenet_normalisation_and_layout():
    img = Image.new("RGB", (30, 20), (255, 0, 128))
    x = preprocess(img, (28, 14), FAMILIES["depth_anything_v2"])
    assert x.dtype == np.float32 and x.shape == (3, 14, 28)
    expected = [
        (1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0],
        (0.0 - IMAGENET_MEAN[1]) / IMAGENET_STD[1],
        (128 / 255 - IMAGENET_MEAN[2]) / IMAGENET_STD[2],
    ]
    np.testing.assert_allclose(x[:, 5, 5], expected, rtol=1e-5)


def test_postprocess_resizes_back_and_accepts_channel_dim():
    out = np.arange(12, dtype=np.float32).reshape(1, 3, 4)
    y = postprocess(out, 8, 6)
    assert y.shape == (6, 8) and y.dtype == np.float32
    assert y[:, 0].mean() < y[:, -1].mean()  # orientation kept: columns grow left → right
    with pytest.raises(OnnxModelError, match="expected"):
        postprocess(np.zeros((2, 3, 4), np.float32), 8, 6)


# --------------------------------------------------------------------------- end to end on tiny graphs


def test_predict_end_to_end_red_channel(red_model):
    p = provider_for(red_model, input_size=28)
    p.check_ready()
    img = gradient_image(60, 40)
    [pred] = p.predict_many([item("a", img)])
    assert pred.status == "succeeded", pred.error
    assert pred.depth.shape == (40, 60) and pred.depth.dtype == np.float32
    # The graph returns the normalised red channel; after resize there and back it must still be
    # the source ramp, normalised with ImageNet's red mean/std.
    red = np.asarray(img, dtype=np.float32)[..., 0] / 255.0
    expected = (red - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    assert np.abs(pred.depth - expected)[:, 3:-3].max() < 0.05
    assert pred.metric is False


def test_batching_groups_same_size_inputs_and_keeps_order(red_model, monkeypatch):
    p = provider_for(red_model, input_size=28, batch_size=4)
    p.check_ready()
    batches = []
    real_run = p._session.run

    def spy(names, feeds):
        batches.append(next(iter(feeds.values())).shape)
        return real_run(names, feeds)

    monkeypatch.setattr(p._session, "run", spy)
    bright = [gradient_image(60, 40, (1.0, 0, 0)), gradient_image(60, 40, (0.2, 0, 0))]
    other_shape = gradient_image(40, 60, (0.6, 0, 0))
    items = [
        item("a", bright[0]),
        item("b", bright[1]),
        item("c", other_shape),
        item("d", bright[0]),
    ]
    preds = p.predict_many(items)
    assert [x.image_id for x in preds] == ["a", "b", "c", "d"]
    assert all(x.status == "succeeded" for x in preds)
    # a and b share an input size → one batch of 2; c differs → its own; d starts a new batch
    assert [b[0] for b in batches] == [2, 1, 1]
    assert preds[0].depth.mean() > preds[1].depth.mean()  # each image got its own output
    np.testing.assert_allclose(preds[0].depth, preds[3].depth, atol=1e-6)
    assert preds[2].depth.shape == (60, 40)


def test_fixed_size_graph_gets_exact_input(tmp_path):
    path = save_model(tmp_path / "fixed.onnx", [1, 3, 28, 42], "mean")
    p = provider_for(path, batch_size=8)
    seen = []
    p.check_ready()
    real_run = p._session.run
    p._session.run = lambda names, feeds: (
        seen.append(next(iter(feeds.values())).shape),
        real_run(names, feeds),
    )[1]
    preds = p.predict_many([item("a", gradient_image(100, 30)), item("b", gradient_image(30, 100))])
    assert all(x.status == "succeeded" for x in preds)
    assert seen == [(1, 3, 28, 42), (1, 3, 28, 42)]  # static batch of 1, static size
    assert preds[0].depth.shape == (30, 100) and preds[1].depth.shape == (100, 30)


def test_one_bad_image_fails_alone(red_model):
    p = provider_for(red_model, input_size=28, batch_size=4)
    preds = p.predict_many(
        [
            item("ok1", gradient_image(30, 20)),
            item("bad", error=OSError("truncated file")),
            item("ok2", gradient_image(30, 20)),
        ]
    )
    assert [x.status for x in preds] == ["succeeded", "failed", "succeeded"]
    assert "truncated file" in preds[1].error and preds[1].depth is None


# --------------------------------------------------------------------------- identity and cache keys


def test_model_identity_and_cache_key_follow_file_hash(tmp_path, red_model):
    p = provider_for(red_model, input_size=28)
    sha = file_sha256(red_model)
    assert p.name == "onnx" and p.model == "red.onnx"
    assert p.model_version == sha[:12]
    params = p.cache_params()
    assert params["model_sha256"] == sha and params["family"] == "depth_anything_v2"
    assert params["input_size"] == 28
    key_before = p.cache_key("ab" * 32)
    # another model at the same path → another hash → another cache key and version
    save_model(red_model, ["batch", 3, "height", "width"], "mean")
    assert p.model_version == file_sha256(red_model)[:12] != sha[:12]
    assert p.cache_key("ab" * 32) != key_before
    # family and input size are part of the key too
    assert provider_for(red_model, input_size=56).cache_key("ab" * 32) != p.cache_key("ab" * 32)
    assert provider_for(red_model, family="midas").cache_key("ab" * 32) != p.cache_key("ab" * 32)


# --------------------------------------------------------------------------- clear errors


def test_missing_file_error_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "depth_anything_v2_vits.onnx"
    p = provider_for(missing)
    with pytest.raises(OnnxModelError, match="not found") as exc:
        p.check_ready()
    assert str(missing) in str(exc.value)
    [pred] = p.predict_many([item("a", gradient_image(30, 20))])
    assert pred.status == "failed" and str(missing) in pred.error


def test_corrupt_file_error_names_the_path(tmp_path):
    bad = tmp_path / "corrupt.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a protobuf model" * 10)
    with pytest.raises(OnnxModelError, match="not a valid ONNX model") as exc:
        provider_for(bad).check_ready()
    assert str(bad) in str(exc.value)


def test_truncated_model_is_rejected(tmp_path, red_model):
    data = red_model.read_bytes()
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(OnnxModelError, match=str(cut).replace("\\", "\\\\")):
        provider_for(cut).check_ready()


@pytest.mark.parametrize(
    "shape,kind,match",
    [
        (
            [1, 1, "height", "width"],
            "red",
            r"input 'pixel_values' has shape \[1, 1, 'height', 'width'\]",
        ),
        (["batch", 3, "height", "width"], "same", r"output has shape"),
    ],
)
def test_wrong_signature_is_explained(tmp_path, shape, kind, match):
    path = save_model(tmp_path / "wrong.onnx", shape, kind)
    with pytest.raises(OnnxModelError, match=match) as exc:
        provider_for(path).check_ready()
    assert str(path) in str(exc.value)


def test_unavailable_execution_provider_is_explained(red_model):
    p = provider_for(red_model, execution_providers=["NoSuchExecutionProvider"])
    with pytest.raises(OnnxModelError, match="NoSuchExecutionProvider"):
        p.check_ready()


# --------------------------------------------------------------------------- config and import


def test_catalog_yaml_shape_builds_the_onnx_provider(red_model):
    cat = CatalogConfig.model_validate(
        {
            "name": "shop",
            "source": {"type": "local_dir", "path": "/tmp/x"},
            "provider": {
                "name": "onnx",
                "model_path": str(red_model),
                "family": "depth_anything_v2",
            },
        }
    )
    p = build_provider(cat.provider)
    assert isinstance(p, OnnxProvider) and p.model == "red.onnx"
    assert p.config.input_size == 518


def test_onnxruntime_is_not_imported_at_package_import():
    code = (
        "import sys, flux_depth_assets.providers.onnx, flux_depth_assets.providers.factory; "
        "print('onnxruntime' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_failed_batch_is_retried_image_by_image(red_model, monkeypatch):
    p = provider_for(red_model, input_size=28, batch_size=3)
    p.check_ready()
    real_run = p._session.run
    calls = []

    def flaky(names, feeds):  # a batch of several fails (say, out of GPU memory); single images run
        x = next(iter(feeds.values()))
        calls.append(x.shape[0])
        if x.shape[0] > 1:
            raise RuntimeError("simulated allocation failure")
        if float(x.max()) > 2.0:  # the bright image fails on its own too
            raise RuntimeError("simulated kernel failure")
        return real_run(names, feeds)

    monkeypatch.setattr(p._session, "run", flaky)
    imgs = [
        gradient_image(30, 20, (0.3, 0, 0)),
        gradient_image(30, 20, (1.0, 0, 0)),
        gradient_image(30, 20, (0.2, 0, 0)),
    ]
    preds = p.predict_many([item(str(i), im) for i, im in enumerate(imgs)])
    assert calls == [3, 1, 1, 1]
    assert [x.status for x in preds] == ["succeeded", "failed", "succeeded"]
    assert "simulated kernel failure" in preds[1].error
