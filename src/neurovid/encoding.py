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
  held-out single-trial R² on those repeats as a fraction of it.
* **Final model**: refit on all runs (PCA, delays, per-target alpha by
  leave-one-run-out CV over all runs); its weights are what ``weights.h5``
  stores, its alphas what ``alpha`` reports.

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

import logging
import time
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

# Imported eagerly (not inside functions) so that threadpoolctl's limits in
# encode_subject also reach the BLAS that scipy/scikit-learn load.
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso
from threadpoolctl import threadpool_limits

from neurovid import io
from neurovid.align import add_delays
from neurovid.errors import InputError
from neurovid.ridge import banded_ridge_cv, explainable_variance, ridge_cv, split_r2

#: One run of a subject: (run id, features X [T_r, D], responses Y [T_r, N]).
Run = tuple[str, np.ndarray, np.ndarray]
Splits = list[tuple[np.ndarray, np.ndarray]]

ESTIMATORS = ("ridge", "banded_ridge", "lasso")
#: Trained sequence models (:mod:`neurovid.deep`), fit through the same CV and scores.
DEEP_ESTIMATORS = ("lstm",)

#: Coordinate-descent epochs per LASSO fit (see :func:`fit_lasso_cv`); a model's
#: config may override it with ``max_iter``.
LASSO_MAX_ITER = 100

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


def inner_splits(run_lengths: Sequence[int]) -> Splits:
    """Splits for choosing alpha: leave-one-run-out, or two halves of a single run."""
    if len(run_lengths) >= 2:
        return leave_one_run_out(run_lengths)
    n = int(run_lengths[0])
    half = n // 2
    if half < 1:
        raise ValueError(f"a single run of {n} samples is too short to choose alpha")
    return leave_one_run_out([half, n - half])


def zscore_runs(Y: np.ndarray, run_lengths: Sequence[int]) -> np.ndarray:
    """Z-score each column within each run (constant columns become 0), as float32."""
    Y = np.asarray(Y, dtype=np.float64)
    out = np.empty_like(Y)
    start = 0
    for n in run_lengths:
        block = Y[start : start + n]
        mean = block.mean(axis=0)
        std = block.std(axis=0)
        constant = np.ptp(block, axis=0) == 0
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


def fit_pca(X_train: np.ndarray, share: float) -> PCAModel:
    """Z-score features on ``X_train`` and keep the fewest PCs explaining >= ``share``.

    ``share`` is in (0, 1]; ``1`` keeps every component. Uses scikit-learn's
    exact PCA solvers with their deterministic sign convention.
    """
    if not 0 < share <= 1:
        raise ValueError(f"pca_variance must be in (0, 1], got {share}")
    X = np.asarray(X_train, dtype=np.float64)
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[np.ptp(X, axis=0) == 0] = 1.0
    Z = (X - mean) / scale
    # Eigendecomposition of the D x D covariance when rows outnumber features (3-4x
    # faster than the SVD of Z); exact SVD otherwise. Both are deterministic.
    solver = "covariance_eigh" if Z.shape[0] >= Z.shape[1] else "full"
    pca = PCA(svd_solver=solver).fit(Z)
    ratio = np.asarray(pca.explained_variance_ratio_, dtype=np.float64)
    if share >= 1:
        k = len(ratio)
    else:
        # Fewest components whose cumulative share reaches `share` (tolerating rounding).
        k = int(np.searchsorted(np.cumsum(ratio), share - 1e-12, side="left")) + 1
        k = min(k, len(ratio))
    return PCAModel(mean, scale, pca.components_[:k].copy(), ratio[:k].copy())


# --------------------------------------------------------------------------- scores


def score_predictions(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson r and R² per column (float64).

    r is NaN where the recorded or the predicted column is constant; R² is NaN
    where the recorded column is constant (its variance is the denominator).
    """
    yt = np.asarray(y_true, dtype=np.float64)
    yp = np.asarray(y_pred, dtype=np.float64)
    const_true = np.ptp(yt, axis=0) == 0
    const_pred = np.ptp(yp, axis=0) == 0
    tc = yt - yt.mean(axis=0)
    pc = yp - yp.mean(axis=0)
    ss_true = (tc**2).sum(axis=0)
    ss_pred = (pc**2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (tc * pc).sum(axis=0) / np.sqrt(ss_true * ss_pred)
        r2 = 1.0 - ((yt - yp) ** 2).sum(axis=0) / ss_true
    r[const_true | const_pred] = np.nan
    r2[const_true] = np.nan
    return r, r2


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
) -> LinearFit:
    """Ridge with a per-target alpha chosen by CV over ``splits`` (:func:`neurovid.ridge.ridge_cv`).

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
        chunk_size=chunk_size,
        backend=backend,
        route=route,
    )
    _log.debug("ridge: %s backend, %s route", fit.backend, fit.route)
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
) -> LinearFit:
    """LASSO (scikit-learn) with a per-target alpha chosen by CV over ``splits``.

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
        Xc, Yc, x_mean, y_mean, gram = _centre(X[train], Y[train])
        coef = None
        for j in order:
            coef, n = _lasso_targets(Xc, Yc, gram, alphas[j], coef, **options)
            not_converged += n
            pred = (X[test] - x_mean) @ coef.T + y_mean
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
) -> LinearFit:
    """Dispatch to ridge, banded ridge (``spaces``: column indices of each feature
    space; ``n_iter`` space weightings searched) or LASSO (``max_iter``)."""
    if estimator == "ridge":
        return fit_ridge_cv(X, Y, splits, alphas)
    if estimator == "banded_ridge":
        if not spaces:
            raise ValueError("banded_ridge needs the feature spaces' columns")
        fit = banded_ridge_cv(
            np.asarray(X, dtype=np.float32),
            np.asarray(Y, dtype=np.float32),
            splits,
            spaces,
            alphas,
            n_iter=n_iter,
            seed=seed,
        )
        return LinearFit(coef=fit.coef, intercept=fit.intercept, alpha=fit.alpha, gamma=fit.gamma)
    if estimator == "lasso":
        return fit_lasso_cv(X, Y, splits, alphas, n_jobs=n_jobs, max_iter=max_iter)
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

    @property
    def r2_repeats(self) -> np.ndarray | None:
        """Held-out single-trial R² on the repeated stimuli only (the runs the ceiling is from)."""
        if self.ev is None or not self.repeat_folds:
            return None
        return _nanmean(self.r2_folds[self.repeat_folds], axis=0)

    @property
    def r2_ceiling_fraction(self) -> np.ndarray | None:
        """``r2_repeats / ev``: share of the explainable variance the model explains (NaN where ev <= 0)."""
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


def _fold_design(
    runs: Sequence[Run],
    train_runs: Sequence[int],
    pca_variance: float,
    delays: Sequence[int],
    bands: Sequence[int] | None = None,
) -> tuple[PCAModel, list[np.ndarray], list[np.ndarray] | None]:
    """PCA fit on the training runs (one per band for banded ridge), then each run
    projected and delayed on its own. Returns the band columns of the design too."""
    X_train = np.concatenate([runs[i][1] for i in train_runs])
    spaces = None
    if bands:
        pca, widths = fit_banded_pca(X_train, pca_variance, bands)
        spaces = band_columns(widths, len(delays))
    else:
        pca = fit_pca(X_train, pca_variance)
    designs = [add_delays(pca.transform(X), list(delays)) for _, X, _ in runs]
    return pca, designs, spaces


def repeat_groups(stimuli: Sequence[str] | None, n_runs: int) -> list[list[int]]:
    """Runs grouped by identical stimulus sequence (repeats), in first-appearance order.

    ``None`` (or all distinct) gives one run per group: leave-one-run-out.
    """
    if stimuli is None:
        return [[i] for i in range(n_runs)]
    if len(stimuli) != n_runs:
        raise ValueError(f"{len(stimuli)} stimulus keys for {n_runs} runs")
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(stimuli):
        groups.setdefault(str(key), []).append(i)
    return list(groups.values())


def group_splits(lengths: Sequence[int], groups: Sequence[Sequence[int]]) -> Splits:
    """Leave-one-group-out splits over runs stacked in order (``groups``: run indices).

    Repeats of one stimulus are validated together, so no fold trains on the
    stimulus it is scored on. One group only: leave one run out (or the halves of
    a single run, :func:`inner_splits`).
    """
    if len(groups) < 2:
        return inner_splits(lengths)
    return _held_out_splits(lengths, groups)


def subject_ev(Y_runs: Sequence[np.ndarray], groups: Sequence[Sequence[int]]) -> np.ndarray | None:
    """Explainable variance per target from every group of repeated runs (sample-weighted
    mean over groups); None when no stimulus was repeated. Repeats that were recorded for
    different durations are compared over their common length (they share the timeline)."""
    values, weights = [], []
    for group in groups:
        if len(group) < 2:
            continue
        n = min(len(Y_runs[i]) for i in group)
        values.append(explainable_variance(np.stack([Y_runs[i][:n] for i in group])))
        weights.append(n)
    if not values:
        return None
    stacked = np.asarray(values)
    return np.average(np.where(np.isfinite(stacked), stacked, np.nan), axis=0, weights=weights)


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
) -> EncodingResult:
    """Fit and cross-validate one subject's encoding model (see module docstring).

    Args:
        runs: ``(run_id, X [T_r, D], Y [T_r, N])`` per run, in a fixed order.
        estimator: ``ridge``, ``banded_ridge`` or ``lasso``.
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
            ``weights_layout`` (str) and ``fit(designs, Y_runs, inner_groups, out_dir,
            title, log)`` returning a fit with ``predict(X)``, ``state_arrays()``,
            ``training`` (a TrainResult) and ``loss`` (:class:`neurovid.deep.lstm.LSTMTrainer`).
        train_dir: ``estimator: lstm``: checkpoints, metrics.csv and loss curve of
            fold ``k`` (1-based) go to ``train_dir/fold-k``, the refit's to ``train_dir/final``.

    Raises:
        InputError: fewer than 2 runs, or runs whose shapes disagree.
    """
    log = log or _log
    if estimator not in ESTIMATORS + DEEP_ESTIMATORS:
        raise ValueError(
            f"unknown estimator {estimator!r}; use one of {ESTIMATORS + DEEP_ESTIMATORS}"
        )
    if len(delays) == 0:
        raise ValueError("need at least one delay")
    trained = estimator in DEEP_ESTIMATORS
    if trained:
        if trainer is None or train_dir is None:
            raise ValueError(f"estimator {estimator} needs a trainer and a train_dir")
        if not trainer.fir_delays:
            delays = [0]  # the recurrence learns the lag from the PCA scores themselves
    fold_training: list[dict[str, Any]] = []
    n_dims, n_targets = _check_runs(runs)
    band_widths = None
    if estimator == "banded_ridge":
        if not bands or sum(w for _, w in bands) != n_dims:
            raise ValueError(
                f"banded_ridge needs bands covering the {n_dims} feature columns, got {bands}"
            )
        band_widths = [int(w) for _, w in bands]
    lengths = [len(Y) for _, _, Y in runs]
    Y_runs = [np.asarray(Y, dtype=np.float32) for _, _, Y in runs]
    Y_all = np.concatenate(Y_runs)
    constant = np.ptp(Y_all, axis=0) == 0
    active = np.flatnonzero(~constant)
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
    ev = subject_ev(Y_runs, groups)
    n_folds = len(groups)
    r_folds = np.full((n_folds, n_targets), np.nan)
    r2_folds = np.full((n_folds, n_targets), np.nan)
    alpha_folds = np.full((n_folds, n_targets), np.nan)
    split_folds = (
        np.full((n_folds, len(band_widths or []), n_targets), np.nan) if band_widths else None
    )
    predictions: list[np.ndarray] = [np.empty(0)] * len(runs)
    n_components: list[int] = []
    n_train: list[int] = []
    n_test: list[int] = []
    fold_seconds: list[float] = []
    fit_options = {"n_jobs": n_jobs, "max_iter": max_iter, "n_iter": n_iter, "seed": seed}

    with threadpool_limits(limits=max(1, int(n_jobs))):
        for k, held_out in enumerate(groups):
            t0 = time.perf_counter()
            train_runs = [i for i in range(len(runs)) if i not in held_out]
            pca, designs, spaces = _fold_design(runs, train_runs, pca_variance, delays, band_widths)
            X_train = np.concatenate([designs[i] for i in train_runs])
            Y_train = np.concatenate([Y_runs[i] for i in train_runs])
            inner_groups = _reindex([g for g in groups if g is not held_out], train_runs)
            fit = None
            if active.size and trained:
                fit = trainer.fit(
                    [designs[i] for i in train_runs],
                    [Y_runs[i][:, active] for i in train_runs],
                    inner_groups,
                    f"{train_dir}/fold-{k + 1}",
                    f"fold {k + 1}/{n_folds}",
                    log,
                )
                fold_training.append(_training_row(fit))
            elif active.size:
                inner = group_splits([lengths[i] for i in train_runs], inner_groups)
                fit = fit_estimator(
                    estimator,
                    X_train,
                    Y_train[:, active],
                    inner,
                    alphas,
                    spaces=spaces,
                    **fit_options,
                )
                alpha_folds[k, active] = fit.alpha
            per_run_r, per_run_r2, per_run_split = [], [], []
            for i in held_out:
                pred = np.repeat(Y_train.mean(axis=0, keepdims=True), lengths[i], axis=0)
                if fit is not None:
                    pred[:, active] = fit.predict(designs[i])
                r, r2 = score_predictions(Y_runs[i], pred)
                r[constant], r2[constant] = np.nan, np.nan
                per_run_r.append(r)
                per_run_r2.append(r2)
                predictions[i] = pred.astype(np.float32)
                if split_folds is not None and fit is not None:
                    parts = np.stack([designs[i][:, cols] @ fit.coef[cols] for cols in spaces])
                    shares = np.full((len(spaces), n_targets), np.nan)
                    shares[:, active] = split_r2(Y_runs[i][:, active], parts)
                    per_run_split.append(shares)
            r_folds[k] = _nanmean(np.asarray(per_run_r), axis=0)
            r2_folds[k] = _nanmean(np.asarray(per_run_r2), axis=0)
            if per_run_split:
                split_folds[k] = _nanmean(np.asarray(per_run_split), axis=0)
            n_components.append(pca.n_components)
            n_test.append(int(sum(lengths[i] for i in held_out)))
            n_train.append(int(len(Y_train)))
            fold_seconds.append(time.perf_counter() - t0)
            log.info(
                "fold %d/%d (held out %s): %d PCs x %d delays, %d train / %d test samples, mean r %.4f, %.1f s",
                k + 1,
                n_folds,
                "+".join(runs[i][0] for i in held_out),
                pca.n_components,
                len(delays),
                n_train[-1],
                n_test[-1],
                _nan_stat(r_folds[k], np.mean),
                fold_seconds[-1],
            )

        t0 = time.perf_counter()
        pca, designs, spaces = _fold_design(
            runs, range(len(runs)), pca_variance, delays, band_widths
        )
        X_all = np.concatenate(designs)
        weights = np.zeros((X_all.shape[1], n_targets), dtype=np.float32)
        intercept = Y_all.mean(axis=0).astype(np.float32)
        alpha = np.full(n_targets, np.nan)
        gamma = np.full((len(band_widths), n_targets), np.nan) if band_widths else None
        model_arrays: dict[str, np.ndarray] = {}
        if active.size and trained:
            fit = trainer.fit(
                designs,
                [Y[:, active] for Y in Y_runs],
                groups,
                f"{train_dir}/final",
                "final refit",
                log,
            )
            fold_training.append(_training_row(fit))
            model_arrays = fit.state_arrays()
        elif active.size:
            fit = fit_estimator(
                estimator,
                X_all,
                Y_all[:, active],
                group_splits(lengths, groups),
                alphas,
                spaces=spaces,
                **fit_options,
            )
            weights[:, active] = fit.coef
            intercept[active] = fit.intercept
            alpha[active] = fit.alpha
            if gamma is not None and fit.gamma is not None:
                gamma[:, active] = fit.gamma
        log.info(
            "final refit on all %d runs: %d PCs x %d delays, %.1f s",
            len(runs),
            pca.n_components,
            len(delays),
            time.perf_counter() - t0,
        )
    if ev is not None:
        log.info(
            "noise ceiling from repeated stimuli: mean explainable variance %.4f",
            _nan_stat(ev, np.mean),
        )

    return EncodingResult(
        run_ids=[run_id for run_id, _, _ in runs],
        estimator=estimator,
        delays_samples=[int(d) for d in delays],
        pca_variance=float(pca_variance),
        r_folds=r_folds,
        r2_folds=r2_folds,
        alpha_folds=alpha_folds,
        predictions=predictions,
        n_components=n_components,
        n_train=n_train,
        n_test=n_test,
        alpha=alpha,
        weights=weights,
        intercept=intercept,
        pca=pca,
        constant=constant,
        fold_seconds=fold_seconds,
        fold_runs=[list(g) for g in groups],
        bands=[name for name, _ in bands] if band_widths and bands else [],
        r2_split_folds=split_folds,
        gamma=gamma,
        ev=ev,
        repeat_folds=[k for k, g in enumerate(groups) if len(g) > 1],
        fold_training=fold_training,
        model_arrays=model_arrays,
        weights_layout=trainer.weights_layout if trained else "",
    )


def _training_row(fit: Any) -> dict[str, Any]:
    training = fit.training
    return {
        "best_epoch": training.best_epoch,
        "epochs_run": training.epochs_run,
        "stopped_early": training.stopped_early,
        "best_val_loss": training.best_val_loss,
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
    bands: list[tuple[str, int]] = field(default_factory=list)  # (extractor, feature columns)


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
    run when ``zscore``.

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
        if zscore:
            Y = zscore_runs(Y, [len(Y)])
        runs.append((run_id, X, Y))
        times.append(rs.times)
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
        bands=widths,
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
    every HDF5 file. Each file is written atomically.
    """
    r, r2 = result.r, result.r2
    names = np.asarray(data.target_names, dtype=str)
    common = {**attrs, "estimator": result.estimator, "runs": result.run_ids}
    spatial = {}
    if data.voxel_ijk is not None:
        spatial = {"mask": data.mask, "affine": data.affine, "voxel_ijk": data.voxel_ijk}

    extra: dict[str, np.ndarray] = {}
    extra_attrs: dict[str, Any] = {}
    if result.ev is not None:
        extra["ev"] = result.ev.astype(np.float32)
        extra["r2_repeats"] = result.r2_repeats.astype(np.float32)
        extra["r2_ceiling_fraction"] = result.r2_ceiling_fraction.astype(np.float32)
        extra_attrs["mean_ev"] = _nan_stat(result.ev, np.mean)
        extra_attrs["repeat_runs"] = [
            "+".join(result.run_ids[i] for i in result.fold_runs[k]) for k in result.repeat_folds
        ]
    if result.r2_split is not None:
        extra["r2_split"] = result.r2_split.astype(np.float32)
        extra["gamma"] = result.gamma.astype(np.float32)
        extra_attrs["bands"] = list(result.bands)
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
        table["r2_ceiling_fraction"] = result.r2_ceiling_fraction.astype(np.float32)
    if result.r2_split is not None:
        for b, band in enumerate(result.bands):
            table[f"r2_{band}"] = result.r2_split[b].astype(np.float32)
            table[f"gamma_{band}"] = result.gamma[b].astype(np.float32)
    if data.voxel_ijk is not None:
        for axis, column in enumerate("ijk"):
            table[column] = np.asarray(data.voxel_ijk)[:, axis]
    io.write_table(paths["table"], table)
    io.write_table(paths["metrics"], metrics_table(result))

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
    "inner_splits",
    "leave_one_run_out",
    "load_subject",
    "metrics_table",
    "output_paths",
    "score_predictions",
    "top_targets",
    "write_outputs",
    "zscore_runs",
]
