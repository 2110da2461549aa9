"""Demo behavior videos with known truth: a rendered top-down mouse in an open field.

:func:`simulate_open_field` makes the truth: a smooth random walk inside a
square arena (speed ramps up and down smoothly, the heading drifts, and at a wall
the mouse turns to run along it, as open-field mice hug the walls) interrupted by stops and by rearing and grooming bouts
(0.5-3 s, in place, several of each), with four body parts per frame
(:data:`BODYPARTS`, pixels, x right, y down) and one label per frame
(:data:`LABELS`).

Posture per label (``L`` = body length, snout to tail base, 8 cm):

* ``other``: snout ``L`` ahead of the tail base, ears at ``0.75 L``.
* ``rearing``: the tail base stays, the front half rises towards the camera, so
  its projection shrinks to ``0.45 L`` (ramped in over 0.2 s and out again).
* ``grooming``: head tucked (``0.8 L``), and the head wobbles sideways
  (the snout by 0.02 L at 4-5 Hz, pivoting at the ears), so pose features see it too.

:func:`render_video` draws the mouse as a dark body ellipse plus a head ellipse
toward the snout and a thin tail on a bright arena square (dark floor around
it). Rearing draws the body shorter, wider and lighter (closer to the camera,
forepaws up); grooming adds a fast body wobble (the body ellipse rocks by
+-14 degrees at 6 Hz) and dark forepaws at the snout. :func:`write_dlc_pose`
writes the pose as DeepLabCut writes its output (with position noise and
low-likelihood dropouts), and :func:`write_annotations` the ground-truth bouts.

Every random draw derives from ``seed``: the same seed gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from neurovid.io import PathLike, atomic_path, read_attrs, write_h5, write_table
from neurovid.video import write_video

BODYPARTS = ("snout", "leftear", "rightear", "tailbase")
LABELS = ("other", "rearing", "grooming")

BODY_LENGTH_CM = 8.0  # snout to tail base of an adult mouse
REARING_LENGTH = 0.45  # projected front length while reared, in body lengths
GROOMING_LENGTH = 0.8
RAMP_S = 0.2  # time to rear up / come down
EAR_FRACTION = 0.75  # ears sit this far from the tail base to the snout
EAR_HALF_WIDTH = 0.12  # half the distance between the ears, in body lengths
FLOOR_GRAY, ARENA_GRAY, WALL_GRAY = 25.0, 190.0, 140.0
BODY_GRAY, REARING_GRAY, HEAD_GRAY, TAIL_GRAY = 45.0, 120.0, 35.0, 70.0


@dataclass(frozen=True)
class BehaviorTruth:
    """Ground truth of a simulated open-field session."""

    fps: float
    bodyparts: tuple[str, ...]
    pose: np.ndarray  # [T, K, 2] float, pixels (x right, y down), K = len(bodyparts)
    labels: np.ndarray  # [T] str, one of LABELS per frame
    size: tuple[int, int]  # (width, height) of the video in pixels
    arena_px: tuple[float, float, float, float]  # x0, y0, width, height of the square arena
    arena_cm: float  # side of the arena in cm

    @property
    def px_per_cm(self) -> float:
        """Pixels per centimetre (arena side in pixels over its side in cm)."""
        return float(self.arena_px[2]) / float(self.arena_cm)

    @property
    def n_frames(self) -> int:
        return int(self.pose.shape[0])

    def centroid(self) -> np.ndarray:
        """Mean position of the body parts per frame, [T, 2] pixels."""
        return self.pose.mean(axis=1)

    def bodypart(self, name: str) -> np.ndarray:
        """Trajectory of one body part, [T, 2] pixels."""
        return self.pose[:, self.bodyparts.index(name)]


def path_length(xy: np.ndarray) -> float:
    """Length of a polyline [T, 2] (sum of the frame-to-frame steps), NaN steps skipped."""
    steps = np.linalg.norm(np.diff(np.asarray(xy, dtype=float), axis=0), axis=1)
    return float(np.nansum(steps))


# ------------------------------------------------------------------------ simulation


def _schedule(rng: np.random.Generator, n_frames: int, fps: float) -> list[tuple[str, int]]:
    """Alternating walks (1-3 s) and events (stop, rearing, grooming; 0.5-3 s) covering the video.

    Events are drawn from a shuffled deck holding each kind once, so every kind
    recurs about every third event ("several bouts of each" in any video >~ 20 s).
    """
    segments: list[tuple[str, int]] = []
    deck: list[str] = []
    total = 0
    while total < n_frames:
        walk = max(int(round(rng.uniform(1.0, 3.0) * fps)), 2)
        segments.append(("walk", walk))
        total += walk
        if total >= n_frames:
            break
        if not deck:
            deck = list(rng.permutation(["stop", "rearing", "grooming"]))
        kind = deck.pop()
        seconds = rng.uniform(0.5, 2.0) if kind == "stop" else rng.uniform(0.5, 3.0)
        length = max(int(round(seconds * fps)), 2)
        segments.append((kind, length))
        total += length
    return segments


def _ramp(n: int, ramp: int) -> np.ndarray:
    """0 -> 1 -> 0 window of ``n`` samples with raised-cosine edges of ``ramp`` samples."""
    window = np.ones(n)
    ramp = max(1, min(ramp, n // 2))
    edge = 0.5 - 0.5 * np.cos(np.pi * (np.arange(ramp) + 0.5) / ramp)
    window[:ramp] = edge
    window[n - ramp :] = edge[::-1]
    return window


def _wrap(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


def simulate_open_field(
    seconds: float,
    fps: float = 30,
    size: tuple[int, int] = (320, 240),
    seed: int = 0,
    arena_cm: float = 40.0,
) -> BehaviorTruth:
    """Simulate a mouse exploring a square open field (see the module docstring).

    The arena is the largest square that fits ``size`` with a 10 px floor margin,
    centred. Walking speeds peak at 8-25 cm/s per walk; the mouse never leaves
    the arena (the whole body stays at least 0.6 body lengths from the walls).
    """
    width, height = int(size[0]), int(size[1])
    rng = np.random.default_rng(seed)
    n_frames = int(round(seconds * fps))
    if n_frames < 2:
        raise ValueError(f"simulate_open_field: {seconds} s at {fps} fps gives < 2 frames")
    dt = 1.0 / fps
    side = float(min(width, height) - 20)
    arena = ((width - side) / 2, (height - side) / 2, side, side)
    px_per_cm = side / arena_cm
    body = BODY_LENGTH_CM * px_per_cm
    margin = 0.6 * body
    lo = np.array([arena[0] + margin, arena[1] + margin])
    hi = np.array([arena[0] + side - margin, arena[1] + side - margin])
    centre = np.array([arena[0] + side / 2, arena[1] + side / 2])

    labels = np.full(n_frames, "other", dtype=object)
    speed = np.zeros(n_frames)  # px/s of the body centre
    front = np.ones(n_frames)  # projected front length, body lengths
    wobble = np.zeros(n_frames)  # sideways head offset, body lengths
    t0 = 0
    for kind, length in _schedule(rng, n_frames, fps):
        stop = min(t0 + length, n_frames)
        n = stop - t0
        if kind == "walk":
            peak = rng.uniform(8.0, 25.0) * px_per_cm
            speed[t0:stop] = peak * _ramp(length, int(round(0.3 * fps)))[:n]
        elif kind == "rearing":
            labels[t0:stop] = "rearing"
            rise = _ramp(length, int(round(RAMP_S * fps)))[:n]
            front[t0:stop] = 1 - (1 - REARING_LENGTH) * rise
        elif kind == "grooming":
            labels[t0:stop] = "grooming"
            tuck = _ramp(length, int(round(RAMP_S * fps)))[:n]
            front[t0:stop] = 1 - (1 - GROOMING_LENGTH) * tuck
            hz, phase = rng.uniform(4.0, 5.0), rng.uniform(0, 2 * np.pi)
            wobble[t0:stop] = 0.02 * tuck * np.sin(2 * np.pi * hz * np.arange(n) * dt + phase)
        t0 = stop

    # Body centre and heading: heading drifts (Ornstein-Uhlenbeck turning rate) and
    # turns along a wall when the mouse looks at it.
    position = np.zeros((n_frames, 2))
    heading = np.zeros(n_frames)
    position[0] = centre + rng.uniform(-0.25, 0.25, 2) * side
    heading[0] = rng.uniform(-np.pi, np.pi)
    turn_rate = 0.0
    for t in range(1, n_frames):
        theta = heading[t - 1]
        direction = np.array([np.cos(theta), np.sin(theta)])
        if speed[t - 1] > 0:
            turn_rate += -turn_rate * dt / 0.5 + 1.5 * np.sqrt(dt) * rng.normal()
            ahead = position[t - 1] + direction * 0.8 * body
            blocked = (ahead < lo) | (ahead > hi)
            if blocked.any():
                # Thigmotaxis: turn to run along the wall (keep the heading's component
                # parallel to it); in a corner, turn toward the centre.
                along = np.where(blocked, 0.0, direction)
                if np.linalg.norm(along) < 0.2:
                    along = centre - position[t - 1]
                turn_rate = 4.0 * _wrap(np.arctan2(along[1], along[0]) - theta)
            theta = theta + turn_rate * dt
        heading[t] = theta
        step = speed[t - 1] * dt * np.array([np.cos(theta), np.sin(theta)])
        position[t] = np.clip(position[t - 1] + step, lo, hi)

    forward = np.stack([np.cos(heading), np.sin(heading)], axis=1)
    lateral = np.stack([-np.sin(heading), np.cos(heading)], axis=1)  # the mouse's left in image
    tailbase = position - 0.5 * body * forward
    reach = (front * body)[:, None] * forward
    snout = tailbase + reach + (wobble * body)[:, None] * lateral
    ear_centre = tailbase + EAR_FRACTION * reach
    ear_offset = EAR_HALF_WIDTH * body * lateral
    pose = np.stack([snout, ear_centre + ear_offset, ear_centre - ear_offset, tailbase], axis=1)
    return BehaviorTruth(
        fps=float(fps),
        bodyparts=BODYPARTS,
        pose=pose,
        labels=labels.astype(str),
        size=(width, height),
        arena_px=arena,
        arena_cm=float(arena_cm),
    )


# ------------------------------------------------------------------------- rendering


def _grid(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    width, height = size
    return np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)


def _blend(frame: np.ndarray, alpha: np.ndarray, box: tuple[slice, slice], gray: float) -> None:
    region = frame[box]
    region += alpha * (gray - region)


def _box(centre: np.ndarray, radius: float, shape: tuple[int, int]) -> tuple[slice, slice] | None:
    x0 = max(int(np.floor(centre[0] - radius)), 0)
    x1 = min(int(np.ceil(centre[0] + radius)) + 1, shape[1])
    y0 = max(int(np.floor(centre[1] - radius)), 0)
    y1 = min(int(np.ceil(centre[1] + radius)) + 1, shape[0])
    if x1 <= x0 or y1 <= y0:
        return None
    return slice(y0, y1), slice(x0, x1)


def _ellipse(
    frame: np.ndarray,
    grid: tuple[np.ndarray, np.ndarray],
    centre: np.ndarray,
    semi_axes: tuple[float, float],
    angle: float,
    gray: float,
) -> None:
    """Anti-aliased filled ellipse (about one pixel of soft edge)."""
    a, b = max(semi_axes[0], 0.5), max(semi_axes[1], 0.5)
    box = _box(centre, a + 1.5, frame.shape)
    if box is None:
        return
    dx = grid[0][box] - centre[0]
    dy = grid[1][box] - centre[1]
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    radius = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    alpha = np.clip((1 - radius) * min(a, b) + 0.5, 0, 1)
    _blend(frame, alpha, box, gray)


def _segment(
    frame: np.ndarray,
    grid: tuple[np.ndarray, np.ndarray],
    start: np.ndarray,
    stop: np.ndarray,
    half_width: float,
    gray: float,
) -> None:
    """Anti-aliased thick line from ``start`` to ``stop``."""
    middle = (start + stop) / 2
    box = _box(middle, np.linalg.norm(stop - start) / 2 + half_width + 1.5, frame.shape)
    if box is None:
        return
    px, py = grid[0][box] - start[0], grid[1][box] - start[1]
    d = stop - start
    along = np.clip((px * d[0] + py * d[1]) / max(float(d @ d), 1e-9), 0, 1)
    dist = np.hypot(px - along * d[0], py - along * d[1])
    alpha = np.clip(half_width - dist + 0.5, 0, 1)
    _blend(frame, alpha, box, gray)


def render_frames(truth: BehaviorTruth, seed: int = 0) -> Iterator[np.ndarray]:
    """Frames (uint8 [height, width], gray) of the rendered session, one at a time."""
    width, height = truth.size
    grid = _grid(truth.size)
    background = np.full((height, width), FLOOR_GRAY, dtype=np.float32)
    x0, y0, w, h = (int(round(v)) for v in truth.arena_px)
    background[y0 : y0 + h, x0 : x0 + w] = WALL_GRAY
    background[y0 + 2 : y0 + h - 2, x0 + 2 : x0 + w - 2] = ARENA_GRAY
    body = BODY_LENGTH_CM * truth.px_per_cm
    rng = np.random.default_rng([seed, 1])
    # Sensor noise: a small bank of noise frames drawn at random (cheaper than fresh draws).
    noise_bank = rng.normal(0.0, 2.0, (8, height, width)).astype(np.float32)
    snout, left, right, tail = (truth.bodypart(name) for name in BODYPARTS[:4])
    for t in range(truth.n_frames):
        frame = background.copy()
        label = truth.labels[t]
        ears = (left[t] + right[t]) / 2
        axis = ears - tail[t]
        angle = float(np.arctan2(axis[1], axis[0]))
        length = float(np.linalg.norm(axis))
        direction = axis / max(length, 1e-9)
        # Tail: thin, trailing behind the tail base.
        _segment(frame, grid, tail[t], tail[t] - 0.8 * body * direction, 1.0, TAIL_GRAY)
        centre = tail[t] + 0.5 * axis
        if label == "rearing":
            semi = (0.5 * length + 0.12 * body, 0.27 * body)
            _ellipse(frame, grid, centre, semi, angle, REARING_GRAY)
        else:
            if label == "grooming":
                angle += np.deg2rad(14.0) * np.sin(2 * np.pi * 6.0 * t / truth.fps)
            semi = (0.5 * length + 0.12 * body, 0.2 * body)
            _ellipse(frame, grid, centre, semi, angle, BODY_GRAY)
        head = snout[t] - ears
        head_length = float(np.linalg.norm(head))
        head_centre = ears + 0.45 * head
        head_angle = float(np.arctan2(head[1], head[0]))
        head_semi = (0.55 * head_length + 1.0, 0.1 * body)
        _ellipse(frame, grid, head_centre, head_semi, head_angle, HEAD_GRAY)
        if label == "grooming":  # forepaws rubbing the face, alternating
            side = np.array([-head[1], head[0]]) / max(head_length, 1e-9)
            swing = np.sin(2 * np.pi * 6.0 * t / truth.fps)
            for sign in (-1.0, 1.0):
                paw = snout[t] + sign * (0.06 + 0.04 * sign * swing) * body * side
                _ellipse(frame, grid, paw, (0.05 * body, 0.05 * body), 0.0, 15.0)
        frame += noise_bank[rng.integers(len(noise_bank))]
        yield np.clip(np.rint(frame), 0, 255).astype(np.uint8)


def render_video(truth: BehaviorTruth, path: PathLike, seed: int = 0) -> None:
    """Write the rendered session as a grayscale-looking H.264 MP4 at ``truth.fps``, atomically."""
    write_video(
        render_frames(truth, seed=seed),
        path,
        truth.fps,
        metadata={"generator": "neurovid.demo.behavior", "frames": truth.n_frames},
    )


# --------------------------------------------------------------------- DLC + labels


def dlc_dataframe(
    truth: BehaviorTruth,
    *,
    noise_px: float = 1.0,
    dropout: float = 0.02,
    seed: int = 0,
    scorer: str = "neurovid-demo",
) -> pd.DataFrame:
    """The pose as a DeepLabCut output table: columns (scorer, bodyparts, coords).

    Every position gets Gaussian noise of ``noise_px``; likelihoods of tracked
    points are 0.9-1.0. A fraction ``dropout`` of the points (in runs of 1-4
    frames of one body part, as detectors lose a part for a few frames) gets a
    likelihood below 0.1 and a position off by ~15 px.
    """
    rng = np.random.default_rng([seed, 2])
    n_frames, n_parts = truth.pose.shape[:2]
    xy = truth.pose + rng.normal(0.0, noise_px, truth.pose.shape)
    likelihood = rng.uniform(0.9, 1.0, (n_frames, n_parts))
    lost = np.zeros((n_frames, n_parts), dtype=bool)
    target = int(round(dropout * n_frames * n_parts))
    while lost.sum() < target:
        start, part = rng.integers(n_frames), rng.integers(n_parts)
        lost[start : start + int(rng.integers(1, 5)), part] = True
    likelihood[lost] = rng.uniform(0.0, 0.1, lost.sum())
    xy[lost] += rng.normal(0.0, 15.0, (int(lost.sum()), 2))
    columns = pd.MultiIndex.from_product(
        [[scorer], list(truth.bodyparts), ["x", "y", "likelihood"]],
        names=["scorer", "bodyparts", "coords"],
    )
    values = np.concatenate([xy, likelihood[..., None]], axis=2).reshape(n_frames, -1)
    return pd.DataFrame(values, columns=columns)


def write_dlc_pose(
    truth: BehaviorTruth,
    path_h5: PathLike,
    *,
    noise_px: float = 1.0,
    dropout: float = 0.02,
    seed: int = 0,
    scorer: str = "neurovid-demo",
) -> None:
    """Write :func:`dlc_dataframe` as DeepLabCut does: ``.h5`` (key ``df_with_missing``) + ``.csv``.

    The CSV twin sits beside the HDF5 file with the same stem. Both are written atomically.
    """
    table = dlc_dataframe(truth, noise_px=noise_px, dropout=dropout, seed=seed, scorer=scorer)
    path_h5 = Path(path_h5)
    with atomic_path(path_h5) as tmp:
        table.to_hdf(tmp, key="df_with_missing", format="table", mode="w")
    with atomic_path(path_h5.with_suffix(".csv")) as tmp:
        table.to_csv(tmp)


def label_bouts(labels: np.ndarray) -> pd.DataFrame:
    """Runs of equal, non-``other`` labels: ``start_frame`` (inclusive), ``stop_frame`` (exclusive), ``label``."""
    labels = np.asarray(labels).astype(str)
    if labels.size == 0:
        return pd.DataFrame({"start_frame": [], "stop_frame": [], "label": []}).astype(
            {"start_frame": int, "stop_frame": int, "label": str}
        )
    change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts = np.r_[0, change]
    stops = np.r_[change, labels.size]
    keep = labels[starts] != "other"
    return pd.DataFrame(
        {
            "start_frame": starts[keep].astype(int),
            "stop_frame": stops[keep].astype(int),
            "label": labels[starts][keep],
        }
    )


def bouts_to_labels(bouts: pd.DataFrame, n_frames: int, background: str = "other") -> np.ndarray:
    """Per-frame labels [n_frames] from bouts (the inverse of :func:`label_bouts`)."""
    labels = np.full(n_frames, background, dtype=object)
    for start, stop, label in bouts[["start_frame", "stop_frame", "label"]].itertuples(index=False):
        labels[int(start) : int(stop)] = label
    return labels.astype(str)


def write_annotations(truth: BehaviorTruth, path_csv: PathLike) -> None:
    """The ground-truth bouts as CSV: ``start_frame,stop_frame,label`` (0-based, stop exclusive)."""
    write_table(path_csv, label_bouts(truth.labels), sep=",")


def write_truth(truth: BehaviorTruth, path: PathLike) -> None:
    """Save the whole truth (pose, labels, geometry) to HDF5, atomically."""
    write_h5(
        path,
        {"pose": truth.pose, "labels": truth.labels, "bodyparts": np.asarray(truth.bodyparts)},
        {
            "fps": truth.fps,
            "size": list(truth.size),
            "arena_px": list(truth.arena_px),
            "arena_cm": truth.arena_cm,
        },
    )


def read_truth(path: PathLike) -> BehaviorTruth:
    """Load a truth file written by :func:`write_truth`."""
    with h5py.File(path, "r") as h5:
        attrs = read_attrs(h5)
        return BehaviorTruth(
            fps=float(attrs["fps"]),
            bodyparts=tuple(h5["bodyparts"].asstr()[...]),
            pose=h5["pose"][...],
            labels=h5["labels"].asstr()[...],
            size=tuple(int(v) for v in attrs["size"]),
            arena_px=tuple(float(v) for v in attrs["arena_px"]),
            arena_cm=float(attrs["arena_cm"]),
        )
