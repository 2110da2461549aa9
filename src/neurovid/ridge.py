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
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neurovid.hardware import gpu_visible

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
    if "torch" not in sys.modules and not gpu_visible():
        return NumpyBackend(dtype)  # importing torch only to find no GPU costs ~1.6 s a job
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

    With one design shared by all folds, the solver needs every fold's training
    rows to be all the other rows (as in K-fold or leave-one-run-out CV),
    because it derives the training cross products from the totals.
    """
    folds = []
    seen = np.zeros(n_samples, dtype=np.int64)
    for k, (train, test) in enumerate(splits):
        train, test = _checked_split(k, train, test, n_samples)
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


def _checked_split(
    k: int, train: np.ndarray, test: np.ndarray, n_samples: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted int64 (train, test) rows of fold ``k``: non-empty, disjoint, within range."""
    train = np.sort(np.asarray(train, dtype=np.int64))
    test = np.sort(np.asarray(test, dtype=np.int64))
    if len(test) == 0 or len(train) == 0:
        raise ValueError(f"fold {k} has an empty training or validation set")
    if np.intersect1d(train, test).size:
        raise ValueError(f"fold {k}: rows are both trained and validated on")
    if min(train[0], test[0]) < 0 or max(train[-1], test[-1]) >= n_samples:
        raise ValueError(f"fold {k}: row indices outside 0..{n_samples - 1}")
    return train, test


# --------------------------------------------------------------------------- route choice

#: Costs in units of multiply-adds of matrix-product (gemm) work, measured on the
#: project's 2-core machines (numpy, float64, 2 BLAS threads): a symmetric
#: eigendecomposition with vectors of an m x m matrix takes 2.0 m³ at m = 1000, 3.6 m³ at
#: 2000 and 5.2 m³ at 3500 (its tridiagonal reduction is memory-bound and scales worse
#: than gemm; see :func:`eigh_cost`); a Cholesky factorization ~m³/3.
CHOLESKY_COST = 1.0 / 3.0
#: The Cholesky routes solve for the targets in float64 on the host: twice the time of
#: the float32 products of the eigen routes per multiply-add.
FLOAT64_COST = 2.0
#: CV routes: eigendecomposition of the Gram matrix (``blocks``: X'Y blocks; primal)
#: or of the kernel (``scores``: principal scores; dual), or one Cholesky
#: factorization per alpha (``cholesky``; primal or dual, whichever is smaller).
ROUTES = ("blocks", "scores", "cholesky")


def eigh_cost(m: int) -> float:
    """Multiply-adds (gemm units) of a symmetric eigendecomposition of an m x m matrix:
    ``2 (m / 1000)^0.8 m³`` from m = 1000 up, fit to the timings above (2 m³ below)."""
    return 2.0 * max(m / 1000.0, 1.0) ** 0.8 * float(m) ** 3


def _validation_factor_cost(n_val: int, r: int) -> float:
    """H = (Xv V)'(Xv V) (a symmetric product) and its factor: a Cholesky factorization, or
    an eigendecomposition when H is rank-deficient (fewer validation rows than r)."""
    factor = eigh_cost(r) if n_val < r else CHOLESKY_COST * r**3
    return n_val * r * r / 2 + factor


def route_costs(
    n_train: int,
    n_val: int,
    n_features: int,
    n_targets: int,
    n_alphas: int,
    shared: bool = True,
) -> dict[str, float]:
    """Multiply-adds of scoring one fold for every target and alpha, per route.

    The cost of a fit follows the work: a decomposition shared by all targets and
    alphas (eigen routes: the Gram matrix or kernel, its eigendecomposition, the
    validation rows' factor, and with a design of the fold's own (``shared=False``)
    the training rows' principal scores) against one factorization per alpha
    (Cholesky), plus the per-target products of each. With a few targets the
    factorizations dominate; with many the per-target products do.
    """
    p, n_t, n_v, t, a = n_features, n_train, n_val, n_targets, n_alphas
    r_primal, r_dual = p, min(p, n_t)
    m = min(p, n_t)
    cholesky_per_target = FLOAT64_COST * (p * n_t + a * (2 * m * m + n_v * m))
    return {
        # Gram, its eigh, Xv V and its factor, (training scores), V'X'Y from blocks, r² per alpha
        "blocks": n_t * p * p / 2
        + eigh_cost(p)
        + n_v * p * r_primal
        + _validation_factor_cost(n_v, r_primal)
        + (0 if shared else n_t * p * r_primal)
        + t * (4 * r_primal * p + a * r_primal**2),
        # kernel, its eigh, V, the training and validation scores and their factor, Z'Y, r² per alpha
        "scores": n_t * n_t * p / 2
        + eigh_cost(n_t)
        + (2 * n_t + n_v) * p * r_dual
        + _validation_factor_cost(n_v, r_dual)
        + t * ((n_t + n_v) * r_dual + a * r_dual**2),
        # the smaller of Gram and kernel, a factorization per alpha, the solves and predictions
        "cholesky": n_t * p * m / 2
        + a * CHOLESKY_COST * m**3
        + (n_v * n_t * p if p > n_t else 0)
        + t * cholesky_per_target,
    }


def refit_costs(n_samples: int, n_features: int, n_targets: int, n_alphas: int) -> dict[str, float]:
    """Multiply-adds of the refit on all rows: one eigendecomposition shared by every
    alpha (``eigen``) or one Cholesky factorization per alpha in use (``cholesky``)."""
    p, n, t = n_features, n_samples, n_targets
    m = min(p, n)
    return {
        "eigen": eigh_cost(m) + t * (2 * p * n + 2 * m * p),
        "cholesky": n_alphas * CHOLESKY_COST * m**3 + t * FLOAT64_COST * (2 * p * n + 2 * m * m),
    }


def _cheapest(costs: dict[str, float]) -> str:
    return min(costs, key=lambda name: (costs[name], name))


# --------------------------------------------------------------------------- per-fold scorers


@dataclass
class _Basis:
    """One fold's eigendecomposition, shared by every target chunk and every alpha."""

    test: np.ndarray  # validation rows
    train: np.ndarray  # training rows
    lam: np.ndarray  # [r] eigenvalues of the centred training Gram (float64)
    V: Any  # [p, r] backend array
    factor: Any  # [r, r] upper-triangular L' (or dense [q, r]) with ||factor q||^2 = ||Xv V q||^2
    factor_upper: bool
    a1: Any  # [r] V' sum over validation rows of (x - x_mean_t)
    Vx: Any  # [r] V' x_mean_t
    Vsx: Any  # [r] V' sum over validation rows of x
    complement: bool  # training rows are all rows not validated on (shared design)
    # Principal scores of the training and validation rows (scores route, and every
    # fold with a design of its own).
    Zt: Any = None  # [n_t, r]
    Zv: Any = None  # [n_v, r]


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


def _centred_rows(
    X: np.ndarray, train: np.ndarray, test: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training and validation rows (float64) centred on the training mean, and that mean."""
    Xt = np.asarray(X[train], dtype=np.float64)
    x_mean_t = Xt.mean(axis=0)
    return Xt - x_mean_t, np.asarray(X[test], dtype=np.float64) - x_mean_t, x_mean_t


def _basis(
    be: Backend, X: np.ndarray, train: np.ndarray, test: np.ndarray, dual: bool, complement: bool
) -> _Basis:
    """Decompose the centred training design of one fold (float64 on the host)."""
    Xtc, Xvc, x_mean_t = _centred_rows(X, train, test)
    lam, V = _decompose(Xtc, dual)
    Av = Xvc @ V
    factor, upper = _psd_factor(Av.T @ Av)
    sx_v = np.asarray(X[test], dtype=np.float64).sum(axis=0)
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
        complement=complement,
    )
    if dual or not complement:
        basis.Zt = be.asarray(Xtc @ V)
        basis.Zv = be.asarray(Av)
    return basis


@dataclass
class _CholeskyFold:
    """One fold scored by a Cholesky factorization per alpha (host, float64).

    Primal (features <= training rows): ``(Xt'Xt + alpha I) beta = Xt'Yt``.
    Dual: ``(Xt Xt' + alpha I) c = Yt`` and ``beta = Xt' c``, so validation
    predictions are ``Xv Xt' c``. Both on rows centred on the training mean.
    """

    train: np.ndarray
    test: np.ndarray
    Xtc: np.ndarray
    Xvc: np.ndarray
    system: np.ndarray  # Gram (primal) or kernel (dual), float64
    dual: bool

    @classmethod
    def build(cls, X: np.ndarray, train: np.ndarray, test: np.ndarray) -> _CholeskyFold:
        Xtc, Xvc, _ = _centred_rows(X, train, test)
        dual = Xtc.shape[1] > Xtc.shape[0]
        system = Xtc @ Xtc.T if dual else Xtc.T @ Xtc
        return cls(train, test, Xtc, Xvc, system, dual)

    def predictions(self, Ytc: np.ndarray, alpha: float) -> np.ndarray:
        """Validation predictions (without the intercept) at ``alpha`` for centred targets."""
        from scipy.linalg import cho_factor, cho_solve

        lhs = _plus_diagonal(self.system, alpha)
        if self.dual:
            return self.Xvc @ (self.Xtc.T @ cho_solve(cho_factor(lhs), Ytc))
        return self.Xvc @ cho_solve(cho_factor(lhs), self.Xtc.T @ Ytc)


def _plus_diagonal(M: np.ndarray, alpha: float) -> np.ndarray:
    """``M + alpha I`` (a new array)."""
    out = M.copy()
    out.flat[:: len(M) + 1] += alpha
    return out


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
    Yt = None if basis.complement else _rows(be, Yc, basis.train)
    y_mean_t = (sy - sy_f) / n_t if Yt is None else Yt.sum(0) / n_t
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
        bt = basis.Zt.T @ (_rows(be, Yc, basis.train) if Yt is None else Yt)
        bv = basis.Zv.T @ Yv
        be.add_outer(bv, basis.a1, y_mean_t, -1.0)
    sum_yv = sy_f - n_v * y_mean_t
    ss_yv = syy_f - 2 * y_mean_t * sy_f + n_v * y_mean_t * y_mean_t
    ss_own = syy_f - sy_f * sy_f / n_v
    return _ChunkStats(bt, bv, sum_yv, ss_yv, ss_own)


def _criterion(
    score: str, sse: np.ndarray, cross: np.ndarray, quad: np.ndarray, sums: tuple[np.ndarray, ...]
) -> np.ndarray:
    """A validation criterion from ``sse``, ``<yhat, y>``, ``||yhat||²`` and the target sums.

    ``sums`` = (n_v, sum of yhat, sum of y, ||y||², ss of y around its own mean), with
    ``y`` centred on the training mean and ``yhat`` without the intercept.
    """
    n_v, sum_hat, sum_yv, ss_yv, ss_own = sums
    if score == "neg_mse":
        return -sse / n_v
    with np.errstate(divide="ignore", invalid="ignore"):
        if score == "r2":
            return np.where(ss_own > 0, 1.0 - sse / ss_own, 0.0)
        cov = cross - sum_hat * sum_yv / n_v
        var_hat = quad - sum_hat**2 / n_v
        var_y = ss_yv - sum_yv**2 / n_v
        r = cov / np.sqrt(var_hat * var_y)
    return np.where(np.isfinite(r), r, 0.0)


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
    ss_own = be.to_numpy(st.ss_yv_own).astype(np.float64)
    sum_yv = be.to_numpy(st.sum_yv).astype(np.float64)
    sum_hat = np.zeros_like(cross)
    if score == "pearson":
        sum_hat = be.to_numpy((Gb * basis.a1[None, :]) @ st.bt).astype(np.float64)
    for j in range(len(alphas)):
        # ||Xv V diag(g) bt||^2 = ||F diag(g) bt||^2: scaling F's columns (r x r) instead of
        # bt (r x c) keeps F triangular and saves a pass over the chunk.
        scaled = basis.factor * Gb[j][None, :]
        fq = be.upper_matmul(scaled, st.bt) if basis.factor_upper else scaled @ st.bt
        quad = be.to_numpy(be.sqnorm_cols(fq)).astype(np.float64)  # ||yhat||^2
        sse = ss_yv - 2.0 * cross[j] + quad
        out[j] = _criterion(score, sse, cross[j], quad, (n_v, sum_hat[j], sum_yv, ss_yv, ss_own))
    return out


def _cholesky_scores(
    fold: _CholeskyFold, Yc: np.ndarray, alphas: np.ndarray, score: str
) -> np.ndarray:
    """Validation score of every alpha for a chunk of (globally centred) targets, from the
    explicit validation predictions of each alpha's solution."""
    Y = np.asarray(Yc, dtype=np.float64)
    y_mean_t = Y[fold.train].mean(axis=0)
    Ytc, Yv = Y[fold.train] - y_mean_t, Y[fold.test] - y_mean_t
    n_v = len(fold.test)
    sum_yv, ss_yv = Yv.sum(0), (Yv * Yv).sum(0)
    ss_own = ((Yv - Yv.mean(0)) ** 2).sum(0)
    out = np.empty((len(alphas), Y.shape[1]))
    for j, alpha in enumerate(alphas):
        pred = fold.predictions(Ytc, float(alpha))
        cross, quad = (pred * Yv).sum(0), (pred * pred).sum(0)
        sse = ((Yv - pred) ** 2).sum(0)
        out[j] = _criterion(score, sse, cross, quad, (n_v, pred.sum(0), sum_yv, ss_yv, ss_own))
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
    route: str = "blocks"  # CV route of the folds: blocks | scores | cholesky (or "mixed")
    refit_route: str = "eigen"  # eigen | cholesky

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype=self.coef.dtype) @ self.coef + self.intercept).astype(
            self.coef.dtype
        )


def _best_alpha(scores: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Index of the best alpha per target; ties go to the larger alpha (himalaya's slope)."""
    return np.argmax(scores + (np.log(alphas) * 1e-10)[:, None], axis=0)


@dataclass
class _Fold:
    """One CV fold: its rows, its design and how it is scored."""

    train: np.ndarray
    test: np.ndarray
    route: str
    shared: bool  # scored on the shared design X (blocks route may reuse X'Y totals)
    model: _Basis | _CholeskyFold


def _plan_folds(
    be: Backend,
    Xc: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    fold_designs: Sequence[np.ndarray] | None,
    n_targets: int,
    n_alphas: int,
    route: str,
) -> list[_Fold]:
    """Each fold's scorer, on its own route (``route="auto"``: the cheapest for its shapes)."""
    n = Xc.shape[0]
    if fold_designs is None:
        folds_from_splits(splits, n)  # shared design: validation sets partition the rows
    elif len(fold_designs) != len(splits):
        raise ValueError(f"{len(fold_designs)} fold designs for {len(splits)} splits")
    folds = []
    for k, (train, test) in enumerate(splits):
        train, test = _checked_split(k, train, test, n)
        shared = fold_designs is None
        design = Xc if shared else np.asarray(fold_designs[k])
        if design.ndim != 2 or design.shape[0] != n:
            raise ValueError(f"fold {k}: design {design.shape} must have the {n} rows of Y")
        chosen = route
        if route == "auto":
            costs = route_costs(
                len(train), len(test), design.shape[1], n_targets, n_alphas, shared=shared
            )
            if design.shape[1] > len(train):
                costs.pop("blocks")  # the primal Gram would be rank-deficient and larger
            chosen = _cheapest(costs)
        if chosen == "cholesky":
            model: _Basis | _CholeskyFold = _CholeskyFold.build(design, train, test)
        else:
            model = _basis(be, design, train, test, chosen == "scores", complement=shared)
        folds.append(_Fold(train, test, chosen, shared, model))
    return folds


def ridge_cv(
    X: np.ndarray,
    Y: np.ndarray,
    splits: Sequence[tuple[np.ndarray, np.ndarray]],
    alphas: Sequence[float],
    *,
    fold_designs: Sequence[np.ndarray] | None = None,
    score: str = "neg_mse",
    chunk_size: int | None = None,
    backend: str | Backend = "auto",
    dtype: str = "float32",
    route: str = "auto",
    refit: str = "auto",
) -> RidgeCVResult:
    """Ridge with a per-target alpha chosen by CV, then refit on all rows.

    Args:
        X: design [n, p] of the refit (and of every fold without ``fold_designs``).
        Y: targets [n, T].
        splits: (train, validation) index pairs. Without ``fold_designs`` the
            validation sets must partition the rows and each training set be the
            other rows (K-fold, leave-one-run-out).
        alphas: positive regularisation strengths searched for every target.
        fold_designs: optional design [n, p_k] per split, used to score that split
            (e.g. features reduced by a PCA fit on the split's training rows only,
            so nothing of the validation rows enters the model scored on them);
            its splits may leave rows out of both sets (e.g. a gap between halves).
        score: criterion averaged over folds: ``neg_mse`` (himalaya's default),
            ``r2`` or ``pearson``.
        chunk_size: targets per chunk (memory bound; results do not depend on it).
        backend: ``auto`` | ``numpy`` | ``torch`` | ``torch_cuda`` or a backend object.
        dtype: ``float32`` (default) or ``float64`` (checks).
        route: ``auto`` (per fold, the cheapest for its shapes, target and alpha
            counts: :func:`route_costs`) | ``blocks`` | ``scores`` | ``cholesky``.
            All routes are exact.
        refit: ``auto`` (one eigendecomposition or one Cholesky factorization per
            alpha in use, whichever costs less: :func:`refit_costs`) | ``eigen`` |
            ``cholesky``.

    An intercept is fitted (X and Y centred on the training rows of each fold).
    """
    if score not in SCORES:
        raise ValueError(f"unknown score {score!r}; use one of {SCORES}")
    if route != "auto" and route not in ROUTES:
        raise ValueError(f"unknown route {route!r}; use auto or one of {ROUTES}")
    be = get_backend(backend, dtype) if isinstance(backend, str) else backend
    X, Y = np.asarray(X), np.asarray(Y)
    if X.ndim != 2 or Y.ndim != 2 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"X {X.shape} and Y {Y.shape} must be 2-D with the same rows")
    alphas = np.asarray(alphas, dtype=np.float64)
    if alphas.ndim != 1 or len(alphas) == 0 or np.any(alphas <= 0):
        raise ValueError(f"alphas must be a non-empty list of positive numbers, got {alphas}")
    n_targets = Y.shape[1]
    # Global centring in float64 keeps the float32 cross products free of large offsets;
    # the fold-wise centring is then exact algebra on sums.
    x_mean = X.mean(axis=0, dtype=np.float64)
    Xc = X.astype(np.float64) - x_mean
    folds = _plan_folds(be, Xc, splits, fold_designs, n_targets, len(alphas), route)
    chunk = int(chunk_size or DEFAULT_CHUNK)
    starts = list(range(0, n_targets, chunk))

    cv_scores = np.empty((len(alphas), n_targets))
    single: Any = None  # one chunk: its centred targets and X'Y are kept for the refit
    for start in starts:
        cols = slice(start, min(start + chunk, n_targets))
        Yc = _centred_chunk(be, Y[:, cols])
        Sfs, S = _xy_totals(be, Xc, folds, Yc)
        cv_scores[:, cols] = _chunk_cv_scores(be, folds, Yc, alphas, score, Sfs, S)
        single = (Yc, S)
    best = _best_alpha(cv_scores, alphas)

    if refit not in ("auto", "eigen", "cholesky"):
        raise ValueError(f"unknown refit {refit!r}; use auto, eigen or cholesky")
    refit_plan = _Refit.plan(be, Xc, len(np.unique(best)), n_targets, refit)
    coef = np.empty((X.shape[1], n_targets), dtype=np.dtype(dtype))
    intercept = np.empty(n_targets, dtype=np.dtype(dtype))
    for start in starts:
        cols = slice(start, min(start + chunk, n_targets))
        if len(starts) == 1:
            Yc, S = single
        else:
            Yc = _centred_chunk(be, Y[:, cols])
            S = _xy_totals(be, Xc, folds, Yc)[1]
        beta = refit_plan.solve(Yc, S, alphas, best[cols])
        coef[:, cols] = beta
        y_mean = Y[:, cols].mean(axis=0, dtype=np.float64)
        intercept[cols] = y_mean - (beta.T @ x_mean.astype(beta.dtype)).astype(np.float64)
    used = sorted({f.route for f in folds})
    return RidgeCVResult(
        coef=coef,
        intercept=intercept,
        alpha=alphas[best],
        cv_scores=cv_scores,
        alphas=alphas,
        backend=f"{be.name}:{be.device}",
        route=used[0] if len(used) == 1 else "mixed",
        refit_route=refit_plan.route,
    )


def _centred_chunk(be: Backend, Y: np.ndarray) -> Any:
    """A chunk of targets centred on its global mean, as a backend array."""
    y_mean = Y.mean(axis=0, dtype=np.float64)
    return be.asarray(Y - y_mean.astype(Y.dtype))


def _xy_totals(be: Backend, Xc: np.ndarray, folds: Sequence[_Fold], Yc: Any) -> tuple[dict, Any]:
    """X'Y of each blocks-route fold's validation rows, and X'Y of all rows (None if unused).

    With the shared design validated once per row, the total is the sum of the
    fold blocks (the training block of a fold is the total minus its own).
    """
    blocks = [f for f in folds if f.route == "blocks" and f.shared]
    if not blocks:
        return {}, None
    Xc_be = be.asarray(Xc)
    Sfs = {id(f): _rows(be, Xc_be, f.test).T @ _rows(be, Yc, f.test) for f in blocks}
    if len(blocks) < len(folds):
        return Sfs, Xc_be.T @ Yc
    parts = list(Sfs.values())
    total = _copy(be, parts[0])
    for part in parts[1:]:
        total += part
    return Sfs, total


def _chunk_cv_scores(
    be: Backend,
    folds: Sequence[_Fold],
    Yc: Any,
    alphas: np.ndarray,
    score: str,
    Sfs: dict,
    S: Any,
) -> np.ndarray:
    """Mean validation score over folds of every alpha for a chunk of targets -> [a, c]
    (``Sfs``, ``S``: :func:`_xy_totals` of the chunk)."""
    sy = Yc.sum(0)
    scores = np.zeros((len(alphas), Yc.shape[1]))
    for fold in folds:
        if fold.route == "cholesky":
            scores += _cholesky_scores(fold.model, be.to_numpy(Yc), alphas, score)
            continue
        Yv = _rows(be, Yc, fold.test)
        st = _chunk_stats(be, fold.model, Yc, Yv, Sfs.get(id(fold)), S, sy)
        scores += _fold_scores(be, fold.model, st, alphas, score)
    return scores / len(folds)


def _copy(be: Backend, a: Any) -> Any:
    return a.clone() if be.name == "torch" else a.copy()


@dataclass
class _Refit:
    """The refit on all rows at each target's alpha: ``beta = (Xc'Xc + alpha I)^-1 Xc'Yc``."""

    be: Backend
    Xc: np.ndarray
    route: str
    lam: np.ndarray | None = None  # eigen route
    V: Any = None
    factors: dict[float, Any] = field(default_factory=dict)  # cholesky route, per alpha

    @classmethod
    def plan(cls, be: Backend, Xc: np.ndarray, n_used: int, n_targets: int, route: str) -> _Refit:
        costs = refit_costs(Xc.shape[0], Xc.shape[1], n_targets, n_used)
        chosen = _cheapest(costs) if route == "auto" else route
        refit = cls(be, Xc, chosen)
        if chosen == "eigen":
            refit.lam, V = _decompose(Xc, Xc.shape[1] > Xc.shape[0])
            refit.V = be.asarray(V)
        return refit

    def solve(self, Yc: Any, S: Any, alphas: np.ndarray, best: np.ndarray) -> np.ndarray:
        """Coefficients [p, c] of a chunk (``S`` = Xc'Yc when already computed)."""
        be = self.be
        if self.route == "cholesky":
            return self._solve_cholesky(be.to_numpy(Yc).astype(np.float64), alphas, best)
        Xc_be = be.asarray(self.Xc)
        b_all = self.V.T @ (S if S is not None else Xc_be.T @ Yc)
        # Each target's column of 1 / (lam + alpha): gathered from the small [r, n_alphas] table.
        table = be.asarray(1.0 / (self.lam[:, None] + alphas[None, :]))
        b_all *= table[:, be.asarray(best, dtype=np.int64) if be.name == "torch" else best]
        return be.to_numpy(self.V @ b_all)

    def _solve_cholesky(self, Yc: np.ndarray, alphas: np.ndarray, best: np.ndarray) -> np.ndarray:
        from scipy.linalg import cho_factor, cho_solve

        Xc = self.Xc
        dual = Xc.shape[1] > Xc.shape[0]
        system = None
        rhs = Yc if dual else Xc.T @ Yc
        beta = np.empty((Xc.shape[1], Yc.shape[1]))
        for j in np.unique(best):
            alpha = float(alphas[j])
            if alpha not in self.factors:
                system = (Xc @ Xc.T if dual else Xc.T @ Xc) if system is None else system
                self.factors[alpha] = cho_factor(_plus_diagonal(system, alpha))
            cols = np.flatnonzero(best == j)
            solution = cho_solve(self.factors[alpha], rhs[:, cols])
            beta[:, cols] = Xc.T @ solution if dual else solution
        return beta


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
    spaces: list[slice | np.ndarray]
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
    spaces: Sequence[slice | np.ndarray],
    alphas: Sequence[float],
    *,
    fold_designs: Sequence[tuple[np.ndarray, Sequence[slice | np.ndarray]]] | None = None,
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
    features. ``spaces``: the columns of each space in X; ``fold_designs``: optional
    ``(design, spaces)`` per split to score it on (see :func:`ridge_cv`).
    """
    X = np.asarray(X)
    spaces = list(spaces)
    _check_spaces(X.shape[1], spaces)
    for design, fold_spaces in fold_designs or []:
        _check_spaces(np.shape(design)[1], list(fold_spaces))
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
        scale = _space_scale(X.shape[1], spaces, g)
        scaled_folds = None
        if fold_designs is not None:
            scaled_folds = [
                np.asarray(D)
                * _space_scale(np.shape(D)[1], list(sp), g).astype(np.asarray(D).dtype)
                for D, sp in fold_designs
            ]
        fit = ridge_cv(
            X * scale.astype(X.dtype),
            Y,
            splits,
            alphas,
            fold_designs=scaled_folds,
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


def _check_spaces(n_columns: int, spaces: Sequence[slice | np.ndarray]) -> None:
    covered = np.zeros(n_columns, dtype=int)
    for sl in spaces:
        covered[sl] += 1
    if np.any(covered != 1):
        raise ValueError("feature spaces must cover every column of X exactly once")


def _space_scale(n_columns: int, spaces: Sequence[slice | np.ndarray], g: np.ndarray) -> np.ndarray:
    """Column scales ``sqrt(gamma_i)`` of each space's columns."""
    scale = np.empty(n_columns)
    for sl, gi in zip(spaces, g, strict=True):
        scale[sl] = np.sqrt(gi)
    return scale


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
