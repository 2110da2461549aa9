"""Linear encoding models: features -> PCA -> FIR delays -> ridge / LASSO, run-wise CV.

The recipe follows the voxelwise-modelling tradition (gallantlab tutorials,
himalaya) and the SlowFast fMRI study:

* **Outer CV**: leave one run out. Every step that learns from data
  (feature z-scoring, PCA, the regression and its regularisation) is fit on
  the training runs of a fold only; the held-out run is only predicted.
* **PCA**: features are z-scored on the training rows and projected on the
  fewest principal components explaining at least ``pca_variance`` of their
  variance (:func:`fit_pca`).
* **Delays**: the PCA scores of each run get finite-impulse-response delays
  (:func:`neurovid.align.add_delays`) *per run*, so nothing leaks across a run
  boundary.
* **Regression**: ``ridge`` is himalaya's ``RidgeCV`` (numpy backend, one SVD
  per split for all targets at once; ``KernelRidgeCV`` with a linear kernel,
  the same model, when samples < features), ``lasso`` is scikit-learn's ``Lasso``
  (coordinate descent per target on a shared Gram matrix, warm-started from
  large to small alpha, targets split over threads, early-stopped after
  ``LASSO_MAX_ITER`` epochs). Both choose a regularisation strength **per target** by an inner
  leave-one-run-out CV over the training runs (negative mean squared error
  averaged over inner folds, himalaya's criterion); with a single training
  run the inner CV uses its two contiguous halves instead.
* **Scores**: Pearson r and R² of each target on each held-out run; the
  overall score of a target is the mean over folds.
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
from himalaya.backend import set_backend
from himalaya.kernel_ridge import KernelRidgeCV
from himalaya.ridge import RidgeCV
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso
from threadpoolctl import threadpool_limits

from neurovid import io
from neurovid.align import add_delays
from neurovid.errors import InputError

#: One run of a subject: (run id, features X [T_r, D], responses Y [T_r, N]).
Run = tuple[str, np.ndarray, np.ndarray]
Splits = list[tuple[np.ndarray, np.ndarray]]

ESTIMATORS = ("ridge", "lasso")

#: Coordinate-descent epochs per LASSO fit (see :func:`fit_lasso_cv`); a model's
#: config may override it with ``max_iter``.
LASSO_MAX_ITER = 100

_log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- CV and scaling


def leave_one_run_out(run_lengths: Sequence[int]) -> Splits:
    """Train/test row indices of leave-one-run-out CV over concatenated runs.

    Runs are stacked in the given order; fold ``k`` tests on run ``k`` and
    trains on all the others (indices sorted ascending).
    """
    bounds = np.concatenate([[0], np.cumsum(run_lengths)]).astype(np.int64)
    total = int(bounds[-1])
    splits: Splits = []
    for k in range(len(run_lengths)):
        test = np.arange(bounds[k], bounds[k + 1])
        train = np.concatenate([np.arange(0, bounds[k]), np.arange(bounds[k + 1], total)])
        splits.append((train, test))
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

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype=np.float32) @ self.coef + self.intercept).astype(np.float32)


def fit_ridge_cv(
    X: np.ndarray,
    Y: np.ndarray,
    splits: Splits,
    alphas: Sequence[float],
    *,
    n_targets_batch: int | None = None,
    kernel: bool | None = None,
) -> LinearFit:
    """Ridge with a per-target alpha chosen by CV over ``splits`` (himalaya).

    Solved with himalaya's numpy backend in float32, once per split for all
    targets and alphas, then refit on all rows with each target's best alpha.
    With more samples than features this is ``RidgeCV`` (SVD of X); with fewer
    (``kernel=None`` decides) it is the equivalent ``KernelRidgeCV`` with a
    linear kernel (eigendecomposition of X X', 2x faster at 3840 x 5760),
    whose dual weights are mapped back to primal ones. An intercept is fitted
    (X and Y are centred on the training rows of every split).
    """
    set_backend("numpy", on_error="raise")
    # Centring first (the intercept absorbs it) keeps float32 kernels accurate.
    x_mean = np.asarray(X, dtype=np.float64).mean(axis=0)
    X = np.ascontiguousarray(X - x_mean, dtype=np.float32)
    Y = np.ascontiguousarray(Y, dtype=np.float32)
    alphas_ = np.asarray(alphas, dtype=np.float32)
    solver_params: dict[str, Any] = {}
    if n_targets_batch:
        solver_params["n_targets_batch"] = n_targets_batch
        solver_params["n_targets_batch_refit"] = n_targets_batch
    if kernel is None:
        kernel = X.shape[0] < X.shape[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if kernel:
            model = KernelRidgeCV(
                alphas=alphas_,
                kernel="linear",
                fit_intercept=True,
                solver="eigenvalues",
                solver_params=solver_params,
                cv=list(splits),
            ).fit(X, Y)
            coef = model.get_primal_coef()
        else:
            model = RidgeCV(
                alphas=alphas_,
                fit_intercept=True,
                solver="svd",
                solver_params={**solver_params, "warn": False},
                cv=list(splits),
            ).fit(X, Y)
            coef = model.coef_
    coef = np.asarray(coef, dtype=np.float32).reshape(X.shape[1], Y.shape[1])
    intercept = np.asarray(model.intercept_, dtype=np.float64).reshape(Y.shape[1])
    return LinearFit(
        coef=coef,
        intercept=(intercept - x_mean @ coef).astype(np.float32),
        alpha=np.asarray(model.best_alphas_, dtype=np.float64).reshape(Y.shape[1]),
    )


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
) -> LinearFit:
    """Dispatch to :func:`fit_ridge_cv` or :func:`fit_lasso_cv` (``max_iter``: LASSO only)."""
    if estimator == "ridge":
        return fit_ridge_cv(X, Y, splits, alphas)
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
    r_folds: np.ndarray  # [F, N]
    r2_folds: np.ndarray  # [F, N]
    alpha_folds: np.ndarray  # [F, N]
    predictions: list[np.ndarray]  # per fold: held-out predictions [T_k, N]
    n_components: list[int]  # per fold
    n_train: list[int]
    n_test: list[int]
    alpha: np.ndarray  # [N] final refit
    weights: np.ndarray  # [P*L, N] final refit
    intercept: np.ndarray  # [N]
    pca: PCAModel  # final refit
    constant: np.ndarray  # [N] bool, constant over all runs (not modelled)
    fold_seconds: list[float] = field(default_factory=list)

    @property
    def r(self) -> np.ndarray:
        """Held-out r per target, mean over folds (NaN-aware, see module docstring)."""
        return _nanmean(self.r_folds, axis=0)

    @property
    def r2(self) -> np.ndarray:
        return _nanmean(self.r2_folds, axis=0)


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


def _fold_design(
    runs: Sequence[Run], train_runs: Sequence[int], pca_variance: float, delays: Sequence[int]
) -> tuple[PCAModel, list[np.ndarray]]:
    """PCA fit on the training runs, then each run projected and delayed on its own."""
    pca = fit_pca(np.concatenate([runs[i][1] for i in train_runs]), pca_variance)
    designs = [add_delays(pca.transform(X), list(delays)) for _, X, _ in runs]
    return pca, designs


def encode_subject(
    runs: Sequence[Run],
    *,
    estimator: str,
    alphas: Sequence[float],
    pca_variance: float,
    delays: Sequence[int],
    n_jobs: int = 1,
    max_iter: int = LASSO_MAX_ITER,
    log: logging.Logger | None = None,
) -> EncodingResult:
    """Fit and cross-validate one subject's encoding model (see module docstring).

    Args:
        runs: ``(run_id, X [T_r, D], Y [T_r, N])`` per run, in a fixed order.
        estimator: ``ridge`` or ``lasso``.
        alphas: regularisation strengths searched per target.
        pca_variance: share of feature variance PCA keeps (1 keeps all).
        delays: FIR delays in samples (see :func:`neurovid.align.delay_samples`).
        n_jobs: threads (BLAS for ridge; target chunks for LASSO).
        max_iter: coordinate-descent epochs per LASSO fit.
        log: progress logger (fold k/F and seconds).

    Raises:
        InputError: fewer than 2 runs, or runs whose shapes disagree.
    """
    log = log or _log
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; use one of {ESTIMATORS}")
    if len(delays) == 0:
        raise ValueError("need at least one delay")
    _, n_targets = _check_runs(runs)
    lengths = [len(Y) for _, _, Y in runs]
    Y_all = np.concatenate([np.asarray(Y, dtype=np.float32) for _, _, Y in runs])
    constant = np.ptp(Y_all, axis=0) == 0
    active = np.flatnonzero(~constant)
    if constant.any():
        log.warning(
            "%d of %d targets are constant over all runs: not modelled, scores NaN",
            int(constant.sum()),
            n_targets,
        )
    splits = leave_one_run_out(lengths)
    n_folds = len(splits)
    r_folds = np.full((n_folds, n_targets), np.nan)
    r2_folds = np.full((n_folds, n_targets), np.nan)
    alpha_folds = np.full((n_folds, n_targets), np.nan)
    predictions: list[np.ndarray] = []
    n_components: list[int] = []
    fold_seconds: list[float] = []

    with threadpool_limits(limits=max(1, int(n_jobs))):
        for k, (train, test) in enumerate(splits):
            t0 = time.perf_counter()
            train_runs = [i for i in range(len(runs)) if i != k]
            pca, designs = _fold_design(runs, train_runs, pca_variance, delays)
            X_train = np.concatenate([designs[i] for i in train_runs])
            Y_train = Y_all[train]
            pred = np.repeat(Y_train.mean(axis=0, keepdims=True), len(test), axis=0)
            if active.size:
                inner = inner_splits([lengths[i] for i in train_runs])
                fit = fit_estimator(
                    estimator, X_train, Y_train[:, active], inner, alphas, n_jobs, max_iter
                )
                pred[:, active] = fit.predict(designs[k])
                alpha_folds[k, active] = fit.alpha
            r, r2 = score_predictions(Y_all[test], pred)
            r[constant], r2[constant] = np.nan, np.nan
            r_folds[k], r2_folds[k] = r, r2
            predictions.append(pred.astype(np.float32))
            n_components.append(pca.n_components)
            fold_seconds.append(time.perf_counter() - t0)
            log.info(
                "fold %d/%d (held out %s): %d PCs x %d delays, %d train / %d test samples, mean r %.4f, %.1f s",
                k + 1,
                n_folds,
                runs[k][0],
                pca.n_components,
                len(delays),
                len(train),
                len(test),
                _nan_stat(r, np.mean),
                fold_seconds[-1],
            )

        t0 = time.perf_counter()
        pca, designs = _fold_design(runs, range(len(runs)), pca_variance, delays)
        X_all = np.concatenate(designs)
        weights = np.zeros((X_all.shape[1], n_targets), dtype=np.float32)
        intercept = Y_all.mean(axis=0).astype(np.float32)
        alpha = np.full(n_targets, np.nan)
        if active.size:
            fit = fit_estimator(
                estimator, X_all, Y_all[:, active], inner_splits(lengths), alphas, n_jobs, max_iter
            )
            weights[:, active] = fit.coef
            intercept[active] = fit.intercept
            alpha[active] = fit.alpha
        log.info(
            "final refit on all %d runs: %d PCs x %d delays, %.1f s",
            len(runs),
            pca.n_components,
            len(delays),
            time.perf_counter() - t0,
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
        n_train=[len(tr) for tr, _ in splits],
        n_test=[len(te) for _, te in splits],
        alpha=alpha,
        weights=weights,
        intercept=intercept,
        pca=pca,
        constant=constant,
        fold_seconds=fold_seconds,
    )


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
    for k, run_id in enumerate(result.run_ids):
        rows.append(
            {
                "fold": str(k + 1),
                "held_out_run": run_id,
                "n_train": result.n_train[k],
                "n_test": result.n_test[k],
                "n_components": result.n_components[k],
                "mean_r": _nan_stat(result.r_folds[k], np.mean),
                "median_r": _nan_stat(result.r_folds[k], np.median),
                "mean_r2": _nan_stat(result.r2_folds[k], np.mean),
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
        }
    )
    return pd.DataFrame(rows)


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
            **spatial,
        },
        {
            **common,
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
        f"{len(result.run_ids)} folds, mean r {_nan_stat(result.r, np.mean):.4f}, "
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
