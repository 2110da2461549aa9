"""Simulated recordings with known ground truth for the built-in demo.

The demo's stimulus videos are real; the brains are simulated from the
videos' motion-energy features (and, for the fMRI auditory ROI, their sound's
log-mel bands), so the pipeline's results can be checked against the truth.

Neural drive (shared by all modalities)
    The videos' per-frame features are integrated over time as the frames were
    on screen (:func:`displayed_features`, the simulator's own integration,
    independent of the pipeline's :func:`neurovid.align.timeline_features`) and
    standardized with the subject's FIXED statistics
    (mean and one overall scale of the reference video given to the truth
    step, so every run is treated alike). ``n_patterns`` latent tuning
    patterns pool many features with positive weights, with the component
    along the feature mean removed; each voxel / neuron mixes them with
    positive weights (its weights are ``mixing @ patterns``). So the drive is
    a fixed linear function of the aligned features, blanks included (blanks
    sit at the drive's in-video mean), and lives in the shared, high-variance
    part of the features that generalizes across videos. This is what lets a
    PCA (95%) + FIR + ridge model recover it from two training runs.

fMRI (4 subjects, MNI space, 3 mm)
    A "visual" ROI in occipital cortex (:func:`make_roi`: gray-matter voxels
    within 20 mm of two occipital centres, 2,253 voxels at 3 mm). The drive
    (10 Hz) of each ROI voxel is convolved with nilearn's Glover HRF, averaged
    over each TR window, scaled to unit SD over the run and then to
    ``snr * noise_sd`` (SNR 2.0 at the centres falling to 1.4 at the edge, the
    same map in every subject up to +-5%), and added to AR(1) noise (1% of a
    ~1000 baseline) present in every brain voxel. Non-ROI voxels are noise
    only; outside the brain the image is 0.

    An "auditory" ROI (:func:`make_auditory_roi`: gray-matter voxels within 20 mm
    of bilateral superior temporal gyrus, MNI (+-58, -22, 6), minus any visual
    voxel; ~2,250 voxels at 3 mm) gets the same kind of signal, driven by the
    videos' sound (``audio_mel`` log-mel bands as displayed, integrated by the same
    :func:`displayed_features`) and never by the picture; the visual ROI is driven
    by motion energy alone. Its patterns live in the reference sound's top
    principal directions (:func:`_patterns`), minus the mean's direction.

fMRI artefacts (:class:`FmriArtefacts`, sizes in units of each voxel's noise SD)
    Added to every brain voxel, with the truth kept per run:

    * scanner drift: a voxel-specific mix (a shared direction plus a voxel's own)
      of the slowest cosines of the run (the 128 s high-pass basis,
      :func:`neurovid.demo.fmriprep.cosine_basis`), SD ``drift_sd`` x U(0.67, 1.33)
      (3-6 noise SDs, 1.5-4 times the ROI signal's SD);
    * head motion (:func:`simulate_motion`): six parameters (mm, radians), a slow
      random walk plus ``jumps`` sudden nods (mostly ``trans_z`` / ``rot_x``, FD
      0.9-1.7 mm, at least 12 volumes apart). Its effect on a voxel is a
      voxel-specific linear mix of the 24-parameter expansion (parameters,
      derivatives, squares), SD ``motion_sd`` x U(0.5, 1.5): regressing the
      written confounds removes it exactly;
    * spike artefacts: at each jump volume a voxel-specific intensity change (SD
      ``spike_sd``) that no motion regressor explains (the jumps share one
      direction, so the derivative columns span only part of them): censoring the
      high-FD volumes removes them.

    The run's truth keeps the clean ROI ``signal``, the ``motion``, the
    ``jump_volumes`` and the ROI's summed ``artefact``; the fMRIPrep confounds are
    computed from the written image (:mod:`neurovid.demo.fmriprep`).

Mice (spikes, calcium; 50 neurons each)
    A linear-nonlinear model at the recording rate: the drive, scaled to unit
    SD over the run's stimulus time, gives ``rate = rate_hz * softplus(gain *
    drive(t - latency) + bias) / softplus(bias)`` (latency 0.05-0.15 s),
    Poisson spike counts per bin; calcium is the counts convolved with an
    exponential kernel (``tau`` 0.3-0.5 s) in dF/F units plus Gaussian noise.
    Every run also simulates the mouse's running speed (:func:`running_speed`,
    cm/s: rest and running bouts); a ``running_share`` of the neurons (0 by
    default, fixed per mouse in its truth: ``running_driven``) takes its drive
    from the running speed instead of the stimulus.

Per-run truth files hold the noise-free expected response, so the noise
ceiling of a target is ``corr(expected, observed)`` on a held-out run
(:func:`noise_ceiling`). Every random draw comes from :func:`rng`, seeded by a
hash of (seed parts, purpose): the same seed gives the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import signal

from neurovid.io import FeatureSet
from neurovid.sheets import StimulusEvent

#: MNI coordinates (mm) of the two occipital centres of the demo's visual ROI.
ROI_CENTRES_MM = ((-16.0, -90.0, 2.0), (16.0, -90.0, 2.0))
ROI_RADIUS_MM = 20.0
#: MNI coordinates (mm) of the demo's auditory ROI: bilateral superior temporal gyrus
#: (Heschl's gyrus / planum temporale), same radius as the visual ROI.
AUDITORY_CENTRES_MM = ((-58.0, -22.0, 6.0), (58.0, -22.0, 6.0))
AUDITORY_RADIUS_MM = ROI_RADIUS_MM
#: Timebase (Hz) on which fMRI neural drive is built before the HRF.
FMRI_FINE_RATE = 10.0
BOLD_BASELINE = 1000.0
BOLD_NOISE_PERCENT = 1.0  # noise SD as % of baseline (per voxel, +-20%)
FMRI_SNR_CENTRE = 2.0  # signal SD / noise SD at the ROI centres ...
FMRI_SNR_EDGE = 1.4  # ... falling linearly to this at the ROI's edge
NOISE_AR1 = 0.3  # lag-1 autocorrelation of the BOLD noise
#: Direction of the sudden head movements (a nod): trans x, y, z (mm), rot x, y, z (rad).
NOD = np.array([0.1, 0.3, 1.0, 0.008, 0.001, 0.001])
JUMP_MARGIN = 10  # volumes kept free of jumps at each end of a run
RUNNING_SPEED_CM_S = (10.0, 30.0)  # range of a running bout's mean speed


@dataclass(frozen=True)
class FmriArtefacts:
    """Artefacts of the simulated BOLD; sizes in units of each voxel's noise SD (0 = off).

    ``drift_sd``: slow scanner drift; ``motion_sd``: head-motion effect (linear in
    the 24 motion parameters); ``jumps``: sudden head movements per run (each with a
    spike artefact of SD ``spike_sd`` on its volume).
    """

    drift_sd: float = 4.5
    motion_sd: float = 2.0
    jumps: int = 4
    spike_sd: float = 8.0

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> FmriArtefacts:
        """From config ``demo: artefacts`` (missing keys keep the defaults)."""
        return cls(**{k: v for k, v in (section or {}).items() if k in cls.__dataclass_fields__})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- seeds


def seed_int(*parts: Any) -> int:
    """A 64-bit integer seed from any JSON-able parts (e.g. ``[1, "sub-01"]``, ``"noise"``)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def rng(seed: Any, purpose: str) -> np.random.Generator:
    """Independent random stream for ``purpose`` under ``seed`` (a number or a list)."""
    return np.random.default_rng(seed_int(seed, purpose))


# --------------------------------------------------------------------------- ROI


def make_roi(
    mask_img: nib.Nifti1Image,
    centres_mm: Sequence[Sequence[float]] = ROI_CENTRES_MM,
    radius_mm: float = ROI_RADIUS_MM,
) -> nib.Nifti1Image:
    """Binary (uint8) ROI: in-mask voxels within ``radius_mm`` of any centre."""
    mask = np.asarray(mask_img.dataobj) > 0
    ijk = np.argwhere(mask)
    dist = _distance_mm(mask_img.affine, ijk, centres_mm)
    roi = np.zeros(mask.shape, dtype=np.uint8)
    roi[tuple(ijk[dist <= radius_mm].T)] = 1
    img = nib.Nifti1Image(roi, mask_img.affine)
    img.header.set_xyzt_units("mm")
    return img


def make_auditory_roi(
    mask_img: nib.Nifti1Image,
    visual_roi: nib.Nifti1Image,
    centres_mm: Sequence[Sequence[float]] = AUDITORY_CENTRES_MM,
    radius_mm: float = AUDITORY_RADIUS_MM,
) -> nib.Nifti1Image:
    """Binary (uint8) auditory ROI: in-mask voxels within ``radius_mm`` of the superior
    temporal centres, minus any voxel of ``visual_roi`` (the two ROIs are disjoint)."""
    img = make_roi(mask_img, centres_mm, radius_mm)
    data = np.asarray(img.dataobj).copy()
    data[np.asarray(visual_roi.dataobj) > 0] = 0
    out = nib.Nifti1Image(data, img.affine)
    out.header.set_xyzt_units("mm")
    return out


def _distance_mm(
    affine: np.ndarray, ijk: np.ndarray, centres_mm: Sequence[Sequence[float]]
) -> np.ndarray:
    xyz = nib.affines.apply_affine(affine, ijk)
    return np.min(
        [np.linalg.norm(xyz - np.asarray(c, dtype=float), axis=1) for c in centres_mm], axis=0
    )


def brain_mask(resolution_mm: int = 3) -> nib.Nifti1Image:
    """Where simulated BOLD has signal: nilearn's MNI152 brain mask plus its GM mask."""
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_gm_mask

    gm = load_mni152_gm_mask(resolution=resolution_mm)
    brain = load_mni152_brain_mask(resolution=resolution_mm)
    data = (np.asarray(gm.dataobj) > 0) | (np.asarray(brain.dataobj) > 0)
    return nib.Nifti1Image(data.astype(np.uint8), gm.affine)


# --------------------------------------------------------------------------- truth


def feature_stats(features: FeatureSet) -> tuple[np.ndarray, float]:
    """Fixed standardization: per-feature mean and ONE overall scale (RMS of the SDs).

    A single scale keeps the features' relative variances (so the drive lives
    where the features vary, i.e. in their top principal components) and is
    robust to features that happen to be constant in the reference video.
    """
    x = np.asarray(features.features, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = float(np.sqrt(np.mean(x.var(axis=0))))
    return mean.astype(np.float32), scale if scale > 0 else 1.0


def _patterns(
    gen: np.random.Generator,
    n_patterns: int,
    mean: np.ndarray,
    span: np.ndarray | None = None,
) -> np.ndarray:
    """Latent tuning patterns over features, float32 [K, D], unit norm.

    Each pattern pools many features with positive (exponential) weights, the
    shared, slowly varying "how much is going on where" part of motion energy
    that generalizes across videos (independent random weights on single
    features do not: held-out r of a noise-free linear drive drops to ~0.8).
    The component along the reference feature mean is then removed, so the
    drive is the same linear function of the aligned features in blank
    periods (which alignment fills with 0) as during videos, with blanks at
    the drive's in-video mean level instead of a huge "off" response.

    ``span`` (orthonormal rows [k, D]): the pooled weights are first projected on
    these directions (the sound's top principal directions, :func:`top_directions`).
    Log-mel bands need it: their loudness, the second largest direction of variance,
    lies along the mean and is removed, so unprojected patterns would put much of the
    drive in weak spectral-contrast directions that a PCA of the features drops.
    """
    p = gen.exponential(1.0, (n_patterns, len(mean)))
    if span is not None:
        p = (p @ span.T) @ span
    unit = np.asarray(mean, np.float64) / max(float(np.linalg.norm(mean)), 1e-12)
    p -= np.outer(p @ unit, unit)
    return (p / np.linalg.norm(p, axis=1, keepdims=True)).astype(np.float32)


def top_directions(features: FeatureSet, k: int) -> np.ndarray:
    """The ``k`` principal directions (orthonormal rows [k, D]) of the centred features."""
    x = np.asarray(features.features, dtype=np.float64)
    _, _, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    return vt[:k]


#: Principal directions of the reference sound that the auditory patterns live in.
AUDIO_PATTERN_DIRECTIONS = 4


def make_fmri_truth(
    features: FeatureSet,
    roi_img: nib.Nifti1Image,
    seed: Any,
    *,
    n_patterns: int = 4,
    snr_centre: float = FMRI_SNR_CENTRE,
    snr_edge: float = FMRI_SNR_EDGE,
    audio_features: FeatureSet | None = None,
    audio_roi_img: nib.Nifti1Image | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One fMRI subject's ground truth: (datasets, attrs) for :func:`neurovid.io.write_h5`.

    ``features`` (one video's motion energy) only fixes the feature count and
    standardization. Datasets: ``feature_mean`` [D], ``patterns`` [K, D],
    ``mixing`` [R, K] (voxel weights = ``mixing @ patterns``), ``roi_ijk``
    [R, 3], ``snr`` [R] (signal SD / noise SD; highest at the ROI centres,
    the same map for every subject up to +-5%), ``brain_mask`` [X, Y, Z],
    ``baseline`` and ``noise_sd`` [B] for the B brain voxels (C order), and
    ``roi_noise_sd`` [R].

    With ``audio_features`` (one video's ``audio_mel``) and ``audio_roi_img`` (the
    auditory ROI, disjoint from the visual one), the same for the A auditory
    voxels, driven by the sound alone: ``audio_feature_mean`` [M],
    ``audio_patterns`` [K, M], ``audio_mixing`` [A, K], ``audio_roi_ijk`` [A, 3],
    ``audio_snr`` [A] (same SNR profile around the auditory centres) and
    ``audio_roi_noise_sd`` [A]; attr ``audio_feature_scale``. The visual draws do
    not depend on whether the auditory ROI is there.
    """
    if (audio_features is None) != (audio_roi_img is None):
        raise ValueError("give both audio_features and audio_roi_img, or neither")
    mean, scale = feature_stats(features)
    roi = np.asarray(roi_img.dataobj) > 0
    roi_ijk = np.argwhere(roi)
    zooms = roi_img.header.get_zooms()[:3]
    brain = np.asarray(brain_mask(int(round(float(zooms[0])))).dataobj) > 0
    if brain.shape != roi.shape:
        raise ValueError(f"ROI grid {roi.shape} is not the MNI152 grid {brain.shape}")
    brain |= roi
    audio_ijk = np.zeros((0, 3), dtype=np.int64)
    if audio_roi_img is not None:
        audio_roi = np.asarray(audio_roi_img.dataobj) > 0
        if (audio_roi & roi).any():
            raise ValueError("the auditory ROI overlaps the visual ROI")
        brain |= audio_roi
        audio_ijk = np.argwhere(audio_roi)
    n_brain = int(brain.sum())

    patterns = _patterns(rng(seed, "patterns"), n_patterns, mean)
    mixing = rng(seed, "mixing").exponential(1.0, (len(roi_ijk), n_patterns)).astype(np.float32)
    snr = _snr_map(
        roi_img.affine, roi_ijk, ROI_CENTRES_MM, ROI_RADIUS_MM, snr_centre, snr_edge,
        rng(seed, "snr"),
    )  # fmt: skip
    gen = rng(seed, "noise_sd")
    baseline = BOLD_BASELINE * gen.uniform(0.8, 1.2, n_brain)
    noise_sd = baseline * BOLD_NOISE_PERCENT / 100 * gen.uniform(0.8, 1.2, n_brain)
    position = np.full(brain.shape, -1, dtype=np.int64)
    position[brain] = np.arange(n_brain)
    datasets = {
        "feature_mean": mean,
        "patterns": patterns,
        "mixing": mixing,
        "roi_ijk": roi_ijk.astype(np.int32),
        "snr": snr,
        "brain_mask": brain.astype(np.uint8),
        "affine": np.asarray(roi_img.affine, dtype=np.float64),
        "baseline": baseline.astype(np.float32),
        "noise_sd": noise_sd.astype(np.float32),
        "roi_noise_sd": noise_sd[position[tuple(roi_ijk.T)]].astype(np.float32),
    }
    attrs = {
        "modality": "fmri",
        "feature_scale": scale,
        "n_patterns": n_patterns,
        "noise_ar1": NOISE_AR1,
        "hrf": "glover",
        "seed": seed,
    }
    if audio_features is not None and audio_roi_img is not None:
        audio_mean, audio_scale = feature_stats(audio_features)
        datasets.update(
            {
                "audio_feature_mean": audio_mean,
                "audio_patterns": _patterns(
                    rng(seed, "audio_patterns"),
                    n_patterns,
                    audio_mean,
                    top_directions(audio_features, AUDIO_PATTERN_DIRECTIONS),
                ),
                "audio_mixing": rng(seed, "audio_mixing")
                .exponential(1.0, (len(audio_ijk), n_patterns))
                .astype(np.float32),
                "audio_roi_ijk": audio_ijk.astype(np.int32),
                "audio_snr": _snr_map(
                    audio_roi_img.affine,
                    audio_ijk,
                    AUDITORY_CENTRES_MM,
                    AUDITORY_RADIUS_MM,
                    snr_centre,
                    snr_edge,
                    rng(seed, "audio_snr"),
                ),  # fmt: skip
                "audio_roi_noise_sd": noise_sd[position[tuple(audio_ijk.T)]].astype(np.float32),
            }
        )
        attrs["audio_feature_scale"] = audio_scale
        attrs["audio_features"] = str(audio_features.attrs.get("extractor", "audio_mel"))
    return datasets, attrs


def _snr_map(
    affine: np.ndarray,
    ijk: np.ndarray,
    centres_mm: Sequence[Sequence[float]],
    radius_mm: float,
    snr_centre: float,
    snr_edge: float,
    gen: np.random.Generator,
) -> np.ndarray:
    """Per-voxel SNR, ``snr_centre`` at the centres falling linearly to ``snr_edge`` at
    ``radius_mm``, times a U(0.95, 1.05) jitter: float32 [R]."""
    dist = _distance_mm(affine, ijk, centres_mm)
    frac = np.clip(dist / radius_mm, 0.0, 1.0)
    jitter = gen.uniform(0.95, 1.05, len(ijk))
    return ((snr_centre + (snr_edge - snr_centre) * frac) * jitter).astype(np.float32)


def make_mouse_truth(
    features: FeatureSet,
    seed: Any,
    *,
    modality: str,
    n_neurons: int = 50,
    n_patterns: int = 4,
    running_share: float = 0.0,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """One mouse's ground truth (LN model per neuron): (datasets, attrs).

    Datasets: ``feature_mean`` [D], ``patterns`` [K, D], ``mixing`` [N, K],
    ``rate_hz`` [N] (rate at zero drive), ``gain``, ``bias`` [N], ``latency_s``
    [N] (0.05-0.15 s, inside the spike delays 0-0.2 s), ``running_driven`` [N]
    (uint8: 1 for the ``round(running_share * N)`` neurons, drawn at random, whose
    drive is the running speed instead of the stimulus); calcium adds ``tau_s``,
    ``dff_per_spike`` and ``noise_sd`` [N]. The other draws do not depend on
    ``running_share``.
    """
    if modality not in ("spikes", "calcium"):
        raise ValueError(f"mouse modality must be spikes or calcium, not {modality!r}")
    if not 0.0 <= running_share <= 1.0:
        raise ValueError(f"running_share must lie in [0, 1], not {running_share}")
    mean, scale = feature_stats(features)
    gen = rng(seed, "neurons")
    datasets: dict[str, np.ndarray] = {
        "feature_mean": mean,
        "patterns": _patterns(rng(seed, "patterns"), n_patterns, mean),
        "mixing": rng(seed, "mixing").exponential(1.0, (n_neurons, n_patterns)).astype(np.float32),
        "rate_hz": np.exp(gen.uniform(np.log(8.0), np.log(30.0), n_neurons)).astype(np.float32),
        "gain": gen.uniform(0.8, 1.2, n_neurons).astype(np.float32),
        "bias": gen.uniform(0.5, 1.5, n_neurons).astype(np.float32),
        "latency_s": gen.uniform(0.05, 0.15, n_neurons).astype(np.float32),
    }
    driven = np.zeros(n_neurons, dtype=np.uint8)
    driven[
        rng(seed, "running_neurons").permutation(n_neurons)[: round(running_share * n_neurons)]
    ] = 1
    if modality == "calcium":
        datasets["tau_s"] = gen.uniform(0.3, 0.5, n_neurons).astype(np.float32)
        datasets["dff_per_spike"] = gen.uniform(0.05, 0.15, n_neurons).astype(np.float32)
        datasets["noise_sd"] = (
            datasets["dff_per_spike"] * gen.uniform(1.0, 2.0, n_neurons)
        ).astype(np.float32)
    attrs = {
        "modality": modality,
        "feature_scale": scale,
        "n_patterns": n_patterns,
        "model": "rate = rate_hz * softplus(gain * drive(t - latency) + bias) / softplus(bias)",
        "running_share": float(running_share),
        "seed": seed,
    }
    datasets["running_driven"] = driven
    return datasets, attrs


def fmri_weights(truth: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per-voxel feature weights [R, D] (on standardized features) of a subject's truth."""
    return np.asarray(truth["mixing"]) @ np.asarray(truth["patterns"])


# --------------------------------------------------------------------------- runs


def _n_samples(
    events: Sequence[StimulusEvent],
    feature_sets: Mapping[str, FeatureSet],
    period: float,
    tail_s: float,
) -> int:
    end = max(e.onset + feature_sets[e.video_id].duration for e in events)
    return int(math.ceil((end + tail_s) / period - 1e-6))


def displayed_features(
    events: Sequence[StimulusEvent],
    feature_sets: Mapping[str, FeatureSet],
    bin_s: float,
    n_bins: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame features as shown on screen, integrated over bins: ([n_bins, D], covered share).

    The simulator's own time integration, written independently of
    :func:`neurovid.align.timeline_features` so that a timing bug there cannot hide
    in the truth: frame ``j`` of a video with onset ``o`` is on screen during
    ``[o + j / fps, o + (j + 1) / fps)`` (``fps`` from the features file), bin ``i``
    covers ``[i * bin_s, (i + 1) * bin_s)`` (onsets in seconds from the start of the
    first bin, BIDS style), and a bin's value is the sum over frames of their overlap
    with the bin times the frame's features, divided by ``bin_s``.
    """
    rows, cols, weights, blocks = [], [], [], []
    offset = 0
    for event in events:
        fs = feature_sets[event.video_id]
        fps = float(fs.attrs.get("fps") or 1.0 / np.median(np.diff(fs.times)))
        for j in range(len(fs.features)):
            start, stop = event.onset + j / fps, event.onset + (j + 1) / fps
            first, last = int(start // bin_s), int(math.ceil(stop / bin_s))
            for i in range(max(first, 0), min(last, n_bins)):
                overlap = min(stop, (i + 1) * bin_s) - max(start, i * bin_s)
                if overlap > 0:
                    rows.append(i)
                    cols.append(offset + j)
                    weights.append(overlap / bin_s)
        blocks.append(np.asarray(fs.features, np.float64))
        offset += len(fs.features)
    from scipy.sparse import coo_matrix

    integrate = coo_matrix((weights, (rows, cols)), shape=(n_bins, offset)).tocsr()
    return integrate @ np.concatenate(blocks), np.asarray(integrate.sum(axis=1)).ravel()


def _drive(
    events: Sequence[StimulusEvent],
    feature_sets: Mapping[str, FeatureSet],
    truth: Mapping[str, Any],
    bin_s: float,
    n_bins: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Latent drives [n_bins, K] and the share of each bin a video covers.

    The drive is linear in the displayed features, blanks included:
    ``(x - feature_mean) / feature_scale @ patterns.T`` with ``x`` from
    :func:`displayed_features`.
    """
    x, covered = displayed_features(events, feature_sets, bin_s, n_bins)
    x -= np.asarray(truth["feature_mean"], np.float64)
    x /= float(truth["feature_scale"])
    return x @ np.asarray(truth["patterns"], np.float64).T, covered


def _unit_sd(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Centre and scale columns to unit SD over the samples where ``weight`` > 0."""
    on = weight > 0
    x = x - x[on].mean(axis=0)
    sd = x[on].std(axis=0)
    return x / np.where(sd > 0, sd, 1.0)


def ar1_noise(gen: np.random.Generator, shape: tuple[int, int], rho: float) -> np.ndarray:
    """Stationary AR(1) noise with unit marginal SD along axis 0, float64 [T, N]."""
    z = gen.standard_normal(shape)
    c = math.sqrt(1 - rho**2)
    zi = ((1 - c) * z[0])[None, :]
    return signal.lfilter([c], [1.0, -rho], z, axis=0, zi=zi)[0]


def simulate_motion(
    n_volumes: int, gen: np.random.Generator, jumps: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Head motion of one run: (parameters [T, 6], jump volumes [K]).

    Columns ``trans_x, trans_y, trans_z`` (mm) and ``rot_x, rot_y, rot_z``
    (radians), fMRIPrep's order. Rigid head motion has few modes, so:

    * a slow random walk (AR(1) velocity, rho 0.9; ~0.3 mm after 128 volumes)
      along one random direction per run (the head settling into the cushion);
    * ``jumps`` sudden nods ``a * NOD`` (``a`` 0.5-0.9 of either sign): the head is
      displaced during volume ``v`` and back at ``v + 1``, so FD is 0.9-1.7 mm at
      ``v`` and ``v + 1``; volumes at least 12 apart and ``JUMP_MARGIN`` from the
      run's ends (fewer in a short run);
    * small independent jitter of every parameter (0.01 mm, 0.0001 rad: estimation
      noise and breathing), FD well under 0.2 mm.
    """
    scale = np.array([1.0] * 3 + [0.01] * 3)  # 1 mm ~ 0.01 rad (50 mm radius: 0.5 mm)
    direction = gen.standard_normal(6) * scale
    direction /= np.linalg.norm(direction[:3]) + 50 * np.linalg.norm(direction[3:])
    velocity = signal.lfilter([0.0022], [1.0, -0.9], gen.standard_normal(n_volumes))
    motion = np.cumsum(velocity)[:, None] * direction
    motion += gen.standard_normal((n_volumes, 6)) * 0.01 * scale
    span = n_volumes - 2 * JUMP_MARGIN
    k = max(0, min(int(jumps), span // 24))
    volumes = np.zeros(0, dtype=np.int64)
    if k:
        width = span / k  # one jump in the middle half of each of k equal segments
        start = JUMP_MARGIN + width * np.arange(k)
        volumes = (start + width * gen.uniform(0.25, 0.75, k)).astype(np.int64)
        for volume in volumes:
            motion[volume] += gen.uniform(0.5, 0.9) * gen.choice([-1.0, 1.0]) * NOD
    return motion, volumes


def _artefacts(
    n_volumes: int,
    tr: float,
    noise_sd: np.ndarray,
    artefacts: FmriArtefacts,
    seed: Any,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(artefact [T, B] added to the B brain voxels, motion [T, 6], jump volumes [K])."""
    from neurovid.demo.fmriprep import cosine_basis, motion_expansion

    n_voxels = len(noise_sd)
    total = np.zeros((n_volumes, n_voxels))
    motion, jumps = simulate_motion(n_volumes, rng(seed, "motion"), artefacts.jumps)
    if artefacts.drift_sd > 0:
        basis = cosine_basis(n_volumes, tr)
        if basis.shape[1] == 0:  # a run shorter than the high-pass period: the slowest cosine
            basis = cosine_basis(n_volumes, tr, high_pass_s=2 * n_volumes * tr)
        basis = _unit_sd(basis, np.ones(n_volumes))
        gen = rng(seed, "drift")
        coef = gen.standard_normal(basis.shape[1]) + gen.standard_normal((n_voxels, basis.shape[1]))
        coef /= np.linalg.norm(coef, axis=1, keepdims=True)
        coef *= (artefacts.drift_sd * gen.uniform(0.67, 1.33, n_voxels) * noise_sd)[:, None]
        total += basis @ coef.T
    if artefacts.motion_sd > 0:
        gen = rng(seed, "motion_mix")
        x = _unit_sd(motion_expansion(motion), np.ones(n_volumes))
        effect = _unit_sd(x @ gen.standard_normal((x.shape[1], n_voxels)), np.ones(n_volumes))
        total += effect * (artefacts.motion_sd * gen.uniform(0.5, 1.5, n_voxels) * noise_sd)
    if artefacts.spike_sd > 0 and len(jumps):
        gen = rng(seed, "spikes")
        for lag, share in ((0, 1.0), (1, 0.5)):  # the moved volume, then its spin history
            spikes = gen.standard_normal((len(jumps), n_voxels)) * share * artefacts.spike_sd
            total[jumps + lag] += spikes * noise_sd
    return total, motion, jumps


def simulate_fmri_run(
    events: Sequence[StimulusEvent],
    feature_sets: Mapping[str, FeatureSet],
    truth: Mapping[str, Any],
    *,
    tr: float,
    tail_s: float,
    seed: Any,
    artefacts: FmriArtefacts | None = None,
    audio_feature_sets: Mapping[str, FeatureSet] | None = None,
) -> tuple[nib.Nifti1Image, dict[str, np.ndarray]]:
    """Simulate one BOLD run: (4-D int16 NIfTI image, per-run truth datasets).

    ``truth`` is a subject's truth (datasets and attrs in one mapping, as read
    back from its HDF5 file). The run has ``ceil((timeline end + tail_s) /
    tr)`` volumes; volume ``i`` is the mean over ``[i * tr, (i + 1) * tr)``.
    Per-run truth: ``signal`` [T, R] (noise-free ROI signal, baseline
    removed), ``times`` [T], ``roi_ijk``, ``noise_sd`` [R], and with
    ``artefacts`` (None: a clean run, the same bytes as without them) the head
    ``motion`` [T, 6] (mm, radians), the ``jump_volumes`` and the summed
    ``artefact`` [T, R] in the ROI (drift + motion effect + spikes).

    A truth with an auditory ROI (``audio_*`` datasets) needs ``audio_feature_sets``
    (each video's ``audio_mel``): its voxels get the same kind of signal, driven by
    the displayed sound features alone (the visual ROI by the picture alone), and
    the run's truth adds ``audio_signal`` [T, A], ``audio_roi_ijk``,
    ``audio_noise_sd`` (and ``audio_artefact`` [T, A] with artefacts).
    """
    from nilearn.glm.first_level import glover_hrf

    auditory = "audio_patterns" in truth
    if auditory and audio_feature_sets is None:
        raise ValueError("this truth has an auditory ROI: give the videos' audio_feature_sets")
    n_vols = _n_samples(events, feature_sets, tr, tail_s)
    n_sub = max(1, round(tr * FMRI_FINE_RATE))
    dt = tr / n_sub
    hrf = glover_hrf(t_r=dt, oversampling=1, time_length=32.0)

    def roi_bold(sets: Mapping[str, FeatureSet], prefix: str) -> tuple[np.ndarray, np.ndarray]:
        x, covered = displayed_features(events, sets, dt, n_vols * n_sub)
        x -= np.asarray(truth[f"{prefix}feature_mean"], np.float64)
        x /= float(truth[f"{prefix}feature_scale"])
        latent = x @ np.asarray(truth[f"{prefix}patterns"], np.float64).T
        bold = signal.lfilter(hrf, [1.0], latent, axis=0)
        bold = bold.reshape(n_vols, n_sub, -1).mean(axis=1)
        out = _unit_sd(bold @ np.asarray(truth[f"{prefix}mixing"], np.float64).T, np.ones(n_vols))
        out *= np.asarray(truth[f"{prefix}snr"])[None, :]
        return out * np.asarray(truth[f"{prefix}roi_noise_sd"])[None, :], covered

    roi_signal, covered = roi_bold(feature_sets, "")
    on = covered.reshape(n_vols, n_sub).mean(axis=1)

    brain = np.asarray(truth["brain_mask"]) > 0
    noise_sd = np.asarray(truth["noise_sd"], np.float64)
    noise = ar1_noise(rng(seed, "noise"), (n_vols, int(brain.sum())), NOISE_AR1)
    values = np.asarray(truth["baseline"], np.float64) + noise * noise_sd
    position = np.full(brain.shape, -1, dtype=np.int64)
    position[brain] = np.arange(int(brain.sum()))
    roi_ijk = np.asarray(truth["roi_ijk"])
    roi_columns = position[tuple(roi_ijk.T)]
    values[:, roi_columns] += roi_signal
    extra: dict[str, np.ndarray] = {}
    if auditory and audio_feature_sets is not None:
        audio_ijk = np.asarray(truth["audio_roi_ijk"])
        audio_columns = position[tuple(audio_ijk.T)]
        audio_signal, _ = roi_bold(audio_feature_sets, "audio_")
        values[:, audio_columns] += audio_signal
        extra |= {
            "audio_signal": audio_signal.astype(np.float32),
            "audio_roi_ijk": audio_ijk.astype(np.int32),
            "audio_noise_sd": np.asarray(truth["audio_roi_noise_sd"], np.float32),
        }
    if artefacts is not None:
        artefact, motion, jumps = _artefacts(n_vols, tr, noise_sd, artefacts, seed)
        values += artefact
        extra |= {
            "motion": motion,
            "jump_volumes": jumps,
            "artefact": artefact[:, roi_columns].astype(np.float32),
        }
        if auditory:
            extra["audio_artefact"] = artefact[:, audio_columns].astype(np.float32)
    data = np.zeros((*brain.shape, n_vols), dtype=np.int16)
    data[brain] = np.clip(np.rint(values.T), -32768, 32767).astype(np.int16)
    img = nib.Nifti1Image(data, np.asarray(truth["affine"]))
    img.header.set_data_dtype(np.int16)
    img.header.set_zooms((*img.header.get_zooms()[:3], float(tr)))
    img.header.set_xyzt_units("mm", "sec")
    img.header.set_slope_inter(1.0, 0.0)
    run_truth = {
        "signal": roi_signal.astype(np.float32),
        "times": (np.arange(n_vols) + 0.5) * tr,
        "roi_ijk": roi_ijk.astype(np.int32),
        "noise_sd": np.asarray(truth["roi_noise_sd"], np.float32),
        "stimulus_share": on.astype(np.float32),
        **extra,
    }
    return img, run_truth


def running_speed(n_samples: int, sampling_rate: float, gen: np.random.Generator) -> np.ndarray:
    """A mouse's running speed (cm/s) [T]: rest and running bouts.

    Bouts alternate (rest ~ exponential, mean 8 s; running mean 4 s; the first
    state at random); a running bout's speed is U(10, 30) cm/s; the trace is
    smoothed (0.5 s time constant, acceleration) and carries small positive
    noise (treadmill jitter); never negative.
    """
    target = np.zeros(n_samples)
    t, running = 0, bool(gen.random() < 0.4)
    while t < n_samples:
        length = max(1, int(round(gen.exponential(4.0 if running else 8.0) * sampling_rate)))
        if running:
            target[t : t + length] = gen.uniform(*RUNNING_SPEED_CM_S)
        t += length
        running = not running
    alpha = 1.0 - math.exp(-1.0 / (0.5 * sampling_rate))
    speed = signal.lfilter([alpha], [1.0, alpha - 1.0], target, zi=[target[0] * (1 - alpha)])[0]
    return np.clip(speed + np.abs(gen.normal(0.0, 0.3, n_samples)), 0.0, None)


def simulate_mouse_run(
    events: Sequence[StimulusEvent],
    feature_sets: Mapping[str, FeatureSet],
    truth: Mapping[str, Any],
    *,
    sampling_rate: float,
    tail_s: float,
    seed: Any,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Simulate one mouse run: (wide table ``time`` + ``neuron_NNN``, per-run truth).

    Per-run truth: ``expected`` [T, N] (E[count per bin] for spikes,
    ``kernel * E[count]`` in dF/F for calcium), ``rate_hz`` [T, N], ``times``,
    ``running_speed`` [T] (cm/s, :func:`running_speed`; its own random stream, so
    the neurons' draws are the same with or without it). Neurons marked
    ``running_driven`` in the truth take the running speed (unit SD over the run)
    as their drive.
    """
    modality = str(truth["modality"])
    n_samples = _n_samples(events, feature_sets, 1.0 / sampling_rate, tail_s)
    times = (np.arange(n_samples) + 0.5) / sampling_rate
    latent, covered = _drive(events, feature_sets, truth, 1.0 / sampling_rate, n_samples)
    drive = _unit_sd(latent @ np.asarray(truth["mixing"], np.float64).T, covered)
    n_neurons = drive.shape[1]
    speed = running_speed(n_samples, sampling_rate, rng(seed, "running"))
    driven = np.asarray(truth.get("running_driven", np.zeros(n_neurons)), bool)
    if driven.any():
        drive[:, driven] = _unit_sd(speed[:, None], np.ones(n_samples))
    lag = np.rint(np.asarray(truth["latency_s"]) * sampling_rate).astype(int)
    shifted = np.zeros_like(drive)
    for n, k in enumerate(lag):
        shifted[k:, n] = drive[: n_samples - k, n]
    gain, bias = np.asarray(truth["gain"], np.float64), np.asarray(truth["bias"], np.float64)
    rate_hz = np.asarray(truth["rate_hz"], np.float64) * np.logaddexp(0, gain * shifted + bias)
    rate_hz /= np.logaddexp(0, bias)
    expected = rate_hz / sampling_rate
    counts = rng(seed, "spikes").poisson(expected).astype(np.float64)
    if modality == "calcium":
        tau = np.asarray(truth["tau_s"], np.float64)
        dff = np.asarray(truth["dff_per_spike"], np.float64)
        k = np.arange(int(math.ceil(5 * tau.max() * sampling_rate)))
        observed = np.empty_like(counts)
        for n in range(n_neurons):
            kernel = dff[n] * np.exp(-k / (tau[n] * sampling_rate))
            observed[:, n] = signal.lfilter(kernel, [1.0], counts[:, n])
            expected[:, n] = signal.lfilter(kernel, [1.0], expected[:, n])
        noise = rng(seed, "calcium_noise").standard_normal(counts.shape)
        observed += noise * np.asarray(truth["noise_sd"], np.float64)
    else:
        observed = counts
    names = [f"neuron_{n:03d}" for n in range(n_neurons)]
    table = pd.DataFrame(observed.astype(np.float32), columns=names)
    if modality == "spikes":
        table = table.astype(np.int64)
    table.insert(0, "time", np.round(times, 6))
    run_truth = {
        "expected": expected.astype(np.float32),
        "rate_hz": rate_hz.astype(np.float32),
        "times": times,
        "stimulus_share": covered.astype(np.float32),
        "running_speed": speed.astype(np.float32),
    }
    return table, run_truth


def treadmill_table(times: np.ndarray, speed: np.ndarray, offset_s: float) -> pd.DataFrame:
    """A run's running speed as a rig's treadmill log (a recordings-sheet ``behavior`` table).

    ``behavior_time``: the samples' times on the rig's clock, whose 0 is ``offset_s`` on
    the recording's clock (the sheet's ``behavior_offset_s``: negative when the rig
    started first), so ``behavior_time = times - offset_s``; ``running_speed`` in cm/s.
    """
    return pd.DataFrame(
        {
            "behavior_time": np.round(np.asarray(times, np.float64) - float(offset_s), 6),
            "running_speed": np.asarray(speed, np.float32),
        }
    )


def noise_ceiling(expected: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """Per-target Pearson r between the noise-free expectation and the observation.

    :func:`neurovid.scoring.pearson_r` (NaN for a constant target).
    """
    from neurovid.scoring import pearson_r

    return pearson_r(expected, observed)


# --------------------------------------------------------------------------- files


def read_truth(path: str | Path) -> dict[str, Any]:
    """A truth file's datasets and attributes in one dict (attributes decoded)."""
    import h5py

    from neurovid.io import read_attrs

    with h5py.File(path, "r") as h5:
        out: dict[str, Any] = {name: h5[name][...] for name in h5}
        out.update(read_attrs(h5))
    return out


def features_by_video(
    timeline: Sequence[Sequence[Any]], paths: Sequence[str | Path]
) -> tuple[list[StimulusEvent], dict[str, FeatureSet]]:
    """Events and feature sets from a rule's ``timeline`` param and ``features`` inputs.

    ``paths`` are in timeline order (one per event, as the demo rules list them).
    """
    from neurovid.io import read_features

    events = [StimulusEvent(str(video), float(onset)) for video, onset in timeline]
    if len(paths) != len(events):
        raise ValueError(f"{len(paths)} feature files for a timeline of {len(events)} videos")
    sets: dict[str, FeatureSet] = {}
    for event, path in zip(events, paths, strict=True):
        if event.video_id not in sets:
            sets[event.video_id] = read_features(path)
    return events, sets


def simulate_mouse_files(
    timeline: Sequence[Sequence[Any]],
    feature_paths: Sequence[str | Path],
    truth_path: str | Path,
    *,
    modality: str,
    sampling_rate: float,
    tail_s: float,
    seed: Any,
) -> tuple[list[StimulusEvent], dict[str, FeatureSet], pd.DataFrame, dict[str, np.ndarray]]:
    """A mouse rule's simulation from its params and inputs: (events, feature sets,
    table, run truth) of :func:`simulate_mouse_run`; the truth must be of ``modality``."""
    events, feature_sets = features_by_video(timeline, feature_paths)
    truth = read_truth(truth_path)
    if truth["modality"] != modality:
        raise ValueError(f"truth {truth_path} is {truth['modality']}, recording is {modality}")
    table, run_truth = simulate_mouse_run(
        events,
        feature_sets,
        truth,
        sampling_rate=float(sampling_rate),
        tail_s=float(tail_s),
        seed=seed,
    )
    return events, feature_sets, table, run_truth


def save_nifti(img: nib.Nifti1Image, path: str | Path, provenance: Mapping[str, Any]) -> None:
    """Write a NIfTI image atomically, with ``provenance`` as JSON in a header extension."""
    from neurovid.io import atomic_path, to_json

    img.header.extensions.append(
        nib.nifti1.Nifti1Extension("comment", to_json(provenance).encode())
    )
    with atomic_path(path) as tmp:
        img.to_filename(tmp)


def nifti_provenance(img_or_path: nib.Nifti1Image | str | Path) -> dict[str, Any] | None:
    """The provenance JSON :func:`save_nifti` stored in a NIfTI header, if any."""
    img = nib.load(img_or_path) if isinstance(img_or_path, str | Path) else img_or_path
    for ext in img.header.extensions:
        if ext.get_code() == 6:
            try:
                return json.loads(ext.get_content())
            except (ValueError, UnicodeDecodeError):
                continue
    return None
