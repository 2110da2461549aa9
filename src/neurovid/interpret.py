"""What the fMRI voxels of a SlowFast model respond to: per-PC group weight maps and the
Kinetics classes behind each PC (the SlowFast fMRI study's word clouds).

Each subject's encoding model has its *own* PCA (fit inside the CV, refit on all its
runs: :mod:`neurovid.encoding`), so its PCA-space weights cannot be compared across
subjects. A group test needs one basis:

1. **One PCA of the stimulus class outputs** (:func:`class_basis`): the SlowFast
   Kinetics-400 **logits** of every clip of every stimulus video (the features files'
   ``logits``), z-scored per class and reduced by :func:`neurovid.encoding.fit_pca`
   to the PCs explaining the model's ``pca_variance``. Stimulus features only, no
   brain data: the basis cannot favour any voxel or score. Logits, not softmax
   probabilities: the encoding model was fit on the logits (``features.slowfast.feature:
   logits``), so its weights are per logit and only a linear change of basis of the
   *same* variables keeps their meaning; probabilities are a nonlinear function of the
   logits and nearly one-hot per clip, so their PCs say which class wins rather than
   graded similarity between classes. Sign convention: each PC is flipped so that its
   largest-magnitude loading is positive.
2. **Each subject's weights on the classes** (:func:`class_weights`): ``weights.h5``
   holds the final refit's weights in the subject's PCA space, delay-major (row
   ``i * P + p``). They are **summed over the FIR delays** (the FIR filter's total gain:
   the response to a sustained unit change of a feature; the mean would only divide all
   subjects by the same number of delays and give the same t), mapped back through the
   subject's PCA and feature scaling to weights per raw logit, and put on the group's
   scale (weights per group standard deviation of each class, the basis' z-units).
3. **Per-PC weights** ``w_pc[subject, pc, voxel]`` = the projection of those weights
   on each group PC (:func:`pc_weights`); a voxel with positive ``w_pc`` responds more
   when the stimulus scores high on the PC, i.e. shows the PC's positive-loading classes.
4. **Group test per PC** (:func:`pc_group_test`): a two-sided one-sample t-test of the
   subjects' ``w_pc`` against 0 at each voxel (:func:`neurovid.stats.one_sample_t`;
   missing subjects and untestable voxels as in the r-map test), Benjamini-Hochberg FDR
   within each PC's map (each PC is its own question, as one map per contrast).

Only linear models (ridge, banded ridge, LASSO) whose feature spaces include
``slowfast`` with ``features.slowfast.feature: logits`` can be interpreted this way
(:func:`interpreted_pcs`, checked when the workflow builds its DAG; this module's
top level imports numpy only, for that reason).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from neurovid.errors import InputError

#: The feature space whose class outputs are interpreted, and its class-output layer.
SPACE = "slowfast"
CLASS_LAYER = "logits"
#: Estimators with linear weights in the features' space (weights.h5 ``weights``).
LINEAR_ESTIMATORS = ("ridge", "banded_ridge", "lasso")


def interpreted_pcs(name: str, model: Mapping[str, Any], slowfast: Mapping[str, Any]) -> int:
    """How many PCs of model ``name`` get a group map and word clouds (0: off, the default).

    ``model`` is the model's config (``interpret_pcs``), ``slowfast`` the config section
    ``features.slowfast``.

    Raises:
        InputError: ``interpret_pcs`` on a model without ``slowfast`` features, on an
            estimator without linear weights (lstm), or while ``features.slowfast.feature``
            is not ``logits`` (the pooled features have no class names).
    """
    n = int(model.get("interpret_pcs") or 0)
    if n <= 0:
        return 0
    field = f"encoding.models.{name}.interpret_pcs"
    spaces = list(model["features"])
    if SPACE not in spaces:
        raise InputError(
            "config.yaml",
            f"model {name!r} sets interpret_pcs: {n}, but its features {spaces} do not include {SPACE}; "
            "the PCs are those of the SlowFast Kinetics-400 class outputs.",
            f"add {SPACE} to the model's features, or remove interpret_pcs.",
            field=field,
        )
    if model["estimator"] not in LINEAR_ESTIMATORS:
        raise InputError(
            "config.yaml",
            f"model {name!r} sets interpret_pcs: {n}, but its estimator {model['estimator']!r} has no linear "
            "weights on the features to project on the PCs.",
            f"use estimator {', '.join(LINEAR_ESTIMATORS)}, or remove interpret_pcs.",
            field=field,
        )
    if slowfast.get("feature", "pooled") != CLASS_LAYER:
        raise InputError(
            "config.yaml",
            f"model {name!r} sets interpret_pcs: {n}, but features.slowfast.feature is "
            f"{slowfast.get('feature', 'pooled')!r}: the model is then fit on the pooled 2304-D "
            "features, which have no Kinetics class names.",
            "set features.slowfast.feature: logits (the model is then fit on the 400 class logits), "
            "or remove interpret_pcs.",
            field="features.slowfast.feature",
        )
    return n


# --------------------------------------------------------------------------- the basis


@dataclass
class ClassBasis:
    """One PCA of the stimulus class logits (z-scored per class), shared by all subjects."""

    class_names: list[str]  # [C] Kinetics-400 names, label order
    mean: np.ndarray  # [C] logit mean over the clips
    scale: np.ndarray  # [C] logit standard deviation over the clips (1 if constant)
    components: np.ndarray  # [K, C] unit loadings, sign: largest |loading| positive
    explained_variance_ratio: np.ndarray  # [K] share of the z-scored logit variance
    n_clips: int
    videos: list[str]

    @property
    def n_pcs(self) -> int:
        return int(self.components.shape[0])


def _class_names(path: Any, h5: Any) -> list[str]:
    if "class_names" not in h5 or CLASS_LAYER not in h5:
        raise InputError(
            path,
            f"dataset(s) {', '.join(k for k in ('class_names', CLASS_LAYER) if k not in h5)} missing; "
            "not a SlowFast features file (neurovid.features.slowfast writes both).",
            "re-run the slowfast features of this video.",
            field="class_names",
        )
    return [str(x) for x in h5["class_names"].asstr()[...]]


def class_basis(feature_paths: Sequence[Any], share: float) -> ClassBasis:
    """Fit the group PCA on the ``logits`` [T, C] of every stimulus video's features file.

    Keeps the fewest PCs explaining ``share`` of the z-scored logit variance
    (:func:`neurovid.encoding.fit_pca`, the encoding models' own z-scoring and PCA),
    then flips each PC so that its largest-magnitude loading is positive.

    Raises:
        InputError: a file without ``logits``/``class_names``, class lists that differ
            between files, or no file.
    """
    import h5py

    from neurovid.encoding import fit_pca  # scikit-learn: not when the DAG is built

    if not feature_paths:
        raise InputError(
            None,
            "no stimulus video's SlowFast features to fit the PCs of the class outputs on.",
            "add stimulus videos to videos.tsv.",
        )
    blocks, names, videos = [], None, []
    for path in feature_paths:
        with h5py.File(path, "r") as h5:
            these = _class_names(path, h5)
            logits = np.asarray(h5[CLASS_LAYER][...], dtype=np.float64)
        if names is None:
            names = these
        elif these != names:
            raise InputError(
                path,
                f"its {len(these)} class names differ from those of {feature_paths[0]}.",
                "extract every stimulus video with the same SlowFast checkpoint.",
                field="class_names",
            )
        if logits.ndim != 2 or logits.shape[1] != len(these):
            raise InputError(
                path,
                f"logits have shape {logits.shape} for {len(these)} classes.",
                "re-run the slowfast features of this video.",
                field=CLASS_LAYER,
            )
        blocks.append(logits)
        videos.append(str(path))
    assert names is not None
    pca = fit_pca(np.concatenate(blocks), share)
    components = pca.components.copy()
    biggest = np.argmax(np.abs(components), axis=1)
    components *= np.sign(components[np.arange(len(components)), biggest])[:, None]
    return ClassBasis(
        class_names=names,
        mean=pca.mean,
        scale=pca.scale,
        components=components,
        explained_variance_ratio=pca.explained_variance_ratio,
        n_clips=sum(len(b) for b in blocks),
        videos=videos,
    )


# --------------------------------------------------------------------------- subjects


def design_widths(aligned_paths: Sequence[Any], spaces: Sequence[str]) -> list[tuple[str, int]]:
    """The model's feature spaces and their widths, from one aligned features file each
    (``results/aligned/{space}/{run}.h5``, the encode step's inputs, in ``spaces`` order).

    Raises:
        InputError: the slowfast file holds another layer than the logits (the model was
            fit on the pooled features).
    """
    import h5py

    from neurovid import io

    widths = []
    for space, path in zip(spaces, aligned_paths, strict=True):
        with h5py.File(path, "r") as h5:
            width = int(h5["features"].shape[1])
            attrs = io.read_attrs(h5)
        if space == SPACE and attrs.get("layer") != CLASS_LAYER:
            raise InputError(
                path,
                f"the model was fit on the SlowFast layer {attrs.get('layer')!r}, not the "
                f"{CLASS_LAYER}; its weights have no Kinetics classes.",
                "set features.slowfast.feature: logits and re-run the slowfast, align and encode steps.",
                field="layer",
            )
        widths.append((space, width))
    return widths


def space_columns(widths: Sequence[tuple[str, int]], space: str = SPACE) -> slice:
    """Columns of ``space`` in a model's design, whose spaces are concatenated in order."""
    start = 0
    for name, width in widths:
        if name == space:
            return slice(start, start + int(width))
        start += int(width)
    raise ValueError(f"{space} is not among the feature spaces {[n for n, _ in widths]}")


def class_weights(weights_path: Any, columns: slice) -> tuple[np.ndarray, np.ndarray]:
    """A subject's final-refit weights on the raw features of ``columns``, summed over delays.

    ``weights.h5`` predicts ``add_delays(((X - mean) / scale) @ pca_components.T, delays)
    @ weights``; the summed delay blocks ``W`` [P, N] give, per raw feature, the weights
    ``pca_components.T @ W / scale`` [D, N]. Returns those rows of ``columns`` and the
    modelled targets [N] (constant targets have no alpha and weights 0: not modelled).

    Raises:
        InputError: no linear ``weights`` (a trained model) or inconsistent shapes.
    """
    from neurovid import io

    arrays, _ = io.read_h5(weights_path)
    if "weights" not in arrays:
        raise InputError(
            weights_path,
            "holds no linear `weights` (a trained model's parameters); its voxels' weights cannot be "
            "projected on the class PCs.",
            f"interpret a {', '.join(LINEAR_ESTIMATORS)} model.",
            field="weights",
        )
    components = np.asarray(arrays["pca_components"], dtype=np.float64)  # [P, D]
    weights = np.asarray(arrays["weights"], dtype=np.float64)  # [L * P, N]
    n_delays = len(arrays["delays_samples"])
    n_pcs, n_features = components.shape
    if weights.shape[0] != n_delays * n_pcs or columns.stop > n_features:
        raise InputError(
            weights_path,
            f"weights {weights.shape}, pca_components {components.shape} and {n_delays} delays do not fit "
            f"(class columns {columns.start}..{columns.stop - 1}).",
            "re-run the encode step of this subject.",
            field="weights",
        )
    summed = weights.reshape(n_delays, n_pcs, -1).sum(axis=0)  # [P, N]
    scale = np.asarray(arrays["feature_scale"], dtype=np.float64)
    raw = (components.T @ summed) / scale[:, None]  # [D, N] per raw feature unit
    modelled = np.isfinite(np.asarray(arrays["alpha"], dtype=np.float64))
    return raw[columns], modelled


def pc_weights(raw_class_weights: np.ndarray, basis: ClassBasis) -> np.ndarray:
    """Weights per raw logit [C, N] -> per group PC [K, N] (projection in the basis' z-units)."""
    return basis.components @ (raw_class_weights * basis.scale[:, None])


@dataclass
class Grid:
    """Where a subject's targets sit: its scores file's mask grid and voxel indices."""

    shape: tuple[int, int, int]
    affine: np.ndarray
    voxel_ijk: np.ndarray  # [N, 3]


def subject_grid(scores_path: Any) -> Grid:
    """The voxel grid of an fMRI subject's ``scores.h5`` (mask shape, affine, voxel_ijk)."""
    import h5py

    with h5py.File(scores_path, "r") as h5:
        missing = [k for k in ("mask", "affine", "voxel_ijk") if k not in h5]
        if missing:
            raise InputError(
                scores_path,
                f"dataset(s) {', '.join(missing)} missing; PC maps need fMRI subjects.",
                "list only fMRI subjects' models for interpret_pcs.",
            )
        return Grid(tuple(h5["mask"].shape), h5["affine"][...], h5["voxel_ijk"][...])


def subject_volumes(values: np.ndarray, modelled: np.ndarray, grid: Grid) -> np.ndarray:
    """Per-target values [K, N] -> volumes [K, X, Y, Z], NaN outside the subject's modelled voxels."""
    if grid.voxel_ijk.shape != (values.shape[1], 3):
        raise ValueError(f"voxel_ijk {grid.voxel_ijk.shape} for {values.shape[1]} targets")
    out = np.full((len(values), *grid.shape), np.nan)
    i, j, k = grid.voxel_ijk[modelled].T
    out[:, i, j, k] = values[:, modelled]
    return out


# --------------------------------------------------------------------------- the test


@dataclass
class PCGroupResult:
    """Per-PC group maps [K, X, Y, Z] and the summary of :func:`pc_group_test`."""

    maps: dict[str, np.ndarray]  # t, p, q, fdr_mask, mean_w
    affine: np.ndarray
    summary: dict[str, Any]


def pc_group_test(
    volumes: np.ndarray,
    affine: np.ndarray,
    *,
    fdr_alpha: float,
    min_subjects: int = 2,
) -> PCGroupResult:
    """Two-sided one-sample t-test of per-subject PC weights ``volumes`` [S, K, X, Y, Z].

    Per PC and voxel the subjects with a finite weight enter (NaN = missing subject);
    voxels fewer than ``min_subjects`` have, or with equal values, are not tested (t, p
    NaN, q 1). BH-FDR within each PC's map; ``fdr_mask`` = q < ``fdr_alpha``.
    """
    from neurovid.stats import (
        _mean_over_present,
        _significant,
        fdr_bh,
        one_sample_t,
        subject_counts,
    )

    n_subjects, n_pcs = volumes.shape[:2]
    shape = volumes.shape[2:]
    maps = {k: np.empty((n_pcs, *shape)) for k in ("t", "p", "q", "fdr_mask", "mean_w")}
    per_pc = []
    for pc in range(n_pcs):
        flat = volumes[:, pc].reshape(n_subjects, -1)
        t, p = one_sample_t(flat, "two-sided", min_subjects)
        q = fdr_bh(p)
        significant = _significant(t, q, fdr_alpha, "two-sided")
        for key, value in (
            ("t", t),
            ("p", p),
            ("q", q),
            ("fdr_mask", significant),
            ("mean_w", _mean_over_present(flat, subject_counts(flat))),
        ):
            maps[key][pc] = value.reshape(shape)
        per_pc.append(
            {
                "pc": pc + 1,
                "n_voxels": int(np.isfinite(t).sum()),
                "n_significant": int(significant.sum()),
                "n_positive": int((significant & (t > 0)).sum()),
                "n_negative": int((significant & (t < 0)).sum()),
                "max_abs_t": float(np.nanmax(np.abs(t))) if np.isfinite(t).any() else None,
            }
        )
    summary = {
        "n_subjects": int(n_subjects),
        "n_pcs": int(n_pcs),
        "fdr_alpha": float(fdr_alpha),
        "alternative": "two-sided",
        "min_subjects": int(min_subjects),
        "fdr_family": "the tested voxels of each PC's map",
        "pcs": per_pc,
    }
    return PCGroupResult(maps, np.asarray(affine, dtype=np.float64), summary)


def subject_pc_volumes(
    weights_paths: Sequence[Any],
    scores_paths: Sequence[Any],
    widths: Sequence[Sequence[tuple[str, int]]],
    basis: ClassBasis,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-subject PC weight volumes [S, K, X, Y, Z] and the grid's affine.

    ``widths`` gives, per subject, the model's feature spaces and their widths in
    design order (the slowfast block is located in them).

    Raises:
        InputError: subjects on different grids, or a slowfast block whose width is not
            the number of classes.
    """
    volumes, first = [], None
    for wpath, spath, spaces in zip(weights_paths, scores_paths, widths, strict=True):
        columns = space_columns(spaces)
        if columns.stop - columns.start != len(basis.class_names):
            raise InputError(
                wpath,
                f"the model's {SPACE} block has {columns.stop - columns.start} columns, not the "
                f"{len(basis.class_names)} classes of the stimulus features.",
                "set features.slowfast.feature: logits and re-run the slowfast, align and encode steps.",
                field="features.slowfast.feature",
            )
        grid = subject_grid(spath)
        if first is None:
            first = (grid, spath)
        elif grid.shape != first[0].shape or not np.allclose(
            grid.affine, first[0].affine, atol=1e-4
        ):
            raise InputError(
                spath,
                f"grid differs from {first[1]}: shape {grid.shape} vs {first[0].shape}.",
                "resample all subjects to one template grid (same fmri mask and resolution_mm in config.yaml).",
                field="affine",
            )
        raw, modelled = class_weights(wpath, columns)
        volumes.append(subject_volumes(pc_weights(raw, basis), modelled, grid))
    assert first is not None
    return np.stack(volumes), np.asarray(first[0].affine)


#: Outputs of the PC group test: 4-D NIfTI maps (4th axis: PC 1..K).
PC_MAPS = ("t", "p", "q", "fdr_mask", "mean_w")


def write_pc_outputs(
    result: PCGroupResult,
    basis: ClassBasis,
    paths: Mapping[str, Any],
    provenance: Mapping[str, Any],
) -> None:
    """Write the maps of :data:`PC_MAPS` (4-D, PC on the 4th axis), the basis
    (``basis.h5``: components, class names, z-scoring, explained variance), the loadings
    table (``loadings.tsv``: one row per class, one column per PC) and ``summary.json``
    (the maps' sidecar, with provenance), each atomically."""
    import pandas as pd

    from neurovid import io
    from neurovid.stats import _image, write_nifti

    for name in PC_MAPS:
        volume = np.moveaxis(result.maps[name], 0, -1)
        dtype = np.uint8 if name == "fdr_mask" else np.float32
        write_nifti(paths[name], _image(volume, result.affine, dtype))
    pcs = [f"pc{k + 1}" for k in range(basis.n_pcs)]
    io.write_h5(
        paths["basis"],
        {
            "components": basis.components.astype(np.float32),
            "explained_variance_ratio": basis.explained_variance_ratio.astype(np.float32),
            "class_names": np.asarray(basis.class_names),
            "logit_mean": basis.mean.astype(np.float32),
            "logit_scale": basis.scale.astype(np.float32),
        },
        {
            "layer": CLASS_LAYER,
            "n_clips": basis.n_clips,
            "sign": "each PC's largest-magnitude loading is positive",
            "provenance": dict(provenance),
        },
    )
    table = pd.DataFrame(basis.components.T, columns=pcs)
    table.insert(0, "class_name", basis.class_names)
    io.write_table(paths["loadings"], table, provenance=provenance)
    summary = {
        **result.summary,
        "explained_variance_ratio": [float(v) for v in basis.explained_variance_ratio],
        "n_clips": basis.n_clips,
        "weights": "final refit, summed over FIR delays, per group SD of each class logit, "
        "projected on each PC",
        "provenance": dict(provenance),
    }
    io.write_json(paths["summary"], summary)
