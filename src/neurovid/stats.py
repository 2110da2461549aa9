"""Subject score maps and group statistics across subjects.

* :func:`scores_to_images` turns a subject's ``scores.h5`` (one value per
  voxel of the fMRI mask) back into volumes, NaN outside the subject's mask.
  Parcel targets (``neural.fmri.atlas``: ``parcels`` + ``target_labels`` in
  scores.h5, see :mod:`neurovid.io`) are painted: each parcel's score on every
  voxel of the parcel, NaN elsewhere. Such maps are marked as parcel maps in
  their NIfTI header (``descrip`` = :data:`PARCEL_MAP`).
* :func:`group_test` runs a one-sample t-test of Fisher-z transformed
  held-out correlations across subjects, voxel by voxel, with
  Benjamini-Hochberg FDR correction.

Missing subjects
    A subject's r map is NaN where the subject has no score: outside its
    brain mask, or inside it where r is undefined (a constant voxel). Such a
    subject is *missing* at that voxel, never r = 0: each voxel's t-test uses
    exactly the subjects with a finite r there (:func:`subject_counts` per
    voxel, written as ``n_subjects.nii.gz``).

Parcel maps
    A painted parcel map holds one value per parcel, so a voxelwise test would
    test each parcel once per voxel: the same t and p on every voxel, and an
    FDR family of voxels in which a large parcel counts hundreds of times and
    pulls the BH threshold. A scientist who chose parcels expects one test per
    parcel and an FDR family of parcels, so when every map is a parcel map
    :func:`group_test` tests each *unit* once and paints t, p and q back over
    its voxels. A unit is a set of voxels that hold identical values in every
    subject (NaN pattern included): a parcel, or, where subjects' masks
    differ, the part of a parcel that the same subjects cover. (Two parcels
    equal in every subject would be one test; with real data they never are.)
    The summary's ``units`` says which was tested and ``n_tests`` is the FDR
    family size; ``n_voxels`` stays the number of voxels that got a test.

Excluded voxels
    A voxel is tested only if at least ``min_subjects`` (>= 2, config
    ``stats.min_subjects``) subjects have it and their values are not all
    equal (a t statistic needs some variance). Excluded voxels get t = NaN,
    p = NaN and q = 1, so they are never significant and are not part of the
    FDR family: the family is exactly the tested voxels (``n_voxels`` in the
    summary).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import h5py
import nibabel as nib
import numpy as np
import scipy.stats

from neurovid import io
from neurovid.errors import InputError

#: NIfTI header ``descrip`` of a score map painted from parcel targets.
PARCEL_MAP = "neurovid parcel map"
#: Correlations are clipped to +-R_MAX before arctanh, so |z| stays finite (~8.3).
R_MAX = 1.0 - 1e-7
ALTERNATIVES = ("greater", "two-sided", "less")


def fisher_z(r: np.ndarray) -> np.ndarray:
    """Fisher z = arctanh(r), with |r| clipped below 1; NaN stays NaN (float64)."""
    r = np.asarray(r, dtype=np.float64)
    return np.arctanh(np.clip(r, -R_MAX, R_MAX))


def subject_counts(z: np.ndarray) -> np.ndarray:
    """Number of subjects (rows of ``z`` [S, V]) with a finite value, per column [V]."""
    return np.isfinite(np.asarray(z, dtype=np.float64)).sum(axis=0)


def testable(z: np.ndarray, min_subjects: int = 2) -> np.ndarray:
    """Columns of ``z`` [S, V] with >= ``min_subjects`` finite values that are not all equal."""
    z = np.asarray(z, dtype=np.float64)
    enough = subject_counts(z) >= min_subjects
    spread = np.nanmax(z[:, enough], axis=0) - np.nanmin(z[:, enough], axis=0)
    varying = np.zeros_like(enough)
    varying[enough] = spread > 0
    return enough & varying


def one_sample_t(
    z: np.ndarray, alternative: str = "greater", min_subjects: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """One-sample t-test of each column of ``z`` [S, V] against 0 (scipy ``ttest_1samp``).

    NaN entries are missing subjects: each column is tested on its finite
    values only (columns are grouped by which subjects they have, and each
    group goes to ``ttest_1samp`` in one call; same numbers as
    ``nan_policy="omit"``, which tests column by column and is slower).
    Returns (t, p), each [V]
    float64; columns that are not :func:`testable` get NaN for both.
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    if min_subjects < 2:
        raise ValueError(f"a t-test needs min_subjects >= 2, got {min_subjects}")
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    if z.shape[0] < 2:
        raise ValueError(f"a t-test needs at least 2 subjects, got {z.shape[0]}")
    t = np.full(z.shape[1], np.nan)
    p = np.full(z.shape[1], np.nan)
    columns = np.flatnonzero(testable(z, min_subjects))
    if columns.size == 0:
        return t, p
    present = np.isfinite(z[:, columns]).T  # [V_tested, S]
    patterns, group = np.unique(present, axis=0, return_inverse=True)
    for k, rows in enumerate(patterns):
        cols = columns[group.ravel() == k]
        result = scipy.stats.ttest_1samp(
            z[np.ix_(rows, cols)], 0.0, axis=0, alternative=alternative
        )
        t[cols] = result.statistic
        p[cols] = result.pvalue
    return t, p


def fdr_bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q); NaN p-values get q = 1 and do not count."""
    p = np.asarray(p, dtype=np.float64)
    q = np.ones_like(p)
    finite = np.isfinite(p)
    if finite.any():
        q[finite] = scipy.stats.false_discovery_control(p[finite], method="bh")
    return q


# --------------------------------------------------------------------------- NIfTI I/O


def write_nifti(
    path: io.PathLike, img: nib.Nifti1Image, provenance: Mapping[str, Any] | None = None
) -> None:
    """Save a NIfTI image atomically (deterministic gzip), plus a JSON sidecar."""
    if provenance is not None:
        io.write_json(io.sidecar_path(path), {"provenance": dict(provenance)})
    with io.atomic_path(path) as tmp:
        nib.save(img, tmp)


def _image(volume: np.ndarray, affine: np.ndarray, dtype: Any = np.float32) -> nib.Nifti1Image:
    img = nib.Nifti1Image(np.asarray(volume, dtype=dtype), np.asarray(affine, dtype=np.float64))
    img.header.set_xyzt_units("mm")
    return img


def scores_to_images(
    scores_h5: io.PathLike, datasets: Sequence[str] = ("r", "r2")
) -> tuple[nib.Nifti1Image, ...]:
    """Volumes of per-target ``datasets`` of an fMRI ``scores.h5`` (held-out r and R² by
    default; e.g. ``unique_<space>`` of a partitioned model), NaN outside the mask.

    Voxel targets (``mask``, ``affine``, ``voxel_ijk``) fill their voxel; parcel
    targets (``parcels``, ``affine``, ``target_labels``) fill every voxel of their
    parcel, and the image is marked :data:`PARCEL_MAP`. NaN means "no score for this
    subject here" (outside its mask, or a constant target), so :func:`group_test`
    treats the subject as missing there instead of r = 0.

    Raises:
        InputError: the file has neither geometry (not fMRI), or it does not match
            the number of targets.
    """
    with h5py.File(scores_h5, "r") as h5:
        geometry = ("parcels", "affine", "target_labels")
        if "voxel_ijk" in h5 or "parcels" not in h5:
            geometry = ("mask", "affine", "voxel_ijk")
        missing = [k for k in (*datasets, *geometry) if k not in h5]
        if missing:
            raise InputError(
                scores_h5,
                f"dataset(s) {', '.join(missing)} missing; score maps need an fMRI scores file (with mask, affine and voxel_ijk, or parcels, affine and target_labels).",
                "only request r.nii.gz for fMRI subjects.",
            )
        values = [h5[k][...] for k in datasets]
        grid, affine, where = (h5[k][...] for k in geometry)
    parcels = geometry[0] == "parcels"
    images = []
    for name, per_target in zip(datasets, values, strict=True):
        expected = (len(per_target),) if parcels else (len(per_target), 3)
        if where.shape != expected:
            raise InputError(
                scores_h5,
                f"{geometry[2]} has shape {where.shape} for {len(per_target)} targets of {name}.",
                "re-run the encode step.",
                field=geometry[2],
            )
        if parcels:
            volume = paint_parcels(grid, where, per_target)
        else:
            volume = np.full(grid.shape, np.nan, dtype=np.float32)
            volume[where[:, 0], where[:, 1], where[:, 2]] = per_target
        img = _image(volume, affine)
        if parcels:
            img.header["descrip"] = PARCEL_MAP
        images.append(img)
    return tuple(images)


def paint_parcels(parcels: np.ndarray, labels: np.ndarray, values: np.ndarray) -> np.ndarray:
    """float32 volume of ``parcels``' shape: ``values[i]`` on every voxel whose label is
    ``labels[i]``, NaN on label 0 and on labels without a value."""
    parcels = np.asarray(parcels, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    volume = np.full(parcels.shape, np.nan, dtype=np.float32)
    if labels.size == 0:
        return volume
    order = np.argsort(labels, kind="stable")
    position = np.minimum(np.searchsorted(labels[order], parcels), len(labels) - 1)
    found = (parcels != 0) & (labels[order][position] == parcels)
    volume[found] = np.asarray(values, dtype=np.float32)[order][position[found]]
    return volume


# --------------------------------------------------------------------------- group test


@dataclass
class GroupResult:
    """Volumes of the group test and its summary (see :func:`group_test`)."""

    images: dict[str, nib.Nifti1Image]  # t, p, q, fdr_mask, mean_r, n_subjects
    summary: dict[str, Any]


def _load_maps(paths: Sequence[io.PathLike]) -> tuple[np.ndarray, np.ndarray, bool]:
    """The maps [S, X, Y, Z], their affine, and whether they are parcel maps."""
    data, affine, shape, kinds = [], None, None, []
    for path in paths:
        try:
            img = nib.load(os.fspath(path))
            volume = np.asarray(img.get_fdata(dtype=np.float64))
        except Exception as err:  # nibabel raises several types for bad files
            raise InputError(
                path, f"cannot be read as a NIfTI image ({err}).", "re-run score_maps."
            ) from err
        if volume.ndim != 3:
            raise InputError(
                path,
                f"is {volume.ndim}-D (shape {volume.shape}); a score map must be a 3-D volume.",
                "re-run score_maps.",
            )
        if affine is None:
            affine, shape = img.affine, volume.shape
        elif volume.shape != shape or not np.allclose(img.affine, affine, atol=1e-4):
            raise InputError(
                path,
                f"grid differs from {paths[0]}: shape {volume.shape} vs {shape}, affine\n{np.round(img.affine, 4)}\nvs\n{np.round(affine, 4)}.",
                "resample all subjects to one template grid, the common space of the group (same fmri mask and resolution_mm in config.yaml), and re-run.",
                field="affine",
            )
        data.append(volume)
        kinds.append(np.asarray(img.header["descrip"]).item() == PARCEL_MAP.encode())
    assert affine is not None
    if any(kinds) and not all(kinds):
        raise InputError(
            paths[kinds.index(not kinds[0])],
            f"is a {'parcel' if not kinds[0] else 'voxel'} map but {paths[0]} is a {'parcel' if kinds[0] else 'voxel'} map; one group test needs one kind of target.",
            "ingest every subject with the same `neural.fmri.atlas` and re-run.",
            field="neural.fmri.atlas",
        )
    return np.stack(data), np.asarray(affine), all(kinds)


def parcel_units(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns of ``flat`` [S, V] that hold identical values in every subject (NaN
    pattern included): (one column per unit [S, U], the unit of each column [V])."""
    finite = np.isfinite(flat)
    key = np.concatenate([np.where(finite, flat, 0.0), finite], axis=0).T
    _, first, unit = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return flat[:, first], unit.ravel()


def _check_group_size(paths: Sequence[io.PathLike], min_subjects: int) -> None:
    if len(paths) < 2:
        raise InputError(
            paths[0] if paths else None,
            f"a group test needs at least 2 subjects' maps, got {len(paths)}.",
            "add fMRI subjects to recordings.tsv, or do not request the group statistics.",
        )
    if not 2 <= min_subjects <= len(paths):
        raise InputError(
            "config.yaml",
            f"min_subjects = {min_subjects}, but a voxel's t-test needs at least 2 subjects and the group has {len(paths)}.",
            f"set `stats.min_subjects` to a number from 2 to {len(paths)}.",
            field="stats.min_subjects",
        )


def _significant(t: np.ndarray, q: np.ndarray, fdr_alpha: float, alternative: str) -> np.ndarray:
    significant = q < fdr_alpha
    if alternative == "greater":
        significant &= t > 0
    elif alternative == "less":
        significant &= t < 0
    return significant


def _mean_over_present(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Mean of the finite values of each column of [S, V]; NaN where no subject has one."""
    total = np.where(np.isfinite(values), values, 0.0).sum(axis=0)
    return np.where(counts > 0, total / np.maximum(counts, 1), np.nan)


def _coverage(counts: np.ndarray, t: np.ndarray, min_subjects: int) -> dict[str, Any]:
    """Voxel counts by how many subjects have them, and what the test did with them."""
    covered = counts > 0
    too_few = covered & (counts < min_subjects)
    tested = np.isfinite(t)
    return {
        "min_subjects": int(min_subjects),
        "n_voxels": int(tested.sum()),
        "n_voxels_any_subject": int(covered.sum()),
        "n_voxels_too_few_subjects": int(too_few.sum()),
        "n_voxels_constant": int((covered & ~too_few & ~tested).sum()),
        "voxels_by_n_subjects": {
            str(n): int(np.sum(counts == n)) for n in range(1, int(counts.max(initial=0)) + 1)
        },
    }


def group_test(
    r_map_paths: Sequence[io.PathLike],
    *,
    fdr_alpha: float,
    alternative: str = "greater",
    min_subjects: int = 2,
    subjects: Sequence[str] | None = None,
    model: str | None = None,
) -> GroupResult:
    """One-sample t-test of Fisher-z r maps across subjects, BH-FDR corrected.

    At each voxel the subjects with a finite r (inside their mask) enter the
    test; NaN is a missing subject, not r = 0. Voxels that fewer than
    ``min_subjects`` subjects have, or whose values do not vary, are not
    tested (NaN t and p, q = 1) and are not in the FDR family. ``mean_r`` is
    the mean r over the subjects present (NaN where none is); ``n_subjects``
    is their count per voxel.

    Significant (``fdr_mask`` = 1): q < ``fdr_alpha``, and t > 0 for
    ``alternative="greater"`` (t < 0 for ``"less"``). ``t_threshold`` in the
    summary is the smallest significant |t| (None when nothing survives).
    The summary's ``n_voxels`` is the number of tested voxels, i.e. the FDR
    family size; the ``n_voxels_*`` keys say why the other voxels were not.
    Parcel maps (:data:`PARCEL_MAP`, all of them) are tested once per parcel and
    painted back; their FDR family is the parcels (``n_tests``; module docstring).

    Raises:
        InputError: fewer than 2 maps, ``min_subjects`` outside 2..number of
            maps, an unreadable map, or maps on different grids (names the file).
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    _check_group_size(r_map_paths, min_subjects)
    maps, affine, parcels = _load_maps(r_map_paths)
    shape = maps.shape[1:]
    flat = maps.reshape(len(maps), -1)
    counts = subject_counts(flat)
    if parcels:  # one test per parcel, painted back (module docstring: Parcel maps)
        units, unit = parcel_units(flat)
        t, p = one_sample_t(fisher_z(units), alternative, min_subjects)
        q = fdr_bh(p)
        n_tests = int(np.isfinite(p).sum())
        t, p, q = t[unit], p[unit], q[unit]
    else:
        t, p = one_sample_t(fisher_z(flat), alternative, min_subjects)
        q = fdr_bh(p)
        n_tests = int(np.isfinite(p).sum())
    significant = _significant(t, q, fdr_alpha, alternative)
    n_significant = int(significant.sum())
    volumes = {
        "t": (t, np.float32),
        "p": (p, np.float32),
        "q": (q, np.float32),
        "fdr_mask": (significant, np.uint8),
        "mean_r": (_mean_over_present(flat, counts), np.float32),
        "n_subjects": (counts, np.int16),
    }
    images = {k: _image(v.reshape(shape), affine, dtype) for k, (v, dtype) in volumes.items()}
    summary = {
        "model": model,
        "subjects": list(subjects) if subjects is not None else [str(x) for x in r_map_paths],
        "n_subjects": len(r_map_paths),
        **_coverage(counts, t, min_subjects),
        "units": "parcels" if parcels else "voxels",
        "n_tests": n_tests,
        "n_significant": n_significant,
        "fdr_alpha": float(fdr_alpha),
        "alternative": alternative,
        "t_threshold": float(np.min(np.abs(t[significant]))) if n_significant else None,
        "max_t": float(np.nanmax(t)) if np.isfinite(t).any() else None,
    }
    return GroupResult(images, summary)


def write_group_outputs(
    result: GroupResult,
    paths: Mapping[str, io.PathLike],
    provenance: Mapping[str, Any],
) -> None:
    """Write each image to ``paths[name]`` and the summary (with provenance) to ``paths['summary']``.

    The summary JSON is the sidecar of all the maps, so no per-map sidecars.
    """
    for name, img in result.images.items():
        write_nifti(paths[name], img)
    io.write_json(paths["summary"], {**result.summary, "provenance": dict(provenance)})
