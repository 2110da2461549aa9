"""The behavior stage's rule bodies (neurovid.behavior.pipeline) on a short rendered session."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neurovid.behavior import pipeline
from neurovid.demo import behavior
from neurovid.errors import InputError
from neurovid.io import write_json


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("session")
    truth = behavior.simulate_open_field(12, fps=15, seed=3)
    paths = {k: root / name for k, name in [("video", "s.mp4"), ("pose", "s.pose.h5"), ("annotations", "s.csv"), ("probe", "probe.json")]}  # fmt: skip
    behavior.render_video(truth, paths["video"], seed=3)
    behavior.write_dlc_pose(truth, paths["pose"], seed=3)
    behavior.write_annotations(truth, paths["annotations"])
    write_json(paths["probe"], {"video": {"fps": 15.0, "frames": truth.n_frames}})
    return {"truth": truth, **paths}


def test_video_timing_prefers_the_sheet_override(session: dict) -> None:
    assert pipeline.video_timing(session["probe"]) == pipeline.VideoTiming(15.0, 180)
    assert pipeline.video_timing(session["probe"], 30).fps == 30.0
    assert pipeline.video_timing(session["probe"], float("nan")).fps == 15.0


def test_pose_array_drops_low_likelihood_points(session: dict) -> None:
    pose, parts, individuals = pipeline.read_pose_array(session["pose"], 15.0)
    truth = session["truth"]
    assert pose.shape == (180, 4, 2) and parts == list(truth.bodyparts)
    assert len(individuals) == 1
    dropped = np.isnan(pose[..., 0])
    assert 0 < dropped.mean() < 0.06  # the generator's 2% dropouts (likelihood < 0.1)
    error = np.linalg.norm(pose - truth.pose, axis=-1)[~dropped]
    assert np.median(error) < 2.0  # 1 px noise on kept points


def test_pose_of_another_video_is_refused(session: dict, tmp_path: Path) -> None:
    probe = tmp_path / "probe.json"
    write_json(probe, {"video": {"fps": 15.0, "frames": 400}})
    with pytest.raises(InputError, match=r"180 frames but the video has 400.*same video"):
        pipeline._features(session["pose"], pipeline.video_timing(probe), {})


def test_labeled_frames_from_annotations(session: dict, tmp_path: Path) -> None:
    out = tmp_path / "frames"
    item = (session["video"], session["annotations"], session["probe"], None)
    counts = pipeline.write_labeled_frames([item], out, per_class=5, seed=0)
    labels = behavior.label_bouts(session["truth"].labels)
    expected = {"other"} | set(labels["label"])
    assert set(counts) == expected and all(n == 5 for n in counts.values())
    for label in expected:
        assert len(list((out / label).glob("*.png"))) == 5
    sidecar = json.loads((out / "labeled_frames.json").read_text())
    assert sidecar["counts"] == counts and sidecar["provenance"]["params"]["per_class"] == 5
    # Every file comes from a frame carrying its folder's label.
    truth_labels = session["truth"].labels
    for png in (out / "rearing").glob("*.png"):
        assert truth_labels[int(png.stem.split("_f")[1])] == "rearing"


def test_evaluation_pools_videos_end_to_end(session: dict, tmp_path: Path) -> None:
    bouts = pd.read_csv(session["annotations"])
    perfect = tmp_path / "perfect.csv"
    bouts.assign(score=1.0).to_csv(perfect, index=False)
    nothing = tmp_path / "nothing.csv"
    bouts.iloc[:0].assign(score=[]).to_csv(nothing, index=False)
    items = [
        ("a", perfect, session["annotations"], session["probe"], None),
        ("b", nothing, session["annotations"], session["probe"], None),
    ]
    table = pipeline.evaluate_videos(items)
    pooled = table[(table["video"] == "all") & (table["label"] == "all")].iloc[0]
    a = table[(table["video"] == "a") & (table["label"] == "all")].iloc[0]
    assert a["precision"] == a["recall"] == 1.0
    # Video b predicts nothing: pooled recall halves, precision stays 1 (no cross-video match).
    assert pooled["n_true"] == 2 * len(bouts) and pooled["n_pred"] == len(bouts)
    assert pooled["recall"] == pytest.approx(0.5) and pooled["precision"] == 1.0
