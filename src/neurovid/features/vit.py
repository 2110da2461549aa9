"""Per-frame ViT / DINOv2 features (transformers), streamed into the features contract.

Any transformers image backbone with CLS + patch tokens works (``ViTModel``,
``Dinov2Model``, ``Dinov2WithRegistersModel``, loaded with ``AutoModel``): each
frame is preprocessed as the model's own image processor says (resize / centre
crop / normalize, :class:`~neurovid.features.runtime.Preprocess`), and for each
configured layer (indices into ``hidden_states``: 0 = patch embeddings, -1 =
last block, before any final layer norm) the CLS token and/or the mean of the
patch tokens is kept (intermediate layers matter for neural prediction). One
row per frame, ``times`` = frame centres.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from neurovid.features import runtime as rt
from neurovid.io import PathLike
from neurovid.video import video_fps

FIELD = "features.vit"


def load_vit(model: str) -> tuple[torch.nn.Module, rt.Preprocess]:
    """The backbone (eval mode, fp32) and its preprocessing, from a hub id or a local directory."""
    from transformers import AutoImageProcessor, AutoModel

    processor = rt.from_pretrained(AutoImageProcessor.from_pretrained, model, f"{FIELD}.model")
    backbone = rt.from_pretrained(
        AutoModel.from_pretrained, model, f"{FIELD}.model", dtype=torch.float32
    )
    return backbone.eval(), rt.Preprocess.from_processor(processor)


def prefix_tokens(config: Any) -> int:
    """CLS plus register tokens at the start of the sequence (DINOv2 with registers has 4)."""
    return 1 + int(getattr(config, "num_register_tokens", 0) or 0)


def vit_features(
    video_path: PathLike,
    out_path: PathLike,
    *,
    model: str,
    layers: Sequence[int] = (-1,),
    pooling: Sequence[str] = ("cls", "mean"),
    batch_size: int | str = 32,
    device: str = "auto",
    threads: int = 1,
    extra_attrs: Mapping[str, Any] | None = None,
    log: logging.Logger | rt.Emit | None = None,
) -> dict[str, Any]:
    """Write per-frame features of ``video_path`` to ``out_path`` (streamed); return the attrs.

    ``features`` [n_frames, hidden * len(layers) * len(pooling)] float32 (column
    blocks described by the ``layout`` attr), ``times`` frame centres (s).
    """
    emit = rt.emitter(log)
    runtime = rt.select_runtime(device, threads)
    backbone, prep = load_vit(model)
    backbone.to(runtime.device)
    rt.require_clip(
        video_path, 1, 1, field=FIELD, fix="re-run the standardize step on a valid video."
    )
    n_hidden = backbone.config.num_hidden_layers + 1
    layers = rt.check_layers(layers, n_hidden, f"{FIELD}.layers")
    pooling = rt.check_pooling(pooling, f"{FIELD}.pooling")
    prefix = prefix_tokens(backbone.config)
    hidden = int(backbone.config.hidden_size)
    width = hidden * len(layers) * len(pooling)

    @torch.inference_mode()
    def embed(pixels: torch.Tensor) -> torch.Tensor:
        with runtime.autocast():
            out = backbone(pixel_values=pixels, output_hidden_states=True)
        return rt.pool_tokens(out.hidden_states, layers, pooling, prefix)

    (rh, rw), (_, _, ch, cw) = prep.plan(*rt.video_size(video_path))
    batch = rt.auto_batch_size(
        lambda n: embed(torch.zeros(n, 3, ch, cw, device=runtime.device)), runtime, batch_size
    )
    fps = video_fps(video_path)
    emit(
        f"{video_path}: {model} on {runtime.device} ({runtime.dtype_name}), layers {layers}, "
        f"pooling {pooling}, frames {rh}x{rw} -> crop {ch}x{cw}, batch {batch}"
    )
    progress = rt.Progress(emit, str(video_path))
    chunks = rt.frame_chunks(video_path, prep, chunk=batch)
    with rt.FeatureWriter(out_path, width) as writer:
        for times, pixels in rt.prefetch(rt.batched(chunks, batch)):
            features = embed(runtime.to_device(pixels)).cpu().numpy()
            writer.append(features, times)
            progress.update(writer.rows)
        progress.finish()
        attrs = {
            "extractor": "vit",
            "model_id": model,
            "revision": rt.weights_revision(model, backbone),
            "model_class": type(backbone).__name__,
            "layer": list(layers),
            "pooling": list(pooling),
            "layout": rt.layout(layers, pooling, hidden),
            "dtype": runtime.dtype_name,
            "device": runtime.device.type,
            "batch_size": batch,
            "fps": fps,
            "n_frames": writer.rows,
            "duration": writer.rows / fps,
            "preprocess": prep.describe(),
            **dict(extra_attrs or {}),
        }
        writer.close(attrs)
    return attrs
