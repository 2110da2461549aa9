"""Scores shared by every model: Pearson r per target and the grouping of repeats.

One implementation each, used by the linear encoders (:mod:`neurovid.encoding`), the
deep encoders (:mod:`neurovid.deep.metrics`, :mod:`neurovid.deep.retina`,
:mod:`neurovid.deep.lstm`) and the demo's simulator (:mod:`neurovid.demo.responses`).

NaN convention: a column whose recorded or predicted values are constant has no
correlation, so its r is NaN (never 0, which would read as "no relation" and pull
averages down). Callers that follow another convention (the Sensorium challenge
sets it to 0) say so where they do.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Sums of squared deviations at or below this share of the column's squared scale
#: (times its length) count as constant: rounding noise of a constant column.
CONSTANT_TOLERANCE = 1e-24


def _constant(centred: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Columns whose spread is zero or rounding noise (per column, bool)."""
    scale = np.abs(values).max(axis=0, initial=0.0) ** 2 * len(values)
    return ~((centred**2).sum(axis=0) > CONSTANT_TOLERANCE * np.maximum(scale, 1e-300))


def pearson_r(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Pearson r of each column of two [T, N] arrays (float64), over the T samples.

    NaN where either column is constant (see the module docstring) or holds NaN.
    """
    yt = np.asarray(y_true, dtype=np.float64)
    yp = np.asarray(y_pred, dtype=np.float64)
    if yt.shape != yp.shape or yt.ndim != 2:
        raise ValueError(
            f"recorded {yt.shape} and predicted {yp.shape} must be equal [T, N] shapes"
        )
    tc = yt - yt.mean(axis=0)
    pc = yp - yp.mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (tc * pc).sum(axis=0) / np.sqrt((tc**2).sum(axis=0) * (pc**2).sum(axis=0))
    r[_constant(tc, yt) | _constant(pc, yp)] = np.nan
    return r


def repeat_groups(keys: Sequence[object], min_size: int = 1) -> list[list[int]]:
    """Indices grouped by equal stimulus key (repeats), in first-appearance order.

    Keys compare as strings. Groups with fewer than ``min_size`` members are
    dropped (``min_size=2``: only the stimuli that were repeated).
    """
    groups: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        groups.setdefault(str(key), []).append(index)
    return [members for members in groups.values() if len(members) >= min_size]
