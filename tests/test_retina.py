"""Vi-ST-style retina model: data contract, causality, losses, metrics, training, rule script."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import namedlist, run_script
from scipy.stats import gaussian_kde

from neurovid.deep import retina as rt
from neurovid.deep.training import TrainSettings
from neurovid.errors import InputError
from neurovid.io import write_features

FPS = 30.0
N_CELLS = 6
FAST = TrainSettings(max_epochs=25, patience=4, lr=3e-3, device="cpu")
TINY = rt.RetinaSettings(
    hidden=16, kernel_sizes=(3, 7), n_blocks=1, window=32, batch_size=8, dropout=0.0, train=FAST
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: tiny models gain nothing from more, and CI cores are shared."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


# --------------------------------------------------------------------------- simulated data


def smooth_features(rng: np.random.Generator, n_bins: int, n_dims: int) -> np.ndarray:
    """AR(1) stimulus features (correlated in time, like per-frame embeddings of a movie)."""
    noise = rng.standard_normal((n_bins + 50, n_dims))
    x = np.zeros_like(noise)
    for t in range(1, len(noise)):
        x[t] = 0.8 * x[t - 1] + noise[t]
    return x[50:]


def ln_rates(features: np.ndarray, lags: int = 6) -> np.ndarray:
    """Known linear-nonlinear ground truth: random projection, causal exponential filter, softplus.

    The projection is fixed (seed 100), so every movie drives the same cells.
    """
    weights = np.random.default_rng(100).standard_normal((features.shape[1], N_CELLS))
    drive = features @ weights / np.sqrt(features.shape[1])
    kernel = np.exp(-np.arange(lags) / 2.0)
    filtered = np.zeros_like(drive)
    for k in range(lags):
        filtered[k:] += kernel[k] * drive[: len(drive) - k]
    return np.log1p(np.exp(1.5 * filtered / filtered.std() - 0.5))


def write_movie(tmp: Path, name: str, seed: int, n_bins: int = 600, trials: int = 4) -> tuple:
    """A features file (two layout blocks: layer 3 = signal, layer -1 = noise) and responses."""
    rng = np.random.default_rng(seed)
    signal = smooth_features(rng, n_bins, 12)
    rates = ln_rates(signal)
    noise = rng.standard_normal((n_bins, 12))
    layout = [
        {"layer": 3, "pooling": "cls", "start": 0, "stop": 12},
        {"layer": -1, "pooling": "cls", "start": 12, "stop": 24},
    ]
    features_path = tmp / f"{name}.features.h5"
    write_features(
        features_path,
        np.concatenate([signal, noise], axis=1),
        (np.arange(n_bins) + 0.5) / FPS,
        {"extractor": "vit", "layout": layout, "fps": FPS, "duration": n_bins / FPS},
    )
    responses = rng.poisson(np.broadcast_to(rates, (trials, *rates.shape))).astype(np.float32)
    responses_path = tmp / f"{name}.responses.h5"
    with h5py.File(responses_path, "w") as h5:
        h5["responses"] = responses
        h5["rf_positions"] = rng.uniform(-1, 1, (N_CELLS, 2))
        h5.attrs["sampling_rate"] = FPS
    return features_path, responses_path, rates


@pytest.fixture(scope="module")
def movies(tmp_path_factory) -> dict[str, tuple]:
    tmp = tmp_path_factory.mktemp("retina")
    return {name: write_movie(tmp, name, seed) for name, seed in (("movA", 0), ("movB", 1))}


def loaded(movies: dict, name: str, **kwargs) -> rt.RetinaMovie:
    features, responses, _ = movies[name]
    return rt.load_movie(features, responses, video_id=name, layer=3, pooling="cls", **kwargs)


# --------------------------------------------------------------------------- data contract


def test_load_movie_picks_the_layout_block_and_reads_repeats(movies) -> None:
    movie = loaded(movies, "movA")
    with h5py.File(movies["movA"][0]) as h5:
        signal = h5["features"][:, :12]
    assert movie.features.shape == (600, 12)
    np.testing.assert_allclose(movie.features, signal, rtol=1e-6)
    assert movie.responses.shape == (4, 600, N_CELLS)
    assert movie.sampling_rate == FPS
    assert movie.rf_positions.shape == (N_CELLS, 2)
    assert list(movie.cell_names[:2]) == ["cell000", "cell001"]
    np.testing.assert_allclose(movie.trial_average, movie.responses.mean(0))


def test_responses_at_half_the_frame_rate_average_frame_pairs(tmp_path, movies) -> None:
    features_path = movies["movA"][0]
    path = tmp_path / "slow.h5"
    with h5py.File(path, "w") as h5:
        h5["responses"] = np.ones((2, 300, 3), dtype=np.float32)
        h5["times"] = (np.arange(300) + 0.5) / 15.0
    movie = rt.load_movie(features_path, path, video_id="movA", layer=3)
    with h5py.File(features_path) as h5:
        frames = h5["features"][:, :12]
    assert movie.sampling_rate == pytest.approx(15.0)
    np.testing.assert_allclose(movie.features[0], frames[:2].mean(0), rtol=1e-5)
    np.testing.assert_allclose(movie.features[10], frames[20:22].mean(0), rtol=1e-5)


@pytest.mark.parametrize(
    ("datasets", "field", "words"),
    [
        ({"trials": np.ones((2, 5, 3))}, "responses", "`responses` is missing"),
        ({"responses": np.ones((2, 5, 3, 1))}, "responses", "expected [trials, time, cells]"),
        (
            {"responses": np.full((2, 5, 3), np.nan)},
            "responses",
            "30 NaN/inf values",
        ),
        (
            {"responses": np.ones((2, 5, 3)), "rf_positions": np.ones((3, 3))},
            "rf_positions",
            "expected [3, 2]",
        ),
        ({"responses": np.ones((2, 5, 3)), "times": np.arange(4.0)}, "times", "5 time bins"),
    ],
)
def test_bad_responses_file_names_file_field_and_fix(tmp_path, datasets, field, words) -> None:
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as h5:
        for name, value in datasets.items():
            h5[name] = value
    with pytest.raises(InputError) as err:
        rt.read_retina_responses(path, frame_rate=30.0)
    assert err.value.field == field
    assert str(path) in str(err.value) and words in str(err.value) and "Fix:" in str(err.value)


def test_responses_longer_than_the_video_are_an_error(tmp_path, movies) -> None:
    path = tmp_path / "long.h5"
    with h5py.File(path, "w") as h5:
        h5["responses"] = np.ones((1, 700, 2))  # 700 bins at 30 Hz; the video has 600 frames
    with pytest.raises(InputError) as err:
        rt.load_movie(movies["movA"][0], path, video_id="movA", layer=3)
    assert err.value.field == "times"
    assert "cover 23.333 s (700 bins at 30 Hz) but video 'movA' lasts 20.000 s" in str(err.value)


def test_no_timebase_without_a_frame_rate_is_an_error(tmp_path) -> None:
    path = tmp_path / "untimed.h5"
    with h5py.File(path, "w") as h5:
        h5["responses"] = np.ones((1, 5, 2))
    assert rt.read_retina_responses(path, frame_rate=25.0)["sampling_rate"] == 25.0
    with pytest.raises(InputError, match=r"sampling_rate.*Fix: add `times`"):
        rt.read_retina_responses(path, frame_rate=None)


def test_missing_layout_block_lists_what_the_file_has(movies) -> None:
    features, responses, _ = movies["movA"]
    with pytest.raises(InputError) as err:
        rt.load_movie(features, responses, video_id="movA", layer=6, pooling="mean")
    assert err.value.field == "layout"
    assert "[(3, 'cls'), (-1, 'cls')]" in str(err.value) and "deep.retina.layer" in str(err.value)


def test_the_shipped_config_section_is_valid(repo) -> None:
    import jsonschema
    import yaml

    config = yaml.safe_load((repo / "config.yaml").read_text())
    jsonschema.validate(config, yaml.safe_load((repo / "schemas/config.schema.yaml").read_text()))
    settings = rt.RetinaSettings.from_config(config["deep"]["retina"])
    assert settings.loss == "poisson" and settings.kernel_sizes == (3, 7, 15)


def test_unknown_setting_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"unknown settings \['hiden'\]"):
        rt.RetinaSettings.from_config({"hiden": 8})
    settings = rt.RetinaSettings.from_config(
        {"experiments": {}, "hidden": 8, "kernel_sizes": [3, 5], "max_epochs": 2, "lr": 0.01}
    )
    assert settings.hidden == 8 and settings.kernel_sizes == (3, 5)
    assert settings.train.max_epochs == 2 and settings.train.lr == 0.01
    with pytest.raises(InputError, match=r"deep.retina\].*loss must be one of"):
        rt.RetinaSettings.from_config({"loss": "mse"})


# --------------------------------------------------------------------------- model


def test_no_look_ahead_future_frames_do_not_change_earlier_outputs() -> None:
    torch.manual_seed(0)
    model = rt.RetinaCNN(
        10, 4, hidden=8, kernel_sizes=(3, 7), n_blocks=2, rf_positions=np.random.rand(4, 2)
    ).eval()
    with torch.no_grad():  # RF conditioning active (non-zero offset)
        model.rf_embed[-1].weight.normal_()
    x = torch.randn(2, 80, 10)
    cut = 50
    perturbed = x.clone()
    perturbed[:, cut:] += 5 * torch.randn(2, 80 - cut, 10)
    with torch.no_grad():
        before, after = model(x), model(perturbed)
    assert torch.equal(before[:, :cut], after[:, :cut])
    assert (before[:, cut] - after[:, cut]).abs().max() > 1e-4  # the present frame counts
    # A single-frame change reaches exactly receptive_field bins (1 + 6 + 12 = 19).
    assert model.receptive_field == 19
    poked = x.clone()
    poked[:, 20] += 3.0
    with torch.no_grad():
        changed = (model(poked) - before).abs().amax(dim=(0, 2)) > 0
    assert changed.nonzero().flatten().tolist() == list(range(20, 20 + 19))


def test_rates_are_positive_and_start_at_the_mean_rate() -> None:
    model = rt.RetinaCNN(5, 3, hidden=8, kernel_sizes=(3,), n_blocks=1)
    model.set_mean_rates(np.array([0.5, 2.0, 7.0]))
    with torch.no_grad():
        model.readout_weight.zero_()
        rates = model(torch.randn(1, 20, 5) * 100)
    assert rates.min() > 0
    np.testing.assert_allclose(rates[0, 0].numpy(), [0.5, 2.0, 7.0], rtol=1e-5)


# --------------------------------------------------------------------------- losses


def naive_soft_dtw(x: np.ndarray, y: np.ndarray, gamma: float) -> float:
    """Textbook O(L M) soft-DTW recursion (the reference for the anti-diagonal version)."""
    r = np.full((len(x) + 1, len(y) + 1), np.inf)
    r[0, 0] = 0.0
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            prev = np.array([r[i - 1, j - 1], r[i - 1, j], r[i, j - 1]])
            finite = prev[np.isfinite(prev)]
            softmin = -gamma * np.log(np.sum(np.exp(-finite / gamma)))
            r[i, j] = (x[i - 1] - y[j - 1]) ** 2 + softmin
    return float(r[-1, -1])


def test_soft_dtw_matches_the_textbook_recursion_and_hard_dtw() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((3, 7)), rng.standard_normal((3, 5))
    got = rt.soft_dtw(torch.tensor(x), torch.tensor(y), gamma=0.5).numpy()
    want = [naive_soft_dtw(a, b, 0.5) for a, b in zip(x, y, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-5)
    # Hand case, gamma -> 0 is DTW: [0, 2] vs [1] aligns both to 1: (0-1)^2 + (2-1)^2 = 2.
    hard = rt.soft_dtw(torch.tensor([[0.0, 2.0]]), torch.tensor([[1.0]]), gamma=1e-4)
    assert hard.item() == pytest.approx(2.0, abs=1e-3)
    # A time shift costs DTW nothing but costs the squared error.
    a = torch.tensor([[0.0, 0, 1, 0, 0, 0]])
    b = torch.tensor([[0.0, 0, 0, 1, 0, 0]])
    assert rt.soft_dtw_divergence(a, b, gamma=1e-3).item() == pytest.approx(0.0, abs=1e-2)
    assert rt.soft_dtw_divergence(a, a, gamma=0.1).item() == pytest.approx(0.0, abs=1e-6)


def test_loss_with_soft_dtw_term_has_finite_gradients() -> None:
    rate = torch.rand(2, 16, 3, requires_grad=True)
    target = torch.poisson(torch.ones(2, 16, 3))
    settings = rt.RetinaSettings(dtw_weight=1.0, dtw_gamma=0.1)
    loss = rt.retina_loss(rate + 0.1, target, settings)
    loss.backward()
    assert torch.isfinite(rate.grad).all() and rate.grad.abs().sum() > 0
    base = rt.poisson_loss(rate + 0.1, target)
    assert loss.item() > base.item()  # the divergence term is >= 0 and here > 0


# --------------------------------------------------------------------------- metrics


def test_cc_is_against_the_trial_average() -> None:
    # Two trials whose average is [1, 2, 3, 4]; neither trial alone is linear.
    trials = np.array([[0.0, 2, 2, 4], [2, 2, 4, 4]])[:, :, None]
    recorded = np.concatenate([trials, trials, np.ones_like(trials), trials], axis=2)
    recorded[1, :, 3] = [4, 3, 5, 3]  # cell 3: trials differ, average [2, 2.5, 3.5, 3.5]
    predicted = np.array([[2.0, 1, 5, 1], [4, 3, 5, 3], [6, 2, 5, 2], [8, 6, 5, 4]])
    r = rt.pearson_cc(predicted, recorded)
    assert r[0] == pytest.approx(1.0)  # twice the average
    # Hand: deviations [-2, 0, -1, 3] (pred) and [-1.5, -0.5, 0.5, 1.5] (average):
    # sum of products 3 + 0 - 0.5 + 4.5 = 7; sums of squares 14 and 5.
    assert r[1] == pytest.approx(7 / math.sqrt(14 * 5))
    assert math.isnan(r[2])  # constant prediction and constant average: undefined
    # Deviations [-1.5, 0.5, -0.5, 1.5] and [-0.875, -0.375, 0.625, 0.625]:
    # products 1.3125 - 0.1875 - 0.3125 + 0.9375 = 1.75; squares 5 and 1.6875.
    assert r[3] == pytest.approx(1.75 / math.sqrt(5 * 1.6875))
    # The same prediction against a single trial differs: the trial average is the reference.
    assert rt.pearson_cc(predicted[:, 3:], recorded[1, :, 3:])[0] != pytest.approx(r[3])


def triangle_train(widths: list[int], gap: int = 30) -> np.ndarray:
    """Triangular peaks of height 1 and base ``2 w`` (full width at half height: ``w`` bins)."""
    parts = [np.zeros(gap)]
    for w in widths:
        parts += [np.concatenate([np.arange(w) / w, 1 - np.arange(w + 1) / w]), np.zeros(gap)]
    return np.concatenate(parts)


def test_peak_durations_are_widths_at_half_prominence_in_seconds() -> None:
    trace = triangle_train([4, 10, 6])
    np.testing.assert_allclose(rt.peak_durations(trace, sampling_rate=10.0), [0.4, 1.0, 0.6])
    assert rt.peak_durations(np.full(50, 3.0), 10.0).size == 0


def test_sd_kl_edge_cases() -> None:
    two = triangle_train([4, 8])
    one = triangle_train([5])
    same = rt.sd_kl(two, two.copy(), 10.0)
    assert same.value == 0.0 and same.reason == "" and same.n_pred == same.n_true == 2
    scaled = rt.sd_kl(3 * two + 1, two, 10.0)  # same durations, other amplitude: still 0
    assert scaled.value == 0.0
    few = rt.sd_kl(one, two, 10.0)
    assert math.isnan(few.value)
    assert few.reason == "fewer than two peaks in the predicted rate (1)"
    flat = rt.sd_kl(two, np.zeros(80), 10.0)
    assert math.isnan(flat.value) and flat.reason == "fewer than two peaks in the recorded rate (0)"
    equal = rt.sd_kl(triangle_train([6, 6, 6]), two, 10.0)
    assert math.isnan(equal.value) and "are equal: KDE undefined" in equal.reason


def test_duration_kl_matches_the_continuous_kl_of_scott_kdes() -> None:
    pred, true = np.array([0.2, 0.3, 0.35, 0.5]), np.array([0.25, 0.4, 0.45, 0.6, 0.7])
    value, reason = rt.duration_kl(pred, true, grid_points=4096)
    p, q = gaussian_kde(pred, "scott"), gaussian_kde(true, "scott")
    # Scott's rule in 1-D: bandwidth = std (ddof=1) * n^(-1/5).
    assert math.sqrt(p.covariance[0, 0]) == pytest.approx(pred.std(ddof=1) * 4 ** (-1 / 5))
    # Reference: the continuous KL integral on a fine grid (trapezoid rule, no density floor).
    fine = np.linspace(-0.5, 1.2, 20001)
    reference = np.trapezoid(p(fine) * np.log(p(fine) / q(fine)), fine)
    assert reason == "" and value == pytest.approx(reference, rel=0.02)
    assert value > 0
    farther, _ = rt.duration_kl(pred, true + 0.3)
    assert farther > value


# --------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def trained(movies, tmp_path_factory) -> rt.RetinaRun:
    out = tmp_path_factory.mktemp("retina_state")
    return rt.train_retina([loaded(movies, "movA")], TINY, out)


def test_short_training_beats_the_mean_predictor_on_held_out_bins(trained, movies) -> None:
    scores = trained.scores
    # Held-out (last 20%) MSE against the trial average: at most 60% of the training-mean
    # predictor's (measured ~0.35-0.40), and CC > 0.5 in every cell (measured 0.6-0.85).
    assert scores["mse"].sum() < 0.6 * scores["mse_mean_predictor"].sum()
    assert scores["cc"].min() > 0.5
    # The true LN rates bound what is learnable: the model's CC is below the truth's
    # (the truth correlates with the noisy trial average, not perfectly).
    rates = movies["movA"][2]
    test = rt.time_blocks(600, TINY.val_fraction, TINY.test_fraction)["test"]
    truth_cc = rt.pearson_cc(rates[test], loaded(movies, "movA").responses[:, test])
    assert scores["cc"].mean() < truth_cc.mean()
    history = trained.result.history
    assert list(history.columns[:6]) == [
        "epoch",
        "train_loss",
        "val_loss",
        "best_val_loss",
        "lr",
        "seconds",
    ]
    assert "val_cc" in history.columns
    # The responses file has RF positions: the RF-conditioned readout offset was trained.
    assert trained.model.rf_embed is not None
    assert trained.model.rf_embed[-1].weight.abs().sum() > 0
    assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0]


def test_outputs_and_checkpoint_round_trip(trained, movies, tmp_path) -> None:
    movie = loaded(movies, "movA")
    state = tmp_path / "state"
    state.mkdir()
    trained.result.history.to_csv(state / "metrics.csv", index=False)
    outputs = {
        name: tmp_path / f"{name}{suffix}"
        for name, suffix in (
            ("checkpoint", ".pt"),
            ("metrics", ".csv"),
            ("loss_curve", ".png"),
            ("scores", ".tsv"),
        )
    }
    rt.write_retina_outputs(trained, [movie], TINY, state, outputs, {"step": "test"})
    model, meta = rt.load_checkpoint(outputs["checkpoint"])
    np.testing.assert_allclose(
        rt.predict(model, movie.features), trained.predictions["movA"], rtol=1e-5
    )
    assert meta["settings"] == TINY and meta["cell_names"][0] == "cell000"
    table = pd.read_csv(outputs["scores"], sep="\t")
    assert len(table) == N_CELLS and {"cc", "sd_kl", "sd_kl_reason"} <= set(table.columns)
    assert len(pd.read_csv(outputs["metrics"])) == trained.result.epochs_run
    assert outputs["loss_curve"].read_bytes()[:4] == b"\x89PNG"


def test_state_dir_is_kept_for_the_same_run_and_reset_for_another(tmp_path) -> None:
    state = rt.prepare_state_dir(tmp_path / "state", "sha256:a")
    (state / "last.pt").write_bytes(b"x")
    assert (rt.prepare_state_dir(state, "sha256:a") / "last.pt").exists()
    assert not (rt.prepare_state_dir(state, "sha256:b") / "last.pt").exists()
    assert (state / "run_key.txt").read_text().strip() == "sha256:b"


def test_cross_video_both_directions(movies, tmp_path) -> None:
    settings = rt.RetinaSettings(**{**TINY.__dict__, "rf_conditioning": False})
    table = rt.cross_video([loaded(movies, "movA"), loaded(movies, "movB")], settings, tmp_path)
    assert list(zip(table["train_movie"], table["test_movie"], strict=True)) == [
        ("movA", "movB"),
        ("movB", "movA"),
    ]
    # Same LN cells in both movies: the model generalizes to the unseen movie.
    assert (table["cc_mean"] > 0.5).all()
    assert (table["cells"] == N_CELLS).all()
    with pytest.raises(InputError, match="needs two movies"):
        rt.cross_video([loaded(movies, "movA")], settings, tmp_path)


def test_poisson_loss_on_negative_responses_stops_naming_file_and_fix(movies, tmp_path) -> None:
    movie = loaded(movies, "movA")
    dff = replace(  # dF/F-like: below zero
        movie,
        responses=movie.responses - movie.responses.mean(),
        source={**movie.source, "responses": "rec/movA_dff.h5"},
    )
    with pytest.raises(InputError) as err:
        rt.train_retina([dff], TINY, tmp_path / "state")
    message = str(err.value)
    assert "rec/movA_dff.h5" in message and "deep.retina.loss" in message
    assert "negative" in message and "deep.retina.loss: rmse" in message
    assert not (tmp_path / "state").exists()  # stopped before training
    # rmse accepts them
    rt.check_loss([dff], replace(TINY, loss="rmse"))


def test_rule_script_writes_every_output(movies, tmp_path, repo) -> None:
    features, responses, _ = movies["movA"]
    out = tmp_path / "results"
    output = {
        "checkpoint": str(out / "model.pt"),
        "metrics": str(out / "metrics.csv"),
        "loss_curve": str(out / "loss_curve.png"),
        "scores": str(out / "scores.tsv"),
    }
    config = {
        "extractor": "vit",
        "layer": 3,
        "pooling": "cls",
        "hidden": 8,
        "kernel_sizes": [3],
        "n_blocks": 1,
        "window": 32,
        "max_epochs": 2,
        "device": "cpu",
    }

    class Job:
        input = namedlist(features=[str(features)], responses=[str(responses)])
        params = namedlist(settings=config, movies=["movA"], state=str(out / "state"), seed=3)
        log = namedlist([str(tmp_path / "train.log")])
        threads = 1

    Job.output = namedlist(**output)
    run_script(str(repo / "scripts" / "train_retina.py"), {"snakemake": Job})
    scores = pd.read_csv(output["scores"], sep="\t")
    assert scores["movie"].tolist() == ["movA"] * N_CELLS
    sidecar = json.loads((out / "scores.json").read_text())  # the table's provenance
    assert sidecar["provenance"]["step"] == "train_retina"
    assert sidecar["provenance"]["params"]["movies"] == ["movA"]
    assert len(pd.read_csv(output["metrics"])) == 2
    log = (tmp_path / "train.log").read_text()
    assert "movA: 4 trials x 600 bins x 6 cells at 30 Hz, 12 feature columns, RF positions" in log
    assert "movA held-out: CC mean" in log
    saved = torch.load(output["checkpoint"], weights_only=True)
    assert '"seed": 3' in saved["provenance"]  # the workflow's seed reaches training
    assert rt.load_checkpoint(output["checkpoint"])[1]["settings"].train.seed == 3
    # A rerun of the finished job resumes from its last epoch instead of training again.
    run_script(str(repo / "scripts" / "train_retina.py"), {"snakemake": Job})
    assert "resuming from" in (tmp_path / "train.log").read_text()
