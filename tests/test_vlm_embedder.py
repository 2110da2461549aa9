"""The video-language embedder (``qwen2vl`` extractor, behavior stage 2) across model families.

Tiny random-weight Qwen2-VL, Qwen2.5-VL and Qwen3-VL models saved locally
(tests/_tiny_models.py) embed the same clips through the same Auto-class code
path: shapes, clip times, same bytes twice, provenance naming the class loaded;
Qwen2.5-VL's clip timing (``second_per_grid_ts``) reaches its rope. A
text-only model and an image-only VLM are refused with an InputError naming the
model, the setting and the fix, before their weights load.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _tiny_models import (
    save_tiny_image_only_vlm,
    save_tiny_qwen2vl,
    save_tiny_qwen3vl,
    save_tiny_qwen25vl,
    save_tiny_text_only,
)

from neurovid.behavior.actions import SegmentEmbedder
from neurovid.errors import InputError
from neurovid.features import runtime as rt
from neurovid.features.qwen2vl import embed_clips, load_qwen2vl, qwen2vl_features
from neurovid.io import read_features
from neurovid.video import write_video

FPS = 15
N_FRAMES = 30  # 2 s
BUILDERS = {
    "qwen2vl": save_tiny_qwen2vl,
    "qwen25vl": save_tiny_qwen25vl,
    "qwen3vl": save_tiny_qwen3vl,
    "text": save_tiny_text_only,
    "image": save_tiny_image_only_vlm,
}
#: name -> (class loaded by AutoModelForImageTextToText, frame side: a multiple of patch x merge)
FAMILIES = {
    "qwen2vl": ("Qwen2VLForConditionalGeneration", 56),
    "qwen25vl": ("Qwen2_5_VLForConditionalGeneration", 56),
    "qwen3vl": ("Qwen3VLForConditionalGeneration", 64),
}
FIX = (
    "Fix: set {field} to a video-language model of the Qwen-VL family (image-text-to-text with a "
    "video processor), e.g. Qwen/Qwen2-VL-2B-Instruct, Qwen/Qwen2.5-VL-3B-Instruct or "
    "Qwen/Qwen3-VL-2B-Instruct: a hub id or a save_pretrained folder."
)


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 s of a moving random texture, 64x80 at 15 fps."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("vlm") / "clip.mp4"
    write_video((np.roll(base, (i, 2 * i), axis=(0, 1)) for i in range(N_FRAMES)), path, FPS)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every tiny model saved once, as ``save_pretrained`` folders."""
    root = tmp_path_factory.mktemp("vlm-models")
    return {name: build(root / name) for name, build in BUILDERS.items()}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_family_embeds_clips_through_the_same_path(
    family: str, video: Path, models: dict[str, Path], tmp_path: Path
) -> None:
    model_class, side = FAMILIES[family]
    settings = {
        "model": str(models[family]), "clip_frames": 4, "sampling_rate": 2, "stride": 8,
        "height": side, "width": side, "layers": [0, -1], "batch_size": 2, "device": "cpu",
    }  # fmt: skip
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    attrs = qwen2vl_features(video, a, **settings)
    qwen2vl_features(video, b, **settings)
    assert a.read_bytes() == b.read_bytes()
    fs = read_features(a)
    starts = np.arange(0, N_FRAMES - 7 + 1, 8)  # 4 frames every 2nd span 7 frames: 0, 8, 16
    assert fs.features.shape == (3, 64)  # 2 layers x 32 wide
    np.testing.assert_allclose(fs.times, (starts + 3.5) / FPS)
    assert fs.features.dtype == np.float32 and np.isfinite(fs.features).all()
    assert attrs["model_class"] == fs.attrs["model_class"] == model_class
    assert fs.attrs["extractor"] == "qwen2vl" and fs.attrs["model_id"] == str(models[family])
    assert fs.attrs["pooling"] == "mean over video tokens" and fs.attrs["layer"] == [0, -1]
    # Different clips give different last-layer embeddings (the video tokens reach the output).
    assert np.abs(np.diff(fs.features[:, 32:], axis=0)).max() > 1e-3


def test_clip_timing_reaches_only_the_models_that_take_it(models: dict[str, Path]) -> None:
    """Qwen2.5-VL spaces a clip's temporal patches by its seconds per frame; Qwen2-VL has no such input."""
    runtime = rt.select_runtime("cpu", 1)
    clips = np.random.default_rng(1).random((2, 4, 56, 56, 3)).astype(np.float32)
    rows = {}
    for family in ("qwen2vl", "qwen25vl"):
        network, processor = load_qwen2vl(str(models[family]), runtime)
        rows[family] = [
            embed_clips(network, processor, clips, [-1], runtime, spf).numpy()
            for spf in (None, 0.5, 1.0)
        ]  # 2 rope positions per second x 2 frames per patch: 2 (default 1 s), 2, 4 per patch
        assert rows[family][0].shape == (2, 32)
    qwen2, qwen25 = rows["qwen2vl"], rows["qwen25vl"]
    assert qwen2[0].tobytes() == qwen2[1].tobytes() == qwen2[2].tobytes()
    assert qwen25[0].tobytes() == qwen25[1].tobytes()  # 1 s per patch is the model's default
    assert np.abs(qwen25[2] - qwen25[0]).max() > 1e-4


@pytest.mark.parametrize(
    ("name", "config", "reason"),
    [
        (
            "text", "Qwen2Config, model_type 'qwen2'",
            "it is not an image-text-to-text model (AutoModelForImageTextToText has no class for it)",
        ),
        (
            "image", "LlavaConfig, model_type 'llava'",
            "its config has no video token (video_token_id): it reads text and images only",
        ),
    ],
    ids=["text-only", "image-only"],
)  # fmt: skip
def test_models_without_video_input_are_refused(
    name: str, config: str, reason: str, video: Path, models: dict[str, Path], tmp_path: Path
) -> None:
    model = str(models[name])
    message = (
        f"{model} [{{field}}]: the model {model!r} ({config}) cannot take video input: {reason}. "
        + FIX
    )
    with pytest.raises(InputError) as info:
        qwen2vl_features(video, tmp_path / "x.h5", model=model, clip_frames=4, height=56, width=56)
    assert str(info.value) == message.format(field="features.qwen2vl.model")
    embedder = SegmentEmbedder(model=model, clip_frames=4, height=56, width=56, device="cpu")
    with pytest.raises(InputError) as info:
        embedder.load()
    assert str(info.value) == message.format(field="behavior.actions.embedder.model")
    assert not list(tmp_path.iterdir())


def test_frame_sides_follow_the_loaded_models_patch_size(
    video: Path, models: dict[str, Path], tmp_path: Path
) -> None:
    """Before loading: 28 or 32 (any family); after: the model's own patch x merge."""
    with pytest.raises(
        InputError, match=r"\[features.qwen2vl\].*height=50.*multiples of 28 or 32 "
    ):
        qwen2vl_features(video, tmp_path / "x.h5", model="x", height=50)
    with pytest.raises(InputError) as info:
        qwen2vl_features(
            video, tmp_path / "x.h5", model=str(models["qwen3vl"]), height=56, width=56
        )
    assert str(info.value) == (
        "<input> [features.qwen2vl]: clip_frames=8, height=56, width=56: the video-language model "
        "needs an even number of frames (>= 2) and sizes that are multiples of 32 (its patch x "
        "merge size: 28 for Qwen2-VL / Qwen2.5-VL, 32 for Qwen3-VL). Fix: e.g. clip_frames: 8, "
        "height: 224, width: 224."
    )
    assert not list(tmp_path.iterdir())
