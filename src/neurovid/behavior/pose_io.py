"""Pose from every common format as one ``movement`` dataset (the behavior stage's front door).

The videos sheet's ``pose`` column takes whatever ``movement`` 0.15 loads, plus
CalMS21/MABe JSON (:mod:`neurovid.behavior.calms21`):

============== ============================================ ===============================
``pose_source`` file                                        loader
============== ============================================ ===============================
deeplabcut     DLC ``.h5`` (key ``df_with_missing``), DLC   ``load_poses.from_dlc_file``
               ``.csv`` (scorer / bodyparts / coords rows)
sleap          SLEAP labels ``.slp``, analysis ``.h5``      ``load_poses.from_sleap_file``
               (datasets ``tracks`` and ``node_names``)
lightning-pose LightningPose ``.csv`` (DLC-style header)    ``load_poses.from_lp_file``
nwb            NWB ``.nwb`` with ndx-pose ``PoseEstimation`` ``load_poses.from_nwb_file``
               in the ``behavior`` processing module        (one per PoseEstimation)
calms21        CalMS21 / MABe ``.json`` (one sequence,      :func:`.calms21.load_sequence`
               the sheet's ``sequence`` column)
============== ============================================ ===============================

:func:`detect_source` tells the format from the extension and the content: an
``.h5`` by its datasets, a ``.csv`` by its header rows and scorer (DeepLabCut
scorers start with ``DLC``; LightningPose's model names contain ``heatmap``,
``tracker`` or ``lightning``; any other scorer of a DLC-style header reads as
DeepLabCut, since movement reads both with the same code and only the recorded
``source_software`` differs). The sheet's ``pose_source`` overrides detection.
A file that is none of these stops with an :class:`InputError` naming the file,
the field (``pose`` or ``pose_source``) and the fix.

Whatever the source, :func:`load_pose_dataset` returns what DeepLabCut output
gave before: a movement poses dataset with ``position`` (time, space, keypoints,
individuals; float64 pixels, image axes) and ``confidence`` (time, keypoints,
individuals), ``time`` in seconds from the video's fps (sample i at i / fps),
and attrs ``source_software``, ``source_file`` and ``pose_source``. Confidence
keeps movement's meaning, which depends on the software: DeepLabCut and
LightningPose likelihoods (0..1), SLEAP point scores (may exceed 1), CalMS21
scores; NaN where the file has none (SLEAP user labels, NWB without
confidence). :func:`confident_positions` drops points under a cutoff and keeps
points without a score, so a file with no confidence is not emptied.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import xarray as xr

from neurovid.errors import InputError
from neurovid.io import PathLike

log = logging.getLogger(__name__)

FIELD_POSE = "pose"
FIELD_SOURCE = "pose_source"
FIELD_SEQUENCE = "sequence"
#: The sheet's ``pose_source`` values and the ``source_software`` movement records.
SOURCES = {
    "deeplabcut": "DeepLabCut",
    "sleap": "SLEAP",
    "lightning-pose": "LightningPose",
    "nwb": "NWB",
    "calms21": "CalMS21",
}
#: File endings each source may have.
SUFFIXES = {
    "deeplabcut": (".h5", ".csv"),
    "sleap": (".slp", ".h5"),
    "lightning-pose": (".csv",),
    "nwb": (".nwb",),
    "calms21": (".json",),
}
FIX_UNKNOWN = (
    "give DeepLabCut .h5/.csv, SLEAP .slp or analysis .h5, LightningPose .csv, NWB (ndx-pose) "
    "or CalMS21 .json output, or name the format in the videos sheet's pose_source column "
    f"({' | '.join(SOURCES)})."
)
LP_SCORER_HINTS = ("heatmap", "tracker", "lightning")


def _csv_header(path: Path, rows: int = 4) -> list[list[str]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            return [row for _, row in zip(range(rows), reader, strict=False)]
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _h5_keys(path: Path) -> set[str] | None:
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            return set(fh.keys())
    except OSError:
        return None


def detect_source(path: PathLike) -> str:
    """The ``pose_source`` of a pose file, from its extension and content (see the module doc)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".slp":
        return "sleap"
    if suffix == ".nwb":
        return "nwb"
    if suffix == ".json":
        return "calms21"
    if suffix == ".h5":
        keys = _h5_keys(path)
        if keys is None:
            raise InputError(
                path,
                "the .h5 pose file is not a readable HDF5 file.",
                FIX_UNKNOWN,
                field=FIELD_POSE,
            )
        if {"tracks", "node_names"} <= keys:
            return "sleap"
        if "df_with_missing" in keys:
            return "deeplabcut"
        raise InputError(
            path,
            f"the .h5 file is neither DeepLabCut output (key df_with_missing) nor a SLEAP "
            f"analysis file (datasets tracks, node_names); it holds {sorted(keys)}.",
            FIX_UNKNOWN,
            field=FIELD_POSE,
        )
    if suffix == ".csv":
        header = _csv_header(path)
        first = [cell.strip().lower() for cell in header[0]] if header else []
        levels = [row[0].strip().lower() for row in header if row]
        if first and first[0] == "scorer" and "bodyparts" in levels and "coords" in levels:
            scorer = next((c for c in first[1:] if c), "")
            if any(hint in scorer for hint in LP_SCORER_HINTS):
                return "lightning-pose"
            return "deeplabcut"
        raise InputError(
            path,
            "cannot read it as DeepLabCut output or LightningPose output: the .csv has no "
            "DeepLabCut-style header (rows scorer, bodyparts, coords).",
            FIX_UNKNOWN,
            field=FIELD_POSE,
        )
    raise InputError(
        path, f"pose files ending in {suffix or '(no ending)'!r} are not known.", FIX_UNKNOWN,
        field=FIELD_POSE,
    )  # fmt: skip


def resolve_source(path: PathLike, source: str | None = None) -> str:
    """The sheet's ``pose_source`` (checked against the file's ending) or the detected one."""
    if source is None or (isinstance(source, float) and np.isnan(source)) or source == "":
        return detect_source(path)
    name = str(source).strip().lower()
    if name not in SOURCES:
        raise InputError(
            path,
            f"pose_source {source!r} is not known.",
            f"use one of {' | '.join(SOURCES)}, or leave it empty to detect the format.",
            field=FIELD_SOURCE,
        )
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES[name]:
        raise InputError(
            path,
            f"pose_source {name} files end in {' or '.join(SUFFIXES[name])}, not {suffix!r}.",
            "correct pose_source (or leave it empty to detect the format), or give the "
            f"{SOURCES[name]} file.",
            field=FIELD_SOURCE,
        )
    return name


def _nwb_pose(path: Path) -> xr.Dataset:
    """Every ndx-pose ``PoseEstimation`` of the ``behavior`` module, one individual each.

    movement names the individual of a PoseEstimation after the file's identifier;
    here it is the skeleton's subject id, else the skeleton's name without a
    ``_skeleton`` suffix, else the PoseEstimation's name (as :mod:`.nwb_out` writes them).
    Body parts come in the skeleton's node order (movement lists them by name), since
    the order matters downstream (the body axis runs from the last to the first).
    """
    import pynwb
    from movement.io import load_poses
    from ndx_pose import PoseEstimation

    with pynwb.NWBHDF5IO(path, mode="r") as io:
        nwb = io.read()
        module = nwb.processing.get("behavior")
        found = (
            [o for o in module.data_interfaces.values() if isinstance(o, PoseEstimation)]
            if module is not None
            else []
        )
        if not found:
            raise InputError(
                path,
                "the NWB file has no ndx-pose PoseEstimation in a 'behavior' processing module.",
                "give an NWB file with pose (ndx-pose), or the pose software's own output.",
                field=FIELD_POSE,
            )
        parts = []
        for pose in found:
            ds = load_poses.from_nwb_file(nwb, pose_estimation_key=pose.name)
            skeleton = pose.skeleton
            name = pose.name
            nodes = [str(n) for n in skeleton.nodes[:]] if skeleton is not None else []
            if sorted(nodes) == sorted(str(k) for k in ds.keypoints.values):
                ds = ds.sel(keypoints=nodes)  # the skeleton's order (NWB lists series by name)
            if skeleton is not None:
                subject = getattr(skeleton, "subject", None)
                name = (
                    subject.subject_id
                    if subject is not None and subject.subject_id and len(found) == 1
                    else skeleton.name.removesuffix("_skeleton")
                )
            parts.append(ds.assign_coords(individuals=[name]))
        source_software = found[0].source_software or "NWB"
        order = _nwb_order(module.description, [str(p.individuals.values[0]) for p in parts])
    parts = [parts[i] for i in order]
    ds = xr.concat(parts, dim="individuals") if len(parts) > 1 else parts[0]
    ds.attrs["source_software"] = source_software
    return ds


def _nwb_order(description: str | None, names: list[str]) -> list[int]:
    """Indices of ``names`` in the order the module's description lists them
    (``... individuals in order: a, b``, as :mod:`.nwb_out` writes it), else as found."""
    from neurovid.behavior.nwb_out import INDIVIDUALS_IN_ORDER

    text = description or ""
    if INDIVIDUALS_IN_ORDER in text:
        listed = [n.strip() for n in text.rsplit(INDIVIDUALS_IN_ORDER, 1)[1].split(",")]
        if sorted(listed) == sorted(names):
            return [names.index(n) for n in listed]
    return list(range(len(names)))


def _read(path: Path, source: str, fps: float, sequence: str | None) -> xr.Dataset:
    from movement.io import load_poses

    if source == "calms21":
        from neurovid.behavior.calms21 import load_sequence

        return load_sequence(path, sequence, fps).pose
    if source == "nwb":
        return _nwb_pose(path)
    loader = {
        "deeplabcut": load_poses.from_dlc_file,
        "sleap": load_poses.from_sleap_file,
        "lightning-pose": load_poses.from_lp_file,
    }[source]
    return loader(path, fps=fps)


def load_pose_dataset(
    path: PathLike,
    fps: float,
    *,
    source: str | None = None,
    sequence: str | None = None,
) -> xr.Dataset:
    """Any supported pose file as a movement dataset of all its individuals (see the module doc).

    ``source`` is the sheet's ``pose_source`` (None: detect); ``sequence`` picks
    a CalMS21 sequence. Errors name the file, the field and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            path,
            "the pose file does not exist.",
            "run the pose step first, or correct the videos sheet's pose column.",
            field=FIELD_POSE,
        )
    if not fps or fps <= 0:
        raise InputError(path, f"invalid frame rate {fps!r}.", "give the video's fps.", field="fps")
    name = resolve_source(path, source)
    try:
        ds = _read(path, name, float(fps), sequence)
    except InputError:
        raise
    except (ValueError, KeyError, OSError, TypeError, IndexError, AttributeError) as err:
        raise InputError(
            path,
            f"cannot read it as {SOURCES[name]} output ({type(err).__name__}: {err}).",
            f"give the file {SOURCES[name]} wrote for this video, or correct pose_source "
            f"({' | '.join(SOURCES)}).",
            field=FIELD_SOURCE if source else FIELD_POSE,
        ) from err
    if "individuals" not in ds.position.dims:
        ds = ds.expand_dims("individuals")
    if "space" in ds.position.dims and ds.sizes["space"] != 2:
        raise InputError(
            path,
            f"the pose has {ds.sizes['space']} spatial coordinates; the behavior stage uses 2-D "
            "image coordinates (x, y).",
            "give 2-D pose (one camera view).",
            field=FIELD_POSE,
        )
    n = ds.sizes["time"]
    own = ds.attrs.get("fps")  # NWB series carry their rate
    if name == "nwb" and own and abs(float(own) - float(fps)) > 1e-3 * float(fps):
        log.warning("%s: pose sampled at %g Hz, the video at %g fps: frames are matched 1:1",
                    path, own, fps)  # fmt: skip
    ds = ds.assign_coords(time=np.arange(n, dtype=np.float64) / float(fps))
    ds["position"] = ds.position.astype(np.float64).transpose(
        "time", "space", "keypoints", "individuals"
    )
    ds["confidence"] = ds.confidence.astype(np.float64).transpose(
        "time", "keypoints", "individuals"
    )
    ds.attrs.update(
        fps=float(fps),
        time_unit="seconds",
        source_file=path.as_posix(),
        pose_source=name,
        source_software=str(ds.attrs.get("source_software") or SOURCES[name]),
    )
    log.info("%s: %s pose, %d frames, %s", path, name, n, [str(i) for i in ds.individuals.values])
    return ds


def confident_positions(
    position: xr.DataArray, confidence: xr.DataArray, cutoff: float
) -> xr.DataArray:
    """``position`` with points under ``cutoff`` confidence set to NaN (movement's
    ``filter_by_confidence``), keeping points whose confidence is NaN (the file has no score)."""
    from movement.filtering import filter_by_confidence

    return filter_by_confidence(position, confidence.fillna(np.inf), threshold=cutoff)
