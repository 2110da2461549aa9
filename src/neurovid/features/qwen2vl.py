"""Video-language clip embeddings (Qwen2-VL, Qwen2.5-VL, Qwen3-VL), streamed over sliding clips.

Any image-text-to-text model of the Qwen-VL video family loads through the
transformers Auto classes (``AutoModelForImageTextToText`` + ``AutoVideoProcessor``)
from a hub id or a ``save_pretrained`` folder; the extractor and its config key
keep the name ``qwen2vl``. Each clip samples ``clip_frames`` frames (an even
number: the models patch 2 frames at a time) every ``sampling_rate`` frames,
resized (short side) and centre-cropped to ``height x width`` (multiples of
patch x merge: 28 for Qwen2-VL / Qwen2.5-VL, 32 for Qwen3-VL), and goes through
the model's own video processor (``do_resize=False``) and the model as the
sequence ``<|vision_start|> <|video_pad|> x N <|vision_end|>`` (Qwen3-VL: one
such group per temporal patch, as its processor lays frames out; token ids from
the model config, so no tokenizer or prompt is needed). Qwen2.5-VL's
time-aware rope gets the clip's real seconds per temporal patch
(``second_per_grid_ts``) when the caller knows the frame spacing. The row is the
mean of the language model's hidden states over the video tokens, per
configured layer (``hidden_states`` indices: 0 = the merged vision embeddings
entering the language model, -1 = last layer). A model that cannot take video
this way is an :class:`~neurovid.errors.InputError` naming the model, the
setting and the fix. :func:`embed_clips` is the library entry point the
behavior stage reuses for segment clips.
"""

from __future__ import annotations

import inspect
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
#: ``mm_token_type_ids`` value for video tokens (0 text, 1 image, 2 video).
VIDEO_TOKEN_TYPE = 2
#: Config token ids the video sequence is built from (the Qwen-VL video layout).
LAYOUT_TOKENS = ("vision_start_token_id", "video_token_id", "vision_end_token_id")
#: Frame sides (patch x merge) the supported families accept, checked before loading.
SIDE_UNITS = (28, 32)
#: Models a fix suggests.
EXAMPLES = "Qwen/Qwen2-VL-2B-Instruct, Qwen/Qwen2.5-VL-3B-Instruct or Qwen/Qwen3-VL-2B-Instruct"


def check_clip_shape(
    clip_frames: int, height: int, width: int, field: str, units: Sequence[int] = SIDE_UNITS
) -> None:
    """Raise unless clips have an even frame count (>= 2) and both sides a multiple of one of ``units``."""
    if (
        clip_frames >= 2
        and not clip_frames % 2
        and any(not height % u and not width % u for u in units)
    ):
        return
    sides = " or ".join(str(unit) for unit in units)
    raise InputError(
        None,
        f"clip_frames={clip_frames}, height={height}, width={width}: the video-language model needs an even number of frames (>= 2) and sizes that are multiples of {sides} (its patch x merge size: 28 for Qwen2-VL / Qwen2.5-VL, 32 for Qwen3-VL).",
        "e.g. clip_frames: 8, height: 224, width: 224.",
        field=field,
    )


def video_input_error(model: str, config: Any, field: str, reason: str) -> InputError:
    """The InputError for a model that cannot take video input the way :func:`embed_clips` feeds it."""
    return InputError(
        model,
        f"the model {model!r} ({type(config).__name__}, model_type {config.model_type!r}) cannot take video input: {reason}.",
        f"set {field} to a video-language model of the Qwen-VL family (image-text-to-text with a video processor), e.g. {EXAMPLES}: a hub id or a save_pretrained folder.",
        field=field,
    )


def require_video_model(model: str, config: Any, field: str) -> None:
    """Raise unless ``config`` is an image-text-to-text model with the Qwen-VL video tokens."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING

    missing = [name for name in LAYOUT_TOKENS if getattr(config, name, None) is None]
    if type(config) not in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING:
        reason = "it is not an image-text-to-text model (AutoModelForImageTextToText has no class for it)"
    elif "video_token_id" in missing:
        reason = "its config has no video token (video_token_id): it reads text and images only"
    elif missing:
        reason = f"its config has no {' / '.join(missing)}, which the Qwen-VL video layout (vision start, video tokens, vision end) needs"
    else:
        return
    raise video_input_error(model, config, field, reason)


def load_qwen2vl(
    model: str, runtime: rt.Runtime, field: str = f"{FIELD}.model"
) -> tuple[torch.nn.Module, Any]:
    """The video-language model (eval; bf16 weights on CUDA, fp32 on CPU) and its video processor.

    ``AutoModelForImageTextToText`` / ``AutoVideoProcessor`` from a hub id or a
    ``save_pretrained`` folder, after :func:`require_video_model` has checked the
    config, so a text-only or image-only model fails before its weights load.
    ``field`` is the setting that names the model (``features.qwen2vl.model``,
    ``behavior.actions.embedder.model``); errors name it.
    """
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoVideoProcessor

    config = rt.from_pretrained(AutoConfig.from_pretrained, model, field)
    require_video_model(model, config, field)
    processor = rt.from_pretrained(AutoVideoProcessor.from_pretrained, model, field)
    if "video_grid_thw" not in processor.model_input_names:
        reason = f"its video processor ({type(processor).__name__}) gives no video_grid_thw"
        raise video_input_error(model, config, field, reason)
    dtype = runtime.autocast_dtype or torch.float32
    network = rt.from_pretrained(
        AutoModelForImageTextToText.from_pretrained, model, field, dtype=dtype
    )
    return network.eval(), processor


def side_unit(processor: Any) -> int:
    """The multiple frame sides must be (patch x merge) for ``processor``."""
    return int(processor.patch_size) * int(processor.merge_size)


def separates_frames(processor: Any) -> bool:
    """Whether the model reads each temporal patch of a video as its own group (Qwen3-VL family)."""
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    return isinstance(processor, Qwen3VLVideoProcessor)


def video_token_ids(config: Any, grid: torch.Tensor, merge: int, per_frame: bool) -> list[int]:
    """Token ids of one video of grid ``(t, h, w)``: vision start, its video tokens, vision end.

    ``per_frame`` (Qwen3-VL): one start / tokens / end group per temporal patch,
    as its processor lays frames out, without the text timestamps between them.
    """
    t, h, w = (int(v) for v in grid)
    tokens = h * w // (merge * merge)
    groups, size = (t, tokens) if per_frame else (1, t * tokens)
    group = [config.vision_start_token_id] + [config.video_token_id] * size
    return groups * (group + [config.vision_end_token_id])


def embed_clips(
    network: torch.nn.Module,
    processor: Any,
    clips: np.ndarray,
    layers: Sequence[int],
    runtime: rt.Runtime,
    seconds_per_frame: float | None = None,
) -> torch.Tensor:
    """Clips [B, k, h, w, 3] (0..1) -> [B, hidden * len(layers)] float32 pooled video-token states.

    ``seconds_per_frame`` (the spacing of a clip's frames) becomes the
    ``second_per_grid_ts`` of models whose forward takes it (Qwen2.5-VL's
    time-aware rope); without it they assume 1 s per temporal patch.
    """
    config = network.config
    videos = [
        torch.from_numpy(np.rint(clip * 255).astype(np.uint8)).permute(0, 3, 1, 2) for clip in clips
    ]
    inputs = processor(videos=videos, return_tensors="pt", do_resize=False, do_sample_frames=False)
    grid = inputs["video_grid_thw"]
    merge = int(config.vision_config.spatial_merge_size)
    ids = video_token_ids(config, grid[0], merge, separates_frames(processor))
    input_ids = torch.tensor([ids] * len(videos))
    is_video = input_ids == config.video_token_id
    model = network.base_model  # the multimodal model under the language-model head
    kwargs: dict[str, Any] = {
        "input_ids": input_ids.to(runtime.device),
        "mm_token_type_ids": (is_video.int() * VIDEO_TOKEN_TYPE).to(runtime.device),
        "pixel_values_videos": runtime.to_device(inputs["pixel_values_videos"]).to(network.dtype),
        "video_grid_thw": grid.to(runtime.device),
        "output_hidden_states": True,
    }
    if (
        seconds_per_frame is not None
        and "second_per_grid_ts" in inspect.signature(model.forward).parameters
    ):
        step = float(config.vision_config.temporal_patch_size) * seconds_per_frame
        kwargs["second_per_grid_ts"] = torch.full((len(videos),), step, device=runtime.device)
    with torch.inference_mode(), runtime.autocast():
        out = model(**kwargs)
    video = is_video[0].nonzero().squeeze(1).to(runtime.device)  # the same positions in every row
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
    """Write per-clip video-language model embeddings of ``video_path`` to ``out_path`` (streamed)."""
    emit = rt.emitter(log)
    check_clip_shape(clip_frames, height, width, FIELD)
    runtime = rt.select_runtime(device, threads)
    network, processor = load_qwen2vl(model, runtime)
    check_clip_shape(clip_frames, height, width, FIELD, units=(side_unit(processor),))
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

    fps = video_fps(video_path)

    def embed(clips: np.ndarray) -> torch.Tensor:
        return embed_clips(network, processor, clips, layers, runtime, sampling_rate / fps)

    batch = rt.auto_batch_size(
        lambda n: embed(np.zeros((n, clip_frames, height, width, 3), np.float32)),
        runtime,
        batch_size,
    )
    prep = rt.Preprocess(shortest_edge=min(height, width), crop=(height, width))
    emit(
        f"{video_path}: {model} ({type(network).__name__}) on {runtime.device} ({runtime.dtype_name}), clips of {clip_frames} "
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
