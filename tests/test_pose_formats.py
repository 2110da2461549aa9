"""Pose from every common format: one trajectory written by each tool's own writer gives the
same kinematics; pose_source overrides detection; unknown files stop with a clear error;
CalMS21 JSON runs stage-1 localization + evaluation end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neurovid.behavior import calms21, evaluation, pipeline
from neurovid.behavior.kinematics import compute_kinematics, write_kinematics
from neurovid.behavior.pose_io import detect_source, load_pose_dataset
from neurovid.errors import InputError

FPS = 30.0
N = 150
BODYPARTS = ["snout", "left_ear", "right_ear", "tailbase"]
OFFSETS = np.array([[8.0, 0.0], [2.0, 4.0], [2.0, -4.0], [-12.0, 0.0]])
SCALE = {"arena_cm": 40.0, "arena_px": 200.0}


def trajectory() -> tuple[np.ndarray, np.ndarray]:
    """Positions [T, 2, K] (float32-exact: multiples of 1/64 px) and confidence [T, K],
    with a few low-confidence points the kinematics drop and interpolate."""
    t = np.arange(N) / FPS
    centre = np.c_[100 + 40 * np.cos(1.3 * t), 100 + 30 * np.sin(0.9 * t)]
    xy = centre[:, :, None] + OFFSETS.T[None]
    xy = np.round(xy * 64) / 64
    confidence = np.full((N, len(BODYPARTS)), 0.9375)
    confidence[[20, 21, 60, 90], [0, 0, 2, 3]] = 0.25
    return xy, confidence


def movement_dataset():
    from movement.io import load_poses

    xy, confidence = trajectory()
    return load_poses.from_numpy(
        position_array=xy[..., None],
        confidence_array=confidence[..., None],
        individual_names=["mouse"],
        keypoint_names=BODYPARTS,
        fps=FPS,
        source_software="DeepLabCut",
    )


def write_all_formats(folder: Path) -> dict[str, Path]:
    """One trajectory through movement's writers and sleap-io: {label: file}."""
    import sleap_io as sio
    from movement.io import save_poses

    ds = movement_dataset()
    files = {}
    for label, name in (("dlc_h5", "dlc.h5"), ("dlc_csv", "dlc.csv")):
        save_poses.to_dlc_file(ds, folder / name)  # one individual: dlc_mouse.h5
        files[label] = folder / name.replace(".", "_mouse.")
    save_poses.to_lp_file(ds, folder / "lp.csv")
    files["lp_csv"] = folder / "lp_mouse.csv"
    save_poses.to_sleap_analysis_file(ds, folder / "sleap.analysis.h5")
    files["sleap_h5"] = folder / "sleap.analysis.h5"
    xy, confidence = trajectory()
    tracks = np.concatenate([xy.transpose(0, 2, 1), confidence[..., None]], axis=-1)[:, None]
    labels = sio.Labels.from_numpy(
        tracks,
        videos=[sio.Video(filename=str(folder / "video.mp4"))],
        skeletons=sio.Skeleton(list(BODYPARTS)),  # (it turns the list into Nodes)
        tracks=[sio.Track("mouse")],
        return_confidence=True,
    )
    sio.save_slp(labels, str(folder / "sleap.slp"), verbose=False)
    files["slp"] = folder / "sleap.slp"
    for path in files.values():
        assert path.is_file(), path
    return files


def test_every_format_gives_the_same_kinematics(tmp_path: Path) -> None:
    files = write_all_formats(tmp_path)
    expected_source = {
        "dlc_h5": "deeplabcut",
        "dlc_csv": "deeplabcut",
        "lp_csv": "deeplabcut",  # movement writes scorer 'movement' for both: read the same way
        "sleap_h5": "sleap",
        "slp": "sleap",
    }
    assert {k: detect_source(p) for k, p in files.items()} == expected_source
    reference, ref_summary = compute_kinematics(files["dlc_h5"], FPS, **SCALE)
    assert ref_summary["low_likelihood_points"] == 4
    assert np.isfinite(reference["speed_cm_per_s"]).all()
    for label, path in files.items():
        table, summary = compute_kinematics(path, FPS, **SCALE)
        assert list(table.columns) == list(reference.columns), label
        numeric = reference.select_dtypes("number").columns
        np.testing.assert_allclose(
            table[numeric].to_numpy(float),
            reference[numeric].to_numpy(float),
            rtol=1e-9,
            atol=1e-9,
            err_msg=label,
        )
        assert summary["distance_cm"] == pytest.approx(ref_summary["distance_cm"], rel=1e-9)
        assert summary["low_likelihood_points"] == 4, label
    # The same trajectory as NWB (movement's ndx-pose writer) reads back the same way too.
    import pynwb
    from movement.io import save_poses

    nwb = save_poses.to_nwb_file(movement_dataset())
    with pynwb.NWBHDF5IO(tmp_path / "pose.nwb", mode="w") as io:
        io.write(nwb)
    assert detect_source(tmp_path / "pose.nwb") == "nwb"
    table, _ = compute_kinematics(tmp_path / "pose.nwb", FPS, **SCALE)
    np.testing.assert_allclose(table["speed_cm_per_s"], reference["speed_cm_per_s"], rtol=1e-9)


def test_dataset_representation_is_the_same(tmp_path: Path) -> None:
    files = write_all_formats(tmp_path)
    ref = load_pose_dataset(files["dlc_h5"], FPS)
    assert ref.position.dims == ("time", "space", "keypoints", "individuals")
    assert ref.position.dtype == np.float64
    np.testing.assert_allclose(ref.time.values, np.arange(N) / FPS)
    for label in ("slp", "sleap_h5", "lp_csv"):
        ds = load_pose_dataset(files[label], FPS)
        assert [str(k) for k in ds.keypoints.values] == BODYPARTS
        np.testing.assert_array_equal(ds.position.values, ref.position.values)
        # movement's confidence semantics: the score the software wrote
        np.testing.assert_allclose(ds.confidence.values, ref.confidence.values)
    assert load_pose_dataset(files["slp"], FPS).attrs["source_software"] == "SLEAP"


def test_pose_source_overrides_detection(tmp_path: Path) -> None:
    files = write_all_formats(tmp_path)
    lp = files["lp_csv"]
    ds = load_pose_dataset(lp, FPS, source="lightning-pose")
    assert ds.attrs["pose_source"] == "lightning-pose"
    assert ds.attrs["source_software"] == "LightningPose"
    assert load_pose_dataset(lp, FPS).attrs["source_software"] == "DeepLabCut"
    # LightningPose's own scorer (its model name) is detected without pose_source.
    lines = lp.read_text().splitlines(keepends=True)
    lines[0] = lines[0].replace("movement", "heatmap_tracker")
    named = tmp_path / "lp_named.csv"
    named.write_text("".join(lines))
    assert detect_source(named) == "lightning-pose"
    table, _ = compute_kinematics(named, FPS, **SCALE, pose_source="deeplabcut")
    reference, _ = compute_kinematics(files["dlc_h5"], FPS, **SCALE)
    np.testing.assert_allclose(table["x_cm"], reference["x_cm"], rtol=1e-12)
    lines[0] = lines[0].replace("heatmap_tracker", "DLC_resnet50_openfieldOct30shuffle1_1000")
    dlc_named = tmp_path / "dlc_named.csv"
    dlc_named.write_text("".join(lines))
    assert detect_source(dlc_named) == "deeplabcut"
    # A pose_source that does not fit the content: the reader's complaint, the field, the fix.
    with pytest.raises(InputError) as err:
        load_pose_dataset(files["dlc_h5"], FPS, source="sleap")
    assert str(err.value).startswith(f"{files['dlc_h5']} [pose_source]: cannot read it as SLEAP")
    assert "Fix: give the file SLEAP wrote for this video, or correct pose_source" in str(err.value)
    with pytest.raises(InputError, match=r"\[pose_source\]: pose_source 'openpose' is not known"):
        load_pose_dataset(lp, FPS, source="openpose")
    with pytest.raises(InputError, match=r"\[pose_source\]: pose_source sleap files end in"):
        load_pose_dataset(lp, FPS, source="sleap")


def test_unrecognised_pose_file_names_file_field_fix(tmp_path: Path) -> None:
    import h5py

    odd = tmp_path / "tracks.h5"
    with h5py.File(odd, "w") as fh:
        fh["positions"] = np.zeros((3, 2))
    text = tmp_path / "tracks.txt"
    text.write_text("x y\n1 2\n")
    out_csv, out_json = tmp_path / "out" / "k.csv", tmp_path / "out" / "k.json"
    for path, problem in (
        (odd, r"neither DeepLabCut output .* nor a SLEAP analysis file .*positions"),
        (text, r"pose files ending in '\.txt' are not known"),
    ):
        with pytest.raises(InputError) as err:
            table, summary = compute_kinematics(path, FPS, **SCALE)
            write_kinematics(table, summary, out_csv, out_json, {})
        message = str(err.value)
        assert message.startswith(f"{path} [pose]: ")
        assert pd.Series([message]).str.contains(problem).all(), message
        assert "Fix: give DeepLabCut .h5/.csv, SLEAP .slp" in message
        assert "pose_source column (deeplabcut | sleap | lightning-pose | nwb | calms21)" in message
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- CalMS21 / MABe JSON

VOCAB = {"attack": 0, "investigation": 1, "mount": 2, "other": 3}


def synthetic_sequence(rng: np.random.Generator, n: int = 300) -> tuple[list, list, list]:
    """Two mice; planted pose differences per behavior: during investigation the
    intruder sits at the resident's nose, during attack both move fast and close,
    during mount the resident is on top of the intruder (centroids coincide)."""
    labels = np.full(n, VOCAB["other"])
    bouts = []
    start = 20
    for kind in ["investigation", "attack", "mount", "investigation", "attack", "mount"]:
        length = int(rng.integers(25, 40))
        labels[start : start + length] = VOCAB[kind]
        bouts.append((start, start + length, kind))
        start += length + int(rng.integers(12, 22))
        if start >= n - 40:
            break
    t = np.arange(n) / FPS
    body = np.array([[20, 0], [14, 5], [14, -5], [8, 0], [-6, 6], [-6, -6], [-20, 0]], float)
    resident = np.c_[300 + 100 * np.cos(0.4 * t), 280 + 80 * np.sin(0.3 * t)]
    far = resident + np.c_[250 + 20 * np.sin(0.7 * t), 60 * np.cos(0.5 * t)]
    intruder = far.copy()
    for s, e, kind in bouts:
        if kind == "investigation":
            intruder[s:e] = resident[s:e] + [40.0, 0.0]
        elif kind == "attack":
            jitter = 15 * np.sin(2 * np.pi * 4 * t[s:e])[:, None]
            intruder[s:e] = resident[s:e] + [25.0, 0.0] + jitter
        else:
            intruder[s:e] = resident[s:e] + [2.0, 0.0]
    keypoints = np.zeros((n, 2, 2, 7))
    for m, centre in enumerate((resident, intruder)):
        pts = centre[:, None, :] + body[None] + rng.normal(0, 0.5, (n, 7, 2))
        keypoints[:, m] = pts.transpose(0, 2, 1)
    scores = np.full((n, 2, 7), 0.95)
    return keypoints.round(2).tolist(), scores.tolist(), labels.tolist()


def write_calms21(path: Path, sequences: dict[str, int], seed: int = 0) -> dict[str, list]:
    rng = np.random.default_rng(seed)
    group = {}
    truth = {}
    for name, n in sequences.items():
        keypoints, scores, labels = synthetic_sequence(rng, n)
        group[name] = {
            "keypoints": keypoints,
            "scores": scores,
            "annotations": labels,
            "metadata": {"annotator-id": 0, "vocab": VOCAB},
        }
        truth[name] = labels
    path.write_text(json.dumps({"annotator-id_0": group}))
    return truth


def test_calms21_reader(tmp_path: Path) -> None:
    path = tmp_path / "calms21_task1_train.json"
    truth = write_calms21(path, {"task1/train/mouse001_task1_annotator1": 240})
    assert detect_source(path) == "calms21"
    seq = calms21.load_sequence(path)  # one sequence: no id needed
    assert seq.sequence_id == "task1/train/mouse001_task1_annotator1"
    assert seq.vocabulary == VOCAB
    assert [str(i) for i in seq.pose.individuals.values] == ["resident", "intruder"]
    assert [str(k) for k in seq.pose.keypoints.values] == list(calms21.BODYPARTS)
    raw = json.loads(path.read_text())["annotator-id_0"][seq.sequence_id]
    np.testing.assert_allclose(
        seq.pose.position.sel(individuals="intruder", keypoints="neck").values,
        np.asarray(raw["keypoints"])[:, 1, :, 3],
    )
    inverse = {v: k for k, v in VOCAB.items()}
    assert seq.labels.tolist() == [inverse[c] for c in truth[seq.sequence_id]]
    csv = tmp_path / "ann.csv"
    table = calms21.write_annotations(csv, path)
    frames = evaluation.frames_from_segments(evaluation.read_annotations(csv, 240), 240)
    assert frames.tolist() == seq.labels.tolist()
    assert "other" not in set(table["label"])
    # Same representation as every other format, through the one loader.
    ds = load_pose_dataset(path, FPS, sequence="mouse001_task1_annotator1")
    assert ds.attrs["pose_source"] == "calms21" and ds.position.dtype == np.float64
    # Bad input names the file, the field and the fix.
    two = tmp_path / "two.json"
    write_calms21(two, {"a": 60, "b": 60})
    with pytest.raises(InputError, match=r"two.json \[sequence\]: the file holds 2 sequences"):
        calms21.load_sequence(two)
    with pytest.raises(InputError, match=r"\[sequence\]: sequence 'c' is not in the file"):
        calms21.load_sequence(two, "c")
    data = json.loads(two.read_text())
    del data["annotator-id_0"]["a"]["metadata"]
    two.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"\[vocabulary\].*Fix: add metadata.vocab"):
        calms21.load_sequence(two, "a")
    data["vocabulary"] = VOCAB  # a top-level vocabulary serves every sequence
    two.write_text(json.dumps(data))
    assert calms21.load_sequence(two, "a").vocabulary == VOCAB


def test_calms21_localization_and_evaluation(tmp_path: Path) -> None:
    """Stage 1 trained on two CalMS21 sequences, scored on a held-out one (no video)."""
    path = tmp_path / "calms21.json"
    names = {f"task1/train/mouse00{i}_task1_annotator1": 300 for i in (1, 2, 3)}
    write_calms21(path, names, seed=3)
    settings = {"context_s": 0.5, "classifier": "logistic", "seed": 0,
                "thresholds": {"high": 0.6, "low": 0.4, "min_s": 0.3, "merge_gap_s": 0.2}}  # fmt: skip
    items = []
    for i, name in enumerate(names):
        ann = tmp_path / f"seq{i}.csv"
        calms21.write_annotations(ann, path, name)
        timing = pipeline.VideoTiming(FPS, 300)
        items.append(
            pipeline.AnnotatedVideo(
                f"seq{i}", None, str(path), str(ann), timing, None, "calms21", name
            )
        )
    stage1 = tmp_path / "stage1.joblib"
    # Stage 2 needs the clips: asked for without a video, it stops before training.
    with pytest.raises(InputError) as err:
        pipeline.train_actions(items[:2], settings, stage1, tmp_path / "stage2.joblib")
    assert "[path]" in str(err.value) and "needs the video" in str(err.value)
    assert "Fix: give the sequence's video in the videos sheet's path column" in str(err.value)
    assert not stage1.exists()
    summary = pipeline.train_actions(items[:2], settings, stage1, None)
    assert summary["stages"] == 1 and summary["frames"] == 600
    held = items[2]
    with pytest.raises(InputError, match="needs the video"):
        pipeline.localize(None, held.pose, held.probe, stage1, tmp_path / "s2", settings,
                          pose_source="calms21", sequence=held.sequence)  # fmt: skip
    segments = pipeline.localize(
        None, held.pose, held.probe, stage1, None, settings, pose_source="calms21",
        sequence=held.sequence,
    )  # fmt: skip
    assert set(segments["label"]) == {"action"}
    seg_csv = tmp_path / "seq2.segments.csv"
    segments.to_csv(seg_csv, index=False)
    table = pipeline.evaluate_videos(
        [("seq2", seg_csv, held.annotations, held.probe, None)], iou=0.5, actions_only=True
    )
    row = table.set_index("label").loc["all"]
    truth = evaluation.merge_as(pd.read_csv(held.annotations), "action")
    assert row["n_true"] == len(truth) >= 3
    assert row["recall"] >= 0.8 and row["precision"] >= 0.8, table.to_string()
    assert row["frame_f1"] >= 0.8, table.to_string()
    # Without actions_only the stage-1 label 'action' matches no annotated label.
    plain = pipeline.evaluate_videos([("seq2", seg_csv, held.annotations, held.probe, None)])
    assert plain.set_index("label").loc["all", "matched"] == 0
