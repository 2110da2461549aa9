"""Atomic writes, provenance, and the HDF5 contracts every stage shares.

Features file (``results/features/{extractor}/{video}.h5``)
    ``features`` float32 [T, D], ``times`` float64 [T] (seconds, centre of each
    frame or window); attrs ``extractor``, ``model_id``, ``revision``,
    ``layer``, ``dtype``, ``duration`` (seconds of video), ``fps``, plus
    ``provenance`` (JSON).

Responses file (``results/neural/{recording}.h5``)
    ``responses`` float32 [T, N], ``times`` float64 [T] (seconds, centre of
    each sample window), ``target_names`` [N] (str); attrs ``recording_id``,
    ``subject``, ``modality``, ``sampling_rate`` (Hz), ``provenance``.
    fMRI adds ``mask`` uint8 [X, Y, Z], ``affine`` float64 [4, 4] and
    ``voxel_ijk`` int32 [N, 3] (voxel of each column).
    fMRI parcel targets (``neural.fmri.atlas``, :func:`neurovid.denoise.parcellate`)
    add instead ``parcels`` int32 [X, Y, Z] (the atlas labels resampled to the
    data grid, 0 outside the analysis mask and for labels without a target),
    ``affine`` float64 [4, 4] and ``target_labels`` int32 [N] (the label value
    of each column in ``parcels``); no ``mask`` / ``voxel_ijk``. Encoding copies
    whichever geometry a recording has into ``scores.h5``, and
    :func:`neurovid.stats.scores_to_images` paints a voxel's score or, for a
    parcel, its score over every voxel of the parcel.
    Recordings read from NWB (:mod:`neurovid.nwb`) may add ``behavior``
    float32 [T, C] (behavior covariates such as running speed or pupil size,
    averaged over each response sample's window; NaN where the channel was not
    recorded) with ``behavior_names`` [C] (str), and the attr
    ``stimulus_events`` (JSON list of ``{"video_id", "onset"}``, onsets in
    seconds from the start of the first sample): the stimulus timeline when
    the sheet's ``stimulus`` says ``nwb:<table>``.
    ``censored`` bool [T] (fMRI denoising, :mod:`neurovid.denoise`): volumes
    left out of every encoding fit and score (high motion, non-steady-state);
    they hold 0 and stay in place so ``times`` keep the stimulus clock. Absent
    means none censored (:func:`read_responses` then gives all False).

Files carry no wall-clock timestamps, so the same inputs give the same bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from neurovid import __version__
from neurovid.errors import InputError

PathLike = str | os.PathLike


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    The temporary name keeps the final suffixes (``.nii.gz``, ``.mp4``) so that
    libraries choosing a format from the extension still work. On any error the
    temporary file (or folder) is removed and ``path`` is left untouched, so a
    failed step never leaves a partial output.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(final.suffixes)
    stem = final.name[: len(final.name) - len(suffix)] if suffix else final.name
    fd, tmp_name = tempfile.mkstemp(prefix=f".{stem}.tmp-", suffix=suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # writers create it themselves (some refuse to overwrite)
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"{final}: the writer produced no file at {tmp}")
        os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: PathLike) -> Iterator[Path]:
    """Like :func:`atomic_path` for a folder: fill the yielded folder, renamed on success."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        _remove(final)
        os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        import shutil

        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions of ``names`` (plus python, numpy, neurovid) for provenance."""
    versions = {"python": platform.python_version(), "neurovid": __version__}
    for name in ("numpy", *names):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def file_digest(path: PathLike, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file's bytes, read in chunks (memory does not grow with size)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return f"{algorithm}:{h.hexdigest()}"


def provenance(
    step: str,
    params: Mapping[str, Any] | None = None,
    inputs: Mapping[str, PathLike] | None = None,
    packages: tuple[str, ...] = (),
    digest_inputs: bool = True,
) -> dict[str, Any]:
    """What produced an output: step, parameters, inputs (with digests) and versions.

    Deliberately free of timestamps and host names so reruns give identical bytes.
    """
    record: dict[str, Any] = {
        "step": step,
        "params": dict(params or {}),
        "versions": package_versions(*packages),
    }
    if inputs:
        record["inputs"] = {
            key: {
                "path": str(value),
                **(
                    {"digest": file_digest(value)}
                    if digest_inputs and Path(value).is_file()
                    else {}
                ),
            }
            for key, value in inputs.items()
        }
    return record


def to_json(obj: Any) -> str:
    """Stable JSON (sorted keys) that also accepts numpy scalars and arrays and paths."""

    def default(o: Any) -> Any:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, os.PathLike):
            return os.fspath(o)
        raise TypeError(f"cannot serialise {type(o).__name__} to JSON")

    return json.dumps(obj, sort_keys=True, indent=2, default=default)


def write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as stable, pretty JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(to_json(obj) + "\n")


#: Data-file endings a JSON sidecar replaces (BIDS style: ``r.nii.gz`` -> ``r.json``).
SIDECAR_REPLACES = (".nii.gz", ".nii", ".tsv", ".csv", ".h5")


def sidecar_path(path: PathLike) -> Path:
    """The JSON sidecar beside a data file: ``scores.tsv`` -> ``scores.json``,
    ``r.nii.gz`` -> ``r.json``, ``v1.frames.csv`` -> ``v1.frames.json``."""
    path = Path(path)
    name = path.name
    for suffix in SIDECAR_REPLACES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return path.with_name(name + ".json")


def write_table(
    path: PathLike,
    table: Any,
    sep: str = "\t",
    provenance: Mapping[str, Any] | None = None,
    **sidecar: Any,
) -> None:
    """Write a pandas DataFrame as TSV (or CSV with ``sep=','``), atomically, no index.

    With ``provenance`` (and any other ``sidecar`` entries), also write the table's
    JSON sidecar (:func:`sidecar_path`), so a table carries what produced it as the
    HDF5 and NIfTI outputs do in their metadata.
    """
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep=sep, index=False, float_format="%.6g")
    if provenance is not None:
        write_json(sidecar_path(path), {**sidecar, "provenance": dict(provenance)})


def _attr_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dict | list | tuple):
        return to_json(value)
    return value


def write_h5(
    path: PathLike,
    datasets: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any] | None = None,
    compression: str | None = None,
) -> None:
    """Write named arrays and attributes to an HDF5 file, atomically and reproducibly.

    Dicts and lists in ``attrs`` are stored as JSON strings. Object timestamps are
    disabled (``track_times=False``) so identical content gives identical bytes.
    """
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as h5:
            for name, array in datasets.items():
                array = np.asarray(array)
                if array.dtype.kind in "UO":
                    array = array.astype(h5py.string_dtype())
                    h5.create_dataset(name, data=array, track_times=False)
                else:
                    h5.create_dataset(
                        name,
                        data=array,
                        track_times=False,
                        compression=compression if array.ndim and array.size > 1024 else None,
                    )
            for key, value in (attrs or {}).items():
                h5.attrs[key] = _attr_value(value)


def read_attrs(h5: h5py.File) -> dict[str, Any]:
    """Attributes of an open HDF5 file, JSON strings decoded back to objects."""
    out: dict[str, Any] = {}
    for key, value in h5.attrs.items():
        if isinstance(value, bytes):
            value = value.decode()
        if isinstance(value, str) and value[:1] in "{[":
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = value
    return out


@dataclass
class FeatureSet:
    """Contents of a features file: ``features`` [T, D], ``times`` [T] in seconds."""

    features: np.ndarray
    times: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        """Seconds of video the features cover (attr ``duration``, else from ``times``)."""
        if "duration" in self.attrs:
            return float(self.attrs["duration"])
        if len(self.times) > 1:
            step = float(np.median(np.diff(self.times)))
            return float(self.times[-1] + step / 2)
        raise ValueError("features file has no duration attribute and fewer than two times")


@dataclass
class ResponseSet:
    """Contents of a responses file: ``responses`` [T, N], ``times`` [T] in seconds."""

    responses: np.ndarray
    times: np.ndarray
    target_names: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)
    mask: np.ndarray | None = None
    affine: np.ndarray | None = None
    voxel_ijk: np.ndarray | None = None
    behavior: np.ndarray | None = None
    behavior_names: np.ndarray | None = None
    censored: np.ndarray | None = None  # bool [T]; all False when the file has none
    parcels: np.ndarray | None = None  # int32 [X, Y, Z] (fMRI parcel targets)
    target_labels: np.ndarray | None = None  # int32 [N], each target's label in parcels

    @property
    def sampling_rate(self) -> float:
        return float(self.attrs["sampling_rate"])


def _check_times(path: PathLike, times: np.ndarray, n_rows: int, what: str) -> None:
    if times.ndim != 1 or len(times) != n_rows:
        raise InputError(
            path, f"`times` has shape {times.shape} but `{what}` has {n_rows} rows.", field="times"
        )
    if n_rows > 1 and not np.all(np.diff(times) > 0):
        raise InputError(path, "`times` is not strictly increasing.", field="times")


def write_features(
    path: PathLike,
    features: np.ndarray,
    times: np.ndarray,
    attrs: Mapping[str, Any],
) -> None:
    """Write a features file (see module docstring for the contract)."""
    features = np.asarray(features, dtype=np.float32)
    times = np.asarray(times, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"{path}: features must be 2-D [T, D], got shape {features.shape}")
    _check_times(path, times, features.shape[0], "features")
    write_h5(path, {"features": features, "times": times}, attrs)


def read_features(path: PathLike) -> FeatureSet:
    """Read a features file, checking the contract."""
    with h5py.File(path, "r") as h5:
        for name in ("features", "times"):
            if name not in h5:
                raise InputError(
                    path, f"dataset `{name}` is missing; not a neurovid features file."
                )
        fs = FeatureSet(h5["features"][...], h5["times"][...], read_attrs(h5))
    _check_times(path, fs.times, fs.features.shape[0], "features")
    return fs


def write_responses(
    path: PathLike,
    responses: np.ndarray,
    times: np.ndarray,
    target_names: np.ndarray | list[str],
    attrs: Mapping[str, Any],
    *,
    mask: np.ndarray | None = None,
    affine: np.ndarray | None = None,
    voxel_ijk: np.ndarray | None = None,
    behavior: np.ndarray | None = None,
    behavior_names: np.ndarray | list[str] | None = None,
    censored: np.ndarray | None = None,
    parcels: np.ndarray | None = None,
    target_labels: np.ndarray | None = None,
) -> None:
    """Write a responses file (see module docstring for the contract)."""
    responses = np.asarray(responses, dtype=np.float32)
    times = np.asarray(times, dtype=np.float64)
    names = np.asarray(target_names, dtype=str)
    if responses.ndim != 2:
        raise ValueError(f"{path}: responses must be 2-D [T, N], got shape {responses.shape}")
    _check_times(path, times, responses.shape[0], "responses")
    if len(names) != responses.shape[1]:
        raise ValueError(f"{path}: {len(names)} target names for {responses.shape[1]} columns")
    datasets: dict[str, np.ndarray] = {
        "responses": responses,
        "times": times,
        "target_names": names,
    }
    if mask is not None:
        datasets["mask"] = np.asarray(mask, dtype=np.uint8)
        datasets["affine"] = np.asarray(affine, dtype=np.float64)
        datasets["voxel_ijk"] = np.asarray(voxel_ijk, dtype=np.int32)
    if parcels is not None:
        datasets.update(parcel_geometry(path, parcels, affine, target_labels, len(names)))
    if behavior is not None:
        behavior = np.asarray(behavior, dtype=np.float32)
        behavior_names = np.asarray(behavior_names, dtype=str)
        if behavior.ndim != 2 or behavior.shape[0] != responses.shape[0]:
            raise ValueError(
                f"{path}: behavior must be [T={responses.shape[0]}, C], got shape {behavior.shape}"
            )
        if behavior_names.shape != (behavior.shape[1],):
            raise ValueError(
                f"{path}: {behavior_names.size} names for {behavior.shape[1]} channels"
            )
        datasets["behavior"] = behavior
        datasets["behavior_names"] = behavior_names
    if censored is not None:
        censored = np.asarray(censored, dtype=bool)
        if censored.shape != (responses.shape[0],):
            raise ValueError(f"{path}: censored has shape {censored.shape}, not [T={len(times)}]")
        datasets["censored"] = censored
    write_h5(path, datasets, attrs)


def parcel_geometry(
    path: PathLike,
    parcels: np.ndarray,
    affine: np.ndarray | None,
    target_labels: np.ndarray | None,
    n_targets: int,
) -> dict[str, np.ndarray]:
    """The ``parcels`` / ``affine`` / ``target_labels`` datasets of parcel targets, checked:
    a 3-D label volume, a 4x4 affine, one label per target, each label in the volume."""
    parcels = np.asarray(parcels, dtype=np.int32)
    labels = np.asarray(target_labels if target_labels is not None else [], dtype=np.int32)
    if parcels.ndim != 3 or affine is None or np.shape(affine) != (4, 4):
        raise ValueError(f"{path}: parcels need a 3-D label volume and a 4x4 affine")
    if labels.shape != (n_targets,):
        raise ValueError(f"{path}: {labels.size} target labels for {n_targets} targets")
    in_volume = set(np.unique(parcels[parcels != 0]).tolist())
    absent = sorted(set(labels.tolist()) - in_volume)
    if absent:
        raise ValueError(f"{path}: target label(s) {absent} have no voxel in parcels")
    return {
        "parcels": parcels,
        "affine": np.asarray(affine, dtype=np.float64),
        "target_labels": labels,
    }


def read_responses(path: PathLike) -> ResponseSet:
    """Read a responses file, checking the contract."""
    with h5py.File(path, "r") as h5:
        for name in ("responses", "times", "target_names"):
            if name not in h5:
                raise InputError(
                    path, f"dataset `{name}` is missing; not a neurovid responses file."
                )
        rs = ResponseSet(
            responses=h5["responses"][...],
            times=h5["times"][...],
            target_names=h5["target_names"].asstr()[...],
            attrs=read_attrs(h5),
            mask=h5["mask"][...] if "mask" in h5 else None,
            affine=h5["affine"][...] if "affine" in h5 else None,
            voxel_ijk=h5["voxel_ijk"][...] if "voxel_ijk" in h5 else None,
            behavior=h5["behavior"][...] if "behavior_names" in h5 else None,
            behavior_names=h5["behavior_names"].asstr()[...] if "behavior_names" in h5 else None,
            censored=h5["censored"][...].astype(bool) if "censored" in h5 else None,
            parcels=h5["parcels"][...] if "parcels" in h5 else None,
            target_labels=h5["target_labels"][...] if "target_labels" in h5 else None,
        )
    _check_times(path, rs.times, rs.responses.shape[0], "responses")
    if rs.censored is None:
        rs.censored = np.zeros(len(rs.times), dtype=bool)
    elif rs.censored.shape != rs.times.shape:
        raise InputError(
            path,
            f"`censored` has shape {rs.censored.shape} for {len(rs.times)} samples.",
            "re-run ingest for this recording.",
            field="censored",
        )
    return rs


def read_h5(path: PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """All datasets (strings decoded) and attributes of a flat HDF5 file."""
    arrays: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as h5:
        for name, dataset in h5.items():
            if not isinstance(dataset, h5py.Dataset):
                continue
            if h5py.check_string_dtype(dataset.dtype) is not None:
                arrays[name] = dataset.asstr()[...]
            else:
                arrays[name] = dataset[...]
        attrs = read_attrs(h5)
    return arrays, attrs


def repeat_keys(keys: list[str], response_paths: list[str | Path]) -> list[str]:
    """The runs' stimulus keys (equal keys = repeats: held out together, noise ceiling).

    A sheet timeline's key is known when the workflow starts (``video@onset;...``); an
    NWB run's (``nwb:...``) is taken from the presentations ingest stored in its
    responses file (``stimulus_events``): the same videos at the same times relative to
    the first presentation. So an NWB file made by the workflow itself (the demo) gets
    its repeats found, and its key never depends on whether the file existed when the
    DAG was built.
    """
    out = []
    for key, path in zip(keys, response_paths, strict=True):
        if str(key).startswith("nwb:"):
            with h5py.File(path, "r") as h5:
                events = read_attrs(h5).get("stimulus_events") or []
            first = events[0]["onset"] if events else 0.0
            key = "nwb:" + ";".join(f"{e['video_id']}@{e['onset'] - first:g}" for e in events)
        out.append(str(key))
    return out
