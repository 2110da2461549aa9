"""Subject score maps and group statistics across subjects.

* :func:`scores_to_images` turns a subject's ``scores.h5`` (one value per
  voxel of the fMRI mask) back into volumes.
* :func:`group_test` runs a one-sample t-test of Fisher-z transformed
  held-out correlations across subjects, voxel by voxel, with
  Benjamini-Hochberg FDR correction.

Excluded voxels
    A voxel is tested only if its value is finite in every subject and not
    identical across all subjects (a t statistic needs some variance; this also
    drops the zeros outside every subject's mask). Excluded voxels get t = NaN,
    p = NaN and q = 1, so they are never significant and never count towards
    the FDR correction.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import nibabel as nib
import numpy as np
import scipy.stats

from neurovid import io
from neurovid.errors import InputError

#: Correlations are clipped to +-R_MAX before arctanh, so |z| stays finite (~8.3).
R_MAX = 1.0 - 1e-7
ALTERNATIVES = ("greater", "two-sided", "less")


def fisher_z(r: np.ndarray) -> np.ndarray:
    """Fisher z = arctanh(r), with |r| clipped below 1; NaN stays NaN (float64)."""
    r = np.asarray(r, dtype=np.float64)
    return np.arctanh(np.clip(r, -R_MAX, R_MAX))


def testable(z: np.ndarray) -> np.ndarray:
    """Columns of ``z`` [S, V] that are finite in every row and not all equal."""
    z = np.asarray(z, dtype=np.float64)
    finite = np.all(np.isfinite(z), axis=0)
    varying = np.zeros_like(finite)
    varying[finite] = np.ptp(z[:, finite], axis=0) > 0
    return finite & varying


def one_sample_t(z: np.ndarray, alternative: str = "greater") -> tuple[np.ndarray, np.ndarray]:
    """One-sample t-test of each column of ``z`` [S, V] against 0 (scipy ``ttest_1samp``).

    Returns (t, p), each [V] float64; columns that are not :func:`testable`
    get NaN for both.
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    z = np.asarray(z, dtype=np.float64)
    if z.ndim == 1:
        z = z[:, None]
    if z.shape[0] < 2:
        raise ValueError(f"a t-test needs at least 2 subjects, got {z.shape[0]}")
    valid = testable(z)
    t = np.full(z.shape[1], np.nan)
    p = np.full(z.shape[1], np.nan)
    if valid.any():
        result = scipy.stats.ttest_1samp(z[:, valid], 0.0, axis=0, alternative=alternative)
        t[valid] = result.statistic
        p[valid] = result.pvalue
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


def sidecar_path(path: io.PathLike) -> Path:
    """``r.nii.gz`` -> ``r.json`` (BIDS-style sidecar beside the image)."""
    path = Path(path)
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return path.with_name(name + ".json")


def write_nifti(
    path: io.PathLike, img: nib.Nifti1Image, provenance: Mapping[str, Any] | None = None
) -> None:
    """Save a NIfTI image atomically (deterministic gzip), plus a JSON sidecar."""
    if provenance is not None:
        io.write_json(sidecar_path(path), {"provenance": dict(provenance)})
    with io.atomic_path(path) as tmp:
        nib.save(img, tmp)


def _image(volume: np.ndarray, affine: np.ndarray, dtype: Any = np.float32) -> nib.Nifti1Image:
    img = nib.Nifti1Image(np.asarray(volume, dtype=dtype), np.asarray(affine, dtype=np.float64))
    img.header.set_xyzt_units("mm")
    return img


def scores_to_images(scores_h5: io.PathLike) -> tuple[nib.Nifti1Image, nib.Nifti1Image]:
    """Volumes of held-out r and R² from an fMRI ``scores.h5`` (0 outside the mask).

    Voxels inside the mask whose score is undefined (constant voxel) stay NaN.

    Raises:
        InputError: the file has no ``mask``/``affine``/``voxel_ijk`` (not fMRI).
    """
    with h5py.File(scores_h5, "r") as h5:
        missing = [k for k in ("r", "r2", "mask", "affine", "voxel_ijk") if k not in h5]
        if missing:
            raise InputError(
                scores_h5,
                f"dataset(s) {', '.join(missing)} missing; score maps need an fMRI scores file (with mask, affine and voxel_ijk).",
                "only request r.nii.gz for fMRI subjects.",
            )
        r, r2 = h5["r"][...], h5["r2"][...]
        mask, affine, ijk = h5["mask"][...], h5["affine"][...], h5["voxel_ijk"][...]
    if ijk.shape != (len(r), 3):
        raise InputError(
            scores_h5,
            f"voxel_ijk has shape {ijk.shape} for {len(r)} targets.",
            "re-run the encode step.",
            field="voxel_ijk",
        )
    images = []
    for values in (r, r2):
        volume = np.zeros(mask.shape, dtype=np.float32)
        volume[ijk[:, 0], ijk[:, 1], ijk[:, 2]] = values
        images.append(_image(volume, affine))
    return images[0], images[1]


# --------------------------------------------------------------------------- group test


@dataclass
class GroupResult:
    """Volumes of the group test and its summary (see :func:`group_test`)."""

    images: dict[str, nib.Nifti1Image]  # t, p, q, fdr_mask, mean_r
    summary: dict[str, Any]


def _load_maps(paths: Sequence[io.PathLike]) -> tuple[np.ndarray, np.ndarray]:
    data, affine, shape = [], None, None
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
                "resample all subjects to one template grid (same fmri mask and resolution_mm in config.yaml) and re-run.",
                field="affine",
            )
        data.append(volume)
    assert affine is not None
    return np.stack(data), np.asarray(affine)


def group_test(
    r_map_paths: Sequence[io.PathLike],
    *,
    fdr_alpha: float,
    alternative: str = "greater",
    subjects: Sequence[str] | None = None,
    model: str | None = None,
) -> GroupResult:
    """One-sample t-test of Fisher-z r maps across subjects, BH-FDR corrected.

    Significant (``fdr_mask`` = 1): q < ``fdr_alpha``, and t > 0 for
    ``alternative="greater"`` (t < 0 for ``"less"``). ``t_threshold`` in the
    summary is the smallest significant |t| (None when nothing survives).

    Raises:
        InputError: fewer than 2 maps, an unreadable map, or maps on different
            grids (names the file).
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    if len(r_map_paths) < 2:
        raise InputError(
            r_map_paths[0] if r_map_paths else None,
            f"a group test needs at least 2 subjects' maps, got {len(r_map_paths)}.",
            "add fMRI subjects to recordings.tsv, or do not request the group statistics.",
        )
    maps, affine = _load_maps(r_map_paths)
    shape = maps.shape[1:]
    flat = maps.reshape(len(maps), -1)
    t, p = one_sample_t(fisher_z(flat), alternative)
    q = fdr_bh(p)
    significant = q < fdr_alpha
    if alternative == "greater":
        significant &= t > 0
    elif alternative == "less":
        significant &= t < 0
    mean_r = flat.mean(axis=0)
    n_significant = int(significant.sum())
    t_threshold = float(np.min(np.abs(t[significant]))) if n_significant else None
    images = {
        "t": _image(t.reshape(shape), affine),
        "p": _image(p.reshape(shape), affine),
        "q": _image(q.reshape(shape), affine),
        "fdr_mask": _image(significant.reshape(shape), affine, np.uint8),
        "mean_r": _image(mean_r.reshape(shape), affine),
    }
    summary = {
        "model": model,
        "subjects": list(subjects) if subjects is not None else [str(x) for x in r_map_paths],
        "n_subjects": len(r_map_paths),
        "n_voxels": int(np.isfinite(t).sum()),
        "n_significant": n_significant,
        "fdr_alpha": float(fdr_alpha),
        "alternative": alternative,
        "t_threshold": t_threshold,
        "max_t": float(np.nanmax(t)) if np.isfinite(t).any() else None,
    }
    return GroupResult(images, summary)


def write_group_outputs(
    result: GroupResult,
    paths: Mapping[str, io.PathLike],
    provenance: Mapping[str, Any],
) -> None:
    """Write each image to ``paths[name]`` and the summary (with provenance) to ``paths['summary']``.

    The summary JSON is the sidecar of all five maps, so no per-map sidecars.
    """
    for name, img in result.images.items():
        write_nifti(paths[name], img)
    io.write_json(paths["summary"], {**result.summary, "provenance": dict(provenance)})
