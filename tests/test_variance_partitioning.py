"""Variance partitioning: unique and shared held-out variance of feature spaces.

The truth is computed here by direct solves (z-scoring on the training runs, ridge at a
fixed alpha with an intercept by np.linalg.solve, R² per held-out run), independently of
neurovid.encoding / neurovid.ridge / neurovid.partition, on the same leave-one-run-out
folds.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import namedlist, run_script
from PIL import Image
from test_encoding import fake_fmri_subject

from neurovid.encoding import encode_subject
from neurovid.errors import InputError
from neurovid.io import read_h5
from neurovid.partition import partition, partition_parts, partitioned_spaces

REPO = Path(__file__).resolve().parents[1]
ALPHA = 30.0
A, B = slice(0, 6), slice(6, 12)  # columns of spaces A and B


def simulated_subject(seed: int = 0, n_runs: int = 3, n: int = 240):
    """Spaces A and B (6 columns each) that share a 2-d latent; 12 targets.

    Targets 0-3 are driven by A's own columns only, 4-7 by B's own only, 8-11 by the
    latent both spaces carry (shared variance).
    """
    rng = np.random.default_rng(seed)
    W_a = rng.standard_normal((4, 4)) / 2
    W_b = rng.standard_normal((4, 4)) / 2
    W_c = rng.standard_normal((2, 4))
    M_a, M_b = rng.standard_normal((2, 2)), rng.standard_normal((2, 2))
    runs = []
    for i in range(n_runs):
        own_a, own_b = rng.standard_normal((n, 4)), rng.standard_normal((n, 4))
        latent = rng.standard_normal((n, 2))
        X_a = np.hstack([own_a, latent @ M_a + 0.1 * rng.standard_normal((n, 2))])
        X_b = np.hstack([own_b, latent @ M_b + 0.1 * rng.standard_normal((n, 2))])
        Y = np.hstack([own_a @ W_a, own_b @ W_b, latent @ W_c])
        Y = Y + 0.6 * rng.standard_normal(Y.shape)
        runs.append(
            (f"run-{i + 1}", np.hstack([X_a, X_b]).astype(np.float32), Y.astype(np.float32))
        )
    return runs


def direct_r2(runs, cols: slice | np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Held-out R² [N] (mean over leave-one-run-out folds) of ridge on columns ``cols``."""
    per_fold = []
    for k in range(len(runs)):
        train = [r for j, r in enumerate(runs) if j != k]
        X = np.concatenate([np.asarray(x, np.float64)[:, cols] for _, x, _ in train])
        Y = np.concatenate([np.asarray(y, np.float64) for _, _, y in train])
        mean, std = X.mean(0), X.std(0)
        Z = (X - mean) / std
        y_mean = Y.mean(0)
        w = np.linalg.solve(Z.T @ Z + alpha * np.eye(Z.shape[1]), Z.T @ (Y - y_mean))
        _, X_test, Y_test = runs[k]
        pred = ((np.asarray(X_test, np.float64)[:, cols] - mean) / std) @ w + y_mean
        Y_test = np.asarray(Y_test, np.float64)
        sse = ((Y_test - pred) ** 2).sum(0)
        sst = ((Y_test - Y_test.mean(0)) ** 2).sum(0)
        per_fold.append(1 - sse / sst)
    return np.mean(per_fold, axis=0)


def library(runs, estimator="ridge", bands=(("A", 6), ("B", 6)), **options):
    options = {"alphas": [ALPHA], "pca_variance": 1.0, "delays": [0], **options}
    return encode_subject(
        runs, estimator=estimator, bands=list(bands), variance_partitioning=True, **options
    )


def test_two_spaces_match_the_closed_form_of_direct_solves() -> None:
    runs = simulated_subject()
    r2_ab, r2_a, r2_b = direct_r2(runs, slice(0, 12)), direct_r2(runs, A), direct_r2(runs, B)
    result = library(runs)

    np.testing.assert_allclose(result.r2, r2_ab, atol=2e-4)
    # Without A is B alone and without B is A alone (two spaces).
    np.testing.assert_allclose(result.r2_without, np.stack([r2_b, r2_a]), atol=2e-4)
    np.testing.assert_allclose(result.unique[0], r2_ab - r2_b, atol=3e-4)  # unique A
    np.testing.assert_allclose(result.unique[1], r2_ab - r2_a, atol=3e-4)  # unique B
    np.testing.assert_allclose(result.shared, r2_a + r2_b - r2_ab, atol=5e-4)
    assert result.partition_spaces == ["A", "B"]
    assert result.r2_without_folds.shape == (3, 2, 12)

    unique_a, unique_b, shared = result.unique[0], result.unique[1], result.shared
    # Driven by A only: unique to A, nothing unique to B, little shared.
    assert np.all(unique_a[:4] > 0.3) and np.all(np.abs(unique_b[:4]) < 0.02)
    assert np.all(unique_a[:4] > 10 * np.abs(unique_b[:4]))
    # Driven by B only: the reverse.
    assert np.all(unique_b[4:8] > 0.3) and np.all(np.abs(unique_a[4:8]) < 0.02)
    # Driven by the latent both spaces carry: mostly shared.
    # (each space measures the latent with its own noise, so each keeps a little unique.)
    assert np.all(shared[8:] > 0.25)
    assert np.all(shared[8:] > 2.5 * np.maximum(np.abs(unique_a[8:]), np.abs(unique_b[8:])))
    assert np.all(np.abs(shared[:8]) < 0.05)


def test_the_sub_models_choose_their_own_alpha_on_the_training_runs() -> None:
    """With an alpha grid, each sub-model is the same pipeline on fewer columns: its
    held-out R² is that of the model fit on those columns alone (its own nested choice)."""
    runs = simulated_subject(seed=1, n_runs=4)
    grid = {"alphas": [0.1, 10.0, 1000.0], "delays": [0, 1], "pca_variance": 0.9}
    result = library(runs, **grid)
    for i, cols in enumerate((B, A)):  # without A = B alone; without B = A alone
        alone = encode_subject(
            [(rid, X[:, cols], Y) for rid, X, Y in runs], estimator="ridge", **grid
        )
        np.testing.assert_array_equal(result.r2_without[i], alone.r2)
    # The joint model's own outputs do not change when partitioning is on.
    plain = encode_subject(runs, estimator="ridge", bands=[("A", 6), ("B", 6)], **grid)
    np.testing.assert_array_equal(result.r2, plain.r2)
    np.testing.assert_array_equal(result.weights, plain.weights)
    assert plain.unique is None and plain.shared is None


def test_banded_ridge_attributes_targets_to_their_space() -> None:
    runs = simulated_subject(seed=2)
    result = library(runs, estimator="banded_ridge", alphas=[1.0, 30.0, 1000.0], n_iter=4)
    unique_a, unique_b, shared = result.unique[0], result.unique[1], result.shared
    assert np.all(unique_a[:4] > 0.3) and np.all(np.abs(unique_b[:4]) < 0.03)
    assert np.all(unique_b[4:8] > 0.3) and np.all(np.abs(unique_a[4:8]) < 0.03)
    assert np.all(shared[8:] > 0.25) and np.all(shared[8:] > 5 * np.abs(unique_a[8:]))
    np.testing.assert_allclose(unique_a + unique_b + shared, result.r2, atol=1e-6)


def test_three_spaces_report_unique_per_space_and_the_rest_as_shared() -> None:
    runs = simulated_subject(seed=3)
    bands = [("A", 6), ("B1", 3), ("B2", 3)]
    result = library(runs, bands=bands)
    assert result.unique.shape == (3, 12) and result.shared.shape == (12,)
    without_b1 = np.r_[0:6, 9:12]
    np.testing.assert_allclose(result.r2_without[1], direct_r2(runs, without_b1), atol=2e-4)
    np.testing.assert_allclose(result.unique.sum(0) + result.shared, result.r2, atol=1e-6)
    # The closed form for k spaces: shared = sum_i R²_without_i - (k - 1) R²_joint.
    np.testing.assert_allclose(result.shared, result.r2_without.sum(0) - 2 * result.r2, atol=1e-6)


def test_partition_arithmetic_by_hand() -> None:
    unique, shared = partition(np.array([0.5, 0.2]), np.array([[0.3, 0.2], [0.4, 0.1]]))
    np.testing.assert_allclose(unique, [[0.2, 0.0], [0.1, 0.1]])
    # R²_A + R²_B - R²_AB, with R²_A = R² without B: 0.4 + 0.3 - 0.5 and 0.1 + 0.2 - 0.2
    np.testing.assert_allclose(shared, [0.2, 0.1])
    assert partition_parts(["me", "mel"]) == ["unique_me", "unique_mel", "shared"]
    assert partition_parts([]) == []


def test_which_models_are_partitioned_and_the_error_for_the_others() -> None:
    two = {"features": ["me", "mel"], "estimator": "ridge"}
    assert partitioned_spaces("m", two) == ["me", "mel"]  # default on
    assert partitioned_spaces("m", {**two, "estimator": "banded_ridge"}) == ["me", "mel"]
    assert partitioned_spaces("m", {**two, "variance_partitioning": False}) == []
    assert partitioned_spaces("m", {"features": ["me"], "estimator": "ridge"}) == []
    assert partitioned_spaces("m", {**two, "estimator": "lasso"}) == []
    with pytest.raises(InputError) as err:
        partitioned_spaces("me_lasso", {**two, "estimator": "lasso", "variance_partitioning": True})
    message = str(err.value)
    assert "config.yaml [encoding.models.me_lasso.variance_partitioning]" in message
    assert "only ridge or banded_ridge models with two or more distinct feature spaces" in message
    assert "Fix: give it estimator ridge or banded_ridge and two or more extractors" in message
    with pytest.raises(InputError, match="features \\['me'\\]"):
        partitioned_spaces(
            "m", {"features": ["me"], "estimator": "ridge", "variance_partitioning": True}
        )
    with pytest.raises(ValueError, match="variance partitioning needs ridge or banded_ridge"):
        encode_subject(
            simulated_subject(),
            estimator="lasso",
            alphas=[0.1],
            pca_variance=1.0,
            delays=[0],
            bands=[("A", 6), ("B", 6)],
            variance_partitioning=True,
        )


def _script(path: str, **named) -> None:
    smk = type("Smk", (), {})()
    for key, value in named.items():
        setattr(smk, key, value)
    run_script(str(REPO / "scripts" / path), init_globals={"snakemake": smk})


def test_encode_script_writes_the_partition_and_its_maps_and_figures(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    run_ids, responses, features = fake_fmri_subject(tmp_path, rng)
    out = tmp_path / "enc"
    names = ("scores", "table", "metrics", "predictions", "weights")
    files = ("scores.h5", "scores.tsv", "metrics.tsv", "predictions.h5", "weights.h5")
    model = {
        "features": ["me", "vit"],
        "estimator": "ridge",
        "alphas": [1, 10, 100],
        "pca_variance": 1.0,
        "modalities": ["fmri"],
    }
    _script(
        "encode.py",
        input=namedlist(responses=[str(p) for p in responses], features=[str(p) for p in features]),
        output=namedlist(**{n: str(out / f) for n, f in zip(names, files, strict=True)}),
        params=namedlist(
            model=model,
            model_name="m",
            subject="sub-01",
            runs=run_ids,
            stimuli=[f"video{i}@0" for i in range(len(run_ids))],
            delays=[0, 1],
            zscore_runs=True,
            top_targets=3,
            seed=0,
            body_spaces=[],
        ),
        log=namedlist([str(tmp_path / "encode.log")]),
        threads=1,
    )
    scores, attrs = read_h5(out / "scores.h5")
    table = pd.read_csv(out / "scores.tsv", sep="\t")
    assert list(table.columns) == [
        "target",
        "r",
        "r2",
        "alpha",
        "unique_me",
        "unique_vit",
        "shared",
        "i",
        "j",
        "k",
    ]
    assert attrs["partition_spaces"] == ["me", "vit"]
    assert scores["r2_without"].shape == (2, 8)
    for part in ("unique_me", "unique_vit", "shared"):
        assert scores[part].shape == (8,) and scores[part].dtype == np.float32
        np.testing.assert_allclose(table[part][:7], scores[part][:7], atol=1e-6)
        assert attrs[f"mean_{part}"] == pytest.approx(float(np.nanmean(scores[part])), rel=1e-5)
    assert np.isnan(scores["unique_me"][7])  # the constant voxel
    np.testing.assert_allclose(
        scores["unique_me"] + scores["unique_vit"] + scores["shared"], scores["r2"], atol=1e-5
    )
    # Voxels 0-7 weigh all 12 columns (8 'me', 4 'vit'): both spaces have unique variance.
    assert np.all(scores["unique_me"][:7] > 0) and np.all(scores["unique_vit"][:7] > 0)
    log = (tmp_path / "encode.log").read_text()
    assert "variance partitioning: model without me (ridge on vit)" in log

    # One map per part, written like r2.nii.gz: the scores at the voxels, NaN elsewhere.
    maps = {}
    for part in partition_parts(["me", "vit"]):
        maps[part] = tmp_path / "maps" / f"{part}.nii.gz"
        _script(
            "partition_map.py",
            input=namedlist(scores=str(out / "scores.h5")),
            output=namedlist(
                volume=str(maps[part]), sidecar=str(maps[part]).replace(".nii.gz", ".json")
            ),
            params=namedlist(part=part),
            log=namedlist([str(tmp_path / f"map_{part}.log")]),
        )
        volume = nib.load(maps[part]).get_fdata()
        ijk = scores["voxel_ijk"]
        np.testing.assert_allclose(volume[tuple(ijk.T)], scores[part], atol=1e-7)
        assert np.isnan(volume).sum() == volume.size - 7  # outside the mask + constant voxel
        assert Path(str(maps[part]).replace(".nii.gz", ".json")).exists()

    bars = tmp_path / "fig" / "variance_partition.png"
    targets = tmp_path / "fig" / "variance_targets.png"
    _script(
        "figure_variance_partition.py",
        input=namedlist(scores=[str(out / "scores.h5")]),
        output=namedlist(bars=str(bars), targets=str(targets)),
        params=namedlist(model="m", subjects=["sub-01"], parts=partition_parts(["me", "vit"])),
        log=namedlist([str(tmp_path / "bars.log")]),
    )
    plotted = json.loads(Image.open(bars).info["Description"])["plotted"]
    assert plotted["sub-01 (fmri)"]["unique_me"] == pytest.approx(attrs["mean_unique_me"])
    assert sorted(plotted["sub-01 (fmri)"]) == ["shared", "unique_me", "unique_vit"]
    # per target: how many voxels each space explains alone (> 0.05)
    counted = json.loads(Image.open(targets).info["Description"])["plotted"]["sub-01 (fmri)"]
    table = pd.read_csv(out / "scores.tsv", sep="\t")
    assert counted == {s: int((table[f"unique_{s}"] > 0.05).sum()) for s in ("me", "vit")}
    assert counted["me"] > 0 and counted["vit"] > 0

    brains = tmp_path / "fig" / "variance_maps.png"  # the subjects' mean (here: one)
    _script(
        "figure_variance_maps.py",
        input=namedlist(maps=[str(p) for p in maps.values()]),
        output=namedlist([str(brains)]),
        params=namedlist(model="m", subjects=["sub-01"], parts=list(maps)),
        log=namedlist([str(tmp_path / "brains.log")]),
    )
    assert brains.stat().st_size > 0


def test_a_body_space_is_held_to_the_stimulus_ceiling_through_the_stimulus_fit() -> None:
    """Repeats share the stimulus, not the running: the ceiling fraction of a stimulus +
    body model is the stimulus spaces' R² (the fit without the body space) over ev."""
    rng = np.random.default_rng(7)
    n, w_stim = 600, rng.standard_normal((6, 8)) / 2
    stimulus = {key: rng.standard_normal((n, 6)) for key in ("s1", "s2", "s3")}
    runs = []
    for i, key in enumerate(("s1", "s2", "s3", "s3")):
        running = rng.standard_normal((n, 1))  # a new bout pattern in every run
        Y = np.hstack([stimulus[key][:, :4] @ w_stim[:4, :4], running @ np.ones((1, 4))])
        Y = Y + 0.7 * rng.standard_normal(Y.shape)
        X = np.hstack([stimulus[key], running]).astype(np.float32)
        runs.append((f"run-{i + 1}", X, Y.astype(np.float32)))
    bands = [("motion_energy", 6), ("behavior_channels", 1)]
    repeats = {"stimuli": ["s1", "s2", "s3", "s3"], "body_spaces": ["behavior_channels"]}
    result = library(runs, bands=bands, **repeats)
    assert result.body_spaces == ["behavior_channels"]
    stimulus_r2 = result.r2_without_folds[:, 1]  # the model without behavior_channels
    np.testing.assert_allclose(result.r2_repeats, stimulus_r2[result.repeat_folds].mean(0))
    # Running-driven targets 4-7: nothing of them repeats, so no ceiling to reach ...
    assert np.all(np.abs(result.ev[4:]) < 0.05)
    # ... while the joint model explains them: its R² over ev would claim x10 the ceiling
    joint_r2_repeats = result.r2_folds[result.repeat_folds].mean(0)
    assert np.all(result.r2[4:] > 0.5) and np.all(np.abs(joint_r2_repeats[4:] / result.ev[4:]) > 10)
    assert np.all(np.abs(result.r2_repeats[4:]) < 0.05)  # the stimulus fit does not explain them
    assert result.ceiling_fit == "without behavior_channels"
    fraction = result.r2_ceiling_fraction[:4]  # stimulus-driven: close to the ceiling
    assert 0.8 < fraction.mean() < 1.1, fraction
    # Without partitioning there is no stimulus-only fit: no fraction rather than a wrong one.
    joint = encode_subject(
        runs,
        estimator="ridge",
        bands=bands,
        **repeats,
        alphas=[ALPHA],
        pca_variance=1.0,
        delays=[0],
    )
    assert joint.ev is not None and joint.r2_repeats is None and joint.r2_ceiling_fraction is None
