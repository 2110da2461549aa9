"""Alignment: stimulus features on a recording's timebase, and FIR delays.

Every model goes through the same two steps:

1. :func:`timeline_features` places each video's features at its onset in the
   recording, resamples them to the response sample times (averaging the
   frames inside each sample window; linear interpolation when the features
   are sparser than the samples) and leaves zeros where no video plays.
2. :func:`add_delays` stacks time-shifted copies (finite impulse response),
   so a linear model can learn the response lag, e.g. the hemodynamic delay
   of fMRI, without assuming a response shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from neurovid.errors import InputError
from neurovid.io import FeatureSet
from neurovid.sheets import StimulusEvent

#: Timing slack (seconds) for comparing durations; well below one frame.
TIME_TOLERANCE = 1e-3


def sample_period(times: np.ndarray, where: str = "times") -> float:
    """Median spacing of uniformly sampled ``times``; rejects irregular sampling."""
    if len(times) < 2:
        raise ValueError(f"{where}: need at least two samples to know the sampling period")
    steps = np.diff(times)
    period = float(np.median(steps))
    if np.max(np.abs(steps - period)) > 0.01 * period + 1e-9:
        raise ValueError(
            f"{where}: samples are not evenly spaced (steps {steps.min():.6g}..{steps.max():.6g} s)"
        )
    return period


def timeline_features(
    events: Sequence[StimulusEvent],
    feature_sets: Mapping[str, FeatureSet],
    target_times: np.ndarray,
    *,
    recording: str = "recording",
    recording_path: str | None = None,
) -> np.ndarray:
    """Features of the videos shown during a recording, on the recording's timebase.

    Args:
        events: the recording's stimulus timeline (video id + onset in seconds
            from the first sample's window start).
        feature_sets: features of each video id (``times`` relative to the
            video's start, centre of each frame/window).
        target_times: centre time of each response sample (evenly spaced).
        recording, recording_path: named in error messages.

    Returns:
        float32 array [len(target_times), D]; sample windows where no video
        plays are 0, windows half covered by a video are scaled by the covered
        share (the blank rest counts as zero features).

    Raises:
        InputError: the recording ends before its last video does, videos
            overlap, or the videos' feature dimensions differ.
    """
    target_times = np.asarray(target_times, dtype=np.float64)
    period = sample_period(target_times, f"{recording} times")
    start = target_times[0] - period / 2
    end = target_times[-1] + period / 2
    where = recording_path or recording

    dims = {v: fs.features.shape[1] for v, fs in feature_sets.items()}
    if len(set(dims.values())) > 1:
        raise InputError(
            where,
            f"the videos' features have different sizes {dims}; they must come from one extractor with one setting.",
            "re-run feature extraction for all videos with the same config.",
        )
    n_dims = next(iter(dims.values()))

    out = np.zeros((len(target_times), n_dims), dtype=np.float64)
    previous_end = -np.inf
    for event in events:
        fs = feature_sets[event.video_id]
        duration = fs.duration
        onset = start + event.onset
        video_end = onset + duration
        if onset < previous_end - TIME_TOLERANCE:
            raise InputError(
                where,
                f"video {event.video_id!r} starts at {event.onset:g} s, before the previous video ends ({previous_end - start:.3f} s).",
                "fix the onsets in the `stimulus` column of recordings.tsv.",
                field="stimulus",
            )
        if video_end > end + TIME_TOLERANCE:
            raise InputError(
                where,
                f"recording {recording!r} is {end - start:.3f} s long ({len(target_times)} samples at {1 / period:g} Hz) but its stimulus timeline ends at {video_end - start:.3f} s (video {event.video_id!r} at onset {event.onset:g} s lasts {duration:.3f} s).",
                "check the onsets in the `stimulus` column of recordings.tsv, the TR / sampling rate, and that the recording file is complete.",
                field="stimulus",
            )
        previous_end = video_end
        out += _resample_event(fs, onset, video_end, target_times, period)
    return out.astype(np.float32)


def _resample_event(
    fs: FeatureSet, onset: float, video_end: float, target_times: np.ndarray, period: float
) -> np.ndarray:
    """One video's features on the target bins (zeros outside the video)."""
    n_bins, n_dims = len(target_times), fs.features.shape[1]
    absolute = onset + fs.times
    lo_edges = target_times - period / 2
    hi_edges = target_times + period / 2
    covered = (
        np.clip(np.minimum(hi_edges, video_end) - np.maximum(lo_edges, onset), 0.0, None) / period
    )

    # Average of the feature rows falling in each bin.
    bins = np.floor((absolute - lo_edges[0]) / period).astype(np.int64)
    inside = (bins >= 0) & (bins < n_bins)
    sums = np.zeros((n_bins, n_dims))
    np.add.at(sums, bins[inside], fs.features[inside].astype(np.float64))
    counts = np.bincount(bins[inside], minlength=n_bins).astype(np.float64)
    result = np.zeros((n_bins, n_dims))
    has_rows = counts > 0
    result[has_rows] = sums[has_rows] / counts[has_rows, None]

    # Bins the video covers but no feature row falls in (features sparser than
    # samples): interpolate linearly, holding the first/last value to the edges.
    needs = (covered > 0) & ~has_rows
    if needs.any():
        t = target_times[needs]
        result[needs] = np.stack(
            [np.interp(t, absolute, fs.features[:, d]) for d in range(n_dims)], axis=1
        )
    return result * covered[:, None]


def delay_samples(delays_s: Sequence[float], sampling_rate: float) -> list[int]:
    """Delays in seconds -> whole samples (rounded, duplicates dropped, order kept)."""
    samples: list[int] = []
    for delay in delays_s:
        k = int(round(float(delay) * sampling_rate))
        if k not in samples:
            samples.append(k)
    return samples


def add_delays(features: np.ndarray, delays: Sequence[int]) -> np.ndarray:
    """Stack delayed copies: column block ``i`` holds ``features[t - delays[i]]``.

    Apply per run: samples shifted in from before the run's start are zero,
    so no information crosses run boundaries.
    """
    n_samples, n_dims = features.shape
    out = np.zeros((n_samples, n_dims * len(delays)), dtype=features.dtype)
    for i, d in enumerate(delays):
        block = out[:, i * n_dims : (i + 1) * n_dims]
        if d >= 0:
            block[d:] = features[: n_samples - d] if d < n_samples else 0
        else:
            block[: n_samples + d] = features[-d:]
    return out
