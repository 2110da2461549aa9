"""fMRIPrep-style derivatives of the demo's simulated BOLD runs.

The demo writes its fMRI as a lab keeps it after fMRIPrep, so the pipeline's
BIDS + fMRIPrep door and its denoising read the demo exactly as they read real
data (``results/demo/fmriprep/``)::

    dataset_description.json                          DatasetType derivative
    sub-XX/func/sub-XX_task-movie_run-N_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz
    sub-XX/func/sub-XX_task-movie_run-N_space-MNI152NLin2009cAsym_desc-preproc_bold.json
    sub-XX/func/sub-XX_task-movie_run-N_desc-confounds_timeseries.tsv  (+ .json)

The confounds table has fMRIPrep's column names and conventions (``n/a`` in the
first row of every temporal derivative and of the FD / DVARS columns), computed
here the way fMRIPrep computes them:

* ``trans_x`` .. ``rot_z``: the head-motion parameters (mm, radians). In the demo
  they are the simulation's true motion (fMRIPrep estimates them with MCFLIRT);
  each comes with ``_derivative1`` (backward difference), ``_power2`` and
  ``_derivative1_power2`` (the 24-parameter expansion, :func:`motion_expansion`).
* ``framewise_displacement``: Power et al. 2012 (:func:`framewise_displacement`):
  the summed absolute differences of the six parameters, rotations as arc length
  on a 50 mm sphere.
* ``global_signal``, ``csf``, ``white_matter``: mean of the brain, CSF-like and
  white-matter-like voxels (:func:`tissue_masks`), with their expansions.
* ``dvars`` / ``std_dvars``: DVARS and its standardized form (Nichols 2013, as
  nipype's ``compute_dvars``: divided by the mean predicted SD of a temporal
  difference from each voxel's robust SD and lag-1 autocorrelation).
* ``a_comp_cor_00`` ..: anatomical CompCor (Behzadi 2007, fMRIPrep's
  ``combined`` mask): the top principal components of the white-matter and CSF
  voxels (outside the gray-matter mask, so outside the visual ROI) after the
  high-pass (cosine basis) and variance normalization of each voxel: real PCs of
  the simulated data, not copies of the simulated nuisance sources.
* ``cosine00`` ..: the discrete cosine basis of the 128 s high-pass filter
  (:func:`cosine_basis`, nilearn's definition).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from neurovid import __version__
from neurovid.io import PathLike, atomic_path, sidecar_path, write_json

SPACE = "MNI152NLin2009cAsym"
MOTION_COLUMNS = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
#: Radius (mm) of the sphere on which Power's FD turns rotations into distances.
FD_RADIUS_MM = 50.0
#: fMRIPrep's expansion of a confound column: itself, derivative, square, squared derivative.
EXPANSION_SUFFIXES = ("", "_derivative1", "_power2", "_derivative1_power2")
HIGH_PASS_S = 128.0
N_COMPCOR = 6
#: Float format of the confounds table (fMRIPrep writes full precision).
FLOAT_FORMAT = "%.10g"


# --------------------------------------------------------------------------- names


def preproc_bold_name(recording: str) -> str:
    """fMRIPrep's file name of a run's preprocessed BOLD (``{run}_space-..._desc-preproc_bold.nii.gz``)."""
    return f"{recording}_space-{SPACE}_desc-preproc_bold.nii.gz"


def confounds_name(recording: str) -> str:
    """fMRIPrep's file name of a run's confounds table."""
    return f"{recording}_desc-confounds_timeseries.tsv"


def task_of(recording: str) -> str:
    """The ``task-`` entity of a BIDS run name (``sub-01_task-movie_run-1`` -> ``movie``)."""
    found = re.search(r"(?:^|_)task-([A-Za-z0-9]+)", recording)
    if not found:
        raise ValueError(f"{recording!r} is not a BIDS run name with a task- entity")
    return found.group(1)


def dataset_description() -> dict[str, Any]:
    """``dataset_description.json`` of the demo's fMRIPrep-like derivatives."""
    return {
        "Name": "neurovid demo: simulated fMRIPrep derivatives",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [
            {
                "Name": "neurovid demo",
                "Version": __version__,
                "Description": "simulated BOLD with drift, head motion and spike artefacts, "
                "written with fMRIPrep's names and confounds (src/neurovid/demo/fmriprep.py)",
            }
        ],
        "SourceDatasets": [{"URL": "demo/bids"}],
    }


def bold_sidecar(tr: float, task: str, provenance: Mapping[str, Any]) -> dict[str, Any]:
    """The preprocessed BOLD's JSON sidecar (fMRIPrep keys, plus neurovid's provenance)."""
    return {
        "RepetitionTime": float(tr),
        "SkullStripped": False,
        "TaskName": task,
        "provenance": dict(provenance),
    }


# --------------------------------------------------------------------------- regressors


def derivative1(x: np.ndarray) -> np.ndarray:
    """Backward difference along time (axis 0), NaN in the first row (fMRIPrep's ``_derivative1``)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full_like(x, np.nan)
    out[1:] = np.diff(x, axis=0)
    return out


def expansion(x: np.ndarray, names: tuple[str, ...] | list[str]) -> dict[str, np.ndarray]:
    """fMRIPrep's expansion of columns ``x`` [T, C]: each column, its ``_derivative1``,
    ``_power2`` and ``_derivative1_power2`` (NaN in the first row of the derivatives)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    d = derivative1(x)
    out: dict[str, np.ndarray] = {}
    for j, name in enumerate(names):
        out[name] = x[:, j]
        out[f"{name}_derivative1"] = d[:, j]
        out[f"{name}_power2"] = x[:, j] ** 2
        out[f"{name}_derivative1_power2"] = d[:, j] ** 2
    return out


def motion_expansion(motion: np.ndarray, fill: float | None = 0.0) -> np.ndarray:
    """The 24-parameter motion expansion [T, 24] of ``motion`` [T, 6] (Friston 1996 /
    Satterthwaite 2013): parameters, derivatives, squares, squared derivatives.

    ``fill`` replaces the undefined first row of the derivatives (None keeps NaN).
    """
    columns = np.column_stack(list(expansion(motion, MOTION_COLUMNS).values()))
    if fill is not None:
        columns = np.where(np.isnan(columns), fill, columns)
    return columns


def framewise_displacement(motion: np.ndarray, radius_mm: float = FD_RADIUS_MM) -> np.ndarray:
    """Power et al. 2012 framewise displacement (mm) of ``motion`` [T, 6] (trans mm, rot rad).

    ``FD_t = sum |d trans| + radius * sum |d rot|``; NaN for the first volume (fMRIPrep).
    """
    d = np.abs(np.diff(np.asarray(motion, dtype=np.float64), axis=0))
    fd = d[:, :3].sum(axis=1) + radius_mm * d[:, 3:].sum(axis=1)
    return np.r_[np.nan, fd]


def cosine_basis(n_volumes: int, tr: float, high_pass_s: float = HIGH_PASS_S) -> np.ndarray:
    """Discrete cosine basis [T, K] of a ``1 / high_pass_s`` Hz high-pass filter.

    nilearn's ``signal.create_cosine_drift`` without its constant column (fMRIPrep's
    ``cosine00``..): ``K = floor(2 T tr / high_pass_s)`` columns ``sqrt(2 / T) cos(pi
    k (t + 0.5) / T)``, k = 1..K (two for the demo's 128-volume runs at TR 1 s).
    """
    from nilearn.signal import create_cosine_drift

    return create_cosine_drift(1.0 / high_pass_s, np.arange(n_volumes) * float(tr))[:, :-1]


def tissue_masks(brain: np.ndarray, resolution_mm: int = 3) -> dict[str, np.ndarray]:
    """Boolean masks on the MNI grid: ``brain`` (as given), ``white_matter`` (nilearn's
    MNI152 white-matter mask outside its gray-matter mask) and ``csf`` (brain voxels
    in neither: ventricles and the brain's edge; CSF-like)."""
    from nilearn.datasets import load_mni152_gm_mask, load_mni152_wm_mask

    gm = np.asarray(load_mni152_gm_mask(resolution=resolution_mm).dataobj) > 0
    wm = np.asarray(load_mni152_wm_mask(resolution=resolution_mm).dataobj) > 0
    brain = np.asarray(brain) > 0
    if brain.shape != gm.shape:
        raise ValueError(f"brain mask grid {brain.shape} is not the MNI152 grid {gm.shape}")
    return {"brain": brain, "white_matter": brain & wm & ~gm, "csf": brain & ~gm & ~wm}


def dvars(series: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(DVARS, standardized DVARS) of ``series`` [T, V], NaN for the first volume.

    As nipype's ``compute_dvars`` (fMRIPrep's ``dvars`` / ``std_dvars``): intensities
    scaled to a median voxel mean of 1000; DVARS is the RMS over voxels of the
    temporal difference; the standardized form divides it by the mean over voxels
    of the difference's predicted SD under stationarity, ``sqrt(2 (1 - ar1)) * sd``
    (robust SD from the interquartile range, lag-1 autocorrelation by Yule-Walker).
    """
    x = np.asarray(series, dtype=np.float64)
    mean = x.mean(axis=0)
    keep = mean > 0
    x = x[:, keep] * (1000.0 / np.median(mean[keep]))
    q75, q25 = np.percentile(x, [75, 25], axis=0)
    sd = (q75 - q25) / 1.349
    centred = x - x.mean(axis=0)
    ar1 = (centred[1:] * centred[:-1]).sum(axis=0) / np.maximum((centred**2).sum(axis=0), 1e-12)
    predicted = np.sqrt(np.clip(2 * (1 - ar1), 0, None)) * sd
    nstd = np.sqrt((np.diff(x, axis=0) ** 2).mean(axis=1))
    return np.r_[np.nan, nstd], np.r_[np.nan, nstd / predicted.mean()]


def _svd_flip(u: np.ndarray) -> np.ndarray:
    """Signs such that each column's largest absolute entry is positive (scikit-learn's)."""
    rows = np.argmax(np.abs(u), axis=0)
    return u * np.sign(u[rows, np.arange(u.shape[1])])


def acompcor(
    series: np.ndarray, tr: float, n_components: int = N_COMPCOR, high_pass_s: float = HIGH_PASS_S
) -> tuple[np.ndarray, np.ndarray]:
    """Anatomical CompCor of noise-region voxels ``series`` [T, V]: (components [T, K],
    variance explained [K]).

    Each voxel is high-passed (mean and :func:`cosine_basis` regressed out) and
    scaled to unit variance; the components are the top left singular vectors
    (unit norm, largest entry positive), as fMRIPrep's ``a_comp_cor_XX``.
    """
    y = np.asarray(series, dtype=np.float64)
    basis = np.column_stack([np.ones(len(y)), cosine_basis(len(y), tr, high_pass_s)])
    y = y - basis @ np.linalg.lstsq(basis, y, rcond=None)[0]
    sd = y.std(axis=0)
    y = y[:, sd > 0] / sd[sd > 0]
    # Left singular vectors and squared singular values from the [T, T] Gram matrix.
    power, u = np.linalg.eigh(y @ y.T)
    order = np.argsort(power)[::-1]
    power, u = np.clip(power[order], 0, None), u[:, order]
    k = min(n_components, y.shape[1], len(y))
    return _svd_flip(u[:, :k]), (power / power.sum())[:k]


def confounds_table(
    img: nib.Nifti1Image,
    motion: np.ndarray,
    masks: Mapping[str, np.ndarray],
    tr: float,
    *,
    n_compcor: int = N_COMPCOR,
    high_pass_s: float = HIGH_PASS_S,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """fMRIPrep's confounds of a run: (table [T, columns], JSON sidecar metadata).

    ``img`` is the 4-D BOLD, ``motion`` [T, 6] its head-motion parameters (mm,
    radians), ``masks`` from :func:`tissue_masks`. The metadata describes the
    CompCor components as fMRIPrep does (Method, Mask, SingularValue share,
    Retained), which nilearn's ``load_confounds`` reads.
    """
    data = np.asarray(img.dataobj)
    n_volumes = data.shape[3]
    motion = np.asarray(motion, dtype=np.float64)
    if motion.shape != (n_volumes, 6):
        raise ValueError(f"motion {motion.shape} does not match {n_volumes} volumes x 6")

    def region(name: str) -> np.ndarray:
        return data[np.asarray(masks[name], bool)].T.astype(np.float64)  # [T, V]

    brain = region("brain")
    wm, csf = region("white_matter"), region("csf")
    columns: dict[str, np.ndarray] = {}
    columns.update(expansion(brain.mean(axis=1), ["global_signal"]))
    columns.update(expansion(csf.mean(axis=1), ["csf"]))
    columns.update(expansion(wm.mean(axis=1), ["white_matter"]))
    dv, std_dv = dvars(brain)
    columns["std_dvars"] = std_dv
    columns["dvars"] = dv
    columns["framewise_displacement"] = framewise_displacement(motion)
    components, explained = acompcor(np.hstack([wm, csf]), tr, n_compcor, high_pass_s)
    meta: dict[str, Any] = {}
    cumulative = np.cumsum(explained)
    for k in range(components.shape[1]):
        name = f"a_comp_cor_{k:02d}"
        columns[name] = components[:, k]
        meta[name] = {
            "Method": "aCompCor",
            "Mask": "combined",
            "Retained": True,
            "VarianceExplained": float(explained[k]),
            "CumulativeVarianceExplained": float(cumulative[k]),
        }
    cosines = cosine_basis(n_volumes, tr, high_pass_s)
    for k in range(cosines.shape[1]):
        columns[f"cosine{k:02d}"] = cosines[:, k]
    columns.update(expansion(motion, MOTION_COLUMNS))
    return pd.DataFrame(columns), meta


def write_confounds(
    path: PathLike, table: pd.DataFrame, meta: Mapping[str, Any], provenance: Mapping[str, Any]
) -> None:
    """Write the confounds TSV (``n/a`` for missing values) and its JSON sidecar
    (column metadata and neurovid's ``provenance``), each atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, na_rep="n/a", float_format=FLOAT_FORMAT)
    write_json(sidecar_path(path), {**meta, "provenance": dict(provenance)})


def read_confounds(path: PathLike) -> pd.DataFrame:
    """A confounds TSV as written (``n/a`` -> NaN)."""
    return pd.read_csv(Path(path), sep="\t", na_values=["n/a"], keep_default_na=False)
