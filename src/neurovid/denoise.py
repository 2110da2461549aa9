"""fMRI denoising of each run before encoding, volume censoring, and parcel targets.

Each fMRI run is cleaned on its own at ingest (``scripts/ingest.py`` calls
:func:`denoise_recording` on what :func:`neurovid.neural.ingest_fmri` read), with
the settings of ``neural.fmri.denoise`` in config.yaml (:class:`DenoiseSettings`):

* **drift**: polynomial regressors of orders ``1..detrend_order`` on the volume
  times (nilearn's ``polynomial`` drift model); the mean of the kept volumes is
  always removed (``detrend_order: 0`` removes only the mean; ``null`` nothing);
* **high-pass**: ``high_pass_s`` is the cutoff period in seconds (frequency
  ``1 / high_pass_s`` Hz, computed with the run's TR), by discrete-cosine drift
  regressors (``filter: cosine``, what fMRIPrep's ``cosineXX`` columns and SPM
  do) or a Butterworth filter (``filter: butterworth``);
* **confound regression** from the run's fMRIPrep ``*_desc-confounds_timeseries.tsv``
  (the recordings sheet's ``confounds`` column), columns chosen as nilearn's
  ``load_confounds`` chooses them: ``motion: 6`` (``trans_*``, ``rot_*``) or ``24``
  (plus their ``_derivative1``, ``_power2`` and ``_derivative1_power2``),
  ``acompcor: N`` (the first N anatomical CompCor components: those of the
  combined WM+CSF mask when the table's JSON sidecar says which, else
  ``a_comp_cor_00..``), ``global_signal``, and ``extra_confounds`` by name. Like
  ``load_confounds``, an ``n/a`` in the first row (derivatives) takes the
  second row's value;
* **censoring**: volumes whose ``framewise_displacement`` (fMRIPrep's FD, mm)
  exceeds ``fd_threshold_mm`` are censored, and so are the volumes fMRIPrep marks
  in ``non_steady_state_outlier*`` columns (nilearn's ``load_confounds`` always
  drops those).

All of it is one call of :func:`nilearn.signal.clean` per run: the drift
regressors, the confounds and (``cosine``) the cosine terms (made on the true
volume times by nilearn's design-matrix drift models, :func:`drift_regressors`)
are regressed out together, so the confounds are cleaned with the same filter
as the data (the
orthogonal filtering of Lindquist et al. 2018 that nilearn implements; with
``butterworth``, nilearn filters the confounds too). Censored volumes go in as
nilearn's ``sample_mask``: they are left out of the regression (their
values cannot bias the confound fit; with ``butterworth`` nilearn interpolates
them before filtering, then drops them), not interpolated into the data. The
responses keep every volume, so times stay on the stimulus clock: a censored
volume holds 0 (the mean of the cleaned run) and is flagged in the responses
file's ``censored`` dataset; encoding leaves those samples out of every fit and
score (:mod:`neurovid.encoding`).

Confounds missing
    Strategies that need the confounds table (motion, acompcor, global_signal,
    extra_confounds, fd_threshold_mm) apply only to runs whose sheet row gives a
    ``confounds`` file. A run without one is cleaned by drift + high-pass only,
    with a logged warning and ``skipped`` in the provenance; with
    ``require_confounds: true`` it is an error naming the run and the fix. (The
    default stays ``false`` while the demo writes no confounds.)

Parcel targets (:func:`parcellate`)
    With ``neural.fmri.atlas: {labels, names}``, each labelled parcel's mean
    time course (nilearn's ``NiftiLabelsMasker``, labels resampled to the data
    grid by nearest neighbour, only voxels inside the analysis mask) is one
    target, named from the ``index``/``name`` table (BIDS ``dseg.tsv``); the
    responses file then has no voxel geometry (``mask``, ``voxel_ijk``) but the
    parcel geometry that score maps need: ``parcels`` (the labels on the data
    grid, 0 outside the analysis mask: exactly the voxels each mean was taken
    over), ``affine`` and ``target_labels`` (each target's label value); see
    :mod:`neurovid.io`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from neurovid.errors import InputError

log = logging.getLogger(__name__)

MOTION_PARAMS = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
#: ``motion`` setting -> suffixes of the motion columns (the names of nilearn's
#: ``load_confounds`` ``motion="basic"`` / ``"full"``, in a fixed order: nilearn's
#: ``add_suffix`` iterates a set, whose order changes between interpreter runs)
MOTION_MODELS = {6: ("",), 24: ("", "_derivative1", "_power2", "_derivative1_power2")}
FD_COLUMN = "framewise_displacement"
NON_STEADY_PREFIX = "non_steady_state_outlier"
FILTERS = ("cosine", "butterworth")
_SECTION = "neural.fmri.denoise"


@dataclass(frozen=True)
class DenoiseSettings:
    """How each fMRI run is cleaned (config ``neural.fmri.denoise``; module docstring)."""

    detrend_order: int | None = 1
    high_pass_s: float | None = 128.0
    filter: str = "cosine"
    motion: int = 0  # 0, 6 or 24
    acompcor: int = 0
    global_signal: bool = False
    extra_confounds: tuple[str, ...] = ()
    fd_threshold_mm: float | None = None
    require_confounds: bool = False

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> DenoiseSettings:
        """Settings from the config section (missing keys: defaults; ``None``: no denoising).

        Raises:
            InputError: a value out of range (names the config key and the fix).
        """
        if section is None:
            return cls(detrend_order=None, high_pass_s=None)
        cfg = dict(section)
        motion = cfg.get("motion", 0)
        motion = 0 if motion in (None, False, "none", "0", 0) else motion
        try:
            motion = int(motion)
        except (TypeError, ValueError):
            motion = -1
        if motion not in (0, *MOTION_MODELS):
            raise InputError(
                "config.yaml",
                f"motion: {cfg.get('motion')!r} is not a motion strategy.",
                "use 6 (translations, rotations), 24 (plus derivatives and squares) or none.",
                field=f"{_SECTION}.motion",
            )
        kind = str(cfg.get("filter", "cosine"))
        if kind not in FILTERS:
            raise InputError(
                "config.yaml",
                f"filter: {kind!r} is not a high-pass filter.",
                f"use one of {', '.join(FILTERS)}.",
                field=f"{_SECTION}.filter",
            )
        order = cfg.get("detrend_order", 1)
        high_pass = cfg.get("high_pass_s", 128.0)
        fd = cfg.get("fd_threshold_mm")
        return cls(
            detrend_order=None if order is None else int(order),
            high_pass_s=None if high_pass is None else float(high_pass),
            filter=kind,
            motion=motion,
            acompcor=int(cfg.get("acompcor") or 0),
            global_signal=bool(cfg.get("global_signal", False)),
            extra_confounds=tuple(str(c) for c in cfg.get("extra_confounds") or ()),
            fd_threshold_mm=None if fd is None else float(fd),
            require_confounds=bool(cfg.get("require_confounds", False)),
        )

    def confound_strategies(self) -> list[str]:
        """The strategies that need a confounds table (empty: drift and high-pass only)."""
        wanted = []
        if self.motion:
            wanted.append(f"motion: {self.motion}")
        if self.acompcor:
            wanted.append(f"acompcor: {self.acompcor}")
        if self.global_signal:
            wanted.append("global_signal: true")
        if self.extra_confounds:
            wanted.append(f"extra_confounds: {list(self.extra_confounds)}")
        if self.fd_threshold_mm is not None:
            wanted.append(f"fd_threshold_mm: {self.fd_threshold_mm:g}")
        return wanted

    def without_confounds(self) -> DenoiseSettings:
        """The same drift and high-pass, no strategy that needs a confounds table."""
        return dataclasses.replace(
            self,
            motion=0,
            acompcor=0,
            global_signal=False,
            extra_confounds=(),
            fd_threshold_mm=None,
        )

    def as_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["extra_confounds"] = list(self.extra_confounds)
        return out


# --------------------------------------------------------------------------- confounds table


def read_confounds(path: str | Path) -> pd.DataFrame:
    """An fMRIPrep confounds table (TSV, ``n/a`` = missing) as read, one row per volume.

    Raises:
        InputError: the file is missing or cannot be parsed as a TSV with a header.
    """
    path = Path(path)
    fix = "give the run's fMRIPrep `*_desc-confounds_timeseries.tsv` in the `confounds` column of recordings.tsv."
    if not path.is_file():
        raise InputError(path, "the confounds file does not exist.", fix, field="confounds")
    try:
        table = pd.read_csv(path, sep="\t", na_values=["n/a"], keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(
            path, f"cannot be parsed as a tab-separated table ({err}).", fix, field="confounds"
        ) from err
    table.columns = [str(c).strip() for c in table.columns]
    return table


def _have(table: pd.DataFrame) -> str:
    columns = list(table.columns)
    shown = ", ".join(columns[:40]) + (
        f" ... ({len(columns)} columns)" if len(columns) > 40 else ""
    )
    return shown or "no columns"


def _acompcor_columns(table: pd.DataFrame, n: int, path: Path) -> list[str]:
    """The first ``n`` anatomical CompCor columns: of the combined mask when the
    table's JSON sidecar says (nilearn's ``find_compcor(..., "anat_combined", n)``),
    else ``a_comp_cor_00 .. a_comp_cor_{n-1}``."""
    sidecar = path.with_name(path.name.removesuffix(".tsv").removesuffix(".tsv.gz") + ".json")
    if sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            meta = None
        if isinstance(meta, dict) and any(
            isinstance(v, dict) and "Mask" in v for k, v in meta.items() if "a_comp_cor" in k
        ):
            from nilearn.interfaces.fmriprep.load_confounds_compcor import find_compcor

            found = find_compcor(meta, "anat_combined", n)
            if len(found) >= n:
                return list(found[:n])
    return [f"a_comp_cor_{i:02d}" for i in range(n)]


def confound_columns(table: pd.DataFrame, settings: DenoiseSettings, path: str | Path) -> list[str]:
    """Columns of the confounds table the strategy regresses out, in a fixed order.

    Raises:
        InputError: the table lacks some of them (lists the missing and what it has).
    """
    path = Path(path)
    wanted: list[str] = []
    if settings.motion:
        wanted += [p + s for s in MOTION_MODELS[settings.motion] for p in MOTION_PARAMS]
    if settings.acompcor:
        wanted += _acompcor_columns(table, settings.acompcor, path)
    if settings.global_signal:
        wanted.append("global_signal")
    wanted += [c for c in settings.extra_confounds if c not in wanted]
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise InputError(
            path,
            f"the denoising strategy ({'; '.join(settings.confound_strategies())}) needs "
            f"{len(missing)} column(s) the confounds table lacks: {', '.join(missing)}. "
            f"It has: {_have(table)}.",
            f"ask `{_SECTION}` in config.yaml only for columns the table has (e.g. motion: 6, fewer acompcor components), or give the full fMRIPrep confounds file.",
            field=missing[0],
        )
    return wanted


def confound_matrix(table: pd.DataFrame, columns: list[str], path: str | Path) -> np.ndarray:
    """The chosen columns as float64 [T, C]; a missing first row takes the second row's
    value (derivatives; nilearn's convention).

    Raises:
        InputError: a non-number, or a missing value past the first row.
    """
    if not columns:
        return np.zeros((len(table), 0))
    values = table[columns].apply(pd.to_numeric, errors="coerce")
    bad = values.isna() & table[columns].notna()
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise InputError(
            path,
            f"row {row + 2} (volume {row}): {table[columns[col]].iloc[row]!r} is not a number.",
            "every confound cell must be a number or n/a.",
            field=columns[col],
        )
    matrix = values.to_numpy(dtype=np.float64, copy=True)
    if len(matrix) > 1:
        first = np.isnan(matrix[0])
        matrix[0, first] = matrix[1, first]
    if np.isnan(matrix).any():
        row, col = np.argwhere(np.isnan(matrix))[0]
        raise InputError(
            path,
            f"column {columns[col]} is n/a at row {row + 2} (volume {row}); only the first volume may be n/a.",
            "regenerate the confounds with fMRIPrep, or leave this column out of the strategy.",
            field=columns[col],
        )
    return matrix


def censored_volumes(
    table: pd.DataFrame, settings: DenoiseSettings, path: str | Path
) -> np.ndarray:
    """bool [T]: framewise displacement above ``fd_threshold_mm`` (when set; the first
    volume's n/a FD never censors) or flagged by a ``non_steady_state_outlier*`` column.

    Raises:
        InputError: FD censoring asked for and the table has no ``framewise_displacement``.
    """
    censored = np.zeros(len(table), dtype=bool)
    for column in (c for c in table.columns if c.startswith(NON_STEADY_PREFIX)):
        censored |= confound_matrix(table, [column], path)[:, 0] > 0
    if settings.fd_threshold_mm is not None:
        if FD_COLUMN not in table.columns:
            raise InputError(
                path,
                f"censoring by framewise displacement (`{_SECTION}.fd_threshold_mm: {settings.fd_threshold_mm:g}`) "
                f"needs the column {FD_COLUMN}, which the confounds table lacks. It has: {_have(table)}.",
                f"give fMRIPrep's confounds file (it has {FD_COLUMN}), or set `{_SECTION}.fd_threshold_mm: null` in config.yaml.",
                field=FD_COLUMN,
            )
        fd = pd.to_numeric(table[FD_COLUMN], errors="coerce").to_numpy(dtype=np.float64)
        censored |= np.nan_to_num(fd, nan=0.0) > settings.fd_threshold_mm
    return censored


# --------------------------------------------------------------------------- cleaning


def drift_regressors(
    n_volumes: int, tr: float, order: int | None, high_pass_s: float | None = None
) -> np.ndarray:
    """Drift regressors on the volume times, constants dropped: polynomials of orders
    1..order (nilearn's ``polynomial`` drift model), then, with ``high_pass_s``, the
    discrete cosines below ``1 / high_pass_s`` Hz (nilearn's ``cosine`` drift model).

    The cosines are made here rather than by ``signal.clean(filter="cosine")``: nilearn
    drops its own cosines when a supplied confound correlates with one above 0.9, which
    a linear drift always does with the first cosine.
    """
    from nilearn.glm.first_level import make_first_level_design_matrix

    times = np.arange(n_volumes) * float(tr)
    parts = [np.zeros((n_volumes, 0))]
    if order:
        poly = make_first_level_design_matrix(
            times, drift_model="polynomial", drift_order=int(order)
        )
        parts.append(poly.drop(columns="constant").to_numpy(dtype=np.float64))
    if high_pass_s is not None:
        cosine = make_first_level_design_matrix(
            times, drift_model="cosine", high_pass=1.0 / float(high_pass_s)
        )
        parts.append(cosine.drop(columns="constant").to_numpy(dtype=np.float64))
    return np.hstack(parts)


def clean_run(
    responses: np.ndarray,
    tr: float,
    settings: DenoiseSettings,
    confounds: np.ndarray | None = None,
    censored: np.ndarray | None = None,
) -> np.ndarray:
    """One run [T, N] cleaned by :func:`nilearn.signal.clean` (module docstring) -> float32 [T, N].

    ``confounds`` [T, C] are regressed out together with the drift (and cosine)
    regressors; ``censored`` [T] volumes are nilearn's ``sample_mask`` complement:
    left out of the fit, and 0 in the output.
    """
    from nilearn.signal import clean

    Y = np.asarray(responses, dtype=np.float64)
    n = len(Y)
    cosine = settings.filter == "cosine" and settings.high_pass_s is not None
    parts = [
        drift_regressors(n, tr, settings.detrend_order, settings.high_pass_s if cosine else None)
    ]
    if confounds is not None:
        parts.append(np.asarray(confounds, dtype=np.float64).reshape(n, -1))
    design = np.hstack(parts)
    keep = np.ones(n, dtype=bool) if censored is None else ~np.asarray(censored, dtype=bool)
    if not keep.any():
        raise ValueError("every volume is censored")
    butterworth = settings.filter == "butterworth" and settings.high_pass_s is not None
    cleaned = clean(
        Y,
        detrend=False,  # drift terms are regressors on the true volume times (above)
        standardize=None,
        confounds=design if design.shape[1] else None,
        standardize_confounds=True,
        filter="butterworth" if butterworth else False,
        high_pass=1.0 / settings.high_pass_s if butterworth else None,
        t_r=float(tr),
        sample_mask=None if keep.all() else np.flatnonzero(keep),
    )
    if settings.detrend_order is not None:
        cleaned = cleaned - cleaned.mean(axis=0)
    out = np.zeros(Y.shape, dtype=np.float32)
    out[keep] = cleaned
    return out


#: Kept volumes a cleaned run must have beyond its regressors (drift, cosines, confounds).
MIN_DEGREES_OF_FREEDOM = 10


def check_degrees_of_freedom(
    n: int,
    tr: float,
    settings: DenoiseSettings,
    confounds: np.ndarray | None,
    censored: np.ndarray,
    where: str | Path | None,
    recording_id: str,
) -> None:
    """Refuse a strategy with (nearly) as many regressors as kept volumes: nilearn would
    fit the run away and leave noise, silently (a short run with 24 motion parameters,
    aCompCor and cosines).

    Raises:
        InputError: fewer than MIN_DEGREES_OF_FREEDOM kept volumes beyond the regressors.
    """
    cosine = settings.filter == "cosine" and settings.high_pass_s is not None
    drift = drift_regressors(
        n, tr, settings.detrend_order, settings.high_pass_s if cosine else None
    )
    n_regressors = drift.shape[1] + (0 if confounds is None else confounds.reshape(n, -1).shape[1])
    kept = int(n - np.asarray(censored, dtype=bool).sum())
    if kept - n_regressors < MIN_DEGREES_OF_FREEDOM:
        raise InputError(
            where,
            f"run {recording_id or '?'} keeps {kept} volumes but its denoising regresses "
            f"{n_regressors} terms (drift/cosines {drift.shape[1]}, confounds "
            f"{n_regressors - drift.shape[1]}): fewer than {MIN_DEGREES_OF_FREEDOM} degrees "
            "of freedom are left, and the cleaned run would be noise.",
            f"use fewer confounds for short runs (`{_SECTION}.motion: 6`, `acompcor: 0`, a "
            "longer `high_pass_s`), or leave the run out.",
            field="denoise",
        )


@dataclass
class Denoised:
    """A cleaned run: responses [T, N], censored [T] and what was done (for provenance)."""

    responses: np.ndarray
    censored: np.ndarray
    info: dict[str, Any]


def denoise_run(
    responses: np.ndarray,
    tr: float,
    settings: DenoiseSettings,
    *,
    confounds_path: str | Path | None = None,
    recording_id: str = "",
) -> Denoised:
    """Clean one run with its confounds table (or drift + high-pass only without one).

    Raises:
        InputError: the table's rows differ from the volumes; the strategy names
            columns the table lacks; FD censoring without ``framewise_displacement``;
            no table although ``require_confounds`` and a strategy needs one; every
            volume censored.
    """
    n = len(responses)
    strategies = settings.confound_strategies()
    info: dict[str, Any] = {"settings": settings.as_dict(), "confounds": None}
    used = settings
    matrix = None
    censored = np.zeros(n, dtype=bool)
    if confounds_path is None or not str(confounds_path).strip():
        if strategies:
            if settings.require_confounds:
                raise InputError(
                    "recordings.tsv",
                    f"recording {recording_id!r} has no confounds file, but `{_SECTION}` asks for {'; '.join(strategies)}.",
                    f"give the run's fMRIPrep `*_desc-confounds_timeseries.tsv` in the `confounds` column, or set `{_SECTION}.require_confounds: false` to clean such runs by drift and high-pass only.",
                    field="confounds",
                )
            log.warning(
                "%s: no confounds file; %s skipped (drift and high-pass only).",
                recording_id or "run",
                "; ".join(strategies),
            )
            info["skipped"] = strategies
        used = settings.without_confounds()
    else:
        path = Path(confounds_path)
        table = read_confounds(path)
        if len(table) != n:
            raise InputError(
                path,
                f"the confounds table has {len(table)} rows but the run has {n} volumes.",
                "give the confounds file of this very run (fMRIPrep writes one row per volume).",
                field="confounds",
            )
        columns = confound_columns(table, settings, path)
        matrix = confound_matrix(table, columns, path)
        censored = censored_volumes(table, settings, path)
        if censored.all():
            raise InputError(
                path,
                f"all {n} volumes are censored (framewise displacement > {settings.fd_threshold_mm} mm or non-steady-state).",
                f"raise `{_SECTION}.fd_threshold_mm`, or leave this run out.",
                field=FD_COLUMN,
            )
        info.update(confounds=str(path), columns=columns)
    check_degrees_of_freedom(n, tr, used, matrix, censored, confounds_path, recording_id)
    cleaned = clean_run(responses, tr, used, matrix, censored)
    info["n_censored"] = int(censored.sum())
    info["censored_volumes"] = np.flatnonzero(censored).tolist()
    if censored.any():
        log.info(
            "%s: %d of %d volumes censored (left out of the cleaning fit, of encoding fits and scores).",
            recording_id or "run",
            int(censored.sum()),
            n,
        )
    return Denoised(cleaned, censored, info)


# --------------------------------------------------------------------------- parcels


def read_parcel_names(path: str | Path) -> pd.DataFrame:
    """The atlas's ``index``/``name`` table (BIDS ``dseg.tsv``), one row per label."""
    path = Path(path)
    fix = "give a tab-separated table with columns `index` (label value) and `name` in `neural.fmri.atlas.names`."
    if not path.is_file():
        raise InputError(path, "the atlas names file does not exist.", fix, field="names")
    try:
        table = pd.read_csv(path, sep="\t", dtype={"name": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot be parsed ({err}).", fix, field="names") from err
    missing = [c for c in ("index", "name") if c not in table.columns]
    if missing:
        raise InputError(
            path,
            f"column(s) {', '.join(missing)} missing; it has {_have(table)}.",
            fix,
            field=missing[0],
        )
    duplicated = table["name"][table["name"].duplicated()].tolist()
    if duplicated:
        raise InputError(
            path,
            f"parcel names repeat: {', '.join(map(str, duplicated))}.",
            "give every parcel its own name.",
            field="name",
        )
    return table


@dataclass
class Parcellation:
    """Parcel targets of one run (:func:`parcellate`)."""

    responses: np.ndarray  # float32 [T, P], mean of each parcel's in-mask voxels
    names: np.ndarray  # str [P]
    labels: np.ndarray  # int32 [P], each parcel's label value in ``volume``
    volume: np.ndarray  # int32 [X, Y, Z], labels on the data grid, 0 outside the mask
    info: dict[str, Any]


def parcellate(
    responses: np.ndarray,
    mask_img: nib.Nifti1Image,
    labels: str | Path,
    names: str | Path,
) -> Parcellation:
    """Mean time course of each parcel's in-mask voxels, and where the parcels are.

    ``responses`` [T, N] are the in-mask voxels of ``mask_img`` (C order). The labels
    image is resampled to the mask's grid (nearest neighbour; nilearn's
    ``NiftiLabelsMasker`` with ``resampling_target="data"``); parcels with no voxel in
    the mask are dropped with a warning. Parcels come in increasing label order.
    ``volume`` is the masker's resampled labels image, 0 outside the mask and for
    dropped labels: the voxels each parcel's mean was taken over.

    Raises:
        InputError: the labels file is unreadable or not 3-D, a label has no name,
            or no parcel overlaps the mask.
    """
    from nilearn.maskers import NiftiLabelsMasker
    from nilearn.masking import unmask

    labels = Path(labels)
    fix = "set `neural.fmri.atlas.labels` to a 3-D NIfTI of integer labels (0 = background)."
    if not labels.is_file():
        raise InputError(labels, "the atlas labels file does not exist.", fix, field="labels")
    try:
        labels_img = nib.load(labels)
        label_data = np.asarray(labels_img.dataobj)
    except Exception as err:  # nibabel raises several types for foreign files
        raise InputError(
            labels, f"cannot be read as a NIfTI image ({err}).", fix, field="labels"
        ) from err
    if label_data.ndim != 3:
        raise InputError(
            labels,
            f"the labels image has shape {label_data.shape}; it must be 3-D.",
            fix,
            field="labels",
        )
    table = read_parcel_names(names)
    present = sorted(int(v) for v in np.unique(label_data) if v != 0)
    unnamed = sorted(set(present) - {int(i) for i in table["index"]})
    if unnamed:
        raise InputError(
            names,
            f"label(s) {', '.join(map(str, unnamed))} of {labels} have no row.",
            "add an `index`/`name` row for every label of the atlas.",
            field="index",
        )
    img = unmask(np.asarray(responses, dtype=np.float32), mask_img)
    masker = NiftiLabelsMasker(
        labels_img=str(labels),
        lut=table[["index", "name"]],
        mask_img=mask_img,
        resampling_target="data",
        strategy="mean",
    )
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        signals = masker.fit_transform(img)
    for w in caught:
        log.warning("%s", w.message)
    ids = [int(v) for k, v in masker.region_ids_.items() if k != "background"]
    if not ids:
        raise InputError(
            labels, "no parcel has a voxel inside the analysis mask.", fix, field="labels"
        )
    by_index = dict(zip(table["index"].astype(int), table["name"].astype(str), strict=True))
    parcel_names = np.array([by_index[i] for i in ids])
    dropped = sorted(set(present) - set(ids))
    info = {
        "labels": str(labels),
        "names": str(names),
        "n_parcels": len(ids),
        "dropped_labels": dropped,
    }
    on_grid = np.rint(np.asarray(masker.labels_img_.dataobj)).astype(np.int32)
    inside = np.asarray(mask_img.dataobj).astype(bool)
    volume = np.where(inside & np.isin(on_grid, ids), on_grid, 0).astype(np.int32)
    return Parcellation(
        np.asarray(signals, dtype=np.float32),
        parcel_names,
        np.asarray(ids, dtype=np.int32),
        volume,
        info,
    )


# --------------------------------------------------------------------------- one recording


def ingest_inputs(row: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, str]:
    """The ``ingest`` rule's input files for one recordings-sheet row: ``recording``
    (its ``path``), the optional files the row gives (``confounds``: fMRIPrep's
    confounds table; ``sidecar``: the BOLD's JSON sidecar, filled in by the BIDS
    door), and, for fMRI with ``neural.fmri.atlas`` set, ``atlas_labels`` and
    ``atlas_names``."""
    inputs = {"recording": str(row["path"])}
    for column in ("confounds", "sidecar"):
        value = row.get(column)
        if isinstance(value, str) and value.strip():
            inputs[column] = value.strip()
    atlas = config["neural"]["fmri"].get("atlas")
    if atlas and row.get("modality") == "fmri":
        inputs.update(atlas_labels=str(atlas["labels"]), atlas_names=str(atlas["names"]))
    return inputs


def denoise_recording(
    rec: Any,
    settings: DenoiseSettings,
    *,
    confounds_path: str | Path | None = None,
    atlas: Mapping[str, Any] | None = None,
    recording_id: str = "",
) -> Any:
    """An fMRI :class:`neurovid.neural.Recording` with parcel targets (when ``atlas``)
    and cleaned responses, its ``censored`` volumes set and ``info`` recording how
    (``denoise``, ``atlas``). Parcels are means over the recording's own mask; a
    parcel recording keeps ``affine`` and gets ``parcels`` and ``target_labels``
    instead of ``mask`` and ``voxel_ijk``."""
    tr = 1.0 / float(rec.sampling_rate)
    info = dict(rec.info)
    changes: dict[str, Any] = {}
    responses = rec.responses
    if atlas:
        mask_img = nib.Nifti1Image(np.asarray(rec.mask, dtype=np.uint8), rec.affine)
        parcels = parcellate(responses, mask_img, atlas["labels"], atlas["names"])
        responses = parcels.responses
        log.info(
            "%d voxels -> %d parcels of %s",
            rec.responses.shape[1],
            len(parcels.names),
            atlas["labels"],
        )
        info["atlas"] = parcels.info
        changes.update(
            target_names=parcels.names,
            mask=None,
            voxel_ijk=None,
            parcels=parcels.volume,
            target_labels=parcels.labels,
        )
    result = denoise_run(
        responses, tr, settings, confounds_path=confounds_path, recording_id=recording_id
    )
    info["denoise"] = result.info
    return dataclasses.replace(
        rec, responses=result.responses, censored=result.censored, info=info, **changes
    )
