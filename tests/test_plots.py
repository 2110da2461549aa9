"""Figures: written atomically as PNG, with provenance in the metadata and stable bytes."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

from neurovid.plots import glass_brain_figure, score_histogram, thresholded, traces_figure


def description(path: Path) -> dict:
    with Image.open(path) as image:
        return json.loads(image.text["Description"])


def test_score_histogram_is_reproducible_and_carries_provenance(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    scores = {
        "sub-01": rng.normal(0.1, 0.1, 500),
        "sub-02": np.r_[rng.normal(0.2, 0.1, 500), np.nan],
    }
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    score_histogram(scores, first, "model", {"step": "test", "params": {"k": 1}})
    score_histogram(scores, second, "model", {"step": "test", "params": {"k": 1}})
    assert first.read_bytes() == second.read_bytes()
    assert description(first) == {"params": {"k": 1}, "step": "test"}
    assert not list(tmp_path.glob(".*tmp*"))


def test_traces_show_the_first_run_only(tmp_path: Path) -> None:
    t = np.arange(40) * 0.5
    predictions = {
        "times": np.r_[t, t],
        "run": np.array(["run-1"] * 40 + ["run-2"] * 40),
        "recorded": np.vstack([np.sin(t)[:, None] * [1, 2]] * 2),
        "predicted": np.vstack([np.sin(t)[:, None] * [0.9, 1.5]] * 2),
        "target_names": np.array(["n000", "n001"]),
        "r": np.array([0.9, 0.8]),
    }
    out = tmp_path / "traces.png"
    traces_figure(predictions, out, "m / s", seconds=10, provenance={"step": "traces"})
    with Image.open(out) as image:
        width, height = image.size
    assert height > width * 0.3 and description(out)["step"] == "traces"


def test_thresholded_map_keeps_only_fdr_voxels_and_glass_brain_renders(tmp_path: Path) -> None:
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = [-90, -126, -72]
    t = np.zeros((45, 54, 45), dtype=np.float32)
    t[20:25, 5:10, 20:25] = 8.0
    t[30, 30, 30] = 3.0  # not significant
    significant = (t > 5).astype(np.uint8)
    shown = thresholded(
        nib.Nifti1Image(t, affine), nib.Nifti1Image(significant, affine)
    ).get_fdata()
    assert shown[22, 7, 22] == 8.0 and shown[30, 30, 30] == 0.0 and np.count_nonzero(shown) == 125
    out = tmp_path / "glass.png"
    glass_brain_figure(
        nib.Nifti1Image(t, affine),
        nib.Nifti1Image(significant, affine),
        out,
        "t",
        {"step": "glass"},
    )
    assert description(out)["step"] == "glass" and out.stat().st_size > 10_000
