"""Sensorium-style ViViT + (q)LoRA encoder: metrics, both data layouts, training, heads, 4-bit.

Two simulated mice with a linear-nonlinear ground truth (Gaussian receptive
fields on smooth noise movies, a one-frame temporal tail, running-speed gain,
softplus, Poisson noise): ``m1`` in the Sensorium 2023 folder layout, ``m2`` as
neurovid files (responses HDF5 + H.264 videos on a stimulus timeline). One short
CPU training through scripts/train_sensorium.py (tiny ViViT: image 32, 8 frames,
tubelet 2x8x8, hidden 32, 2 layers) serves most tests.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import namedlist, run_script

from neurovid.deep import metrics
from neurovid.deep.sensorium import (
    RunSource,
    load_neurovid_mouse,
    load_sensorium_mouse,
    split_validation,
    video_frames,
)
from neurovid.deep.vivit_lora import (
    DataSettings,
    ModelSettings,
    build_model,
    fit_sensorium,
    is_quantized,
    load_model,
    load_readout,
    poisson_loss,
    predict_trial,
    save_readout,
    settings_from_config,
)
from neurovid.errors import InputError
from neurovid.io import read_h5, write_h5
from neurovid.scoring import repeat_groups

REPO = Path(__file__).resolve().parents[1]
H, W, T, PAD = 12, 16, 40, 5  # frame size, valid frames per trial, NaN padding (Sensorium)
RATE = 30.0


# ---------------------------------------------------------------------- metrics


def test_single_trial_correlation_by_hand() -> None:
    # After dropping each trial's first frame (skip=1) and concatenating:
    # neuron 0: y = 1 2 3 4, p = 1 2 3 5 -> r = 6.5 / sqrt(5 * 8.75) = 0.982708
    # neuron 1: recorded constant -> 0 (the 1e-8 in the denominator)
    # neuron 2: a NaN frame -> NaN -> 0, with a warning
    y = [
        np.array([[0, 5, 1], [1, 5, 2], [2, 5, 3]]),
        np.array([[7, 5, 1], [3, 5, np.nan], [4, 5, 2]]),
    ]
    p = [np.array([[9, 1, 1], [1, 2, 2], [2, 3, 3]]), np.array([[-9, 1, 1], [3, 4, 2], [5, 5, 2]])]
    with pytest.warns(UserWarning, match=r"33.3% NaN correlations"):
        r = metrics.single_trial_correlation(y, p, skip=1, per_neuron=True)
    assert r == pytest.approx([6.5 / np.sqrt(43.75), 0.0, 0.0], abs=1e-7)
    with pytest.warns(UserWarning):
        mean = metrics.single_trial_correlation(y, p, skip=1)
    assert mean == pytest.approx(6.5 / np.sqrt(43.75) / 3, abs=1e-7)
    # The skipped first frames matter: keeping them changes neuron 0's r.
    with pytest.warns(UserWarning):
        assert metrics.single_trial_correlation(y, p, skip=0, per_neuron=True)[0] < 0.5
    # A constant prediction (the mean predictor) scores exactly 0.
    flat = [np.ones((3, 3)), np.ones((3, 3))]
    with pytest.warns(UserWarning):
        assert metrics.single_trial_correlation(y, flat, skip=1, per_neuron=True) == pytest.approx(
            [0, 0, 0]
        )
    with pytest.raises(ValueError, match="not more than skip=3"):
        metrics.single_trial_correlation(y, p, skip=3)


def test_correlation_to_average_by_hand() -> None:
    # Stimulus a: y (1,3),(3,5) -> 2 4; p (0,2),(2,2) -> 1 2.  Stimulus c: y (4,0),(2,2) -> 3 1;
    # p (2,0),(2,2) -> 2 1.  b is shown once and left out (its wild values would change r).
    # r([2,4,3,1], [1,2,2,1]) = 2 / sqrt(5 * 1) = 0.894427; neuron 1 is constant -> 0.
    def trial(a: list[float], b: float = 7.0) -> np.ndarray:
        return np.stack([a, [b] * len(a)], axis=1)

    y = [trial([1, 3]), trial([3, 5]), trial([100, -100]), trial([4, 0]), trial([2, 2])]
    p = [trial([0, 2]), trial([2, 2]), trial([-50, 50]), trial([2, 0]), trial([2, 2])]
    stimuli = ["a", "a", "b", "c", "c"]
    r = metrics.correlation_to_average(y, p, stimuli, skip=0, per_neuron=True)
    assert r == pytest.approx([2 / np.sqrt(5), 0.0], abs=1e-7)
    assert metrics.correlation_to_average(y, p, stimuli, skip=0) == pytest.approx(1 / np.sqrt(5))
    assert repeat_groups(stimuli, min_size=2) == [[0, 1], [3, 4]]
    # Repeats of unequal length are cut to the shortest.
    longer = [np.concatenate([t, t[-1:] * 0 + 99]) if i == 0 else t for i, t in enumerate(y)]
    longer_p = [np.concatenate([t, t[-1:]]) if i == 0 else t for i, t in enumerate(p)]
    assert metrics.correlation_to_average(
        longer, longer_p, stimuli, skip=0, per_neuron=True
    ) == pytest.approx(r)
    with pytest.raises(ValueError, match="no stimulus is shown at least 2 times"):
        metrics.correlation_to_average(y[:3], p[:3], ["a", "b", "c"], skip=0)


# ------------------------------------------------------------------ simulation


def smooth_movie(rng: np.random.Generator, frames: int) -> np.ndarray:
    """Smooth noise frames [frames, H, W] in 0..255 (4x4 blocks, linearly blended every 4 frames)."""
    base = np.kron(rng.normal(size=(frames // 4 + 2, H // 4, W // 4)), np.ones((1, 4, 4)))
    t = np.arange(frames) / 4
    lo = np.floor(t).astype(int)
    f = (t - lo)[:, None, None]
    return np.clip(127.5 + 50 * (base[lo] * (1 - f) + base[lo + 1] * f), 0, 255)


class Truth:
    """Linear-nonlinear neurons: Gaussian RFs, one-frame tail, running gain, softplus, Poisson."""

    def __init__(self, rng: np.random.Generator, n_neurons: int) -> None:
        yy, xx = np.mgrid[:H, :W]
        cy, cx = rng.uniform(2, H - 2, n_neurons), rng.uniform(2, W - 2, n_neurons)
        rf = np.exp(-((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2) / 8)
        self.rf = rf * rng.choice([-1.0, 1.0], n_neurons)[:, None, None]
        self.run_gain = rng.normal(0, 0.3, n_neurons)
        self.rng = rng

    def responses(self, movie: np.ndarray, running: np.ndarray) -> np.ndarray:
        drive = np.einsum("thw,nhw->tn", (movie - 127.5) / 50, self.rf) / 4
        drive[1:] += 0.5 * drive[:-1]
        rate = np.log1p(np.exp(2 * (drive + running[:, None] * self.run_gain)))
        return (self.rng.poisson(2 * rate) / 2).astype(np.float32)


def behavior(rng: np.random.Generator, frames: int) -> np.ndarray:
    """[4, frames]: pupil dilation, running speed, pupil centre x, y."""
    running = np.abs(rng.normal(size=frames)).cumsum() % 3
    return np.stack([rng.normal(size=frames), running, *rng.normal(size=(2, frames))])


def write_sensorium_mouse(root: Path, rng: np.random.Generator, n_neurons: int) -> None:
    """16 train trials and 2 oracle videos x 3 repeats, NaN-padded, in the 2023 layout."""
    truth = Truth(rng, n_neurons)
    movies = [smooth_movie(rng, T) for _ in range(16)]
    oracle = [smooth_movie(rng, T) for _ in range(2)]
    movies += [oracle[0]] * 3 + [oracle[1]] * 3
    tiers = ["train"] * 16 + ["oracle"] * 6 + ["live_test_main"]
    movies.append(smooth_movie(rng, T))
    for name in ("videos", "responses", "behavior", "pupil_center"):
        (root / "data" / name).mkdir(parents=True, exist_ok=True)
    (root / "meta" / "trials").mkdir(parents=True)
    (root / "meta" / "neurons").mkdir(parents=True)
    np.save(root / "meta" / "trials" / "tiers.npy", np.array(tiers))
    np.save(root / "meta" / "neurons" / "unit_ids.npy", np.arange(100, 100 + n_neurons))

    def padded(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a, np.full((*a.shape[:-1], PAD), np.nan)], axis=-1)

    for i, movie in enumerate(movies):
        beh = behavior(rng, T)
        np.save(root / "data/videos" / f"{i}.npy", padded(movie.transpose(1, 2, 0)))
        np.save(root / "data/behavior" / f"{i}.npy", padded(beh[:2]))
        np.save(root / "data/pupil_center" / f"{i}.npy", padded(beh[2:]))
        if tiers[i] != "live_test_main":  # withheld, as in the released test tiers
            np.save(root / "data/responses" / f"{i}.npy", padded(truth.responses(movie, beh[1]).T))


def write_neurovid_mouse(root: Path, rng: np.random.Generator, n_neurons: int) -> list[RunSource]:
    """4 runs of one 200-frame video each at 30 Hz; the last two show the same video (repeats)."""
    from neurovid.video import write_video

    truth = Truth(rng, n_neurons)
    root.mkdir(parents=True)
    videos = {}
    for vid in ("va", "vb", "vc"):
        videos[vid] = root / f"{vid}.mp4"
        write_video(smooth_movie(rng, 200).astype(np.uint8), videos[vid], RATE, crf=10)
    runs = []
    for i, vid in enumerate(("va", "vb", "vc", "vc")):
        movie = video_frames(videos[vid], (H, W)).features.reshape(-1, H, W)
        beh = behavior(rng, len(movie))
        path = root / f"run{i}.h5"
        write_h5(
            path,
            {
                "responses": truth.responses(movie, beh[1]),
                "times": (np.arange(len(movie)) + 0.5) / RATE,
                "target_names": np.array([f"n{k}" for k in range(n_neurons)]),
                "behavior": beh[:2].T.astype(np.float32),
                "pupil_center": beh[2:].T.astype(np.float32),
            },
            {"sampling_rate": RATE, "modality": "calcium", "recording_id": f"run{i}"},
        )
        runs.append(RunSource(f"run{i}", path, f"{vid}@0", {vid: videos[vid]}))
    return runs


def save_tiny_vivit(path: Path, hidden: int = 32) -> Path:
    from transformers import VivitConfig, VivitModel

    torch.manual_seed(0)
    config = VivitConfig(
        image_size=32,
        num_frames=8,
        tubelet_size=[2, 8, 8],
        num_hidden_layers=2,
        hidden_size=hidden,
        num_attention_heads=4,
        intermediate_size=2 * hidden,
    )
    VivitModel(config, add_pooling_layer=False).save_pretrained(path)
    return path


SETTINGS = {
    "quantize": "auto",
    "lora_rank": 4,
    "token_channels": 4,
    "hidden": 16,
    "batch_size": 8,
    "windows_per_trial": 2,
    "eval_stride": 4,
    "val_fraction": 0.2,
    "skip_frames": 8,
    "trial_frames": 40,
    "frame_size": [H, W],
    "max_epochs": 10,
    "patience": 3,
    "lr": 0.003,
    "weight_decay": 0.0,
    "device": "cpu",
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("sensorium")
    rng = np.random.default_rng(0)
    write_sensorium_mouse(root / "m1", rng, 12)
    runs = write_neurovid_mouse(root / "m2", rng, 9)
    return SimpleNamespace(root=root, runs=runs, vivit=save_tiny_vivit(root / "vivit"))


@pytest.fixture(scope="module")
def trained(data: SimpleNamespace) -> SimpleNamespace:
    """One run of scripts/train_sensorium.py on both mice (CPU, fp32 LoRA)."""
    torch.set_num_threads(1)
    out = data.root / "results"
    settings = {**SETTINGS, "backbone": str(data.vivit), "folders": {"m1": str(data.root / "m1")}}
    subjects = {
        "m2": [
            {
                "recording": r.recording_id,
                "responses": str(r.responses),
                "stimulus": r.stimulus,
                "videos": {k: str(v) for k, v in r.videos.items()},
            }
            for r in data.runs
        ]
    }
    output = {
        "model": str(out / "model.pt"),
        "metrics": str(out / "metrics.csv"),
        "summary": str(out / "summary.json"),
        "scores": [str(out / "scores" / "m1.csv"), str(out / "scores" / "m2.csv")],
        "figure": str(out / "loss.png"),
        "training": str(out / "training"),
    }
    smk = SimpleNamespace(
        input=namedlist(
            tiers=[str(data.root / "m1" / "meta" / "trials" / "tiers.npy")],
            responses=[str(r.responses) for r in data.runs],
        ),
        output=namedlist(**output),
        params=namedlist(settings=settings, subjects=subjects, seed=0),
        log=namedlist([str(out / "train.log")]),
        threads=1,
    )
    out.mkdir()
    scope = run_script(str(REPO / "scripts" / "train_sensorium.py"), {"snakemake": smk})
    return SimpleNamespace(
        out=out, result=scope["result"], mice=scope["mice"], log=(out / "train.log").read_text()
    )


# ------------------------------------------------------------------ data layouts


def test_sensorium_layout_is_read_with_lengths_tiers_repeats(data: SimpleNamespace) -> None:
    mouse = load_sensorium_mouse(data.root / "m1", test_tiers=["oracle", "live_test_main"])
    assert (mouse.mouse_id, mouse.n_neurons, mouse.frame_size) == ("m1", 12, (H, W))
    assert mouse.neuron_ids[:2].tolist() == ["100", "101"]
    assert mouse.describe()["trials_per_tier"] == {"train": 16, "oracle": 6, "live_test_main": 1}
    assert {t.length for t in mouse.trials} == {T}  # NaN padding excluded
    arrays = mouse.trials[0].read()
    assert arrays.video.shape == (T, H, W) and arrays.behavior.shape == (T, 4)
    assert arrays.responses.shape == (T, 12) and np.isfinite(arrays.responses).all()
    stored = np.load(data.root / "m1" / "data" / "videos" / "0.npy")
    np.testing.assert_allclose(arrays.video[3], stored[:, :, 3], rtol=1e-6)
    oracle = mouse.in_tiers(["oracle"])
    assert [t.stimulus for t in oracle[:3]] == [oracle[0].stimulus] * 3
    assert oracle[0].stimulus != oracle[3].stimulus and mouse.trials[0].stimulus == ""
    # The withheld tier has no responses and is left out of scoring.
    withheld = mouse.trials[-1]
    assert withheld.tier == "live_test_main" and not withheld.has_responses
    assert withheld.read().responses is None
    assert len(mouse.in_tiers(["oracle", "live_test_main"])) == 6
    train, val = split_validation(mouse.in_tiers(["train"]), 0.25, seed=0)
    assert (len(train), len(val)) == (12, 4) and not {t.trial_id for t in train} & {
        t.trial_id for t in val
    }


def test_sensorium_layout_errors_name_file_field_fix(data: SimpleNamespace, tmp_path: Path) -> None:
    with pytest.raises(
        InputError, match=r"nowhere \[deep.sensorium.folders.nowhere\].*does not exist"
    ):
        load_sensorium_mouse(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(
        InputError, match=r"tiers.npy \[meta/trials/tiers.npy\].*Fix: use the folder"
    ):
        load_sensorium_mouse(tmp_path / "empty")
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(data.root / "m1", broken)
    np.save(broken / "data" / "behavior" / "2.npy", np.zeros((3, T + PAD)))
    with pytest.raises(
        InputError,
        match=r"behavior/2.npy \[data/behavior\]: has shape \(3, 45\), expected \(2, 45\)",
    ):
        load_sensorium_mouse(broken)
    np.save(broken / "data" / "behavior" / "2.npy", np.zeros((2, T + PAD)))
    (broken / "data" / "responses" / "4.npy").unlink()
    with pytest.raises(
        InputError, match=r"responses/4.npy \[data/responses\]: trial 4 of training tier 'train'"
    ):
        load_sensorium_mouse(broken)


def test_neurovid_runs_become_trials_on_the_response_timebase(data: SimpleNamespace) -> None:
    mouse = load_neurovid_mouse("m2", data.runs, frame_size=(H, W), trial_frames=40)
    assert (mouse.n_neurons, mouse.sampling_rate, mouse.frame_size) == (9, RATE, (H, W))
    assert mouse.describe()["trials_per_tier"] == {"train": 10, "oracle": 10}  # runs 3, 4 repeat
    first = mouse.trials[0].read()
    decoded = video_frames(data.runs[0].videos["va"], (H, W)).features.reshape(-1, H, W)
    np.testing.assert_allclose(first.video, decoded[:40], atol=1e-3)
    assert first.behavior.shape == (40, 4) and np.abs(first.behavior).sum() > 0
    repeats = mouse.in_tiers(["oracle"])
    assert repeats[0].stimulus == repeats[5].stimulus == "vc@0#0"
    # Behavior of the wrong shape is an error naming the file and dataset.
    bad = Path(data.runs[0].responses).with_name("bad.h5")
    arrays, attrs = read_h5(data.runs[0].responses)
    arrays["behavior"] = arrays["behavior"][:, :1]
    write_h5(bad, arrays, attrs)
    run = data.runs[0]
    with pytest.raises(InputError, match=r"bad.h5 \[behavior\]: `behavior` has shape \(200, 1\)"):
        load_neurovid_mouse(
            "m2", [RunSource("r", bad, run.stimulus, run.videos)], frame_size=(H, W)
        )


def test_unknown_setting_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"\[deep.sensorium\]: unknown settings \['lora_rnak'\]"):
        settings_from_config({"lora_rnak": 4})
    with pytest.raises(InputError, match="quantize must be one of"):
        settings_from_config({"quantize": "8bit"})


# ------------------------------------------------------------------ training


def test_training_beats_the_mean_predictor_on_held_out_trials(trained: SimpleNamespace) -> None:
    """Margin: held-out single-trial r >= 0.3 per mouse (mean predictor: 0) and Poisson loss
    at least 10% below the training-mean predictor's."""
    model, data = trained.result.model, DataSettings(skip_frames=8, eval_stride=4)
    for mouse in trained.mice:
        test = mouse.in_tiers(["oracle"])
        train = mouse.in_tiers(["train"])
        ys = [t.read().responses for t in test]
        preds = [predict_trial(model, t, mouse.mouse_id, stride=4) for t in test]
        mean = np.mean(np.concatenate([t.read().responses for t in train]), axis=0)
        r = metrics.single_trial_correlation(ys, preds, skip=data.skip_frames)
        y, p = torch.from_numpy(np.concatenate(ys)), torch.from_numpy(np.concatenate(preds))
        model_loss = float(poisson_loss(p, y))
        mean_loss = float(poisson_loss(torch.from_numpy(np.broadcast_to(mean, y.shape).copy()), y))
        assert r >= 0.3, (mouse.mouse_id, r)
        assert model_loss <= 0.9 * mean_loss, (mouse.mouse_id, model_loss, mean_loss)
        scores = pd.read_csv(trained.out / "scores" / f"{mouse.mouse_id}.csv")
        assert scores["neuron_id"].astype(str).tolist() == mouse.neuron_ids.tolist()
        assert scores["single_trial_correlation"].mean() == pytest.approx(r, abs=1e-5)
        assert scores["correlation_to_average"].mean() >= 0.3  # both mice have repeats


def test_outputs_log_and_checkpoints(trained: SimpleNamespace) -> None:
    out = trained.out
    table = pd.read_csv(out / "metrics.csv")
    assert list(table.columns[:6]) == [
        "epoch",
        "train_loss",
        "val_loss",
        "best_val_loss",
        "lr",
        "seconds",
    ]
    assert "val_single_trial_correlation" in table.columns
    assert table["val_loss"].iloc[-1] < table["val_loss"].iloc[0]
    assert {p.name for p in (out / "training").iterdir()} >= {"last.pt", "best.pt", "metrics.csv"}
    assert not (out / "training.partial").exists() and (out / "loss.png").stat().st_size > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["quantized_4bit"] is False and set(summary["mice"]) == {"m1", "m2"}
    assert (
        summary["mice"]["m1"]["repeated_stimuli"] == 2
        and summary["mice"]["m2"]["test_trials"] == 10
    )
    assert summary["provenance"]["step"] == "train_sensorium"
    for mouse in ("m1", "m2"):  # each score table's JSON sidecar
        sidecar = json.loads((out / "scores" / f"{mouse}.json").read_text())
        assert sidecar["mouse"] == mouse and sidecar["provenance"]["step"] == "train_sensorium"
    assert "running on cpu (no CUDA device in use), plain LoRA on fp32 base weights" in trained.log
    # The weights file rebuilds the same model (base backbone from its directory).
    reloaded = load_model(out / "model.pt", device="cpu")
    trial = trained.mice[0].in_tiers(["oracle"])[0]
    np.testing.assert_allclose(
        predict_trial(reloaded, trial, "m1"),
        predict_trial(trained.result.model, trial, "m1"),
        rtol=1e-5,
    )


def test_lora_leaves_base_weights_frozen_and_unchanged(
    trained: SimpleNamespace, data: SimpleNamespace
) -> None:
    from transformers import VivitModel

    model = trained.result.model
    pretrained = VivitModel.from_pretrained(data.vivit, add_pooling_layer=False).state_dict()
    checked = 0
    for name, param in model.backbone.named_parameters():
        if "lora_" in name:
            assert param.requires_grad, name
            continue
        assert not param.requires_grad, name
        key = name.removeprefix("base_model.model.").replace(".base_layer", "")
        torch.testing.assert_close(param.detach(), pretrained[key], rtol=0, atol=0)
        checked += 1
    assert checked == len(pretrained)
    lora_b = [p for n, p in model.backbone.named_parameters() if "lora_B" in n]
    assert len(lora_b) == 8 and any(p.abs().sum() > 0 for p in lora_b)  # adapters did train


def test_readout_heads_swap_without_touching_the_backbone(
    trained: SimpleNamespace, tmp_path: Path
) -> None:
    model = load_model(trained.out / "model.pt", device="cpu")
    backbone = {
        k: v.clone() for k, v in model.state_dict().items() if not k.startswith("readouts.")
    }
    m1_head = {k: v.clone() for k, v in model.readouts["m1"].state_dict().items()}
    torch.manual_seed(0)
    video = torch.rand(2, 8, H, W) * 255
    beh = torch.randn(2, 8, 4)
    with torch.no_grad():
        before = model(video, beh, "m1")
    save_readout(model, "m1", tmp_path / "m1.pt")
    assert load_readout(model, tmp_path / "m1.pt", mouse="m2") == "m2"  # m2 now uses m1's head
    with torch.no_grad():
        torch.testing.assert_close(model(video, beh, "m2"), before)
    assert model.readouts["m2"].n_neurons == 12
    for key, value in model.state_dict().items():
        if not key.startswith("readouts."):
            torch.testing.assert_close(value, backbone[key], rtol=0, atol=0)
    for key, value in model.readouts["m1"].state_dict().items():
        torch.testing.assert_close(value, m1_head[key], rtol=0, atol=0)
    # A new mouse's head can be added on its own.
    assert load_readout(model, tmp_path / "m1.pt", mouse="m3") == "m3" and "m3" in model.readouts
    with pytest.raises(KeyError, match="no readout head for mouse 'm9'"):
        model(video, beh, "m9")


def test_4bit_qlora_path_trains_on_cpu(data: SimpleNamespace, tmp_path: Path) -> None:
    """bitsandbytes' CPU path needs layers of >= 64 inputs: a 64-wide tiny ViViT."""
    pytest.importorskip("bitsandbytes")
    from bitsandbytes.nn import Linear4bit

    from neurovid.deep.training import TrainSettings

    vivit = save_tiny_vivit(tmp_path / "vivit64", hidden=64)
    settings = ModelSettings(
        backbone=str(vivit), quantize="4bit", lora_rank=4, token_channels=4, hidden=16
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(settings, {"m1": 12}, "cpu")
    linear4 = [n for n, m in model.backbone.named_modules() if isinstance(m, Linear4bit)]
    assert len(linear4) == 12 and is_quantized(model)  # q/k/v/o + fc1/fc2 in 2 layers
    assert {
        n for n, p in model.named_parameters() if p.requires_grad and n.startswith("backbone.")
    } == {n for n, _ in model.named_parameters() if "lora_" in n}
    assert not any(k.startswith("backbone.") and "lora_" not in k for k in model.state_dict())
    mouse = load_sensorium_mouse(data.root / "m1")
    result = fit_sensorium(
        [mouse],
        settings,
        DataSettings(batch_size=8, eval_stride=8, val_fraction=0.2, skip_frames=8),
        TrainSettings(max_epochs=1, lr=3e-3, device="cpu"),
        tmp_path / "work",
        logger=logging.getLogger("test"),
    )
    assert result.summary["quantized_4bit"] is True and result.train.epochs_run == 1
    assert np.isfinite(result.scores["m1"]["single_trial_correlation"]).all()


def test_negative_responses_stop_the_poisson_model(tmp_path: Path) -> None:
    """dF/F-like responses (below zero) cannot be fit with the Poisson loss: an InputError."""
    from neurovid.deep.training import TrainSettings

    root = tmp_path / "m1"
    write_sensorium_mouse(root, np.random.default_rng(1), 6)
    for path in (root / "data/responses").glob("*.npy"):
        np.save(path, np.load(path) - 0.5)
    with pytest.raises(InputError) as err:
        fit_sensorium(
            [load_sensorium_mouse(root)],
            ModelSettings(backbone="unused"),
            DataSettings(),
            TrainSettings(max_epochs=1, device="cpu"),
            tmp_path / "work",
        )
    message = str(err.value)
    assert str(root) in message and "deep.sensorium responses" in message
    assert "negative" in message and "not dF/F or z-scored traces" in message
    assert not (tmp_path / "work").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_quantizes_on_cuda(data: SimpleNamespace) -> None:
    model = build_model(
        ModelSettings(
            backbone=str(save_tiny_vivit(data.root / "vivit_cuda", hidden=64)), hidden=16
        ),
        {"m1": 12},
        "cuda",
    )
    assert is_quantized(model)
