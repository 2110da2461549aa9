"""Sensorium-style mouse V1 encoder: ViViT + (q)LoRA, a 1-D conv reducer, per-mouse readouts.

Architecture (:class:`SensoriumViViT`), for a window of ``num_frames`` frames:

1. Frames (grayscale, 0..255) are padded to a square with mid-grey, resized to
   the backbone's ``image_size``, copied to 3 channels and normalized as the
   backbone's image processor does (``preprocessor_config.json`` when the model
   directory has one, else ViViT's defaults).
2. ViViT (``transformers.VivitModel``) with LoRA adapters (peft) on the
   attention projections ``q_proj/k_proj/v_proj/o_proj``; its base weights are
   frozen. ``quantize: auto`` loads them in 4-bit NF4 through bitsandbytes when
   CUDA is available (qLoRA) and in fp32 otherwise (plain LoRA, logged);
   ``4bit`` forces quantization (bitsandbytes' CPU path works for layers of
   >= 64 inputs), ``none`` never quantizes.
3. Reducer: the tubelet tokens [T', P, D] (CLS dropped) go through a pointwise
   projection D -> ``token_channels``, are flattened over the P spatial
   patches, a temporal ``Conv1d`` (kernel ``reducer_kernel``) maps them to
   ``hidden`` channels, and a ``ConvTranspose1d`` with the tubelet's temporal
   stride turns the T' token steps back into one vector per frame.
4. The behavior channels (pupil dilation, running speed, pupil centre x/y,
   z-scored with the mouse's training statistics) are concatenated per frame.
5. One readout head per mouse (``nn.ModuleDict`` keyed by mouse id): a linear
   map to the mouse's neurons and ``softplus`` (or ``elu1`` = ELU + 1), giving
   rates in units of each neuron's training standard deviation. The Poisson
   loss is taken in those units; :func:`predict_trial` scales back.

Heads are self-contained (their behavior and response statistics are buffers),
so one can be saved, loaded into another model or swapped without touching the
backbone (:func:`save_readout`, :func:`load_readout`).

Training (:func:`fit_sensorium`) runs :func:`neurovid.deep.training.train_model`:
random windows of training trials, batches of one mouse each, validation by
the Poisson loss of whole held-out trials (sliding windows, overlapping
predictions averaged) with their single-trial correlation as an extra column,
then the challenge's metrics on the test tiers per neuron.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from neurovid.deep import metrics
from neurovid.deep.sensorium import BEHAVIOR_CHANNELS, MouseData, Trial, split_validation
from neurovid.deep.training import check_poisson_targets, poisson_loss, save_torch
from neurovid.errors import InputError
from neurovid.io import PathLike, atomic_path
from neurovid.scoring import repeat_groups

log = logging.getLogger(__name__)

FIELD = "deep.sensorium"
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
OUTPUTS = ("softplus", "elu1")
QUANTIZE = ("auto", "4bit", "none")
#: Grey level used to pad frames to a square (middle of 0..255).
PAD_VALUE = 127.5


@dataclass(frozen=True)
class ModelSettings:
    """The architecture; one ``deep.sensorium`` config block maps onto these fields."""

    backbone: str = "google/vivit-b-16x2-kinetics400"
    quantize: str = "auto"  # auto | 4bit | none
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = LORA_TARGETS
    token_channels: int = 8
    hidden: int = 128
    reducer_kernel: int = 3
    output: str = "softplus"

    def __post_init__(self) -> None:
        problems = []
        if self.quantize not in QUANTIZE:
            problems.append(f"quantize must be one of {QUANTIZE}, got {self.quantize!r}")
        if self.output not in OUTPUTS:
            problems.append(f"output must be one of {OUTPUTS}, got {self.output!r}")
        for name in ("lora_rank", "token_channels", "hidden", "reducer_kernel"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.reducer_kernel % 2 == 0:
            problems.append(f"reducer_kernel must be odd, got {self.reducer_kernel}")
        if problems:
            raise InputError(None, "; ".join(problems) + ".", "fix the settings.", field=FIELD)


@dataclass(frozen=True)
class DataSettings:
    """How trials become batches and scores."""

    batch_size: int = 8
    windows_per_trial: int = 1  # random training windows drawn per trial and epoch
    eval_stride: int = 16  # frames between sliding evaluation windows
    val_fraction: float = 0.1
    train_tiers: tuple[str, ...] = ("train",)
    test_tiers: tuple[str, ...] = ("oracle",)
    skip_frames: int = metrics.SKIP_FRAMES


# ------------------------------------------------------------------------ model


class ReadoutHead(nn.Module):
    """A mouse's readout: behavior z-scoring, linear map to its neurons, positive output."""

    def __init__(self, in_features: int, n_neurons: int, output: str = "softplus") -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.output = output
        self.linear = nn.Linear(in_features, n_neurons)
        n_behavior = len(BEHAVIOR_CHANNELS)
        self.register_buffer("behavior_mean", torch.zeros(n_behavior))
        self.register_buffer("behavior_std", torch.ones(n_behavior))
        self.register_buffer("response_scale", torch.ones(n_neurons))

    @property
    def n_neurons(self) -> int:
        return self.linear.out_features

    def set_statistics(
        self, behavior_mean: np.ndarray, behavior_std: np.ndarray, response_scale: np.ndarray
    ) -> None:
        """Training-data statistics: behavior mean/std, per-neuron response std."""
        for name, values in (
            ("behavior_mean", behavior_mean),
            ("behavior_std", behavior_std),
            ("response_scale", response_scale),
        ):
            getattr(self, name).copy_(torch.as_tensor(np.asarray(values), dtype=torch.float32))

    def forward(self, features: torch.Tensor, behavior: torch.Tensor) -> torch.Tensor:
        """[B, F, hidden] + raw behavior [B, F, 4] -> rates [B, F, N] (response-std units)."""
        behavior = (behavior.float() - self.behavior_mean) / self.behavior_std
        x = self.linear(torch.cat([features.float(), behavior], dim=-1))
        if self.output == "softplus":
            return nn.functional.softplus(x)
        return nn.functional.elu(x) + 1.0


class SensoriumViViT(nn.Module):
    """ViViT (LoRA) backbone + 1-D conv reducer + per-mouse readout heads (module docstring)."""

    def __init__(
        self,
        backbone: nn.Module,
        backbone_config: Any,
        settings: ModelSettings,
        mice: Mapping[str, int],
        pixel_norm: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.backbone = backbone
        self.quantized = False  # set by build_model when the base weights are 4-bit
        self.num_frames = int(backbone_config.num_frames)
        self.image_size = int(backbone_config.image_size)
        tubelet = [int(x) for x in backbone_config.tubelet_size]
        self.tubelet_frames = tubelet[0]
        if self.num_frames % self.tubelet_frames:
            raise InputError(
                None,
                f"backbone num_frames={self.num_frames} is not a multiple of its tubelet's {self.tubelet_frames} frames.",
                "use a ViViT config whose num_frames divides into tubelets.",
                field=f"{FIELD}.backbone",
            )
        self.patches = (self.image_size // tubelet[1]) * (self.image_size // tubelet[2])
        width = int(backbone_config.hidden_size)
        norm = {"rescale": 1 / 127.5, "offset": 1.0, "mean": (0.5,) * 3, "std": (0.5,) * 3}
        norm.update(pixel_norm or {})
        self.pixel_norm = {k: (list(v) if isinstance(v, tuple) else v) for k, v in norm.items()}
        self.register_buffer("pixel_rescale", torch.tensor(float(norm["rescale"])))
        self.register_buffer("pixel_offset", torch.tensor(float(norm["offset"])))
        self.register_buffer("pixel_mean", torch.tensor(norm["mean"], dtype=torch.float32))
        self.register_buffer("pixel_std", torch.tensor(norm["std"], dtype=torch.float32))
        self.token_proj = nn.Linear(width, settings.token_channels)
        self.temporal = nn.Conv1d(
            self.patches * settings.token_channels,
            settings.hidden,
            settings.reducer_kernel,
            padding=settings.reducer_kernel // 2,
        )
        self.upsample = nn.ConvTranspose1d(
            settings.hidden, settings.hidden, self.tubelet_frames, stride=self.tubelet_frames
        )
        self.readouts = nn.ModuleDict(
            {
                mouse: ReadoutHead(settings.hidden + len(BEHAVIOR_CHANNELS), n, settings.output)
                for mouse, n in mice.items()
            }
        )

    def pixels(self, video: torch.Tensor) -> torch.Tensor:
        """Raw frames [B, F, H, W] (0..255) -> backbone input [B, F, 3, S, S]."""
        b, f, h, w = video.shape
        side = max(h, w)
        top, left = (side - h) // 2, (side - w) // 2
        x = nn.functional.pad(
            video.float().reshape(b * f, 1, h, w),
            (left, side - w - left, top, side - h - top),
            value=PAD_VALUE,
        )
        if side != self.image_size:
            x = nn.functional.interpolate(
                x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
            )
        x = x * self.pixel_rescale - self.pixel_offset
        x = (x.expand(-1, 3, -1, -1) - self.pixel_mean[:, None, None]) / self.pixel_std[
            :, None, None
        ]
        return x.reshape(b, f, 3, self.image_size, self.image_size)

    def frame_features(self, video: torch.Tensor) -> torch.Tensor:
        """Raw frames [B, F, H, W] -> per-frame features [B, F, hidden]."""
        if video.shape[1] != self.num_frames:
            raise ValueError(
                f"windows must have the backbone's {self.num_frames} frames, got {video.shape[1]}"
            )
        pixel_values = self.pixels(video)
        dtype = next((p.dtype for p in self.token_proj.parameters()), torch.float32)
        tokens = self.backbone(pixel_values=pixel_values).last_hidden_state[:, 1:]
        b = tokens.shape[0]
        steps = self.num_frames // self.tubelet_frames
        tokens = self.token_proj(tokens.to(dtype).reshape(b, steps, self.patches, -1))
        x = self.temporal(tokens.reshape(b, steps, -1).transpose(1, 2))
        x = self.upsample(nn.functional.gelu(x))  # [B, hidden, F]
        return x.transpose(1, 2)

    def forward(self, video: torch.Tensor, behavior: torch.Tensor, mouse: str) -> torch.Tensor:
        """Rates [B, F, N] of ``mouse``'s neurons in response-std units."""
        if mouse not in self.readouts:
            raise KeyError(f"no readout head for mouse {mouse!r}; heads: {list(self.readouts)}")
        return self.readouts[mouse](self.frame_features(video), behavior)

    def _is_base_key(self, key: str, prefix: str = "") -> bool:
        return key.startswith(prefix + "backbone.") and "lora_" not in key

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The module's state; with a 4-bit backbone, without its frozen base weights.

        bitsandbytes' packed 4-bit tensors cannot be loaded back with
        ``load_state_dict`` (only through ``from_pretrained``), and they never
        change during training, so checkpoints of a quantized model hold the
        LoRA adapters, reducer, heads and buffers only.
        """
        state = super().state_dict(*args, **kwargs)
        if self.quantized:
            prefix = kwargs.get("prefix", "")
            for key in [k for k in state if self._is_base_key(k, prefix)]:
                del state[key]
        return state

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ):  # type: ignore[override]
        """Load a state; a quantized model accepts states without its frozen base weights."""
        if not self.quantized:
            return super().load_state_dict(state_dict, strict=strict, assign=assign)
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        stray = [k for k in result.missing_keys if not self._is_base_key(k)]
        if strict and (stray or result.unexpected_keys):
            raise RuntimeError(
                f"state does not fit the quantized model: missing {stray[:5]}, "
                f"unexpected {result.unexpected_keys[:5]}"
            )
        return result

    def backbone_state(self) -> dict[str, torch.Tensor]:
        """The backbone's parameters and buffers (base and LoRA), detached copies."""
        return {k: v.detach().clone() for k, v in self.backbone.state_dict().items()}


# ---------------------------------------------------------------- construction


def resolve_quantize(quantize: str, device: torch.device) -> bool:
    """Whether to load 4-bit base weights: ``auto`` = on CUDA; logs the choice."""
    if quantize == "4bit":
        log.info("quantize: 4bit - NF4 base weights through bitsandbytes (qLoRA) on %s", device)
        return True
    if quantize == "auto" and device.type == "cuda":
        log.info("quantize: auto - CUDA available, NF4 4-bit base weights (qLoRA)")
        return True
    if quantize == "auto":
        log.info(
            "quantize: auto - running on %s (no CUDA device in use), plain LoRA on fp32 base "
            "weights (no 4-bit quantization)",
            device,
        )
    else:
        log.info("quantize: none - plain LoRA on fp32 base weights")
    return False


def _pixel_norm(model: str) -> dict[str, Any] | None:
    """Normalization of the backbone's image processor, when its directory/cache has one."""
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(model)
    except (OSError, ValueError):
        return None
    rescale = float(getattr(processor, "rescale_factor", 1 / 255))
    return {
        "rescale": rescale if getattr(processor, "do_rescale", True) else 1.0,
        "offset": 1.0 if getattr(processor, "offset", False) else 0.0,
        "mean": tuple(float(x) for x in processor.image_mean)
        if getattr(processor, "do_normalize", True)
        else (0.0,) * 3,
        "std": tuple(float(x) for x in processor.image_std)
        if getattr(processor, "do_normalize", True)
        else (1.0,) * 3,
    }


def build_model(
    settings: ModelSettings, mice: Mapping[str, int], device: str | torch.device = "auto"
) -> SensoriumViViT:
    """Load the backbone (4-bit or fp32), add LoRA adapters, and build reducer and heads."""
    from peft import LoraConfig, get_peft_model
    from transformers import VivitModel

    from neurovid.deep.training import resolve_device
    from neurovid.models import from_pretrained

    target = resolve_device(str(device)) if not isinstance(device, torch.device) else device
    quantized = resolve_quantize(settings.quantize, target)
    kwargs: dict[str, Any] = {"add_pooling_layer": False, "dtype": torch.float32}
    if quantized:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as err:
            raise InputError(
                None,
                "4-bit quantization needs bitsandbytes, which is not installed.",
                "pip install bitsandbytes, or set deep.sensorium.quantize: none.",
                field=f"{FIELD}.quantize",
            ) from err
        from transformers import BitsAndBytesConfig

        compute = torch.bfloat16 if target.type == "cuda" else torch.float32
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute,
        )
        kwargs["device_map"] = {"": target.index or 0} if target.type == "cuda" else "cpu"
    backbone = from_pretrained(
        VivitModel.from_pretrained, settings.backbone, f"{FIELD}.backbone", **kwargs
    )
    if quantized:
        from peft import prepare_model_for_kbit_training

        backbone = prepare_model_for_kbit_training(backbone, use_gradient_checkpointing=False)
    lora = LoraConfig(
        r=settings.lora_rank,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=list(settings.lora_targets),
        bias="none",
    )
    config = backbone.config
    backbone = get_peft_model(backbone, lora)
    model = SensoriumViViT(backbone, config, settings, mice, _pixel_norm(settings.backbone))
    if not quantized:
        return model.to(target)
    model.quantized = True
    return _place_head(model, target)


def _place_head(model: SensoriumViViT, device: torch.device) -> SensoriumViViT:
    """Move everything but the (already placed) quantized backbone to ``device``."""
    for name, module in model.named_children():
        if name != "backbone":
            module.to(device)
    for name, buffer in list(model.named_buffers(recurse=False)):
        setattr(model, name, buffer.to(device))
    return model


def is_quantized(model: SensoriumViViT) -> bool:
    """Whether the backbone holds bitsandbytes 4-bit layers."""
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return False
    return any(isinstance(m, Linear4bit) for m in model.backbone.modules())


def trainable_state(model: SensoriumViViT) -> dict[str, torch.Tensor]:
    """Everything but the frozen base weights of the backbone: LoRA, reducer, heads, buffers."""
    return {
        key: value.detach().cpu()
        for key, value in model.state_dict().items()
        if not key.startswith("backbone.") or "lora_" in key
    }


def save_model(
    model: SensoriumViViT, path: PathLike, extra: Mapping[str, Any] | None = None
) -> None:
    """Write the trained weights (not the frozen base backbone) + what rebuilds the model."""
    payload = {
        "settings": asdict(model.settings),
        "mice": {mouse: head.n_neurons for mouse, head in model.readouts.items()},
        "state": trainable_state(model),
        "extra": json.loads(json.dumps(dict(extra or {}), default=str)),
    }
    save_torch(payload, path)


def load_model(path: PathLike, device: str = "auto") -> SensoriumViViT:
    """Rebuild a model written by :func:`save_model` (base backbone from ``settings.backbone``), in eval mode."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    settings = ModelSettings(
        **{**payload["settings"], "lora_targets": tuple(payload["settings"]["lora_targets"])}
    )
    model = build_model(settings, payload["mice"], device)
    missing, unexpected = model.load_state_dict(payload["state"], strict=False)
    stray = [k for k in missing if not k.startswith("backbone.") or "lora_" in k]
    if unexpected or stray:
        raise InputError(
            path,
            f"does not match the model it describes (missing {stray[:5]}, unexpected {unexpected[:5]}).",
            "re-train, or load it with the neurovid version that wrote it.",
        )
    return model.eval()


def save_readout(model: SensoriumViViT, mouse: str, path: PathLike) -> None:
    """Write one mouse's readout head (weights + statistics) on its own."""
    head = model.readouts[mouse]
    payload = {
        "mouse": mouse,
        "in_features": head.linear.in_features,
        "n_neurons": head.n_neurons,
        "output": head.output,
        "state": {k: v.detach().cpu() for k, v in head.state_dict().items()},
    }
    save_torch(payload, path)


def load_readout(model: SensoriumViViT, path: PathLike, mouse: str | None = None) -> str:
    """Install a head written by :func:`save_readout` (as ``mouse``, default its own id).

    Replaces an existing head of that id or adds one; the backbone and the other
    heads are not touched. Returns the mouse id.
    """
    payload = torch.load(path, map_location="cpu", weights_only=True)
    expected = model.settings.hidden + len(BEHAVIOR_CHANNELS)
    if payload["in_features"] != expected:
        raise InputError(
            path,
            f"this head takes {payload['in_features']} features, the model gives {expected}.",
            "load heads into a model with the same hidden size.",
        )
    head = ReadoutHead(payload["in_features"], payload["n_neurons"], payload["output"])
    head.load_state_dict(payload["state"])
    device = next(model.token_proj.parameters()).device
    mouse = mouse or payload["mouse"]
    model.readouts[mouse] = head.to(device)
    return mouse


# ------------------------------------------------------------------------ data


def window(
    trial: Trial, start: int, frames: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``frames`` frames of ``trial`` from ``start``; shorter trials are left-padded with their first frame."""
    arrays = trial.read(start, start + frames)
    short = frames - arrays.video.shape[0]
    if short <= 0:
        return arrays.video, arrays.behavior, arrays.responses

    def pad(a: np.ndarray) -> np.ndarray:
        return np.concatenate([np.repeat(a[:1], short, axis=0), a])

    responses = None if arrays.responses is None else pad(arrays.responses)
    return pad(arrays.video), pad(arrays.behavior), responses


def mouse_statistics(trials: Sequence[Trial]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Behavior mean and std, and per-neuron response std (1 where 0), over ``trials``."""
    b_sum = b_sq = r_sum = r_sq = None
    count = 0
    for trial in trials:
        arrays = trial.read()
        b = np.nan_to_num(arrays.behavior.astype(np.float64))
        r = np.nan_to_num(arrays.responses.astype(np.float64))
        b_sum = b.sum(0) if b_sum is None else b_sum + b.sum(0)
        b_sq = (b**2).sum(0) if b_sq is None else b_sq + (b**2).sum(0)
        r_sum = r.sum(0) if r_sum is None else r_sum + r.sum(0)
        r_sq = (r**2).sum(0) if r_sq is None else r_sq + (r**2).sum(0)
        count += len(b)
    assert b_sum is not None and b_sq is not None and r_sum is not None and r_sq is not None
    b_mean = b_sum / count
    b_std = np.sqrt(np.maximum(b_sq / count - b_mean**2, 0))
    r_std = np.sqrt(np.maximum(r_sq / count - (r_sum / count) ** 2, 0))
    b_std[b_std < 1e-6] = 1.0
    r_std[r_std < 1e-6] = 1.0
    return b_mean.astype(np.float32), b_std.astype(np.float32), r_std.astype(np.float32)


def _batch(
    mouse: str, items: Sequence[tuple[Trial, int]], frames: int, scale: np.ndarray
) -> dict[str, Any]:
    videos, behaviors, responses = [], [], []
    for trial, start in items:
        v, b, r = window(trial, start, frames)
        videos.append(v)
        behaviors.append(b)
        responses.append(np.nan_to_num(r) / scale)
    return {
        "mouse": mouse,
        "video": torch.from_numpy(np.stack(videos)),
        "behavior": torch.from_numpy(np.nan_to_num(np.stack(behaviors))),
        "responses": torch.from_numpy(np.stack(responses).astype(np.float32)),
    }


def training_batches(
    trials: Mapping[str, Sequence[Trial]],
    scales: Mapping[str, np.ndarray],
    frames: int,
    data: DataSettings,
    generator: torch.Generator,
) -> Iterator[dict[str, Any]]:
    """One epoch: ``windows_per_trial`` random windows per trial, batches of one mouse, shuffled."""
    plan: list[tuple[str, list[tuple[Trial, int]]]] = []
    for mouse in sorted(trials):
        items: list[tuple[Trial, int]] = []
        mouse_trials = list(trials[mouse])
        for _ in range(data.windows_per_trial):
            for i in torch.randperm(len(mouse_trials), generator=generator).tolist():
                trial = mouse_trials[i]
                room = max(trial.length - frames, 0)
                start = int(torch.randint(room + 1, (1,), generator=generator))
                items.append((trial, start))
        for s in range(0, len(items), data.batch_size):
            plan.append((mouse, items[s : s + data.batch_size]))
    for j in torch.randperm(len(plan), generator=generator).tolist():
        mouse, items = plan[j]
        yield _batch(mouse, items, frames, scales[mouse])


def step_loss(model: SensoriumViViT, batch: Mapping[str, Any]) -> torch.Tensor:
    """Poisson loss of one batch (the engine's ``train_step_loss``)."""
    return poisson_loss(
        model(batch["video"], batch["behavior"], batch["mouse"]), batch["responses"]
    )


def _autocast(device: torch.device) -> Any:
    """bf16 (fp16 without bf16 support) autocast on CUDA, as in training; fp32 on CPU."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


@torch.no_grad()
def predict_trial(
    model: SensoriumViViT, trial: Trial, mouse: str, *, stride: int = 16, batch_size: int = 8
) -> np.ndarray:
    """Predicted responses [length, N] of a whole trial, in the recorded units.

    Windows of the backbone's ``num_frames`` start every ``stride`` frames (at
    most ``num_frames``; the last one ends at the trial's end) and the predictions of overlapping
    windows are averaged per frame. Shorter trials are left-padded.
    """
    frames = model.num_frames
    device = next(model.token_proj.parameters()).device
    length = trial.length
    stride = min(max(int(stride), 1), frames)  # larger strides would leave frames unpredicted
    starts = list(range(0, max(length - frames, 0) + 1, stride))
    if starts[-1] != max(length - frames, 0):
        starts.append(max(length - frames, 0))
    head = model.readouts[mouse]
    total = np.zeros((max(length, frames), head.n_neurons))
    counts = np.zeros(max(length, frames))
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(starts), batch_size):
            chunk = starts[s : s + batch_size]
            windows = [window(trial, start, frames) for start in chunk]
            video = torch.from_numpy(np.stack([w[0] for w in windows])).to(device)
            behavior = torch.from_numpy(np.nan_to_num(np.stack([w[1] for w in windows]))).to(device)
            with _autocast(device):
                rates = model(video, behavior, mouse).float() * head.response_scale
            rates = rates.cpu().numpy()
            for start, rate in zip(chunk, rates, strict=True):
                total[start : start + frames] += rate
                counts[start : start + frames] += 1
    finally:
        model.train(was_training)
    pad = max(frames - length, 0)
    return (total / counts[:, None])[pad:].astype(np.float32)


# -------------------------------------------------------------------- training


@dataclass
class SensoriumResult:
    """What :func:`fit_sensorium` produced."""

    model: SensoriumViViT
    train: Any  # neurovid.deep.training.TrainResult
    scores: dict[str, pd.DataFrame]  # mouse -> per-neuron scores
    summary: dict[str, Any] = field(default_factory=dict)


def score_mouse(
    model: SensoriumViViT, mouse: MouseData, trials: Sequence[Trial], data: DataSettings
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-neuron single-trial correlation and correlation to average on ``trials``."""
    responses, predictions, stimuli = [], [], []
    for trial in trials:
        responses.append(trial.read().responses)
        predictions.append(
            predict_trial(
                model, trial, mouse.mouse_id, stride=data.eval_stride, batch_size=data.batch_size
            )
        )
        stimuli.append(trial.stimulus or f"trial:{trial.trial_id}")
    single = metrics.single_trial_correlation(
        responses, predictions, skip=data.skip_frames, per_neuron=True
    )
    groups = repeat_groups(stimuli, min_size=2)  # the stimuli shown more than once
    if groups:
        average = metrics.correlation_to_average(
            responses, predictions, stimuli, skip=data.skip_frames, per_neuron=True
        )
    else:
        average = np.full(mouse.n_neurons, np.nan)
    table = pd.DataFrame(
        {
            "neuron_id": mouse.neuron_ids,
            "single_trial_correlation": single,
            "correlation_to_average": average,
        }
    )
    summary = {
        "test_trials": len(trials),
        "repeated_stimuli": len(groups),
        "single_trial_correlation": float(np.mean(single)),
        "correlation_to_average": float(np.mean(average)) if groups else None,
    }
    return table, summary


def fit_sensorium(
    mice: Sequence[MouseData],
    model_settings: ModelSettings,
    data: DataSettings,
    train_settings: Any,
    work_dir: PathLike,
    *,
    provenance: Mapping[str, Any] | None = None,
    logger: logging.Logger | None = None,
) -> SensoriumResult:
    """Train one model (shared backbone, a head per mouse) and score the test tiers.

    ``train_settings`` is a :class:`neurovid.deep.training.TrainSettings`;
    ``work_dir`` receives the engine's checkpoints and ``metrics.csv`` (an
    interrupted call resumes there).
    """
    from neurovid.deep.training import resolve_device, seed_everything, train_model

    logger = logger or log
    if not mice:
        raise InputError(
            None, "no mouse to train on.", "list mice under deep.sensorium.", field=FIELD
        )
    ids = [m.mouse_id for m in mice]
    if len(set(ids)) != len(ids):
        raise InputError(
            None, f"mouse ids repeat: {ids}.", "give every mouse a unique id.", field=FIELD
        )
    splits: dict[str, tuple[list[Trial], list[Trial], list[Trial]]] = {}
    for mouse in mice:
        labelled = mouse.in_tiers(data.train_tiers)
        test = mouse.in_tiers(data.test_tiers)
        if not labelled or not test:
            raise InputError(
                mouse.source,
                f"mouse {mouse.mouse_id} has {len(labelled)} training trials (tiers {list(data.train_tiers)}) and {len(test)} test trials with responses (tiers {list(data.test_tiers)}).",
                "check deep.sensorium.train_tiers / test_tiers against meta/trials/tiers.npy (or the runs' repeats).",
                field=f"{FIELD}.test_tiers",
            )
        train, val = split_validation(labelled, data.val_fraction, train_settings.seed)
        check_poisson_targets(  # the model's only loss
            (trial.read().responses for trial in train),
            source=mouse.source,
            field=f"{FIELD} responses",
            fix="train on deconvolved activity or spike rates (non-negative, as Sensorium's), not dF/F or z-scored traces.",
        )
        splits[mouse.mouse_id] = (train, val, test)
        logger.info(
            "%s: %d neurons, %d train / %d validation / %d test trials, %s",
            mouse.mouse_id,
            mouse.n_neurons,
            len(train),
            len(val),
            len(test),
            mouse.describe(),
        )
    seed_everything(train_settings.seed)
    device = resolve_device(train_settings.device)
    model = build_model(model_settings, {m.mouse_id: m.n_neurons for m in mice}, device)
    logger.info(
        "backbone %s: %d frames of %dx%d, %s; trainable %d of %d values",
        model_settings.backbone,
        model.num_frames,
        model.image_size,
        model.image_size,
        "4-bit NF4 (qLoRA)" if is_quantized(model) else "fp32 (LoRA)",
        sum(p.numel() for p in model.parameters() if p.requires_grad),
        sum(p.numel() for p in model.parameters()),
    )
    scales = {}
    for mouse in mice:
        b_mean, b_std, r_std = mouse_statistics(splits[mouse.mouse_id][0])
        model.readouts[mouse.mouse_id].set_statistics(b_mean, b_std, r_std)
        scales[mouse.mouse_id] = r_std
    train_trials = {m: s[0] for m, s in splits.items()}
    cache: dict[str, float] = {}

    def validation(net: nn.Module) -> float:
        losses, corrs = [], []
        for mouse_id, (_, val, _) in splits.items():
            head = net.readouts[mouse_id]
            ys, ps = [], []
            for trial in val:
                y = np.nan_to_num(trial.read().responses)
                p = predict_trial(
                    net, trial, mouse_id, stride=data.eval_stride, batch_size=data.batch_size
                )
                scale = head.response_scale.cpu().numpy()
                losses.append(
                    float(poisson_loss(torch.from_numpy(p / scale), torch.from_numpy(y / scale)))
                )
                ys.append(y)
                ps.append(p)
            skip = min(data.skip_frames, min(len(y) for y in ys) - 2)
            corrs.append(metrics.single_trial_correlation(ys, ps, skip=max(skip, 0)))
        cache["val_corr"] = float(np.mean(corrs))
        return float(np.mean(losses))

    result = train_model(
        model,
        step_loss,
        lambda epoch, generator: training_batches(
            train_trials, scales, model.num_frames, data, generator
        ),
        validation,
        train_settings,
        work_dir,
        log=logger,
        extra_metrics=lambda net: {"val_single_trial_correlation": cache["val_corr"]},
        fingerprint={
            "model": asdict(model_settings),
            "data": asdict(data),
            "mice": {m.mouse_id: m.describe() for m in mice},
        },
        provenance=provenance,
    )
    scores, per_mouse = {}, {}
    for mouse in mice:
        table, summary = score_mouse(model, mouse, splits[mouse.mouse_id][2], data)
        scores[mouse.mouse_id] = table
        per_mouse[mouse.mouse_id] = summary
        logger.info(
            "%s: held-out single-trial r %.4f, correlation to average %s",
            mouse.mouse_id,
            summary["single_trial_correlation"],
            "n/a (no repeats)"
            if summary["correlation_to_average"] is None
            else f"{summary['correlation_to_average']:.4f}",
        )
    summary = {
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "best_val_loss": result.best_val_loss,
        "stopped_early": result.stopped_early,
        "resumed_from": result.resumed_from,
        "quantized_4bit": is_quantized(model),
        "mice": per_mouse,
        "reference": "Sensorium 2023 winner (DwiseNeuro): 0.291 single-trial correlation, main track",
    }
    if not all(math.isfinite(v["single_trial_correlation"]) for v in per_mouse.values()):
        logger.warning("some held-out scores are not finite")
    return SensoriumResult(model, result, scores, summary)


def write_outputs(
    result: SensoriumResult,
    work_dir: PathLike,
    *,
    model_path: PathLike,
    metrics_path: PathLike,
    figure_path: PathLike,
    summary_path: PathLike,
    score_paths: Mapping[str, PathLike],
    provenance: Mapping[str, Any],
) -> None:
    """Write the rule's outputs: weights, per-epoch metrics, loss curve, scores, summary."""
    from neurovid.deep.training import METRICS, plot_loss_curve
    from neurovid.io import write_json, write_table

    save_model(result.model, model_path, {"summary": result.summary, "provenance": provenance})
    table = pd.read_csv(Path(work_dir) / METRICS)
    with atomic_path(metrics_path) as tmp:
        table.to_csv(tmp, index=False)
    plot_loss_curve(metrics_path, figure_path, provenance, title="Sensorium ViViT + LoRA")
    missing = sorted(set(result.scores) - set(score_paths))
    if missing:
        raise ValueError(f"no score path for mice {missing}")
    for mouse, path in score_paths.items():
        write_table(path, result.scores[mouse], sep=",", provenance=provenance, mouse=mouse)
    write_json(summary_path, {**result.summary, "provenance": dict(provenance)})


# ---------------------------------------------------------------------- config

#: Keys of ``deep.sensorium`` that name data, not settings.
DATA_KEYS = ("folders", "subjects", "frame_size", "trial_frames")
TRAIN_KEYS = ("max_epochs", "patience", "min_delta", "lr", "weight_decay", "grad_clip", "device")


def settings_from_config(
    section: Mapping[str, Any], seed: int = 0
) -> tuple[ModelSettings, DataSettings, Any]:
    """``deep.sensorium`` -> (ModelSettings, DataSettings, TrainSettings); unknown keys are errors."""
    from neurovid.deep.training import TrainSettings

    model_keys = {f.name for f in ModelSettings.__dataclass_fields__.values()}
    data_keys = {f.name for f in DataSettings.__dataclass_fields__.values()}
    unknown = sorted(set(section) - model_keys - data_keys - set(TRAIN_KEYS) - set(DATA_KEYS))
    if unknown:
        raise InputError(
            None,
            f"unknown settings {unknown}.",
            f"use only {sorted(model_keys | data_keys | set(TRAIN_KEYS) | set(DATA_KEYS))}.",
            field=FIELD,
        )

    def pick(keys: set[str] | Sequence[str]) -> dict[str, Any]:
        chosen = {k: section[k] for k in keys if k in section}
        return {k: tuple(v) if isinstance(v, list) else v for k, v in chosen.items()}

    return (
        ModelSettings(**pick(model_keys)),
        DataSettings(**pick(data_keys)),
        TrainSettings(**pick(TRAIN_KEYS), seed=int(seed)),
    )
