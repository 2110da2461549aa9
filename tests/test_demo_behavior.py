"""Demo behavior generator: truth, DeepLabCut-format pose, annotations, rendered video."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
from movement.io import load_poses

from neurovid.demo.behavior import (
    BODY_LENGTH_CM,
    BODYPARTS,
    LABELS,
    REARING_LENGTH,
    bouts_to_labels,
    label_bouts,
    read_truth,
    render_video,
    simulate_open_field,
    write_annotations,
    write_dlc_pose,
    write_truth,
)


@pytest.fixture(scope="module")
def truth():
    return simulate_open_field(30, fps=30, seed=0)


def decode_gray(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="gray") for f in container.decode(video=0)])


def test_simulation_has_bouts_posture_and_stays_in_the_arena(truth) -> None:
    assert truth.pose.shape == (900, 4, 2) and truth.bodyparts == BODYPARTS
    assert set(truth.labels) == set(LABELS)
    assert truth.px_per_cm == pytest.approx(220 / 40)
    bouts = label_bouts(truth.labels)
    counts = bouts["label"].value_counts()
    assert counts["rearing"] >= 2 and counts["grooming"] >= 2
    seconds = (bouts["stop_frame"] - bouts["start_frame"]) / truth.fps
    assert seconds.min() >= 0.5 - 1 / truth.fps and seconds.max() <= 3.0 + 1 / truth.fps
    # Bouts happen in place: the tail base does not move.
    tail = truth.bodypart("tailbase")
    for start, stop in bouts[["start_frame", "stop_frame"]].itertuples(index=False):
        assert np.ptp(tail[start:stop], axis=0).max() < 1e-9
    # The whole body stays inside the arena.
    x0, y0, w, h = truth.arena_px
    assert truth.pose[..., 0].min() > x0 and truth.pose[..., 0].max() < x0 + w
    assert truth.pose[..., 1].min() > y0 and truth.pose[..., 1].max() < y0 + h
    # Posture: full body length while walking, shortened at the height of a rear.
    length = np.linalg.norm(truth.bodypart("snout") - tail, axis=1) / truth.px_per_cm
    walking = (truth.labels == "other") & (np.linalg.norm(np.gradient(tail, axis=0), axis=1) > 0)
    assert np.allclose(length[walking], BODY_LENGTH_CM)
    first_rear = bouts[bouts["label"] == "rearing"].iloc[0]
    middle = (first_rear.start_frame + first_rear.stop_frame) // 2
    assert length[middle] == pytest.approx(REARING_LENGTH * BODY_LENGTH_CM, rel=0.05)
    # The walk covers ground at mouse speeds (cm/s).
    speed = np.linalg.norm(np.diff(truth.centroid(), axis=0), axis=1) * truth.fps
    assert 5 < np.percentile(speed / truth.px_per_cm, 90) < 30


def test_same_seed_same_truth_and_truth_file_round_trips(truth, tmp_path: Path) -> None:
    again = simulate_open_field(30, fps=30, seed=0)
    other = simulate_open_field(30, fps=30, seed=1)
    assert np.array_equal(again.pose, truth.pose) and np.array_equal(again.labels, truth.labels)
    assert not np.allclose(other.pose, truth.pose)
    write_truth(truth, tmp_path / "truth.h5")
    back = read_truth(tmp_path / "truth.h5")
    assert np.array_equal(back.pose, truth.pose) and np.array_equal(back.labels, truth.labels)
    assert (back.fps, back.size, back.arena_px, back.arena_cm, back.bodyparts) == (
        truth.fps,
        truth.size,
        truth.arena_px,
        truth.arena_cm,
        truth.bodyparts,
    )


def test_dlc_pose_reads_back_with_movement(truth, tmp_path: Path) -> None:
    path = tmp_path / "pose" / "demo.h5"
    write_dlc_pose(truth, path, noise_px=1.0, dropout=0.02, seed=3, scorer="DLC_test")
    assert path.with_suffix(".csv").is_file()
    raw = pd.read_hdf(path, key="df_with_missing")
    assert raw.columns.names == ["scorer", "bodyparts", "coords"]
    assert set(raw.columns.get_level_values("scorer")) == {"DLC_test"}
    for source in (path, path.with_suffix(".csv")):
        ds = load_poses.from_dlc_file(source, fps=truth.fps)
        assert list(ds.keypoints.values) == list(BODYPARTS)
        position = ds.position.sel(individuals=ds.individuals[0]).transpose(
            "time", "keypoints", "space"
        )
        confidence = ds.confidence.sel(individuals=ds.individuals[0]).values  # [T, K]
        error = np.linalg.norm(position.values - truth.pose, axis=2)
        tracked = confidence >= 0.9
        lost = confidence < 0.1
        assert tracked.sum() + lost.sum() == error.size
        assert lost.mean() == pytest.approx(0.02, abs=0.005)
        # Tracked points: 2-D Gaussian noise of 1 px (Rayleigh: mean 1.25, 99.9% under 3.7).
        assert error[tracked].mean() == pytest.approx(1.25, rel=0.1)
        assert error[tracked].max() < 5.0
        assert np.median(error[lost]) > 8.0  # dropouts are jittered off the body part
        assert ds.time.values[1] == pytest.approx(1 / truth.fps)


def test_label_bouts_and_annotations_round_trip(truth, tmp_path: Path) -> None:
    labels = np.array(["rearing", "rearing", "other", "grooming", "grooming", "rearing", "other"])
    bouts = label_bouts(labels)
    assert bouts.to_dict("list") == {
        "start_frame": [0, 3, 5],
        "stop_frame": [2, 5, 6],
        "label": ["rearing", "grooming", "rearing"],
    }
    assert list(bouts_to_labels(bouts, len(labels))) == list(labels)
    assert label_bouts(np.array(["other"] * 3)).empty
    write_annotations(truth, tmp_path / "ann.csv")
    assert (tmp_path / "ann.csv").read_text().splitlines()[0] == "start_frame,stop_frame,label"
    back = pd.read_csv(tmp_path / "ann.csv")
    assert np.array_equal(bouts_to_labels(back, truth.n_frames), truth.labels)


def test_rendered_labels_are_visually_distinct(tmp_path: Path) -> None:
    truth = simulate_open_field(30, fps=15, seed=2)
    path = tmp_path / "demo.mp4"
    render_video(truth, path)
    frames = decode_gray(path).astype(float)
    assert frames.shape == (truth.n_frames, 240, 320)
    x0, y0, w, h = (int(v) for v in truth.arena_px)
    arena = frames[:, y0 + 4 : y0 + h - 4, x0 + 4 : x0 + w - 4]
    mouse = arena < 160  # everything darker than the bright floor
    mouse_gray = np.array([f[m].mean() for f, m in zip(arena, mouse, strict=True)])
    # Pixels that changed between frames by far more than the sensor noise (sd 2).
    change = np.r_[0, (np.abs(np.diff(arena, axis=0)) > 25).sum(axis=(1, 2))]
    centroid_step = np.r_[0, np.linalg.norm(np.diff(truth.centroid(), axis=0), axis=1)]
    labels = truth.labels
    still_other = (labels == "other") & (centroid_step == 0)
    assert still_other.sum() > 5  # the seed has stops to compare grooming with
    # Rearing: the body is lighter (closer to the camera).
    assert (
        np.median(mouse_gray[labels == "rearing"]) > np.median(mouse_gray[labels == "other"]) + 15
    )
    # Grooming: the body wobbles while the mouse stays in place; a stopped mouse is still.
    assert np.median(change[labels == "grooming"]) > 20
    assert np.median(change[still_other]) < 2
    # The video is the truth: the mouse's dark pixels sit around the true centroid.
    ys, xs = np.nonzero(mouse[100])
    centre = np.array([xs.mean() + x0 + 4, ys.mean() + y0 + 4])
    assert np.linalg.norm(centre - truth.centroid()[100]) < 0.3 * BODY_LENGTH_CM * truth.px_per_cm
