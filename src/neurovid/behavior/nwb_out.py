"""A behavior video's pose and kinematics as NWB (ndx-pose), for DANDI and the field's tools.

One file per video (``results/nwb/{video}.nwb``), written by :func:`write_pose_nwb`:

- ``processing/behavior`` (a ProcessingModule) holds, per individual, an ndx-pose
  ``PoseEstimation`` of one ``PoseEstimationSeries`` per body part (x, y in
  pixels of the video frame, confidence as the pose software gave it, sampled at
  the video's fps from t = 0), linked to its ``Skeleton`` (in ``Skeletons``), the
  source software and the source video (an external-file ``ImageSeries`` in
  acquisition, path relative to the NWB file). The PoseEstimation of a single
  animal is named ``PoseEstimation`` (movement's ``load_poses.from_nwb_file``
  default key); with several animals, ``PoseEstimation_{individual}``, and the
  skeleton ``{individual}_skeleton`` carries the individual's name (the module's
  description ends with ``individuals in order: a, b``, since NWB lists objects by name).
- ``processing/behavior/kinematics`` (``BehavioralTimeSeries``): ``position``
  (x, y in cm), ``speed`` (cm/s), ``acceleration`` (cm/s^2), ``distance``
  (cm travelled) from ``results/kinematics/{video}.csv``, in seconds.

Metadata is minimal but valid: ``session_start_time`` is the video container's
``creation_time`` tag when it has one, else the fixed epoch 1970-01-01T00:00:00Z
(:data:`EPOCH`, "unknown"); the subject is the sheet's ``subject`` (else the
video id) with the sheet's optional ``species``, ``sex`` (M, F, O, U; default
``U``, unknown) and ``age`` (ISO 8601 duration; default ``P0D/``, "0 days or
older", NWB's open range for an unknown age); the ``identifier`` is a UUID derived from the video id and the
input files' digests, so the same inputs give the same identifier (pynwb still
draws fresh object ids and stamps ``file_create_date``, so the bytes differ).
The provenance (step, parameters, input digests, versions) is the file's
``notes`` (JSON) and ``source_script``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neurovid import __version__
from neurovid.errors import InputError
from neurovid.io import PathLike, atomic_path, file_digest, to_json

log = logging.getLogger(__name__)

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
UNKNOWN_SEX = "U"
#: NWB lists objects by name; the behavior module's description keeps the animals' order.
INDIVIDUALS_IN_ORDER = "individuals in order: "
UNKNOWN_AGE = "P0D/"
_DURATION = r"P(?=\d|T\d)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?"
AGE = re.compile(rf"{_DURATION}(/({_DURATION})?)?")


def check_subject(subject: Mapping[str, Any] | None, where: PathLike | None = None) -> dict:
    """The sheet's ``species``, ``sex``, ``age`` of a video (empty ones left out), checked."""
    extra = {k: str(v).strip() for k, v in (subject or {}).items() if v is not None}
    extra = {k: v for k, v in extra.items() if v and v.lower() != "nan"}
    age = extra.get("age")
    if age is not None and not AGE.fullmatch(age):
        raise InputError(
            where,
            f"age {age!r} is not an ISO 8601 duration.",
            "write it as P90D (90 days), P12W, P2Y, a range P90D/P120D, or P90D/ (at least "
            "90 days); leave it empty when unknown.",
            field="age",
        )
    return extra


REFERENCE_FRAME = (
    "(0, 0) is the top-left corner of the video frame; x to the right, y down (pixels)"
)
CONFIDENCE = {
    "DeepLabCut": "DeepLabCut likelihood (0..1)",
    "LightningPose": "LightningPose likelihood (0..1)",
    "SLEAP": "SLEAP point score (may exceed 1)",
    "CalMS21": "CalMS21 keypoint score",
}
#: kinematics.csv columns -> (TimeSeries name, unit, description).
KINEMATICS = {
    ("x_cm", "y_cm"): ("position", "cm", "tracked point (body part or centroid), x and y in cm"),
    ("speed_cm_per_s",): ("speed", "cm/s", "speed of the tracked point"),
    ("acceleration_cm_per_s2",): (
        "acceleration",
        "cm/s^2",
        "magnitude of the tracked point's acceleration",
    ),
    ("distance_cm",): ("distance", "cm", "distance travelled so far (frames while moving)"),
}


def session_start(video: PathLike | None) -> dt.datetime:
    """The video container's ``creation_time`` tag (UTC), else :data:`EPOCH`."""
    if video is None or not Path(video).is_file():
        return EPOCH
    import av

    try:
        with av.open(str(video)) as container:
            tag = container.metadata.get("creation_time")
    except (av.error.FFmpegError, OSError):  # the workflow probed it already
        return EPOCH
    if not tag:
        return EPOCH
    try:
        stamp = dt.datetime.fromisoformat(str(tag).replace("Z", "+00:00"))
    except ValueError:
        return EPOCH
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)


def _identifier(video_id: str, inputs: Mapping[str, PathLike]) -> str:
    digests = [f"{k}={file_digest(v)}" for k, v in sorted(inputs.items()) if Path(v).is_file()]
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "neurovid:" + video_id + ":" + ";".join(digests)))


def _kinematics_table(path: PathLike, n_frames: int) -> pd.DataFrame:
    table = pd.read_csv(path)
    missing = [c for cols in KINEMATICS for c in cols if c not in table.columns]
    if missing or "time_s" not in table.columns:
        raise InputError(
            path,
            f"the kinematics table lacks the columns {missing or ['time_s']}.",
            "give the results/kinematics/{video}.csv the kinematics rule wrote.",
            field="kinematics",
        )
    if abs(len(table) - n_frames) > 1:
        raise InputError(
            path,
            f"the kinematics table has {len(table)} rows but the pose {n_frames} frames.",
            "rerun the kinematics rule on this pose file.",
            field="kinematics",
        )
    return table


def build_nwbfile(
    pose: Any,
    kinematics: pd.DataFrame,
    *,
    video_id: str,
    video: PathLike | None,
    nwb_path: PathLike,
    identifier: str,
    session_start_time: dt.datetime,
    subject_id: str | None = None,
    subject: Mapping[str, Any] | None = None,
    notes: str | None = None,
    source_script: str = "neurovid.behavior.nwb_out",
) -> Any:
    """The in-memory NWBFile of a pose dataset (:func:`~neurovid.behavior.pose_io.load_pose_dataset`)
    and its kinematics table. ``nwb_path`` is where it will be written (video paths are
    stored relative to it); ``subject``: optional ``species``, ``sex``, ``age``."""
    import pynwb
    from ndx_pose import PoseEstimation, PoseEstimationSeries, Skeleton, Skeletons
    from pynwb.behavior import BehavioralTimeSeries
    from pynwb.file import Subject
    from pynwb.image import ImageSeries

    fps = float(pose.attrs["fps"])
    software = str(pose.attrs.get("source_software") or "unknown")
    individuals = [str(i) for i in pose.individuals.values]
    bodyparts = [str(k) for k in pose.keypoints.values]
    extra = check_subject(subject)
    subject = Subject(
        subject_id=str(subject_id or video_id),
        species=extra.get("species"),
        sex=extra.get("sex", UNKNOWN_SEX),
        age=extra.get("age", UNKNOWN_AGE),
        description=(
            f"animal(s) filmed in behavior video {video_id}: {', '.join(individuals)}"
            if len(individuals) > 1
            else f"animal filmed in behavior video {video_id}"
        ),
    )
    nwb = pynwb.NWBFile(
        session_description=(
            f"Behavior video {video_id}: pose ({software}) and kinematics from neurovid."
        ),
        identifier=identifier,
        session_start_time=session_start_time,
        session_id=video_id,
        subject=subject,
        notes=notes,
        source_script=source_script,
        source_script_file_name="neurovid/behavior/nwb_out.py",
    )
    source_video = None
    if video is not None:
        rel = os.path.relpath(Path(video).resolve(), Path(nwb_path).resolve().parent)
        source_video = ImageSeries(
            name="behavior_video",
            description=f"the behavior video {video_id} the pose was estimated on",
            unit="n.a.",
            external_file=[Path(rel).as_posix()],
            format="external",
            starting_frame=[0],
            num_samples=int(pose.sizes["time"]),
            rate=fps,
        )
        nwb.add_acquisition(source_video)
    module = nwb.create_processing_module(
        name="behavior",
        description=f"pose ({software}) and kinematics of {video_id}; "
        f"{INDIVIDUALS_IN_ORDER}{', '.join(individuals)}",
    )
    skeletons, estimations = [], []
    for individual in individuals:
        one = pose.sel(individuals=individual)
        skeleton = Skeleton(
            name=f"{individual}_skeleton",
            nodes=bodyparts,
            edges=np.zeros((0, 2), dtype=np.uint8),
            subject=subject if len(individuals) == 1 else None,
        )
        skeletons.append(skeleton)
        series = []
        for part in bodyparts:
            point = one.sel(keypoints=part)
            confidence = np.asarray(point.confidence.values, dtype=np.float64)
            series.append(
                PoseEstimationSeries(
                    name=part,
                    description=f"{part} of {individual}",
                    data=np.asarray(point.position.transpose("time", "space").values, np.float64),
                    unit="pixels",
                    reference_frame=REFERENCE_FRAME,
                    confidence=confidence,
                    confidence_definition=CONFIDENCE.get(software, f"{software} confidence"),
                    rate=fps,
                    starting_time=0.0,
                )
            )
        estimations.append(
            PoseEstimation(
                name="PoseEstimation" if len(individuals) == 1 else f"PoseEstimation_{individual}",
                pose_estimation_series=series,
                description=f"{', '.join(bodyparts)} of {individual}, estimated with {software}.",
                source_software=software,
                skeleton=skeleton,
                source_video=source_video,
            )
        )
    module.add(Skeletons(skeletons=skeletons))
    for estimation in estimations:
        module.add(estimation)
    kin = BehavioralTimeSeries(name="kinematics")
    start = float(kinematics["time_s"].iloc[0]) if len(kinematics) else 0.0
    for columns, (name, unit, description) in KINEMATICS.items():
        values = kinematics[list(columns)].to_numpy(np.float64)
        kin.add_timeseries(
            pynwb.TimeSeries(
                name=name,
                description=description,
                data=values if len(columns) > 1 else values[:, 0],
                unit=unit,
                rate=fps,
                starting_time=start,
            )
        )
    module.add(kin)
    return nwb


def write_pose_nwb(
    out: PathLike,
    pose_path: PathLike,
    kinematics_csv: PathLike,
    *,
    fps: float,
    video_id: str,
    video: PathLike | None = None,
    pose_source: str | None = None,
    sequence: str | None = None,
    subject_id: str | None = None,
    subject: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    sheet: PathLike | None = None,
) -> None:
    """Write ``out`` (NWB, atomically): the pose file (any format of :mod:`.pose_io`) and
    the kinematics table of one behavior video (see the module doc). ``subject``: the
    sheet's ``species``, ``sex``, ``age`` (``sheet`` is named in errors)."""
    import pynwb

    from neurovid.behavior.pose_io import load_pose_dataset

    subject = check_subject(subject, sheet)
    pose = load_pose_dataset(pose_path, fps, source=pose_source, sequence=sequence)
    kinematics = _kinematics_table(kinematics_csv, pose.sizes["time"])
    inputs = {"pose": pose_path, "kinematics": kinematics_csv}
    record = dict(provenance or {})
    with atomic_path(out) as tmp:
        nwb = build_nwbfile(
            pose,
            kinematics,
            video_id=video_id,
            video=video,
            nwb_path=out,
            identifier=_identifier(video_id, inputs),
            session_start_time=session_start(video),
            subject_id=subject_id,
            subject=subject,
            notes=to_json(record) if record else None,
            source_script=f"neurovid {record.get('versions', {}).get('neurovid', __version__)} "
            "(neurovid.behavior.nwb_out.write_pose_nwb)",
        )
        with pynwb.NWBHDF5IO(str(tmp), mode="w") as io:
            io.write(nwb)
    log.info("%s: %d individuals, %d frames -> %s", video_id, pose.sizes["individuals"],
             pose.sizes["time"], out)  # fmt: skip
