"""Encoding models: CV splits, PCA share, ridge/LASSO fits, scores, and scripts/encode.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
from conftest import namedlist, run_script

from neurovid.align import add_delays
from neurovid.encoding import (
    encode_subject,
    fit_lasso_cv,
    fit_pca,
    fit_ridge_cv,
    leave_one_run_out,
    score_predictions,
    selection_splits,
    top_targets,
    zscore_runs,
)
from neurovid.errors import InputError
from neurovid.io import read_h5, write_features, write_responses

REPO = Path(__file__).resolve().parents[1]


def simulated_runs(
    rng: np.random.Generator,
    weights: np.ndarray,
    noise: np.ndarray | float,
    lengths: tuple[int, ...] = (150, 150, 150),
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Runs with independent Gaussian features and Y = X @ weights + noise (per-target sd)."""
    runs = []
    for i, n in enumerate(lengths):
        X = rng.standard_normal((n, weights.shape[0])).astype(np.float32)
        Y = X @ weights + rng.standard_normal((n, weights.shape[1])) * noise
        runs.append((f"run-{i + 1}", X, Y.astype(np.float32)))
    return runs


# --------------------------------------------------------------------------- CV and scaling


def test_leave_one_run_out_by_hand() -> None:
    splits = leave_one_run_out([2, 3, 1])
    expected = [([2, 3, 4, 5], [0, 1]), ([0, 1, 5], [2, 3, 4]), ([0, 1, 2, 3, 4], [5])]
    assert len(splits) == 3
    for (train, test), (train_want, test_want) in zip(splits, expected, strict=True):
        assert train.tolist() == train_want
        assert test.tolist() == test_want


def test_selection_splits_use_groups_or_the_halves_of_a_single_group() -> None:
    assert [te.tolist() for _, te in selection_splits([2, 2], [[0], [1]])] == [[0, 1], [2, 3]]
    assert [(tr.tolist(), te.tolist()) for tr, te in selection_splits([5], [[0]])] == [
        ([0, 1], [2, 3, 4]),
        ([2, 3, 4], [0, 1]),
    ]
    # Repeats of one stimulus are cut at the same stimulus time, with a gap of 1 sample
    # on each side of the cut: alpha is never validated on the stimulus it was trained on.
    splits = selection_splits([6, 7], [[0, 1]], gap=1)
    assert [(tr.tolist(), te.tolist()) for tr, te in splits] == [
        ([0, 1, 6, 7], [4, 5, 10, 11, 12]),
        ([4, 5, 10, 11, 12], [0, 1, 6, 7]),
    ]
    with pytest.raises(InputError, match="too short to cut into two halves 3 samples apart"):
        selection_splits([6, 6], [[0, 1]], gap=3)


def test_zscore_runs_by_hand_and_constant_columns_become_zero() -> None:
    Y = np.array([[1, 5], [3, 5], [10, 1], [20, 3]], dtype=np.float32)
    out = zscore_runs(Y, [2, 2])
    np.testing.assert_allclose(out, [[-1, 0], [1, 0], [-1, -1], [1, 1]])


def test_shared_pca_fits_each_input_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import neurovid.encoding as encoding

    fitted, real = [], encoding._fit_pca
    monkeypatch.setattr(
        encoding, "_fit_pca", lambda X, share: fitted.append(share) or real(X, share)
    )
    X = np.random.default_rng(0).standard_normal((50, 6))
    with encoding.shared_pca():
        first = fit_pca(X, 0.9)
        assert fit_pca(X.copy(), 0.9) is first  # same rows and columns: the fitted model
        assert fit_pca(np.asfortranarray(X), 0.9) is first
        assert fit_pca(X, 0.8) is not first and fit_pca(X[:-1], 0.9) is not first
        assert len(fitted) == 3
    assert fit_pca(X, 0.9) is not first and len(fitted) == 4  # no cache outside
    np.testing.assert_array_equal(fit_pca(X, 0.9).components, first.components)


def test_pca_keeps_the_fewest_components_reaching_the_share() -> None:
    # Columns a, a, b, c with a, b, c orthogonal, zero-mean, equal variance: the
    # correlation matrix has eigenvalues 2, 1, 1, 0 -> shares 0.5, 0.25, 0.25, 0.
    h = scipy.linalg.hadamard(8).astype(float)
    a, b, c = h[:, 1], 3 * h[:, 2] + 7, -2 * h[:, 3]
    X = np.stack([a, a, b, c], axis=1)
    assert fit_pca(X, 0.5).n_components == 1
    assert fit_pca(X, 0.6).n_components == 2
    assert fit_pca(X, 0.75).n_components == 2
    assert fit_pca(X, 0.76).n_components == 3
    assert fit_pca(X, 1.0).n_components == 4
    pca = fit_pca(X, 0.5)
    np.testing.assert_allclose(pca.explained_variance_ratio, [0.5])
    np.testing.assert_allclose(np.abs(pca.components[0]), [2**-0.5, 2**-0.5, 0, 0], atol=1e-12)
    np.testing.assert_allclose(pca.mean, [0, 0, 7, 0])
    np.testing.assert_allclose(pca.scale, [1, 1, 3, 2])
    scores = pca.transform(X)[:, 0]
    np.testing.assert_allclose(np.abs(scores), np.abs(a) * 2**0.5, rtol=1e-6)  # variance 2


def test_score_predictions_by_hand() -> None:
    y = np.array([[1.0, 2.0, 5.0], [2.0, 2.0, 6.0], [3.0, 2.0, 7.0]])
    p = np.array([[1.0, 1.0, 0.0], [2.0, 2.0, 0.0], [4.0, 3.0, 0.0]])
    r, r2 = score_predictions(y, p)
    assert r[0] == pytest.approx(9 / np.sqrt(84))  # cov 3 / sqrt(2 * 42/9)
    assert r2[0] == pytest.approx(0.5)  # 1 - 1/2
    assert np.isnan(r[1]) and np.isnan(r2[1])  # constant recording
    assert np.isnan(r[2])  # constant prediction: r undefined ...
    assert r2[2] == pytest.approx(1 - (25 + 36 + 49) / 2)  # ... but R² is defined


def test_top_targets_skips_nan_and_breaks_ties_by_index() -> None:
    assert top_targets(np.array([0.1, np.nan, 0.5, 0.5, -0.2]), 3).tolist() == [2, 3, 0]
    assert top_targets(np.array([np.nan, 0.3]), 5).tolist() == [1]


# --------------------------------------------------------------------------- estimators


@pytest.mark.parametrize(("n_samples", "n_features"), [(40, 6), (20, 30)])
def test_ridge_at_one_alpha_equals_the_closed_form(n_samples: int, n_features: int) -> None:
    # (20, 30): fewer samples than features -> the kernel (dual) solver.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_samples, n_features)) + 3
    Y = X @ rng.standard_normal((n_features, 3)) + rng.standard_normal((n_samples, 3)) + 1
    half = n_samples // 2
    fit = fit_ridge_cv(X, Y, leave_one_run_out([half, n_samples - half]), [7.0])
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    coef = np.linalg.solve(Xc.T @ Xc + 7.0 * np.eye(n_features), Xc.T @ Yc)
    np.testing.assert_allclose(fit.coef, coef, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fit.intercept, Y.mean(0) - X.mean(0) @ coef, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fit.alpha, [7.0, 7.0, 7.0])
    np.testing.assert_allclose(fit.predict(X), X @ coef + fit.intercept, rtol=1e-4, atol=1e-4)


def test_ridge_chooses_a_larger_alpha_for_a_noisier_target() -> None:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((30, 1)) / np.sqrt(30)
    weights = np.hstack([w, w])  # same signal (variance 1), two noise levels
    runs = simulated_runs(rng, weights, np.array([0.2, 5.0]), lengths=(40, 40, 40))
    X = np.concatenate([x for _, x, _ in runs])
    Y = np.concatenate([y for _, _, y in runs])
    for route in ("blocks", "scores"):  # primal and dual routes agree
        fit = fit_ridge_cv(X, Y, leave_one_run_out([40] * 3), np.logspace(-2, 4, 13), route=route)
        assert fit.alpha[1] >= 100 * fit.alpha[0]


def test_lasso_finds_a_sparse_truth() -> None:
    rng = np.random.default_rng(2)
    weights = np.zeros((40, 2))
    weights[[3, 17, 29], 0] = [1.0, -0.8, 0.6]
    weights[[5, 11], 1] = [0.9, 0.7]
    runs = simulated_runs(rng, weights, 0.3, lengths=(100, 100, 100))
    X = np.concatenate([x for _, x, _ in runs])
    Y = np.concatenate([y for _, _, y in runs])
    for n_jobs in (1, 2):
        fit = fit_lasso_cv(X, Y, leave_one_run_out([100] * 3), [0.01, 0.03, 0.1], n_jobs=n_jobs)
        for target, support in ((0, {3, 17, 29}), (1, {5, 11})):
            largest = set(np.argsort(-np.abs(fit.coef[:, target]))[: len(support)].tolist())
            assert largest == support
            assert np.count_nonzero(fit.coef[:, target]) <= len(support) + 6
            np.testing.assert_allclose(
                fit.coef[sorted(support), target], weights[sorted(support), target], atol=0.15
            )


# --------------------------------------------------------------------------- subject model


def test_encode_subject_recovers_simulated_weights_near_the_ceiling() -> None:
    rng = np.random.default_rng(3)
    n_features, n_targets = 20, 6
    weights = rng.standard_normal((n_features, n_targets))
    weights /= np.linalg.norm(weights, axis=0)  # signal variance 1 per target
    # Noise variance 1 -> ceiling r = 1/sqrt(2), R² = 1/2.
    runs = simulated_runs(rng, weights, 1.0, lengths=(300, 300, 300))
    result = encode_subject(
        runs, estimator="ridge", alphas=[0.1, 1, 10, 100, 1000], pca_variance=1.0, delays=[0]
    )
    ceiling = 1 / np.sqrt(2)
    assert result.r_folds.shape == (3, n_targets)
    assert result.r.mean() == pytest.approx(ceiling, abs=0.02)
    np.testing.assert_allclose(result.r, ceiling, atol=0.06)  # sampling sd ~0.02 per target
    assert result.r2.mean() == pytest.approx(0.5, abs=0.03)
    assert result.n_components == [20, 20, 20]
    assert [len(p) for p in result.predictions] == [300, 300, 300]
    # The documented recipe applies the final weights to new features.
    X_new = rng.standard_normal((500, n_features)).astype(np.float32)
    pca = result.pca
    Z = ((X_new - pca.mean) / pca.scale) @ pca.components.T
    predicted = add_delays(Z, result.delays_samples) @ result.weights + result.intercept
    r_new, _ = score_predictions(X_new @ weights, predicted)
    assert np.all(r_new > 0.97)


def test_encode_subject_with_delays_finds_the_lag() -> None:
    rng = np.random.default_rng(4)
    runs = []
    for i in range(3):
        X = rng.standard_normal((200, 3)).astype(np.float32)
        Y = np.zeros((200, 1), dtype=np.float32)
        Y[2:, 0] = X[:-2, 0]  # response lags the first feature by 2 samples
        runs.append((f"run-{i}", X, Y + 0.1 * rng.standard_normal((200, 1)).astype(np.float32)))
    result = encode_subject(
        runs, estimator="ridge", alphas=[0.01, 1], pca_variance=1.0, delays=[0, 1, 2, 3]
    )
    assert result.r[0] > 0.98
    assert result.weights.shape == (4 * 3, 1)
    # Back in feature space, only delay 2 of feature 0 carries weight.
    per_delay = result.weights[:, 0].reshape(4, 3) @ result.pca.components
    per_delay /= result.pca.scale
    assert np.unravel_index(np.argmax(np.abs(per_delay)), per_delay.shape) == (2, 0)


def test_lasso_subject_model_predicts_held_out_runs() -> None:
    rng = np.random.default_rng(5)
    weights = np.zeros((15, 3))
    weights[[0, 4, 9], [0, 1, 2]] = 1.0
    runs = simulated_runs(rng, weights, 0.5, lengths=(80, 80, 80))
    result = encode_subject(
        runs, estimator="lasso", alphas=[0.01, 0.1], pca_variance=1.0, delays=[0], n_jobs=2
    )
    ceiling = 1 / np.sqrt(1 + 0.25)
    np.testing.assert_allclose(result.r, ceiling, atol=0.06)
    assert set(np.unique(result.alpha)) <= {0.01, 0.1}


def test_constant_targets_get_nan_scores_and_zero_weights() -> None:
    rng = np.random.default_rng(6)
    runs = simulated_runs(rng, rng.standard_normal((5, 3)), 0.5, lengths=(50, 50, 50))
    for _, _, Y in runs:
        Y[:, 1] = 4.0  # constant over all runs
    runs[2][2][:, 2] = 0.0  # target 2 is constant in run 3 only
    result = encode_subject(runs, estimator="ridge", alphas=[1.0], pca_variance=1.0, delays=[0])
    assert result.constant.tolist() == [False, True, False]
    assert np.isnan(result.r[1]) and np.isnan(result.r2[1]) and np.isnan(result.alpha[1])
    assert np.all(result.weights[:, 1] == 0) and result.intercept[1] == 4.0
    assert np.all(np.isnan(result.r_folds[:, 1]))
    # Target 2: NaN in the fold holding out run 3; overall = mean of the other folds.
    assert np.isnan(result.r_folds[2, 2]) and np.isnan(result.r2_folds[2, 2])
    assert result.r[2] == pytest.approx(result.r_folds[:2, 2].mean())
    assert np.isfinite(result.r[0]) and result.r[0] > 0.8


def test_fewer_than_two_runs_is_an_input_error() -> None:
    rng = np.random.default_rng(7)
    runs = simulated_runs(rng, np.ones((3, 1)), 1.0, lengths=(30,))
    with pytest.raises(InputError, match=r"at least 2 runs .* got 1 \(run-1\)"):
        encode_subject(runs, estimator="ridge", alphas=[1.0], pca_variance=1.0, delays=[0])


def test_two_runs_choose_alpha_on_halves_and_results_are_deterministic() -> None:
    rng = np.random.default_rng(8)
    runs = simulated_runs(rng, rng.standard_normal((8, 4)), 1.0, lengths=(60, 60))
    kwargs = dict(estimator="ridge", alphas=[0.1, 10, 1000], pca_variance=0.9, delays=[0, 1])
    first = encode_subject(runs, **kwargs)
    second = encode_subject(runs, **kwargs)
    assert first.r_folds.shape == (2, 4)
    np.testing.assert_array_equal(first.r_folds, second.r_folds)
    np.testing.assert_array_equal(first.weights, second.weights)
    assert first.n_components == second.n_components


# --------------------------------------------------------------------------- scripts/encode.py


def fake_fmri_subject(tmp_path: Path, rng: np.random.Generator):
    """3 runs of a 3x3x2 'brain' (8 voxels in the mask, one constant) with aligned features."""
    mask = np.zeros((3, 3, 2), dtype=np.uint8)
    ijk = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(2)])
    mask[tuple(ijk.T)] = 1
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    weights = rng.standard_normal((12, 8))
    run_ids, responses, features = ["sub-01_run-1", "sub-01_run-2", "sub-01_run-3"], [], []
    for run_id in run_ids:
        times = np.arange(60) + 0.5
        X = rng.standard_normal((60, 12)).astype(np.float32)
        Y = X @ weights + rng.standard_normal((60, 8)) + 100.0
        Y[:, 7] = 5.0
        responses.append(tmp_path / f"{run_id}.h5")
        write_responses(
            responses[-1],
            Y,
            times,
            [f"v{n}" for n in range(8)],
            {"sampling_rate": 1.0, "modality": "fmri", "subject": "sub-01"},
            mask=mask,
            affine=affine,
            voxel_ijk=ijk,
        )
        for extractor, cols in (("me", slice(0, 8)), ("vit", slice(8, 12))):
            path = tmp_path / extractor / f"{run_id}.h5"
            write_features(path, X[:, cols], times, {"recording": run_id, "extractor": extractor})
            features.append((extractor, path))
    ordered = [p for e in ("me", "vit") for ex, p in features if ex == e]  # expand() order
    return run_ids, responses, ordered


def test_encode_script_writes_the_output_contract(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    run_ids, responses, features = fake_fmri_subject(tmp_path, rng)
    out = tmp_path / "enc"
    names = ("scores", "table", "metrics", "predictions", "weights")
    files = ("scores.h5", "scores.tsv", "metrics.tsv", "predictions.h5", "weights.h5")
    smk = type("Smk", (), {})()
    smk.input = namedlist(
        responses=[str(p) for p in responses], features=[str(p) for p in features], code=[]
    )
    smk.output = namedlist(**{n: str(out / f) for n, f in zip(names, files, strict=True)})
    smk.params = namedlist(
        model={
            "features": ["me", "vit"],
            "estimator": "ridge",
            "alphas": [1, 10, 100],
            "pca_variance": 1.0,
            "modalities": ["fmri"],
        },
        model_name="m",
        subject="sub-01",
        runs=run_ids,
        stimuli=[f"video{i}@0" for i in range(len(run_ids))],
        delays=[0, 1],
        zscore_runs=True,
        top_targets=3,
        seed=0,
        body_spaces=[],
    )
    smk.wildcards = namedlist(model="m", subject="sub-01")
    smk.log = namedlist([str(tmp_path / "encode.log")])
    smk.threads = 1
    run_script(str(REPO / "scripts" / "encode.py"), init_globals={"snakemake": smk})

    scores, attrs = read_h5(out / "scores.h5")
    assert scores["r"].shape == scores["r2"].shape == scores["alpha"].shape == (8,)
    assert scores["r"].dtype == np.float32
    assert scores["r_folds"].shape == scores["r2_folds"].shape == (3, 8)
    assert scores["target_names"].tolist() == [f"v{n}" for n in range(8)]
    assert scores["voxel_ijk"].shape == (8, 3) and scores["mask"].sum() == 8
    np.testing.assert_array_equal(scores["affine"], np.diag([3.0, 3.0, 3.0, 1.0]))
    assert np.all(scores["r"][:7] > 0.8) and np.isnan(scores["r"][7])  # voxel 7 is constant
    assert attrs["model"] == "m" and attrs["subject"] == "sub-01" and attrs["modality"] == "fmri"
    assert attrs["estimator"] == "ridge" and attrs["runs"] == run_ids
    assert attrs["delays_s"] == [0, 1] and attrs["delays_samples"] == [0, 1]
    assert attrs["pca_variance"] == 1.0 and attrs["n_components"] == [12, 12, 12]
    assert attrs["n_targets"] == 8
    assert attrs["mean_r"] == pytest.approx(float(np.nanmean(scores["r"])), rel=1e-5)
    assert attrs["provenance"]["step"] == "encode"

    table = pd.read_csv(out / "scores.tsv", sep="\t")
    # Two feature spaces (me, vit) in a ridge model: partitioned by default
    # (tests/test_variance_partitioning.py checks the values).
    columns = ["target", "r", "r2", "alpha", "unique_me", "unique_vit", "shared", "i", "j", "k"]
    assert list(table.columns) == columns
    # Both tables carry their provenance in a JSON sidecar, as the HDF5 files do in attrs.
    for sidecar in ("scores.json", "metrics.json"):
        meta = json.loads((out / sidecar).read_text())
        assert meta["provenance"] == attrs["provenance"]
        assert meta["model"] == "m" and meta["subject"] == "sub-01" and meta["runs"] == run_ids
    np.testing.assert_allclose(table["r"][:7], scores["r"][:7], atol=1e-5)
    assert table[["i", "j", "k"]].to_numpy().tolist() == scores["voxel_ijk"].tolist()

    metrics = pd.read_csv(out / "metrics.tsv", sep="\t", dtype={"fold": str})
    assert list(metrics.columns) == [
        "fold",
        "held_out_run",
        "n_train",
        "n_test",
        "n_components",
        "mean_r",
        "median_r",
        "mean_r2",
    ]
    assert metrics["fold"].tolist() == ["1", "2", "3", "mean"]
    assert metrics["held_out_run"][:3].tolist() == run_ids
    assert metrics["n_train"][:3].tolist() == [120, 120, 120]
    assert metrics["mean_r"].iloc[-1] == pytest.approx(attrs["mean_r"], rel=1e-4)

    pred, _ = read_h5(out / "predictions.h5")
    assert pred["recorded"].shape == pred["predicted"].shape == (180, 3)
    assert pred["times"].shape == (180,) and pred["run"].tolist()[::60] == run_ids
    best = np.argsort(-np.nan_to_num(scores["r"], nan=-2))[:3]
    assert pred["target_names"].tolist() == [f"v{n}" for n in best]
    np.testing.assert_allclose(pred["r"], scores["r"][best])
    r_first_fold, _ = score_predictions(pred["recorded"][:60], pred["predicted"][:60])
    np.testing.assert_allclose(r_first_fold, scores["r_folds"][0, best], atol=1e-5)

    weights, wattrs = read_h5(out / "weights.h5")
    assert weights["weights"].shape == (12 * 2, 8) and weights["weights"].dtype == np.float32
    assert weights["pca_components"].shape == (12, 12)
    assert weights["feature_mean"].shape == weights["feature_scale"].shape == (12,)
    assert weights["delays_samples"].tolist() == [0, 1]
    assert weights["alpha"].shape == (8,) and np.isnan(weights["alpha"][7])
    assert "delay-major" in wattrs["layout"]

    # Same inputs -> same bytes (no timestamps, deterministic fits).
    smk.output = namedlist(
        **{n: str(tmp_path / "again" / f) for n, f in zip(names, files, strict=True)}
    )
    run_script(str(REPO / "scripts" / "encode.py"), init_globals={"snakemake": smk})
    for f in (*files, "scores.json", "metrics.json"):
        assert (out / f).read_bytes() == (tmp_path / "again" / f).read_bytes(), f


def test_encode_script_with_one_run_fails_cleanly(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    run_ids, responses, features = fake_fmri_subject(tmp_path, rng)
    out = tmp_path / "enc"
    names = ("scores", "table", "metrics", "predictions", "weights")
    smk = type("Smk", (), {})()
    smk.input = namedlist(
        responses=[str(responses[0])], features=[str(features[0]), str(features[3])]
    )
    smk.output = namedlist(**{n: str(out / f"{n}.out") for n in names})
    model = {"features": ["me", "vit"], "estimator": "lasso", "alphas": [0.1], "pca_variance": 1.0}
    smk.params = namedlist(
        model=model,
        model_name="m",
        subject="sub-01",
        runs=run_ids[:1],
        stimuli=["video0@0"],
        delays=[0],
        zscore_runs=False,
        top_targets=2,
        seed=0,
        body_spaces=[],
    )
    smk.log = namedlist([str(tmp_path / "encode.log")])
    smk.threads = 1
    with pytest.raises(InputError, match="at least 2 runs"):
        run_script(str(REPO / "scripts" / "encode.py"), init_globals={"snakemake": smk})
    assert not out.exists() or not any(out.iterdir())
    assert "at least 2 runs" in (tmp_path / "encode.log").read_text()


# --------------------------------------------------------------------------- repeats and bands


def test_repeats_are_held_out_together_and_give_the_noise_ceiling() -> None:
    """Runs 3 and 4 repeat one stimulus: one fold holds both out, and their
    explainable variance matches the simulation's signal / (signal + noise)."""
    from neurovid.encoding import metrics_table, repeat_groups

    assert repeat_groups(["a", "b", "c", "c"], 4) == [[0], [1], [2, 3]]
    splits = selection_splits([2, 2, 3, 3], [[0], [1], [2, 3]])
    assert [list(test) for _, test in splits] == [[0, 1], [2, 3], [4, 5, 6, 7, 8, 9]]

    rng = np.random.default_rng(4)
    n_features, n_targets = 12, 20
    weights = rng.standard_normal((n_features, n_targets)) / np.sqrt(n_features)
    noise = np.linspace(0.5, 2.0, n_targets)
    runs = simulated_runs(rng, weights, noise, lengths=(400, 400, 1500))
    X_rep = runs[2][1]
    Y_rep = X_rep @ weights + rng.standard_normal((1500, n_targets)) * noise
    runs.append(("run-4", X_rep, Y_rep.astype(np.float32)))  # same stimulus, new noise
    result = encode_subject(
        runs,
        estimator="ridge",
        alphas=np.logspace(-2, 3, 6),
        pca_variance=1.0,
        delays=[0],
        stimuli=["s1", "s2", "s3", "s3"],
    )
    assert result.fold_runs == [[0], [1], [2, 3]]
    assert result.repeat_folds == [2]
    assert result.n_test == [400, 400, 3000]
    signal_var = (X_rep @ weights).var(axis=0, ddof=1)  # the repeated stimulus's signal
    expected_ev = signal_var / (signal_var + noise**2)
    np.testing.assert_allclose(result.ev, expected_ev, atol=0.06)
    # A near-perfect linear model explains close to all of the explainable variance.
    fraction = result.r2_ceiling_fraction
    assert 0.85 < np.nanmean(fraction) < 1.1, np.nanmean(fraction)
    table = metrics_table(result)
    assert list(table["held_out_run"]) == ["run-1", "run-2", "run-3+run-4", ""]


def test_all_runs_repeating_one_stimulus_is_an_input_error() -> None:
    rng = np.random.default_rng(0)
    runs = simulated_runs(rng, np.ones((3, 2)), 1.0, lengths=(30, 30))
    with pytest.raises(InputError, match="same stimulus sequence"):
        encode_subject(
            runs, estimator="ridge", alphas=[1.0], pca_variance=1.0, delays=[0], stimuli=["a", "a"]
        )


def test_banded_subject_model_attributes_targets_to_their_feature_space() -> None:
    rng = np.random.default_rng(2)
    widths = (8, 10)
    n_targets = 12  # first half driven by band A, second half by band B
    W_a = rng.standard_normal((8, 6)) / np.sqrt(8)
    W_b = rng.standard_normal((10, 6)) / np.sqrt(10)
    runs = []
    for i in range(3):
        X = rng.standard_normal((300, sum(widths))).astype(np.float32)
        Y = np.hstack([X[:, :8] @ W_a, X[:, 8:] @ W_b]) + 0.5 * rng.standard_normal((300, 12))
        runs.append((f"run-{i + 1}", X, Y.astype(np.float32)))
    result = encode_subject(
        runs,
        estimator="banded_ridge",
        alphas=np.logspace(-1, 4, 6),
        pca_variance=1.0,
        delays=[0, 1],
        bands=[("A", 8), ("B", 10)],
        n_iter=10,
    )
    split = result.r2_split
    assert split.shape == (2, n_targets)
    assert np.all(split[0, :6] > 0.5) and np.all(np.abs(split[1, :6]) < 0.05)
    assert np.all(split[1, 6:] > 0.5) and np.all(np.abs(split[0, 6:]) < 0.05)
    np.testing.assert_allclose(split.sum(0), result.r2, atol=0.02)
    assert result.gamma.shape == (2, n_targets) and result.bands == ["A", "B"]
    # Block-diagonal PCA: one band's components are zero on the other band's features.
    assert np.all(result.pca.components[:8, 8:] == 0) and np.all(result.pca.components[8:, :8] == 0)


# --------------------------------------------------------------------------- leak-free selection


def _selected_alpha(X_runs, Y_runs, splits, feature_model_rows):
    """Alpha per target chosen on ``splits``, each split scored on features reduced by a
    PCA fit on ``feature_model_rows(train rows)`` of the stacked runs."""
    from neurovid.encoding import fit_estimator, fit_feature_model

    stacked = np.concatenate(X_runs)
    designs = []
    for train, _ in splits:
        model = fit_feature_model(stacked[feature_model_rows(train)], 0.9, [0, 1])
        designs.append((model.stacked(X_runs), None))
    full = fit_feature_model(stacked, 0.9, [0, 1]).stacked(X_runs)
    fit = fit_estimator(
        "ridge", full, np.concatenate(Y_runs), splits, np.logspace(-2, 5, 15), fold_designs=designs
    )
    return fit.alpha


def test_a_signal_planted_only_in_the_validation_run_changes_nothing_in_the_chosen_alpha() -> None:
    from neurovid.encoding import selection_designs

    rng = np.random.default_rng(11)
    weights = rng.standard_normal((10, 30)) / np.sqrt(10)
    runs = simulated_runs(rng, weights, np.linspace(0.3, 3.0, 30), lengths=(120, 120, 120))
    X_runs = [np.hstack([X, np.zeros((len(X), 1), np.float32)]) for _, X, _ in runs]
    Y_runs = [Y for _, _, Y in runs]
    # Train on runs 1-2, validate on run 3; plant a strong feature in run 3 only.
    split = [(np.arange(240), np.arange(240, 360))]
    planted_X = [X.copy() for X in X_runs]
    planted_X[2][:, -1] = 50 * rng.standard_normal(120)

    def inner_train_only(train):
        return train

    clean = _selected_alpha(X_runs, Y_runs, split, inner_train_only)
    planted = _selected_alpha(planted_X, Y_runs, split, inner_train_only)
    assert np.array_equal(clean, planted)
    # The split's design is bit for bit the same on the training rows and on run 3.
    before = selection_designs(X_runs, split, 0.9, [0, 1])[0][0]
    after = selection_designs(planted_X, split, 0.9, [0, 1])[0][0]
    assert np.array_equal(before, after)

    # Fitting PCA on all the outer-training runs (the inner validation run included), as
    # before this fix, lets the planted feature reshape the components and the alphas.
    def all_rows(train):
        return np.arange(360)

    leaky_clean = _selected_alpha(X_runs, Y_runs, split, all_rows)
    leaky_planted = _selected_alpha(planted_X, Y_runs, split, all_rows)
    assert np.mean(leaky_clean != leaky_planted) > 0.2


def test_repeats_of_one_stimulus_choose_alpha_on_halves_in_time(caplog) -> None:
    # Runs 1 and 2 repeat stimulus a; run 3 shows b. The fold holding out run 3 has only
    # repeats of a to choose alpha on: it must not train on one repeat and validate on the
    # other (the same stimulus), so it validates on the second half of the movie.
    rng = np.random.default_rng(2)
    weights = rng.standard_normal((8, 5)) / np.sqrt(8)
    runs = simulated_runs(rng, weights, 1.0, lengths=(200, 200, 200))
    runs[1] = ("run-2", runs[0][1], (runs[0][1] @ weights).astype(np.float32) + 0.5)
    caplog.set_level("INFO")
    result = encode_subject(
        runs,
        estimator="ridge",
        alphas=[0.1, 10.0, 1000.0],
        pca_variance=1.0,
        delays=[0, 1],
        stimuli=["a", "a", "b"],
    )
    assert result.fold_runs == [[0, 1], [2]]
    halves = [m for m in caplog.messages if "two halves in time" in m]
    assert halves == [
        "fold 1/2: alpha chosen on the two halves in time of run-3 (one stimulus among the training runs)",
        "fold 2/2: alpha chosen on the two halves in time of run-1+run-2 (one stimulus among the training runs)",
    ]


def test_the_nested_cv_fits_each_set_of_rows_once_with_the_same_result(monkeypatch) -> None:
    """4 runs in 3 groups: 13 feature-model fits (3 outer folds x (1 + 2 inner) + the final
    refit's 1 + 3 inner) on 7 distinct sets of runs; the cache fits each once, and the
    scores, alphas and weights equal those of fitting all 13."""
    import neurovid.encoding as enc

    rng = np.random.default_rng(7)
    weights = rng.standard_normal((30, 6)) / np.sqrt(30)
    runs = simulated_runs(rng, weights, 1.0, lengths=(120, 120, 120))
    runs.append(
        ("run-4", runs[2][1], runs[2][2] + rng.standard_normal((120, 6)).astype(np.float32))
    )
    settings = dict(
        estimator="ridge",
        alphas=[1, 10, 100],
        pca_variance=0.9,
        delays=[0, 1],
        stimuli=["a", "b", "c", "c"],
    )
    fitted_rows = []
    fit = enc.fit_feature_model

    def counting(X_fit, *args, **kwargs):
        fitted_rows.append(len(X_fit))
        return fit(X_fit, *args, **kwargs)

    monkeypatch.setattr(enc, "fit_feature_model", counting)
    cached = enc.encode_subject(runs, **settings)
    assert sorted(fitted_rows) == [120, 120, 240, 240, 360, 360, 480]
    fitted_rows.clear()
    monkeypatch.setattr(enc.FeatureModelCache, "fit", lambda self, X, *a, **k: counting(X, *a, **k))
    every = enc.encode_subject(runs, **settings)
    assert len(fitted_rows) == 13
    for name in ("r", "r2", "alpha", "weights"):
        np.testing.assert_array_equal(getattr(cached, name), getattr(every, name))
