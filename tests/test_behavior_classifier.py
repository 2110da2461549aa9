"""Frame behavior classifier: a tiny random-weight ViT fine-tuned on generated frames.

The three classes are drawn so that they are visually separable (a bright
disk, a dark disk, a striped disk),
so a short CPU training must reach a held-out macro F1 >= 0.9; the same
model then labels a generated video frame by frame. Plus bad frames folders,
minimum-bout smoothing worked out by hand, and the written CSV / JSON sidecar.

Held-out frames are held out in time: on a frame sequence whose classes can
only be told apart by a frame's near-identical neighbours (each bout has its
own look), a random split scores a nearest-neighbour classifier far above
chance and the split by time blocks with a guard scores it at chance; plus
the split's contiguity, guard, determinism, the split by video, and the split
recorded in ``training.json`` and ``metrics.tsv``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from neurovid.behavior.classifier import (
    TRAINING_JSON,
    FrameTimes,
    frame_times,
    guard_mask,
    held_out_split,
    load_frames_folder,
    predict_and_write,
    predict_video,
    read_frame_predictions,
    smooth_labels,
    split_options,
    stratified_split,
    time_blocks,
    time_per_behavior,
    train_frame_classifier,
    write_frame_predictions,
)
from neurovid.errors import InputError
from neurovid.video import write_video

SIZE = 48  # frames are 48x48; the processor resizes them to the model's 32x32
FPS = 10
COUNTS = {"other": 60, "rearing": 30, "grooming": 24}  # imbalanced, like the open-field seed


def draw_frame(label: str, rng: np.random.Generator) -> np.ndarray:
    """uint8 [SIZE, SIZE, 3]: a noisy grey floor and a disk whose look gives the class.

    rearing: bright disk; other: dark disk; grooming: a disk of bright and dark
    stripes. The place of the disk is random.
    """
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    image = rng.normal(128, 12, (SIZE, SIZE))
    cx, cy = rng.uniform(14, 34, size=2)
    disk = (xx - cx) ** 2 + (yy - cy) ** 2 <= 10**2
    if label == "rearing":
        image[disk] = 240
    elif label == "grooming":
        image[disk] = np.where((yy[disk] // 3) % 2 == 0, 240, 15)
    else:
        image[disk] = 15
    gray = np.clip(image, 0, 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def write_frames(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    for label, n in counts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(draw_frame(label, rng)).save(root / label / f"frame{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight ViT classifier with a 5-class head (replaced when fine-tuned)."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vit-base") / "vit"
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=5,
    )
    ViTForImageClassification(config).save_pretrained(path)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def trained(
    base_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[object, Path, float]:
    root = tmp_path_factory.mktemp("behavior")
    frames = write_frames(root / "frames", COUNTS)
    lines: list[str] = []
    start = time.perf_counter()
    report = train_frame_classifier(
        frames,
        str(base_model),
        root / "classifier",
        epochs=10,
        lr=1e-3,
        batch_size=16,
        held_out=0.25,
        seed=0,
        device="cpu",
        log=lines.append,
    )
    seconds = time.perf_counter() - start
    assert any("held-out macro F1" in line for line in lines)
    # names like frame0001.png say nothing about time: a random split, and the log says so
    assert any(
        line.startswith("no time information: the frame names carry no video and frame index")
        for line in lines
    ), lines
    return report, root / "classifier", seconds


def test_training_reaches_macro_f1_and_writes_the_model(trained, base_model: Path) -> None:
    report, out_dir, seconds = trained
    print(f"training took {seconds:.1f} s")  # a benchmark figure, not an assertion
    assert report.classes == ["grooming", "other", "rearing"]
    assert report.counts == {"grooming": 24, "other": 60, "rearing": 30}
    # stratified: a quarter of each class held out (24, 60, 30 frames -> 6, 15, 7.5 rounded up)
    assert report.held_out_counts == {"grooming": 6, "other": 15, "rearing": 8}
    assert sum(report.train_counts.values()) == 114 - 29
    # balanced weights: n / (K * n_k) on the training frames
    n_train = sum(report.train_counts.values())
    for name, weight in report.class_weights.items():
        assert weight == pytest.approx(n_train / (3 * report.train_counts[name]))
    assert report.epoch_losses[-1] < report.epoch_losses[0]
    assert report.macro_f1 >= 0.9, report.metrics_table()
    assert report.confusion.shape == (3, 3)
    assert report.confusion.sum() == 29
    np.testing.assert_array_equal(report.confusion.sum(axis=1), [6, 15, 8])
    assert report.macro_f1 == pytest.approx(report.per_class["f1"].mean())
    assert report.split["method"] == "stratified"
    assert report.split["held_out_units"] == [] and report.split["n_guarded"] == 0

    # the saved folder: model with the class names, processor, provenance and tables
    config = json.loads((out_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "grooming", "1": "other", "2": "rearing"}
    assert (out_dir / "preprocessor_config.json").is_file()
    training = json.loads((out_dir / TRAINING_JSON).read_text())
    assert training["provenance"]["params"]["base_model"] == str(base_model)
    assert training["provenance"]["params"]["epochs"] == 10
    assert training["provenance"]["versions"]["transformers"] == "5.23.0"
    assert training["macro_f1"] == pytest.approx(report.macro_f1)
    assert training["confusion"] == report.confusion.tolist()
    metrics = pd.read_csv(out_dir / "metrics.tsv", sep="\t")
    assert metrics["class"].tolist() == ["grooming", "other", "rearing", "macro"]
    assert metrics["f1"].iloc[-1] == pytest.approx(report.macro_f1, abs=1e-5)
    assert set(metrics["split"]) == {report.split["description"]}
    assert metrics["split"].iloc[0].startswith("stratified: frames drawn at random per class")
    assert training["split"] == json.loads(json.dumps(report.split))
    confusion = pd.read_csv(out_dir / "confusion.tsv", sep="\t")
    assert confusion.columns.tolist() == ["true", "grooming", "other", "rearing"]
    assert not [p for p in out_dir.parent.iterdir() if p.name.startswith(".classifier.tmp")]


def test_training_is_reproducible(base_model: Path, tmp_path: Path) -> None:
    """Same frames, model and seed give the same weights and the same training record."""
    frames = write_frames(tmp_path / "frames", {"other": 8, "rearing": 6, "grooming": 6}, seed=3)
    settings = {"epochs": 2, "lr": 1e-3, "batch_size": 4, "held_out": 0.3, "seed": 7}
    for name in ("a", "b"):
        train_frame_classifier(frames, str(base_model), tmp_path / name, device="cpu", **settings)
    for name in ("model.safetensors", TRAINING_JSON, "metrics.tsv", "confusion.tsv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    record = json.loads((tmp_path / "a" / TRAINING_JSON).read_text())
    assert record["held_out_counts"] == {"grooming": 2, "other": 2, "rearing": 2}
    assert record["provenance"]["params"]["seed"] == 7


def test_predict_video_labels_every_frame(trained, base_model: Path, tmp_path: Path) -> None:
    _report, out_dir, _ = trained
    truth = ["other"] * 12 + ["rearing"] * 10 + ["other"] * 6 + ["grooming"] * 12 + ["other"] * 5
    rng = np.random.default_rng(1)
    video = tmp_path / "session.mp4"
    write_video((draw_frame(label, rng) for label in truth), video, FPS)

    table = predict_video(out_dir, video, batch_size=8, device="cpu")
    assert table.columns.tolist() == [
        "frame",
        "time",
        "p_grooming",
        "p_other",
        "p_rearing",
        "label",
    ]
    assert len(table) == len(truth)
    np.testing.assert_array_equal(table["frame"], np.arange(len(truth)))
    np.testing.assert_allclose(table["time"], (np.arange(len(truth)) + 0.5) / FPS, atol=1e-6)
    probs = table[["p_grooming", "p_other", "p_rearing"]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)
    assert (probs >= 0).all()
    # the video path (swscale resize + processor normalization) agrees with training
    accuracy = float(np.mean(table["label"].to_numpy() == np.asarray(truth)))
    assert accuracy >= 0.9, table

    # same bytes on a rerun (CPU is deterministic)
    again = predict_video(out_dir, video, batch_size=5, device="cpu")
    np.testing.assert_allclose(again[["p_grooming", "p_other", "p_rearing"]], probs, atol=1e-6)

    # the rule's entry point: CSV + sidecar with provenance
    out = tmp_path / "behavior" / "session.frames.csv"
    summary = predict_and_write(out_dir, video, out, min_bout_s=0.3, batch_size=8, device="cpu")
    written = read_frame_predictions(out)
    assert len(written) == len(truth)
    np.testing.assert_allclose(written[["p_grooming", "p_other", "p_rearing"]], probs, atol=2e-6)
    assert written["label"].tolist() == table["label"].tolist()
    seconds = summary["time_per_behavior_s"]
    assert seconds == pytest.approx({"grooming": 1.2, "other": 2.3, "rearing": 1.0}, abs=0.25)
    assert summary["provenance"]["params"]["base_model"] == str(base_model)
    assert summary["provenance"]["inputs"]["video"]["digest"].startswith("sha256:")
    assert json.loads(out.with_suffix(".json").read_text())["fps"] == FPS


def test_write_frame_predictions(tmp_path: Path) -> None:
    labels = ["other"] * 10 + ["rearing"] * 1 + ["other"] * 9 + ["grooming"] * 10
    n = len(labels)
    table = pd.DataFrame({"frame": np.arange(n), "time": (np.arange(n) + 0.5) / FPS})
    for name in ("grooming", "other", "rearing"):
        table[f"p_{name}"] = [1.0 if label == name else 0.0 for label in labels]
    table["label"] = labels
    out = tmp_path / "behavior" / "vid1.frames.csv"
    summary = write_frame_predictions(out, table, fps=FPS, min_bout_s=0.5, record={"step": "x"})

    written = read_frame_predictions(out)
    assert written.columns.tolist() == [*table.columns, "label_smoothed"]
    assert written["label_smoothed"].tolist() == ["other"] * 20 + ["grooming"] * 10
    sidecar = json.loads((tmp_path / "behavior" / "vid1.frames.json").read_text())
    assert sidecar == json.loads(json.dumps(summary))
    assert sidecar["classes"] == ["grooming", "other", "rearing"]
    assert sidecar["n_frames"] == 30 and sidecar["duration_s"] == pytest.approx(3.0)
    assert sidecar["time_per_behavior_s"] == {"grooming": 1.0, "other": 2.0, "rearing": 0.0}
    assert sidecar["time_per_behavior_raw_s"] == {"grooming": 1.0, "other": 1.9, "rearing": 0.1}
    assert sidecar["bouts_per_behavior"] == {"grooming": 1, "other": 1, "rearing": 0}
    assert sidecar["bouts_per_behavior_raw"] == {"grooming": 1, "other": 2, "rearing": 1}
    assert sidecar["provenance"] == {"step": "x"}

    (tmp_path / "bad.csv").write_text("frame,time\n0,0.05\n")
    with pytest.raises(InputError, match=r"bad\.csv: not a per-frame behavior table"):
        read_frame_predictions(tmp_path / "bad.csv")


# ------------------------------------------------------------------------- smoothing


def test_smooth_labels_by_hand() -> None:
    a, b, c = "other", "rearing", "grooming"
    # a 2-frame flicker inside one behavior becomes that behavior (10 fps, 0.3 s = 3 frames)
    labels = [a] * 5 + [b] * 2 + [a] * 5
    assert smooth_labels(labels, 10, 0.3).tolist() == [a] * 12
    # bouts of exactly the minimum stay
    labels = [a] * 5 + [b] * 3 + [a] * 5
    assert smooth_labels(labels, 10, 0.3).tolist() == labels
    # between two different behaviors a short bout joins the longer neighbour
    labels = [a] * 4 + [c] * 1 + [b] * 6
    assert smooth_labels(labels, 10, 0.3).tolist() == [a] * 4 + [b] * 7
    # ... and the preceding one on a tie
    labels = [a] * 4 + [c] * 1 + [b] * 4
    assert smooth_labels(labels, 10, 0.3).tolist() == [a] * 5 + [b] * 4
    # at the ends a short bout joins its only neighbour
    labels = [b] * 2 + [a] * 6 + [c] * 1
    assert smooth_labels(labels, 10, 0.3).tolist() == [a] * 9
    # shortest first: the 1-frame c goes before the 2-frame b is judged, then b is
    # surrounded by a on both sides once c is gone
    labels = [a] * 5 + [b] * 2 + [c] * 1 + [a] * 5
    assert smooth_labels(labels, 10, 0.3).tolist() == [a] * 13
    # rapid alternation collapses into bouts of at least the minimum
    labels = [a, b] * 6
    smoothed = smooth_labels(labels, 10, 0.3)
    runs = np.diff(np.flatnonzero(np.r_[True, smoothed[1:] != smoothed[:-1], True]))
    assert runs.min() >= 3 and len(smoothed) == 12
    # a video shorter than the minimum keeps its single bout; 0 s changes nothing
    assert smooth_labels([b] * 2, 10, 1.0).tolist() == [b] * 2
    labels = [a, b, a, c]
    assert smooth_labels(labels, 10, 0.0).tolist() == labels
    # minimum in seconds: 0.25 s at 30 fps = 8 frames (round)
    labels = [a] * 20 + [b] * 7 + [a] * 20
    assert smooth_labels(labels, 30, 0.25).tolist() == [a] * 47
    assert smooth_labels(labels, 30, 0.2).tolist() == labels  # 6 frames


def test_smooth_labels_long_sequence_is_bounded() -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice(["other", "rearing", "grooming"], size=200_000, p=[0.8, 0.1, 0.1])
    smoothed = smooth_labels(labels, 30, 0.5)
    runs = np.diff(np.flatnonzero(np.r_[True, smoothed[1:] != smoothed[:-1], True]))
    assert runs.min() >= 15
    assert set(np.unique(smoothed)) <= {"other", "rearing", "grooming"}


def test_time_per_behavior() -> None:
    labels = ["other"] * 30 + ["rearing"] * 15 + ["other"] * 15
    assert time_per_behavior(labels, 30) == {"other": 1.5, "rearing": 0.5}
    assert time_per_behavior(labels, 30, ["rearing", "grooming", "other"]) == {
        "rearing": 0.5,
        "grooming": 0.0,
        "other": 1.5,
    }
    with pytest.raises(InputError, match=r"fps=0 must be > 0"):
        time_per_behavior(labels, 0)


# ------------------------------------------------------------------------- bad input


def test_load_frames_folder(tmp_path: Path) -> None:
    root = write_frames(tmp_path / "frames", {"rearing": 3, "other": 2})
    (root / "other" / ".DS_Store").write_text("")  # hidden files are ignored
    paths, labels, classes = load_frames_folder(root)
    assert classes == ["other", "rearing"]
    assert labels.tolist() == [0, 0, 1, 1, 1]
    assert [p.name for p in paths] == ["frame0000.png", "frame0001.png"] + [
        f"frame{i:04d}.png" for i in range(3)
    ]


def test_stratified_split() -> None:
    labels = np.repeat([0, 1, 2], [10, 3, 2])
    train, test = stratified_split(labels, 0.2, seed=0)
    assert np.bincount(labels[test]).tolist() == [2, 1, 1]  # at least one held out per class
    assert np.bincount(labels[train]).tolist() == [8, 2, 1]  # ... and one left to train on
    assert sorted([*train, *test]) == list(range(15))
    np.testing.assert_array_equal(stratified_split(labels, 0.2, seed=0)[1], test)
    assert not np.array_equal(stratified_split(labels, 0.2, seed=1)[1], test)
    train, test = stratified_split(labels, 0.9, seed=0)
    assert np.bincount(labels[train]).tolist() == [1, 1, 1]


# ------------------------------------------------------------------ held out in time


def bout_sequence(n_frames: int, seed: int, dim: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Frame vectors [n_frames, dim] and labels [n_frames] of 3 classes in bouts of 30-90 frames.

    Each bout has its own look (a random vector, drifting slowly, plus a little
    noise), whatever its class: neighbouring frames are near-identical, but
    nothing about a frame's look tells its class across bouts.
    """
    rng = np.random.default_rng(seed)
    looks: list[np.ndarray] = []
    labels: list[int] = []
    previous = -1
    while len(labels) < n_frames:
        label = int(rng.choice([k for k in range(3) if k != previous]))
        length = int(rng.integers(30, 91))
        drift = np.cumsum(rng.normal(0, 0.01, (length, dim)), axis=0)
        looks.append(rng.normal(0, 1, dim) + drift + rng.normal(0, 0.02, (length, dim)))
        labels += [label] * length
        previous = label
    return np.concatenate(looks)[:n_frames], np.asarray(labels[:n_frames])


def one_video(frames: np.ndarray) -> FrameTimes:
    return FrameTimes(videos=np.full(len(frames), "v0"), frames=np.asarray(frames))


def nearest_neighbour_f1(x: np.ndarray, labels: np.ndarray, train, test) -> float:
    from sklearn.metrics import f1_score
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=1).fit(x[train], labels[train])
    return float(f1_score(labels[test], knn.predict(x[test]), average="macro"))


def test_random_split_inflates_f1_and_the_block_split_does_not() -> None:
    """Labeled frames drawn from one video (300 per class, as the labeled_frames rule draws them).

    A 1-nearest-neighbour classifier can only succeed by finding a frame of
    the same bout in training. With a random split it nearly always does
    (macro F1 0.94); with whole time blocks held out and a guard of one bout
    length it cannot (macro F1 0.36, chance is 1/3).
    """
    x, labels = bout_sequence(20_000, seed=1)
    rng = np.random.default_rng(1)
    picked = np.sort(
        np.concatenate(
            [rng.choice(np.flatnonzero(labels == k), 300, replace=False) for k in range(3)]
        )
    )
    x, labels, times = x[picked], labels[picked], one_video(picked)

    train, test = stratified_split(labels, 0.25, seed=0)  # the split as it was (random frames)
    random_f1 = nearest_neighbour_f1(x, labels, train, test)
    split = held_out_split(labels, times, held_out=0.25, seed=0, blocks=10, guard_frames=90)
    assert split.method == "blocks"
    block_f1 = nearest_neighbour_f1(x, labels, split.train, split.test)

    assert random_f1 == pytest.approx(0.938, abs=0.005)
    assert block_f1 == pytest.approx(0.363, abs=0.005)
    assert random_f1 > 0.9 and abs(block_f1 - 1 / 3) < 0.05  # inflated vs chance
    assert len(test) == 225 and len(split.test) == 270  # 3 of the 10 blocks held out


def test_time_blocks_are_contiguous_disjoint_guarded_and_seeded() -> None:
    rng = np.random.default_rng(0)
    _, labels_all = bout_sequence(3000, seed=4)
    frames = np.sort(rng.choice(3000, 400, replace=False))
    labels, times = labels_all[frames], one_video(frames)

    blocks = time_blocks(times, 8)
    np.testing.assert_array_equal(np.bincount(blocks), [50] * 8)
    np.testing.assert_array_equal(blocks, np.sort(blocks))  # frames are in time order: runs

    split = held_out_split(labels, times, held_out=0.25, seed=3, blocks=8, guard_frames=40)
    train, test, guarded = split.train, split.test, split.guarded
    # every frame in exactly one of train / held-out / guard
    assert sorted([*train, *test, *guarded]) == list(range(400))
    assert not set(train) & set(test) and not set(guarded) & (set(train) | set(test))
    # whole blocks held out: 2 of 8 (round(1 / 0.25) = 4 folds of 2 blocks)
    held = np.unique(blocks[test])
    assert len(held) == 2 and set(np.flatnonzero(np.isin(blocks, held))) == set(test)
    assert [u["block"] for u in split.held_out_units] == held.tolist()
    for unit in split.held_out_units:
        members = frames[blocks == unit["block"]]
        assert (unit["first"]["frame"], unit["last"]["frame"]) == (members[0], members[-1])
        assert unit["n_frames"] == 50
    # the guard: no training frame within 40 frames of a held-out one; guarded ones are
    distance = np.abs(frames[:, None] - frames[test][None, :]).min(axis=1)
    assert distance[train].min() > 40
    np.testing.assert_array_equal(guarded, np.flatnonzero((distance <= 40) & (distance > 0)))
    assert len(guarded) > 0
    # every class on both sides; the record says what was done
    assert set(labels[train]) == set(labels[test]) == {0, 1, 2}
    record = split.to_dict()
    assert record["method"] == "blocks" and record["n_units"] == 8
    assert record["guard_frames"] == 40 and record["n_guarded"] == len(guarded)
    assert record["held_out_share"] == pytest.approx(100 / 400)
    first, second = split.held_out_units
    assert record["description"] == (
        "blocks: 2 of 8 contiguous time blocks held out"
        f" (v0 frames {first['first']['frame']}-{first['last']['frame']},"
        f" v0 frames {second['first']['frame']}-{second['last']['frame']});"
        f" guard 40 frames, {len(guarded)} frames dropped"
    )
    # deterministic, and the seed chooses the held-out blocks
    again = held_out_split(labels, times, held_out=0.25, seed=3, blocks=8, guard_frames=40)
    np.testing.assert_array_equal(again.test, test)
    np.testing.assert_array_equal(again.train, train)
    others = {
        tuple(np.unique(blocks[held_out_split(labels, times, held_out=0.25, seed=s).test]))
        for s in range(6)
    }
    assert len(others) > 1


def test_guard_mask_by_hand() -> None:
    times = FrameTimes(
        videos=np.array(["a", "a", "a", "a", "a", "b", "b"]),
        frames=np.array([0, 10, 14, 20, 31, 12, 40]),
    )
    # held out: a's frame 20. Within 10 frames: a's 10 and 14 (not 0, 31, nor video b's 12)
    near = guard_mask(times, np.array([3]), 10)
    assert near.tolist() == [False, True, True, False, False, False, False]
    assert guard_mask(times, np.array([3]), 0).tolist() == [False] * 7


def test_split_by_video_holds_out_whole_videos() -> None:
    rng = np.random.default_rng(2)
    videos, frames, labels = [], [], []
    for v in ("v0", "v1", "v2", "v3"):
        _, labels_v = bout_sequence(1000, seed=int(v[1]))
        picked = np.sort(rng.choice(1000, 60, replace=False))
        videos += [v] * 60
        frames += picked.tolist()
        labels += labels_v[picked].tolist()
    times = FrameTimes(np.asarray(videos), np.asarray(frames))
    labels = np.asarray(labels)

    split = held_out_split(labels, times, held_out=0.25, seed=0, guard_frames=40)
    assert split.method == "videos"
    assert split.reason == "frames from 4 videos: whole videos held out"
    held = set(times.videos[split.test])
    assert len(held) == 1  # round(1 / 0.25) = 4 folds of one video
    assert held.isdisjoint(times.videos[split.train])
    assert len(split.train) + len(split.test) == 240 and len(split.guarded) == 0
    assert split.held_out_units == [{"video": held.pop(), "n_frames": 60}]
    assert split.to_dict()["guard_frames"] == 0
    assert (
        split.describe() == f"videos: 1 of 4 videos held out ({split.held_out_units[0]['video']})"
    )
    assert set(labels[split.test]) == set(labels[split.train]) == {0, 1, 2}
    again = held_out_split(labels, times, held_out=0.25, seed=0)
    np.testing.assert_array_equal(again.test, split.test)
    # blocks can still be asked for: they run through the videos in order
    blocks = held_out_split(labels, times, held_out=0.25, seed=0, method="blocks")
    assert blocks.method == "blocks" and blocks.n_units == 8


def test_frame_names_give_the_time_or_fall_back_to_stratified(tmp_path: Path) -> None:
    names = ["v0_f000012.png", "v0_f000003.png", "openfield-1_f7.png", "a_b_f000100.jpg"]
    times = frame_times([tmp_path / "rearing" / n for n in names])
    assert times is not None
    assert times.videos.tolist() == ["v0", "v0", "openfield-1", "a_b"]
    assert times.frames.tolist() == [12, 3, 7, 100]
    assert frame_times([tmp_path / "frame0001.png", tmp_path / "img_3.png"]) is None

    labels = np.repeat([0, 1], 10)
    split = held_out_split(labels, None, held_out=0.2, seed=0)
    assert split.method == "stratified"
    assert "frame names carry no video and frame index" in split.reason
    np.testing.assert_array_equal(split.test, stratified_split(labels, 0.2, seed=0)[1])

    mixed = [tmp_path / "other" / "v0_f000001.png", tmp_path / "other" / "frame0002.png"]
    with pytest.raises(
        InputError,
        match=r"other/frame0002\.png \[behavior\.classifier\.split\.method\]: the name does not say "
        r"which video and frame it comes from, but 1 of the 2 .*Fix: name every frame",
    ):
        frame_times(mixed)
    with pytest.raises(InputError, match=r"split\.method 'blocks' needs each frame's video and"):
        held_out_split(labels, None, held_out=0.2, seed=0, method="blocks")
    single = one_video(np.arange(20))
    with pytest.raises(InputError, match=r"'videos' needs labeled frames from at least 2 videos"):
        held_out_split(labels, single, held_out=0.2, seed=0, method="videos")
    with pytest.raises(InputError, match=r"split\.method 'time' is not one of"):
        held_out_split(labels, single, held_out=0.2, seed=0, method="time")
    with pytest.raises(InputError, match=r"split\.blocks=1 must be >= 2"):
        held_out_split(labels, single, held_out=0.2, seed=0, blocks=1)
    with pytest.raises(InputError, match=r"split\.guard_frames=-1 must be >= 0"):
        held_out_split(labels, single, held_out=0.2, seed=0, guard_frames=-1)
    with pytest.raises(InputError, match=r"\[behavior\.classifier\.split\]: unknown split .*'gap'"):
        split_options({"gap": 3})
    assert split_options({"blocks": 5}) == {"method": "auto", "blocks": 5, "guard_frames": 15}


def write_video_frames(root: Path, labels: np.ndarray, frames: np.ndarray, video: str) -> None:
    """PNGs ``{root}/{label}/{video}_f{frame:06d}.png``, as the labeled_frames rule names them."""
    from PIL import Image

    rng = np.random.default_rng(len(frames))
    names = np.asarray(sorted(COUNTS))
    for label, frame in zip(names[labels], frames, strict=True):
        (root / label).mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(draw_frame(str(label), rng))
        image.save(root / label / f"{video}_f{frame:06d}.png")


def test_training_holds_out_time_blocks_or_videos_and_says_so(
    base_model: Path, tmp_path: Path
) -> None:
    _, labels_all = bout_sequence(600, seed=5)
    frames = np.arange(0, 600, 10)  # 60 frames, one every 10 of one video
    root = tmp_path / "frames"
    write_video_frames(root, labels_all[frames], frames, "v0")
    settings = {"epochs": 1, "lr": 1e-3, "batch_size": 16, "held_out": 0.25, "device": "cpu"}
    lines: list[str] = []
    report = train_frame_classifier(
        root, str(base_model), tmp_path / "blocks", log=lines.append, **settings
    )
    split = report.split
    assert split["method"] == "blocks"
    assert split["reason"] == "frames from one video: contiguous time blocks held out"
    assert split["n_units"] == 8 and len(split["held_out_units"]) == 2
    assert split["guard_frames"] == 15  # the default: frames 10 apart, so 1 or 2 per side
    n_held = sum(report.held_out_counts.values())
    assert n_held == sum(u["n_frames"] for u in split["held_out_units"])
    assert sum(report.train_counts.values()) + n_held + split["n_guarded"] == 60
    assert split["n_guarded"] >= 2
    assert f"held-out split: {split['description']}" in lines
    assert split["description"].startswith("blocks: 2 of 8 contiguous time blocks held out (v0 ")
    training = json.loads((tmp_path / "blocks" / TRAINING_JSON).read_text())
    assert training["split"] == json.loads(json.dumps(split))
    assert training["provenance"]["params"]["split"] == {
        "method": "auto",
        "blocks": 8,
        "guard_frames": 15,
    }
    metrics = pd.read_csv(tmp_path / "blocks" / "metrics.tsv", sep="\t")
    assert metrics["split"].tolist() == [split["description"]] * 4

    # frames of a second video: whole videos held out
    write_video_frames(root, labels_all[frames + 5], frames + 5, "v1")
    report = train_frame_classifier(
        root, str(base_model), tmp_path / "videos", split={"method": "auto"}, **settings
    )
    assert report.split["method"] == "videos"
    assert report.split["description"] in {
        "videos: 1 of 2 videos held out (v0)",
        "videos: 1 of 2 videos held out (v1)",
    }
    assert sum(report.held_out_counts.values()) == 60 and sum(report.train_counts.values()) == 60


def test_training_refuses_a_class_left_without_training_frames(
    base_model: Path, tmp_path: Path
) -> None:
    """Grooming only around the middle of the video: the guard of either block takes it all."""
    frames = np.arange(40)
    labels = np.where((frames >= 18) & (frames <= 21), 0, 1)  # 0 grooming, 1 other
    root = tmp_path / "frames"
    write_video_frames(root, labels, frames, "v0")
    with pytest.raises(
        InputError,
        match=r"frames \[behavior\.classifier\.split\]: class 'grooming' has no training frames "
        r"left: all its frames fall in the held-out blocks or within the guard",
    ):
        train_frame_classifier(
            root, str(base_model), tmp_path / "out", epochs=1, lr=1e-3, batch_size=4,
            held_out=0.5, device="cpu", split={"blocks": 2, "guard_frames": 5},
        )  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_frames_folder_errors(tmp_path: Path, base_model: Path) -> None:
    root = write_frames(tmp_path / "frames", {"rearing": 3, "other": 3})

    (root / "grooming").mkdir()
    with pytest.raises(InputError, match=r"frames/grooming: class 'grooming' has no frames"):
        load_frames_folder(root)

    (root / "grooming" / "frame0.png").write_bytes((root / "other" / "frame0000.png").read_bytes())
    (root / "grooming" / "notes.txt").write_text("labeled by A.")
    with pytest.raises(
        InputError, match=r"grooming/notes\.txt: '\.txt' is not a known image format"
    ):
        load_frames_folder(root)

    (root / "grooming" / "notes.txt").unlink()
    with pytest.raises(InputError, match=r"class 'grooming' has a single frame"):
        load_frames_folder(root)

    with pytest.raises(InputError, match=r"at least 2 classes \(subfolders\), found 1: only"):
        (tmp_path / "one" / "only").mkdir(parents=True)
        load_frames_folder(tmp_path / "one")
    with pytest.raises(InputError, match=r"missing: the labeled-frames folder does not exist"):
        load_frames_folder(tmp_path / "missing")

    # an image that cannot be decoded is named when training reads it
    (root / "grooming" / "frame1.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"grooming/frame1\.png: the image cannot be read"):
        train_frame_classifier(
            root, str(base_model), tmp_path / "out", epochs=1, lr=1e-3, batch_size=4,
            held_out=0.4, device="cpu",
        )  # fmt: skip
    assert not (tmp_path / "out").exists()

    (root / "grooming" / "frame1.png").unlink()
    (root / "grooming" / "frame2.png").write_bytes((root / "other" / "frame0001.png").read_bytes())
    with pytest.raises(InputError, match=r"held_out=1\.5 must be a share between 0 and 1"):
        train_frame_classifier(
            root, str(base_model), tmp_path / "out", epochs=1, lr=1e-3, batch_size=4,
            held_out=1.5, device="cpu",
        )  # fmt: skip
    with pytest.raises(InputError, match=r"class_weights \{'other': 1\.0\} do not match"):
        train_frame_classifier(
            root, str(base_model), tmp_path / "out", epochs=1, lr=1e-3, batch_size=4,
            held_out=0.4, device="cpu", class_weights={"other": 1.0},
        )  # fmt: skip
    with pytest.raises(InputError, match=r"no-such-model.*cannot be loaded"):
        train_frame_classifier(
            root, str(tmp_path / "no-such-model"), tmp_path / "out", epochs=1, lr=1e-3,
            batch_size=4, held_out=0.4, device="cpu",
        )  # fmt: skip
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_predict_video_cuda_matches_cpu(trained, tmp_path: Path) -> None:
    _report, out_dir, _ = trained
    rng = np.random.default_rng(2)
    video = tmp_path / "gpu.mp4"
    write_video((draw_frame(label, rng) for label in ["rearing"] * 8 + ["other"] * 8), video, FPS)
    cpu = predict_video(out_dir, video, batch_size=4, device="cpu")
    gpu = predict_video(out_dir, video, batch_size="auto", device="cuda")
    cols = ["p_grooming", "p_other", "p_rearing"]
    np.testing.assert_allclose(gpu[cols], cpu[cols], atol=0.05)  # bf16 autocast
    assert (gpu["label"] == cpu["label"]).mean() >= 0.9
