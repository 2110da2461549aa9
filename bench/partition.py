"""Benchmark: the cost of variance partitioning (joint + leave-one-space-out fits vs joint).

Times :func:`neurovid.encoding.encode_subject` on simulated subjects shaped like the
demo's, with two feature spaces (a wide picture space, ~2,000 motion-energy-like
columns of rank ~``--rank``, and a narrow one, 64 log-mel-like columns), once with
``variance_partitioning=False`` and once with ``True``, for ridge and banded ridge,
on one thread (the encode jobs' default):

* ``fmri``: 3 runs x 130 TRs, 6 FIR delays, ``--voxels`` targets;
* ``mouse``: 4 runs x 1,280 samples at 10 Hz (two runs repeat one stimulus), 9
  delays, 50 neurons.

Prints seconds and the factor (with / without). Usage::

    python bench/partition.py                 # both cases (~1-2 min on one core)
    python bench/partition.py --case mouse --estimators ridge
"""

from __future__ import annotations

import argparse
import logging
import platform
import time

import numpy as np
from threadpoolctl import threadpool_limits

from neurovid.encoding import encode_subject


def smooth_space(rng: np.random.Generator, n: int, width: int, rank: int, sigma: int) -> np.ndarray:
    """[n, width] features of about ``rank`` dimensions, smooth over ``sigma`` samples."""
    latent = rng.standard_normal((n + 4 * sigma, rank))
    kernel = np.exp(-0.5 * (np.arange(-2 * sigma, 2 * sigma + 1) / max(sigma, 1)) ** 2)
    latent = np.stack([np.convolve(c, kernel, mode="valid") for c in latent.T], axis=1)[:n]
    X = latent @ rng.standard_normal((rank, width)) + 0.1 * rng.standard_normal((n, width))
    return X.astype(np.float32)


def subject(case: str, voxels: int, rank: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    if case == "fmri":
        lengths, n_targets, delays, sigma, stimuli = [130, 130, 130], voxels, 6, 2, None
    else:
        lengths, n_targets, delays, sigma = [1280] * 4, 50, 9, 5
        stimuli = ["a", "b", "c", "c"]  # runs 3 and 4 repeat one stimulus (as the demo mice)
    widths = {"picture": 2000, "sound": 64}
    runs = []
    W = {
        k: rng.standard_normal((w, n_targets)).astype(np.float32) / np.sqrt(w)
        for k, w in widths.items()
    }
    for i, n in enumerate(lengths):
        spaces = {
            "picture": smooth_space(rng, n, widths["picture"], rank, sigma),
            "sound": smooth_space(rng, n, widths["sound"], 16, sigma),
        }
        Y = sum(spaces[k] @ W[k] for k in widths) + 2.0 * rng.standard_normal((n, n_targets))
        X = np.concatenate([spaces[k] for k in widths], axis=1)
        runs.append((f"run-{i + 1}", X, Y.astype(np.float32)))
    return runs, list(widths.items()), list(range(delays)), stimuli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=["fmri", "mouse", "both"], default="both")
    parser.add_argument("--estimators", nargs="+", default=["ridge", "banded_ridge"])
    parser.add_argument("--voxels", type=int, default=5000)
    parser.add_argument("--rank", type=int, default=300)
    parser.add_argument("--n-iter", type=int, default=20)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"{platform.processor() or platform.machine()}, 1 thread")
    cases = ["fmri", "mouse"] if args.case == "both" else [args.case]
    for case in cases:
        runs, bands, delays, stimuli = subject(case, args.voxels, args.rank)
        for estimator in args.estimators:
            seconds = {}
            for vp in (False, True):
                t0 = time.perf_counter()
                with threadpool_limits(limits=1):
                    result = encode_subject(
                        runs,
                        estimator=estimator,
                        alphas=np.logspace(0, 6, 7),
                        pca_variance=0.95,
                        delays=delays,
                        stimuli=stimuli,
                        bands=bands,
                        n_iter=args.n_iter,
                        variance_partitioning=vp,
                    )
                seconds[vp] = time.perf_counter() - t0
            means = ", ".join(
                f"{name} {np.nanmean(v):.3f}"
                for name, v in zip(("unique_picture", "unique_sound"), result.unique, strict=True)
            )
            print(
                f"{case:5s} {estimator:12s} joint {seconds[False]:7.1f} s, "
                f"joint + partition {seconds[True]:7.1f} s: x{seconds[True] / seconds[False]:.2f} "
                f"({means}, shared {np.nanmean(result.shared):.3f})"
            )


if __name__ == "__main__":
    main()
