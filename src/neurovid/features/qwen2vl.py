"""Qwen2-VL clip embeddings (Qwen/Qwen2-VL-2B-Instruct), streamed over sliding clips.

Each clip samples ``clip_frames`` frames (an even number: Qwen2-VL patches 2
frames at a time) every ``sampling_rate`` frames, resized (short side) and
centre-cropped to ``height x width`` (multiples of 28 = patch 14 x merge 2), and
goes through the model's own video processor (``do_resize=False``) and the
model as the sequence ``<|vision_start|> <|video_pad|> x N <|vision_end|>``
(token ids from the model config, so no tokenizer or prompt is needed). The
row is the mean of the language model's hidden states over the N video
tokens, per configured layer (``hidden_states`` indices: 0 = the merged vision
embeddings entering the language model, -1 = last layer). :func:`embed_clips`
is the library entry point the behavior stage reuses for segment clips.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from neurovid.errors import InputError
from neurovid.features import runtime as rt
from neurovid.io import PathLike
from neurovid.video import video_fps

FIELD = "features.qwen2vl"
#: Qwen2-VL's ``mm_token_type_ids`` value for video tokens (0 text, 1 image, 2 video).
VIDEO_TOKEN_TYPE = 2


def load_qwen2vl(model: str, runtime: rt.Runtime) -> tuple[torch.nn.Module, Any]:
    """The model (eval; bf16 weights on CUDA, fp32 on CPU) and its video processor."""
    from transformers import AutoVideoProcessor, Qwen2VLForConditionalGeneration

    processor = rt.from_pretrained(AutoVideoProcessor.from_pretrained, model, f"{FIELD}.model")
    dtype = runtime.autocast_dtype or torch.float32
    network = rt.from_pretrained(
        Qwen2VLForConditionalGeneration.from_pretrained, model, f"{FIELD}.model", dtype=dtype
    )
    return network.eval(), processor


def embed_clips(
    network: torch.nn.Module,
    processor: Any,
    clips: np.ndarray,
    layers: Sequence[int],
    runtime: rt.Runtime,
) -> torch.Tensor:
    """Clips [B, k, h, w, 3] (0..1) -> [B, hidden * len(layers)] float32 pooled video-token states."""
    config = network.config
    videos = [
        torch.from_numpy(np.rint(clip * 255).astype(np.uint8)).permute(0, 3, 1, 2) for clip in clips
    ]
    inputs = processor(videos=videos, return_tensors="pt", do_resize=False, do_sample_frames=False)
    grid = inputs["video_grid_thw"]
    merge = int(config.vision_config.spatial_merge_size)
    n_tokens = int(grid[0].prod()) // (merge * merge)
    ids = (
        [config.vision_start_token_id]
        + [config.video_token_id] * n_tokens
        + [config.vision_end_token_id]
    )
    input_ids = torch.tensor([ids] * len(videos))
    token_types = (input_ids == config.video_token_id).int() * VIDEO_TOKEN_TYPE
    with torch.inference_mode(), runtime.autocast():
        out = network.model(
            input_ids=input_ids.to(runtime.device),
            mm_token_type_ids=token_types.to(runtime.device),
            pixel_values_videos=runtime.to_device(inputs["pixel_values_videos"]).to(network.dtype),
            video_grid_thw=grid.to(runtime.device),
            output_hidden_states=True,
        )
    video = slice(1, 1 + n_tokens)
    return torch.cat(
        [out.hidden_states[layer][:, video].float().mean(dim=1) for layer in layers], 1
    )


def qwen2vl_features(
    video_path: PathLike,
    out_path: PathLike,
    *,
    model: str,
    clip_frames: int = 8,
    sampling_rate: int = 4,
    stride: int = 16,
    height: int = 224,
    width: int = 224,
    layers: Sequence[int] = (-1,),
    batch_size: int | str = 1,
    device: str = "auto",
    threads: int = 1,
    extra_attrs: Mapping[str, Any] | None = None,
    log: logging.Logger | rt.Emit | None = None,
) -> dict[str, Any]:
    """Write per-clip Qwen2-VL embeddings of ``video_path`` to ``out_path`` (streamed)."""
    emit = rt.emitter(log)
    if clip_frames < 2 or clip_frames % 2 or height % 28 or width % 28:
        raise InputError(
            None,
            f"clip_frames={clip_frames}, height={height}, width={width}: Qwen2-VL needs an even number of frames (>= 2) and sizes that are multiples of 28.",
            "e.g. clip_frames: 8, height: 224, width: 224.",
            field=FIELD,
        )
    runtime = rt.select_runtime(device, threads)
    network, processor = load_qwen2vl(model, runtime)
    network.to(runtime.device)
    rt.require_clip(
        video_path,
        clip_frames,
        sampling_rate,
        field=f"{FIELD}.clip_frames",
        fix=f"lower {FIELD}.clip_frames or {FIELD}.sampling_rate (a clip spans "
        "(clip_frames - 1) x sampling_rate + 1 frames), or use a longer video.",
    )
    text_config = getattr(network.config, "text_config", network.config)
    layers = rt.check_layers(layers, text_config.num_hidden_layers + 1, f"{FIELD}.layers")
    hidden = int(text_config.hidden_size)

    def embed(clips: np.ndarray) -> torch.Tensor:
        return embed_clips(network, processor, clips, layers, runtime)

    batch = rt.auto_batch_size(
        lambda n: embed(np.zeros((n, clip_frames, height, width, 3), np.float32)),
        runtime,
        batch_size,
    )
    prep = rt.Preprocess(shortest_edge=min(height, width), crop=(height, width))
    fps = video_fps(video_path)
    emit(
        f"{video_path}: {model} on {runtime.device} ({runtime.dtype_name}), clips of {clip_frames} "
        f"frames every {sampling_rate} (every {stride} frames), {height}x{width}, layers {layers}, batch {batch}"
    )
    progress = rt.Progress(emit, str(video_path))
    windows = rt.iter_windows(
        rt.frame_chunks(video_path, prep, chunk=64, normalize=False),
        clip_frames=clip_frames,
        stride=stride,
        sampling_rate=sampling_rate,
    )
    with rt.FeatureWriter(out_path, hidden * len(layers), rows_per_chunk=64) as writer:
        for times, last_frame, clips in rt.prefetch(rt.clip_batches(windows, batch)):
            writer.append(embed(clips).cpu().numpy(), times)
            progress.update(last_frame + 1, writer.rows)
        progress.finish(writer.rows)
        attrs = {
            "extractor": "qwen2vl",
            "model_id": model,
            "revision": rt.weights_revision(model, network),
            "model_class": type(network).__name__,
            "layer": list(layers),
            "pooling": "mean over video tokens",
            "layout": rt.layout(layers, ["mean"], hidden),
            "clip_frames": int(clip_frames),
            "sampling_rate": int(sampling_rate),
            "stride": int(stride),
            "height": int(height),
            "width": int(width),
            "dtype": runtime.dtype_name,
            "device": runtime.device.type,
            "batch_size": batch,
            "fps": fps,
            "duration": rt.video_duration(video_path, fps),
            "time_convention": "centre of each clip (midway between its first and last sampled frames)",
            **dict(extra_attrs or {}),
        }
        writer.close(attrs)
    return attrs
