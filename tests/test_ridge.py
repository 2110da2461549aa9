"""The fast ridge / banded-ridge solver against himalaya, numpy and closed forms."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from himalaya.backend import set_backend
from himalaya.ridge import BandedRidgeCV, RidgeCV
from himalaya.scoring import r2_score_split

from neurovid.encoding import leave_one_run_out
from neurovid.ridge import (
    banded_ridge_cv,
    explainable_variance,
    folds_from_splits,
    refit_costs,
    ridge_cv,
    route_costs,
    space_slices,
    split_r2,
)

ALPHAS = np.logspace(-1, 4, 8)


def make_problem(n: int, p: int, t: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) + 0.5  # offsets exercise the intercept
    W = rng.standard_normal((p, t)) / np.sqrt(p)
    Y = X @ W * rng.uniform(0.1, 2.0, t) + rng.standard_normal((n, t)) + 3.0
    return X, Y


def thirds(n: int):
    return leave_one_run_out([n // 3, n // 3, n - 2 * (n // 3)])


def himalaya_ridge(X, Y, splits, alphas):
    set_backend("numpy", on_error="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return RidgeCV(
            alphas=alphas, fit_intercept=True, cv=list(splits), solver_params={"warn": False}
        ).fit(X, Y)


@pytest.mark.parametrize("shape", [(300, 40, 200), (120, 300, 150)], ids=["tall", "wide"])
@pytest.mark.parametrize("route", ["blocks", "scores", "cholesky"])
def test_agrees_with_himalaya_in_float64(shape, route):
    X, Y = make_problem(*shape)
    splits = thirds(shape[0])
    ours = ridge_cv(X, Y, splits, ALPHAS, dtype="float64", backend="numpy", route=route)
    ref = himalaya_ridge(X, Y, splits, ALPHAS)
    assert np.array_equal(
        ours.alpha,
        ALPHAS[np.argmin(np.abs(np.log(ref.best_alphas_)[None] - np.log(ALPHAS)[:, None]), axis=0)],
    )
    np.testing.assert_allclose(ours.coef, ref.coef_, atol=1e-10)
    np.testing.assert_allclose(ours.intercept, ref.intercept_, atol=1e-9)
    # himalaya adds log(alpha) * 1e-10 to the mean scores to break ties towards larger alphas.
    slope = np.log(ours.alpha) * 1e-10
    np.testing.assert_allclose(ours.cv_scores.max(axis=0) + slope, ref.cv_scores_, atol=1e-10)


def test_auto_route_and_float32_close_to_float64():
    X, Y = make_problem(300, 40, 100)
    splits = thirds(300)
    f64 = ridge_cv(X, Y, splits, ALPHAS, dtype="float64", backend="numpy")
    f32 = ridge_cv(X.astype(np.float32), Y.astype(np.float32), splits, ALPHAS, backend="numpy")
    assert f64.route == "blocks"
    assert f32.coef.dtype == np.float32
    assert np.mean(f32.alpha == f64.alpha) >= 0.99
    np.testing.assert_allclose(f32.coef, f64.coef, atol=1e-4)
    assert (
        ridge_cv(*make_problem(60, 90, 500), thirds(60), ALPHAS, backend="numpy").route == "scores"
    )


def test_the_route_follows_the_work():
    # A wide design with few targets (50 neurons): a Cholesky factorization per alpha
    # is cheaper than an eigendecomposition; with many targets the shared eigen basis wins.
    few = route_costs(n_train=2560, n_val=1280, n_features=3078, n_targets=50, n_alphas=3)
    assert min(few, key=few.get) == "cholesky"
    many = route_costs(n_train=2560, n_val=1280, n_features=3078, n_targets=50_000, n_alphas=7)
    assert min(many, key=many.get) == "scores"
    tall = route_costs(n_train=3840, n_val=1280, n_features=1026, n_targets=50, n_alphas=7)
    assert min(tall, key=tall.get) == "blocks"  # not the 3840 x 3840 kernel
    # The demo's calcium mouse (50 neurons, 391 PCs x 9 delays) in the inner CV of the final
    # refit, each fold on a PCA of its own: the eigen routes would also decompose the
    # rank-deficient validation factor (1280 rows < 3519 columns) and project the training
    # rows; one Cholesky factorization per alpha is ~3x faster (measured 17 s vs 49 s).
    own = route_costs(3840, 1280, 3519, 50, 7, shared=False)
    assert min(own, key=own.get) == "cholesky"
    assert own["blocks"] > 2.5 * own["cholesky"]
    # The refit takes one factorization per alpha in use when few are.
    assert min(refit_costs(5120, 3888, 50, 3).items(), key=lambda kv: kv[1])[0] == "cholesky"
    assert min(refit_costs(3000, 500, 50_000, 7).items(), key=lambda kv: kv[1])[0] == "eigen"
    X, Y = make_problem(90, 200, 4, seed=5)
    fit = ridge_cv(X, Y, thirds(90), ALPHAS[:3], backend="numpy", dtype="float64")
    assert (fit.route, fit.refit_route) == ("cholesky", "cholesky")
    ref = ridge_cv(X, Y, thirds(90), ALPHAS[:3], backend="numpy", dtype="float64", route="scores")
    assert np.array_equal(fit.alpha, ref.alpha)
    np.testing.assert_allclose(fit.cv_scores, ref.cv_scores, rtol=1e-9)
    np.testing.assert_allclose(fit.coef, ref.coef, atol=1e-10)


@pytest.mark.parametrize("route", ["blocks", "scores", "cholesky"])
def test_fold_designs_score_each_fold_on_its_own_design(route):
    # Each fold has a design of its own (e.g. a PCA fit on its training rows) and its
    # splits need not partition the rows (a gap between training and validation rows).
    rng = np.random.default_rng(4)
    X, Y = make_problem(150, 12, 20, seed=6)
    splits = [(np.arange(0, 70), np.arange(80, 150)), (np.arange(80, 150), np.arange(0, 70))]
    designs = [X @ rng.standard_normal((12, 9)) for _ in splits]
    fit = ridge_cv(
        X, Y, splits, ALPHAS, fold_designs=designs, dtype="float64", backend="numpy", route=route
    )
    expected = np.zeros((len(ALPHAS), Y.shape[1]))
    for (train, test), D in zip(splits, designs, strict=True):
        xm, ym = D[train].mean(0), Y[train].mean(0)
        Dt = D[train] - xm
        for j, a in enumerate(ALPHAS):
            beta = np.linalg.solve(Dt.T @ Dt + a * np.eye(9), Dt.T @ (Y[train] - ym))
            expected[j] -= ((Y[test] - (D[test] - xm) @ beta - ym) ** 2).mean(0)
    np.testing.assert_allclose(fit.cv_scores, expected / 2, rtol=1e-9)
    # The refit is on X, all rows.
    xm = X.mean(0)
    Xc = X - xm
    t = 3
    beta = np.linalg.solve(Xc.T @ Xc + fit.alpha[t] * np.eye(12), Xc.T @ (Y[:, t] - Y[:, t].mean()))
    np.testing.assert_allclose(fit.coef[:, t], beta, atol=1e-10)
    with pytest.raises(ValueError, match="both trained and validated"):
        ridge_cv(X, Y, [(np.arange(100), np.arange(90, 150))], ALPHAS, fold_designs=[X])


def test_matches_direct_solve_and_materialized_scores():
    X, Y = make_problem(240, 30, 50, seed=3)
    splits = thirds(240)
    for score in ("neg_mse", "r2", "pearson"):
        fit = ridge_cv(X, Y, splits, ALPHAS, dtype="float64", backend="numpy", score=score)
        expected = np.zeros((len(ALPHAS), Y.shape[1]))
        for train, test in splits:
            xm, ym = X[train].mean(0), Y[train].mean(0)
            Xt, Yt = X[train] - xm, Y[train] - ym
            for j, a in enumerate(ALPHAS):
                beta = np.linalg.solve(Xt.T @ Xt + a * np.eye(X.shape[1]), Xt.T @ Yt)
                pred = (X[test] - xm) @ beta + ym
                yv = Y[test]
                if score == "neg_mse":
                    expected[j] += -((yv - pred) ** 2).mean(0)
                elif score == "r2":
                    expected[j] += 1 - ((yv - pred) ** 2).sum(0) / ((yv - yv.mean(0)) ** 2).sum(0)
                else:
                    pc, yc = pred - pred.mean(0), yv - yv.mean(0)
                    expected[j] += (pc * yc).sum(0) / np.sqrt((pc**2).sum(0) * (yc**2).sum(0))
        np.testing.assert_allclose(fit.cv_scores, expected / len(splits), rtol=1e-9, atol=1e-10)
    # The refit is the closed-form ridge on all rows at each target's alpha.
    xm, ym = X.mean(0), Y.mean(0)
    Xc = X - xm
    t = 7
    beta = np.linalg.solve(Xc.T @ Xc + fit.alpha[t] * np.eye(30), Xc.T @ (Y[:, t] - ym[t]))
    np.testing.assert_allclose(fit.coef[:, t], beta, atol=1e-10)
    np.testing.assert_allclose(fit.predict(X)[:, t], Xc @ beta + ym[t], atol=1e-9)


def test_chunked_equals_unchunked():
    X, Y = make_problem(300, 40, 500, seed=1)
    X, Y = X.astype(np.float32), Y.astype(np.float32)
    splits = thirds(300)
    whole = ridge_cv(X, Y, splits, ALPHAS, backend="numpy", chunk_size=10_000)
    parts = ridge_cv(X, Y, splits, ALPHAS, backend="numpy", chunk_size=64)
    # Every target's numbers come from its own columns of the same products: bit-identical.
    assert np.array_equal(whole.alpha, parts.alpha)
    assert np.array_equal(parts.coef, whole.coef)
    assert np.array_equal(parts.cv_scores, whole.cv_scores)
    assert np.array_equal(parts.intercept, whole.intercept)


def test_torch_backend_matches_numpy():
    pytest.importorskip("torch", reason="torch is installed with the features extra")
    X, Y = make_problem(200, 30, 80)
    splits = thirds(200)
    ref = ridge_cv(X, Y, splits, ALPHAS, backend="numpy", dtype="float64")
    for route in ("blocks", "scores"):
        got = ridge_cv(X, Y, splits, ALPHAS, backend="torch", dtype="float64", route=route)
        assert got.backend.startswith("torch:")
        assert np.array_equal(got.alpha, ref.alpha)
        np.testing.assert_allclose(got.coef, ref.coef, atol=1e-10)


def test_auto_backend_without_a_gpu_driver_skips_importing_torch():
    """On a CPU machine ``auto`` is numpy, and finding that out must not import torch."""
    code = (
        "import sys; from neurovid import hardware, ridge; "
        "hardware.GPU_DRIVER_NODES = ('/nonexistent',); "
        "be = ridge.get_backend('auto'); print(be.name, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["numpy", "False"]


def test_split_validation_errors():
    splits = thirds(30)
    with pytest.raises(ValueError, match="training rows must be all rows"):
        folds_from_splits([(splits[0][0][:-1], splits[0][1])], 30)
    with pytest.raises(ValueError, match="partition"):
        folds_from_splits(splits[:2], 30)
    X, Y = make_problem(30, 3, 2)
    with pytest.raises(ValueError, match="positive"):
        ridge_cv(X, Y, splits, [0.0, 1.0])


def test_banded_ridge_recovers_the_driving_space():
    rng = np.random.default_rng(0)
    n, sizes = 600, [20, 30]
    A = rng.standard_normal((n, sizes[0]))
    B = rng.standard_normal((n, sizes[1]))
    X = np.hstack([A, B])
    t = 40  # targets 0-19 driven by A only, 20-39 by B only
    Y = np.empty((n, t))
    Y[:, :20] = A @ rng.standard_normal((sizes[0], 20))
    Y[:, 20:] = B @ rng.standard_normal((sizes[1], 20))
    Y /= Y.std(0)
    Y += 0.7 * rng.standard_normal((n, t))
    train, test = np.arange(450), np.arange(450, 600)
    spaces = space_slices(sizes)
    fit = banded_ridge_cv(
        X[train],
        Y[train],
        thirds(450),
        spaces,
        np.logspace(-2, 4, 7),
        n_iter=15,
        backend="numpy",
        dtype="float64",
    )
    assert fit.gamma[0, :20].mean() > 0.8 and fit.gamma[1, 20:].mean() > 0.8
    shares = split_r2(Y[test], fit.predict_split(X[test]))
    assert np.all(shares[0, :20] > 5 * np.abs(shares[1, :20]))
    assert np.all(shares[1, 20:] > 5 * np.abs(shares[0, 20:]))
    # The shares sum to the joint held-out R², and equal himalaya's split R².
    pred = fit.predict(X[test])
    joint = 1 - ((Y[test] - pred) ** 2).sum(0) / ((Y[test] - Y[test].mean(0)) ** 2).sum(0)
    parts = fit.predict_split(X[test])
    centred = parts - parts.mean(axis=1, keepdims=True)
    set_backend("numpy", on_error="raise")
    np.testing.assert_allclose(
        shares, r2_score_split(Y[test] - Y[test].mean(0), centred), atol=1e-10
    )
    # Held-out predictions here are fit on other rows, so the joint R² from the shares only
    # matches when predictions are centred on the test rows: check that identity explicitly.
    centred_joint = 1 - ((Y[test] - Y[test].mean(0) - centred.sum(0)) ** 2).sum(0) / (
        (Y[test] - Y[test].mean(0)) ** 2
    ).sum(0)
    np.testing.assert_allclose(shares.sum(0), centred_joint, atol=1e-10)
    assert np.all(joint > 0.3)


def test_banded_ridge_agrees_with_himalaya_on_fixed_gammas():
    X, Y = make_problem(240, 24, 60, seed=5)
    spaces = space_slices([10, 14])
    splits = thirds(240)
    ours = banded_ridge_cv(X, Y, splits, spaces, ALPHAS, n_iter=6, backend="numpy", dtype="float64")
    set_backend("numpy", on_error="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ref = BandedRidgeCV(
            groups=np.repeat([0, 1], [10, 14]),
            solver_params={
                "n_iter": ours.gammas_searched,
                "alphas": ALPHAS,
                "progress_bar": False,
                "warn": False,
            },
            fit_intercept=True,
            cv=list(splits),
        ).fit(X, Y)
    np.testing.assert_allclose(ours.coef, ref.coef_, atol=1e-8)
    np.testing.assert_allclose(ours.gamma.sum(0), 1.0)


def test_explainable_variance_matches_closed_form():
    rng = np.random.default_rng(0)
    n_rep, n_t, n_targets = 4, 4000, 6
    signal_sd = np.array([0.0, 0.5, 1.0, 1.0, 2.0, 3.0])
    noise_sd = np.array([1.0, 1.0, 1.0, 2.0, 1.0, 0.5])
    signal = rng.standard_normal((n_t, n_targets)) * signal_sd
    data = signal[None] + rng.standard_normal((n_rep, n_t, n_targets)) * noise_sd
    expected = signal_sd**2 / (signal_sd**2 + noise_sd**2)
    np.testing.assert_allclose(explainable_variance(data), expected, atol=0.03)
    raw = explainable_variance(data, bias_correction=False)
    np.testing.assert_allclose(
        raw, (signal_sd**2 + noise_sd**2 / n_rep) / (signal_sd**2 + noise_sd**2), atol=0.03
    )
    constant = np.ones((3, 10, 2))
    assert np.all(np.isnan(explainable_variance(constant)))
    with pytest.raises(ValueError, match="n_repeats >= 2"):
        explainable_variance(data[:1])
