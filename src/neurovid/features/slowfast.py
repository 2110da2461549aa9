"""SlowFast R50 (Kinetics-400) clip features: pooled pre-head features and the 400 class logits.

Implementation: pytorchvideo's ``create_slowfast`` model definition, the one
behind ``torch.hub.load("facebookresearch/pytorchvideo", "slowfast_r50")``; the
published Kinetics-400 weights (model zoo ``SLOWFAST_8x8_R50.pyth``, top-1 76.9)
load into it with ``load_state_dict(checkpoint["model_state"])``, unchanged.
transformers and torchvision have no SlowFast, and the weights are a checkpoint
file rather than a hub repository, so the config names a local ``checkpoint``.

Each clip samples ``clip_frames`` frames (32 for the fast pathway) every
``sampling_rate`` frames; the slow pathway takes every ``alpha``-th of them
(``alpha`` = 4, the fusion's temporal stride), as pytorchvideo's
``PackPathway``. Frames are resized (short side ``size``), centre-cropped to
``size x size`` and normalized with the Kinetics mean 0.45 / std 0.225. The head
pools over the whole final feature map (kernel computed from ``size`` and
``clip_frames``; for 224 and 32 it is pytorchvideo's default (8, 7, 7) /
(32, 7, 7)).

Output: ``features`` = the pooled pre-head features (2304-D for R50), or the
logits with ``feature: logits``; both are stored (``pooled`` [T, C], ``logits``
[T, 400]) with ``class_names`` [400] beside them (Kinetics-400 names in label
order, from torchvision's video weights metadata).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurovid.errors import InputError
from neurovid.features import runtime as rt
from neurovid.io import PathLike
from neurovid.video import video_fps

FIELD = "features.slowfast"
#: Kinetics-400 normalization used by PySlowFast / pytorchvideo.
MEAN = (0.45, 0.45, 0.45)
STD = (0.225, 0.225, 0.225)
CHECKPOINT_FIX = (
    "download SLOWFAST_8x8_R50.pyth from the pytorchvideo model zoo "
    "(https://github.com/facebookresearch/pytorchvideo/blob/main/docs/source/model_zoo.md) "
    "on a machine with internet, copy it here and set features.slowfast.checkpoint to its path."
)


def kinetics400_classes() -> list[str]:
    """The 400 Kinetics class names in label order (torchvision's weights metadata, no download)."""
    from torchvision.models.video import R3D_18_Weights

    return list(R3D_18_Weights.KINETICS400_V1.meta["categories"])


def build_slowfast(
    *, size: int, clip_frames: int, num_classes: int = 400, arch: Mapping[str, Any] | None = None
) -> torch.nn.Module:
    """pytorchvideo's SlowFast R50 for ``size x size`` clips of ``clip_frames`` fast frames.

    ``arch`` passes further ``create_slowfast`` arguments (e.g. a small
    ``stem_dim_outs`` for tests); the published weights need none.
    """
    from pytorchvideo.models.slowfast import create_slowfast

    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in dict(arch or {}).items()}
    alpha = int(kwargs.get("slowfast_fusion_conv_stride", (4, 1, 1))[0])
    cells = max(size // 32, 1)
    kwargs.setdefault(
        "head_pool_kernel_sizes",
        ((clip_frames // alpha, cells, cells), (clip_frames, cells, cells)),
    )
    kwargs.setdefault("model_depth", 50)
    return create_slowfast(model_num_class=num_classes, **kwargs)


def load_slowfast(
    checkpoint: str | None, *, size: int, clip_frames: int, arch: Mapping[str, Any] | None = None
) -> torch.nn.Module:
    """The model with the checkpoint's weights (eval mode); InputError if the file is missing/unfit."""
    if not checkpoint:
        raise InputError(
            None,
            "no SlowFast checkpoint is configured.",
            CHECKPOINT_FIX,
            field=f"{FIELD}.checkpoint",
        )
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise InputError(
            path,
            "the SlowFast checkpoint file does not exist.",
            CHECKPOINT_FIX,
            field=f"{FIELD}.checkpoint",
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle / zip errors of a damaged or foreign file
        raise InputError(
            path,
            f"cannot read the checkpoint ({type(err).__name__}: {err}).",
            CHECKPOINT_FIX,
            field=f"{FIELD}.checkpoint",
        ) from err
    state = state.get("model_state", state) if isinstance(state, dict) else state
    model = build_slowfast(size=size, clip_frames=clip_frames, arch=arch)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as err:
        raise InputError(
            path,
            f"the checkpoint does not fit pytorchvideo's SlowFast R50 ({str(err)[:300]}).",
            "give the Kinetics-400 SLOWFAST_8x8_R50 checkpoint (or matching `arch` settings).",
            field=f"{FIELD}.checkpoint",
        ) from err
    return model.eval()


def pack_pathways(clips: torch.Tensor, alpha: int) -> list[torch.Tensor]:
    """[B, T, C, H, W] clips -> [slow [B, C, T/alpha, H, W], fast [B, C, T, H, W]] (PackPathway)."""
    fast = clips.permute(0, 2, 1, 3, 4)
    index = torch.linspace(0, fast.shape[2] - 1, fast.shape[2] // alpha).long().to(fast.device)
    return [fast.index_select(2, index), fast]


def slowfast_features(
    video_path: PathLike,
    out_path: PathLike,
    *,
    checkpoint: str | None,
    clip_frames: int = 32,
    sampling_rate: int = 2,
    stride: int = 16,
    size: int = 224,
    feature: str = "pooled",
    batch_size: int | str = 2,
    arch: Mapping[str, Any] | None = None,
    device: str = "auto",
    threads: int = 1,
    extra_attrs: Mapping[str, Any] | None = None,
    log: logging.Logger | rt.Emit | None = None,
) -> dict[str, Any]:
    """Write per-clip SlowFast features, logits and class names of ``video_path`` (streamed)."""
    emit = rt.emitter(log)
    if feature not in ("pooled", "logits"):
        raise InputError(
            None,
            f"feature {feature!r} is unknown.",
            "use pooled or logits.",
            field=f"{FIELD}.feature",
        )
    runtime = rt.select_runtime(device, threads)
    model = load_slowfast(checkpoint, size=size, clip_frames=clip_frames, arch=arch)
    model.to(runtime.device)
    rt.require_clip(
        video_path,
        clip_frames,
        sampling_rate,
        field=f"{FIELD}.clip_frames",
        fix=f"lower {FIELD}.clip_frames or {FIELD}.sampling_rate (a clip spans "
        "(clip_frames - 1) x sampling_rate + 1 frames), or use a longer video.",
    )
    alpha = int(dict(arch or {}).get("slowfast_fusion_conv_stride", (4, 1, 1))[0])
    head = model.blocks[-1]
    classes = kinetics400_classes()
    if head.proj.out_features != len(classes):
        raise InputError(
            checkpoint,
            f"the head has {head.proj.out_features} classes, not Kinetics-400's 400.",
            "give a Kinetics-400 checkpoint.",
            field=f"{FIELD}.checkpoint",
        )
    captured: dict[str, torch.Tensor] = {}
    head.proj.register_forward_hook(lambda _m, args, _out: captured.update(pre=args[0]))

    @torch.inference_mode()
    def embed(clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with runtime.autocast():
            logits = model(pack_pathways(clips, alpha))
        # proj input is [B, T, H, W, C] after the head's pooling; average what remains.
        pooled = captured["pre"].float().mean(dim=(1, 2, 3))
        return pooled, logits.float()

    prep = rt.Preprocess(shortest_edge=size, crop=(size, size), mean=MEAN, std=STD)
    batch = rt.auto_batch_size(
        lambda n: embed(torch.zeros(n, clip_frames, 3, size, size, device=runtime.device)),
        runtime,
        batch_size,
    )
    width = int(head.proj.in_features)
    fps = video_fps(video_path)
    emit(
        f"{video_path}: SlowFast {checkpoint} on {runtime.device} ({runtime.dtype_name}), "
        f"{clip_frames} frames every {sampling_rate} (slow: every {alpha}th), clips every "
        f"{stride} frames, {size}x{size}, batch {batch}, features = {feature}"
    )
    progress = rt.Progress(emit, str(video_path))
    windows = rt.iter_windows(
        rt.frame_chunks(video_path, prep, chunk=64),
        clip_frames=clip_frames,
        stride=stride,
        sampling_rate=sampling_rate,
    )
    out_width = width if feature == "pooled" else len(classes)
    extra = {"pooled": (width,), "logits": (len(classes),)}
    with rt.FeatureWriter(out_path, out_width, extra=extra, rows_per_chunk=64) as writer:
        for times, last_frame, clips in rt.prefetch(rt.clip_batches(windows, batch)):
            pooled, logits = (x.cpu().numpy() for x in embed(runtime.to_device(clips)))
            chosen = pooled if feature == "pooled" else logits
            writer.append(chosen, times, pooled=pooled, logits=logits)
            progress.update(last_frame + 1, writer.rows)
        progress.finish(writer.rows)
        attrs = {
            "extractor": "slowfast",
            "model_id": "pytorchvideo slowfast_r50 (Kinetics-400)",
            "checkpoint": str(checkpoint),
            "revision": rt.weights_revision(str(checkpoint), None),
            "layer": "head.proj input (pooled pre-head)" if feature == "pooled" else "logits",
            "pooling": "mean over the head's pooled (T, H, W) positions",
            "feature": feature,
            "clip_frames": int(clip_frames),
            "sampling_rate": int(sampling_rate),
            "alpha": alpha,
            "stride": int(stride),
            "size": int(size),
            "dtype": runtime.dtype_name,
            "device": runtime.device.type,
            "batch_size": batch,
            "fps": fps,
            "duration": rt.video_duration(video_path, fps),
            "time_convention": "centre of each clip (midway between its first and last sampled frames)",
            "preprocess": prep.describe(),
            **dict(extra_attrs or {}),
        }
        writer.close(attrs, static={"class_names": np.asarray(classes)})
    return attrs
