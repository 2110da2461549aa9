"""Behavior figures: the PNG is written with provenance and shows the data given."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from neurovid.behavior.plots import (
    confusion_matrix_figure,
    ethogram,
    label_colors,
    segment_timeline,
    speed_trace,
    trajectory_heatmap,
)


def description(path: Path) -> dict:
    with Image.open(path) as image:
        assert image.size[0] > 200 and image.size[1] > 100
        return json.loads(image.text["Description"])


def bars(ax) -> dict[tuple[str, float], list[tuple[float, float]]]:
    """(label, row centre) -> [(start, width)] of every broken_barh on ``ax``."""
    out = {}
    for collection in ax.collections:
        paths = collection.get_paths()
        boxes = [p.get_extents() for p in paths]
        if not boxes:
            continue
        row = round((boxes[0].y0 + boxes[0].y1) / 2, 6)
        out[(collection.get_label(), row)] = [(b.x0, b.width) for b in boxes]
    return out


def test_ethogram_draws_each_bout_per_video(tmp_path: Path) -> None:
    fps = 10.0
    labels = {
        "mouse-a": ["other"] * 5 + ["rearing"] * 10 + ["other"] * 5 + ["grooming"] * 20,
        "mouse-b": np.array(["grooming"] * 3 + ["other"] * 7 + ["grooming"] * 5),
    }
    out = tmp_path / "ethogram.png"
    fig = ethogram(labels, fps, out, provenance={"step": "test-ethogram"})
    assert description(out) == {"step": "test-ethogram"}
    drawn = bars(fig.axes[0])
    assert drawn[("rearing", 0.0)] == [pytest.approx((0.5, 1.0))]
    assert drawn[("grooming", 0.0)] == [pytest.approx((2.0, 2.0))]
    assert drawn[("grooming", -1.0)] == [pytest.approx((0.0, 0.3)), pytest.approx((1.0, 0.5))]
    assert not any(label == "other" for label, _ in drawn)  # background stays blank
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["mouse-a", "mouse-b"]
    assert fig.axes[0].get_xlim() == (0.0, 4.0)


def test_trajectory_heatmap_counts_time_per_bin(tmp_path: Path) -> None:
    fps = 20.0
    # 40 frames at (5, 5) cm, 20 frames at (35, 15) cm, 3 missing, in a 40 x 20 cm arena.
    xy = np.r_[
        np.tile([5.0, 5.0], (40, 1)), np.tile([35.0, 15.0], (20, 1)), np.full((3, 2), np.nan)
    ]
    out = tmp_path / "heat.png"
    fig = trajectory_heatmap(xy, (0.0, 0.0, 40.0, 20.0), out, fps=fps, bin_cm=10.0)
    occupancy = np.asarray(fig.axes[0].images[0].get_array())
    assert occupancy.shape == (2, 4)  # rows = y bins, columns = x bins
    expected = np.zeros((2, 4))
    expected[0, 0], expected[1, 3] = 2.0, 1.0  # seconds
    assert np.allclose(occupancy, expected)
    assert fig.axes[0].get_ylim() == (20.0, 0.0)  # image axes, y down
    assert len(fig.axes[0].patches) == 2  # arena and its centre square
    assert description(out)["step"] == "trajectory_heatmap"


def test_speed_trace_plots_the_given_speed(tmp_path: Path) -> None:
    times = np.arange(100) / 10
    speed = np.abs(np.sin(times)) * 12
    labels = np.array(["other"] * 40 + ["rearing"] * 20 + ["other"] * 40)
    out = tmp_path / "speed.png"
    fig = speed_trace(times, speed, out, threshold=1.5, labels=labels)
    ax = fig.axes[0]
    trace = [line for line in ax.lines if line.get_label() == "speed"][0]
    assert np.array_equal(trace.get_xdata(), times) and np.array_equal(trace.get_ydata(), speed)
    threshold = [line for line in ax.lines if line.get_label() != "speed"][0]
    assert list(threshold.get_ydata()) == [1.5, 1.5]
    shaded = [p.get_extents() for p in ax.patches]
    assert len(shaded) == 1 and out.is_file()


def test_confusion_matrix_shows_row_fractions_and_counts(tmp_path: Path) -> None:
    matrix = np.array([[50, 5, 0], [2, 8, 0], [1, 0, 4]])
    classes = ["other", "rearing", "grooming"]
    out = tmp_path / "cm.png"
    fig = confusion_matrix_figure(matrix, classes, out)
    ax = fig.axes[0]
    shown = np.asarray(ax.images[0].get_array())
    assert np.allclose(shown, matrix / matrix.sum(axis=1, keepdims=True))
    texts = [t.get_text() for t in ax.texts]
    assert texts[0] == "50\n0.91" and texts[4] == "8\n0.80" and len(texts) == 9
    assert [t.get_text() for t in ax.get_xticklabels()] == classes
    with pytest.raises(ValueError, match="does not match 2 classes"):
        confusion_matrix_figure(matrix, classes[:2], tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_segment_timeline_rows_truth_and_prediction(tmp_path: Path) -> None:
    fps = 30.0
    truth = pd.DataFrame(
        {"start_frame": [30, 120], "stop_frame": [90, 150], "label": ["rearing", "grooming"]}
    )
    predicted = pd.DataFrame(
        {
            "start_frame": [33, 200],
            "stop_frame": [84, 230],
            "label": ["rearing", "rearing"],
            "score": [0.9, 0.6],
        }
    )
    out = tmp_path / "timeline.png"
    fig = segment_timeline(predicted, truth, 300, fps, out)
    drawn = bars(fig.axes[0])
    assert drawn[("rearing", 1.0)] == [pytest.approx((1.0, 2.0))]
    assert drawn[("grooming", 1.0)] == [pytest.approx((4.0, 1.0))]
    assert drawn[("rearing", 0.0)] == [pytest.approx((1.1, 1.7)), pytest.approx((200 / 30, 1.0))]
    assert fig.axes[0].get_xlim() == (0.0, 10.0)
    # One colour per label across figures.
    colors = label_colors(["grooming", "rearing", "walk"])
    assert colors["rearing"] == "tab:orange" and colors["grooming"] == "tab:green"
    assert description(out)["step"] == "segment_timeline"
