"""Two-stage action localization and its evaluation.

Hand-computed IoU, greedy matching, precision/recall, frame F1, hysteresis /
merging / minimum duration and pose features; annotation errors; the stage-2
labeler's choice rule; and both stages end to end on rendered demo videos with
a tiny random-weight Qwen2-VL (tests/_tiny_models.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _tiny_models import save_tiny_qwen2vl

from neurovid.behavior.actions import (
    ActionClassifier,
    SegmentEmbedder,
    SegmentLabeler,
    action_targets,
    candidate_segments,
    clip_indices,
    iter_segment_clips,
    load_model,
    localize_actions,
    pose_features,
    save_model,
    train_labeler,
    write_segments,
)
from neurovid.behavior.evaluation import (
    evaluate,
    frame_macro_f1,
    frames_from_segments,
    match_segments,
    read_annotations,
    segment_iou,
    segment_precision_recall,
)
from neurovid.errors import InputError


def segs(*rows: tuple[int, int, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["start_frame", "stop_frame", "label"])


# --------------------------------------------------------------------------- evaluation


def test_segment_iou_by_hand() -> None:
    assert segment_iou(0, 10, 5, 15) == pytest.approx(5 / 15)
    assert segment_iou(0, 10, 0, 10) == 1.0
    assert segment_iou(0, 5, 5, 10) == 0.0  # stop is exclusive: touching is no overlap
    assert segment_iou(0, 10, 0, 20) == 0.5
    assert segment_iou(3, 3, 3, 3) == 0.0  # empty union
    matrix = segment_iou(np.array([[0], [2]]), np.array([[10], [4]]), np.array([[0, 5]]), 10)
    np.testing.assert_allclose(matrix, [[1.0, 0.5], [0.2, 0.0]])


def test_segment_precision_recall_by_hand() -> None:
    truth = segs((0, 10, "rearing"), (20, 30, "rearing"), (40, 50, "grooming"))
    pred = segs(
        (0, 8, "rearing"),  # IoU 0.8 with truth 0
        (2, 12, "rearing"),  # IoU 8/12 with truth 0, but truth 0 is taken by the better match
        (20, 30, "grooming"),  # perfect overlap with truth 1, wrong label
        (42, 50, "grooming"),  # IoU 0.8 with truth 2
        (60, 70, "grooming"),  # nothing there
    )
    assert match_segments(pred, truth) == [(0, 0, 0.8), (3, 2, 0.8)]
    table = segment_precision_recall(pred, truth).set_index("label")
    assert table.loc["rearing", ["n_true", "n_pred", "matched"]].tolist() == [2, 2, 1]
    assert table.loc["rearing", ["precision", "recall"]].tolist() == [0.5, 0.5]
    assert table.loc["grooming", ["n_true", "n_pred", "matched"]].tolist() == [1, 3, 1]
    assert table.loc["grooming", "precision"] == pytest.approx(1 / 3)
    assert table.loc["grooming", "recall"] == 1.0
    assert table.loc["all", ["n_true", "n_pred", "matched"]].tolist() == [3, 5, 2]
    assert table.loc["all", "precision"] == pytest.approx(2 / 5)
    assert table.loc["all", "recall"] == pytest.approx(2 / 3)
    assert table.loc["all", "f1"] == pytest.approx(2 * 2 / (5 + 3))
    # No predictions: recall 0, precision undefined (NaN), not a crash.
    empty = segment_precision_recall(pred.iloc[:0], truth).set_index("label")
    assert empty.loc["all", "recall"] == 0 and np.isnan(empty.loc["all", "precision"])


def test_greedy_matching_takes_the_best_iou_first_and_threshold_is_inclusive() -> None:
    truth = segs((0, 12, "a"), (20, 40, "a"))
    # Row order would pair pred 0 with truth 0 first; greedy by IoU pairs pred 1 (11/12 > 10/12).
    pred = segs((0, 10, "a"), (1, 12, "a"), (20, 30, "a"))
    matches = match_segments(pred, truth)
    assert [(p, t) for p, t, _ in matches] == [(1, 0), (2, 1)]
    assert matches[0][2] == pytest.approx(11 / 12) and matches[1][2] == 0.5  # IoU 0.5 counts
    assert match_segments(pred, truth, iou=0.51) == [(1, 0, pytest.approx(11 / 12))]


def test_frame_macro_f1_by_hand() -> None:
    true = ["o", "o", "r", "r", "r", "g", "g", "o"]
    pred = ["o", "r", "r", "r", "o", "g", "o", "o"]
    # other: TP 2, 4 predicted, 3 true -> 4/7; rearing: TP 2 of 3 and 3 -> 2/3; grooming: 1 of 2 and 1 -> 2/3
    assert frame_macro_f1(true, pred) == pytest.approx((4 / 7 + 2 / 3 + 2 / 3) / 3)
    assert frame_macro_f1(true, pred, ["r", "g"]) == pytest.approx(2 / 3)
    # A label that never occurs counts as F1 0 when asked for.
    assert frame_macro_f1(true, pred, ["r", "g", "x"]) == pytest.approx(4 / 9)


def test_frames_from_segments_and_evaluate_table() -> None:
    truth = segs((2, 5, "r"), (5, 7, "g"))
    pred = segs((1, 4, "r"), (5, 6, "g"))
    frames = frames_from_segments(pred, 8)
    assert frames.tolist() == ["other", "r", "r", "r", "other", "g", "other", "other"]
    table = evaluate(pred, truth, 8).set_index("label")
    assert table.index.tolist() == ["other", "g", "r", "all"]
    assert (table["iou_threshold"] == 0.5).all()
    # Segments: r [1,4) vs [2,5): IoU 2/4 = 0.5 -> match; g [5,6) vs [5,7): 1/2 -> match.
    assert table.loc["all", ["n_true", "n_pred", "matched"]].tolist() == [2, 2, 2]
    # Frames: true o o r r r g g o, pred o r r r o g o o (the frame F1 case above).
    assert table.loc["other", "frame_f1"] == pytest.approx(4 / 7)
    assert table.loc["all", "frame_f1"] == pytest.approx((4 / 7 + 2 / 3 + 2 / 3) / 3)
    assert table.loc["r", ["frames_true", "frames_pred"]].tolist() == [3, 3]
    assert np.isnan(table.loc["other", "precision"])


# ------------------------------------------------------------------------- annotations


def test_read_annotations_sorted_with_seconds(tmp_path: Path) -> None:
    path = tmp_path / "bouts.csv"
    path.write_text("start_frame,stop_frame,label\n30,45,grooming\n0, 15,rearing\n")
    table = read_annotations(path, n_frames=45, fps=15)
    assert table["start_frame"].tolist() == [0, 30] and table["stop_frame"].tolist() == [15, 45]
    assert table["label"].tolist() == ["rearing", "grooming"]
    assert table["stop_s"].tolist() == [1.0, 3.0]


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (
            "start_frame,stop_frame,label\n0,10,rearing\n40,52,grooming\n",
            r"bouts.csv \[stop_frame\]: row 2 \(line 3: 40,52,grooming\): stop_frame 52 exceeds "
            r"the video's length of 50 frames\. Fix: .*0-based.*stop_frame <= 50 for 50 frames at 10 fps",
        ),
        (
            "start_frame,stop_frame,label\n60,70,rearing\n",
            r"\[stop_frame\]: row 1 .*exceeds the video's length of 50 frames",
        ),
        (
            "start,stop,label,who\n0,10,rearing,me\n",
            r"\[start_frame, stop_frame, start, stop, who\]: .*lacks the columns \['start_frame', "
            r"'stop_frame'\] and has unknown columns \['start', 'stop', 'who'\].*Fix: use exactly",
        ),
        ("start_frame,stop_frame,label\n0,10.5,r\n", r"row 1 .*stop_frame = '10.5' is not"),
        ("start_frame,stop_frame,label\n-1,10,r\n", r"\[start_frame\]: row 1 .*'-1' is not"),
        ("start_frame,stop_frame,label\n8,8,r\n", r"stop_frame 8 is not after start_frame 8"),
        ("start_frame,stop_frame,label\n0,8,\n", r"\[label\]: row 1 .*label is empty"),
        (
            "start_frame,stop_frame,label\n20,30,g\n0,10,r\n5,12,g\n",
            r"rows 2 and 3 overlap \(\[0, 10\) r and \[5, 12\) g\)",
        ),
    ],
)
def test_read_annotations_errors(tmp_path: Path, text: str, pattern: str) -> None:
    path = tmp_path / "bouts.csv"
    path.write_text(text)
    with pytest.raises(InputError, match=pattern):
        read_annotations(path, n_frames=50, fps=10)


def test_read_annotations_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope.csv: the annotation file does not exist"):
        read_annotations(tmp_path / "nope.csv", n_frames=10)


# ---------------------------------------------------------------------- stage 1


def test_candidate_segments_hysteresis_merge_min_duration_by_hand() -> None:
    prob = np.array([0, 0.5, 0.7, 0.5, 0.3, 0.5, 0.5, 0, 0.8, 0.45, 0, 0.5, 0.5, 0.5])
    # Runs >= 0.4: [1,4) peaks 0.7 (kept), [5,7) peaks 0.5 (dropped: never >= 0.6),
    # [8,10) peaks 0.8 (kept), [11,14) peaks 0.5 (dropped).
    table = candidate_segments(prob, high=0.6, low=0.4)
    assert table[["start_frame", "stop_frame"]].values.tolist() == [[1, 4], [8, 10]]
    np.testing.assert_allclose(table["score"], [1.7 / 3, 1.25 / 2])
    # Gap 8 - 4 = 4 frames: merged at merge_gap 4, not at 3; the score covers the gap frames.
    merged = candidate_segments(prob, high=0.6, low=0.4, merge_gap=4)
    assert merged[["start_frame", "stop_frame"]].values.tolist() == [[1, 10]]
    assert merged["score"].iloc[0] == pytest.approx(prob[1:10].mean())
    assert len(candidate_segments(prob, high=0.6, low=0.4, merge_gap=3)) == 2
    # Minimum duration: [8,10) has 2 frames.
    short = candidate_segments(prob, high=0.6, low=0.4, min_frames=3)
    assert short[["start_frame", "stop_frame"]].values.tolist() == [[1, 4]]
    # Merging comes before the minimum duration: two 2-frame fragments make one 5-frame bout.
    pieces = np.array([0.9, 0.9, 0.0, 0.9, 0.9])
    assert candidate_segments(pieces, min_frames=4).empty
    kept = candidate_segments(pieces, min_frames=4, merge_gap=1)
    assert kept[["start_frame", "stop_frame"]].values.tolist() == [[0, 5]]
    assert kept["score"].iloc[0] == pytest.approx(0.72)
    # Segment at the very end, and no segment at all.
    assert candidate_segments(np.array([0, 0.9]))["stop_frame"].tolist() == [2]
    assert candidate_segments(np.zeros(5)).columns.tolist() == [
        "start_frame",
        "stop_frame",
        "score",
    ]
    with pytest.raises(InputError, match=r"low=0.7, high=0.6"):
        candidate_segments(prob, high=0.6, low=0.7)


def square_animal(n: int, step: tuple[float, float] = (3.0, 0.0)) -> np.ndarray:
    """[n, 4, 2]: snout, leftear, rightear, tailbase of a rigid shape moving ``step`` px/frame."""
    shape = np.array([[10.0, 0.0], [6.0, 2.0], [6.0, -2.0], [0.0, 0.0]])
    return shape[None] + np.arange(n)[:, None, None] * np.array(step)


PARTS = ("snout", "leftear", "rightear", "tailbase")


def test_pose_features_one_animal_by_hand() -> None:
    pose = square_animal(20) + 100.0
    pose[5, 0] = np.nan  # a dropped snout point is interpolated, not propagated
    table = pose_features(pose, PARTS, fps=10, context_s=0.5)
    np.testing.assert_allclose(table["speed_snout"], 30.0, rtol=1e-5)  # 3 px/frame at 10 fps
    np.testing.assert_allclose(table["speed_centroid"], 30.0, rtol=1e-5)
    np.testing.assert_allclose(table["dist_snout_tailbase"], 10.0, rtol=1e-6)
    np.testing.assert_allclose(table["dist_leftear_rightear"], 4.0, rtol=1e-6)
    # Angle at leftear between snout (4, -2) and rightear (0, -4): arccos(8 / (sqrt(20) * 4)).
    expected = np.arccos(8 / (np.sqrt(20) * 4))
    np.testing.assert_allclose(table["angle_snout_leftear_rightear"], expected, rtol=1e-5)
    np.testing.assert_allclose(table["turn_rate"], 0.0, atol=1e-6)
    # Context: 5-frame centred rolling mean / std of every column.
    assert {"speed_snout_mean", "speed_snout_std", "turn_rate_std"} <= set(table.columns)
    np.testing.assert_allclose(table["dist_snout_tailbase_std"], 0.0, atol=1e-5)
    assert table.shape == (20, 14 * 3) and table.dtypes.eq(np.float32).all()
    assert np.isfinite(table.to_numpy()).all()


def test_pose_features_turn_rate_and_two_animals() -> None:
    n, omega = 30, 0.1  # rad per frame
    angle = omega * np.arange(n)
    rotation = np.stack(
        [
            np.stack([np.cos(angle), -np.sin(angle)], -1),
            np.stack([np.sin(angle), np.cos(angle)], -1),
        ],
        axis=1,
    )  # [n, 2, 2]
    spinning = np.einsum("tij,kj->tki", rotation, square_animal(1)[0]) + 50
    table = pose_features(spinning, PARTS, fps=15, context_s=0)
    np.testing.assert_allclose(table["turn_rate"], omega * 15, rtol=1e-4)
    assert table.shape[1] == 14

    resident = square_animal(10)
    pose = np.stack([resident, resident + np.array([0.0, 50.0])], axis=1)  # intruder 50 px below
    pair = pose_features(pose, PARTS, fps=10, animals=["resident", "intruder"], context_s=0)
    np.testing.assert_allclose(pair["resident_snout__intruder_snout"], 50.0, rtol=1e-6)
    np.testing.assert_allclose(pair["resident__intruder_centroid_dist"], 50.0, rtol=1e-6)
    # Resident faces +x; the intruder's centroid is (5.5, 50) from its tail base.
    np.testing.assert_allclose(pair["resident_facing_intruder"], np.arctan2(50, 5.5), rtol=1e-5)
    np.testing.assert_allclose(pair["intruder_speed_snout"], 30.0, rtol=1e-5)
    assert pair.shape[1] == 2 * 14 + 16 + 3


def test_pose_features_bad_input() -> None:
    with pytest.raises(InputError, match=r"shape \(10, 3, 2\) for 4 body parts"):
        pose_features(np.zeros((10, 3, 2)), PARTS, fps=10)
    with pytest.raises(InputError, match=r"name body parts \['nose'\]"):
        pose_features(np.zeros((10, 4, 2)), PARTS, fps=10, angles=[("nose", "leftear", "tailbase")])
    with pytest.raises(InputError, match=r"2 animals in the pose but animal names \['a'\]"):
        pose_features(np.zeros((10, 2, 4, 2)), PARTS, fps=10, animals=["a"])


def test_action_classifier_balanced_seeded_and_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    action = np.zeros(400, bool)
    action[::10] = True  # 10% action frames
    features = pd.DataFrame({"a": rng.normal(size=400) + 2.0 * action, "b": rng.normal(size=400)})
    for method in ("gradient_boosting", "logistic"):
        model = ActionClassifier(method=method, max_iter=50).fit(features, action)
        prob = model.predict_proba(features)
        # Balanced weights: the rare class is still found (recall well above the 10% base rate).
        assert ((prob > 0.5) & action).sum() / action.sum() > 0.8
        again = ActionClassifier(method=method, max_iter=50).fit(features, action)
        np.testing.assert_array_equal(prob, again.predict_proba(features))
    save_model(tmp_path / "m.joblib", model)
    np.testing.assert_array_equal(load_model(tmp_path / "m.joblib").predict_proba(features), prob)
    with pytest.raises(InputError, match=r"all no-action \(400 frames\).*needs both"):
        ActionClassifier().fit(features, np.zeros(400, bool))
    with pytest.raises(InputError, match=r"lack 1 columns.*\['b'\]"):
        model.predict_proba(features[["a"]])
    with pytest.raises(InputError, match=r"'svm' is unknown"):
        ActionClassifier(method="svm")
    assert action_targets(["other", "rearing", "other"]).tolist() == [False, True, False]


# ---------------------------------------------------------------------- stage 2


def test_clip_indices_and_streamed_clips_by_hand() -> None:
    assert clip_indices(10, 20, 4).tolist() == [10, 13, 16, 19]
    assert clip_indices(5, 6, 4).tolist() == [5, 5, 5, 5]  # shorter than a clip: repeats
    # Frames whose pixels hold their own index, streamed in chunks of 4.
    frames = np.arange(24, dtype=np.float32)[:, None, None, None] * np.ones(
        (1, 2, 2, 3), np.float32
    )
    chunks = ((np.arange(i, i + 4) / 10, frames[i : i + 4]) for i in range(0, 24, 4))
    segments = pd.DataFrame({"start_frame": [12, 3], "stop_frame": [14, 11]})
    clips = dict(iter_segment_clips(chunks, segments, 4))
    assert clips[1][:, 0, 0, 0].tolist() == [3, 5, 8, 10]  # linspace(3, 10, 4) rounded
    assert clips[0][:, 0, 0, 0].tolist() == [12, 12, 13, 13]
    assert clips[0].shape == (4, 2, 2, 3)


def clusters(n_labels: int, per_label: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(0, 5, (n_labels, 16))
    labels = np.repeat([f"l{k}" for k in range(n_labels)], per_label)
    return centres[np.repeat(np.arange(n_labels), per_label)] + rng.normal(
        size=(len(labels), 16)
    ), labels


def test_segment_labeler_rule_accuracy_scores(tmp_path: Path) -> None:
    assert SegmentLabeler().fit(*clusters(2, 30, 0)).chosen == "centroid"  # few labels
    assert SegmentLabeler().fit(*clusters(4, 5, 0)).chosen == "centroid"  # few examples
    assert SegmentLabeler().fit(*clusters(4, 12, 0)).chosen == "mlp"  # 4 labels x >= 10
    assert SegmentLabeler(method="mlp").fit(*clusters(2, 30, 0)).chosen == "mlp"
    test_x, test_y = clusters(4, 10, 1)
    for labeler in (SegmentLabeler(method="centroid"), SegmentLabeler()):
        labeler.fit(*clusters(4, 12, 0))
        labels, scores = labeler.predict(test_x)
        assert (labels == test_y).all()
        assert ((scores > 0.5) & (scores <= 1)).all()
    # Nearest centroid: halfway between two centroids the score is ~1/2.
    centroid = SegmentLabeler().fit(*clusters(2, 30, 0))
    scaler, model = centroid.model[0], centroid.model[-1]
    middle = scaler.inverse_transform(model.centroids_.mean(0, keepdims=True))
    assert centroid.predict(middle)[1][0] == pytest.approx(0.5, abs=1e-6)
    single_labels, single_scores = SegmentLabeler().fit(test_x[:3], ["a"] * 3).predict(test_x)
    assert set(single_labels) == {"a"} and (single_scores == 1).all()
    save_model(tmp_path / "l.joblib", labeler)
    assert (load_model(tmp_path / "l.joblib").predict(test_x)[0] == labels).all()
    with pytest.raises(InputError, match=r"0 segment embeddings for 0 labels"):
        SegmentLabeler().fit(np.zeros((0, 4)), [])


def test_segment_embedder_settings() -> None:
    with pytest.raises(InputError, match=r"\[behavior.actions.embedder\].*multiples of 28"):
        SegmentEmbedder(model="x", clip_frames=3)
    with pytest.raises(InputError, match=r"multiples of 28"):
        SegmentEmbedder(model="x", height=100)


# ------------------------------------------------------------------- both stages


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two rendered demo sessions (train 60 s, test 40 s; 160x120 at 15 fps) and a tiny Qwen2-VL."""
    from neurovid.demo.behavior import render_video, simulate_open_field

    root = tmp_path_factory.mktemp("actions")
    out = {"model": save_tiny_qwen2vl(root / "qwen2vl")}
    for name, seconds, seed in (("train", 60, 1), ("test", 40, 2)):
        truth = simulate_open_field(seconds, fps=15, size=(160, 120), seed=seed)
        render_video(truth, root / f"{name}.mp4")
        out[name] = (truth, root / f"{name}.mp4")
    return out


def dlc_like_pose(truth, seed: int) -> np.ndarray:
    """Pose as a DLC run would give it: noisy, low-likelihood points dropped to NaN."""
    from neurovid.demo.behavior import dlc_dataframe

    table = dlc_dataframe(truth, seed=seed).to_numpy().reshape(truth.n_frames, -1, 3)
    pose = table[..., :2].copy()
    pose[table[..., 2] < 0.5] = np.nan
    return pose


def test_two_stage_localization_on_demo_videos(demo: dict, tmp_path: Path) -> None:
    from neurovid.demo.behavior import label_bouts, write_annotations

    (train, train_video), (test, test_video) = demo["train"], demo["test"]
    fps = train.fps
    # Stage 1: pose features -> per-frame action classifier, trained on the training session.
    features = pose_features(dlc_like_pose(train, 1), train.bodyparts, fps)
    classifier = ActionClassifier(method="logistic").fit(features, action_targets(train.labels))
    # Stage 2: tiny Qwen2-VL embeddings of the training bouts -> labeler.
    embedder = SegmentEmbedder(
        model=str(demo["model"]), layers=(0, -1), clip_frames=4, height=84, width=112, batch_size=4
    )
    bouts = label_bouts(train.labels)
    labeler = train_labeler([(train_video, bouts)], embedder, SegmentLabeler())
    assert labeler.chosen == "centroid" and labeler.classes == ["grooming", "rearing"]

    test_features = pose_features(dlc_like_pose(test, 2), test.bodyparts, fps)
    table = localize_actions(test_video, test_features, fps, classifier, embedder, labeler)
    assert table.columns[:6].tolist() == [
        "start_frame", "stop_frame", "start_s", "stop_s", "label", "score",
    ]  # fmt: skip
    np.testing.assert_allclose(table["stop_s"], table["stop_frame"] / 15)

    # Stage 1 recall: candidates matched one-to-one to true bouts at IoU >= 0.5, labels ignored.
    truth_path = tmp_path / "test.annotations.csv"
    write_annotations(test, truth_path)
    truth = read_annotations(truth_path, n_frames=test.n_frames, fps=fps)
    assert len(truth) >= 6  # several rearing and grooming bouts
    stage1 = segment_precision_recall(table.assign(label="act"), truth.assign(label="act"))
    assert stage1.iloc[-1]["recall"] >= 0.75  # measured 1.0 (8 of 8)
    assert stage1.iloc[-1]["precision"] >= 0.75

    # Stage 2: every candidate gets one of the trained labels and a score in (0, 1].
    assert set(table["label"]) <= {"rearing", "grooming"} and len(table) >= 6
    assert ((table["label_score"] > 0) & (table["label_score"] <= 1)).all()
    np.testing.assert_allclose(table["score"], table["action_score"] * table["label_score"])

    out = tmp_path / "test.segments.csv"
    write_segments(out, table, provenance={"step": "actions", "params": {}})
    back = pd.read_csv(out)
    assert (
        back[["start_frame", "stop_frame"]].values.tolist()
        == table[["start_frame", "stop_frame"]].values.tolist()
    )
    assert out.with_suffix(".json").exists()
    report = evaluate(back, truth, test.n_frames, labels=["rearing", "grooming"])
    assert report["label"].tolist() == ["other", "rearing", "grooming", "all"]
    assert report.set_index("label").loc["other", "frame_f1"] > 0.9  # stage 1 finds the bouts

    # A segment past the end of the video is named as such.
    late = pd.DataFrame({"start_frame": [test.n_frames - 2], "stop_frame": [test.n_frames + 5]})
    with pytest.raises(InputError, match=r"test.mp4.*video ended before"):
        embedder.embed(test_video, late)
