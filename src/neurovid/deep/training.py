"""The training engine shared by neurovid's trained encoders.

:func:`train_model` runs AdamW epochs over batches the caller yields, keeps the
best weights by validation loss, stops early after ``patience`` epochs without
an improvement, and writes into ``out_dir`` after every epoch:

``metrics.csv``
    one row per epoch: ``epoch`` (1-based), ``train_loss`` (mean over the
    epoch's batches), ``val_loss``, ``best_val_loss`` (so far), ``lr``,
    ``seconds`` (wall time of the epoch - the only column that differs between
    two runs with the same seed), then the caller's ``extra_metrics`` columns.
``last.pt``
    the full state after the epoch: model ``state_dict`` (all parameters and
    buffers, frozen ones too - simple and safe, at the cost of disk for large
    frozen backbones), optimizer state, epoch, the Python / NumPy / torch RNG
    states, the early-stopping state, the metrics rows, the settings and their
    fingerprint.
``best.pt``
    model ``state_dict`` of the best epoch so far, with its epoch and loss.
``summary.json``
    written when training ends: settings, fingerprint, best epoch, epochs run,
    whether it stopped early and what it resumed from, plus the caller's
    provenance.

Every file is replaced atomically, so an interruption at any moment leaves the
previous epoch's consistent state. Calling :func:`train_model` again with the
same settings resumes after the epoch in ``last.pt`` and finishes with the same
weights and metrics as an uninterrupted run: batches are drawn from a
generator seeded from ``(seed, epoch)`` and the global RNG states are restored,
so nothing depends on where the run was cut. ``max_epochs`` and ``device`` are
not part of the fingerprint (a finished run can be extended by raising
``max_epochs``; resuming on another device is allowed but is not bit-identical).
A checkpoint written with different settings, model parameters or caller
fingerprint raises :class:`~neurovid.errors.InputError`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from neurovid.errors import InputError
from neurovid.io import PathLike, atomic_path, to_json, write_json
from neurovid.io import provenance as make_provenance
from neurovid.models import resolve_device

LAST = "last.pt"
BEST = "best.pt"
METRICS = "metrics.csv"
SUMMARY = "summary.json"
BASE_COLUMNS = ("epoch", "train_loss", "val_loss", "best_val_loss", "lr", "seconds")
# Settings that may change between an interrupted run and its resumption.
NOT_FINGERPRINTED = ("max_epochs", "device")


@dataclass(frozen=True)
class TrainSettings:
    """How a model is trained; one config block per model maps onto these fields."""

    max_epochs: int = 50
    patience: int = 5  # epochs without a val improvement > min_delta before stopping
    min_delta: float = 0.0
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0  # max global gradient norm; None = no clipping
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # bf16 (else fp16) autocast on CUDA; ignored on CPU (always fp32)

    def __post_init__(self) -> None:
        problems = []
        if self.max_epochs < 1:
            problems.append(f"max_epochs must be >= 1, got {self.max_epochs}")
        if self.patience < 1:
            problems.append(f"patience must be >= 1, got {self.patience}")
        if self.lr <= 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            problems.append(f"grad_clip must be > 0 or null, got {self.grad_clip}")
        if self.device not in ("auto", "cpu", "cuda"):
            problems.append(f"device must be auto, cpu or cuda, got {self.device!r}")
        if problems:
            raise InputError(None, "; ".join(problems) + ".", "fix the model's training settings.")


@dataclass
class TrainResult:
    """What :func:`train_model` did; ``history`` holds the ``metrics.csv`` rows."""

    best_epoch: int
    epochs_run: int
    best_val_loss: float
    stopped_early: bool
    resumed_from: int | None  # epoch of the checkpoint resumed from, None for a fresh run
    history: pd.DataFrame


def poisson_loss(rate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean Poisson negative log-likelihood of ``target`` given ``rate`` (> 0, not log).

    ``rate - target * log(rate + 1e-8)``, without the target-only log-factorial
    term. Every trained model's Poisson loss (LSTM, Sensorium ViViT, retina CNN);
    it is only meaningful for non-negative targets: :func:`check_poisson_targets`.
    """
    return torch.nn.functional.poisson_nll_loss(
        rate.float(), target.float(), log_input=False, full=False, eps=1e-8
    )


def negative_share(targets: Iterable[np.ndarray]) -> float:
    """Share of the finite values below zero over all ``targets`` arrays (0 for none)."""
    negative = total = 0
    for values in targets:
        finite = np.asarray(values)[np.isfinite(values)]
        negative += int((finite < 0).sum())
        total += finite.size
    return negative / total if total else 0.0


def check_poisson_targets(
    targets: Iterable[np.ndarray], *, source: PathLike | None, field: str, fix: str
) -> None:
    """Stop before a Poisson loss is fit to negative responses (dF/F, z-scored values).

    A Poisson likelihood is defined for counts or rates, never below zero; fit to
    negative targets it rewards predicting 0 and its scores mean nothing.

    Raises:
        InputError: naming ``source``, the loss setting ``field`` and the ``fix``.
    """
    share = negative_share(targets)
    if share > 0:
        raise InputError(
            source,
            f"the loss is poisson but {share:.1%} of the training responses are negative (dF/F or z-scored?): a Poisson likelihood needs counts or non-negative rates.",
            fix,
            field=field,
        )


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) and ask for deterministic kernels.

    On CUDA, cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` before its first use to be
    deterministic; it is set here unless the user set it. Kernels without a
    deterministic version warn instead of failing (``warn_only``).
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def move_to(batch: Any, device: torch.device) -> Any:
    """``batch`` (a tensor, or dicts / lists / tuples of them) on ``device``; others unchanged."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=device.type == "cuda")
    if isinstance(batch, Mapping):
        return {key: move_to(value, device) for key, value in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(move_to(value, device) for value in batch)
    return batch


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a parameterless module)."""
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator that shuffles epoch ``epoch``: a function of (seed, epoch) only."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def settings_fingerprint(
    settings: TrainSettings, model: torch.nn.Module, extra: Mapping[str, Any] | None = None
) -> str:
    """Hash of what must not change when resuming: settings, parameter shapes, caller's extra."""
    fields = {k: v for k, v in asdict(settings).items() if k not in NOT_FINGERPRINTED}
    shapes = {name: list(tensor.shape) for name, tensor in model.state_dict().items()}
    trainable = sorted(name for name, p in model.named_parameters() if p.requires_grad)
    payload = to_json(
        {"settings": fields, "state": shapes, "trainable": trainable, "extra": dict(extra or {})}
    )
    return "sha256:" + hashlib.sha256(payload.encode()).hexdigest()


def _autocast(device: torch.device, amp: bool) -> Any:
    if device.type == "cuda" and amp:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (
            np_state[0],
            torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            *np_state[2:],
        ),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_torch(obj: Any, path: PathLike) -> None:
    """``torch.save`` atomically, with the same bytes for the same object.

    Saved through a file object: given a path, torch names the zip's inner folder
    after the file, which here is a random temporary name.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(obj, handle)


def _save(obj: Any, path: Path) -> None:
    save_torch(obj, path)


def _load(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file
        raise InputError(
            path,
            f"cannot read this checkpoint ({type(err).__name__}: {err}).",
            f"delete {path.parent} to train from scratch.",
        ) from err


def _write_metrics(path: Path, rows: list[dict[str, Any]]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)  # full precision: the CSV reads back to the same floats
    return table


def train_model(
    model: torch.nn.Module,
    train_step_loss: Callable[[torch.nn.Module, Any], torch.Tensor],
    train_batches: Callable[[int, torch.Generator], Iterable[Any]],
    val_loss: Callable[[torch.nn.Module], float],
    settings: TrainSettings,
    out_dir: PathLike,
    *,
    params: Iterable[torch.nn.Parameter] | None = None,
    log: logging.Logger | None = None,
    extra_metrics: Callable[[torch.nn.Module], dict[str, float]] | None = None,
    fingerprint: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train ``model`` with AdamW and early stopping; checkpoint and resume in ``out_dir``.

    ``train_batches(epoch, generator)`` yields the batches of 1-based ``epoch``,
    shuffled with ``generator`` only (never the global RNG), and
    ``train_step_loss(model, batch)`` returns the scalar loss of one batch; batches
    are moved to the model's device by :func:`move_to` first. ``val_loss(model)``
    is called in eval mode under ``torch.no_grad`` (and autocast on CUDA), as is
    ``extra_metrics``, whose values become more ``metrics.csv`` columns.
    ``params`` are the optimised parameters (default: those requiring grad).
    ``fingerprint`` adds caller facts (data, model config) that must match to
    resume; ``provenance`` goes into ``summary.json``. The model is moved to the
    settings' device and the best epoch's weights are loaded into it on return.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = log or logging.getLogger("neurovid.deep.training")
    device = resolve_device(settings.device)
    seed_everything(settings.seed)
    model.to(device)
    trainable = list(params) if params is not None else None
    if trainable is None:
        trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("train_model: the model has no trainable parameters.")
    optimizer = torch.optim.AdamW(trainable, lr=settings.lr, weight_decay=settings.weight_decay)
    stamp = settings_fingerprint(settings, model, fingerprint)

    rows: list[dict[str, Any]] = []
    best_val, best_epoch, bad_epochs, stopped_early = math.inf, 0, 0, False
    start, resumed_from = 1, None
    if (out / LAST).exists():
        checkpoint = _load(out / LAST)
        if checkpoint.get("fingerprint") != stamp:
            raise InputError(
                out / LAST,
                "this checkpoint was written with other training settings, model shapes or "
                f"data (fingerprint {checkpoint.get('fingerprint')} != {stamp}; saved settings: "
                f"{checkpoint.get('settings')}).",
                f"delete {out} to train from scratch, or restore the settings it was trained with.",
            )
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        _set_rng_state(checkpoint["rng"])
        rows = list(checkpoint["history"])
        stopping = checkpoint["early_stopping"]
        best_val, best_epoch = stopping["best_val_loss"], stopping["best_epoch"]
        bad_epochs, stopped_early = stopping["bad_epochs"], stopping["stopped_early"]
        resumed_from = int(checkpoint["epoch"])
        start = resumed_from + 1
        log.info(
            "resuming from %s after epoch %d (best epoch %d, val loss %.6g)",
            out / LAST,
            resumed_from,
            best_epoch,
            best_val,
        )
        _write_metrics(out / METRICS, rows)  # drop rows written after that checkpoint
    else:
        log.info(
            "training on %s: %d trainable tensors (%d values), settings %s",
            device,
            len(trainable),
            sum(p.numel() for p in trainable),
            asdict(settings),
        )

    last_epoch = settings.max_epochs if not stopped_early else 0  # a stopped run stays stopped
    for epoch in range(start, last_epoch + 1):
        began = time.perf_counter()
        model.train()
        total, batches = 0.0, 0
        for batch in train_batches(epoch, epoch_generator(settings.seed, epoch)):
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device, settings.amp):
                loss = train_step_loss(model, move_to(batch, device))
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"training loss is {loss.item()} at epoch {epoch}, batch {batches + 1}; "
                    f"lower the learning rate (now {settings.lr}) or check the inputs for NaN."
                )
            loss.backward()
            if settings.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(trainable, settings.grad_clip)
            optimizer.step()
            total += float(loss.detach())
            batches += 1
        if batches == 0:
            raise ValueError(f"train_batches yielded no batch for epoch {epoch}.")
        model.eval()
        with torch.no_grad(), _autocast(device, settings.amp):
            val = float(val_loss(model))
            extra = dict(extra_metrics(model)) if extra_metrics else {}
        if not math.isfinite(val):
            raise FloatingPointError(
                f"validation loss is {val} at epoch {epoch}; lower the learning rate "
                f"(now {settings.lr}) or check the validation data."
            )
        improved = val < best_val - settings.min_delta
        if improved:
            best_val, best_epoch, bad_epochs = val, epoch, 0
            _save({"model": model.state_dict(), "epoch": epoch, "val_loss": val}, out / BEST)
        else:
            bad_epochs += 1
            stopped_early = bad_epochs >= settings.patience
        rows.append(
            {
                "epoch": epoch,
                "train_loss": total / batches,
                "val_loss": val,
                "best_val_loss": best_val,
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - began,
                **{key: float(value) for key, value in extra.items()},
            }
        )
        _write_metrics(out / METRICS, rows)
        _save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "rng": _rng_state(),
                "early_stopping": {
                    "best_val_loss": best_val,
                    "best_epoch": best_epoch,
                    "bad_epochs": bad_epochs,
                    "stopped_early": stopped_early,
                },
                "history": rows,
                "settings": asdict(settings),
                "fingerprint": stamp,
            },
            out / LAST,
        )
        log.info(
            "epoch %d/%d: train %.6g val %.6g best %.6g (epoch %d)%s %.1fs",
            epoch,
            settings.max_epochs,
            rows[-1]["train_loss"],
            val,
            best_val,
            best_epoch,
            " *" if improved else "",
            rows[-1]["seconds"],
        )
        if stopped_early:
            log.info("early stop: no improvement for %d epochs", settings.patience)
            break

    if best_epoch == 0:
        raise ValueError(f"no epoch was trained in {out} (max_epochs {settings.max_epochs}).")
    model.load_state_dict(_load(out / BEST)["model"])
    result = TrainResult(
        best_epoch=best_epoch,
        epochs_run=len(rows),
        best_val_loss=best_val,
        stopped_early=stopped_early,
        resumed_from=resumed_from,
        history=pd.DataFrame(rows),
    )
    write_json(
        out / SUMMARY,
        {
            "best_epoch": best_epoch,
            "best_val_loss": best_val,
            "epochs_run": result.epochs_run,
            "stopped_early": stopped_early,
            "resumed_from": resumed_from,
            "device": str(device),
            "fingerprint": stamp,
            "provenance": dict(
                provenance or make_provenance("train_model", asdict(settings), packages=("torch",))
            ),
        },
    )
    return result


def plot_loss_curve(
    metrics_csv: PathLike, png: PathLike, provenance: Mapping[str, Any], title: str = ""
) -> None:
    """Train and validation loss per epoch, best epoch marked, as a PNG.

    The plotted values are added to the PNG's provenance (``plotted``: epochs,
    train and val loss, best epoch), so the figure can be checked without pixels.
    """
    from neurovid.plots import plt, save_figure

    table = pd.read_csv(metrics_csv)
    missing = [c for c in ("epoch", "train_loss", "val_loss") if c not in table.columns]
    if missing or table.empty:
        raise InputError(
            metrics_csv,
            f"not a training metrics table (missing columns {missing} or no rows).",
            "point to the metrics.csv that train_model wrote.",
        )
    best = int(table.loc[table["val_loss"].idxmin(), "epoch"])
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(table["epoch"], table["train_loss"], marker="o", ms=3, label="train")
    ax.plot(table["epoch"], table["val_loss"], marker="o", ms=3, label="validation")
    ax.axvline(best, color="0.5", ls="--", lw=1, label=f"best (epoch {best})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)
    plotted = {
        "epoch": table["epoch"].astype(int).tolist(),
        "train_loss": table["train_loss"].astype(float).tolist(),
        "val_loss": table["val_loss"].astype(float).tolist(),
        "best_epoch": best,
    }
    save_figure(fig, png, {**dict(provenance), "plotted": plotted})
