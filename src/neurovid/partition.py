"""Variance partitioning between an encoding model's feature spaces (de Heer et al. 2017).

A model with feature spaces ``S = {A, B, ...}`` is fit jointly and once without each
space (the same pipeline on the other spaces' feature columns, with the same outer
folds and its own nested choice of alpha: :func:`neurovid.encoding.encode_subject`).
From the held-out R² of those fits, per target:

* ``unique_i = R²_S - R²_{S \\ i}``: the variance only space ``i`` explains;
* ``shared = R²_S - sum_i unique_i``: the rest of the joint model's variance, explained
  by two or more spaces alike. For two spaces this is the closed form
  ``R²_A + R²_B - R²_AB`` (the model without B is the model of A alone).

Held-out R² can be negative and partitions are differences of held-out scores, so a
unique or shared share can be slightly negative for a target nothing predicts; they
are reported as computed (no clipping), as in the field's tutorials.

This module only holds the decision and the arithmetic (numpy only): the workflow
(``rules/``) imports it when it builds the DAG, to know which maps a model has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from neurovid.errors import InputError

#: Estimators whose fits are partitioned (closed-form linear fits; LASSO and the LSTM
#: would multiply their long fits by the number of spaces).
PARTITION_ESTIMATORS = ("ridge", "banded_ridge")

#: ``variance_partitioning`` when a model with two or more spaces does not set it.
#: Measured (bench/partition.py, two spaces, one thread): joint + leave-one-space-out fits
#: take x1.5 (ridge) to x1.7 (banded ridge) the joint fit's time on an fMRI subject and
#: x1.9 (ridge) on a mouse: the sub-models skip the final refit and fit narrower designs.
DEFAULT = True


def partitioned_spaces(name: str, model: Mapping[str, Any]) -> list[str]:
    """The feature spaces whose unique variance model ``name`` reports ([] for none).

    A ridge or banded ridge model with two or more ``features`` is partitioned unless
    it sets ``variance_partitioning: false``.

    Raises:
        InputError: ``variance_partitioning: true`` on a model that cannot be
            partitioned (one feature space, or LASSO / LSTM).
    """
    spaces = list(model["features"])
    wanted = model.get("variance_partitioning")
    possible = model["estimator"] in PARTITION_ESTIMATORS and len(set(spaces)) >= 2
    if wanted and not possible:
        raise InputError(
            "config.yaml",
            f"model {name!r} ({model['estimator']}, features {spaces}) sets variance_partitioning: true, "
            f"but only {' or '.join(PARTITION_ESTIMATORS)} models with two or more distinct feature spaces can be partitioned.",
            "give it estimator ridge or banded_ridge and two or more extractors under features, or remove variance_partitioning.",
            field=f"encoding.models.{name}.variance_partitioning",
        )
    if not possible or not (DEFAULT if wanted is None else wanted):
        return []
    return spaces


def partition_parts(spaces: Sequence[str]) -> list[str]:
    """Names of the partition's per-target values: ``unique_<space>`` each, then ``shared``."""
    return [f"unique_{s}" for s in spaces] + (["shared"] if spaces else [])


def partition(r2_joint: np.ndarray, r2_without: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique variance per space and the shared rest, from held-out R².

    Args:
        r2_joint: [..., N] held-out R² of the model on every space.
        r2_without: [..., k, N] held-out R² of the model without space ``i`` (row ``i``).

    Returns:
        ``unique`` [..., k, N] (``r2_joint - r2_without``) and ``shared`` [..., N]
        (``r2_joint - unique.sum()``; for two spaces ``R²_A + R²_B - R²_AB``).
    """
    joint = np.asarray(r2_joint, dtype=np.float64)
    without = np.asarray(r2_without, dtype=np.float64)
    if without.ndim != joint.ndim + 1 or without.shape[-1] != joint.shape[-1]:
        raise ValueError(f"r2_without {without.shape} does not match r2_joint {joint.shape}")
    unique = joint[..., None, :] - without
    return unique, joint - unique.sum(axis=-2)


__all__ = [
    "DEFAULT",
    "PARTITION_ESTIMATORS",
    "partition",
    "partition_parts",
    "partitioned_spaces",
]
