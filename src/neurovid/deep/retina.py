"""Vi-ST-style retina model: frozen per-frame features -> causal multiscale temporal CNN -> cell rates.

Inputs (the contract)
    Features: a neurovid features file (``results/features/vit/{video}.h5``):
    ``features`` [T, D] and ``times`` [T] (frame centres, s). When the file has a
    ``layout`` attr (ViT/DINOv2: one column block per layer and pooling), one block
    is chosen by ``layer`` and ``pooling``; ``layer: null`` takes every column.

    Responses: an HDF5 file per movie with
      - ``responses`` [R, T, N] float: trials (repeats of the movie) x time bins x
        cells, spike counts or rates per bin (a [T, N] array is read as one trial);
      - the timebase: ``times`` [T] (bin centres in s from the movie's first frame)
        or an attr ``sampling_rate`` (Hz; bin ``t`` is centred at ``(t + 0.5) / rate``);
        with neither, the bins are taken to be the video's frames (one bin per frame);
      - optional ``rf_positions`` [N, 2] (receptive-field centres, any consistent
        unit: they are standardized) and ``cell_names`` [N] (str).
    The features are put on the response bins with :func:`neurovid.align.timeline_features`
    (frames averaged inside each bin), the same alignment every neurovid model uses.

Model (:class:`RetinaCNN`)
    features (z-scored with training statistics kept as buffers) -> linear
    projection -> ``n_blocks`` multiscale blocks (parallel causal ``Conv1d`` with
    ``kernel_sizes``, dilation doubling per block, left padding only, so the output
    at time t sees inputs up to t and never after) -> per-cell linear readout ->
    softplus rates. With RF positions, each cell's readout weights get an offset
    computed from its RF position by a small MLP (cells with nearby RFs share
    structure); the MLP's last layer starts at zero, so conditioning starts neutral.

Loss
    ``poisson`` (negative log-likelihood of the trial-averaged counts given the
    rate) or ``rmse``, plus ``dtw_weight`` x the soft-DTW divergence
    (:func:`soft_dtw_divergence`, Cuturi & Blondel 2017; Blondel et al. 2021) of
    each cell's predicted and recorded rate over the training window, divided by
    the window length. ``dtw_gamma`` is the soft-min temperature in squared-rate
    units: small values approach hard DTW (sharp, less smooth gradients), large
    values approach a sum over all alignments. Validation (early stopping) uses the
    base loss only.

Metrics
    :func:`pearson_cc` (per cell, against the trial-averaged rate) and
    :func:`sd_kl` (spike-duration KL; see its docstring for bandwidth and edge cases).

Splits
    Each movie is cut in time: the last ``test_fraction`` is held out for scores, the
    ``val_fraction`` before it drives early stopping, the rest trains. Predictions
    always run over the whole movie (the model is causal, so held-out bins see only
    the stimulus before them, never a response). :func:`cross_video` trains on one
    movie and scores the whole other movie, both directions.
"""

from __future__ import annotations

import hashlib
import logging
import math
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.signal import find_peaks, peak_widths
from scipy.stats import gaussian_kde
from torch import nn

from neurovid.align import TIME_TOLERANCE, sample_period, timeline_features
from neurovid.deep.training import (
    TrainResult,
    TrainSettings,
    check_poisson_targets,
    plot_loss_curve,
    poisson_loss,
    save_torch,
    train_model,
)
from neurovid.errors import InputError
from neurovid.io import PathLike, atomic_path, read_attrs, read_features, to_json, write_table
from neurovid.scoring import pearson_r
from neurovid.sheets import StimulusEvent

FIELD = "deep.retina"
LOSSES = ("poisson", "rmse")
#: Floor added to densities before the KL divergence (the grid densities sum to 1).
KL_EPS = 1e-10


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class RetinaSettings:
    """Model, data and loss settings (config ``deep.retina``); ``train`` drives the engine."""

    layer: int | None = -1  # layout block of the features file; None = all columns
    pooling: str = "cls"  # cls | mean (with ``layer``)
    hidden: int = 64
    kernel_sizes: tuple[int, ...] = (3, 7, 15)
    n_blocks: int = 2
    dropout: float = 0.1
    rf_conditioning: bool = True  # used when the responses file has rf_positions
    rf_hidden: int = 32
    window: int = 64  # bins per training window that carry loss
    batch_size: int = 16
    windows_per_epoch: int = 0  # 0 = auto: twice the training bins / window
    loss: str = "poisson"
    dtw_weight: float = 0.0
    dtw_gamma: float = 0.1
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    peak_prominence: float = 0.1  # SD-KL: share of each rate's range a peak must rise
    peak_rel_height: float = 0.5  # SD-KL: width measured at this share of the prominence
    kde_grid: int = 256
    train: TrainSettings = field(default_factory=TrainSettings)

    def __post_init__(self) -> None:
        problems = []
        if self.loss not in LOSSES:
            problems.append(f"loss must be one of {LOSSES}, got {self.loss!r}")
        if self.pooling not in ("cls", "mean"):
            problems.append(f"pooling must be cls or mean, got {self.pooling!r}")
        if not self.kernel_sizes or any(int(k) < 1 for k in self.kernel_sizes):
            problems.append(f"kernel_sizes must be >= 1, got {list(self.kernel_sizes)}")
        for name in ("hidden", "n_blocks", "window", "batch_size", "kde_grid"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (0 < self.val_fraction < 1 and 0 < self.test_fraction < 1):
            problems.append("val_fraction and test_fraction must be between 0 and 1")
        elif self.val_fraction + self.test_fraction >= 0.9:
            problems.append("val_fraction + test_fraction must leave at least 10% for training")
        if self.dtw_weight < 0 or self.dtw_gamma <= 0:
            problems.append("dtw_weight must be >= 0 and dtw_gamma > 0")
        if problems:
            raise InputError(None, "; ".join(problems) + ".", "fix config.", field=FIELD)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RetinaSettings:
        """Settings from the config section (flat: training keys such as ``lr`` sit beside
        the model's, as in ``deep.sensorium``); unknown keys are an :class:`InputError`.

        Keys that only the workflow reads (``extractor``, ``experiments``,
        ``cross_video``) are ignored here.
        """
        config = dict(config)
        for key in ("extractor", "experiments", "cross_video"):
            config.pop(key, None)
        own = {f.name for f in fields(cls)} - {"train"}
        train_keys = {f.name for f in fields(TrainSettings)}
        unknown = sorted(set(config) - own - train_keys)
        if unknown:
            raise InputError(
                None,
                f"unknown settings {unknown}.",
                f"use only {sorted(own | train_keys)}.",
                field=FIELD,
            )
        train = {key: config.pop(key) for key in list(config) if key in train_keys}
        if "kernel_sizes" in config:
            config["kernel_sizes"] = tuple(int(k) for k in config["kernel_sizes"])
        return cls(**config, train=TrainSettings(**train))

    def model_config(self) -> dict[str, Any]:
        """What :class:`RetinaCNN` needs besides the data shapes."""
        return {
            "hidden": self.hidden,
            "kernel_sizes": list(self.kernel_sizes),
            "n_blocks": self.n_blocks,
            "dropout": self.dropout,
            "rf_hidden": self.rf_hidden,
        }


# --------------------------------------------------------------------------- data


@dataclass
class RetinaMovie:
    """One movie's features on the response bins and its responses to every repeat."""

    video_id: str
    features: np.ndarray  # [T, D] float32
    responses: np.ndarray  # [R, T, N] float32
    times: np.ndarray  # [T] bin centres (s)
    sampling_rate: float
    cell_names: np.ndarray  # [N] str
    rf_positions: np.ndarray | None = None  # [N, 2]
    source: dict[str, str] = field(default_factory=dict)

    @property
    def trial_average(self) -> np.ndarray:
        """[T, N] mean over repeats (the target the model is fit to and scored against)."""
        return self.responses.mean(axis=0)

    @property
    def n_cells(self) -> int:
        return int(self.responses.shape[2])


def feature_columns(
    attrs: Mapping[str, Any], layer: int | None, pooling: str, path: PathLike, width: int
) -> slice:
    """Columns of the features file holding ``layer`` / ``pooling`` (from its ``layout`` attr)."""
    if layer is None:
        return slice(0, width)
    layout = attrs.get("layout")
    if not layout:
        raise InputError(
            path,
            "the file has no `layout` attr, so a layer/pooling block cannot be chosen.",
            f"set `{FIELD}.layer: null` to use all {width} columns, or use a ViT/DINOv2 features file.",
            field="layout",
        )
    for block in layout:
        if int(block["layer"]) == int(layer) and block["pooling"] == pooling:
            return slice(int(block["start"]), int(block["stop"]))
    available = [(int(b["layer"]), b["pooling"]) for b in layout]
    raise InputError(
        path,
        f"no column block for layer {layer} / pooling {pooling!r}; the file has {available}.",
        f"set `{FIELD}.layer` / `{FIELD}.pooling` to one of these, or re-extract with that layer.",
        field="layout",
    )


def read_retina_responses(path: PathLike, frame_rate: float | None = None) -> dict[str, Any]:
    """``responses`` [R, T, N], ``times``, ``sampling_rate``, ``cell_names``, ``rf_positions``.

    See the module docstring for the contract; each violation is an
    :class:`InputError` naming the file, the dataset and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "the responses file does not exist.", "check the path in config.")
    try:
        h5 = h5py.File(path, "r")
    except OSError as err:
        raise InputError(path, f"cannot open as HDF5 ({err}).", "write it with h5py.") from err
    with h5:
        if "responses" not in h5:
            raise InputError(
                path,
                f"dataset `responses` is missing (found {sorted(h5.keys())}).",
                "store trials x time x cells as `responses` [R, T, N].",
                field="responses",
            )
        responses = np.asarray(h5["responses"][...], dtype=np.float32)
        attrs = read_attrs(h5)
        times = np.asarray(h5["times"][...], dtype=np.float64) if "times" in h5 else None
        rf = np.asarray(h5["rf_positions"][...], dtype=np.float64) if "rf_positions" in h5 else None
        names = h5["cell_names"].asstr()[...] if "cell_names" in h5 else None
    if responses.ndim == 2:
        responses = responses[None]
    if responses.ndim != 3 or min(responses.shape) < 1:
        raise InputError(
            path,
            f"`responses` has shape {responses.shape}; expected [trials, time, cells].",
            "store a 3-D array (a single trial may be 2-D [time, cells]).",
            field="responses",
        )
    if not np.all(np.isfinite(responses)):
        raise InputError(
            path,
            f"`responses` has {int((~np.isfinite(responses)).sum())} NaN/inf values.",
            "fill or drop them (e.g. remove the affected trials) before training.",
            field="responses",
        )
    n_trials, n_bins, n_cells = responses.shape
    if times is not None:
        if times.shape != (n_bins,):
            raise InputError(
                path,
                f"`times` has shape {times.shape} but `responses` has {n_bins} time bins.",
                "store one bin-centre time (s) per bin.",
                field="times",
            )
        try:
            rate = 1.0 / sample_period(times, f"{path} times")
        except ValueError as err:
            raise InputError(path, str(err), "bin the responses evenly.", field="times") from err
    else:
        rate = attrs.get("sampling_rate", frame_rate)
        if rate is None or float(rate) <= 0:
            raise InputError(
                path,
                "neither a `times` dataset nor a positive `sampling_rate` attr says when the bins are.",
                "add `times` [T] (bin centres, s) or the attr `sampling_rate` (Hz).",
                field="sampling_rate",
            )
        rate = float(rate)
        times = (np.arange(n_bins) + 0.5) / rate
    if rf is not None and rf.shape != (n_cells, 2):
        raise InputError(
            path,
            f"`rf_positions` has shape {rf.shape}; expected [{n_cells}, 2] (one x, y per cell).",
            "store one receptive-field centre per cell, or drop the dataset.",
            field="rf_positions",
        )
    if rf is not None and not np.all(np.isfinite(rf)):
        raise InputError(
            path,
            "`rf_positions` has NaN values.",
            "drop the dataset or fill them.",
            field="rf_positions",
        )
    if names is None:
        names = np.array([f"cell{i:03d}" for i in range(n_cells)])
    elif names.shape != (n_cells,):
        raise InputError(
            path,
            f"`cell_names` has shape {names.shape} for {n_cells} cells.",
            "store one name per cell.",
            field="cell_names",
        )
    return {
        "responses": responses,
        "times": times,
        "sampling_rate": rate,
        "cell_names": np.asarray(names, dtype=str),
        "rf_positions": rf,
        "n_trials": n_trials,
    }


def load_movie(
    features_path: PathLike,
    responses_path: PathLike,
    *,
    video_id: str,
    layer: int | None = -1,
    pooling: str = "cls",
) -> RetinaMovie:
    """A movie's chosen feature block on its response bins, and its responses."""
    fs = read_features(features_path)
    columns = feature_columns(fs.attrs, layer, pooling, features_path, fs.features.shape[1])
    fs.features = fs.features[:, columns]
    frame_rate = fs.attrs.get("fps")
    if frame_rate is None and len(fs.times) > 1:
        frame_rate = 1.0 / sample_period(fs.times, f"{features_path} times")
    data = read_retina_responses(responses_path, frame_rate)
    period = 1.0 / data["sampling_rate"]
    covered = float(data["times"][-1] + period / 2)
    if covered > fs.duration + TIME_TOLERANCE:
        raise InputError(
            responses_path,
            f"the responses cover {covered:.3f} s ({len(data['times'])} bins at "
            f"{data['sampling_rate']:g} Hz) but video {video_id!r} lasts {fs.duration:.3f} s "
            f"({features_path}).",
            "check `times` / `sampling_rate`, and that this file records this video "
            f"(`{FIELD}.experiments`).",
            field="times",
        )
    features = timeline_features(
        [StimulusEvent(video_id, 0.0)],
        {video_id: fs},
        data["times"],
        recording=video_id,
        recording_path=str(responses_path),
    )
    return RetinaMovie(
        video_id=video_id,
        features=features,
        responses=data["responses"],
        times=data["times"],
        sampling_rate=data["sampling_rate"],
        cell_names=data["cell_names"],
        rf_positions=data["rf_positions"],
        source={"features": str(features_path), "responses": str(responses_path)},
    )


def check_same_cells(movies: Sequence[RetinaMovie]) -> None:
    """All movies must record the same cells (names, count) at the same rate."""
    first = movies[0]
    for movie in movies[1:]:
        where = movie.source.get("responses")
        if movie.n_cells != first.n_cells or not np.array_equal(movie.cell_names, first.cell_names):
            raise InputError(
                where,
                f"movie {movie.video_id!r} has {movie.n_cells} cells {list(movie.cell_names[:3])}..., "
                f"movie {first.video_id!r} has {first.n_cells} {list(first.cell_names[:3])}...",
                "one experiment's movies must record the same cells in the same order (`cell_names`).",
                field="cell_names",
            )
        if abs(movie.sampling_rate - first.sampling_rate) > TIME_TOLERANCE * first.sampling_rate:
            raise InputError(
                where,
                f"sampling rate {movie.sampling_rate:g} Hz differs from {first.sampling_rate:g} Hz "
                f"of movie {first.video_id!r}.",
                "bin all movies of an experiment at the same rate.",
                field="sampling_rate",
            )
        if movie.features.shape[1] != first.features.shape[1]:
            raise InputError(
                movie.source.get("features"),
                f"{movie.features.shape[1]} feature columns, {first.features.shape[1]} in movie "
                f"{first.video_id!r}.",
                "extract every movie with the same model and layers.",
                field="features",
            )


def time_blocks(n_bins: int, val_fraction: float, test_fraction: float) -> dict[str, slice]:
    """Contiguous train / val / test bins: test is the end, val just before it."""
    n_test = max(1, int(round(n_bins * test_fraction)))
    n_val = max(1, int(round(n_bins * val_fraction)))
    n_train = n_bins - n_test - n_val
    if n_train < 2:
        raise ValueError(f"{n_bins} bins are too few to split into train/val/test")
    return {
        "train": slice(0, n_train),
        "val": slice(n_train, n_train + n_val),
        "test": slice(n_train + n_val, n_bins),
    }


# --------------------------------------------------------------------------- model


class CausalConv1d(nn.Conv1d):
    """``Conv1d`` over [B, C, T] padded on the left only: output t sees inputs <= t."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.left_pad = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left_pad, 0)))


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over channels at each time step (no statistics across time, so causal)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T]
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class MultiscaleBlock(nn.Module):
    """Parallel causal convolutions of several kernel sizes, mixed, with a residual."""

    def __init__(self, channels: int, kernel_sizes: Sequence[int], dilation: int, dropout: float):
        super().__init__()
        self.branches = nn.ModuleList(
            CausalConv1d(channels, channels, int(k), dilation) for k in kernel_sizes
        )
        self.mix = nn.Conv1d(channels * len(kernel_sizes), channels, 1)
        self.dropout = nn.Dropout(dropout)
        self.norm = ChannelNorm(channels)
        self.reach = (max(int(k) for k in kernel_sizes) - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = self.mix(F.gelu(torch.cat([branch(x) for branch in self.branches], dim=1)))
        return self.norm(x + self.dropout(mixed))


class RetinaCNN(nn.Module):
    """Per-frame features [B, T, D] -> causal multiscale temporal CNN -> rates [B, T, N] (>= 0)."""

    def __init__(
        self,
        n_features: int,
        n_cells: int,
        *,
        hidden: int = 64,
        kernel_sizes: Sequence[int] = (3, 7, 15),
        n_blocks: int = 2,
        dropout: float = 0.1,
        rf_positions: np.ndarray | torch.Tensor | None = None,
        rf_hidden: int = 32,
    ) -> None:
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(n_features))
        self.register_buffer("feature_scale", torch.ones(n_features))
        self.project = nn.Linear(n_features, hidden)
        self.blocks = nn.ModuleList(
            MultiscaleBlock(hidden, kernel_sizes, 2**i, dropout) for i in range(n_blocks)
        )
        self.readout_weight = nn.Parameter(torch.randn(n_cells, hidden) / math.sqrt(hidden))
        self.readout_bias = nn.Parameter(torch.zeros(n_cells))
        self.rf_embed: nn.Module | None = None
        if rf_positions is not None:
            rf = torch.as_tensor(np.asarray(rf_positions), dtype=torch.float32)
            rf = (rf - rf.mean(0)) / rf.std(0).clamp_min(1e-6)
            self.register_buffer("rf_positions", rf)
            self.rf_embed = nn.Sequential(
                nn.Linear(2, rf_hidden), nn.GELU(), nn.Linear(rf_hidden, hidden)
            )
            nn.init.zeros_(self.rf_embed[-1].weight)
            nn.init.zeros_(self.rf_embed[-1].bias)

    @property
    def receptive_field(self) -> int:
        """Bins of input history each output depends on (the current bin included)."""
        return 1 + sum(block.reach for block in self.blocks)

    def set_normalization(self, mean: np.ndarray, scale: np.ndarray) -> None:
        self.feature_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.feature_scale.copy_(torch.as_tensor(np.maximum(scale, 1e-6), dtype=torch.float32))

    def set_mean_rates(self, rates: np.ndarray) -> None:
        """Start the readout bias at each cell's mean rate (inverse softplus)."""
        rates = torch.as_tensor(np.maximum(rates, 1e-3), dtype=torch.float32)
        with torch.no_grad():
            self.readout_bias.copy_(rates + torch.log(-torch.expm1(-rates)))

    def readout(self) -> torch.Tensor:
        """[N, hidden] per-cell weights (plus the RF-conditioned offset when RFs are known)."""
        if self.rf_embed is None:
            return self.readout_weight
        return self.readout_weight + self.rf_embed(self.rf_positions)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = (features.float() - self.feature_mean) / self.feature_scale
        h = self.project(x).transpose(1, 2)  # [B, hidden, T]
        for block in self.blocks:
            h = block(h)
        drive = torch.einsum("bct,nc->btn", h, self.readout()) + self.readout_bias
        return F.softplus(drive.float())


def build_model(
    settings: RetinaSettings, n_features: int, n_cells: int, rf_positions: np.ndarray | None
) -> RetinaCNN:
    return RetinaCNN(
        n_features,
        n_cells,
        rf_positions=rf_positions if settings.rf_conditioning else None,
        **settings.model_config(),
    )


@torch.no_grad()
def predict(model: RetinaCNN, features: np.ndarray) -> np.ndarray:
    """Rates [T, N] over a whole movie (one causal pass), in eval mode, float64.

    The movie is preceded by ``receptive_field - 1`` bins of the training mean
    features, as in training (:func:`pad_history`).
    """
    was_training = model.training
    model.eval()
    warmup = model.receptive_field - 1
    padded = pad_history(features, model.feature_mean.cpu().numpy(), warmup)
    device = next(model.parameters()).device
    x = torch.as_tensor(padded, device=device)[None]
    rates = model(x)[0, warmup:].double().cpu().numpy()
    model.train(was_training)
    return rates


# --------------------------------------------------------------------------- losses


def rmse_loss(rate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(F.mse_loss(rate.float(), target.float()) + 1e-12)


def soft_dtw(x: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:
    """Soft-DTW value of 1-D sequences ``x`` [S, L] and ``y`` [S, M] (squared-difference cost).

    ``R[i, j] = C[i, j] + softmin_gamma(R[i-1, j-1], R[i-1, j], R[i, j-1])`` with
    ``softmin_gamma(a) = -gamma log sum exp(-a / gamma)``, computed one anti-diagonal
    at a time (L + M - 1 vectorised steps), differentiable by autograd. Cells
    outside the matrix hold a large finite value instead of infinity, so gradients
    stay finite.
    """
    x, y = x.float(), y.float()
    n_seq, n, m = x.shape[0], x.shape[1], y.shape[1]
    big = torch.tensor(1e10, dtype=x.dtype, device=x.device)
    rows = torch.arange(n, device=x.device)
    # y_reversed[:, m - 1 - d + n - 1 + i] == y[:, d - i] (zeros where d - i is outside y).
    y_reversed = F.pad(torch.flip(y, dims=[1]), (n - 1, n - 1))
    before = torch.full((n_seq, n), 1e10, dtype=x.dtype, device=x.device)  # diagonal d-2
    last = before.clone()  # diagonal d-1
    for d in range(n + m - 1):
        cols = d - rows
        valid = (cols >= 0) & (cols < m)
        # The costs C[i, d - i] of this diagonal from x and a slice of the reversed y
        # (indexing a full [S, L, M] cost matrix would cost autograd a full-size gradient
        # per step).
        start = m - 1 - d + n - 1
        diag_cost = (x - y_reversed[:, start : start + n]) ** 2
        corner = torch.zeros_like(before[:, :1]) if d == 0 else big.expand(n_seq, 1)
        up_left = torch.cat([corner, before[:, :-1]], dim=1)  # R[i-1, j-1]
        up = torch.cat([big.expand(n_seq, 1), last[:, :-1]], dim=1)  # R[i-1, j]
        left = last  # R[i, j-1]
        options = torch.stack([up_left, up, left], dim=0)
        softmin = -gamma * torch.logsumexp(-options / gamma, dim=0)
        current = torch.where(valid, diag_cost + softmin, big)
        before, last = last, current
    return last[:, n - 1]


def soft_dtw_divergence(x: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:
    """``sdtw(x, y) - (sdtw(x, x) + sdtw(y, y)) / 2`` per sequence: >= 0, and 0 when x == y.

    When ``y`` is a target (no gradient), its self-term is computed without autograd.
    """
    if y.requires_grad:
        xy, xx, yy = soft_dtw(torch.cat([x, x, y]), torch.cat([y, x, y]), gamma).chunk(3)
        return xy - (xx + yy) / 2
    xy, xx = soft_dtw(torch.cat([x, x]), torch.cat([y, x]), gamma).chunk(2)
    with torch.no_grad():
        yy = soft_dtw(y, y, gamma)
    return xy - (xx + yy) / 2


def retina_loss(rate: torch.Tensor, target: torch.Tensor, settings: RetinaSettings) -> torch.Tensor:
    """Base loss (Poisson or RMSE) plus the optional soft-DTW term, for [B, W, N] windows."""
    base = poisson_loss(rate, target) if settings.loss == "poisson" else rmse_loss(rate, target)
    if settings.dtw_weight <= 0:
        return base
    n_bins = rate.shape[1]
    per_cell = lambda a: a.float().transpose(1, 2).reshape(-1, n_bins)  # noqa: E731
    dtw = soft_dtw_divergence(per_cell(rate), per_cell(target), settings.dtw_gamma)
    return base + settings.dtw_weight * dtw.mean() / n_bins


# --------------------------------------------------------------------------- metrics


def pearson_cc(predicted: np.ndarray, recorded: np.ndarray) -> np.ndarray:
    """Per-cell Pearson r of ``predicted`` [T, N] with the trial-averaged ``recorded`` rate.

    ``recorded`` is [R, T, N] (averaged over repeats first) or already [T, N].
    :func:`neurovid.scoring.pearson_r`: a cell whose prediction or average is
    constant gets NaN (r is undefined).
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    recorded = np.asarray(recorded, dtype=np.float64)
    average = recorded.mean(axis=0) if recorded.ndim == 3 else recorded
    if average.shape != predicted.shape:
        raise ValueError(f"predicted {predicted.shape} and recorded {average.shape} differ")
    return pearson_r(average, predicted)


def peak_durations(
    rate: np.ndarray, sampling_rate: float, prominence: float = 0.1, rel_height: float = 0.5
) -> np.ndarray:
    """Widths (s) of the peaks of a rate trace: ``find_peaks`` + ``peak_widths``.

    A peak must rise ``prominence`` x the trace's range (max - min) above its
    surroundings; its width is measured at ``rel_height`` of its prominence (0.5:
    full width at half prominence). A constant trace has no peaks.
    """
    rate = np.asarray(rate, dtype=np.float64)
    span = float(rate.max() - rate.min()) if rate.size else 0.0
    if span <= 0:
        return np.zeros(0)
    peaks, _ = find_peaks(rate, prominence=prominence * span)
    if len(peaks) == 0:
        return np.zeros(0)
    widths = peak_widths(rate, peaks, rel_height=rel_height)[0]
    return widths / sampling_rate


@dataclass(frozen=True)
class SDKL:
    """Spike-duration KL of one cell: the value (NaN when undefined) and why it is NaN."""

    value: float
    reason: str  # "" when the value is defined
    n_pred: int
    n_true: int


def duration_kl(
    predicted: np.ndarray, recorded: np.ndarray, grid_points: int = 256
) -> tuple[float, str]:
    """KL(pred || true) of two sets of durations, via Gaussian KDEs on a shared grid.

    Each set gets a ``scipy.stats.gaussian_kde`` with Scott's rule (bandwidth =
    the set's standard deviation x n^(-1/5) in 1-D). Both densities are evaluated
    on one grid of ``grid_points`` points from the smallest duration minus three
    of the larger bandwidth to the largest plus three, normalised to sum to 1,
    floored at ``KL_EPS`` (so a true density of ~0 gives a large finite value, not
    infinity) and compared as ``sum p log(p / q)``.

    Edge cases, each documented by its reason: fewer than two durations in either
    set -> NaN (a KDE needs a spread); two identical sets -> exactly 0; a set whose
    durations are all equal but differ from the other set -> NaN (its KDE
    bandwidth is 0, the density is a spike).
    """
    p_set = np.sort(np.asarray(predicted, dtype=np.float64))
    t_set = np.sort(np.asarray(recorded, dtype=np.float64))
    for name, values in (("predicted", p_set), ("recorded", t_set)):
        if len(values) < 2:
            return math.nan, f"fewer than two peaks in the {name} rate ({len(values)})"
    if p_set.shape == t_set.shape and np.allclose(p_set, t_set, rtol=0, atol=1e-12):
        return 0.0, ""
    for name, values in (("predicted", p_set), ("recorded", t_set)):
        if np.ptp(values) <= 0:
            return math.nan, f"all {len(values)} {name} peak durations are equal: KDE undefined"
    kde_p, kde_t = gaussian_kde(p_set, bw_method="scott"), gaussian_kde(t_set, bw_method="scott")
    bandwidth = max(float(np.sqrt(kde_p.covariance[0, 0])), float(np.sqrt(kde_t.covariance[0, 0])))
    both = np.concatenate([p_set, t_set])
    grid = np.linspace(both.min() - 3 * bandwidth, both.max() + 3 * bandwidth, grid_points)
    p = kde_p(grid)
    q = kde_t(grid)
    p = p / p.sum() + KL_EPS
    q = q / q.sum() + KL_EPS
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q))), ""


def sd_kl(
    predicted: np.ndarray,
    recorded: np.ndarray,
    sampling_rate: float,
    *,
    prominence: float = 0.1,
    rel_height: float = 0.5,
    grid_points: int = 256,
) -> SDKL:
    """Spike-duration KL of one cell: durations of the peaks of each rate, then :func:`duration_kl`."""
    pred = peak_durations(predicted, sampling_rate, prominence, rel_height)
    true = peak_durations(recorded, sampling_rate, prominence, rel_height)
    value, reason = duration_kl(pred, true, grid_points)
    return SDKL(value, reason, len(pred), len(true))


def retina_scores(
    predicted: np.ndarray,
    recorded: np.ndarray,
    sampling_rate: float,
    cell_names: Sequence[str],
    settings: RetinaSettings | None = None,
) -> pd.DataFrame:
    """Per-cell table: ``cc`` (vs the trial average), ``sd_kl`` (+ ``sd_kl_reason``), peak counts, rates."""
    settings = settings or RetinaSettings()
    recorded = np.asarray(recorded)
    average = recorded.mean(axis=0) if recorded.ndim == 3 else recorded
    cc = pearson_cc(predicted, average)
    rows = []
    for i, name in enumerate(cell_names):
        kl = sd_kl(
            predicted[:, i],
            average[:, i],
            sampling_rate,
            prominence=settings.peak_prominence,
            rel_height=settings.peak_rel_height,
            grid_points=settings.kde_grid,
        )
        rows.append(
            {
                "cell": str(name),
                "cc": cc[i],
                "sd_kl": kl.value,
                "sd_kl_reason": kl.reason,
                "peaks_pred": kl.n_pred,
                "peaks_true": kl.n_true,
                "mean_rate_pred": float(predicted[:, i].mean()),
                "mean_rate_true": float(average[:, i].mean()),
            }
        )
    return pd.DataFrame(rows)


def summarize(scores: pd.DataFrame) -> dict[str, float]:
    """Means over cells (NaN cells skipped) and how many cells had a defined SD-KL."""
    return {
        "cc_mean": float(np.nanmean(scores["cc"])) if scores["cc"].notna().any() else math.nan,
        "cc_median": float(np.nanmedian(scores["cc"])) if scores["cc"].notna().any() else math.nan,
        "sd_kl_mean": float(np.nanmean(scores["sd_kl"]))
        if scores["sd_kl"].notna().any()
        else math.nan,
        "sd_kl_cells": int(scores["sd_kl"].notna().sum()),
        "cells": len(scores),
    }


# --------------------------------------------------------------------------- training


@dataclass
class Segment:
    """A movie's features and trial-averaged target, and the bins a role (train/val/test) uses."""

    features: np.ndarray  # [T, D]
    target: np.ndarray  # [T, N]
    bins: slice


@dataclass
class RetinaRun:
    """A trained model, the engine's result, and held-out scores / predictions."""

    model: RetinaCNN
    result: TrainResult
    scores: pd.DataFrame
    predictions: dict[str, np.ndarray]


def _windows(segments: Sequence[Segment], window: int) -> tuple[list[tuple[int, int]], int]:
    """All (segment, start) of loss windows lying inside each segment's bins, and the window."""
    window = min(window, *(s.bins.stop - s.bins.start for s in segments))
    starts = [
        (k, start)
        for k, s in enumerate(segments)
        for start in range(s.bins.start, s.bins.stop - window + 1)
    ]
    return starts, window


def pad_history(features: np.ndarray, pad_row: np.ndarray, warmup: int) -> np.ndarray:
    """``features`` with ``warmup`` copies of ``pad_row`` (the training mean) before the start.

    Training windows and whole-movie predictions both see this padding, so the
    first bins of a movie are treated the same way in both.
    """
    pad = np.repeat(np.asarray(pad_row, dtype=np.float32)[None], warmup, axis=0)
    return np.concatenate([pad, np.asarray(features, dtype=np.float32)])


def make_batches(
    segments: Sequence[Segment], settings: RetinaSettings, warmup: int, pad_row: np.ndarray
) -> Any:
    """``train_batches(epoch, generator)`` for the engine: random windows, fixed count per epoch.

    A window has ``warmup`` bins of input history (padded with ``pad_row``
    before the movie start) followed by ``window`` bins that carry loss.
    """
    starts, window = _windows(segments, settings.window)
    padded = [pad_history(s.features, pad_row, warmup) for s in segments]
    n_train = sum(s.bins.stop - s.bins.start for s in segments)
    per_epoch = settings.windows_per_epoch or max(
        settings.batch_size, 2 * math.ceil(n_train / window)
    )

    def batches(epoch: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, ...]]:
        picks = torch.randint(len(starts), (per_epoch,), generator=generator).tolist()
        for first in range(0, per_epoch, settings.batch_size):
            chosen = [starts[i] for i in picks[first : first + settings.batch_size]]
            x = np.stack([padded[k][s : s + warmup + window] for k, s in chosen])
            y = np.stack([segments[k].target[s : s + window] for k, s in chosen])
            yield torch.from_numpy(x), torch.from_numpy(y)

    return batches


def fit_retina(
    train: Sequence[Segment],
    val: Sequence[Segment],
    settings: RetinaSettings,
    out_dir: PathLike,
    *,
    rf_positions: np.ndarray | None = None,
    fingerprint: Mapping[str, Any] | None = None,
    log: logging.Logger | None = None,
) -> tuple[RetinaCNN, TrainResult]:
    """Build and train a :class:`RetinaCNN` with the engine (checkpoints in ``out_dir``)."""
    torch.manual_seed(settings.train.seed)
    n_features, n_cells = train[0].features.shape[1], train[0].target.shape[1]
    model = build_model(settings, n_features, n_cells, rf_positions)
    train_rows = np.concatenate([s.features[s.bins] for s in train])
    train_targets = np.concatenate([s.target[s.bins] for s in train])
    model.set_normalization(train_rows.mean(0), train_rows.std(0))
    model.set_mean_rates(train_targets.mean(0))
    warmup = model.receptive_field - 1

    def step_loss(net: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return retina_loss(net(x)[:, warmup:], y, settings)

    def val_loss(net: nn.Module) -> float:
        total, count = 0.0, 0
        for seg in val:
            rate = torch.from_numpy(predict(net, seg.features)[seg.bins])
            target = torch.from_numpy(seg.target[seg.bins])
            base = poisson_loss if settings.loss == "poisson" else rmse_loss
            n = seg.bins.stop - seg.bins.start
            total += float(base(rate, target)) * n
            count += n
        return total / count

    def val_cc(net: nn.Module) -> dict[str, float]:
        cc = [pearson_cc(predict(net, s.features)[s.bins], s.target[s.bins]) for s in val]
        values = np.concatenate(cc)
        return {"val_cc": float(np.nanmean(values)) if np.isfinite(values).any() else math.nan}

    result = train_model(
        model,
        step_loss,
        make_batches(train, settings, warmup, train_rows.mean(0)),
        val_loss,
        settings.train,
        out_dir,
        log=log,
        extra_metrics=val_cc,
        fingerprint={
            "retina": asdict(replace(settings, train=TrainSettings())),
            **(fingerprint or {}),
        },
    )
    return model, result


def check_loss(movies: Sequence[RetinaMovie], settings: RetinaSettings) -> None:
    """A Poisson loss needs non-negative responses: stop, naming the movie's file, otherwise."""
    if settings.loss != "poisson":
        return
    for movie in movies:
        check_poisson_targets(
            [movie.responses],
            source=movie.source.get("responses"),
            field=f"{FIELD}.loss",
            fix="give spike counts or rates (not dF/F or z-scored values), or set deep.retina.loss: rmse.",
        )


def movie_segments(movie: RetinaMovie, settings: RetinaSettings) -> dict[str, Segment]:
    blocks = time_blocks(len(movie.times), settings.val_fraction, settings.test_fraction)
    target = movie.trial_average
    return {role: Segment(movie.features, target, bins) for role, bins in blocks.items()}


def train_retina(
    movies: Sequence[RetinaMovie],
    settings: RetinaSettings,
    out_dir: PathLike,
    *,
    fingerprint: Mapping[str, Any] | None = None,
    log: logging.Logger | None = None,
) -> RetinaRun:
    """Train on the training bins of every movie; score each movie's held-out (test) bins.

    ``scores`` has one row per (movie, cell); ``predictions`` holds each movie's
    whole-movie predicted rates [T, N].
    """
    check_same_cells(movies)
    check_loss(movies, settings)
    split = [movie_segments(m, settings) for m in movies]
    model, result = fit_retina(
        [s["train"] for s in split],
        [s["val"] for s in split],
        settings,
        out_dir,
        rf_positions=movies[0].rf_positions,
        fingerprint=fingerprint,
        log=log,
    )
    tables, predictions = [], {}
    for movie, seg in zip(movies, split, strict=True):
        rates = predict(model, movie.features)
        predictions[movie.video_id] = rates
        test = seg["test"].bins
        table = retina_scores(
            rates[test], movie.responses[:, test], movie.sampling_rate, movie.cell_names, settings
        )
        table["mse"] = ((rates[test] - movie.trial_average[test]) ** 2).mean(axis=0)
        mean_rate = movie.trial_average[seg["train"].bins].mean(0)
        table["mse_mean_predictor"] = ((mean_rate - movie.trial_average[test]) ** 2).mean(axis=0)
        table.insert(0, "movie", movie.video_id)
        tables.append(table)
    return RetinaRun(model, result, pd.concat(tables, ignore_index=True), predictions)


def cross_video(
    movies: Sequence[RetinaMovie],
    settings: RetinaSettings,
    out_dir: PathLike,
    *,
    log: logging.Logger | None = None,
) -> pd.DataFrame:
    """Train on one movie, score the whole other movie, for every ordered pair (both directions).

    The training movie's own time split supplies early stopping (its train and
    val blocks; its test block is unused). Rows: ``train_movie``, ``test_movie``,
    the means of :func:`summarize`, ``best_epoch``; checkpoints go to
    ``out_dir/{train}_to_{test}``.
    """
    if len(movies) < 2:
        raise InputError(
            None,
            f"cross-video generalization needs two movies, got {len(movies)}.",
            "list at least two movies in the experiment, or disable `cross_video`.",
            field=f"{FIELD}.experiments",
        )
    check_same_cells(movies)
    check_loss(movies, settings)
    rows = []
    for source in movies:
        seg = movie_segments(source, settings)
        model, result = fit_retina(
            [seg["train"]],
            [seg["val"]],
            settings,
            Path(out_dir) / f"{source.video_id}_to_others",
            rf_positions=source.rf_positions,
            fingerprint={"cross_video_train": source.video_id},
            log=log,
        )
        for target in movies:
            if target is source:
                continue
            rates = predict(model, target.features)
            scores = retina_scores(
                rates, target.responses, target.sampling_rate, target.cell_names, settings
            )
            rows.append(
                {
                    "train_movie": source.video_id,
                    "test_movie": target.video_id,
                    **summarize(scores),
                    "best_epoch": result.best_epoch,
                }
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- outputs


def run_key(settings: RetinaSettings, inputs: Mapping[str, PathLike]) -> str:
    """Digest of the settings and the input files' bytes: a resumable state must match it."""
    from neurovid.io import file_digest

    payload = to_json(
        {
            # As in the engine's fingerprint, max_epochs and device may change between an
            # interrupted run and its resumption (raising max_epochs extends a finished run).
            "settings": asdict(
                replace(settings, train=replace(settings.train, device="auto", max_epochs=1))
            ),
            "inputs": {k: file_digest(v) for k, v in sorted(inputs.items())},
        }
    )
    return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()


def prepare_state_dir(state_dir: PathLike, key: str, log: logging.Logger | None = None) -> Path:
    """The training-state folder for ``key``: kept (to resume) when its key matches, else emptied.

    An interrupted job resumes from ``last.pt``; changed inputs or settings start over.
    """
    state = Path(state_dir)
    key_file = state / "run_key.txt"
    if state.exists() and (not key_file.is_file() or key_file.read_text().strip() != key):
        if log:
            log.info(
                "%s: inputs or settings changed since it was written; training from scratch", state
            )
        shutil.rmtree(state)
    state.mkdir(parents=True, exist_ok=True)
    if not key_file.is_file():
        with atomic_path(key_file) as tmp:
            tmp.write_text(key + "\n")
    return state


def save_checkpoint(
    path: PathLike,
    model: RetinaCNN,
    settings: RetinaSettings,
    movies: Sequence[RetinaMovie],
    result: TrainResult,
    provenance: Mapping[str, Any],
) -> None:
    """Best weights plus what rebuilds the model: settings, shapes, cell names, RF positions."""
    first = movies[0]
    payload = {
        "model": {k: v.cpu() for k, v in model.state_dict().items()},
        "settings": to_json(asdict(settings)),
        "n_features": int(first.features.shape[1]),
        "cell_names": [str(c) for c in first.cell_names],
        "rf_positions": None if first.rf_positions is None else first.rf_positions.tolist(),
        "sampling_rate": first.sampling_rate,
        "best_epoch": result.best_epoch,
        "provenance": to_json(dict(provenance)),
    }
    save_torch(payload, path)


def load_checkpoint(path: PathLike) -> tuple[RetinaCNN, dict[str, Any]]:
    """The trained model (eval mode, CPU) and the checkpoint's metadata."""
    import json

    payload = torch.load(path, map_location="cpu", weights_only=True)
    raw = json.loads(payload["settings"])
    train = TrainSettings(**raw.pop("train"))
    raw["kernel_sizes"] = tuple(raw["kernel_sizes"])
    settings = RetinaSettings(**raw, train=train)
    rf = payload["rf_positions"]
    model = build_model(
        settings,
        payload["n_features"],
        len(payload["cell_names"]),
        None if rf is None else np.asarray(rf),
    )
    model.load_state_dict(payload["model"])
    return model.eval(), {**payload, "settings": settings}


def write_retina_outputs(
    run: RetinaRun,
    movies: Sequence[RetinaMovie],
    settings: RetinaSettings,
    state_dir: PathLike,
    outputs: Mapping[str, PathLike],
    provenance: Mapping[str, Any],
) -> None:
    """``checkpoint`` (.pt), ``metrics`` (per-epoch CSV), ``loss_curve`` (PNG), ``scores`` (TSV).

    The scores table's JSON sidecar (``scores.json``) carries the provenance.
    """
    save_checkpoint(outputs["checkpoint"], run.model, settings, movies, run.result, provenance)
    with atomic_path(outputs["metrics"]) as tmp:
        shutil.copyfile(Path(state_dir) / "metrics.csv", tmp)
    plot_loss_curve(outputs["metrics"], outputs["loss_curve"], provenance, title="retina CNN")
    write_table(outputs["scores"], run.scores, provenance=provenance)


# --------------------------------------------------------------------------- rule bodies


def rule_movies(smk: Any, settings: RetinaSettings) -> tuple[list[RetinaMovie], dict[str, str]]:
    """The experiment's movies from a job's ``params.movies`` / ``input.features`` / ``input.responses``."""
    ids = list(smk.params.movies)
    features, responses = list(smk.input.features), list(smk.input.responses)
    if not (len(ids) == len(features) == len(responses)):
        raise ValueError(f"{len(ids)} movies, {len(features)} features, {len(responses)} responses")
    movies = [
        load_movie(f, r, video_id=v, layer=settings.layer, pooling=settings.pooling)
        for v, f, r in zip(ids, features, responses, strict=True)
    ]
    inputs = {f"features/{v}": str(f) for v, f in zip(ids, features, strict=True)}
    inputs.update({f"responses/{v}": str(r) for v, r in zip(ids, responses, strict=True)})
    return movies, inputs


def _rule_setup(
    smk: Any, name: str
) -> tuple[logging.Logger, RetinaSettings, list[RetinaMovie], dict[str, Any], str]:
    from neurovid.io import provenance
    from neurovid.logs import script_logger

    log = script_logger(smk, name)
    torch.set_num_threads(max(1, int(smk.threads)))
    # The workflow's `seed` unless the section sets its own.
    section = {"seed": int(getattr(smk.params, "seed", 0) or 0), **dict(smk.params.settings)}
    settings = RetinaSettings.from_config(section)
    movies, inputs = rule_movies(smk, settings)
    for movie in movies:
        log.info(
            "%s: %d trials x %d bins x %d cells at %g Hz, %d feature columns%s",
            movie.video_id,
            *movie.responses.shape,
            movie.sampling_rate,
            movie.features.shape[1],
            ", RF positions" if movie.rf_positions is not None else "",
        )
    params = {"settings": section, "movies": list(smk.params.movies)}
    record = provenance(name, params, inputs, packages=("torch", "scipy", "h5py", "pandas"))
    return log, settings, movies, record, run_key(settings, inputs)


def train_rule(smk: Any) -> RetinaRun:
    """Body of rule ``train_retina``: train, then write checkpoint, metrics, loss curve, scores."""
    log, settings, movies, record, key = _rule_setup(smk, "train_retina")
    state = prepare_state_dir(smk.params.state, key, log)
    run = train_retina(movies, settings, state, fingerprint={"run_key": key}, log=log)
    write_retina_outputs(run, movies, settings, state, dict(smk.output.items()), record)
    for movie_id, table in run.scores.groupby("movie", sort=False):
        stats = summarize(table)
        log.info(
            "%s held-out: CC mean %.3f (median %.3f), SD-KL mean %.3f over %d/%d cells",
            movie_id,
            stats["cc_mean"],
            stats["cc_median"],
            stats["sd_kl_mean"],
            stats["sd_kl_cells"],
            stats["cells"],
        )
    return run


def cross_video_rule(smk: Any) -> pd.DataFrame:
    """Body of rule ``retina_cross_video``: train on each movie, score the others."""
    log, settings, movies, record, key = _rule_setup(smk, "retina_cross_video")
    state = prepare_state_dir(smk.params.state, key, log)
    table = cross_video(movies, settings, state, log=log)
    write_table(smk.output.table, table, provenance=record)
    log.info("cross-video generalization:\n%s", table.to_string(index=False))
    return table
