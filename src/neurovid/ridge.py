"""Fast cross-validated ridge and banded ridge for many targets, with noise ceilings.

Why a solver of our own: whole-brain encoding fits 50k-100k targets over many
regularisation values, and the reference (himalaya's ``RidgeCV``) materialises
every validation prediction for every alpha. Here each CV fold decomposes the
design once and scores every alpha for every target from *projected*
quantities, never from predictions:

With the training rows centred (``Xt``, ``Yt``) and the validation rows centred
on the training means (``Xv``, ``Yv``), let ``Xt'Xt = V diag(lam) V'``,
``bt = V' Xt' Yt`` and ``bv = V' Xv' Yv`` (``r x targets``) and
``H = V' Xv' Xv V = L L'``. The ridge solution for ``alpha`` is
``beta = V (g * bt)`` with ``g = 1 / (lam + alpha)``, so for every target

* ``<Xv beta, Yv> = sum_k g_k bt_k bv_k``  (one small matrix product for all alphas),
* ``||Xv beta||^2 = ||L' (g * bt)||^2``      (a triangular product per alpha),
* ``||Yv||^2`` and the column sums,

from which the validation loss, R² and Pearson r follow exactly. The per-fold
cross products ``bt``/``bv`` come from per-fold blocks of ``X'Y`` computed
once (``X'Y`` of the training rows is the total minus the held-out block), or,
when features outnumber training samples, from the fold's principal scores
(the dual / kernel form of the same decomposition). Which route is cheaper is
decided from the shapes. Targets are processed in chunks, so memory is bounded
by the chunk size, and results do not depend on it.

The criterion, the intercept handling, the tie-break towards larger alphas and
the refit on all rows follow himalaya's ``RidgeCV`` (``fit_intercept=True``), so
the two agree on the chosen alpha and the scores.

Backends: numpy (BLAS threads limited by the caller, e.g. threadpoolctl) or
torch, chosen automatically: torch on CUDA when a GPU is visible, numpy
otherwise. The same code path runs on both; only array creation, the
triangular product and transfers differ. float32 by default, float64 for checks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

_log = logging.getLogger(__name__)

#: Criteria for choosing alpha (mean over folds, higher is better).
SCORES = ("neg_mse", "r2", "pearson")

#: Targets per chunk when not given: large enough for efficient matrix products,
#: small enough to keep the per-chunk buffers (a few x samples x chunk) modest.
DEFAULT_CHUNK = 16384


# --------------------------------------------------------------------------- backends


class NumpyBackend:
    """Arrays on the host; BLAS for the products (scipy's ?trmm for triangular ones)."""

    name = "numpy"
    device = "cpu"

    def __init__(self, dtype: str = "float32") -> None:
        self.dtype = np.dtype(dtype)

    def asarray(self, a: Any, dtype: Any = None) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=self.dtype if dtype is None else dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        return np.asarray(a)

    def zeros(self, shape: tuple[int, ...], dtype: Any = None) -> np.ndarray:
        return np.zeros(shape, dtype=self.dtype if dtype is None else dtype)

    def upper_matmul(self, upper: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``upper @ b`` for an upper-triangular square ``upper`` (half the flops of gemm)."""
        from scipy.linalg import blas

        trmm = blas.strmm if self.dtype == np.float32 else blas.dtrmm
        # b is C-ordered (r x c), i.e. Fortran-ordered b' (c x r): compute b' upper' in place
        # of a copy, then view the Fortran result transposed as C-ordered (r x c).
        out = trmm(1.0, np.asfortranarray(upper), b.T, side=1, lower=0, trans_a=1)
        return out.T

    def sqnorm_cols(self, a: np.ndarray) -> np.ndarray:
        return np.einsum("ij,ij->j", a, a)

    def add_outer(self, a: np.ndarray, x: np.ndarray, y: np.ndarray, alpha: float) -> None:
        """``a += alpha * outer(x, y)`` in place (BLAS ?ger: one pass over ``a``)."""
        from scipy.linalg import blas

        ger = blas.sger if a.dtype == np.float32 else blas.dger
        # a is C-ordered (r x c): its transpose is a Fortran (c x r) array ger updates in place.
        ger(
            alpha,
            y.astype(a.dtype, copy=False),
            x.astype(a.dtype, copy=False),
            a=a.T,
            overwrite_a=True,
        )


class TorchBackend:
    """torch tensors on one device (CUDA when available); float32 unless asked."""

    name = "torch"

    def __init__(self, dtype: str = "float32", device: str | None = None) -> None:
        import torch

        self.torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = getattr(torch, str(np.dtype(dtype)))

    def _dtype(self, dtype: Any) -> Any:
        return self.dtype if dtype is None else getattr(self.torch, str(np.dtype(dtype)))

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        if isinstance(a, self.torch.Tensor):
            return a.to(device=self.device, dtype=self._dtype(dtype))
        array = np.ascontiguousarray(a)
        # Pinned host memory makes the copy to the GPU asynchronous-capable and faster.
        tensor = self.torch.from_numpy(array)
        if self.device != "cpu":
            tensor = tensor.pin_memory()
        return tensor.to(device=self.device, dtype=self._dtype(dtype), non_blocking=True)

    def to_numpy(self, a: Any) -> np.ndarray:
        return a.detach().cpu().numpy()

    def zeros(self, shape: tuple[int, ...], dtype: Any = None) -> Any:
        return self.torch.zeros(shape, dtype=self._dtype(dtype), device=self.device)

    def upper_matmul(self, upper: Any, b: Any) -> Any:
        return upper @ b

    def sqnorm_cols(self, a: Any) -> Any:
        return (a * a).sum(0)

    def add_outer(self, a: Any, x: Any, y: Any, alpha: float) -> None:
        a.addr_(x.to(a.dtype), y.to(a.dtype), alpha=alpha)


Backend = NumpyBackend | TorchBackend


def get_backend(backend: str = "auto", dtype: str = "float32") -> Backend:
    """``auto``: torch on CUDA when torch is installed and a GPU is visible, else numpy."""
    if backend == "numpy":
        return NumpyBackend(dtype)
    if backend in ("torch", "torch_cuda"):
        return TorchBackend(dtype, device="cuda" if backend == "torch_cuda" else None)
    if backend != "auto":
        raise ValueError(f"unknown backend {backend!r}; use auto, numpy, torch or torch_cuda")
    try:
        import torch
    except ImportError:
        return NumpyBackend(dtype)
    if torch.cuda.is_available():
        return TorchBackend(dtype, device="cuda")
    return NumpyBackend(dtype)


# --------------------------------------------------------------------------- folds


def folds_from_splits(
    splits: Sequence[tuple[np.ndarray, np.ndarray]], n_samples: int
) -> list[np.ndarray]:
    """Validation index sets of ``splits``, checked to partition the rows.

    The solver needs every fold's training rows to be all the other rows (as in
    K-fold or leave-one-run-out CV), because it derives the training cross
    products from the totals.
    """
    folds = []
    seen = np.zeros(n_samples, dtype=np.int64)
    for k, (train, test) in enumerate(splits):
        test = np.sort(np.asarray(test, dtype=np.int64))
        train = np.sort(np.asarray(train, dtype=np.int64))
        if len(test) == 0 or len(train) == 0:
            raise ValueError(f"fold {k} has an empty training or validation set")
        complement = np.setdiff1d(np.arange(n_samples), test)
        if not np.array_equal(train, complement):
            raise ValueError(
                f"fold {k}: the training rows must be all rows not validated on "
                "(K-fold / leave-one-group-out splits)"
            )
        seen[test] += 1
        folds.append(test)
    if np.any(seen != 1):
        raise ValueError("validation sets must partition the rows (each row validated once)")
    return folds


# --------------------------------------------------------------------------- per-fold bases


@dataclass
class _Basis:
    """One fold's decomposition, shared by every target chunk and every alpha."""

    test: np.ndarray  # validation rows
    train: np.ndarray  # training rows
    lam: np.ndarray  # [r] eigenvalues of the centred training Gram (float64)
    V: Any  # [p, r] backend array
    factor: Any  # [r, r] upper-triangular L' (or dense [q, r]) with ||factor q||^2 = ||Xv V q||^2
    factor_upper: bool
    a1: Any  # [r] V' sum over validation rows of (x - x_mean_t)
    Vx: Any  # [r] V' x_mean_t
    Vsx: Any  # [r] V' sum over validation rows of x
    # Dual route only: principal scores of the training and validation rows.
    Zt: Any = None  # [n_t, r]
    Zv: Any = None  # [n_v, r]


def _gram(A: np.ndarray) -> np.ndarray:
    """``A'A`` in float64 (cheap next to the target products, and exact enough)."""
    A64 = np.asarray(A, dtype=np.float64)
    return A64.T @ A64


def _eig_psd(M: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of a symmetric PSD matrix, rounding-negative values set to 0."""
    w, v = np.linalg.eigh(M)
    w = np.clip(w, 0.0, None)
    return w, v


def _psd_factor(H: np.ndarray) -> tuple[np.ndarray, bool]:
    """A factor F with ``F'F = H``: upper-triangular Cholesky L' when H is positive definite,
    else the rows ``sqrt(mu) w'`` of its eigen-decomposition with mu > 0."""
    try:
        L = np.linalg.cholesky(H)
        return np.ascontiguousarray(L.T), True
    except np.linalg.LinAlgError:
        mu, W = _eig_psd(H)
        keep = mu > mu.max(initial=0.0) * H.shape[0] * np.finfo(np.float64).eps
        return np.ascontiguousarray((W[:, keep] * np.sqrt(mu[keep])).T), False


def _decompose(Xc: np.ndarray, dual: bool) -> tuple[np.ndarray, np.ndarray]:
    """``Xc'Xc = V diag(lam) V'`` of a centred design (a fold's training rows, or all rows).

    Primal: eigen-decomposition of the Gram matrix. Dual (more features than rows):
    of the kernel ``Xc Xc' = U diag(lam) U'``, with ``V = Xc' U / sqrt(lam)`` spanning
    the row space (zero eigenvalues dropped).
    """
    if not dual:
        return _eig_psd(Xc.T @ Xc)
    lam_k, U = _eig_psd(Xc @ Xc.T)
    keep = lam_k > lam_k.max(initial=0.0) * len(lam_k) * np.finfo(np.float64).eps
    lam, U = lam_k[keep], U[:, keep]
    return lam, (Xc.T @ U) / np.sqrt(lam)


def _basis(be: Backend, X: np.ndarray, test: np.ndarray, dual: bool) -> _Basis:
    """Decompose the centred training design of one fold (X is globally centred, float64 ok)."""
    n = X.shape[0]
    mask = np.ones(n, dtype=bool)
    mask[test] = False
    train = np.flatnonzero(mask)
    Xt, Xv = X[train], X[test]
    x_mean_t = np.asarray(Xt, dtype=np.float64).mean(axis=0)
    Xtc = np.asarray(Xt, dtype=np.float64) - x_mean_t
    Xvc = np.asarray(Xv, dtype=np.float64) - x_mean_t
    lam, V = _decompose(Xtc, dual)
    Av = Xvc @ V
    factor, upper = _psd_factor(Av.T @ Av)
    sx_v = np.asarray(Xv, dtype=np.float64).sum(axis=0)
    basis = _Basis(
        test=test,
        train=train,
        lam=lam,
        V=be.asarray(V),
        factor=be.asarray(factor),
        factor_upper=upper,
        a1=be.asarray(Av.sum(axis=0)),
        Vx=be.asarray(V.T @ x_mean_t),
        Vsx=be.asarray(V.T @ sx_v),
    )
    if dual:
        basis.Zt = be.asarray(Xtc @ V)
        basis.Zv = be.asarray(Av)
    return basis


def _use_dual(n_samples: int, n_features: int, n_folds: int, folds: Sequence[np.ndarray]) -> bool:
    """Choose the route with fewer multiply-adds per target.

    Blocks of X'Y: ``p n`` once + ``2 r p`` per fold (r = p). Principal scores:
    ``r n`` per fold with r = min(p, n_train).
    """
    p, n = n_features, n_samples
    blocks = p * n + sum(2 * min(p, n - len(f)) * p for f in folds)
    scores = sum(min(p, n - len(f)) * n for f in folds)
    return scores < blocks or any(n - len(f) < p for f in folds)


# --------------------------------------------------------------------------- CV scores


@dataclass
class _ChunkStats:
    """Projected quantities of one fold and one target chunk."""

    bt: Any  # [r, c]
    bv: Any  # [r, c]
    sum_yv: Any  # [c] sum over validation rows of (y - y_mean_t)
    ss_yv: Any  # [c] sum of squares of (y - y_mean_t) over validation rows
    ss_yv_own: Any  # [c] sum of squares around the validation rows' own mean


def _chunk_stats(
    be: Backend, basis: _Basis, Yc: Any, Yv: Any, Sf: Any | None, S: Any | None, sy: Any
) -> _ChunkStats:
    """bt, bv and the target sums of one fold for a chunk of targets (Y globally centred).

    ``Yv`` are the validation rows of ``Yc``; ``Sf`` / ``S`` the fold's and the total
    X'Y (blocks route only).
    """
    n_v = len(basis.test)
    n_t = len(basis.train)
    sy_f = Yv.sum(0)
    syy_f = (Yv * Yv).sum(0)
    y_mean_t = (sy - sy_f) / n_t
    if basis.Zt is None:
        # Blocks route: V'S_t and V'S_f from the per-fold X'Y blocks.
        # The centring corrections are rank-one updates done in place (one pass each).
        bt = basis.V.T @ S
        bv = basis.V.T @ Sf
        bt -= bv
        be.add_outer(bt, basis.Vx, y_mean_t, -n_t)
        be.add_outer(bv, basis.Vx, sy_f - n_v * y_mean_t, -1.0)
        be.add_outer(bv, basis.Vsx, y_mean_t, -1.0)
    else:
        # Scores route: the principal scores of the training rows sum to zero.
        bt = basis.Zt.T @ _rows(be, Yc, basis.train)
        bv = basis.Zv.T @ Yv
        be.add_outer(bv, basis.a1, y_mean_t, -1.0)
    sum_yv = sy_f - n_v * y_mean_t
    ss_yv = syy_f - 2 * y_mean_t * sy_f + n_v * y_mean_t * y_mean_t
    ss_own = syy_f - sy_f * sy_f / n_v
    return _ChunkStats(bt, bv, sum_yv, ss_yv, ss_own)


def _fold_scores(
    be: Backend, basis: _Basis, st: _ChunkStats, alphas: np.ndarray, score: str
) -> np.ndarray:
    """Validation score of every alpha for every target of the chunk -> [n_alphas, c] float64."""
    n_v = len(basis.test)
    G = 1.0 / (basis.lam[None, :] + alphas[:, None])  # [a, r] float64
    Gb = be.asarray(G)
    cross = be.to_numpy(Gb @ (st.bt * st.bv)).astype(np.float64)  # <yhat, yv>
    out = np.empty((len(alphas), st.bt.shape[1]))
    ss_yv = be.to_numpy(st.ss_yv).astype(np.float64)
    if score == "r2":
        ss_own = be.to_numpy(st.ss_yv_own).astype(np.float64)
    if score == "pearson":
        sum_hat = be.to_numpy((Gb * basis.a1[None, :]) @ st.bt).astype(np.float64)
        sum_yv = be.to_numpy(st.sum_yv).astype(np.float64)
    for j in range(len(alphas)):
        # ||Xv V diag(g) bt||^2 = ||F diag(g) bt||^2: scaling F's columns (r x r) instead of
        # bt (r x c) keeps F triangular and saves a pass over the chunk.
        scaled = basis.factor * Gb[j][None, :]
        fq = be.upper_matmul(scaled, st.bt) if basis.factor_upper else scaled @ st.bt
        quad = be.to_numpy(be.sqnorm_cols(fq)).astype(np.float64)  # ||yhat||^2
        sse = ss_yv - 2.0 * cross[j] + quad
        if score == "neg_mse":
            out[j] = -sse / n_v
        elif score == "r2":
            with np.errstate(divide="ignore", invalid="ignore"):
                out[j] = np.where(ss_own > 0, 1.0 - sse / ss_own, 0.0)
        else:
            cov = cross[j] - sum_hat[j] * sum_yv / n_v
            var_hat = quad - sum_hat[j] ** 2 / n_v
            var_y = ss_yv - sum_yv**2 / n_v
            with np.errstate(divide="ignore", invalid="ignore"):
                r = cov / np.sqrt(var_hat * var_y)
            out[j] = np.where(np.isfinite(r), r, 0.0)
    return out


# --------------------------------------------------------------------------- solver


@dataclass
class RidgeCVResult:
    """A ridge fit with a per-target alpha: ``Y ≈ X @ coef + intercept``."""

    coef: np.ndarray  # [p, n_targets]
    intercept: np.ndarray  # [n_targets]
    alpha: np.ndarray  # [n_targets] chosen alpha
    cv_scores: np.ndarray  # [n_alphas, n_targets] criterion, mean over folds
    alphas: np.ndarray  # [n_alphas] searched
    backend: str = "numpy"
    route: str = "blocks"  # "blocks" (X'Y blocks) or "scores" (dual / principal scores)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype=self.coef.dtype) @ self.coef + self.intercept).astype(
            self.coef.dtype
        )


def _best_alpha(scores: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Index of the best alpha per target; ties go to the larger alpha (himalaya's slope)."""
    return np.argmax(scores + (np.log(alphas) * 1e-10)[:, None], axis=0)


def ridge_cv(
    X: np.ndarray,
    Y: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    alphas: Sequence[float],
    *,
    score: str = "neg_mse",
    chunk_size: int | None = None,
    backend: str | Backend = "auto",
    dtype: str = "float32",
    route: str = "auto",
) -> RidgeCVResult:
    """Ridge with a per-target alpha chosen by CV, then refit on all rows.

    Args:
        X: design [n, p].
        Y: targets [n, T].
        splits: (train, validation) index pairs; the validation sets must
            partition the rows and each training set be the other rows
            (K-fold, leave-one-run-out).
        alphas: positive regularisation strengths searched for every target.
        score: criterion averaged over folds: ``neg_mse`` (himalaya's default),
            ``r2`` or ``pearson``.
        chunk_size: targets per chunk (memory bound; results do not depend on it).
        backend: ``auto`` | ``numpy`` | ``torch`` | ``torch_cuda`` or a backend object.
        dtype: ``float32`` (default) or ``float64`` (checks).
        route: ``auto`` | ``blocks`` | ``scores`` (see module docstring; both exact).

    An intercept is fitted (X and Y centred on the training rows of each fold).
    """
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; use one of {SCORES}")
    be = get_backend(backend, dtype) if isinstance(backend, str) else backend
    X = np.asarray(X)
    Y = np.asarray(Y)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"X {X.shape} and Y {Y.shape} must be 2-D with the same rows")
    alphas = np.asarray(alphas, dtype=np.float64)
    if alphas.ndim != 1 or len(alphas) == 0 or np.any(alphas <= 0):
        raise ValueError(f"alphas must be a non-empty list of positive numbers, got {alphas}")
    n, p = X.shape
    n_targets = Y.shape[1]
    folds = folds_from_splits(splits, n)
    dual = _use_dual(n, p, len(folds), folds) if route == "auto" else route == "scores"

    # Global centring in float64 keeps the float32 cross products free of large offsets;
    # the fold-wise centring is then exact algebra on sums.
    x_mean = X.mean(axis=0, dtype=np.float64)
    Xc = X.astype(np.float64) - x_mean
    bases = [_basis(be, Xc, f, dual) for f in folds]
    lam_all, V_all = _decompose(Xc, dual)
    Xc_be = be.asarray(Xc)
    V_all_be = be.asarray(V_all)

    chunk = int(chunk_size or DEFAULT_CHUNK)
    coef = np.empty((p, n_targets), dtype=np.dtype(dtype))
    intercept = np.empty(n_targets, dtype=np.dtype(dtype))
    best_alpha = np.empty(n_targets)
    cv_scores = np.empty((len(alphas), n_targets))
    for start in range(0, n_targets, chunk):
        cols = slice(start, min(start + chunk, n_targets))
        y_mean = Y[:, cols].mean(axis=0, dtype=np.float64)
        Yc = be.asarray(Y[:, cols] - y_mean.astype(Y.dtype))
        sy = Yc.sum(0)
        Yvs = [_rows(be, Yc, b.test) for b in bases]
        # Blocks route: X'Y of each fold's rows once; the training block is the total minus it.
        Sfs = (
            [None] * len(bases)
            if dual
            else [_rows(be, Xc_be, b.test).T @ Yv for b, Yv in zip(bases, Yvs, strict=True)]
        )
        S = None
        if not dual:
            S = Sfs[0].clone() if be.name == "torch" else Sfs[0].copy()
            for Sf in Sfs[1:]:
                S += Sf
        scores = np.zeros((len(alphas), Yc.shape[1]))
        for basis, Yv, Sf in zip(bases, Yvs, Sfs, strict=True):
            st = _chunk_stats(be, basis, Yc, Yv, Sf, S, sy)
            scores += _fold_scores(be, basis, st, alphas, score)
        scores /= len(bases)
        best = _best_alpha(scores, alphas)
        cv_scores[:, cols] = scores
        best_alpha[cols] = alphas[best]
        # Refit on all rows: beta = V diag(1 / (lam + alpha_t)) V' X'Y, per target alpha.
        b_all = V_all_be.T @ (S if S is not None else Xc_be.T @ Yc)
        # Each target's column of 1 / (lam + alpha): gathered from the small [r, n_alphas] table.
        table = be.asarray(1.0 / (lam_all[:, None] + alphas[None, :]))
        b_all *= table[:, be.asarray(best, dtype=np.int64) if be.name == "torch" else best]
        beta = be.to_numpy(V_all_be @ b_all)
        coef[:, cols] = beta
        intercept[cols] = y_mean - (beta.T @ x_mean.astype(beta.dtype)).astype(np.float64)
    return RidgeCVResult(
        coef=coef,
        intercept=intercept,
        alpha=best_alpha,
        cv_scores=cv_scores,
        alphas=alphas,
        backend=f"{be.name}:{be.device}",
        route="scores" if dual else "blocks",
    )


def _rows(be: Backend, A: Any, idx: np.ndarray) -> Any:
    """Rows ``idx`` of a backend array (contiguous ranges as views)."""
    if len(idx) and idx[-1] - idx[0] + 1 == len(idx):
        return A[int(idx[0]) : int(idx[-1]) + 1]
    return A[be.asarray(idx, dtype=np.int64)] if be.name == "torch" else A[idx]


# --------------------------------------------------------------------------- banded ridge


@dataclass
class BandedRidgeCVResult:
    """Banded ridge: one regularisation per feature space, chosen per target.

    The penalty of space ``i`` is ``alpha / gamma_i`` (``gamma`` on the simplex),
    i.e. ridge with ``alpha`` on the features of space ``i`` scaled by
    ``sqrt(gamma_i)`` (himalaya's ``BandedRidgeCV`` parametrisation).
    """

    coef: np.ndarray  # [p, n_targets] on the unscaled features
    intercept: np.ndarray  # [n_targets]
    alpha: np.ndarray  # [n_targets]
    gamma: np.ndarray  # [n_spaces, n_targets], columns sum to 1
    cv_score: np.ndarray  # [n_targets] best criterion (mean over folds)
    spaces: list[slice]
    gammas_searched: np.ndarray  # [n_iter, n_spaces]

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype=self.coef.dtype) @ self.coef + self.intercept).astype(
            self.coef.dtype
        )

    def predict_split(self, X: np.ndarray) -> np.ndarray:
        """Per-space predictions [n_spaces, n, T] (without the intercept); they sum to
        ``predict(X) - intercept``."""
        X = np.asarray(X, dtype=self.coef.dtype)
        return np.stack([X[:, sl] @ self.coef[sl] for sl in self.spaces])


def space_slices(sizes: Sequence[int]) -> list[slice]:
    """Column slices of consecutive feature spaces of the given widths."""
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def simplex_samples(
    n_spaces: int, n_iter: int, concentration: Sequence[float] = (0.1, 1.0), seed: int = 0
) -> np.ndarray:
    """Feature-space weights to search: the uniform point first, then Dirichlet draws
    cycling through ``concentration`` (small values reach the corners, i.e. one space
    dominating), as in himalaya's random search. Deterministic for a seed."""
    rng = np.random.default_rng(seed)
    out = np.empty((n_iter, n_spaces))
    for i in range(n_iter):
        out[i] = rng.dirichlet(np.full(n_spaces, concentration[i % len(concentration)]))
    out[0] = 1.0 / n_spaces
    return out


def banded_ridge_cv(
    X: np.ndarray,
    Y: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    spaces: Sequence[slice],
    alphas: Sequence[float],
    *,
    n_iter: int = 20,
    concentration: Sequence[float] = (0.1, 1.0),
    seed: int = 0,
    score: str = "neg_mse",
    chunk_size: int | None = None,
    backend: str | Backend = "auto",
    dtype: str = "float32",
) -> BandedRidgeCVResult:
    """Banded ridge with per-target space weights and alpha chosen by CV (random search).

    For each candidate ``gamma`` (see :func:`simplex_samples`) the spaces are
    scaled by ``sqrt(gamma_i)`` and :func:`ridge_cv` scores every alpha; each target
    keeps the (gamma, alpha) with the best mean CV score (a later gamma must beat it by
    more than float rounding), and its refit weights mapped back to the unscaled
    features.
    """
    X = np.asarray(X)
    spaces = list(spaces)
    covered = np.zeros(X.shape[1], dtype=int)
    for sl in spaces:
        covered[sl] += 1
    if np.any(covered != 1):
        raise ValueError("feature spaces must cover every column of X exactly once")
    be = get_backend(backend, dtype) if isinstance(backend, str) else backend
    gammas = simplex_samples(len(spaces), n_iter, concentration, seed)
    n_targets = np.shape(Y)[1]
    best = np.full(n_targets, -np.inf)
    coef = np.zeros((X.shape[1], n_targets), dtype=np.dtype(dtype))
    intercept = np.zeros(n_targets, dtype=np.dtype(dtype))
    alpha = np.full(n_targets, np.nan)
    gamma = np.full((len(spaces), n_targets), np.nan)
    eps = np.finfo(np.dtype(dtype)).eps
    for g in gammas:
        scale = np.empty(X.shape[1])
        for sl, gi in zip(spaces, g, strict=True):
            scale[sl] = np.sqrt(gi)
        fit = ridge_cv(
            X * scale.astype(X.dtype),
            Y,
            splits,
            alphas,
            score=score,
            chunk_size=chunk_size,
            backend=be,
            dtype=dtype,
        )
        score_g = fit.cv_scores.max(axis=0)
        better = score_g > best + eps
        if not better.any():
            continue
        best[better] = score_g[better]
        coef[:, better] = fit.coef[:, better] * scale[:, None].astype(coef.dtype)
        intercept[better] = fit.intercept[better]
        alpha[better] = fit.alpha[better]
        gamma[:, better] = g[:, None]
    return BandedRidgeCVResult(coef, intercept, alpha, gamma, best, spaces, gammas)


def split_r2(y_true: np.ndarray, split_predictions: np.ndarray) -> np.ndarray:
    """Each space's share of R² (product measure; sums to the joint R²).

    ``r2_i = sum_t (2 yhat_i y - yhat_i yhat) / sum_t y^2`` with ``y`` centred on its own
    mean and ``yhat = sum_i yhat_i`` (himalaya's ``r2_score_split``). Args:
    ``y_true`` [n, T]; ``split_predictions`` [n_spaces, n, T] centred the same way
    (their intercept removed). Targets with constant ``y_true`` get NaN.
    """
    y = np.asarray(y_true, dtype=np.float64)
    y = y - y.mean(axis=0)
    parts = np.asarray(split_predictions, dtype=np.float64)
    parts = parts - parts.mean(axis=1, keepdims=True)
    total = parts.sum(axis=0)
    sst = (y**2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = ((2 * parts * y[None] - parts * total[None]).sum(axis=1)) / sst
    r2[:, sst == 0] = np.nan
    return r2


# --------------------------------------------------------------------------- noise ceiling


def explainable_variance(repeats: np.ndarray, *, bias_correction: bool = True) -> np.ndarray:
    """Share of a single trial's variance that repeats across presentations, per target.

    ``repeats`` [n_repeats, n_times, n_targets]: responses to the same stimulus
    sequence. ``ev = var_t(mean over repeats) / mean over repeats of var_t``; the
    mean of R noisy repeats keeps 1/R of the noise variance, so with the bias
    correction ``ev - (1 - ev) / (R - 1)`` the estimate is unbiased for
    ``signal variance / (signal + noise variance)`` (voxelwise tutorials,
    Sahani & Linden 2003). It is the ceiling of a single-trial R². Constant
    targets get NaN.
    """
    data = np.asarray(repeats, dtype=np.float64)
    if data.ndim != 3 or data.shape[0] < 2:
        raise ValueError(f"need [n_repeats >= 2, n_times, n_targets], got shape {data.shape}")
    mean_var = data.var(axis=1, ddof=1).mean(axis=0)
    var_mean = data.mean(axis=0).var(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ev = var_mean / mean_var
    if bias_correction:
        ev = ev - (1.0 - ev) / (data.shape[0] - 1)
    ev[mean_var == 0] = np.nan
    return ev


__all__ = [
    "SCORES",
    "BandedRidgeCVResult",
    "banded_ridge_cv",
    "explainable_variance",
    "simplex_samples",
    "space_slices",
    "split_r2",
    "NumpyBackend",
    "RidgeCVResult",
    "TorchBackend",
    "folds_from_splits",
    "get_backend",
    "ridge_cv",
]
