"""Linear encoding models: features -> PCA -> FIR delays -> ridge / banded ridge / LASSO, run-wise CV.

The recipe follows the voxelwise-modelling tradition (gallantlab tutorials,
himalaya) and the SlowFast fMRI study:

* **Outer CV**: leave one run out, or, when runs repeat a stimulus sequence
  (``stimuli``), leave one *group of repeats* out, so no fold is scored on a
  stimulus it was trained on. Every step that learns from data (feature
  z-scoring, PCA, the regression and its regularisation) is fit on the
  training runs of a fold only; the held-out runs are only predicted.
* **PCA**: features are z-scored on the training rows and projected on the
  fewest principal components explaining at least ``pca_variance`` of their
  variance (:func:`fit_pca`); for banded ridge, one PCA per feature space.
* **Delays**: the PCA scores of each run get finite-impulse-response delays
  (:func:`neurovid.align.add_delays`) *per run*, so nothing leaks across a run
  boundary.
* **Regression**: ``ridge`` is :func:`neurovid.ridge.ridge_cv` (one
  decomposition per split for all targets, every alpha scored from projected
  quantities; agrees with himalaya's ``RidgeCV``; torch on CUDA when a GPU is
  visible); ``banded_ridge`` is :func:`neurovid.ridge.banded_ridge_cv` (one
  regularisation per feature space = extractor, with the split R² of each
  space); ``lasso`` is scikit-learn's ``Lasso`` (coordinate descent per target
  on a shared Gram matrix, warm-started from large to small alpha, targets
  split over threads, early-stopped after ``LASSO_MAX_ITER`` epochs). All choose
  a regularisation strength **per target** by an inner leave-one-run-out (or
  leave-one-repeat-group-out) CV over the training runs (negative mean squared
  error averaged over inner folds, himalaya's criterion); with a single
  training run the inner CV uses its two contiguous halves instead.
  ``lstm`` is a trained sequence model on the same per-fold PCA scores (FIR
  delays optional), given as a ``trainer`` (:class:`neurovid.deep.lstm.LSTMTrainer`;
  this module does not import torch), early-stopped on an inner validation group
  of the training runs; its checkpoints and per-epoch metrics go to
  ``train_dir/fold-K`` (and ``train_dir/final`` for the refit).
* **Scores**: Pearson r and R² of each target on each held-out run (mean over
  the runs of a fold); the overall score of a target is the mean over folds.
* **Noise ceiling**: with repeated stimuli, the explainable variance of each
  target (:func:`neurovid.ridge.explainable_variance`, bias-corrected) and the
  held-out single-trial R² on those repeats as a fraction of it. The ceiling is
  the variance locked to the repeated stimulus, so a model with a body space
  (running, face: not repeated with the stimulus) is held to it through its
  stimulus spaces' R² (:meth:`EncodingResult.stimulus_r2_folds`).
* **Final model**: refit on all runs (PCA, delays, per-target alpha by
  leave-one-run-out CV over all runs); its weights are what ``weights.h5``
  stores, its alphas what ``alpha`` reports.
* **Variance partitioning** (``variance_partitioning``, ridge / banded ridge with two
  or more feature spaces, :mod:`neurovid.partition`): the same outer folds are fit
  again without each space (the pipeline above on the other spaces' feature columns,
  its own PCA and nested alpha choice; a single remaining space by ridge); the
  held-out R² of those fits gives each space's unique variance and the shared rest.

Censored samples
    fMRI volumes censored at ingest (:mod:`neurovid.denoise`: high motion,
    non-steady-state; the responses file's ``censored``) are left out of every
    fit and score: each run is projected and delayed whole, so a censored
    volume's *features* (the stimulus, which motion does not corrupt) still
    feed the delayed rows of later samples, and then the censored *rows* of
    the run's design and responses are dropped (:func:`_kept`), before PCA,
    feature scaling, the alpha choice, the fit, the per-run z-scoring
    (:func:`zscore_runs`), the noise ceiling and the held-out scores. Their
    held-out predictions are still written (predictions.h5). ``n_train`` and
    ``n_test`` count kept samples.

Constant targets
    A target whose responses are constant over all runs (zero variance, e.g. a
    voxel outside the brain or a silent neuron) cannot be modelled. It is left
    out of every fit: weights 0, intercept = its value, alpha NaN, and every
    score NaN. A target that is constant in one held-out run only gets NaN r
    and R² for that fold (r is also NaN when a prediction is constant); its
    overall score is the mean over the folds where it is defined (NaN if none).

Weights layout
    ``weights`` rows are ``delay-major``: row ``i * P + p`` is PCA component
    ``p`` at delay ``delays_samples[i]``. A new feature matrix ``X`` [T, D] is
    predicted by ``add_delays(((X - feature_mean) / feature_scale) @
    pca_components.T, delays_samples) @ weights + intercept``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

# Imported eagerly (not inside functions) so that threadpoolctl's limits in
# encode_subject also reach the BLAS that scipy/scikit-learn load.
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso
from threadpoolctl import threadpool_limits

from neurovid import io, scoring
from neurovid.align import add_delays
from neurovid.errors import InputError
from neurovid.partition import PARTITION_ESTIMATORS, partition, partition_parts
from neurovid.ridge import banded_ridge_cv, explainable_variance, ridge_cv, split_r2
from neurovid.scoring import pearson_r

#: One run of a subject: (run id, features X [T_r, D], responses Y [T_r, N]).
Run = tuple[str, np.ndarray, np.ndarray]
Splits = list[tuple[np.ndarray, np.ndarray]]

ESTIMATORS = ("ridge", "banded_ridge", "lasso")
#: Trained sequence models (:mod:`neurovid.deep`), fit through the same CV and scores.
DEEP_ESTIMATORS = ("lstm",)

#: Coordinate-descent epochs per LASSO fit (see :func:`fit_lasso_cv`); a model's
#: config may override it with ``max_iter``.
LASSO_MAX_ITER = 100

#: PCA eigendecomposes the feature covariance up to this many features (else: SVD).
PCA_EIGH_MAX = 4096

#: Feature-space weightings searched by banded ridge (a model's ``n_iter`` overrides it).
BANDED_N_ITER = 20

_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- CV and scaling


def leave_one_run_out(run_lengths: Sequence[int]) -> Splits:
    """Train/test row indices of leave-one-run-out CV over concatenated runs.

    Runs are stacked in the given order; fold ``k`` tests on run ``k`` and
    trains on all the others (indices sorted ascending).
    """
    return _held_out_splits(run_lengths, [[k] for k in range(len(run_lengths))])


def _held_out_splits(lengths: Sequence[int], groups: Sequence[Sequence[int]]) -> Splits:
    """One split per group of runs (stacked in order): test on its rows, train on the rest."""
    bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    everything = np.arange(int(bounds[-1]))
    splits: Splits = []
    for group in groups:
        test = np.concatenate([np.arange(bounds[i], bounds[i + 1]) for i in sorted(group)])
        splits.append((np.setdiff1d(everything, test), test))
    return splits


def selection_splits(
    lengths: Sequence[int], groups: Sequence[Sequence[int]], gap: int = 0
) -> Splits:
    """Splits for choosing the regularisation (the inner CV), over runs stacked in order.

    Never validated on a stimulus it was trained on:

    * two or more groups of repeats (``groups``: run indices; one run each without
      repeats): leave one group out, so all repeats of a stimulus are validated together;
    * one group only (a single run, or repeats of one stimulus): each run of it is
      cut at the same time (half the shortest run, the same stimulus time for
      repeats); the first parts train and the second parts validate, then the
      reverse. ``gap`` samples on each side of the cut belong to neither (set it
      to the longest FIR delay, so no validated response was driven by trained-on
      stimulus, and no trained-on response by validated stimulus).

    Raises:
        InputError: the runs are too short to be cut.
    """
    if len(groups) >= 2:
        return _held_out_splits(lengths, groups)
    group = sorted(groups[0])
    bounds = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    cut = min(int(lengths[i]) for i in group) // 2
    if cut - gap < 1:
        raise InputError(
            None,
            f"the training runs ({', '.join(str(lengths[i]) for i in group)} samples) are too short to cut into two halves {gap} samples apart for choosing alpha.",
            "record longer runs or more runs with different stimuli.",
            field="recording_id",
        )
    first = np.concatenate([np.arange(bounds[i], bounds[i] + cut - gap) for i in group])
    second = np.concatenate([np.arange(bounds[i] + cut + gap, bounds[i + 1]) for i in group])
    return [(first, second), (second, first)]


def zscore_runs(
    Y: np.ndarray, run_lengths: Sequence[int], keep: np.ndarray | None = None
) -> np.ndarray:
    """Z-score each column within each run (constant columns become 0), as float32.

    ``keep`` (bool per row of ``Y``): the mean and standard deviation come from the
    kept rows only (censored samples do not shape the scale); every row is scaled.
    """
    Y = np.asarray(Y, dtype=np.float64)
    out = np.empty_like(Y)
    start = 0
    for n in run_lengths:
        block = Y[start : start + n]
        stats = block if keep is None else block[np.asarray(keep[start : start + n], bool)]
        mean = stats.mean(axis=0)
        std = stats.std(axis=0)
        constant = np.ptp(stats, axis=0) == 0
        std[constant] = 1.0
        out[start : start + n] = (block - mean) / std
        out[start : start + n, constant] = 0.0
        start += n
    if start != len(Y):
        raise ValueError(f"run lengths sum to {start} but Y has {len(Y)} rows")
    return out.astype(np.float32)


@dataclass
class PCAModel:
    """Feature z-scoring + PCA projection learnt on training rows."""

    mean: np.ndarray  # [D]
    scale: np.ndarray  # [D] (1 for constant features)
    components: np.ndarray  # [P, D]
    explained_variance_ratio: np.ndarray  # [P] share of the z-scored variance

    @property
    def n_components(self) -> int:
        return int(self.components.shape[0])

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Project features [T, D] onto the kept components -> [T, P] float32."""
        Z = (np.asarray(X, dtype=np.float64) - self.mean) / self.scale
        return (Z @ self.components.T).astype(np.float32)


#: While a partitioned model is fit (:func:`shared_pca`): fitted PCAs by their input.
_PCA_CACHE: dict[tuple[bytes, tuple[int, ...], float], PCAModel] | None = None


@contextlib.contextmanager
def shared_pca() -> Iterator[None]:
    """Fit each PCA once while the block runs: :func:`fit_pca` on the same rows, columns
    and share returns the model fitted first (keyed by a digest of the input's bytes).

    Variance partitioning fits every feature space's PCA on the same training rows in
    the joint model and again in each model without another space; measured on a demo
    mouse (motion energy + running speed), PCA was 14.6 s of the 22.1 s fit.
    """
    global _PCA_CACHE
    outer, _PCA_CACHE = _PCA_CACHE, {} if _PCA_CACHE is None else _PCA_CACHE
    try:
        yield
    finally:
        _PCA_CACHE = outer


def fit_pca(X_train: np.ndarray, share: float) -> PCAModel:
    """Z-score features on ``X_train`` and keep the fewest PCs explaining >= ``share``
    (once per input inside :func:`shared_pca`).

    ``share`` is in (0, 1]; ``1`` keeps every component. Uses scikit-learn's
    exact PCA solvers with their deterministic sign convention. Features that
    are constant on ``X_train`` carry no variance there: they get zero loadings,
    so whatever values they take on other rows (e.g. a validation run) cannot
    enter the projection.

    Raises:
        InputError: every feature is constant on ``X_train``.
    """
    if not 0 < share <= 1:
        raise ValueError(f"pca_variance must be in (0, 1], got {share}")
    X = np.ascontiguousarray(X_train, dtype=np.float64)
    if _PCA_CACHE is None:
        return _fit_pca(X, share)
    key = (hashlib.blake2b(X.data, digest_size=16).digest(), X.shape, float(share))
    if key not in _PCA_CACHE:
        _PCA_CACHE[key] = _fit_pca(X, share)
    return _PCA_CACHE[key]


def _fit_pca(X: np.ndarray, share: float) -> PCAModel:
    """:func:`fit_pca` of float64 ``X``, uncached."""
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    varying = np.ptp(X, axis=0) > 0
    scale[~varying] = 1.0
    if not varying.any():
        raise InputError(
            None,
            f"all {X.shape[1]} features are constant over the {X.shape[0]} training samples.",
            "check the aligned features of these runs (an extractor that failed, or no video in the timeline).",
            field="features",
        )
    Z = (X[:, varying] - mean[varying]) / scale[varying]
    # Eigendecomposition of the D x D covariance: 3-4x faster than the SVD of Z down to
    # half as many rows as features (the inner CV fits PCA on one run); the exact SVD of
    # Z (cost ~ rows^2 x D) below that, 3-5x faster there (fMRI: a few hundred TRs of
    # ~2,000 motion-energy features), and for very wide inputs. Both are deterministic.
    n_rows, n_features = Z.shape
    few_rows = 2 * n_rows < n_features
    solver = "full" if few_rows or n_features > max(n_rows, PCA_EIGH_MAX) else "covariance_eigh"
    pca = PCA(svd_solver=solver).fit(Z)
    ratio = np.asarray(pca.explained_variance_ratio_, dtype=np.float64)
    if share >= 1:
        k = len(ratio)
    else:
        # Fewest components whose cumulative share reaches `share` (tolerating rounding).
        k = int(np.searchsorted(np.cumsum(ratio), share - 1e-12, side="left")) + 1
        k = min(k, len(ratio))
    components = np.zeros((k, X.shape[1]))
    components[:, varying] = pca.components_[:k]
    return PCAModel(mean, scale, components, ratio[:k].copy())


# --------------------------------------------------------------------------- scores


def score_predictions(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r (:func:`neurovid.scoring.pearson_r`) and R² per column (float64).

    r is NaN where the recorded or the predicted column is constant; R² is NaN
    where the recorded column is constant (its variance is the denominator).
    """
    yt = np.asarray(y_true, dtype=np.float64)
    yp = np.asarray(y_pred, dtype=np.float64)
    tc = yt - yt.mean(axis=0)
    ss_true = (tc**2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 1.0 - ((yt - yp) ** 2).sum(axis=0) / ss_true
    r2[np.ptp(yt, axis=0) == 0] = np.nan
    return pearson_r(yt, yp), r2


def _nanmean(a: np.ndarray, axis: int = 0) -> np.ndarray:
    """Mean ignoring NaN, NaN (without a warning) where every value is NaN."""
    a = np.asarray(a, dtype=np.float64)
    valid = np.isfinite(a)
    count = valid.sum(axis=axis)
    total = np.where(valid, a, 0.0).sum(axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _nan_stat(values: np.ndarray, func: Any) -> float:
    finite = values[np.isfinite(values)]
    return float(func(finite)) if finite.size else float("nan")


# --------------------------------------------------------------------------- estimators


@dataclass
class LinearFit:
    """A fitted multi-target linear model: ``Y ≈ X @ coef + intercept``."""

    coef: np.ndarray  # [P, N] float32
    intercept: np.ndarray  # [N] float32
    alpha: np.ndarray  # [N] float64, chosen per target
    gamma: np.ndarray | None = None  # [n_spaces, N] banded ridge: weight of each feature space

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype=np.float32) @ self.coef + self.intercept).astype(np.float32)


def fit_ridge_cv(
    X: np.ndarray,
    Y: np.ndarray,
    splits: Splits,
    alphas: Sequence[float],
    *,
    chunk_size: int | None = None,
    backend: str = "auto",
    route: str = "auto",
    fold_designs: Sequence[np.ndarray] | None = None,
) -> LinearFit:
    """Ridge with a per-target alpha chosen by CV over ``splits`` (:func:`neurovid.ridge.ridge_cv`;
    ``fold_designs``: a design per split to score it on).

    float32, one decomposition per split shared by all targets and alphas,
    every alpha scored from projected quantities, then refit on all rows with
    each target's best alpha (negative MSE averaged over splits, as himalaya's
    ``RidgeCV``, with which it agrees). An intercept is fitted. Runs on CUDA
    through torch when a GPU is visible (``backend="auto"``).
    """
    fit = ridge_cv(
        np.asarray(X, dtype=np.float32),
        np.asarray(Y, dtype=np.float32),
        splits,
        alphas,
        fold_designs=fold_designs,
        chunk_size=chunk_size,
        backend=backend,
        route=route,
    )
    _log.debug("ridge: %s backend, %s CV route, %s refit", fit.backend, fit.route, fit.refit_route)
    return LinearFit(coef=fit.coef, intercept=fit.intercept, alpha=fit.alpha)


def _lasso_targets(
    Xc: np.ndarray,
    Yc: np.ndarray,
    gram: np.ndarray,
    alpha: float,
    coef_init: np.ndarray | None,
    *,
    max_iter: int,
    tol: float,
    n_jobs: int,
) -> tuple[np.ndarray, int]:
    """Lasso of every column of ``Yc`` on centred ``Xc`` -> (coef [N, P], n not converged).

    scikit-learn's coordinate descent on the shared precomputed Gram matrix,
    one target at a time; targets are split into ``n_jobs`` chunks run in
    threads (the solver releases the GIL). ``coef_init`` warm-starts.
    """
    n_targets = Yc.shape[1]
    chunks = [c for c in np.array_split(np.arange(n_targets), max(1, n_jobs)) if c.size]

    def work(cols: np.ndarray) -> tuple[np.ndarray, int]:
        model = Lasso(
            alpha=alpha,
            fit_intercept=False,
            precompute=gram,
            warm_start=coef_init is not None,
            max_iter=max_iter,
            tol=tol,
            selection="cyclic",
        )
        if coef_init is not None:
            model.coef_ = coef_init[cols].copy()
        model.fit(Xc, Yc[:, cols])
        n_iter = np.atleast_1d(model.n_iter_)
        return model.coef_.reshape(len(cols), -1), int((n_iter >= max_iter).sum())

    # Early-stopped fits are expected (counted by the caller), not worth a warning each.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if len(chunks) == 1:
            parts = [work(chunks[0])]
        else:
            # One BLAS thread per worker: nested threading oversubscribes the cores.
            with threadpool_limits(limits=1), ThreadPoolExecutor(len(chunks)) as pool:
                parts = list(pool.map(work, chunks))
    coef = np.empty((n_targets, Xc.shape[1]))
    for cols, (part, _) in zip(chunks, parts, strict=True):
        coef[cols] = part
    return coef, sum(n for _, n in parts)


def _centre(X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, ...]:
    x_mean, y_mean = X.mean(axis=0), Y.mean(axis=0)
    Xc = X - x_mean
    return Xc, Y - y_mean, x_mean, y_mean, Xc.T @ Xc


def fit_lasso_cv(
    X: np.ndarray,
    Y: np.ndarray,
    splits: Splits,
    alphas: Sequence[float],
    *,
    max_iter: int = LASSO_MAX_ITER,
    tol: float = 1e-4,
    n_jobs: int = 1,
    fold_designs: Sequence[np.ndarray] | None = None,
) -> LinearFit:
    """LASSO (scikit-learn) with a per-target alpha chosen by CV over ``splits``
    (each scored on its own design from ``fold_designs`` when given, refit on ``X``).

    For each split, one multi-target ``Lasso`` fit per alpha, from the largest
    alpha down (warm start), on the split's centred training rows and their
    Gram matrix (computed once per split, shared by all alphas and targets).
    Each target keeps the alpha with the best mean negative MSE over splits
    (ties: the first in ``alphas`` order); the final model is refit on all rows
    along the same warm-started path, each target stopping at its alpha.
    Computed in float64 (coordinate descent converges poorly in float32);
    deterministic for a given ``n_jobs``. Fits that reach ``max_iter`` epochs
    are kept (early-stopped) and counted in the log: with FIR-delayed,
    strongly collinear designs coordinate descent needs thousands of epochs
    to close the duality gap, while held-out predictions stop changing after
    about a hundred (measured: held-out MSE within 1% of the 1000-epoch fit
    at 100 epochs, 6x faster; see ``LASSO_MAX_ITER``).
    """
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    alphas = [float(a) for a in alphas]
    order = sorted(range(len(alphas)), key=lambda j: -alphas[j])
    n_targets = Y.shape[1]
    options = {"max_iter": max_iter, "tol": tol, "n_jobs": n_jobs}
    scores = np.zeros((len(splits), len(alphas), n_targets))
    not_converged = 0
    for s, (train, test) in enumerate(splits):
        D = X if fold_designs is None else np.asarray(fold_designs[s], dtype=np.float64)
        Xc, Yc, x_mean, y_mean, gram = _centre(D[train], Y[train])
        coef = None
        for j in order:
            coef, n = _lasso_targets(Xc, Yc, gram, alphas[j], coef, **options)
            not_converged += n
            pred = (D[test] - x_mean) @ coef.T + y_mean
            scores[s, j] = -((Y[test] - pred) ** 2).mean(axis=0)
    best = np.argmax(scores.mean(axis=0), axis=0)

    Xc, Yc, x_mean, y_mean, gram = _centre(X, Y)
    final = np.zeros((n_targets, X.shape[1]))
    todo = np.ones(n_targets, dtype=bool)  # targets still on the path
    coef = None
    for j in order:
        cols = np.flatnonzero(todo)
        if cols.size == 0:
            break
        init = None if coef is None else coef[cols]
        part, n = _lasso_targets(Xc, Yc[:, cols], gram, alphas[j], init, **options)
        not_converged += n
        coef = np.zeros_like(final) if coef is None else coef
        coef[cols] = part
        done = cols[best[cols] == j]
        final[done] = coef[done]
        todo[done] = False
    if not_converged:
        _log.info("lasso: %d target fits stopped at max_iter=%d", not_converged, max_iter)
    return LinearFit(
        coef=final.T.astype(np.float32),
        intercept=(y_mean - x_mean @ final.T).astype(np.float32),
        alpha=np.asarray(alphas)[best],
    )


def fit_estimator(
    estimator: str,
    X: np.ndarray,
    Y: np.ndarray,
    splits: Splits,
    alphas: Sequence[float],
    n_jobs: int = 1,
    max_iter: int = LASSO_MAX_ITER,
    spaces: Sequence[np.ndarray] | None = None,
    n_iter: int = BANDED_N_ITER,
    seed: int = 0,
    fold_designs: Sequence[tuple[np.ndarray, Sequence[np.ndarray] | None]] | None = None,
) -> LinearFit:
    """Dispatch to ridge, banded ridge (``spaces``: column indices of each feature
    space; ``n_iter`` space weightings searched) or LASSO (``max_iter``).

    ``fold_designs``: optional ``(design, spaces)`` per split, each split scored on
    its own design; the returned model is fit on ``X`` (all rows).
    """
    designs = None if fold_designs is None else [d for d, _ in fold_designs]
    if estimator == "ridge":
        return fit_ridge_cv(X, Y, splits, alphas, fold_designs=designs)
    if estimator == "banded_ridge":
        if not spaces:
            raise ValueError("banded_ridge needs the feature spaces' columns")
        fit = banded_ridge_cv(
            np.asarray(X, dtype=np.float32),
            np.asarray(Y, dtype=np.float32),
            splits,
            spaces,
            alphas,
            fold_designs=fold_designs,
            n_iter=n_iter,
            seed=seed,
        )
        return LinearFit(coef=fit.coef, intercept=fit.intercept, alpha=fit.alpha, gamma=fit.gamma)
    if estimator == "lasso":
        return fit_lasso_cv(
            X, Y, splits, alphas, n_jobs=n_jobs, max_iter=max_iter, fold_designs=designs
        )
    raise ValueError(f"unknown estimator {estimator!r}; use one of {ESTIMATORS}")


# --------------------------------------------------------------------------- subject model


@dataclass
class EncodingResult:
    """Everything :func:`encode_subject` learns; written by :func:`write_outputs`."""

    run_ids: list[str]
    estimator: str
    delays_samples: list[int]
    pca_variance: float
    r_folds: np.ndarray  # [F, N] mean over the held-out runs of the fold
    r2_folds: np.ndarray  # [F, N]
    alpha_folds: np.ndarray  # [F, N]
    predictions: list[np.ndarray]  # per run: held-out predictions [T_r, N]
    n_components: list[int]  # per fold
    n_train: list[int]
    n_test: list[int]
    alpha: np.ndarray  # [N] final refit
    weights: np.ndarray  # [P*L, N] final refit
    intercept: np.ndarray  # [N]
    pca: PCAModel  # final refit
    constant: np.ndarray  # [N] bool, constant over all runs (not modelled)
    fold_seconds: list[float] = field(default_factory=list)
    fold_runs: list[list[int]] = field(default_factory=list)  # held-out runs of each fold
    bands: list[str] = field(default_factory=list)  # banded ridge: feature-space names
    r2_split_folds: np.ndarray | None = None  # [F, n_spaces, N] held-out split R²
    gamma: np.ndarray | None = None  # [n_spaces, N] final refit
    ev: np.ndarray | None = None  # [N] explainable variance from repeats (None: no repeats)
    repeat_folds: list[int] = field(default_factory=list)  # folds whose runs are repeats
    # Trained estimators (lstm): per fold (then the final refit) best_epoch, epochs_run, ...
    fold_training: list[dict[str, Any]] = field(default_factory=list)
    model_arrays: dict[str, np.ndarray] = field(default_factory=dict)  # final model's parameters
    weights_layout: str = ""  # how weights.h5 predicts, when not the linear layout
    partition_spaces: list[str] = field(default_factory=list)  # spaces partitioned between
    r2_without_folds: np.ndarray | None = None  # [F, k, N] held-out R² without space i
    body_spaces: list[str] = field(default_factory=list)  # of the features (neurovid.body)

    @property
    def r2_without(self) -> np.ndarray | None:
        """Held-out R² [k, N] of the model without each partitioned space, mean over folds."""
        if self.r2_without_folds is None:
            return None
        return _nanmean(self.r2_without_folds, axis=0)

    @property
    def unique(self) -> np.ndarray | None:
        """Unique held-out variance [k, N] of each partitioned space (:func:`neurovid.partition.partition`)."""
        return None if self.r2_without is None else partition(self.r2, self.r2_without)[0]

    @property
    def shared(self) -> np.ndarray | None:
        """Held-out variance [N] of the joint model that no single space explains alone."""
        return None if self.r2_without is None else partition(self.r2, self.r2_without)[1]

    @property
    def r(self) -> np.ndarray:
        """Held-out r per target, mean over folds (NaN-aware, see module docstring)."""
        return _nanmean(self.r_folds, axis=0)

    @property
    def r2(self) -> np.ndarray:
        return _nanmean(self.r2_folds, axis=0)

    @property
    def r2_split(self) -> np.ndarray | None:
        """Held-out split R² [n_spaces, N] (banded ridge), mean over folds."""
        return None if self.r2_split_folds is None else _nanmean(self.r2_split_folds, axis=0)

    def stimulus_r2_folds(self) -> np.ndarray | None:
        """Held-out R² [F, N] of the model's stimulus spaces alone, or None where no fit has them alone.

        The fit itself when it has no body space; with one body space, the variance
        partition's fit without it; None otherwise (two or more body spaces, or one
        without partitioning). The noise ceiling (``ev``) is the variance locked to the
        repeated stimulus: running or face movements are not repeated with it, so a
        body space's share of the R² does not count against that ceiling.
        """
        if not self.body_spaces:
            return self.r2_folds
        if len(self.body_spaces) == 1 and self.body_spaces[0] in self.partition_spaces:
            assert self.r2_without_folds is not None
            return self.r2_without_folds[:, self.partition_spaces.index(self.body_spaces[0])]
        return None

    @property
    def ceiling_fit(self) -> str:
        """Which fit :attr:`r2_repeats` comes from: ``joint`` or ``without <body space>``."""
        return f"without {self.body_spaces[0]}" if self.body_spaces else "joint"

    @property
    def r2_repeats(self) -> np.ndarray | None:
        """Held-out single-trial R² of the stimulus spaces (:meth:`stimulus_r2_folds`) on the
        repeated stimuli only (the runs the ceiling is from); None without repeats or
        without a fit of the stimulus spaces alone."""
        stimulus = self.stimulus_r2_folds()
        if self.ev is None or not self.repeat_folds or stimulus is None:
            return None
        return _nanmean(stimulus[self.repeat_folds], axis=0)

    @property
    def r2_ceiling_fraction(self) -> np.ndarray | None:
        """``r2_repeats / ev``: share of the explainable variance the model's stimulus
        spaces explain (NaN where ev <= 0; None where :attr:`r2_repeats` is)."""
        if self.r2_repeats is None:
            return None
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.ev > 0, self.r2_repeats / self.ev, np.nan)


def _check_runs(runs: Sequence[Run]) -> tuple[int, int]:
    if len(runs) < 2:
        names = ", ".join(r[0] for r in runs) or "none"
        raise InputError(
            None,
            f"an encoding model needs at least 2 runs for leave-one-run-out cross-validation, got {len(runs)} ({names}).",
            "list two or more recordings of this subject in recordings.tsv.",
            field="recording_id",
        )
    n_dims = {np.asarray(X).shape[1] for _, X, _ in runs}
    n_targets = {np.asarray(Y).shape[1] for _, _, Y in runs}
    if len(n_dims) != 1 or len(n_targets) != 1:
        shapes = {run_id: (np.shape(X), np.shape(Y)) for run_id, X, Y in runs}
        raise InputError(
            None,
            f"runs have different feature or target counts: {shapes}.",
            "every run of a subject must use the same extractors and the same targets (mask / neurons).",
        )
    for run_id, X, Y in runs:
        if len(X) != len(Y):
            raise InputError(
                run_id,
                f"{len(X)} feature rows but {len(Y)} response samples.",
                "re-run alignment for this recording.",
            )
    return n_dims.pop(), n_targets.pop()


def fit_banded_pca(
    X_train: np.ndarray, share: float, bands: Sequence[int]
) -> tuple[PCAModel, list[int]]:
    """One PCA per feature space (band), assembled into a block-diagonal :class:`PCAModel`.

    Returns the model and the number of components kept per band. The
    projection formula of ``weights.h5`` is unchanged: components of one band are
    zero on the other bands' features.
    """
    models, bounds = [], np.concatenate([[0], np.cumsum(bands)]).astype(int)
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        models.append(fit_pca(np.asarray(X_train)[:, a:b], share))
    widths = [m.n_components for m in models]
    components = np.zeros((sum(widths), int(bounds[-1])))
    row = 0
    for m, a, b in zip(models, bounds[:-1], bounds[1:], strict=True):
        components[row : row + m.n_components, a:b] = m.components
        row += m.n_components
    merged = PCAModel(
        mean=np.concatenate([m.mean for m in models]),
        scale=np.concatenate([m.scale for m in models]),
        components=components,
        # Share of each band's own variance: per-band values, concatenated.
        explained_variance_ratio=np.concatenate([m.explained_variance_ratio for m in models]),
    )
    return merged, widths


def band_columns(widths: Sequence[int], n_delays: int) -> list[np.ndarray]:
    """Columns of each band in the delayed design (delay-major: column ``i * P + p``)."""
    total = int(sum(widths))
    starts = np.concatenate([[0], np.cumsum(widths)]).astype(int)
    return [
        np.concatenate([i * total + np.arange(starts[b], starts[b + 1]) for i in range(n_delays)])
        for b in range(len(widths))
    ]


@dataclass
class FeatureModel:
    """Features -> design matrix, learnt on some rows: z-scoring and PCA (one per feature
    space for banded ridge), then FIR delays applied to each run on its own."""

    pca: PCAModel
    delays: list[int]
    spaces: list[np.ndarray] | None = None  # banded ridge: columns of each space in the design

    def design(self, X_run: np.ndarray) -> np.ndarray:
        """The delayed PCA scores of one run's features [T_r, D] -> [T_r, P * n_delays]."""
        return add_delays(self.pca.transform(X_run), self.delays)

    def stacked(
        self, X_runs: Sequence[np.ndarray], keep: Sequence[Any] | None = None
    ) -> np.ndarray:
        """The runs' designs stacked; ``keep``: per run, the rows kept (:func:`_kept`)."""
        if keep is None:
            return np.concatenate([self.design(X) for X in X_runs])
        return np.concatenate([self.design(X)[k] for X, k in zip(X_runs, keep, strict=True)])


def fit_feature_model(
    X_fit: np.ndarray,
    pca_variance: float,
    delays: Sequence[int],
    bands: Sequence[int] | None = None,
) -> FeatureModel:
    """Fit z-scoring + PCA on the rows ``X_fit`` (raw features; one PCA per band)."""
    if bands:
        pca, widths = fit_banded_pca(X_fit, pca_variance, bands)
        return FeatureModel(pca, list(delays), band_columns(widths, len(delays)))
    return FeatureModel(fit_pca(X_fit, pca_variance), list(delays))


class FeatureModelCache:
    """Feature models of one subject, each fit once per distinct set of rows.

    The nested CV fits the same rows again and again: the final refit's inner splits
    train on exactly the outer folds' training runs, and the outer folds' inner splits
    share runs (13 PCA fits, 7 distinct, for 4 runs in 3 groups). A model is keyed by
    a digest of the rows it is fit on and the settings, so a hit is the same fit.
    """

    def __init__(self) -> None:
        self._models: dict[tuple[Any, ...], FeatureModel] = {}

    def fit(
        self,
        X_fit: np.ndarray,
        pca_variance: float,
        delays: Sequence[int],
        bands: Sequence[int] | None = None,
    ) -> FeatureModel:
        """:func:`fit_feature_model`, or the model already fit on these rows."""
        rows = np.ascontiguousarray(X_fit)
        key = (
            hashlib.sha256(rows.view(np.uint8)).hexdigest(),
            rows.shape,
            str(rows.dtype),
            float(pca_variance),
            tuple(int(d) for d in delays),
            tuple(int(b) for b in bands or ()),
        )
        if key not in self._models:
            self._models[key] = fit_feature_model(rows, pca_variance, delays, bands)
        return self._models[key]


def selection_designs(
    X_runs: Sequence[np.ndarray],
    splits: Splits,
    pca_variance: float,
    delays: Sequence[int],
    bands: Sequence[int] | None = None,
    models: FeatureModelCache | None = None,
    keep: Sequence[Any] | None = None,
) -> list[tuple[np.ndarray, list[np.ndarray] | None]]:
    """The design (and band columns) each selection split is scored on.

    Per split, the feature model (z-scoring and PCA) is fit on that split's training
    rows of the stacked runs only, then every run is projected and delayed on its
    own. A validation run never shapes the features it is validated with.
    ``models``: reuse the fits of rows already fit on (:class:`FeatureModelCache`).
    ``keep``: per run, its kept (uncensored) rows; ``splits`` index the kept rows.
    """
    models = models or FeatureModelCache()
    kept = X_runs if keep is None else [X[k] for X, k in zip(X_runs, keep, strict=True)]
    stacked = np.concatenate(kept)
    designs = []
    for train, _ in splits:
        model = models.fit(stacked[train], pca_variance, delays, bands)
        designs.append((model.stacked(X_runs, keep), model.spaces))
    return designs


def repeat_groups(stimuli: Sequence[str] | None, n_runs: int) -> list[list[int]]:
    """Runs grouped by identical stimulus sequence (:func:`neurovid.scoring.repeat_groups`).

    ``None`` (or all distinct) gives one run per group: leave-one-run-out.
    """
    if stimuli is None:
        return [[i] for i in range(n_runs)]
    if len(stimuli) != n_runs:
        raise ValueError(f"{len(stimuli)} stimulus keys for {n_runs} runs")
    return scoring.repeat_groups(stimuli)


def subject_ev(
    Y_runs: Sequence[np.ndarray],
    groups: Sequence[Sequence[int]],
    keep: Sequence[Any] | None = None,
) -> np.ndarray | None:
    """Explainable variance per target from every group of repeated runs (sample-weighted
    mean over groups); None when no stimulus was repeated. Repeats that were recorded for
    different durations are compared over their common length (they share the timeline);
    ``keep`` (per run, :func:`_kept`): only samples kept in every repeat count."""
    values, weights = [], []
    for group in groups:
        if len(group) < 2:
            continue
        n = min(len(Y_runs[i]) for i in group)
        rows = np.ones(n, dtype=bool)
        for i in group:
            if keep is not None and not isinstance(keep[i], slice):
                rows &= keep[i][:n]
        values.append(explainable_variance(np.stack([Y_runs[i][:n][rows] for i in group])))
        weights.append(int(rows.sum()))
    if not values:
        return None
    stacked = np.asarray(values)
    return np.average(np.where(np.isfinite(stacked), stacked, np.nan), axis=0, weights=weights)


@dataclass
class _Subject:
    """One subject's runs and what is fixed before any fit (targets, repeat groups)."""

    runs: list[Run]
    Y_runs: list[np.ndarray]
    lengths: list[int]
    constant: np.ndarray  # [N] constant over all runs: not modelled
    active: np.ndarray  # indices of the modelled targets
    groups: list[list[int]]  # runs with the same stimulus sequence (outer folds)
    ev: np.ndarray | None
    band_widths: list[int] | None
    band_names: list[str]
    # per run, its kept rows (:func:`_kept`); ``lengths`` count kept rows
    keep: list[Any] = field(default_factory=list)


@dataclass
class _Settings:
    """How every fit of the subject is made (the same in each fold and in the refit)."""

    estimator: str
    alphas: Sequence[float]
    pca_variance: float
    delays: list[int]
    options: dict[str, Any]  # fit_estimator keywords (threads, LASSO epochs, banded search)
    trainer: Any = None
    train_dir: io.PathLike | None = None
    feature_models: FeatureModelCache = field(default_factory=FeatureModelCache)

    @property
    def trained(self) -> bool:
        return self.estimator in DEEP_ESTIMATORS


@dataclass
class _Fitted:
    """A model fit on some runs: its feature model and regression (None: no target to fit)."""

    features: FeatureModel
    fit: Any
    training: dict[str, Any] | None = None


def _prepare(
    runs: Sequence[Run],
    stimuli: Sequence[str] | None,
    bands: Sequence[tuple[str, int]] | None,
    estimator: str,
    log: logging.Logger,
    censored: Sequence[np.ndarray | None] | None = None,
) -> _Subject:
    """Check the runs, find constant targets and the groups of repeats, estimate the ceiling."""
    n_dims, n_targets = _check_runs(runs)
    keep = _kept(runs, censored, log)
    band_widths = None
    if estimator == "banded_ridge":
        if not bands or sum(w for _, w in bands) != n_dims:
            raise ValueError(
                f"banded_ridge needs bands covering the {n_dims} feature columns, got {bands}"
            )
        band_widths = [int(w) for _, w in bands]
    Y_runs = [np.asarray(Y, dtype=np.float32) for _, _, Y in runs]
    constant = (
        np.ptp(np.concatenate([Y[k] for Y, k in zip(Y_runs, keep, strict=True)]), axis=0) == 0
    )
    if constant.any():
        log.warning(
            "%d of %d targets are constant over all runs: not modelled, scores NaN",
            int(constant.sum()),
            n_targets,
        )
    groups = repeat_groups(stimuli, len(runs))
    if len(groups) < 2:
        raise InputError(
            None,
            f"all {len(runs)} runs show the same stimulus sequence: no fold could be scored on a stimulus it was not trained on.",
            "record runs with different stimuli (repeats are used for the noise ceiling).",
            field="stimulus",
        )
    return _Subject(
        runs=list(runs),
        Y_runs=Y_runs,
        lengths=[len(Y[k]) for Y, k in zip(Y_runs, keep, strict=True)],
        constant=constant,
        active=np.flatnonzero(~constant),
        groups=groups,
        ev=subject_ev(Y_runs, groups, keep),
        band_widths=band_widths,
        band_names=[name for name, _ in bands] if band_widths and bands else [],
        keep=keep,
    )


def _rows(subject: _Subject, i: int) -> Any:
    """The rows of run ``i`` that fits and scores use (:func:`_kept`)."""
    return subject.keep[i] if subject.keep else slice(None)


def _kept(
    runs: Sequence[Run], censored: Sequence[np.ndarray | None] | None, log: logging.Logger
) -> list[Any]:
    """Per run, the rows fits and scores use: ``slice(None)`` (all) when nothing is
    censored, else a bool mask [T_r] without the censored samples.

    Raises:
        InputError: a censored mask does not match its run, or censors every sample.
    """
    if censored is None:
        return [slice(None)] * len(runs)
    if len(censored) != len(runs):
        raise ValueError(f"{len(censored)} censored masks for {len(runs)} runs")
    keep: list[Any] = []
    for (run_id, _, Y), mask in zip(runs, censored, strict=True):
        if mask is None or not np.asarray(mask).any():
            keep.append(slice(None))
            continue
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (len(Y),) or mask.all():
            raise InputError(
                run_id,
                f"censored mask of shape {mask.shape} with {int(mask.sum())} censored for {len(Y)} samples.",
                "re-run ingest for this recording (every sample censored: leave the run out).",
                field="censored",
            )
        log.info(
            "%s: %d of %d samples censored: left out of fits and scores",
            run_id,
            int(mask.sum()),
            len(Y),
        )
        keep.append(~mask)
    return keep


def _fit_on_runs(
    subject: _Subject,
    settings: _Settings,
    train_runs: Sequence[int],
    out_dir: str,
    title: str,
    log: logging.Logger,
) -> _Fitted:
    """Fit the model on the runs ``train_runs`` only.

    Fitted here, on those runs: feature z-scoring and PCA, then the regression with
    each target's alpha chosen by an inner CV (:func:`selection_splits`) in which
    every split has a feature model of its own, fit on that split's training rows,
    so no validation run shapes the features it is scored on. (Responses are
    z-scored per run beforehand, the field's convention: :func:`load_subject`.)
    """
    X_runs = [subject.runs[i][1] for i in train_runs]
    keep = [subject.keep[i] for i in train_runs] if subject.keep else None
    X_kept = X_runs if keep is None else [X[k] for X, k in zip(X_runs, keep, strict=True)]
    inner_groups = _reindex([g for g in subject.groups if set(g) <= set(train_runs)], train_runs)
    rows = [slice(None)] * len(X_runs)
    if settings.trained:  # early stopping validates on rows the feature model must not see
        rows = settings.trainer.training_rows([len(X) for X in X_kept], inner_groups)
    features = settings.feature_models.fit(
        np.concatenate([X[r] for X, r in zip(X_kept, rows, strict=True)]),
        settings.pca_variance,
        settings.delays,
        subject.band_widths,
    )
    active = subject.active
    if not active.size:
        return _Fitted(features, None)
    Y_fit = [subject.Y_runs[i][_rows(subject, i)][:, active] for i in train_runs]
    if settings.trained:
        designs = [
            features.design(X)[_rows(subject, i)] for X, i in zip(X_runs, train_runs, strict=True)
        ]
        fit = settings.trainer.fit(designs, Y_fit, inner_groups, out_dir, title, log)
        return _Fitted(features, fit, _training_row(fit))
    lengths = [subject.lengths[i] for i in train_runs]
    splits = selection_splits(lengths, inner_groups, gap=max(abs(d) for d in settings.delays))
    if len(inner_groups) < 2:
        log.info(
            "%s: alpha chosen on the two halves in time of %s (one stimulus among the training runs)",
            title,
            "+".join(subject.runs[i][0] for i in train_runs),
        )
    fold_designs = selection_designs(
        X_runs,
        splits,
        settings.pca_variance,
        settings.delays,
        subject.band_widths,
        settings.feature_models,
        keep,
    )
    fit = fit_estimator(
        settings.estimator,
        features.stacked(X_runs, keep),
        np.concatenate(Y_fit),
        splits,
        settings.alphas,
        spaces=features.spaces,
        fold_designs=fold_designs,
        **settings.options,
    )
    return _Fitted(features, fit)


@dataclass
class _FoldScores:
    """One outer fold's held-out scores and sizes."""

    r: np.ndarray
    r2: np.ndarray
    alpha: np.ndarray
    split: np.ndarray | None
    predictions: dict[int, np.ndarray]
    n_components: int
    n_train: int
    n_test: int
    seconds: float
    training: dict[str, Any] | None


def _outer_fold(
    subject: _Subject,
    settings: _Settings,
    k: int,
    held_out: Sequence[int],
    log: logging.Logger,
) -> _FoldScores:
    """Fit on every run but the group ``held_out``, then predict and score that group."""
    t0 = time.perf_counter()
    n_folds, n_targets = len(subject.groups), len(subject.constant)
    train_runs = [i for i in range(len(subject.runs)) if i not in held_out]
    fitted = _fit_on_runs(
        subject,
        settings,
        train_runs,
        f"{settings.train_dir}/fold-{k + 1}",
        f"fold {k + 1}/{n_folds}",
        log,
    )
    Y_train = [subject.Y_runs[i][_rows(subject, i)] for i in train_runs]
    Y_train_mean = np.concatenate(Y_train).mean(axis=0)
    alpha = np.full(n_targets, np.nan)
    if fitted.fit is not None and not settings.trained:
        alpha[subject.active] = fitted.fit.alpha
    per_run = [_score_run(subject, fitted, i, Y_train_mean) for i in held_out]
    split = None
    if subject.band_widths:
        split = _nanmean(np.asarray([s for _, _, _, s in per_run]), axis=0)
    scores = _FoldScores(
        r=_nanmean(np.asarray([r for r, _, _, _ in per_run]), axis=0),
        r2=_nanmean(np.asarray([r2 for _, r2, _, _ in per_run]), axis=0),
        alpha=alpha,
        split=split,
        predictions={i: pred for i, (_, _, pred, _) in zip(held_out, per_run, strict=True)},
        n_components=fitted.features.pca.n_components,
        n_train=int(sum(subject.lengths[i] for i in train_runs)),
        n_test=int(sum(subject.lengths[i] for i in held_out)),
        seconds=time.perf_counter() - t0,
        training=fitted.training,
    )
    log.info(
        "fold %d/%d (held out %s): %d PCs x %d delays, %d train / %d test samples, mean r %.4f, %.1f s",
        k + 1,
        n_folds,
        "+".join(subject.runs[i][0] for i in held_out),
        scores.n_components,
        len(settings.delays),
        scores.n_train,
        scores.n_test,
        _nan_stat(scores.r, np.mean),
        scores.seconds,
    )
    return scores


def _score_run(
    subject: _Subject, fitted: _Fitted, i: int, fallback: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Held-out (r, R², prediction, split R²) of run ``i``. Targets the model does not
    fit are predicted by the training mean (``fallback``) and scored NaN."""
    active, constant = subject.active, subject.constant
    Y = subject.Y_runs[i]
    pred = np.repeat(fallback[None, :], len(Y), axis=0)
    design = fitted.features.design(subject.runs[i][1]) if fitted.fit is not None else None
    if design is not None:
        pred[:, active] = fitted.fit.predict(design)
    kept = _rows(subject, i)  # censored samples are predicted but not scored
    Y, scored, design = Y[kept], pred[kept], None if design is None else design[kept]
    r, r2 = score_predictions(Y, scored)
    r[constant], r2[constant] = np.nan, np.nan
    split = None
    spaces = fitted.features.spaces
    if spaces and design is not None:
        parts = np.stack([design[:, cols] @ fitted.fit.coef[cols] for cols in spaces])
        split = np.full((len(spaces), len(constant)), np.nan)
        split[:, active] = split_r2(Y[:, active], parts)
    return r, r2, pred.astype(np.float32), split


def encode_subject(
    runs: Sequence[Run],
    *,
    estimator: str,
    alphas: Sequence[float],
    pca_variance: float,
    delays: Sequence[int],
    n_jobs: int = 1,
    max_iter: int = LASSO_MAX_ITER,
    stimuli: Sequence[str] | None = None,
    bands: Sequence[tuple[str, int]] | None = None,
    n_iter: int = BANDED_N_ITER,
    seed: int = 0,
    log: logging.Logger | None = None,
    trainer: Any = None,
    train_dir: io.PathLike | None = None,
    variance_partitioning: bool = False,
    censored: Sequence[np.ndarray | None] | None = None,
    body_spaces: Sequence[str] = (),
) -> EncodingResult:
    """Fit and cross-validate one subject's encoding model (see module docstring).

    Steps: :func:`_prepare` (checks, constant targets, repeat groups, noise
    ceiling), then per outer fold :func:`_outer_fold` (fit on the other groups
    with :func:`_fit_on_runs`, score the held-out group), then the final refit on
    all runs, whose weights and alphas are reported.

    Args:
        runs: ``(run_id, X [T_r, D], Y [T_r, N])`` per run, in a fixed order.
        estimator: ``ridge``, ``banded_ridge``, ``lasso`` or ``lstm``.
        alphas: regularisation strengths searched per target.
        pca_variance: share of feature variance PCA keeps (1 keeps all).
        delays: FIR delays in samples (see :func:`neurovid.align.delay_samples`).
        n_jobs: threads (BLAS for ridge; target chunks for LASSO).
        max_iter: coordinate-descent epochs per LASSO fit.
        stimuli: one key per run (its stimulus sequence); runs sharing a key are
            repeats: held out together, and used for the noise ceiling.
        bands: banded ridge: ``(name, n_columns)`` of each feature space, in the
            column order of X; PCA and a regularisation per space.
        n_iter, seed: banded ridge's search over space weightings.
        log: progress logger (fold k/F and seconds).
        trainer: ``estimator: lstm``: an object with ``fir_delays`` (bool),
            ``training_rows(lengths, inner_groups)`` (per run, the slice of rows that
            trains rather than validates early stopping; the feature model is fit on
            those rows only),
            ``weights_layout`` (str) and ``fit(designs, Y_runs, inner_groups, out_dir,
            title, log)`` returning a fit with ``predict(X)``, ``state_arrays()``,
            ``training`` (a TrainResult) and ``loss`` (:class:`neurovid.deep.lstm.LSTMTrainer`).
        train_dir: ``estimator: lstm``: checkpoints, metrics.csv and loss curve of
            fold ``k`` (1-based) go to ``train_dir/fold-k``, the refit's to ``train_dir/final``.
        variance_partitioning: also fit the outer folds without each feature space of
            ``bands`` (ridge / banded ridge, two or more spaces; :func:`_without_space_folds`),
            for each space's unique held-out variance and the shared rest.
        censored: per run, bool [T_r] of samples left out of every fit and score
            (fMRI volumes censored at ingest; module docstring), or None.
        body_spaces: the names in ``bands`` of body spaces (``neurovid.body``: what the
            animal does, not the stimulus); the noise-ceiling fraction uses the fit
            without them (:meth:`EncodingResult.stimulus_r2_folds`).

    Raises:
        InputError: fewer than 2 runs, runs whose shapes disagree, all runs repeats of
            one stimulus, or runs too short to choose alpha.
    """
    log = log or _log
    if estimator not in ESTIMATORS + DEEP_ESTIMATORS:
        raise ValueError(
            f"unknown estimator {estimator!r}; use one of {ESTIMATORS + DEEP_ESTIMATORS}"
        )
    if len(delays) == 0:
        raise ValueError("need at least one delay")
    settings = _Settings(
        estimator,
        alphas,
        pca_variance,
        [int(d) for d in delays],
        {"n_jobs": n_jobs, "max_iter": max_iter, "n_iter": n_iter, "seed": seed},
        trainer,
        train_dir,
    )
    if settings.trained:
        if trainer is None or train_dir is None:
            raise ValueError(f"estimator {estimator} needs a trainer and a train_dir")
        if not trainer.fir_delays:
            settings.delays = [0]  # the recurrence learns the lag from the PCA scores themselves
    if variance_partitioning and (estimator not in PARTITION_ESTIMATORS or len(bands or ()) < 2):
        raise ValueError(
            f"variance partitioning needs {' or '.join(PARTITION_ESTIMATORS)} and 2+ bands, "
            f"got {estimator} with bands {bands}"
        )
    subject = _prepare(runs, stimuli, bands, estimator, log, censored)
    shared = shared_pca() if variance_partitioning else contextlib.nullcontext()
    with threadpool_limits(limits=max(1, int(n_jobs))), shared:
        folds = [
            _outer_fold(subject, settings, k, held_out, log)
            for k, held_out in enumerate(subject.groups)
        ]
        t0 = time.perf_counter()
        final = _fit_on_runs(
            subject, settings, range(len(runs)), f"{train_dir}/final", "final refit", log
        )
        log.info(
            "final refit on all %d runs: %d PCs x %d delays, %.1f s",
            len(runs),
            final.features.pca.n_components,
            len(settings.delays),
            time.perf_counter() - t0,
        )
        without = None
        if variance_partitioning:
            without = _without_space_folds(subject, settings, list(bands or ()), log)
    if subject.ev is not None:
        log.info(
            "noise ceiling from repeated stimuli: mean explainable variance %.4f",
            _nan_stat(subject.ev, np.mean),
        )
    result = _result(subject, settings, folds, final)
    result.body_spaces = list(body_spaces)
    if without is not None:
        result.partition_spaces = [name for name, _ in bands or ()]
        result.r2_without_folds = without
    return result


def _without_space_folds(
    subject: _Subject,
    settings: _Settings,
    bands: Sequence[tuple[str, int]],
    log: logging.Logger,
) -> np.ndarray:
    """Held-out R² [F, k, N] of the model fit without each of the ``k`` feature spaces.

    The same pipeline as the joint model (:func:`_outer_fold`: feature model and nested
    alpha choice fit on the training runs only) on the other spaces' feature columns,
    with the same outer folds. Banded ridge keeps a penalty per remaining space; one
    remaining space is plain ridge (banded ridge with one space is ridge). No final
    refit: the partition is a held-out score only.
    """
    starts = np.concatenate([[0], np.cumsum([w for _, w in bands])]).astype(int)
    per_space = []
    for b, (name, _) in enumerate(bands):
        kept = [j for j in range(len(bands)) if j != b]
        cols = np.concatenate([np.arange(starts[j], starts[j + 1]) for j in kept])
        banded = settings.estimator == "banded_ridge" and len(kept) > 1
        sub = replace(
            subject,
            runs=[(run[0], run[1][:, cols], *run[2:]) for run in subject.runs],
            band_widths=[int(bands[j][1]) for j in kept] if banded else None,
            band_names=[bands[j][0] for j in kept] if banded else [],
        )
        sub_settings = replace(settings, estimator="banded_ridge" if banded else "ridge")
        t0 = time.perf_counter()
        log.info(
            "variance partitioning: model without %s (%s on %s)",
            name,
            sub_settings.estimator,
            "+".join(bands[j][0] for j in kept),
        )
        folds = [
            _outer_fold(sub, sub_settings, k, held_out, log)
            for k, held_out in enumerate(subject.groups)
        ]
        log.info("variance partitioning: without %s, %.1f s", name, time.perf_counter() - t0)
        per_space.append(np.stack([f.r2 for f in folds]))
    return np.stack(per_space, axis=1)


def _result(
    subject: _Subject, settings: _Settings, folds: Sequence[_FoldScores], final: _Fitted
) -> EncodingResult:
    """Assemble the folds' scores and the final refit's parameters."""
    n_targets, active = len(subject.constant), subject.active
    features = final.features
    n_columns = features.pca.n_components * len(settings.delays)
    weights = np.zeros((n_columns, n_targets), dtype=np.float32)
    intercept = (
        np.concatenate([Y[_rows(subject, i)] for i, Y in enumerate(subject.Y_runs)])
        .mean(axis=0)
        .astype(np.float32)
    )
    alpha = np.full(n_targets, np.nan)
    gamma = np.full((len(subject.band_widths), n_targets), np.nan) if subject.band_widths else None
    model_arrays: dict[str, np.ndarray] = {}
    if final.fit is not None and settings.trained:
        model_arrays = final.fit.state_arrays()
    elif final.fit is not None:
        weights[:, active] = final.fit.coef
        intercept[active] = final.fit.intercept
        alpha[active] = final.fit.alpha
        if gamma is not None and final.fit.gamma is not None:
            gamma[:, active] = final.fit.gamma
    predictions: list[np.ndarray] = [np.empty(0)] * len(subject.runs)
    for fold in folds:
        for i, pred in fold.predictions.items():
            predictions[i] = pred
    training = [f.training for f in folds if f.training] + (
        [final.training] if final.training else []
    )
    return EncodingResult(
        run_ids=[run_id for run_id, _, _ in subject.runs],
        estimator=settings.estimator,
        delays_samples=list(settings.delays),
        pca_variance=float(settings.pca_variance),
        r_folds=np.stack([f.r for f in folds]),
        r2_folds=np.stack([f.r2 for f in folds]),
        alpha_folds=np.stack([f.alpha for f in folds]),
        predictions=predictions,
        n_components=[f.n_components for f in folds],
        n_train=[f.n_train for f in folds],
        n_test=[f.n_test for f in folds],
        alpha=alpha,
        weights=weights,
        intercept=intercept,
        pca=features.pca,
        constant=subject.constant,
        fold_seconds=[f.seconds for f in folds],
        fold_runs=[list(g) for g in subject.groups],
        bands=subject.band_names,
        r2_split_folds=np.stack([f.split for f in folds]) if subject.band_widths else None,
        gamma=gamma,
        ev=subject.ev,
        repeat_folds=[k for k, g in enumerate(subject.groups) if len(g) > 1],
        fold_training=training,
        model_arrays=model_arrays,
        weights_layout=settings.trainer.weights_layout if settings.trained else "",
    )


def _training_row(fit: Any) -> dict[str, Any]:
    training = fit.training
    return {
        "best_epoch": training.best_epoch,
        "epochs_run": training.epochs_run,
        "stopped_early": training.stopped_early,
        "best_val_loss": training.best_val_loss,
        "resumed_from": training.resumed_from,  # epoch of the checkpoint, None when trained anew
        "loss": fit.loss,
    }


def _reindex(groups: Sequence[Sequence[int]], kept: Sequence[int]) -> list[list[int]]:
    """Groups of run indices renumbered to positions within ``kept``."""
    position = {run: j for j, run in enumerate(kept)}
    return [[position[i] for i in g] for g in groups]


# --------------------------------------------------------------------------- pipeline I/O


@dataclass
class SubjectData:
    """A subject's runs as read from the pipeline's files, ready for :func:`encode_subject`."""

    runs: list[Run]
    times: list[np.ndarray]  # per run, response sample times (s)
    target_names: np.ndarray
    sampling_rate: float
    modality: str
    mask: np.ndarray | None = None
    affine: np.ndarray | None = None
    voxel_ijk: np.ndarray | None = None
    parcels: np.ndarray | None = None  # fMRI parcel targets: label volume [X, Y, Z]
    target_labels: np.ndarray | None = None  # [N], each target's label in parcels
    bands: list[tuple[str, int]] = field(default_factory=list)  # (extractor, feature columns)
    # per run, bool [T_r]: samples censored at ingest (encode_subject's ``censored``)
    censored: list[np.ndarray] = field(default_factory=list)

    @property
    def censored_counts(self) -> dict[str, int]:
        """Censored samples per run id (0 for runs without censoring)."""
        return {
            run_id: int(np.sum(c))
            for (run_id, _, _), c in zip(self.runs, self.censored, strict=True)
        }


def load_subject(
    run_ids: Sequence[str],
    response_paths: Sequence[io.PathLike],
    feature_paths: Sequence[io.PathLike],
    extractors: Sequence[str],
    *,
    zscore: bool,
) -> SubjectData:
    """Read a subject's responses and aligned features.

    ``feature_paths`` is ordered extractor-major (all runs of the first
    extractor, then the next: Snakemake's ``expand`` order); the extractors'
    features are concatenated column-wise per run. Responses are z-scored per
    run when ``zscore`` (with the kept samples' mean and scale); each run's
    ``censored`` samples (responses file) are in ``censored``.

    Raises:
        InputError: counts or files disagree (names the file).
    """
    n_runs = len(run_ids)
    if len(response_paths) != n_runs or len(feature_paths) != n_runs * len(extractors):
        raise InputError(
            None,
            f"got {len(response_paths)} response and {len(feature_paths)} feature files for {n_runs} runs x {len(extractors)} extractors.",
            "check the encode rule's inputs.",
        )
    runs: list[Run] = []
    times: list[np.ndarray] = []
    censored: list[np.ndarray] = []
    first = None
    rates: dict[str, float] = {}
    for i, (run_id, rpath) in enumerate(zip(run_ids, response_paths, strict=True)):
        rs = io.read_responses(rpath)
        rates[run_id] = rs.sampling_rate
        if first is None:
            first = rs
        elif not np.array_equal(rs.target_names, first.target_names):
            raise InputError(
                rpath,
                f"its {len(rs.target_names)} targets differ from those of {run_ids[0]} ({len(first.target_names)}); runs of one subject must share targets.",
                "ingest all runs of the subject with the same mask / neuron list.",
                field="target_names",
            )
        blocks = []
        for e in range(len(extractors)):
            fpath = feature_paths[e * n_runs + i]
            fs = io.read_features(fpath)
            recording = fs.attrs.get("recording")
            if recording not in (None, "", run_id):
                raise InputError(
                    fpath,
                    f"holds features of recording {recording!r}, expected {run_id!r}.",
                    "check the order of the encode rule's feature inputs.",
                    field="recording",
                )
            if len(fs.times) != len(rs.times) or not np.allclose(fs.times, rs.times, atol=1e-6):
                raise InputError(
                    fpath,
                    f"{len(fs.times)} aligned feature rows do not match the {len(rs.times)} samples of {rpath}.",
                    "re-run alignment for this recording (its responses changed).",
                    field="times",
                )
            blocks.append(fs.features.astype(np.float32))
        X = np.concatenate(blocks, axis=1)
        widths = [(name, block.shape[1]) for name, block in zip(extractors, blocks, strict=True)]
        Y = rs.responses.astype(np.float32)
        if zscore:  # mean and scale of the kept (uncensored) samples
            Y = zscore_runs(Y, [len(Y)], keep=~rs.censored)
        runs.append((run_id, X, Y))
        times.append(rs.times)
        censored.append(rs.censored)
    if len({round(r, 9) for r in rates.values()}) > 1:
        raise InputError(
            response_paths[0],
            f"runs have different sampling rates {rates}; FIR delays in samples would differ.",
            "resample the runs to one rate (or fit them as separate subjects).",
            field="sampling_rate",
        )
    assert first is not None
    return SubjectData(
        runs=runs,
        times=times,
        target_names=np.asarray(first.target_names, dtype=str),
        sampling_rate=first.sampling_rate,
        modality=str(first.attrs.get("modality", "")),
        mask=first.mask,
        affine=first.affine,
        voxel_ijk=first.voxel_ijk,
        parcels=first.parcels,
        target_labels=first.target_labels,
        bands=widths,
        censored=censored,
    )


def top_targets(r: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` targets with the highest r (NaN never chosen; ties by index)."""
    r = np.asarray(r, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(r))
    order = finite[np.argsort(-r[finite], kind="stable")]
    return order[:k]


def metrics_table(result: EncodingResult) -> pd.DataFrame:
    """One row per fold plus a ``mean`` row (fold means of sizes; overall target scores)."""
    rows = []
    fold_runs = result.fold_runs or [[k] for k in range(len(result.run_ids))]
    for k, held_out in enumerate(fold_runs):
        rows.append(
            {
                "fold": str(k + 1),
                "held_out_run": "+".join(result.run_ids[i] for i in held_out),
                "n_train": result.n_train[k],
                "n_test": result.n_test[k],
                "n_components": result.n_components[k],
                "mean_r": _nan_stat(result.r_folds[k], np.mean),
                "median_r": _nan_stat(result.r_folds[k], np.median),
                "mean_r2": _nan_stat(result.r2_folds[k], np.mean),
                **_training_columns(result, k),
            }
        )
    rows.append(
        {
            "fold": "mean",
            "held_out_run": "",
            "n_train": float(np.mean(result.n_train)),
            "n_test": float(np.mean(result.n_test)),
            "n_components": float(np.mean(result.n_components)),
            "mean_r": _nan_stat(result.r, np.mean),
            "median_r": _nan_stat(result.r, np.median),
            "mean_r2": _nan_stat(result.r2, np.mean),
            **_training_columns(result, len(fold_runs)),
        }
    )
    return pd.DataFrame(rows)


def _training_columns(result: EncodingResult, row: int) -> dict[str, Any]:
    """Trained estimators: best and run epochs of fold ``row``; past the folds, their means."""
    if not result.fold_training:
        return {}
    n_folds = len(result.r_folds)
    if row < n_folds:
        info = result.fold_training[row]
        return {"best_epoch": info["best_epoch"], "epochs_run": info["epochs_run"]}
    folds = result.fold_training[:n_folds]
    return {
        key: float(np.mean([info[key] for info in folds])) for key in ("best_epoch", "epochs_run")
    }


def write_outputs(
    result: EncodingResult,
    data: SubjectData,
    paths: Mapping[str, io.PathLike],
    *,
    attrs: Mapping[str, Any],
    top_k: int,
) -> None:
    """Write scores.h5, scores.tsv, metrics.tsv, predictions.h5 and weights.h5.

    ``paths`` has keys ``scores``, ``table``, ``metrics``, ``predictions``,
    ``weights``; ``attrs`` (model, subject, delays_s, provenance, ...) go on
    every HDF5 file and into the JSON sidecars of the two tables
    (``scores.json``, ``metrics.json``: :func:`neurovid.io.sidecar_path`). Each
    file is written atomically. A partitioned model (``result.partition_spaces``) adds
    ``unique_<space>`` and ``shared`` per target to scores.h5 and scores.tsv, and the
    leave-one-space-out R² (``r2_without`` [k, N]) to scores.h5.
    """
    r, r2 = result.r, result.r2
    names = np.asarray(data.target_names, dtype=str)
    common = {**attrs, "estimator": result.estimator, "runs": result.run_ids}
    spatial = {}
    if data.voxel_ijk is not None:
        spatial = {"mask": data.mask, "affine": data.affine, "voxel_ijk": data.voxel_ijk}
    elif data.parcels is not None:  # parcel targets: what score maps paint them over
        spatial = {
            "parcels": data.parcels,
            "affine": data.affine,
            "target_labels": data.target_labels,
        }

    extra: dict[str, np.ndarray] = {}
    extra_attrs: dict[str, Any] = {}
    if result.ev is not None:
        extra["ev"] = result.ev.astype(np.float32)
        if result.r2_repeats is not None:
            extra["r2_repeats"] = result.r2_repeats.astype(np.float32)
            extra["r2_ceiling_fraction"] = result.r2_ceiling_fraction.astype(np.float32)
            extra_attrs["ceiling_fit"] = result.ceiling_fit
        extra_attrs["mean_ev"] = _nan_stat(result.ev, np.mean)
        extra_attrs["repeat_runs"] = [
            "+".join(result.run_ids[i] for i in result.fold_runs[k]) for k in result.repeat_folds
        ]
    if result.r2_split is not None:
        extra["r2_split"] = result.r2_split.astype(np.float32)
        extra["gamma"] = result.gamma.astype(np.float32)
        extra_attrs["bands"] = list(result.bands)
    partition_columns = _partition_columns(result)
    if partition_columns:
        extra.update(partition_columns)
        extra["r2_without"] = result.r2_without.astype(np.float32)
        extra_attrs["partition_spaces"] = list(result.partition_spaces)
        extra_attrs.update(
            {f"mean_{k}": _nan_stat(v, np.mean) for k, v in partition_columns.items()}
        )
    io.write_h5(
        paths["scores"],
        {
            "r": r.astype(np.float32),
            "r2": r2.astype(np.float32),
            "alpha": result.alpha.astype(np.float32),
            "r_folds": result.r_folds.astype(np.float32),
            "r2_folds": result.r2_folds.astype(np.float32),
            "alpha_folds": result.alpha_folds.astype(np.float32),
            "target_names": names,
            **extra,
            **spatial,
        },
        {
            **common,
            **extra_attrs,
            "modality": data.modality,
            "sampling_rate": data.sampling_rate,
            "delays_samples": result.delays_samples,
            "pca_variance": result.pca_variance,
            "n_components": result.n_components,
            "n_components_final": result.pca.n_components,
            "n_targets": len(names),
            "n_constant_targets": int(result.constant.sum()),
            "mean_r": _nan_stat(r, np.mean),
        },
        compression="gzip",
    )

    table = pd.DataFrame({"target": names, "r": r.astype(np.float32), "r2": r2.astype(np.float32)})
    table["alpha"] = result.alpha
    if result.ev is not None:
        table["ev"] = result.ev.astype(np.float32)
        if result.r2_ceiling_fraction is not None:
            table["r2_ceiling_fraction"] = result.r2_ceiling_fraction.astype(np.float32)
    if result.r2_split is not None:
        for b, band in enumerate(result.bands):
            table[f"r2_{band}"] = result.r2_split[b].astype(np.float32)
            table[f"gamma_{band}"] = result.gamma[b].astype(np.float32)
    for column, values in partition_columns.items():
        table[column] = values
    if data.voxel_ijk is not None:
        for axis, column in enumerate("ijk"):
            table[column] = np.asarray(data.voxel_ijk)[:, axis]
    if data.target_labels is not None:
        table["label"] = np.asarray(data.target_labels)
    # The tables' JSON sidecars (scores.json, metrics.json) carry what the HDF5 attrs carry.
    table_sidecar = {k: v for k, v in common.items() if k != "provenance"}
    provenance = attrs.get("provenance")
    io.write_table(paths["table"], table, provenance=provenance, **table_sidecar)
    io.write_table(paths["metrics"], metrics_table(result), provenance=provenance, **table_sidecar)

    best = top_targets(r, top_k)
    io.write_h5(
        paths["predictions"],
        {
            "times": np.concatenate(data.times).astype(np.float64),
            "run": np.concatenate(
                [
                    np.full(len(t), run_id)
                    for run_id, t in zip(result.run_ids, data.times, strict=True)
                ]
            ).astype(str),
            "recorded": np.concatenate([Y[:, best] for _, _, Y in data.runs]).astype(np.float32),
            "predicted": np.concatenate([p[:, best] for p in result.predictions]).astype(
                np.float32
            ),
            "target_names": names[best],
            "r": r[best].astype(np.float32),
        },
        common,
    )

    if result.model_arrays:
        io.write_h5(
            paths["weights"],
            {
                **result.model_arrays,
                "pca_components": result.pca.components.astype(np.float32),
                "pca_explained_variance_ratio": result.pca.explained_variance_ratio.astype(
                    np.float32
                ),
                "feature_mean": result.pca.mean.astype(np.float32),
                "feature_scale": result.pca.scale.astype(np.float32),
                "delays_samples": np.asarray(result.delays_samples, dtype=np.int32),
                "modelled_targets": np.flatnonzero(~result.constant).astype(np.int32),
                "target_names": names,
            },
            {**common, "layout": result.weights_layout, "training": result.fold_training},
        )
        return
    io.write_h5(
        paths["weights"],
        {
            "weights": result.weights.astype(np.float32),
            "intercept": result.intercept.astype(np.float32),
            "pca_components": result.pca.components.astype(np.float32),
            "pca_explained_variance_ratio": result.pca.explained_variance_ratio.astype(np.float32),
            "feature_mean": result.pca.mean.astype(np.float32),
            "feature_scale": result.pca.scale.astype(np.float32),
            "delays_samples": np.asarray(result.delays_samples, dtype=np.int32),
            "alpha": result.alpha.astype(np.float32),
            "target_names": names,
        },
        {
            **common,
            "layout": "weights rows are delay-major: row i*P + p = PC p at delays_samples[i]; "
            "Y = add_delays(((X - feature_mean) / feature_scale) @ pca_components.T, "
            "delays_samples) @ weights + intercept",
        },
        compression=None,  # float weights barely compress (<10%) and gzip costs seconds per GB
    )


def _partition_columns(result: EncodingResult) -> dict[str, np.ndarray]:
    """``unique_<space>`` per partitioned space, then ``shared`` (float32 per target; {} if none)."""
    if result.unique is None:
        return {}
    values = [*result.unique, result.shared]
    names = partition_parts(result.partition_spaces)
    return {name: v.astype(np.float32) for name, v in zip(names, values, strict=True)}


def output_paths(output: Any) -> dict[str, str]:
    """The five named outputs of the ``encode`` rule as a plain dict."""
    return {
        key: str(getattr(output, key))
        for key in ("scores", "table", "metrics", "predictions", "weights")
    }


def describe(result: EncodingResult) -> str:
    """One line for the log."""
    return (
        f"{len(result.r_folds)} folds, mean r {_nan_stat(result.r, np.mean):.4f}, "
        f"median r {_nan_stat(result.r, np.median):.4f}, "
        f"PCs per fold {result.n_components}, final {result.pca.n_components}"
        + "".join(
            f", mean {name} {_nan_stat(values, np.mean):.4f}"
            for name, values in _partition_columns(result).items()
        )
    )


__all__ = [
    "EncodingResult",
    "LinearFit",
    "PCAModel",
    "SubjectData",
    "encode_subject",
    "fit_estimator",
    "fit_lasso_cv",
    "fit_pca",
    "fit_ridge_cv",
    "selection_splits",
    "leave_one_run_out",
    "load_subject",
    "metrics_table",
    "output_paths",
    "score_predictions",
    "top_targets",
    "write_outputs",
    "zscore_runs",
]
