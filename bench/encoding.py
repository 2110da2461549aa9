"""Benchmark: neurovid's ridge vs himalaya's RidgeCV vs the seed's per-voxel LASSO.

Synthetic fMRI-sized problem (float32): 3,600 time points x 500 features ->
50,000 targets; models are fit on the first 3,000 rows and scored on the last
600. Timed in one run on the same data and the same CV (5 contiguous blocks of
600 rows, as leave-one-run-out over 5 runs; 7 alphas; per-target alpha; refit;
prediction of the test rows):

* neurovid: :func:`neurovid.ridge.ridge_cv` (the pipeline's solver);
* himalaya: ``RidgeCV`` (numpy backend), the field's reference;
* seed: scikit-learn ``Lasso(alpha=0.1)`` fitted voxel by voxel, no CV (the
  SlowFast fMRI study's approach), timed on ``--lasso-sample`` voxels and
  extrapolated linearly to all targets.

It prints the ratios, the share of targets where both ridge solvers pick the
same alpha, the largest difference in held-out R², and a float64 check of both
on a subset of targets. ``--rss-only`` runs only neurovid's solver (e.g. on
100,000 targets x 1,000 features) and prints its peak RSS.

Beside it (``--case neurons``), the demo mice's shape: 50 neurons, a wide design
(430 PCs x 9 FIR delays = 3,870 columns, smooth features) and 4 runs of 1,280
samples, CV over the first 3 runs (leave one run out), scored on the 4th. The
cost of a fit must follow the work: the solver picks its route from the shapes
and the target and alpha counts (``route="auto"``); it is timed against the
eigendecomposition routes forced (the only ones before) and himalaya's RidgeCV.

Usage::

    python bench/encoding.py                 # both cases (~2.5 min, ~3 GB RAM)
    python bench/encoding.py --case voxels --targets 2000  # quick run
    python bench/encoding.py --case neurons
    python bench/encoding.py --targets 100000 --features 1000 --rss-only
"""

from __future__ import annotations

import argparse
import platform
import resource
import time
import warnings

import numpy as np
from himalaya.backend import set_backend
from himalaya.ridge import RidgeCV
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso
from threadpoolctl import threadpool_limits

from neurovid.align import add_delays
from neurovid.encoding import leave_one_run_out, score_predictions
from neurovid.ridge import ridge_cv

ALPHAS = [1e-1, 1e0, 1e1, 1e2, 1e3, 1e4, 1e5]


def make_data(
    n_samples: int, n_features: int, n_targets: int, seed: int, mixing: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian features (correlated when ``mixing`` > 0), dense weights, noise.

    The noise level varies over targets (held-out r from ~0.2 to ~0.9).
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n_features), dtype=np.float32)
    if mixing:
        X = X @ (
            np.eye(n_features, dtype=np.float32)
            + mixing
            * rng.standard_normal((n_features, n_features), dtype=np.float32)
            / np.sqrt(n_features)
        )
    Y = np.empty((n_samples, n_targets), dtype=np.float32)
    chunk = 5000
    for start in range(0, n_targets, chunk):
        stop = min(start + chunk, n_targets)
        W = rng.standard_normal((n_features, stop - start), dtype=np.float32)
        signal = X @ W
        signal /= signal.std(axis=0)
        noise_sd = rng.uniform(0.5, 5.0, stop - start).astype(np.float32)
        Y[:, start:stop] = signal + rng.standard_normal(signal.shape, dtype=np.float32) * noise_sd
    return X, Y


def neurons_case(threads: int | None, seed: int) -> None:
    """50 targets, wide delayed design: ridge_cv's chosen route vs the eigen routes forced."""
    rng = np.random.default_rng(seed)
    n_runs, run_len, n_pcs, delays = 4, 1280, 430, list(range(9))
    kernel = np.exp(-np.arange(30) / 6.0)
    runs = []
    for _ in range(n_runs):
        Z = rng.standard_normal((run_len + 29, n_pcs))
        smooth = np.stack([np.convolve(Z[:, j], kernel, "valid") for j in range(n_pcs)], 1)
        runs.append(add_delays((smooth * np.linspace(3, 0.2, n_pcs)).astype(np.float32), delays))
    X = np.concatenate(runs)
    W = rng.standard_normal((X.shape[1], 50)).astype(np.float32) / np.sqrt(X.shape[1])
    signal = X @ W
    Y = signal / signal.std(0) + rng.standard_normal(signal.shape).astype(np.float32)
    n_fit = 3 * run_len
    splits = leave_one_run_out([run_len] * 3)
    print(
        f"\nneurons case: X {X.shape} ({n_pcs} PCs x {len(delays)} delays), 50 targets, "
        f"CV over 3 runs of {run_len}, test on the 4th"
    )
    times = {}
    with threadpool_limits(limits=threads):
        for route in ("auto", "scores", "blocks"):
            t0 = time.perf_counter()
            refit = "auto" if route == "auto" else "eigen"  # the eigen routes, as before
            fit = ridge_cv(
                X[:n_fit], Y[:n_fit], splits, ALPHAS, backend="numpy", route=route, refit=refit
            )
            times[route] = time.perf_counter() - t0
            r, _ = score_predictions(Y[n_fit:], fit.predict(X[n_fit:]))
            print(
                f"  ridge_cv route={route}: {times[route]:.1f} s (CV {fit.route}, refit "
                f"{fit.refit_route}), held-out mean r {np.nanmean(r):.4f}"
            )
        set_backend("numpy", on_error="raise")
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            RidgeCV(alphas=ALPHAS, cv=list(splits), solver_params={"warn": False}).fit(
                X[:n_fit], Y[:n_fit]
            )
        times["himalaya"] = time.perf_counter() - t0
    print(f"  himalaya RidgeCV: {times['himalaya']:.1f} s")
    print(
        f"  speed-up of the chosen route: {times['scores'] / times['auto']:.1f}x vs the dual "
        f"eigen route, {times['blocks'] / times['auto']:.1f}x vs the primal one, "
        f"{times['himalaya'] / times['auto']:.1f}x vs himalaya"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=("both", "voxels", "neurons"), default="both")
    parser.add_argument("--targets", type=int, default=50_000)
    parser.add_argument("--samples", type=int, default=3_600)
    parser.add_argument("--train", type=int, default=3_000)
    parser.add_argument("--features", type=int, default=500)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--lasso-sample", type=int, default=50, help="voxels timed for LASSO")
    parser.add_argument("--lasso-alpha", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=None, help="BLAS threads (default: all)")
    parser.add_argument("--mixing", type=float, default=0.0, help="feature correlation (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-targets", type=int, default=2000, help="float64 check subset")
    parser.add_argument("--rss-only", action="store_true", help="only neurovid's solver + peak RSS")
    args = parser.parse_args()
    if args.case != "neurons":
        voxels_case(args)
    if args.case != "voxels" and not args.rss_only:
        neurons_case(args.threads, args.seed)


def voxels_case(args: argparse.Namespace) -> None:
    """50,000 targets: neurovid vs himalaya vs per-voxel LASSO (see the module docstring)."""
    t0 = time.perf_counter()
    X, Y = make_data(args.samples, args.features, args.targets, args.seed, args.mixing)
    print(
        f"data: X {X.shape}, Y {Y.shape} float32, train {args.train} rows, "
        f"test {args.samples - args.train} ({time.perf_counter() - t0:.1f} s to generate)"
    )
    train, test = slice(0, args.train), slice(args.train, args.samples)
    block = args.train // args.folds
    splits = leave_one_run_out([block] * (args.folds - 1) + [args.train - block * (args.folds - 1)])

    with threadpool_limits(limits=args.threads):
        t0 = time.perf_counter()
        fit = ridge_cv(X[train], Y[train], splits, ALPHAS, backend="numpy")
        predicted = fit.predict(X[test])
        ours_s = time.perf_counter() - t0
        r_ours, r2_ours = score_predictions(Y[test], predicted)
        fit_alpha = fit.alpha
        del predicted
        if args.rss_only:
            peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
            print(
                f"neurovid ridge_cv, {args.targets} targets x {args.features} features x "
                f"{args.samples} samples: {ours_s:.1f} s, peak RSS {peak_gb:.2f} GB "
                f"(data alone: {(X.nbytes + Y.nbytes) / 1024**3:.2f} GB)"
            )
            return
        del fit

        set_backend("numpy", on_error="raise")
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            reference = RidgeCV(
                alphas=np.asarray(ALPHAS, dtype=np.float32),
                fit_intercept=True,
                cv=list(splits),
                solver_params={"warn": False},
            ).fit(X[train], Y[train])
            predicted = reference.predict(X[test])
        himalaya_s = time.perf_counter() - t0
        r_him, r2_him = score_predictions(Y[test], predicted)
        alpha_him = np.asarray(reference.best_alphas_, dtype=np.float64)
        del predicted, reference

        # float64 check of both solvers on a subset of targets.
        subset = np.linspace(0, args.targets - 1, min(args.check_targets, args.targets)).astype(int)
        X64, Y64 = X.astype(np.float64), Y[:, subset].astype(np.float64)
        ours64 = ridge_cv(X64[train], Y64[train], splits, ALPHAS, backend="numpy", dtype="float64")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ref64 = RidgeCV(
                alphas=np.asarray(ALPHAS),
                fit_intercept=True,
                cv=list(splits),
                solver_params={"warn": False},
            ).fit(X64[train], Y64[train])
        _, r2_o64 = score_predictions(Y64[test], ours64.predict(X64[test]))
        _, r2_h64 = score_predictions(Y64[test], ref64.predict(X64[test]))

        sample = np.linspace(0, args.targets - 1, min(args.lasso_sample, args.targets)).astype(int)
        r_lasso = np.empty(len(sample))
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for i, target in enumerate(sample):
                model = Lasso(alpha=args.lasso_alpha).fit(X[train], Y[train, target])
                r_lasso[i] = np.corrcoef(model.predict(X[test]), Y[test, target])[0, 1]
        lasso_sample_s = time.perf_counter() - t0
    lasso_s = lasso_sample_s * args.targets / len(sample)

    def same_alpha(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean(np.isclose(a, b, rtol=1e-4)))

    print(f"machine: {platform.machine()}, threads: {args.threads or 'all'}")
    print(
        f"neurovid ridge_cv ({args.folds}-fold CV x {len(ALPHAS)} alphas, {args.targets} targets, "
        f"float32): {ours_s:.1f} s, held-out mean r {np.nanmean(r_ours):.4f}"
    )
    print(
        f"himalaya RidgeCV (same data, CV, alphas): {himalaya_s:.1f} s, held-out mean r {np.nanmean(r_him):.4f}"
    )
    print(
        f"seed per-voxel Lasso(alpha={args.lasso_alpha}), no CV: {lasso_sample_s:.2f} s for "
        f"{len(sample)} voxels -> {lasso_s:.0f} s extrapolated to {args.targets}; "
        f"held-out mean r {np.nanmean(r_lasso):.3f} (ridge on the same voxels: "
        f"{np.nanmean(r_ours[sample]):.3f})"
    )
    print(
        f"agreement float32: same alpha on {100 * same_alpha(fit_alpha, alpha_him):.2f}% of targets, "
        f"max |held-out R² difference| {np.nanmax(np.abs(r2_ours - r2_him)):.2e}"
    )
    print(
        f"agreement float64 ({len(subset)} targets): same alpha on "
        f"{100 * same_alpha(ours64.alpha, np.asarray(ref64.best_alphas_)):.2f}%, "
        f"max |held-out R² difference| {np.nanmax(np.abs(r2_o64 - r2_h64)):.2e}"
    )
    print(f"speed-up vs himalaya RidgeCV: {himalaya_s / ours_s:.1f}x")
    print(f"speed-up vs per-voxel Lasso: {lasso_s / ours_s:.1f}x")


if __name__ == "__main__":
    main()
