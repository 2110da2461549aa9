"""The Sensorium 2023 metrics: single-trial correlation and correlation to average.

Both follow the challenge's evaluation code (ecker-lab/sensorium_2023
``sensorium/utility/scores.py`` with ``neuralpredictors.measures.np_functions.corr``):

- Each trial's first ``skip`` frames (50 at 30 Hz) are dropped: models need
  that much video before their predictions count.
- Trials are concatenated over time, and each neuron's Pearson r is taken over
  the concatenated frames as ``mean(z(y) * z(y_hat))`` with
  ``z(y) = (y - mean(y)) / (std(y) + 1e-8)`` (population std, ``ddof=0``). The
  ``1e-8`` makes a constant neuron (recorded or predicted) score exactly 0.
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

#: Frames dropped at the start of every trial (the challenge's ``skip=50``).
SKIP_FRAMES = 50
#: Offset added to the standard deviations (the challenge's ``eps``).
EPS = 1e-8


def pearson_per_neuron(y_true: np.ndarray, y_pred: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Per-column correlation of two [T, N] arrays, the challenge's way (NaN -> 0).

    ``mean(z1 * z2)`` with ``z = (y - mean) / (std + eps)``, ``ddof=0``; a constant
    column gives 0, a column containing NaN gives NaN, which is set to 0 with a
    warning.
    """
    y1 = np.asarray(y_true, dtype=np.float64)
    y2 = np.asarray(y_pred, dtype=np.float64)
    if y1.shape != y2.shape or y1.ndim != 2:
        raise ValueError(
            f"responses {y1.shape} and predictions {y2.shape} must be equal [T, N] shapes"
        )
    if y1.shape[0] < 2:
        raise ValueError(f"need at least two frames to correlate, got {y1.shape[0]}")
    with np.errstate(invalid="ignore"):
        z1 = (y1 - y1.mean(axis=0)) / (y1.std(axis=0) + eps)
        z2 = (y2 - y2.mean(axis=0)) / (y2.std(axis=0) + eps)
        r = (z1 * z2).mean(axis=0)
    nan = np.isnan(r)
    if nan.any():
        warnings.warn(f"{nan.mean() * 100:.1f}% NaN correlations, set to 0.", stacklevel=2)
        r[nan] = 0.0
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


def repeat_groups(stimulus_ids: Sequence[str], min_repeats: int = 2) -> list[list[int]]:
    """Indices of the trials of each stimulus shown at least ``min_repeats`` times (first-seen order)."""
    groups: dict[str, list[int]] = {}
    for index, stimulus in enumerate(stimulus_ids):
        groups.setdefault(str(stimulus), []).append(index)
    return [members for members in groups.values() if len(members) >= min_repeats]


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
    groups = repeat_groups(stimulus_ids, min_repeats)
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
