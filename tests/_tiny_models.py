"""Tiny random-weight models of the real classes (tests): the demo's own builders, plus
the other video-language families, two models that cannot take video, and two audio
encoders (Wav2Vec2, Whisper).

Loaded through the library's own ``from_pretrained`` path; nothing is downloaded.
Each builder saves the model (and its processor, where it has one) with
``save_pretrained`` into ``path`` and returns ``path``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from neurovid.demo.models import save_tiny_qwen2vl, save_tiny_vit_classifier

__all__ = [
    "save_tiny_image_only_vlm",
    "save_tiny_qwen2vl",
    "save_tiny_qwen3vl",
    "save_tiny_qwen25vl",
    "save_tiny_text_only",
    "save_tiny_vit_classifier",
    "save_tiny_wav2vec2",
    "save_tiny_whisper",
]

#: 32-wide, 4-head blocks (as in :func:`neurovid.demo.models.save_tiny_qwen2vl`).
SMALL = {"hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64}
#: A 2-layer language model with M-RoPE sections summing to head_dim / 2 = 4.
TEXT = {
    "vocab_size": 160,
    "num_hidden_layers": 2,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
    "bos_token_id": 0,
    "eos_token_id": 1,
    **SMALL,
}
#: Qwen-VL special tokens inside the 160-token vocabulary.
TOKEN_IDS = {
    "image_token_id": 151,
    "video_token_id": 152,
    "vision_start_token_id": 153,
    "vision_end_token_id": 154,
}
#: 2-block vision towers, 32 wide, temporal patch 2, spatial merge 2.
VISION = {"depth": 2, "hidden_size": 32, "num_heads": 4, "spatial_merge_size": 2, "temporal_patch_size": 2}  # fmt: skip


def save_tiny_qwen25vl(path: str | Path, seed: int = 0) -> Path:
    """A 2-layer Qwen2_5_VLForConditionalGeneration + Qwen2-VL video processor (patch 14 x merge 2 = 28).

    Window attention in block 0 (window 56 px = 2 x 2 merged tokens), full
    attention in block 1; 2 rope positions per second (``tokens_per_second``).
    """
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    torch.manual_seed(seed)
    config = Qwen2_5_VLConfig(
        text_config={**TEXT, "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2]}},
        vision_config={
            **VISION, "patch_size": 14, "out_hidden_size": 32, "intermediate_size": 64,
            "window_size": 56, "fullatt_block_indexes": [1], "tokens_per_second": 2,
        },
        **TOKEN_IDS,
    )  # fmt: skip
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(path)
    Qwen2VLVideoProcessor(cap_pixels_per_frame=True).save_pretrained(path)
    return Path(path)


def save_tiny_qwen3vl(path: str | Path, seed: int = 0) -> Path:
    """A 2-layer Qwen3VLForConditionalGeneration + Qwen3-VL video processor (patch 16 x merge 2 = 32).

    Deepstack features from vision block 1 are added to the first language layer.
    """
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    torch.manual_seed(seed)
    config = Qwen3VLConfig(
        text_config={
            **TEXT, "head_dim": 8,
            "rope_scaling": {"rope_type": "default", "mrope_section": [1, 1, 2], "mrope_interleaved": True},
        },
        vision_config={
            **VISION, "patch_size": 16, "out_hidden_size": 32, "intermediate_size": 64,
            "deepstack_visual_indexes": [1], "num_position_embeddings": 64,
        },
        **TOKEN_IDS,
    )  # fmt: skip
    Qwen3VLForConditionalGeneration(config).save_pretrained(path)
    Qwen3VLVideoProcessor(cap_pixels_per_frame=True).save_pretrained(path)
    return Path(path)


def save_tiny_text_only(path: str | Path, seed: int = 0) -> Path:
    """A 2-layer Qwen2ForCausalLM: a language model with no vision input at all."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    Qwen2ForCausalLM(Qwen2Config(**TEXT)).save_pretrained(path)
    return Path(path)


def save_tiny_image_only_vlm(path: str | Path, seed: int = 0) -> Path:
    """A LlavaForConditionalGeneration (1-layer CLIP tower + Qwen2 text model): images, no video."""
    from transformers import (
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        Qwen2Config,
    )

    torch.manual_seed(seed)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(image_size=28, patch_size=14, num_hidden_layers=1, **SMALL),
        text_config=Qwen2Config(**TEXT),
        image_token_id=TOKEN_IDS["image_token_id"],
    )
    LlavaForConditionalGeneration(config).save_pretrained(path)
    return Path(path)


def save_tiny_wav2vec2(path: str | Path, seed: int = 0) -> Path:
    """A 2-layer Wav2Vec2Model (32 wide; 2-layer conv front end, 20 samples per frame at 16 kHz)
    and its Wav2Vec2FeatureExtractor (16 kHz, per-input normalization)."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(seed)
    config = Wav2Vec2Config(
        num_hidden_layers=2, conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 4),
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=10, **SMALL,
    )  # fmt: skip
    Wav2Vec2Model(config).save_pretrained(path)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(path)
    return Path(path)


def save_tiny_whisper(path: str | Path, seed: int = 0) -> Path:
    """A WhisperModel with a 2-layer, 32-wide encoder over a 2 s context (16 mel bins, 100
    encoder frames) and its WhisperFeatureExtractor (chunk_length 2 s)."""
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    torch.manual_seed(seed)
    config = WhisperConfig(
        vocab_size=64, num_mel_bins=16, d_model=32, encoder_layers=2, encoder_attention_heads=4,
        encoder_ffn_dim=64, decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=64,
        max_source_positions=100, max_target_positions=16, pad_token_id=0, bos_token_id=1,
        eos_token_id=2, decoder_start_token_id=1,
    )  # fmt: skip
    WhisperModel(config).save_pretrained(path)
    WhisperFeatureExtractor(feature_size=16, chunk_length=2).save_pretrained(path)
    return Path(path)
