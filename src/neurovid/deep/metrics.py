"""The Sensorium 2023 metrics: single-trial correlation and correlation to average.

Both follow the challenge's evaluation code (ecker-lab/sensorium_2023
``sensorium/utility/scores.py`` with ``neuralpredictors.measures.np_functions.corr``):

- Each trial's first ``skip`` frames (50 at 30 Hz) are dropped: models need
  that much video before their predictions count.
- Trials are concatenated over time, and each neuron's Pearson r is taken over
  the concatenated frames as ``mean(z(y) * z(y_hat))`` with
  ``z(y) = (y - mean(y)) / (std(y) + 1e-8)`` (population std, ``ddof=0``): the
  Pearson r of :func:`neurovid.scoring.pearson_r` up to that ``1e-8``, which makes
  a constant neuron (recorded or predicted) score exactly 0; here it does too.
- NaN correlations (a NaN anywhere in a neuron's frames) are set to 0, with a
  warning giving their share, and the score is the mean over neurons.

Correlation to average first averages, for every stimulus shown more than
once, the recorded responses *and* the predictions over its repeats (the
predictions differ between repeats because the behavior does), then scores the
averages as above. Stimuli shown once are left out (they have no average).
Repeats must have the same length; longer ones are cut to the shortest.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from neurovid.scoring import pearson_r, repeat_groups

#: Frames dropped at the start of every trial (the challenge's ``skip=50``).
SKIP_FRAMES = 50


def pearson_per_neuron(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per-column correlation of two [T, N] arrays, the challenge's way (NaN -> 0).

    :func:`neurovid.scoring.pearson_r`, with the Sensorium challenge's convention
    for what it leaves undefined: a constant column scores 0 (the challenge divides
    by ``std + eps``), and a column containing NaN scores 0 with a warning.
    """
    y1 = np.asarray(y_true, dtype=np.float64)
    y2 = np.asarray(y_pred, dtype=np.float64)
    if y1.shape != y2.shape or y1.ndim != 2:
        raise ValueError(
            f"responses {y1.shape} and predictions {y2.shape} must be equal [T, N] shapes"
        )
    if y1.shape[0] < 2:
        raise ValueError(f"need at least two frames to correlate, got {y1.shape[0]}")
    r = pearson_r(y1, y2)
    holds_nan = np.isnan(y1).any(axis=0) | np.isnan(y2).any(axis=0)
    if holds_nan.any():
        warnings.warn(f"{holds_nan.mean() * 100:.1f}% NaN correlations, set to 0.", stacklevel=2)
    r[np.isnan(r)] = 0.0
    return r


def _check_pairs(responses: Sequence[np.ndarray], predictions: Sequence[np.ndarray]) -> None:
    if len(responses) != len(predictions) or not responses:
        raise ValueError(f"got {len(responses)} response and {len(predictions)} prediction trials")
    for i, (y, p) in enumerate(zip(responses, predictions, strict=True)):
        if np.shape(y) != np.shape(p) or np.ndim(y) != 2:
            raise ValueError(
                f"trial {i}: responses {np.shape(y)} and predictions {np.shape(p)} must be equal [T, N]"
            )


def _skipped(trial: np.ndarray, skip: int, index: int) -> np.ndarray:
    if trial.shape[0] <= skip:
        raise ValueError(f"trial {index} has {trial.shape[0]} frames, not more than skip={skip}")
    return trial[skip:]


def single_trial_correlation(
    responses: Sequence[np.ndarray],
    predictions: Sequence[np.ndarray],
    *,
    skip: int = SKIP_FRAMES,
    per_neuron: bool = False,
) -> float | np.ndarray:
    """The challenge's single-trial correlation over trials of [T_i, N] responses and predictions.

    Drops the first ``skip`` frames of every trial, concatenates the trials over
    time, takes each neuron's Pearson r (NaN -> 0) and returns their mean, or
    the per-neuron values with ``per_neuron``.
    """
    _check_pairs(responses, predictions)
    y = np.concatenate([_skipped(np.asarray(t), skip, i) for i, t in enumerate(responses)])
    p = np.concatenate([_skipped(np.asarray(t), skip, i) for i, t in enumerate(predictions)])
    r = pearson_per_neuron(y, p)
    return r if per_neuron else float(r.mean())


def correlation_to_average(
    responses: Sequence[np.ndarray],
    predictions: Sequence[np.ndarray],
    stimulus_ids: Sequence[str],
    *,
    skip: int = SKIP_FRAMES,
    per_neuron: bool = False,
    min_repeats: int = 2,
) -> float | np.ndarray:
    """Correlation between repeat-averaged predictions and repeat-averaged responses.

    Trials with equal ``stimulus_ids`` are repeats of one video. For every
    stimulus with at least ``min_repeats`` trials, responses and predictions are
    averaged over its repeats (cut to the shortest repeat), the first ``skip``
    frames dropped, the stimuli concatenated over time, and each neuron's
    Pearson r taken (NaN -> 0). Returns the mean over neurons, or the
    per-neuron values with ``per_neuron``.

    Raises:
        ValueError: no stimulus has ``min_repeats`` repeats.
    """
    _check_pairs(responses, predictions)
    if len(stimulus_ids) != len(responses):
        raise ValueError(f"{len(stimulus_ids)} stimulus ids for {len(responses)} trials")
    groups = repeat_groups(stimulus_ids, min_size=min_repeats)
    if not groups:
        raise ValueError(
            f"no stimulus is shown at least {min_repeats} times; correlation to average needs repeats"
        )
    mean_y, mean_p = [], []
    for members in groups:
        length = min(np.shape(responses[i])[0] for i in members)
        mean_y.append(np.mean([np.asarray(responses[i])[:length] for i in members], axis=0))
        mean_p.append(np.mean([np.asarray(predictions[i])[:length] for i in members], axis=0))
    y = np.concatenate([_skipped(t, skip, g) for g, t in enumerate(mean_y)])
    p = np.concatenate([_skipped(t, skip, g) for g, t in enumerate(mean_p)])
    r = pearson_per_neuron(y, p)
    return r if per_neuron else float(r.mean())
