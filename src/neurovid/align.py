"""Alignment: stimulus features on a recording's timebase, and FIR delays.

Every model goes through the same two steps:

1. :func:`timeline_features` places each video's features at its onset in the
   recording and resamples them to the response samples, following the BIDS
   conventions: onsets are seconds from the start of the first sample, sample
   ``i`` covers ``[i * T, (i + 1) * T)``, and a sample's feature is the time
   integral of the displayed frames' features over its window divided by ``T``
   (linear interpolation when the features are sparser than the samples);
   zeros where no video plays. A body feature space (:mod:`neurovid.body`: the
   behavior video filmed during the recording, placed at its clock offset)
   passes ``require_cover``: every sample must then lie within the video, which
   may run past the recording's ends (it is cropped).
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
    source: str = "the `stimulus` column of recordings.tsv",
    require_cover: bool = False,
    field: str = "stimulus",
) -> np.ndarray:
    """Features of the videos shown during a recording, on the recording's timebase.

    Args:
        events: the recording's stimulus timeline (video id + onset in seconds
            from the first sample's window start).
        feature_sets: features of each video id (``times`` relative to the
            video's start, centre of each frame/window).
        target_times: centre time of each response sample (evenly spaced).
        recording, recording_path: named in error messages.
        source: where the timeline came from (a sheet's column, a BIDS events file, an
            NWB table), named in the fixes of error messages.
        require_cover: every sample window must lie within the events' videos (a body
            feature space: zeros would claim the animal sat still); the videos may
            start before the recording (negative onset) and run past its end.
        field: the sheet column the events' onsets come from, named in error messages.

    Returns:
        float32 array [len(target_times), D]; sample windows where no video
        plays are 0, windows half covered by a video are scaled by the covered
        share (the blank rest counts as zero features).

    Raises:
        InputError: the recording ends before its last video does (unless
            ``require_cover``), videos overlap, the videos' feature dimensions
            differ, or with ``require_cover`` a sample lies outside every video.
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
                f"fix the onsets in {source}.",
                field=field,
            )
        if video_end > end + TIME_TOLERANCE and not require_cover:
            raise InputError(
                where,
                f"recording {recording!r} is {end - start:.3f} s long ({len(target_times)} samples at {1 / period:g} Hz) but its stimulus timeline ends at {video_end - start:.3f} s (video {event.video_id!r} at onset {event.onset:g} s lasts {duration:.3f} s).",
                f"check the onsets in {source}, the TR / sampling rate, and that the recording file is complete.",
                field=field,
            )
        previous_end = video_end
        out += _resample_event(fs, onset, video_end, target_times, period)
    if require_cover:
        _check_cover(events, feature_sets, start, end, recording, where, source, field)
    return out.astype(np.float32)


def _check_cover(
    events: Sequence[StimulusEvent],
    feature_sets: Mapping[str, FeatureSet],
    start: float,
    end: float,
    recording: str,
    where: str,
    source: str,
    field: str,
) -> None:
    """Raise unless the (non-overlapping) events' videos together span ``[start, end]``."""
    spans = sorted(
        (start + e.onset, start + e.onset + feature_sets[e.video_id].duration, e) for e in events
    )
    reached, gap_end = start, end
    for lo, hi, _ in spans:
        if lo > reached + TIME_TOLERANCE:
            gap_end = min(lo, end)
            break
        reached = max(reached, hi)
    if reached >= end - TIME_TOLERANCE:
        return
    shown = "; ".join(
        f"video {e.video_id!r} at onset {e.onset:g} s lasts {hi - lo:.3f} s ({lo - start:.3f} to {hi - start:.3f} s)"
        for lo, hi, e in spans
    )
    raise InputError(
        where,
        f"recording {recording!r} runs from 0 to {end - start:.3f} s, but {shown}: {reached - start:.3f} to {gap_end - start:.3f} s of the recording is not covered, and a body feature space must cover every sample.",
        f"check the clock offset in {source} (the recording-clock time of the video's first frame; negative when filming started first), or give a behavior video filmed through the whole recording.",
        field=field,
    )


def _resample_event(
    fs: FeatureSet, onset: float, video_end: float, target_times: np.ndarray, period: float
) -> np.ndarray:
    """One video's features on the target bins (zeros outside the video).

    Each feature row stands for the stretch of video around its time (from the
    midpoint to the previous row to the midpoint to the next; the first row from
    the video's start, the last to its end: for per-frame features, exactly the
    frame's display interval). A bin's value is the time integral of these rows
    over the bin's window divided by the bin's length, so a bin the video half
    covers gets half the features. Rows sparser than the bins are interpolated
    linearly at the bin centres instead (scaled by the covered share).
    """
    times = np.asarray(fs.times, dtype=np.float64)
    values = np.asarray(fs.features, dtype=np.float64)
    lo_edges = target_times - period / 2 - onset  # bin windows in video time
    hi_edges = lo_edges + period
    duration = video_end - onset
    if len(times) >= 2 and np.median(np.diff(times)) > period:
        covered = np.clip(np.minimum(hi_edges, duration) - np.maximum(lo_edges, 0.0), 0.0, None)
        centres = target_times - onset
        columns = [np.interp(centres, times, values[:, d]) for d in range(values.shape[1])]
        return np.stack(columns, axis=1) * (covered / period)[:, None]
    edges = np.concatenate([[0.0], (times[:-1] + times[1:]) / 2, [duration]])
    cumulative = np.concatenate(
        [np.zeros((1, values.shape[1])), np.cumsum(values * np.diff(edges)[:, None], axis=0)]
    )

    def integral(t: np.ndarray) -> np.ndarray:
        """Integral of the piecewise-constant features from the video's start to ``t``."""
        t = np.clip(t, 0.0, duration)
        k = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(values) - 1)
        return cumulative[k] + (t - edges[k])[:, None] * values[k]

    return (integral(hi_edges) - integral(lo_edges)) / period


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
