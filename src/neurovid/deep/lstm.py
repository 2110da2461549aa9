"""LSTM encoding model: a sequence model over a run's aligned PCA features -> responses.

The SlowFast fMRI study's "bonus" encoder, run as an estimator of
:func:`neurovid.encoding.encode_subject` (``estimator: lstm``), so it gets the
same outer CV (leave-one-run-out / leave-one-repeat-group-out), the same
per-fold feature z-scoring + PCA, the same scores and output files as ridge.

Per outer fold (:func:`fit_lstm`):

* **Inputs**: the fold's PCA scores of each run (no FIR delays by default: the
  recurrence learns the response lag; ``fir_delays: true`` feeds the delayed
  design ridge sees), z-scored on the training rows.
* **Targets**: MSE on targets z-scored on the training rows (predictions are
  mapped back), or Poisson on non-negative responses (spike counts) through a
  softplus rate. ``loss: auto`` picks Poisson for ``spikes`` when every
  training response is >= 0 (not z-scored), MSE otherwise, and logs why.
* **Model**: ``nn.LSTM`` (``hidden_size``, ``num_layers``, dropout between
  layers) -> dropout -> linear readout per target.
* **Training**: :func:`neurovid.deep.training.train_model` (AdamW, early
  stopping, fixed seed, checkpoints and ``metrics.csv`` per epoch, resume after
  an interruption). Batches are windows of ``window`` samples cut from the
  training runs at a random offset each epoch; the first ``burn_in`` samples of a
  window only warm up the state and are not scored. The validation loss (early
  stopping) is computed over whole inner-validation runs: the inner repeat
  group with the fewest samples (ties: the last), so the remaining runs train;
  with a single training group, the last quarter of each training run.
* **Prediction**: each held-out run is predicted in one pass from a zero state,
  exactly as validation is scored.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurovid.deep.training import (
    TrainResult,
    TrainSettings,
    check_poisson_targets,
    model_device,
    negative_share,
    plot_loss_curve,
    poisson_loss,
    train_model,
)
from neurovid.encoding import score_predictions
from neurovid.errors import InputError
from neurovid.io import PathLike

LOSSES = ("auto", "mse", "poisson")
LOSS_CURVE = "loss_curve.png"
#: Share of each training run kept for validation when no inner repeat group is left.
TAIL_VALIDATION = 0.25


@dataclass(frozen=True)
class LSTMConfig:
    """One ``estimator: lstm`` model block, in samples (see :meth:`from_model`)."""

    hidden_size: int = 64
    num_layers: int = 1
    dropout: float = 0.0
    window: int = 200  # samples per training window
    burn_in: int = 20  # first samples of a window that only warm up the state
    batch_size: int = 16  # windows per batch
    loss: str = "auto"  # auto | mse | poisson
    fir_delays: bool = False  # feed the FIR-delayed design (as ridge) instead of the PCA scores
    modality: str = ""  # of the responses (``loss: auto``)
    train: TrainSettings = field(default_factory=TrainSettings)

    @classmethod
    def from_model(
        cls,
        model: Mapping[str, Any],
        *,
        sampling_rate: float,
        modality: str,
        seed: int,
        field_prefix: str = "encoding.models",
    ) -> LSTMConfig:
        """Build from a model's config block; ``window_s`` / ``burn_in_s`` in seconds."""
        window = max(2, round(float(model.get("window_s", 20.0)) * sampling_rate))
        burn_in = round(float(model.get("burn_in_s", 2.0)) * sampling_rate)
        if not 0 <= burn_in < window:
            raise InputError(
                None,
                f"burn_in_s ({model.get('burn_in_s')}) must be shorter than window_s ({model.get('window_s')}).",
                "lower burn_in_s or raise window_s.",
                field=f"{field_prefix}.burn_in_s",
            )
        loss = str(model.get("loss", "auto"))
        if loss not in LOSSES:
            raise InputError(
                None,
                f"loss {loss!r} is unknown.",
                f"use one of {', '.join(LOSSES)}.",
                field=f"{field_prefix}.loss",
            )
        return cls(
            hidden_size=int(model.get("hidden_size", 64)),
            num_layers=int(model.get("num_layers", 1)),
            dropout=float(model.get("dropout", 0.0)),
            window=window,
            burn_in=burn_in,
            batch_size=int(model.get("batch_size", 16)),
            loss=loss,
            fir_delays=bool(model.get("fir_delays", False)),
            modality=modality,
            train=TrainSettings(
                max_epochs=int(model.get("max_epochs", 50)),
                patience=int(model.get("patience", 5)),
                lr=float(model.get("lr", 1e-3)),
                weight_decay=float(model.get("weight_decay", 0.0)),
                seed=int(seed),
                device=str(model.get("device", "auto")),
            ),
        )


class LSTMEncoder(torch.nn.Module):
    """``[B, T, D]`` features -> ``[B, T, N]`` responses (a softplus rate for Poisson)."""

    def __init__(
        self, n_inputs: int, n_targets: int, hidden_size: int, num_layers: int, dropout: float
    ):
        super().__init__()
        self.lstm = torch.nn.LSTM(
            n_inputs,
            hidden_size,
            num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = torch.nn.Dropout(dropout)
        self.readout = torch.nn.Linear(hidden_size, n_targets)
        self.rate = False  # True: softplus output (Poisson loss)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.lstm(x)
        out = self.readout(self.dropout(hidden))
        return torch.nn.functional.softplus(out) if self.rate else out


def choose_loss(config: LSTMConfig, Y_train: np.ndarray, log: logging.Logger) -> str:
    """``mse`` or ``poisson`` (see the module docstring); Poisson needs non-negative responses."""
    if config.loss == "poisson":
        check_poisson_targets(
            [Y_train],
            source=None,
            field="encoding.models.<model>.loss",
            fix="set neural.zscore_runs to false for spike counts, or use loss: mse (or auto, which picks mse here).",
        )
    negative = negative_share([Y_train]) > 0
    if config.loss != "auto":
        return config.loss
    if config.modality == "spikes" and not negative:
        log.info("loss auto: poisson (spike responses, all >= 0)")
        return "poisson"
    why = "responses have negative values" if negative else f"modality {config.modality!r}"
    log.info("loss auto: mse (%s)", why)
    return "mse"


@dataclass
class LSTMFit:
    """A trained fold model with the scalings it was trained with; predicts a whole run."""

    model: LSTMEncoder
    x_mean: np.ndarray
    x_scale: np.ndarray
    y_mean: np.ndarray  # 0 for Poisson
    y_scale: np.ndarray  # 1 for Poisson
    loss: str
    training: TrainResult
    alpha: np.ndarray  # NaN per target: no regularisation strength is chosen

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Responses [T, N] float32 of one run's design [T, D], in one pass from a zero state."""
        self.model.eval()
        x = torch.from_numpy(((np.asarray(X) - self.x_mean) / self.x_scale).astype(np.float32))
        with torch.no_grad():
            out = self.model(x[None].to(model_device(self.model)))[0].float().cpu().numpy()
        return (out * self.y_scale + self.y_mean).astype(np.float32)

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Parameters and scalings as named float32 arrays (``weights.h5`` of an LSTM model)."""
        arrays = {
            f"lstm.{name}": t.detach().float().cpu().numpy()
            for name, t in self.model.state_dict().items()
        }
        arrays.update(
            {
                "input_mean": self.x_mean.astype(np.float32),
                "input_scale": self.x_scale.astype(np.float32),
                "output_mean": self.y_mean.astype(np.float32),
                "output_scale": self.y_scale.astype(np.float32),
            }
        )
        return arrays


def _scaling(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = rows.mean(axis=0)
    scale = rows.std(axis=0)
    scale[~(scale > 0)] = 1.0
    return mean, scale


def training_rows(lengths: Sequence[int], groups: Sequence[Sequence[int]]) -> list[slice]:
    """Per run, the rows that train (the others validate early stopping) in one fold's training set.

    ``lengths`` are the runs' sample counts, ``groups`` the inner repeat groups (run
    indices). The group with the fewest samples validates (ties: the last): its runs
    train on no row. With one group, the last :data:`TAIL_VALIDATION` of every run
    validates. The feature model (z-scoring, PCA) is fit on these rows only
    (:func:`neurovid.encoding.encode_subject`), so early stopping never sees data that
    shaped its inputs.
    """
    if len(groups) >= 2:
        sizes = [sum(lengths[i] for i in g) for g in groups]
        pick = max(range(len(groups)), key=lambda g: (-sizes[g], g))
        val = set(groups[pick])
        return [slice(0, 0) if i in val else slice(0, n) for i, n in enumerate(lengths)]
    cuts = [n - max(1, int(round(n * TAIL_VALIDATION))) for n in lengths]
    if min(cuts) < 2:
        raise InputError(
            None,
            f"a training run of {lengths[cuts.index(min(cuts))]} samples is too short to hold out a validation tail.",
            "record longer runs or more runs.",
        )
    return [slice(0, cut) for cut in cuts]


def validation_split(
    designs: Sequence[np.ndarray],
    Y: Sequence[np.ndarray],
    groups: Sequence[Sequence[int]],
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """(train X, train Y, validation X, validation Y) runs of one fold's training set.

    The split is :func:`training_rows`: a whole repeat group validates, or the tail
    of every run when there is one group.
    """
    rows = training_rows([len(y) for y in Y], groups)
    train = [i for i, r in enumerate(rows) if r.stop > 0]
    val = [i for i, r in enumerate(rows) if r.stop < len(Y[i])]
    return (
        [designs[i][rows[i]] for i in train],
        [Y[i][rows[i]] for i in train],
        [designs[i][rows[i].stop :] for i in val],
        [Y[i][rows[i].stop :] for i in val],
    )


def window_starts(length: int, window: int, step: int, offset: int) -> list[int]:
    """Start samples of the windows cut from a run: every ``step`` from ``offset``.

    A run shorter than ``window`` gives one window (the whole run).
    """
    if length <= window:
        return [0]
    starts = list(range(offset % step, length - window + 1, step))
    return starts or [0]


def data_digest(*arrays: Sequence[np.ndarray]) -> str:
    """Digest of the training data (resuming needs the same data)."""
    h = hashlib.sha256()
    for group in arrays:
        for array in group:
            a = np.ascontiguousarray(array, dtype=np.float32)
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
    return "sha256:" + h.hexdigest()


def fit_lstm(
    train_X: Sequence[np.ndarray],
    train_Y: Sequence[np.ndarray],
    val_X: Sequence[np.ndarray],
    val_Y: Sequence[np.ndarray],
    config: LSTMConfig,
    out_dir: PathLike,
    *,
    log: logging.Logger | None = None,
    title: str = "",
) -> LSTMFit:
    """Train an :class:`LSTMEncoder` on runs ``train_X`` [T_r, D] -> ``train_Y`` [T_r, N].

    Early stopping on ``val_*``; checkpoints, ``metrics.csv`` and the loss curve
    (:data:`LOSS_CURVE`) go to ``out_dir``. Resumes from ``out_dir/last.pt``.
    """
    log = log or logging.getLogger(__name__)
    X_rows = np.concatenate(train_X).astype(np.float64)
    Y_rows = np.concatenate(train_Y).astype(np.float64)
    loss_name = choose_loss(config, Y_rows, log)
    x_mean, x_scale = _scaling(X_rows)
    n_targets = Y_rows.shape[1]
    if loss_name == "mse":
        y_mean, y_scale = _scaling(Y_rows)
    else:
        y_mean, y_scale = np.zeros(n_targets), np.ones(n_targets)

    def tensors(Xs: Sequence[np.ndarray], Ys: Sequence[np.ndarray]) -> list[tuple[Any, Any]]:
        return [
            (
                torch.from_numpy(((X - x_mean) / x_scale).astype(np.float32)),
                torch.from_numpy(((Y - y_mean) / y_scale).astype(np.float32)),
            )
            for X, Y in zip(Xs, Ys, strict=True)
        ]

    train_runs, val_runs = tensors(train_X, train_Y), tensors(val_X, val_Y)
    torch.manual_seed(config.train.seed)  # the initial weights
    model = LSTMEncoder(
        X_rows.shape[1], n_targets, config.hidden_size, config.num_layers, config.dropout
    )
    model.rate = loss_name == "poisson"
    criterion = poisson_loss if loss_name == "poisson" else torch.nn.MSELoss()
    step = max(1, config.window - config.burn_in)

    def batches(epoch: int, gen: torch.Generator):
        offset = int(torch.randint(0, step, (1,), generator=gen))
        windows = []
        for x, y in train_runs:
            w = min(config.window, len(y))
            windows += [
                (x[s : s + w], y[s : s + w]) for s in window_starts(len(y), w, step, offset)
            ]
        order = torch.randperm(len(windows), generator=gen).tolist()
        for b in range(0, len(order), config.batch_size):
            chosen = [windows[i] for i in order[b : b + config.batch_size]]
            length = min(len(x) for x, _ in chosen)  # runs shorter than a window
            yield (
                torch.stack([x[:length] for x, _ in chosen]),
                torch.stack([y[:length] for _, y in chosen]),
            )

    burn_in = config.burn_in

    def step_loss(net: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        skip = burn_in if x.shape[1] > burn_in else 0
        return criterion(net(x)[:, skip:].float(), y[:, skip:])

    def val_loss(net: torch.nn.Module) -> float:
        device = model_device(net)
        total, count = 0.0, 0
        for x, y in val_runs:
            out = net(x[None].to(device))[0].float()
            total += float(criterion(out, y.to(device))) * len(y)
            count += len(y)
        return total / count

    def val_r(net: torch.nn.Module) -> dict[str, float]:
        device = model_device(net)
        pred = torch.cat([net(x[None].to(device))[0].float().cpu() for x, _ in val_runs]).numpy()
        true = torch.cat([y for _, y in val_runs]).numpy()
        r, _ = score_predictions(true, pred)
        finite = r[np.isfinite(r)]
        return {"val_mean_r": float(finite.mean()) if finite.size else float("nan")}

    out = Path(out_dir)
    fingerprint = {
        "model": {k: v for k, v in asdict(config).items() if k != "train"},
        "loss": loss_name,
        "data": data_digest(train_X, train_Y, val_X, val_Y),
    }
    result = train_model(
        model,
        step_loss,
        batches,
        val_loss,
        config.train,
        out,
        log=log,
        extra_metrics=val_r,
        fingerprint=fingerprint,
    )
    log.info(
        "%s: best epoch %d of %d (val loss %.5g, val mean r %.4f)%s",
        title or out.name,
        result.best_epoch,
        result.epochs_run,
        result.best_val_loss,
        float(result.history.loc[result.best_epoch - 1, "val_mean_r"]),
        ", stopped early" if result.stopped_early else "",
    )
    plot_loss_curve(
        out / "metrics.csv",
        out / LOSS_CURVE,
        {"step": "fit_lstm", "params": {**fingerprint["model"], "loss": loss_name}},
        title=title,
    )
    model.cpu()
    return LSTMFit(
        model=model,
        x_mean=x_mean,
        x_scale=x_scale,
        y_mean=y_mean,
        y_scale=y_scale,
        loss=loss_name,
        training=result,
        alpha=np.full(n_targets, np.nan),
    )


WEIGHTS_LAYOUT = (
    "LSTM encoder: Z = ((X - feature_mean) / feature_scale) @ pca_components.T "
    "(add_delays(Z, delays_samples) when fir_delays); x = (Z - input_mean) / input_scale; "
    "h = LSTM(x) with the lstm.* parameters (torch.nn.LSTM names, batch_first); "
    "y = readout(h) (softplus for loss poisson) * output_scale + output_mean. "
    "The checkpoint training/final/best.pt loads into neurovid.deep.lstm.LSTMEncoder."
)


@dataclass(frozen=True)
class LSTMTrainer:
    """The ``trainer`` :func:`neurovid.encoding.encode_subject` calls per fold (and refit)."""

    config: LSTMConfig
    weights_layout: str = WEIGHTS_LAYOUT

    @property
    def fir_delays(self) -> bool:
        return self.config.fir_delays

    def training_rows(
        self, lengths: Sequence[int], inner_groups: Sequence[Sequence[int]]
    ) -> list[slice]:
        """Rows of each run that train (not validate): :func:`training_rows`."""
        return training_rows(lengths, inner_groups)

    def fit(
        self,
        designs: Sequence[np.ndarray],
        Y_runs: Sequence[np.ndarray],
        inner_groups: Sequence[Sequence[int]],
        out_dir: PathLike,
        title: str,
        log: logging.Logger,
    ) -> LSTMFit:
        """Train on the runs (validation: :func:`validation_split` of ``inner_groups``)."""
        tx, ty, vx, vy = validation_split(designs, Y_runs, inner_groups)
        return fit_lstm(tx, ty, vx, vy, self.config, out_dir, log=log, title=title)
