"""Benchmark: the pipeline's ridge vs the seed's per-voxel LASSO on one synthetic fit.

Synthetic fMRI-sized problem (float32): 3,600 time points x 500 features ->
50,000 targets; models are fit on the first 3,000 rows and scored on the last
600. Two approaches, timed in one run on the same data:

* pipeline: :func:`neurovid.encoding.fit_ridge_cv` (himalaya ``RidgeCV``, numpy
  backend, one SVD per split shared by all targets) with a per-target alpha
  chosen over 7 alphas by 5-fold CV (5 contiguous blocks of 600 rows, as
  leave-one-run-out over 5 runs), refit, then prediction of the test rows;
* seed: scikit-learn ``Lasso(alpha=0.1)`` fitted voxel by voxel, no CV (the
  SlowFast fMRI study's approach), timed on ``--lasso-sample`` voxels and
  extrapolated linearly to all targets.

Usage::

    python bench/encoding.py                 # full size (~1 min for ridge, ~4 GB RAM)
    python bench/encoding.py --targets 2000  # quick run
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso
from threadpoolctl import threadpool_limits

from neurovid.encoding import fit_ridge_cv, leave_one_run_out, score_predictions

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
    args = parser.parse_args()

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
        fit = fit_ridge_cv(X[train], Y[train], splits, ALPHAS)
        predicted = fit.predict(X[test])
        ridge_s = time.perf_counter() - t0
        r_ridge, _ = score_predictions(Y[test], predicted)

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

    print(f"machine: {platform.machine()}, threads: {args.threads or 'all'}")
    print(
        f"pipeline ridge (himalaya RidgeCV, {args.folds}-fold CV x {len(ALPHAS)} alphas, "
        f"{args.targets} targets): {ridge_s:.1f} s, held-out mean r {np.nanmean(r_ridge):.3f}"
    )
    print(
        f"seed per-voxel Lasso(alpha={args.lasso_alpha}), no CV: {lasso_sample_s:.2f} s for "
        f"{len(sample)} voxels -> {lasso_s:.0f} s extrapolated to {args.targets}; "
        f"held-out mean r {np.nanmean(r_lasso):.3f} (ridge on the same voxels: "
        f"{np.nanmean(r_ridge[sample]):.3f})"
    )
    print(f"speed-up: {lasso_s / ridge_s:.1f}x (per-voxel Lasso / pipeline ridge)")


if __name__ == "__main__":
    main()
