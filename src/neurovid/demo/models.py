"""Tiny random-weight models of the real classes, for the demo and the tests.

The demo has no network, so its behavior stage cannot start from published
weights. These builders save a small model of the same class as the real one
(``save_pretrained`` + its processor), which the pipeline then loads through its
normal ``from_pretrained`` path. Their numbers only show that the pipeline runs:
the ViT classifier learns the demo's rendered behaviors from scratch, and the
random Qwen2-VL gives arbitrary (but deterministic) clip embeddings.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from neurovid.io import atomic_dir

NOTE = "random weights built by neurovid.demo.models (demo only; not a trained model)"


def _note(path: Path, kind: str, seed: int) -> None:
    (path / "neurovid_demo_model.json").write_text(
        json.dumps({"kind": kind, "seed": seed, "note": NOTE}, indent=2) + "\n"
    )


def build_tiny_vit_classifier(seed: int = 0, num_labels: int = 2) -> tuple[torch.nn.Module, object]:
    """A 2-layer, 32-wide ViTForImageClassification on 32x32 images, and its processor."""
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=num_labels,
    )
    return ViTForImageClassification(config), ViTImageProcessor(size={"height": 32, "width": 32})


def save_tiny_vit_classifier(path: str | Path, seed: int = 0, num_labels: int = 2) -> Path:
    """Save :func:`build_tiny_vit_classifier` to ``path`` (atomically)."""
    model, processor = build_tiny_vit_classifier(seed, num_labels)
    with atomic_dir(path) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        _note(Path(tmp), "ViTForImageClassification", seed)
    return Path(path)


def save_tiny_qwen2vl(path: str | Path, seed: int = 0) -> Path:
    """A 2-layer, 32-wide Qwen2VLForConditionalGeneration + its video processor in ``path``.

    Patch 14, merge 2, temporal patch 2: clips need an even frame count and
    sides that are multiples of 28.
    """
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    torch.manual_seed(seed)
    small = {"hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64}
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": 160,
            "num_hidden_layers": 2,
            "num_key_value_heads": 2,
            "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]},
            "max_position_embeddings": 1024,
            "bos_token_id": 0,
            "eos_token_id": 1,
            **small,
        },
        vision_config={
            "depth": 2, "embed_dim": 32, "hidden_size": 32, "num_heads": 4, "mlp_ratio": 2,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
        },
        image_token_id=151, video_token_id=152, vision_start_token_id=153,
        vision_end_token_id=154, bos_token_id=0, eos_token_id=1,
    )  # fmt: skip
    with atomic_dir(path) as tmp:
        Qwen2VLForConditionalGeneration(config).save_pretrained(tmp)
        Qwen2VLVideoProcessor(cap_pixels_per_frame=True).save_pretrained(tmp)
        _note(Path(tmp), "Qwen2VLForConditionalGeneration", seed)
    return Path(path)
