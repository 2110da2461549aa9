"""Per-mouse video trials for the Sensorium-style encoder, from two sources.

Sensorium 2023 layout (one folder per mouse, as released by the challenge)::

    <mouse>/data/videos/<i>.npy        [H, W, T] grayscale frames, 0..255, 30 Hz
    <mouse>/data/responses/<i>.npy     [N, T] deconvolved calcium activity
    <mouse>/data/behavior/<i>.npy      [2, T] pupil dilation, running speed
    <mouse>/data/pupil_center/<i>.npy  [2, T] pupil centre x, y
    <mouse>/meta/trials/tiers.npy      [n_trials] train | oracle | live_test_main | ...
    <mouse>/meta/neurons/unit_ids.npy  [N] (optional; else 0..N-1)

``<i>`` is the trial's index into ``tiers.npy``. Trials are NaN-padded at the
end; a trial's length is the number of frames before the first NaN of its
pupil dilation (as the 2023 winner reads it). Arrays are memory-mapped and only
the frames a batch needs are read, so a mouse's ~10 GB never sit in memory.
Trials of the test tiers whose responses are withheld (missing file or all NaN)
carry no responses. Repeats (the ``oracle`` tier shows each video several
times) are found by hashing the frames of the test-tier trials.

neurovid's own contract: a subject's runs, each a responses file
(:func:`neurovid.io.read_responses`, ``responses`` [T, N] + ``times``) and its
stimulus timeline of standardized videos. The videos are decoded in grayscale
at ``frame_size``, placed at their onsets and resampled to the response
samples (:func:`neurovid.align.timeline_features`: frames inside a sample
window are averaged, grey 0 where no video plays), then each run is cut into
trials of ``trial_frames`` samples. Optional datasets ``behavior`` [T, 2]
(pupil dilation, running speed) and ``pupil_center`` [T, 2] in the responses
file are used as behavior, zeros otherwise. Runs whose stimulus timeline is
shown more than once form the held-out ``oracle`` tier (their trials are
repeats of one another), the others ``train``; without repeats the last run is
held out.

Every trial gives time-major arrays: video [T, H, W] (0..255), behavior
[T, 4] (:data:`BEHAVIOR_CHANNELS`) and responses [T, N].
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neurovid.errors import InputError
from neurovid.io import FeatureSet, PathLike, read_h5, read_responses

log = logging.getLogger(__name__)

#: Behavior channels, in order, of every trial (Sensorium's behavior + pupil_center).
BEHAVIOR_CHANNELS = ("pupil_dilation", "running_speed", "pupil_center_x", "pupil_center_y")
#: Frame rate of the Sensorium 2023 recordings (videos and responses share it).
SENSORIUM_RATE = 30.0
SENSORIUM_FIELDS = ("videos", "responses", "behavior", "pupil_center")
#: Tiers whose trials are scored but not trained on, by default.
DEFAULT_TEST_TIERS = ("oracle",)


@dataclass
class TrialArrays:
    """Frames ``start:stop`` of a trial, time-major."""

    video: np.ndarray  # float32 [n, H, W], 0..255
    behavior: np.ndarray  # float32 [n, 4]
    responses: np.ndarray | None  # float32 [n, N]


@dataclass
class Trial:
    """One trial: its tier, valid length, repeat key, and where its arrays are.

    Either ``files`` (Sensorium ``.npy`` files, time on the last axis, read
    memory-mapped) or ``arrays`` (time-major, in memory) is set.
    """

    trial_id: str
    tier: str
    length: int
    stimulus: str = ""  # equal keys = repeats of one video ("" = not known)
    has_responses: bool = True
    files: Mapping[str, Path] | None = None
    arrays: Mapping[str, np.ndarray] | None = None

    def read(self, start: int = 0, stop: int | None = None) -> TrialArrays:
        """Frames ``start:stop`` (default: the whole valid length)."""
        stop = self.length if stop is None else min(stop, self.length)
        if self.arrays is not None:
            a = self.arrays
            video = np.asarray(a["video"][start:stop], dtype=np.float32)
            behavior = np.asarray(a["behavior"][start:stop], dtype=np.float32)
            responses = a.get("responses")
            responses = (
                np.asarray(responses[start:stop], dtype=np.float32)
                if responses is not None and self.has_responses
                else None
            )
            return TrialArrays(video, behavior, responses)
        assert self.files is not None

        def frames(name: str) -> np.ndarray:
            data = np.load(self.files[name], mmap_mode="r")
            return np.moveaxis(np.asarray(data[..., start:stop], dtype=np.float32), -1, 0)

        behavior = np.concatenate([frames("behavior"), frames("pupil_center")], axis=1)
        responses = frames("responses") if self.has_responses else None
        return TrialArrays(frames("videos"), behavior, responses)


@dataclass
class MouseData:
    """A mouse's trials, neurons and frame rate, from either source."""

    mouse_id: str
    source: str
    neuron_ids: np.ndarray
    frame_size: tuple[int, int]
    sampling_rate: float
    trials: list[Trial] = field(default_factory=list)

    @property
    def n_neurons(self) -> int:
        return len(self.neuron_ids)

    def in_tiers(self, tiers: Sequence[str], *, labelled: bool = True) -> list[Trial]:
        """Trials of ``tiers`` (with responses only, when ``labelled``)."""
        wanted = set(tiers)
        return [t for t in self.trials if t.tier in wanted and (t.has_responses or not labelled)]

    def describe(self) -> dict[str, Any]:
        """Counts for logs and provenance."""
        tiers: dict[str, int] = {}
        for trial in self.trials:
            tiers[trial.tier] = tiers.get(trial.tier, 0) + 1
        return {
            "source": self.source,
            "neurons": self.n_neurons,
            "frame_size": list(self.frame_size),
            "sampling_rate": self.sampling_rate,
            "trials_per_tier": tiers,
            "frames": int(sum(t.length for t in self.trials)),
        }


# ------------------------------------------------------------------ Sensorium 2023


def _npy_shape(path: Path) -> tuple[int, ...]:
    """Shape from the ``.npy`` header, without reading the data."""
    try:
        return tuple(np.load(path, mmap_mode="r").shape)
    except (OSError, ValueError) as err:
        raise InputError(
            path,
            f"cannot read this .npy file ({err}).",
            "re-extract the Sensorium archive of this mouse.",
        ) from err


def _valid_length(behavior_path: Path) -> int:
    pupil = np.asarray(np.load(behavior_path, mmap_mode="r")[0], dtype=np.float64)
    nan = np.flatnonzero(np.isnan(pupil))
    return int(nan[0]) if nan.size else int(pupil.shape[0])


def video_hash(video: np.ndarray) -> str:
    """Repeat key of a trial: hash of its frames (identical videos -> identical keys)."""
    return hashlib.sha1(np.ascontiguousarray(video, dtype=np.float32).tobytes()).hexdigest()[:16]


def load_sensorium_mouse(
    folder: PathLike,
    mouse_id: str | None = None,
    *,
    test_tiers: Sequence[str] = DEFAULT_TEST_TIERS,
    train_tiers: Sequence[str] = ("train",),
) -> MouseData:
    """Index a Sensorium 2023 mouse folder (see the module docstring); arrays stay on disk.

    Checks that every trial of ``meta/trials/tiers.npy`` has its four files with
    consistent shapes (from the ``.npy`` headers). Test-tier trials are read once
    to find withheld responses (all NaN or no file) and their repeat keys.

    Raises:
        InputError: a missing folder, file or field, or inconsistent shapes; the
            message names the file and the fix.
    """
    root = Path(folder)
    mouse_id = mouse_id or root.name
    field_name = f"deep.sensorium.folders.{mouse_id}"
    if not root.is_dir():
        raise InputError(
            root,
            "the Sensorium mouse folder does not exist.",
            "point the mouse at an extracted Sensorium 2023 folder (with data/ and meta/).",
            field=field_name,
        )
    tiers_path = root / "meta" / "trials" / "tiers.npy"
    if not tiers_path.is_file():
        raise InputError(
            tiers_path,
            "the trial tiers file is missing; not a Sensorium 2023 mouse folder.",
            "use the folder that holds data/ and meta/ of one mouse (e.g. dynamic29156-11-10-Video-...).",
            field="meta/trials/tiers.npy",
        )
    tiers = np.asarray(np.load(tiers_path, allow_pickle=False)).astype(str)
    for name in SENSORIUM_FIELDS:
        if not (root / "data" / name).is_dir():
            raise InputError(
                root / "data" / name,
                f"the data/{name} folder is missing.",
                "extract the complete Sensorium archive of this mouse (data/videos, responses, behavior, pupil_center).",
                field=f"data/{name}",
            )
    units_path = root / "meta" / "neurons" / "unit_ids.npy"
    test = set(test_tiers)
    n_neurons: int | None = None
    frame_size: tuple[int, int] | None = None
    trials: list[Trial] = []
    for index, tier in enumerate(tiers.tolist()):
        files = {name: root / "data" / name / f"{index}.npy" for name in SENSORIUM_FIELDS}
        for name in ("videos", "behavior", "pupil_center"):
            if not files[name].is_file():
                raise InputError(
                    files[name],
                    f"trial {index} (tier {tier}) has no {name} file.",
                    "re-extract the archive; every trial listed in meta/trials/tiers.npy needs its files.",
                    field=f"data/{name}",
                )
        video_shape = _npy_shape(files["videos"])
        n_frames = video_shape[-1] if video_shape else 0
        if len(video_shape) != 3:
            raise InputError(
                files["videos"],
                f"video has shape {video_shape}, expected [height, width, frames].",
                "use the Sensorium 2023 video arrays (36 x 64 x frames).",
                field="data/videos",
            )
        if frame_size is None:
            frame_size = (int(video_shape[0]), int(video_shape[1]))
        elif tuple(video_shape[:2]) != frame_size:
            raise InputError(
                files["videos"],
                f"frames are {video_shape[:2]}, other trials of this mouse are {frame_size}.",
                "use one frame size per mouse.",
                field="data/videos",
            )
        for name in ("behavior", "pupil_center"):
            shape = _npy_shape(files[name])
            if shape != (2, n_frames):
                raise InputError(
                    files[name],
                    f"has shape {shape}, expected (2, {n_frames}) to match the video's {n_frames} frames.",
                    "use the Sensorium 2023 arrays of this trial (channels x frames).",
                    field=f"data/{name}",
                )
        has_responses = files["responses"].is_file()
        if has_responses:
            shape = _npy_shape(files["responses"])
            if len(shape) != 2 or shape[1] != n_frames:
                raise InputError(
                    files["responses"],
                    f"has shape {shape}, expected (neurons, {n_frames}).",
                    "use the Sensorium 2023 response arrays (neurons x frames).",
                    field="data/responses",
                )
            if n_neurons is None:
                n_neurons = shape[0]
            elif shape[0] != n_neurons:
                raise InputError(
                    files["responses"],
                    f"has {shape[0]} neurons, earlier trials have {n_neurons}.",
                    "all trials of a mouse must hold the same neurons.",
                    field="data/responses",
                )
        elif tier in train_tiers:
            raise InputError(
                files["responses"],
                f"trial {index} of training tier {tier!r} has no responses file.",
                "re-extract the archive, or leave this tier out of deep.sensorium.train_tiers.",
                field="data/responses",
            )
        length = _valid_length(files["behavior"])
        stimulus = ""
        if tier in test:
            video = np.load(files["videos"], mmap_mode="r")[..., :length]
            stimulus = video_hash(video)
            if has_responses:
                has_responses = bool(
                    np.isfinite(np.load(files["responses"], mmap_mode="r")[:, :length]).any()
                )
        trials.append(Trial(str(index), str(tier), length, stimulus, has_responses, files=files))
    if n_neurons is None or frame_size is None:
        raise InputError(
            root / "data" / "responses",
            "no trial has responses.",
            "extract the responses of this mouse.",
            field="data/responses",
        )
    if units_path.is_file():
        neuron_ids = np.asarray(np.load(units_path)).astype(str)
        if len(neuron_ids) != n_neurons:
            raise InputError(
                units_path,
                f"lists {len(neuron_ids)} neurons, the responses have {n_neurons}.",
                "use the meta/ folder of the same mouse.",
                field="meta/neurons/unit_ids.npy",
            )
    else:
        neuron_ids = np.arange(n_neurons).astype(str)
    return MouseData(mouse_id, str(root), neuron_ids, frame_size, SENSORIUM_RATE, trials)


# ------------------------------------------------------------------ neurovid contract


@dataclass(frozen=True)
class RunSource:
    """One run of a subject in neurovid's contract: responses file + its stimulus timeline."""

    recording_id: str
    responses: PathLike
    stimulus: str  # the recordings.tsv `stimulus` text: vid or vid@onset;vid@onset
    videos: Mapping[str, PathLike]  # video id -> standardized video


def video_frames(path: PathLike, frame_size: tuple[int, int]) -> FeatureSet:
    """A video's grayscale frames (0..255) as a FeatureSet: ``features`` [T, H*W], ``times``."""
    from neurovid.video import iter_frames, video_fps

    height, width = frame_size
    times, frames = [], []
    for chunk_times, chunk in iter_frames(path, height=height, width=width, gray=True):
        times.append(chunk_times)
        frames.append(chunk.reshape(len(chunk), -1) * 255.0)
    if not frames:
        raise InputError(path, "the video has no frames.", "re-run its standardization.")
    fps = video_fps(path)
    all_times = np.concatenate(times)
    return FeatureSet(
        np.concatenate(frames).astype(np.float32),
        all_times,
        {"fps": fps, "duration": float(all_times[-1] + 0.5 / fps)},
    )


def _behavior(path: PathLike, n_samples: int) -> np.ndarray | None:
    arrays, _ = read_h5(path)
    parts = []
    for name in ("behavior", "pupil_center"):
        if name not in arrays:
            return None
        values = np.asarray(arrays[name], dtype=np.float32)
        if values.shape != (n_samples, 2):
            raise InputError(
                path,
                f"`{name}` has shape {values.shape}, expected ({n_samples}, 2) (samples x channels).",
                "store behavior as [T, 2] (pupil dilation, running speed) and pupil_center as [T, 2] on the responses timebase.",
                field=name,
            )
        parts.append(values)
    return np.concatenate(parts, axis=1)


def load_neurovid_mouse(
    mouse_id: str,
    runs: Sequence[RunSource],
    *,
    frame_size: tuple[int, int] = (36, 64),
    trial_frames: int = 300,
    test_tier: str = DEFAULT_TEST_TIERS[0],
) -> MouseData:
    """A subject's runs (neurovid files) as Sensorium-style trials; see the module docstring."""
    from neurovid.align import timeline_features
    from neurovid.sheets import parse_stimulus

    if not runs:
        raise InputError(
            None,
            f"subject {mouse_id!r} has no runs.",
            "list a spikes or calcium subject of recordings.tsv.",
            field="deep.sensorium.subjects",
        )
    if trial_frames < 2:
        raise InputError(
            None,
            f"trial_frames={trial_frames} is too short.",
            "use at least 2 samples (the challenge's trials are 300).",
            field="deep.sensorium.trial_frames",
        )
    keys = [" ".join(run.stimulus.split()) for run in runs]
    repeated = {key for key in keys if keys.count(key) > 1}
    held_out = [i for i, key in enumerate(keys) if key in repeated] if repeated else [len(runs) - 1]
    if len(held_out) == len(runs):
        log.warning(
            "%s: every run repeats a stimulus; the first run is trained on, the rest held out",
            mouse_id,
        )
        held_out = held_out[1:]
    frame_cache: dict[str, FeatureSet] = {}
    neuron_ids: np.ndarray | None = None
    rate: float | None = None
    trials: list[Trial] = []
    for index, (run, key) in enumerate(zip(runs, keys, strict=True)):
        rs = read_responses(run.responses)
        if neuron_ids is None:
            neuron_ids, rate = np.asarray(rs.target_names, dtype=str), rs.sampling_rate
        elif not np.array_equal(rs.target_names, neuron_ids):
            raise InputError(
                run.responses,
                f"its {len(rs.target_names)} neurons differ from those of {runs[0].recording_id} ({len(neuron_ids)}).",
                "runs of one subject must share neurons.",
                field="target_names",
            )
        elif abs(rs.sampling_rate - float(rate)) > 1e-6:
            raise InputError(
                run.responses,
                f"sampled at {rs.sampling_rate:g} Hz, other runs at {rate:g} Hz.",
                "resample the runs of a subject to one rate.",
                field="sampling_rate",
            )
        try:
            events = parse_stimulus(run.stimulus, where=f"recording {run.recording_id}")
        except ValueError as err:
            raise InputError(
                run.responses, str(err), "fix the recording's `stimulus`.", field="stimulus"
            ) from err
        sets = {}
        for event in events:
            if event.video_id not in run.videos:
                raise InputError(
                    run.responses,
                    f"the timeline names video {event.video_id!r} but no file was given for it.",
                    "list the video in videos.tsv.",
                    field="stimulus",
                )
            path = str(run.videos[event.video_id])
            if path not in frame_cache:
                frame_cache[path] = video_frames(path, frame_size)
            sets[event.video_id] = frame_cache[path]
        frames = timeline_features(
            events,
            sets,
            rs.times,
            recording=run.recording_id,
            recording_path=str(run.responses),
        ).reshape(len(rs.times), *frame_size)
        behavior = _behavior(run.responses, len(rs.times))
        if behavior is None:
            log.info(
                "%s: no `behavior`/`pupil_center` datasets; behavior channels are zeros",
                run.responses,
            )
            behavior = np.zeros((len(rs.times), len(BEHAVIOR_CHANNELS)), np.float32)
        tier = test_tier if index in held_out else "train"
        responses = rs.responses.astype(np.float32)
        for chunk, start in enumerate(range(0, len(rs.times), trial_frames)):
            stop = min(start + trial_frames, len(rs.times))
            if stop - start < 2:
                continue
            trials.append(
                Trial(
                    f"{run.recording_id}:{start}",
                    tier,
                    stop - start,
                    f"{key}#{chunk}",
                    arrays={
                        "video": frames[start:stop],
                        "behavior": behavior[start:stop],
                        "responses": responses[start:stop],
                    },
                )
            )
    assert neuron_ids is not None and rate is not None
    source = ",".join(str(run.responses) for run in runs)
    return MouseData(mouse_id, source, neuron_ids, tuple(frame_size), float(rate), trials)


# ------------------------------------------------------------------ splits


def split_validation(
    trials: Sequence[Trial], fraction: float, seed: int
) -> tuple[list[Trial], list[Trial]]:
    """Training trials -> (train, validation): ``fraction`` of the stimuli, seeded.

    Repeats of one stimulus stay on the same side; at least one trial goes to
    each side when there are two or more stimuli.
    """
    if not 0 < fraction < 1:
        raise InputError(
            None,
            f"val_fraction={fraction} is not between 0 and 1.",
            "use e.g. 0.1.",
            field="deep.sensorium.val_fraction",
        )
    groups: dict[str, list[Trial]] = {}
    for trial in trials:
        groups.setdefault(trial.stimulus or f"trial:{trial.trial_id}", []).append(trial)
    keys = sorted(groups)
    if len(keys) < 2:
        raise InputError(
            None,
            f"only {len(trials)} training trial(s) of {len(keys)} stimulus; validation needs another.",
            "add training trials (or shorten trial_frames for neurovid runs).",
            field="deep.sensorium.val_fraction",
        )
    order = np.random.default_rng(seed).permutation(len(keys))
    n_val = min(max(int(round(fraction * len(keys))), 1), len(keys) - 1)
    val_keys = {keys[i] for i in order[:n_val]}
    train = [t for t in trials if (t.stimulus or f"trial:{t.trial_id}") not in val_keys]
    val = [t for t in trials if (t.stimulus or f"trial:{t.trial_id}") in val_keys]
    return train, val
