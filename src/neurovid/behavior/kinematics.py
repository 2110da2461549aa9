"""Kinematics in real units from pose output (DeepLabCut, SLEAP, LightningPose, NWB,
CalMS21), with ``movement``.

Steps (:func:`compute_kinematics`):

1. Load the pose file with :func:`neurovid.behavior.pose_io.load_pose_dataset`
   (movement's loaders; time in seconds from the video's ``fps``); check its
   body parts against the expected ones.
2. Drop points whose confidence is under ``likelihood_cutoff``
   (``movement.filtering.filter_by_confidence``; points without a score are kept).
3. Interpolate gaps of at most ``max_gap`` frames linearly
   (``interpolate_over_time``); longer gaps stay NaN.
4. Smooth with a Savitzky-Golay filter (``savgol_filter``, ``smooth_window``
   frames, ``polyorder``). The filter spreads a gap by half a window; frames
   next to a long gap keep their unsmoothed positions instead of becoming NaN.
5. Track the chosen body part, or the centroid of ``centroid_bodyparts`` (all
   by default; NaN when any of them is missing, so a lost part does not make
   the centroid jump).
6. Convert to cm (:func:`resolve_scale`): arena side in cm and in pixels, a
   reference length in cm and pixels, or a reference length in cm between two
   body parts (their median distance over the frames where both are tracked,
   as the open-field seed did with the body length).
7. Velocity and acceleration with ``movement.kinematics`` (central
   differences over time): speed, acceleration magnitude and tangential
   acceleration (the rate of change of speed), cumulative distance travelled.
   Distance counts only the steps of frames where the animal moves (speed at
   or above ``moving_threshold_cm_per_s``, 1.5 cm/s by default), as tracking
   software's "minimum distance moved" does: at rest, 1 px of DLC jitter left
   after smoothing would otherwise add ~1 cm per second of rest. The raw sum of
   all steps is kept in the summary as ``path_length_cm``.

Outputs: a per-frame table whose column names carry their units
(``speed_cm_per_s``) and a summary dict: distance travelled, mean and max
speed, time moving (speed at or above ``moving_threshold_cm_per_s``), and with
an arena box, time in the centre square (side ``centre_fraction`` of the
arena's) and along the border.

Positions are in image axes (x right, y down) divided by the scale, so
``x_cm = x_px / px_per_cm``; the arena box in cm is the pixel box divided the
same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from neurovid.errors import InputError
from neurovid.io import PathLike, write_json, write_table

CENTROID = "centroid"
# Config fields named in error messages (the `kinematics` section of config.yaml and
# the videos sheet columns).
FIELD_BODYPARTS = "kinematics.bodyparts"
FIELD_BODYPART = "kinematics.bodypart"
FIELD_REFERENCE_BODYPARTS = "kinematics.reference_bodyparts"


@dataclass(frozen=True)
class Scale:
    """Pixels per cm and where the number came from."""

    px_per_cm: float
    source: str


def load_pose(
    path: PathLike,
    fps: float,
    *,
    expected_bodyparts: Sequence[str] | None = None,
    individual: str | None = None,
    source: str | None = None,
    sequence: str | None = None,
    all_individuals: bool = False,
) -> xr.Dataset:
    """Load pose output as a ``movement`` poses dataset of one individual (time in s).

    Any format :func:`neurovid.behavior.pose_io.load_pose_dataset` reads
    (DeepLabCut, SLEAP, LightningPose, NWB ndx-pose, CalMS21; ``source`` is the
    sheet's ``pose_source``, ``sequence`` a CalMS21 sequence id).
    ``expected_bodyparts`` (the config's list) must equal the file's body parts
    as a set; otherwise :class:`InputError` names the missing and unexpected
    ones. ``individual`` picks one animal of a multi-animal file (default: the first);
    ``all_individuals`` keeps them all (dimension ``individuals``).
    """
    from neurovid.behavior.pose_io import load_pose_dataset

    ds = load_pose_dataset(path, fps, source=source, sequence=sequence)
    found = [str(k) for k in ds.keypoints.values]
    if expected_bodyparts is not None:
        missing = [b for b in expected_bodyparts if b not in found]
        unexpected = [b for b in found if b not in expected_bodyparts]
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(missing)}")
            if unexpected:
                parts.append(f"unexpected {', '.join(unexpected)}")
            raise InputError(
                path,
                f"the pose file's body parts ({', '.join(found)}) do not match the config: "
                f"{'; '.join(parts)}.",
                f"set {FIELD_BODYPARTS} to the pose file's body parts, or use the "
                "matching pose model.",
                field=FIELD_BODYPARTS,
            )
    if all_individuals:
        return ds
    individuals = [str(i) for i in ds.individuals.values]
    if individual is None:
        individual = individuals[0]
    elif individual not in individuals:
        raise InputError(
            path,
            f"individual {individual!r} is not in the file (it has {', '.join(individuals)}).",
            "set kinematics.individual to one of them.",
            field="kinematics.individual",
        )
    return ds.sel(individuals=individual)


def clean_positions(
    ds: xr.Dataset,
    *,
    likelihood_cutoff: float = 0.6,
    max_gap: int = 5,
    smooth_window: int = 9,
    polyorder: int = 2,
) -> tuple[xr.DataArray, dict[str, int]]:
    """Positions (pixels) after likelihood filter, gap interpolation and Savitzky-Golay smoothing.

    Returns the cleaned ``position`` (time, space, keypoints) and counts of the
    points dropped for low likelihood and still missing after interpolation.
    """
    from movement.filtering import interpolate_over_time, savgol_filter

    from neurovid.behavior.pose_io import confident_positions

    position = ds.position.transpose("time", "space", "keypoints")
    confidence = ds.confidence.transpose("time", "keypoints")
    missing_in = position.isnull().any("space")
    filtered = confident_positions(position, confidence, likelihood_cutoff)
    dropped = int((filtered.isnull().any("space") & ~missing_in).sum())
    filled = interpolate_over_time(filtered, method="linear", max_gap=max_gap)
    if smooth_window and smooth_window > polyorder + 1:
        window = int(smooth_window) | 1  # odd
        if window > filled.sizes["time"]:
            window = (filled.sizes["time"] - 1) | 1 if filled.sizes["time"] > 2 else 1
        if window > polyorder + 1:
            half = window // 2
            values = filled.values
            # 'interp' fits the edge windows (unbiased at the ends) but needs them finite.
            edges_finite = (
                np.isfinite(values[: half + 1]).all() and np.isfinite(values[-half - 1 :]).all()
            )
            smoothed = savgol_filter(
                filled, window, polyorder=polyorder, mode="interp" if edges_finite else "nearest"
            )
            filled = smoothed.where(smoothed.notnull(), filled)
    counts = {
        "low_likelihood_points": dropped,
        "missing_points_after_interpolation": int(filled.isnull().any("space").sum()),
    }
    return filled, counts


def resolve_scale(
    position: xr.DataArray | None = None,
    *,
    arena_cm: float | None = None,
    arena_px: float | None = None,
    reference_cm: float | None = None,
    reference_px: float | None = None,
    reference_bodyparts: Sequence[str] | None = None,
    where: PathLike | None = None,
) -> Scale:
    """Pixels per cm, from (in this order) the arena, a reference length in px, or two body parts.

    ``position`` (time, space, keypoints; pixels) is needed for the body-part
    reference. ``where`` (the sheet or pose file) is named in errors.
    """
    if arena_cm is not None or arena_px is not None:
        if arena_cm is None or arena_px is None or arena_cm <= 0 or arena_px <= 0:
            raise InputError(
                where,
                f"arena_cm={arena_cm!r} and arena_px={arena_px!r}: both must be positive numbers.",
                "give the arena side both in cm (arena_cm) and in pixels (arena_px).",
                field="arena_cm/arena_px",
            )
        return Scale(float(arena_px) / float(arena_cm), f"arena: {arena_px} px = {arena_cm} cm")
    if reference_cm is not None and reference_cm > 0:
        if reference_px is not None:
            if reference_px <= 0:
                raise InputError(
                    where, f"reference_px={reference_px!r} must be positive.", field="reference_px"
                )
            return Scale(
                float(reference_px) / float(reference_cm),
                f"reference: {reference_px} px = {reference_cm} cm",
            )
        if reference_bodyparts:
            if len(reference_bodyparts) != 2:
                raise InputError(
                    where,
                    f"reference_bodyparts must name two body parts, got {list(reference_bodyparts)}.",
                    field=FIELD_REFERENCE_BODYPARTS,
                )
            if position is None:
                raise ValueError("resolve_scale: body-part reference needs the positions")
            found = [str(k) for k in position.keypoints.values]
            absent = [b for b in reference_bodyparts if b not in found]
            if absent:
                raise InputError(
                    where,
                    f"reference body part(s) {', '.join(absent)} not in the pose file "
                    f"(it has {', '.join(found)}).",
                    f"set {FIELD_REFERENCE_BODYPARTS} to two of those.",
                    field=FIELD_REFERENCE_BODYPARTS,
                )
            a, b = (position.sel(keypoints=name).values for name in reference_bodyparts)
            lengths = np.linalg.norm(a - b, axis=1)
            lengths = lengths[np.isfinite(lengths)]
            if lengths.size == 0:
                raise InputError(
                    where,
                    f"{reference_bodyparts[0]} and {reference_bodyparts[1]} are never both tracked.",
                    "lower kinematics.likelihood_cutoff or give arena_cm and arena_px.",
                    field=FIELD_REFERENCE_BODYPARTS,
                )
            median = float(np.median(lengths))
            return Scale(
                median / float(reference_cm),
                f"reference: median {reference_bodyparts[0]}-{reference_bodyparts[1]} "
                f"distance {median:.2f} px = {reference_cm} cm",
            )
    raise InputError(
        where,
        "no pixel -> cm scale: the sheet row gives neither the arena size nor a reference length.",
        "add arena_cm and arena_px (arena side in cm and in pixels) to the videos sheet, or "
        f"reference_cm with reference_px or with {FIELD_REFERENCE_BODYPARTS} (e.g. snout, tailbase).",
        field="arena_cm",
    )


def _track(
    position: xr.DataArray, bodypart: str, centroid_bodyparts: Sequence[str] | None, where: PathLike
) -> xr.DataArray:
    found = [str(k) for k in position.keypoints.values]
    if bodypart == CENTROID:
        parts = list(centroid_bodyparts) if centroid_bodyparts else found
        absent = [b for b in parts if b not in found]
        if absent:
            raise InputError(
                where,
                f"centroid body part(s) {', '.join(absent)} not in the pose file "
                f"(it has {', '.join(found)}).",
                "set kinematics.centroid_bodyparts to some of those (or leave it empty for all).",
                field="kinematics.centroid_bodyparts",
            )
        return position.sel(keypoints=parts).mean("keypoints", skipna=False)
    if bodypart not in found:
        raise InputError(
            where,
            f"body part {bodypart!r} is not in the pose file (it has {', '.join(found)}).",
            f"set {FIELD_BODYPART} to one of those or to 'centroid'.",
            field=FIELD_BODYPART,
        )
    return position.sel(keypoints=bodypart, drop=True)


def arena_box(
    xy_px: np.ndarray, arena_px: float | None, box_px: Sequence[float] | None
) -> tuple[tuple[float, float, float, float] | None, str | None]:
    """The arena square (x0, y0, width, height) in pixels and how it was found.

    An explicit ``box_px`` wins; with only the side ``arena_px``, the square is
    centred on the middle of the track's extent (0.5-99.5 percentiles), which
    is right when the animal reaches opposite walls, as open-field mice do.
    """
    if box_px is not None:
        x0, y0, w, h = (float(v) for v in box_px)
        return (x0, y0, w, h), "given"
    if arena_px is None:
        return None, None
    finite = xy_px[np.isfinite(xy_px).all(axis=1)]
    if len(finite) < 2:
        return None, None
    lo, hi = np.percentile(finite, [0.5, 99.5], axis=0)
    centre = (lo + hi) / 2
    side = float(arena_px)
    return (
        float(centre[0] - side / 2),
        float(centre[1] - side / 2),
        side,
        side,
    ), "centred on the track's extent"


def compute_kinematics(
    pose_path: PathLike,
    fps: float,
    *,
    bodypart: str = CENTROID,
    centroid_bodyparts: Sequence[str] | None = None,
    expected_bodyparts: Sequence[str] | None = None,
    individual: str | None = None,
    likelihood_cutoff: float = 0.6,
    max_gap: int = 5,
    smooth_window: int = 9,
    polyorder: int = 2,
    arena_cm: float | None = None,
    arena_px: float | None = None,
    arena_box_px: Sequence[float] | None = None,
    reference_cm: float | None = None,
    reference_px: float | None = None,
    reference_bodyparts: Sequence[str] | None = None,
    moving_threshold_cm_per_s: float = 1.5,
    centre_fraction: float = 0.5,
    sheet: PathLike | None = None,
    pose_source: str | None = None,
    sequence: str | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-frame kinematics table and summary of one pose file (see the module docstring).

    Table columns: ``frame``, ``time_s``, ``x_px``, ``y_px``, ``x_cm``,
    ``y_cm``, ``speed_cm_per_s``, ``acceleration_cm_per_s2`` (magnitude of
    the acceleration vector), ``tangential_acceleration_cm_per_s2`` (d speed /
    dt), ``distance_cm`` (distance travelled so far: the path length over the
    frames where the animal moves; steps with a missing end add nothing),
    ``moving`` (0/1: speed >= ``moving_threshold_cm_per_s``; NaN where the
    position is missing), and
    with an arena box ``zone`` (``centre`` / ``border`` / empty).

    ``arena_box_px`` (x0, y0, width, height) places the arena for the centre /
    border times; without it, ``arena_px`` places a square of that side on the
    track (:func:`arena_box`). ``sheet`` is the file named in scale errors
    (default: the pose file).
    """
    from movement.kinematics import compute_acceleration, compute_velocity
    from movement.utils.vector import compute_norm

    ds = load_pose(
        pose_path,
        fps,
        expected_bodyparts=expected_bodyparts,
        individual=individual,
        source=pose_source,
        sequence=sequence,
    )
    position, counts = clean_positions(
        ds,
        likelihood_cutoff=likelihood_cutoff,
        max_gap=max_gap,
        smooth_window=smooth_window,
        polyorder=polyorder,
    )
    scale = resolve_scale(
        position,
        arena_cm=arena_cm,
        arena_px=arena_px,
        reference_cm=reference_cm,
        reference_px=reference_px,
        reference_bodyparts=reference_bodyparts,
        where=sheet or pose_path,
    )
    track_px = _track(position, bodypart, centroid_bodyparts, pose_path)  # (time, space)
    track_cm = track_px / scale.px_per_cm
    velocity = compute_velocity(track_cm)
    speed = compute_norm(velocity).values
    acceleration = compute_norm(compute_acceleration(track_cm)).values
    tangential = np.gradient(speed, 1.0 / fps) if len(speed) > 1 else np.zeros_like(speed)
    xy_px = track_px.transpose("time", "space").values
    xy_cm = xy_px / scale.px_per_cm
    n_frames = len(speed)
    valid = np.isfinite(xy_cm).all(axis=1) & np.isfinite(speed)
    moving = np.where(valid, (speed >= moving_threshold_cm_per_s).astype(float), np.nan)
    # Step into frame t; a step counts as travel when the animal moves at t (below the
    # threshold it is tracking jitter of a resting animal, which smoothing cannot remove).
    steps = np.r_[0.0, np.linalg.norm(np.diff(xy_cm, axis=0), axis=1)]
    steps = np.nan_to_num(steps, nan=0.0)
    distance = np.cumsum(np.where(moving == 1, steps, 0.0))
    table = pd.DataFrame(
        {
            "frame": np.arange(n_frames),
            "time_s": np.asarray(ds.time.values, dtype=float),
            "x_px": xy_px[:, 0],
            "y_px": xy_px[:, 1],
            "x_cm": xy_cm[:, 0],
            "y_cm": xy_cm[:, 1],
            "speed_cm_per_s": speed,
            "acceleration_cm_per_s2": acceleration,
            "tangential_acceleration_cm_per_s2": tangential,
            "distance_cm": distance,
            "moving": moving,
        }
    )
    frame_s = 1.0 / fps
    summary: dict[str, Any] = {
        "bodypart": bodypart,
        "fps": float(fps),
        "n_frames": n_frames,
        "duration_s": n_frames * frame_s,
        "valid_fraction": float(valid.mean()) if n_frames else 0.0,
        "px_per_cm": scale.px_per_cm,
        "scale_source": scale.source,
        "distance_cm": float(distance[-1]) if n_frames else 0.0,
        "path_length_cm": float(steps.sum()),
        "mean_speed_cm_per_s": _nan_stat(np.nanmean, speed),
        "max_speed_cm_per_s": _nan_stat(np.nanmax, speed),
        "moving_threshold_cm_per_s": float(moving_threshold_cm_per_s),
        "time_moving_s": float(np.nansum(moving) * frame_s),
        "params": {
            "likelihood_cutoff": likelihood_cutoff,
            "max_gap": max_gap,
            "smooth_window": smooth_window,
            "polyorder": polyorder,
            "centre_fraction": centre_fraction,
        },
        **counts,
    }
    box, box_source = arena_box(xy_px, arena_px, arena_box_px)
    if box is not None:
        zone = arena_zones(xy_px, box, centre_fraction)
        table["zone"] = zone
        summary["arena_box_px"] = list(box)
        summary["arena_box_source"] = box_source
        summary["time_in_centre_s"] = float((zone == "centre").sum() * frame_s)
        summary["time_in_border_s"] = float((zone == "border").sum() * frame_s)
    return table, summary


def _nan_stat(fn: Any, values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(fn(finite)) if finite.size else None


def arena_zones(
    xy_px: np.ndarray, box: Sequence[float], centre_fraction: float = 0.5
) -> np.ndarray:
    """``centre`` inside the central square (side ``centre_fraction`` of the arena's), else
    ``border``; empty string where the position is missing. Points outside the box count as border.
    """
    x0, y0, w, h = (float(v) for v in box)
    margin_x, margin_y = w * (1 - centre_fraction) / 2, h * (1 - centre_fraction) / 2
    x, y = xy_px[:, 0], xy_px[:, 1]
    finite = np.isfinite(x) & np.isfinite(y)
    with np.errstate(invalid="ignore"):
        inside = (
            (x >= x0 + margin_x)
            & (x <= x0 + w - margin_x)
            & (y >= y0 + margin_y)
            & (y <= y0 + h - margin_y)
        )
    zone = np.where(inside, "centre", "border").astype(object)
    zone[~finite] = ""
    return zone.astype(str)


def write_kinematics(
    table: pd.DataFrame,
    summary: Mapping[str, Any],
    csv_path: PathLike,
    json_path: PathLike,
    provenance: Mapping[str, Any],
) -> None:
    """Write the table as CSV and the summary (with ``provenance``) as JSON, both atomically."""
    write_table(csv_path, table, sep=",")
    write_json(json_path, {**summary, "provenance": dict(provenance)})
