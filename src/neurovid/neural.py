"""Neural ingest: fMRI NIfTI runs and spike / calcium tables -> one response contract.

Every recording becomes a :class:`Recording`: ``responses`` [T, N] float32,
``times`` [T] (seconds, centre of each sample window, first window starting at
0 s), ``target_names`` [N] and the sampling rate. ``scripts/ingest.py`` writes
it with :func:`neurovid.io.write_responses`.

fMRI (:func:`ingest_fmri`)
    A 4-D NIfTI run is resampled onto the analysis mask's grid (nilearn,
    continuous interpolation; skipped when the grids already match) and
    masked: one column per in-mask voxel, in C order of the voxel indices
    (``voxel_ijk``). Volume ``i`` covers ``[i * TR, (i + 1) * TR)``.

Spikes / calcium tables (:func:`ingest_table`), TSV or CSV by extension
    * wide layout: one row per sample, an optional ``time`` column (seconds,
      centre of each sample, evenly spaced) and one numeric column per neuron;
    * spike-times layout (spikes only): columns ``unit`` and ``spike_time``
      (seconds), one row per spike, binned into counts at ``sampling_rate``:
      bin ``k`` covers ``[k / rate, (k + 1) / rate)`` (a spike exactly on an
      edge goes to the later bin).

    How long the recording is: in the wide layout, one sample per row. In the
    spike-times layout the table says nothing about silence at the end, so the
    recording runs to the end of the bin holding the last spike of any unit,
    unless ``duration`` (seconds) is given, which sets it (rounded up to whole
    bins).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from neurovid.errors import InputError

log = logging.getLogger(__name__)

MODALITIES = ("fmri", "spikes", "calcium")
MIN_VOLUMES = 10
#: relative tolerance for uneven sample spacing and for rate disagreements
RATE_TOLERANCE = 0.01
_TIME_UNITS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}


@dataclass
class Recording:
    """One ingested recording, ready for :func:`neurovid.io.write_responses`."""

    responses: np.ndarray  # float32 [T, N]
    times: np.ndarray  # float64 [T], centre of each sample window (s)
    target_names: np.ndarray  # str [N]
    sampling_rate: float  # Hz (1 / TR for fMRI)
    modality: str
    mask: np.ndarray | None = None  # uint8 [X, Y, Z] (fMRI)
    affine: np.ndarray | None = None  # float64 [4, 4] (fMRI)
    voxel_ijk: np.ndarray | None = None  # int32 [N, 3] (fMRI)
    # fMRI parcel targets (neurovid.denoise.parcellate) instead of mask / voxel_ijk:
    parcels: np.ndarray | None = None  # int32 [X, Y, Z], label volume on the data grid
    target_labels: np.ndarray | None = None  # int32 [N], each target's label in parcels
    info: dict[str, Any] = field(default_factory=dict)  # how it was read (for provenance)
    # NWB door (neurovid.nwb): behavior covariates on the response samples, and the
    # stimulus timeline read from the file ({"video_id", "onset"} dicts, onsets in s).
    behavior: np.ndarray | None = None  # float32 [T, C]
    behavior_names: np.ndarray | None = None  # str [C]
    stimulus_events: list[dict[str, Any]] | None = None
    # fMRI denoising (neurovid.denoise): volumes left out of every fit and score.
    censored: np.ndarray | None = None  # bool [T]

    @property
    def duration(self) -> float:
        """Seconds covered by the samples (number of samples / sampling rate)."""
        return len(self.times) / self.sampling_rate

    def write(self, path: str | Path, attrs: dict[str, Any]) -> None:
        """Write it as a responses file (:func:`neurovid.io.write_responses`) with every
        optional part it carries: fMRI geometry or parcels, behavior channels, censored
        volumes. The one place that lists them, for the ingest script and the tests."""
        from neurovid.io import write_responses

        write_responses(
            path,
            self.responses,
            self.times,
            self.target_names,
            attrs,
            mask=self.mask,
            affine=self.affine,
            voxel_ijk=self.voxel_ijk,
            behavior=self.behavior,
            behavior_names=self.behavior_names,
            censored=self.censored,
            parcels=self.parcels,
            target_labels=self.target_labels,
        )


def _given(value: Any) -> bool:
    """A sheet value that was filled in (not None, NaN or an empty string)."""
    if value is None:
        return False
    if isinstance(value, str):
        return value.strip() != ""
    try:
        return not math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def sheet_number(value: Any) -> float | None:
    """A number from a sample-sheet cell, or None when the cell is empty / NaN."""
    return float(value) if _given(value) else None


# --------------------------------------------------------------------------- fMRI


def load_mask(spec: str | Path = "mni152_gm", resolution_mm: float = 3) -> nib.Nifti1Image:
    """The analysis mask as a binary uint8 3-D image.

    Args:
        spec: ``"mni152_gm"`` for nilearn's bundled MNI152 gray-matter mask
            (offline; 67x79x64 with 64,292 voxels at 3 mm), or the path of a
            NIfTI mask (non-zero voxels are in the mask).
        resolution_mm: voxel size of the bundled mask; ignored for a path.

    Raises:
        InputError: the mask file is missing, unreadable, not 3-D or empty.
    """
    if str(spec) == "mni152_gm":
        from nilearn.datasets import load_mni152_gm_mask

        img = load_mni152_gm_mask(resolution=int(round(float(resolution_mm))))
        data = np.asarray(img.dataobj) > 0
        return nib.Nifti1Image(data.astype(np.uint8), img.affine)
    fix = "set `neural.fmri.mask` in config.yaml to `mni152_gm` or to a 3-D NIfTI mask file."
    img = _load_nifti(spec, "mask", fix)
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputError(spec, f"the mask has shape {img.shape}; it must be a 3-D image.", fix)
    data = np.asarray(img.dataobj).reshape(shape)
    data = np.nan_to_num(data, nan=0.0) > 0
    if not data.any():
        raise InputError(spec, "the mask has no non-zero voxel.", fix)
    return nib.Nifti1Image(data.astype(np.uint8), img.affine)


def _load_nifti(path: str | Path, what: str, fix: str) -> nib.spatialimages.SpatialImage:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, f"the {what} file does not exist.", fix)
    try:
        img = nib.load(path)
    except Exception as err:  # nibabel raises several types for foreign files
        raise InputError(
            path, f"cannot be read as a NIfTI image ({type(err).__name__}: {err}).", fix
        ) from err
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(
            path, f"is a {type(img).__name__}, not a NIfTI image.", "convert it to NIfTI (.nii.gz)."
        )
    return img


def header_tr(img: nib.Nifti1Image) -> float | None:
    """TR in seconds from a NIfTI header (pixdim[4] and its unit), or None if not stated.

    A header whose time unit is "unknown" does not state a TR (nibabel and many
    tools write a placeholder 1.0 there), so it counts as missing.
    """
    zooms = img.header.get_zooms()
    if len(zooms) < 4:
        return None
    unit = img.header.get_xyzt_units()[1]
    value = float(zooms[3])
    if unit not in _TIME_UNITS or not value > 0:
        return None
    return value * _TIME_UNITS[unit]


def _same_grid(img: Any, mask_img: nib.Nifti1Image) -> bool:
    return tuple(img.shape[:3]) == tuple(mask_img.shape[:3]) and np.allclose(
        img.affine, mask_img.affine, atol=1e-3
    )


def _outside_fov(img: Any, mask_img: nib.Nifti1Image, ijk: np.ndarray) -> np.ndarray:
    """Mask voxels whose centre lies outside the image's field of view."""
    to_src = np.linalg.inv(img.affine) @ mask_img.affine
    src = nib.affines.apply_affine(to_src, ijk)
    shape = np.asarray(img.shape[:3])
    return np.any((src < -0.5) | (src > shape - 0.5), axis=1)


def ingest_fmri(
    path: str | Path,
    *,
    mask_img: nib.Nifti1Image,
    tr: float | None = None,
    drop_nan_voxels: bool = False,
    chunk_volumes: int = 32,
) -> Recording:
    """Read a 4-D BOLD run as [volumes, in-mask voxels] on the mask's grid.

    Args:
        path: 4-D NIfTI (``.nii`` / ``.nii.gz``), in the space of ``mask_img``.
        mask_img: binary 3-D mask (:func:`load_mask`); its grid is the output grid.
        tr: repetition time in seconds from the sample sheet; if not given, the
            header's pixdim[4] (with its time unit) is used.
        drop_nan_voxels: drop in-mask voxels whose whole series is NaN (or lies
            outside the image's field of view) with a logged warning, instead of
            failing.
        chunk_volumes: volumes resampled at a time (bounds memory when the image
            is on another grid).

    Returns:
        A :class:`Recording` with ``times = (i + 0.5) * TR``, ``voxel_ijk`` and
        ``mask`` (the mask actually used, without dropped voxels).

    Raises:
        InputError: not a NIfTI file, not 4-D, fewer than 10 volumes, no TR,
            all-NaN voxel series inside the mask, NaN at some time points.
    """
    path = Path(path)
    img = _load_nifti(
        path,
        "fMRI",
        "give a 4-D NIfTI file (.nii or .nii.gz) in the `path` column of recordings.tsv.",
    )
    if len(img.shape) != 4:
        raise InputError(
            path,
            f"the image is {len(img.shape)}-D with shape {img.shape}; an fMRI run must be 4-D (x, y, z, time).",
            "give the whole run as one 4-D file, not a single volume.",
        )
    n_vols = img.shape[3]
    if n_vols < MIN_VOLUMES:
        raise InputError(
            path,
            f"the run has only {n_vols} volumes; at least {MIN_VOLUMES} are needed.",
            "check that the file holds the whole run.",
        )
    if _given(tr):
        tr = float(tr)  # type: ignore[arg-type]
        tr_source = "sheet"
        if not tr > 0:
            raise InputError(
                path, f"TR {tr} is not positive.", "set `tr` in recordings.tsv (seconds)."
            )
    else:
        tr = header_tr(img)
        tr_source = "header"
        if tr is None:
            zooms = img.header.get_zooms()
            raise InputError(
                path,
                f"no TR: the sample sheet gives none and the header's pixdim[4]={zooms[3]:g} has time unit {img.header.get_xyzt_units()[1]!r}.",
                "set `tr` (seconds) for this recording in recordings.tsv.",
                field="tr",
            )

    mask = np.asarray(mask_img.dataobj) > 0
    ijk = np.argwhere(mask)
    try:
        if _same_grid(img, mask_img):
            data = np.asarray(img.dataobj, dtype=np.float32)
            responses = np.ascontiguousarray(data[mask].T)
            del data
            resampled = False
        else:
            responses = _resample_masked(img, mask_img, mask, chunk_volumes)
            outside = _outside_fov(img, mask_img, ijk)
            responses[:, outside] = np.nan
            resampled = True
    except (OSError, EOFError, ValueError) as err:
        raise InputError(
            path,
            f"the image data cannot be read ({type(err).__name__}: {err}).",
            "re-export the file; it may be truncated.",
        ) from err

    finite = np.isfinite(responses)
    all_bad = ~finite.any(axis=0)
    if all_bad.any():
        n_bad = int(all_bad.sum())
        first = ijk[np.argmax(all_bad)]
        mm = nib.affines.apply_affine(mask_img.affine, first)
        where = (
            f"{n_bad} of {mask.sum()} in-mask voxels have no finite value in any volume "
            f"(NaN or outside the image's field of view), e.g. voxel ijk ({', '.join(map(str, first))})"
            f" at ({', '.join(f'{v:g}' for v in mm)}) mm"
        )
        if not drop_nan_voxels:
            raise InputError(
                path,
                f"{where}.",
                "check the preprocessing (brain coverage, registration to the mask's space), or set `neural.fmri.drop_nan_voxels: true` in config.yaml to drop these voxels.",
            )
        log.warning("%s: dropping %s.", path, where)
        keep = ~all_bad
        responses, ijk, finite = responses[:, keep], ijk[keep], finite[:, keep]
        mask = np.zeros_like(mask)
        mask[tuple(ijk.T)] = True
    if not finite.all():
        bad_vols = np.flatnonzero(~finite.all(axis=1))
        n_vox = int((~finite.all(axis=0)).sum())
        shown = ", ".join(map(str, bad_vols[:10])) + (" ..." if len(bad_vols) > 10 else "")
        raise InputError(
            path,
            f"{n_vox} in-mask voxels have NaN or infinite values in {len(bad_vols)} of {n_vols} volumes (0-based volume indices: {shown}).",
            "check the preprocessing of these volumes (e.g. censoring/scrubbing should interpolate, not write NaN).",
        )
    constant = np.ptp(responses, axis=0) == 0
    if constant.any():
        log.warning(
            "%s: %d in-mask voxels are constant over the run (no signal; their scores will be 0).",
            path,
            int(constant.sum()),
        )
    times = (np.arange(n_vols) + 0.5) * tr
    names = np.array([f"voxel_{i}_{j}_{k}" for i, j, k in ijk])
    return Recording(
        responses=responses.astype(np.float32, copy=False),
        times=times,
        target_names=names,
        sampling_rate=1.0 / tr,
        modality="fmri",
        mask=mask.astype(np.uint8),
        affine=np.asarray(mask_img.affine, dtype=np.float64),
        voxel_ijk=ijk.astype(np.int32),
        info={"tr": tr, "tr_source": tr_source, "resampled": resampled, "shape": list(img.shape)},
    )


def _resample_masked(
    img: nib.Nifti1Image, mask_img: nib.Nifti1Image, mask: np.ndarray, chunk: int
) -> np.ndarray:
    """Resample ``img`` to the mask grid ``chunk`` volumes at a time; return [T, N] float32."""
    from nilearn.image import resample_to_img

    n_vols = img.shape[3]
    out = np.empty((n_vols, int(mask.sum())), dtype=np.float32)
    data = np.asarray(img.dataobj, dtype=np.float32)
    for start in range(0, n_vols, chunk):
        stop = min(start + chunk, n_vols)
        part = nib.Nifti1Image(data[..., start:stop], img.affine)
        res = resample_to_img(
            part,
            mask_img,
            interpolation="continuous",
            force_resample=True,
            copy_header=True,
        )
        out[start:stop] = np.asarray(res.dataobj, dtype=np.float32)[mask].T
        log.info("resampled volumes %d-%d of %d", start, stop - 1, n_vols)
    return out


# --------------------------------------------------------------------------- tables


def _read_table(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    if name.endswith((".tsv", ".tsv.gz", ".txt", ".txt.gz")):
        sep = "\t"
    elif name.endswith((".csv", ".csv.gz")):
        sep = ","
    else:
        raise InputError(
            path,
            "unknown table format (the name must end in .tsv or .csv).",
            "save the recording as a tab-separated (.tsv) or comma-separated (.csv) table with a header row.",
        )
    if not path.is_file():
        raise InputError(
            path, "the recording file does not exist.", "correct `path` in recordings.tsv."
        )
    try:
        table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(
            path,
            f"cannot be parsed as a table ({err}).",
            "save it as TSV/CSV with a header row.",
        ) from err
    table.columns = [str(c).strip() for c in table.columns]
    return table.apply(lambda col: col.str.strip())


def _numeric(table: pd.DataFrame, column: str, path: Path) -> np.ndarray:
    """A column as float64; empty cells become NaN, any other non-number is an error."""
    text = table[column]
    numbers = pd.to_numeric(text.where(text != "", None), errors="coerce")
    bad = (text != "") & numbers.isna() & ~text.str.lower().isin(["nan", "na"])
    if bad.any():
        row = int(np.argmax(bad.to_numpy()))
        raise InputError(
            path,
            f"row {row + 2} (data row {row + 1}): {text.iloc[row]!r} is not a number.",
            f"every cell of column `{column}` must be a number.",
            field=column,
        )
    return numbers.to_numpy(dtype=np.float64, na_value=np.nan)


def _rows(indices: np.ndarray) -> str:
    shown = ", ".join(str(i + 2) for i in indices[:10])
    return shown + (" ..." if len(indices) > 10 else "")


def ingest_table(
    path: str | Path,
    *,
    modality: str,
    sampling_rate: float | None = None,
    duration: float | None = None,
) -> Recording:
    """Read a spikes or calcium table (see the module docstring for the two layouts).

    Args:
        path: ``.tsv`` or ``.csv`` (optionally ``.gz``).
        modality: ``spikes`` or ``calcium``.
        sampling_rate: Hz. Required without a ``time`` column and for spike
            times; with a ``time`` column it must agree with its spacing (1%).
        duration: spike-times layout only: recording length in seconds
            (default: to the end of the bin holding the last spike).

    Raises:
        InputError: non-numeric cells (column and row named), a neuron column
            with no value or with gaps, uneven or non-increasing ``time``,
            sampling rate disagreeing with ``time`` or missing, no neuron column.
    """
    path = Path(path)
    table = _read_table(path)
    rate = float(sampling_rate) if _given(sampling_rate) else None  # type: ignore[arg-type]
    if rate is not None and not rate > 0:
        raise InputError(
            path,
            f"sampling rate {rate} is not positive.",
            "set `sampling_rate` in recordings.tsv (Hz).",
        )
    if {"unit", "spike_time"} <= set(table.columns):
        if modality != "spikes":
            raise InputError(
                path,
                f"has `unit` and `spike_time` columns (a spike-times table) but the recording's modality is {modality!r}.",
                "set modality to `spikes`, or give calcium traces in the wide layout (`time` + one column per neuron).",
                field="modality",
            )
        return _spike_times(path, table, rate, duration)
    return _wide(path, table, modality, rate)


def _wide(path: Path, table: pd.DataFrame, modality: str, rate: float | None) -> Recording:
    neurons = [c for c in table.columns if c != "time"]
    if not neurons:
        raise InputError(
            path,
            f"has no neuron columns (columns: {', '.join(table.columns)}).",
            "add one numeric column per neuron (besides the optional `time` column), or use the spike-times layout (`unit`, `spike_time`).",
        )
    if len(table) < 2:
        raise InputError(path, f"has {len(table)} data rows; at least 2 samples are needed.")
    values = np.column_stack([_numeric(table, c, path) for c in neurons])
    finite = np.isfinite(values)
    for j, column in enumerate(neurons):
        if not finite[:, j].any():
            raise InputError(
                path,
                f"neuron column `{column}` has no numeric value (all empty or NaN).",
                "remove the column or fill in its values.",
                field=column,
            )
    if not finite.all():
        j = int(np.argmax(~finite.all(axis=0)))
        missing = np.flatnonzero(~finite[:, j])
        raise InputError(
            path,
            f"neuron column `{neurons[j]}` is empty, NaN or infinite in {len(missing)} rows ({_rows(missing)}).",
            "fill the gaps (e.g. interpolate) or remove the neuron; encoding models need a value at every sample.",
            field=neurons[j],
        )

    if "time" in table.columns:
        times = _numeric(table, "time", path)
        if not np.isfinite(times).all():
            rows = np.flatnonzero(~np.isfinite(times))
            raise InputError(
                path,
                f"`time` is empty in rows {_rows(rows)}.",
                "give every row a time.",
                field="time",
            )
        steps = np.diff(times)
        if np.any(steps <= 0):
            row = int(np.argmax(steps <= 0)) + 1
            raise InputError(
                path,
                f"`time` does not increase at row {row + 2} ({times[row - 1]:g} -> {times[row]:g}).",
                "sort the rows by time and remove duplicates.",
                field="time",
            )
        period = float(np.median(steps))
        if np.max(np.abs(steps - period)) > RATE_TOLERANCE * period:
            row = int(np.argmax(np.abs(steps - period))) + 1
            raise InputError(
                path,
                f"`time` is unevenly spaced: steps range {steps.min():.6g}..{steps.max():.6g} s (median {period:.6g} s), e.g. at row {row + 2}.",
                "resample the recording to a constant rate (or fill dropped samples) before ingest.",
                field="time",
            )
        time_rate = 1.0 / period
        if rate is not None and abs(time_rate - rate) > RATE_TOLERANCE * rate:
            raise InputError(
                path,
                f"the `time` column is sampled at {time_rate:.6g} Hz but the sample sheet says sampling_rate={rate:g} Hz.",
                "correct `sampling_rate` in recordings.tsv or the `time` column (seconds).",
                field="time",
            )
        rate = rate if rate is not None else time_rate
        source = "time column"
    else:
        if rate is None:
            raise InputError(
                path,
                "has no `time` column and no sampling rate is given.",
                "set `sampling_rate` (Hz) for this recording in recordings.tsv, or add a `time` column (seconds, centre of each sample).",
                field="sampling_rate",
            )
        times = (np.arange(len(table)) + 0.5) / rate
        source = "sampling_rate"
    return Recording(
        responses=values.astype(np.float32),
        times=times,
        target_names=np.array(neurons),
        sampling_rate=rate,
        modality=modality,
        info={"layout": "wide", "times_from": source},
    )


def _unit_order(units: list[str]) -> list[str]:
    try:
        return sorted(units, key=float)
    except ValueError:
        return sorted(units)


def _spike_times(
    path: Path, table: pd.DataFrame, rate: float | None, duration: float | None
) -> Recording:
    if rate is None:
        raise InputError(
            path,
            "is a spike-times table (`unit`, `spike_time`) but no sampling rate is given to bin it.",
            "set `sampling_rate` (Hz, the bin rate) for this recording in recordings.tsv.",
            field="sampling_rate",
        )
    if table.empty:
        raise InputError(path, "has no spikes (no data rows).", "check the export.")
    spikes = _numeric(table, "spike_time", path)
    bad = ~np.isfinite(spikes) | (spikes < 0)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise InputError(
            path,
            f"`spike_time` is empty, NaN or negative in rows {_rows(rows)}.",
            "give every spike a time in seconds from the start of the recording.",
            field="spike_time",
        )
    units = table["unit"].to_numpy(dtype=object)
    if np.any(units == ""):
        rows = np.flatnonzero(units == "")
        raise InputError(
            path,
            f"`unit` is empty in rows {_rows(rows)}.",
            "name the unit of every spike.",
            field="unit",
        )
    recording = bin_spikes(path, spikes, units.astype(str), rate, duration)
    recording.info["layout"] = "spike_times"
    return recording


def bin_spikes(
    path: str | Path,
    spike_times: np.ndarray,
    units: np.ndarray,
    rate: float,
    duration: float | None = None,
    names: list[str] | None = None,
    field: str = "spike_time",
) -> Recording:
    """Bin spike times into counts per unit: bin ``k`` covers ``[k / rate, (k + 1) / rate)``.

    The one binning of every spikes door (spike-times tables, NWB ``Units``).

    Args:
        path: the recording file (named in errors).
        spike_times: seconds from the start of the recording's first bin, >= 0.
        units: the unit (name) of each spike, same length.
        rate: bins per second.
        duration: recording length in seconds (rounded up to whole bins);
            default: to the end of the bin holding the last spike.
        names: the units in column order (units without spikes get zero
            columns); default: the units that spike, in numeric (else text) order.
        field: the field errors name.

    Raises:
        InputError: a spike after ``duration``.
    """
    bins = np.floor(np.asarray(spike_times, dtype=np.float64) * rate + 1e-9).astype(np.int64)
    if _given(duration):
        n_bins = int(math.ceil(float(duration) * rate - 1e-9))  # type: ignore[arg-type]
        if len(bins) and bins.max() >= n_bins:
            raise InputError(
                path,
                f"a spike at {np.max(spike_times):g} s lies after the recording's end ({duration:g} s).",
                "check the duration or the spike times.",
                field=field,
            )
        length_from = "duration"
    else:
        n_bins = int(bins.max()) + 1
        length_from = "last spike"
    if names is None:
        names = _unit_order(sorted(set(units.tolist())))
    column = {name: j for j, name in enumerate(names)}
    cols = np.array([column[u] for u in units], dtype=np.int64)
    counts = np.zeros((n_bins, len(names)), dtype=np.float32)
    np.add.at(counts, (bins, cols), 1.0)
    return Recording(
        responses=counts,
        times=(np.arange(n_bins) + 0.5) / rate,
        target_names=np.array(names),
        sampling_rate=rate,
        modality="spikes",
        info={"length_from": length_from, "n_spikes": len(spike_times)},
    )


# --------------------------------------------------------------------------- dispatch


def ingest_recording(
    path: str | Path,
    *,
    modality: str,
    tr: float | None = None,
    sampling_rate: float | None = None,
    mask_img: nib.Nifti1Image | None = None,
    drop_nan_voxels: bool = False,
    duration: float | None = None,
    nwb: dict[str, Any] | None = None,
) -> Recording:
    """Ingest one recording of any modality (``fmri``, ``spikes``, ``calcium``).

    For fMRI, ``tr`` (else ``1 / sampling_rate``, else the header) gives the TR
    and ``mask_img`` the output grid (default: :func:`load_mask`). An ``.nwb``
    file goes through :func:`neurovid.nwb.ingest_nwb` with the keyword
    arguments in ``nwb`` (series, behavior, stimulus table, video column, videos).
    """
    if modality not in MODALITIES:
        raise InputError(
            path,
            f"unknown modality {modality!r}.",
            f"use one of {', '.join(MODALITIES)} in the `modality` column of recordings.tsv.",
            field="modality",
        )
    if str(path).lower().endswith(".nwb"):
        from neurovid.nwb import ingest_nwb

        return ingest_nwb(path, modality=modality, sampling_rate=sampling_rate, **(nwb or {}))
    if modality == "fmri":
        if not _given(tr) and _given(sampling_rate):
            tr = 1.0 / float(sampling_rate)  # type: ignore[arg-type]
        return ingest_fmri(
            path,
            mask_img=mask_img if mask_img is not None else load_mask(),
            tr=tr,
            drop_nan_voxels=drop_nan_voxels,
        )
    return ingest_table(path, modality=modality, sampling_rate=sampling_rate, duration=duration)
