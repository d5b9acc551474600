"""The depth-quality metrics: least-squares alignment in disparity space, AbsRel and δ1 in depth space."""

from __future__ import annotations

import numpy as np
import pytest

from flux_depth_assets.depth import quality as q


def test_alignment_recovers_known_scale_and_shift():
    rng = np.random.default_rng(1)
    gt = rng.uniform(2, 20, size=(12, 9))
    pred = (gt - 3.0) / 2.5  # gt = 2.5 * pred + 3
    s, t = q.align_scale_shift(pred, gt, np.ones(gt.shape, bool))
    assert s == pytest.approx(2.5) and t == pytest.approx(3.0)


def test_alignment_uses_only_masked_pixels():
    gt = np.array([[1.0, 2.0, 3.0, 99.0]])
    pred = np.array([[0.0, 1.0, 2.0, -50.0]])
    mask = np.array([[True, True, True, False]])
    s, t = q.align_scale_shift(pred, gt, mask)
    assert (s, t) == (pytest.approx(1.0), pytest.approx(1.0))


def test_constant_prediction_aligns_to_mean():
    gt = np.array([[2.0, 4.0], [6.0, 8.0]])
    s, t = q.align_scale_shift(np.full(gt.shape, 7.0), gt, np.ones(gt.shape, bool))
    assert s == 0.0 and t == pytest.approx(5.0)


def test_perfect_affine_prediction_scores_perfectly():
    gt = np.linspace(5, 50, 200).reshape(10, 20)
    gt[0, :5] = 0  # unknown pixels are ignored, whatever the prediction says there
    pred = 0.01 * gt - 0.2
    pred[0, :5] = 1e6
    sc = q.score_disparity(pred, gt)
    assert sc.abs_rel == pytest.approx(0.0, abs=1e-9)
    assert sc.delta1 == 1.0
    assert sc.valid_pixels == 195


def test_abs_rel_and_delta1_by_hand():
    gt = np.array([1.0, 2.0, 4.0])
    pred = np.array([1.2, 1.0, 4.0])
    assert q.abs_rel(pred, gt) == pytest.approx((0.2 + 0.5 + 0.0) / 3)
    # ratios 1.2, 2.0, 1.0 → two of three below 1.25
    assert q.delta1(pred, gt) == pytest.approx(2 / 3)


def test_scores_are_in_depth_space_not_disparity_space():
    # gt disparity [1, 2, 4], prediction [0, 1, 1]: the LSQ fit is s = 2, t = 1 → aligned [1, 3, 3].
    gt = np.array([[1.0, 2.0, 4.0]])
    pred = np.array([[0.0, 1.0, 1.0]])
    sc = q.score_disparity(pred, gt)
    assert (sc.scale, sc.shift) == (pytest.approx(2.0), pytest.approx(1.0))
    # depth space: |1/a - 1/g| / (1/g) = |g/a - 1| = [0, 1/3, 1/3]   (disparity space would be 0.25)
    assert sc.abs_rel == pytest.approx(2 / 9)
    # ratios 1, 1.5, 1.33 → only the first is within 1.25
    assert sc.delta1 == pytest.approx(1 / 3)


def test_non_positive_aligned_disparity_is_clipped_to_floor():
    # A prediction that anti-correlates at one pixel: the affine fit drives it below zero.
    gt = np.array([[10.0, 10.0, 10.0, 1.0, 20.0]])
    pred = np.array([[0.0, 0.0, 0.0, -10.0, 10.0]])
    s, t = q.align_scale_shift(pred, gt, np.ones(gt.shape, bool))
    aligned = s * pred + t
    assert aligned.min() < 1.0  # below the GT's smallest disparity, the default floor
    sc = q.score_disparity(pred, gt)
    assert np.isfinite(sc.abs_rel) and 0 <= sc.delta1 <= 1
    clipped = np.maximum(aligned, 1.0).ravel()
    expected = np.mean(np.abs(1 / clipped - 1 / gt.ravel()) * gt.ravel())
    assert sc.abs_rel == pytest.approx(expected)
    # an explicit floor is honoured and must be positive
    assert q.score_disparity(pred, gt, floor=0.5).abs_rel != pytest.approx(sc.abs_rel)
    with pytest.raises(ValueError, match="floor"):
        q.score_disparity(pred, gt, floor=0.0)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="shape"):
        q.score_disparity(np.zeros((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="no valid pixels"):
        q.score_disparity(np.zeros((2, 2)), np.zeros((2, 2)))


def test_nan_predictions_are_excluded():
    gt = np.array([[1.0, 2.0, 3.0, 4.0]])
    pred = np.array([[1.0, 2.0, 3.0, np.nan]])
    sc = q.score_disparity(pred, gt)
    assert sc.valid_pixels == 3 and sc.delta1 == 1.0


def test_baselines():
    v = q.vertical_gradient_baseline((5, 3))
    assert v.shape == (5, 3) and v.dtype == np.float32
    assert v[0].tolist() == [0, 0, 0] and v[-1].tolist() == [1, 1, 1]
    assert np.all(np.diff(v[:, 1]) > 0)
    c = q.constant_baseline((4, 2))
    assert c.shape == (4, 2) and np.ptp(c) == 0
    # the constant baseline scores exactly as "every pixel at the mean GT disparity"
    gt = np.array([[1.0, 3.0], [1.0, 3.0]])
    sc = q.score_disparity(q.constant_baseline(gt.shape), gt)
    assert sc.delta1 == 0.0  # depth 0.5 vs 1 and vs 1/3: ratios 2 and 1.5
    assert sc.abs_rel == pytest.approx((0.5 + 0.5) / 2)


# --------------------------------------------------------------------------- the benchmark script


def _write_scene(root, name, gt_kind="disparity"):
    import json

    from PIL import Image

    d = root / name
    d.mkdir(parents=True)
    h, w = 48, 64
    yy = np.linspace(1.0, 4.0, h, dtype=np.float32)[:, None].repeat(w, 1)  # bottom is near
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 1] = (yy * 50).astype(np.uint8)
    Image.fromarray(rgb).save(d / "image.png")
    if gt_kind == "disparity":
        gt = yy.copy()
        gt[:2] = 0  # unknown
        np.save(d / "disparity.npy", gt)
    else:
        np.save(d / "depth.npy", 1.0 / yy)
    (d / "manifest.json").write_text(json.dumps({"gt": gt_kind}))


def test_benchmark_runs_on_a_scene_folder(tmp_path, capsys, monkeypatch):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "depth_quality.py"
    spec = importlib.util.spec_from_file_location("depth_quality_bench", path)
    bench = importlib.util.module_from_spec(spec)
    import sys

    monkeypatch.setitem(sys.modules, spec.name, bench)  # dataclasses look their module up there
    spec.loader.exec_module(bench)

    _write_scene(tmp_path, "ramp_a", "disparity")
    _write_scene(tmp_path, "ramp_b", "depth")
    (tmp_path / "not_a_scene").mkdir()
    scenes = bench.load_scenes(tmp_path)
    assert [s.name for s in scenes] == ["ramp_a", "ramp_b"]
    assert scenes[1].gt_disparity[0, 0] == pytest.approx(1.0)  # depth 1/1 → disparity 1

    out_json = tmp_path / "out.json"
    assert bench.main(["--data", str(tmp_path), "--loo", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "| ramp_a |" in text and "| **average** |" in text and "leave-one-scene-out" in text
    import json

    figures = json.loads(out_json.read_text())
    # On a pure vertical ramp the vertical baseline is perfect and the constant one is not.
    assert figures["scores"]["vertical"]["ramp_a"]["delta1"] == 1.0
    assert figures["scores"]["constant"]["ramp_a"]["delta1"] < 1.0
    assert set(figures["loo"]) == {"ramp_a", "ramp_b"}
