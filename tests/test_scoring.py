"""One Pearson r and one repeat grouping for every model (neurovid.scoring)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from neurovid.scoring import pearson_r, repeat_groups


def test_pearson_r_matches_scipy_per_column() -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=(200, 4))
    p = 0.5 * y + rng.normal(size=(200, 4))
    expected = [stats.pearsonr(y[:, j], p[:, j]).statistic for j in range(4)]
    np.testing.assert_allclose(pearson_r(y, p), expected, rtol=1e-12)


def test_a_constant_column_has_no_correlation() -> None:
    y = np.column_stack([np.arange(10.0), np.full(10, 3.0), np.arange(10.0)])
    p = np.column_stack([np.arange(10.0) ** 2, np.arange(10.0), np.full(10, 0.1) * 7])
    r = pearson_r(y, p)
    assert r[0] == pytest.approx(stats.pearsonr(y[:, 0], p[:, 0]).statistic)
    # recorded constant, predicted constant (0.7 is not exact in binary: rounding noise)
    assert np.isnan(r[1]) and np.isnan(r[2])
    with pytest.raises(ValueError, match=r"equal \[T, N\] shapes"):
        pearson_r(y, p[:, :2])


def test_repeat_groups_in_first_appearance_order() -> None:
    keys = ["b@0", "a@0", "b@0", "c@0", "a@0"]
    assert repeat_groups(keys) == [[0, 2], [1, 4], [3]]
    assert repeat_groups(keys, min_size=2) == [[0, 2], [1, 4]]
    assert repeat_groups([1, "1"]) == [[0, 1]]  # keys compare as strings
