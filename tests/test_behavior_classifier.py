"""Frame behavior classifier: a tiny random-weight ViT fine-tuned on generated frames.

The three classes are drawn so that they are visually separable (a bright
disk, a dark disk, a striped disk),
so a short CPU training must reach a held-out macro F1 >= 0.9; the same
model then labels a generated video frame by frame. Plus bad frames folders,
minimum-bout smoothing worked out by hand, and the written CSV / JSON sidecar.
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
    load_frames_folder,
    predict_and_write,
    predict_video,
    read_frame_predictions,
    smooth_labels,
    stratified_split,
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
    return report, root / "classifier", seconds


def test_training_reaches_macro_f1_and_writes_the_model(trained, base_model: Path) -> None:
    report, out_dir, seconds = trained
    assert seconds < 20, f"training took {seconds:.1f} s"
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


def test_smooth_labels_long_sequence_is_fast_and_bounded() -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice(["other", "rearing", "grooming"], size=200_000, p=[0.8, 0.1, 0.1])
    start = time.perf_counter()
    smoothed = smooth_labels(labels, 30, 0.5)
    assert time.perf_counter() - start < 10
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
