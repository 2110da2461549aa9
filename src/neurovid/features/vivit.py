"""Per-clip ViViT features (transformers ``VivitModel``), streamed over sliding windows.

Clips of the model's ``num_frames`` consecutive frames (32 for
google/vivit-b-16x2-kinetics400) start every ``stride`` frames; each row is the
CLS token and/or mean of the tubelet tokens of the configured layers
(``hidden_states`` indices), at the clip's centre time. With ``token_length``
> 0 the full token sequence of the last configured layer is also reduced to a
fixed length by 1-D adaptive average pooling over the token axis (the
Sensorium seed's reducer, without learned weights) and written as ``tokens``
[T, token_length, hidden] for the deep encoders.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from neurovid.errors import InputError
from neurovid.features import runtime as rt
from neurovid.io import PathLike
from neurovid.video import video_fps

FIELD = "features.vivit"


def load_vivit(model: str) -> tuple[torch.nn.Module, rt.Preprocess]:
    """``VivitModel`` (eval, fp32) and its image processor's preprocessing."""
    from transformers import AutoImageProcessor, VivitModel

    processor = rt.from_pretrained(AutoImageProcessor.from_pretrained, model, f"{FIELD}.model")
    backbone = rt.from_pretrained(
        VivitModel.from_pretrained,
        model,
        f"{FIELD}.model",
        dtype=torch.float32,
        add_pooling_layer=False,
    )
    return backbone.eval(), rt.Preprocess.from_processor(processor)


def reduce_tokens(tokens: torch.Tensor, length: int) -> torch.Tensor:
    """[B, N, D] -> [B, length, D]: adaptive average pooling over the token axis."""
    return torch.nn.functional.adaptive_avg_pool1d(
        tokens.float().transpose(1, 2), length
    ).transpose(1, 2)


def vivit_features(
    video_path: PathLike,
    out_path: PathLike,
    *,
    model: str,
    stride: int = 16,
    layers: Sequence[int] = (-1,),
    pooling: Sequence[str] = ("cls", "mean"),
    token_length: int = 0,
    batch_size: int | str = 2,
    device: str = "auto",
    threads: int = 1,
    extra_attrs: Mapping[str, Any] | None = None,
    log: logging.Logger | rt.Emit | None = None,
) -> dict[str, Any]:
    """Write per-clip ViViT features of ``video_path`` to ``out_path`` (streamed); return the attrs."""
    emit = rt.emitter(log)
    if token_length < 0:
        raise InputError(
            None,
            f"token_length={token_length} is negative.",
            "use 0 (off) or a positive length.",
            field=f"{FIELD}.token_length",
        )
    runtime = rt.select_runtime(device, threads)
    backbone, prep = load_vivit(model)
    backbone.to(runtime.device)
    config = backbone.config
    clip_frames = int(config.num_frames)
    rt.require_clip(
        video_path,
        clip_frames,
        1,
        field=f"{FIELD}.model",
        fix=f"use a longer video, or a ViViT model with fewer frames per clip (num_frames in "
        f"its config.json: {clip_frames}).",
    )
    layers = rt.check_layers(layers, config.num_hidden_layers + 1, f"{FIELD}.layers")
    pooling = rt.check_pooling(pooling, f"{FIELD}.pooling")
    hidden = int(config.hidden_size)
    width = hidden * len(layers) * len(pooling)

    @torch.inference_mode()
    def embed(clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        with runtime.autocast():
            out = backbone(pixel_values=clips, output_hidden_states=True)
        pooled = rt.pool_tokens(out.hidden_states, layers, pooling, 1)
        tokens = (
            reduce_tokens(out.hidden_states[layers[-1]][:, 1:], token_length)
            if token_length
            else None
        )
        return pooled, tokens

    (rh, rw), (_, _, ch, cw) = prep.plan(*rt.video_size(video_path))
    batch = rt.auto_batch_size(
        lambda n: embed(torch.zeros(n, clip_frames, 3, ch, cw, device=runtime.device)),
        runtime,
        batch_size,
    )
    fps = video_fps(video_path)
    emit(
        f"{video_path}: {model} on {runtime.device} ({runtime.dtype_name}), clips of {clip_frames} "
        f"frames every {stride}, layers {layers}, pooling {pooling}, crop {ch}x{cw}, batch {batch}"
    )
    progress = rt.Progress(emit, str(video_path))
    windows = rt.iter_windows(
        rt.frame_chunks(video_path, prep, chunk=64), clip_frames=clip_frames, stride=stride
    )
    extra = {"tokens": (token_length, hidden)} if token_length else {}
    with rt.FeatureWriter(out_path, width, extra=extra, rows_per_chunk=64) as writer:
        for times, last_frame, clips in rt.prefetch(rt.clip_batches(windows, batch)):
            pooled, tokens = embed(runtime.to_device(clips))
            rows = {"tokens": tokens.cpu().numpy()} if tokens is not None else {}
            writer.append(pooled.cpu().numpy(), times, **rows)
            progress.update(last_frame + 1, writer.rows)
        progress.finish(writer.rows)
        attrs = {
            "extractor": "vivit",
            "model_id": model,
            "revision": rt.weights_revision(model, backbone),
            "model_class": type(backbone).__name__,
            "layer": list(layers),
            "pooling": list(pooling),
            "layout": rt.layout(layers, pooling, hidden),
            "clip_frames": clip_frames,
            "stride": int(stride),
            "token_length": int(token_length),
            "token_reducer": "adaptive_avg_pool1d over tokens (CLS excluded) of the last listed layer"
            if token_length
            else "",
            "dtype": runtime.dtype_name,
            "device": runtime.device.type,
            "batch_size": batch,
            "fps": fps,
            "duration": rt.video_duration(video_path, fps),
            "time_convention": "centre of each clip (midway between its first and last frame centres)",
            "preprocess": prep.describe(),
            **dict(extra_attrs or {}),
        }
        writer.close(attrs)
    return attrs
