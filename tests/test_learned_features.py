"""Learned extractors on tiny random-weight models saved locally and loaded through the real path.

Each extractor: shapes, times (frame / clip centres within the video), provenance,
same bytes on a rerun; plus missing-model errors, the clip windows, the streaming
writer, memory that does not grow with the video's length, and the CUDA path
(skipped without a GPU).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import namedlist, run_script

from neurovid.errors import InputError
from neurovid.features import runtime as rt
from neurovid.features.qwen2vl import qwen2vl_features
from neurovid.features.slowfast import build_slowfast, slowfast_features
from neurovid.features.vit import vit_features
from neurovid.features.vivit import vivit_features
from neurovid.io import read_features, read_h5
from neurovid.video import ffmpeg_exe, iter_frames, write_video

REPO = Path(__file__).resolve().parents[1]
FPS = 15
N_FRAMES = 45  # 3 s
SLOWFAST_ARCH = {"stem_dim_outs": [8, 1]}  # 1/8 of R50's widths: 288-D pooled features


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of a moving random texture, 48x64 at 15 fps."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("learned") / "clip.mp4"
    write_video((np.roll(base, (i, 2 * i), axis=(0, 1)) for i in range(N_FRAMES)), path, FPS)
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random-weight models of the real classes, saved as the hub would ship them."""
    from transformers import (
        BitImageProcessor,
        Dinov2Config,
        Dinov2Model,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        ViTConfig,
        ViTImageProcessor,
        ViTModel,
        VivitConfig,
        VivitImageProcessor,
        VivitModel,
    )
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("models")
    small = {"hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64}
    paths = {name: root / name for name in ("dinov2", "vit", "vivit", "qwen2vl")}
    Dinov2Model(
        Dinov2Config(num_hidden_layers=3, image_size=32, patch_size=8, **small)
    ).save_pretrained(paths["dinov2"])
    BitImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(paths["dinov2"])
    ViTModel(ViTConfig(num_hidden_layers=2, image_size=32, patch_size=8, **small)).save_pretrained(
        paths["vit"]
    )
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(paths["vit"])
    vivit = VivitConfig(
        image_size=32, num_frames=8, tubelet_size=[2, 8, 8], num_hidden_layers=2, **small
    )
    VivitModel(vivit, add_pooling_layer=False).save_pretrained(paths["vivit"])
    VivitImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    ).save_pretrained(paths["vivit"])
    qwen = Qwen2VLConfig(
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
    Qwen2VLForConditionalGeneration(qwen).save_pretrained(paths["qwen2vl"])
    Qwen2VLVideoProcessor(cap_pixels_per_frame=True).save_pretrained(paths["qwen2vl"])
    slowfast = build_slowfast(size=32, clip_frames=8, arch=SLOWFAST_ARCH)
    paths["slowfast"] = root / "slowfast.pyth"
    torch.save({"model_state": slowfast.state_dict()}, paths["slowfast"])
    return paths


def run_rule_script(name: str, video: Path, out: Path, settings: dict) -> str:
    """Run scripts/{name}_features.py as Snakemake would; returns the log text."""
    smk = SimpleNamespace(
        input=namedlist(video=str(video)),
        output=namedlist([str(out)]),
        params=namedlist(settings=settings),
        log=namedlist([str(out.with_suffix(".log"))]),
        threads=1,
    )
    run_script(str(REPO / "scripts" / f"{name}_features.py"), {"snakemake": smk})
    return out.with_suffix(".log").read_text()


def check_common(fs, extractor: str, model: str) -> None:
    """times increasing, inside the video; provenance and model attributes present."""
    assert np.all(np.diff(fs.times) > 0)
    assert 0 < fs.times[0] and fs.times[-1] < fs.attrs["duration"] == pytest.approx(3.0)
    assert fs.features.dtype == np.float32 and np.isfinite(fs.features).all()
    assert fs.attrs["extractor"] == extractor and fs.attrs["model_id"] == model
    assert fs.attrs["revision"].startswith("sha256:") and len(fs.attrs["revision"]) == 71
    assert (fs.attrs["dtype"], fs.attrs["device"]) == ("float32", "cpu")
    prov = fs.attrs["provenance"]
    assert prov["step"] == extractor
    assert prov["inputs"]["video"]["digest"].startswith("sha256:")
    assert prov["versions"]["torch"] == torch.__version__.split("+")[0]
    assert prov["versions"]["transformers"] != "not installed"


def test_vit_dinov2_script_shapes_times_provenance_determinism(
    video: Path, models: dict[str, Path], tmp_path: Path
) -> None:
    settings = {"model": str(models["dinov2"]), "layers": [1, -1], "pooling": ["cls", "mean"]}
    settings["batch_size"] = 16  # 45 frames: 16 + 16 + 13
    outs = [tmp_path / "a.h5", tmp_path / "b.h5"]
    log = run_rule_script("vit", video, outs[0], settings)
    run_rule_script("vit", video, outs[1], settings)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    fs = read_features(outs[0])
    assert fs.features.shape == (N_FRAMES, 32 * 2 * 2)
    np.testing.assert_allclose(fs.times, (np.arange(N_FRAMES) + 0.5) / FPS)
    check_common(fs, "vit", str(models["dinov2"]))
    assert fs.attrs["layer"] == [1, -1] and fs.attrs["model_class"] == "Dinov2Model"
    assert [b["start"] for b in fs.attrs["layout"]] == [0, 32, 64, 96]
    assert fs.attrs["preprocess"]["crop"] == [32, 32]
    assert fs.attrs["provenance"]["params"]["layers"] == [1, -1]
    assert f"{N_FRAMES} frames done" in log and "frames/s" in log and "(float32)" in log


def test_vit_features_are_the_models_cls_and_mean_tokens(
    models: dict[str, Path], tmp_path: Path
) -> None:
    """At the processor's own size (no resize) the rows equal transformers' processor + model."""
    from transformers import AutoImageProcessor, AutoModel

    rng = np.random.default_rng(2)
    path = tmp_path / "square.mp4"
    write_video((rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(6)), path, FPS)
    out = tmp_path / "vit.h5"
    vit_features(path, out, model=str(models["vit"]), layers=[0, -1], batch_size=4)
    fs = read_features(out)
    decoded = np.concatenate([f for _, f in iter_frames(path, gray=False)])
    frames = np.rint(decoded * 255).astype(np.uint8)
    processor = AutoImageProcessor.from_pretrained(models["vit"])
    model = AutoModel.from_pretrained(models["vit"]).eval()
    with torch.no_grad():
        pixels = processor(images=list(frames), return_tensors="pt")["pixel_values"]
        hidden = model(pixel_values=pixels, output_hidden_states=True).hidden_states
    expected = torch.cat(
        [hidden[0][:, 0], hidden[0][:, 1:].mean(1), hidden[-1][:, 0], hidden[-1][:, 1:].mean(1)],
        dim=1,
    )
    np.testing.assert_allclose(fs.features, expected.numpy(), rtol=0, atol=1e-4)


def test_vivit_clips_tokens_determinism(
    video: Path, models: dict[str, Path], tmp_path: Path
) -> None:
    settings = {"model": str(models["vivit"]), "stride": 4, "token_length": 4, "batch_size": 3}
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    log = run_rule_script("vivit", video, a, settings)
    run_rule_script("vivit", video, b, settings)
    assert a.read_bytes() == b.read_bytes()
    fs = read_features(a)
    starts = np.arange(0, N_FRAMES - 8 + 1, 4)  # 8-frame clips every 4 frames: 10 clips
    np.testing.assert_allclose(fs.times, (starts + 4) / FPS)  # centre of frames s..s+7
    assert fs.features.shape == (len(starts), 64)
    check_common(fs, "vivit", str(models["vivit"]))
    assert (fs.attrs["clip_frames"], fs.attrs["stride"]) == (8, 4)
    arrays, _ = read_h5(a)
    assert arrays["tokens"].shape == (len(starts), 4, 32)
    assert "10 rows" in log


def test_slowfast_pooled_logits_classes(
    video: Path, models: dict[str, Path], tmp_path: Path
) -> None:
    settings = {
        "checkpoint": str(models["slowfast"]), "clip_frames": 8, "sampling_rate": 2, "stride": 4,
        "size": 32, "batch_size": 3, "arch": SLOWFAST_ARCH,
    }  # fmt: skip
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    run_rule_script("slowfast", video, a, settings)
    run_rule_script("slowfast", video, b, settings)
    assert a.read_bytes() == b.read_bytes()
    arrays, attrs = read_h5(a)
    span = 7 * 2 + 1  # 8 frames every 2nd frame
    starts = np.arange(0, N_FRAMES - span + 1, 4)
    np.testing.assert_allclose(arrays["times"], (starts + 7.5) / FPS)
    assert arrays["features"].shape == arrays["pooled"].shape == (len(starts), 288)
    np.testing.assert_array_equal(arrays["features"], arrays["pooled"])
    assert arrays["logits"].shape == (len(starts), 400)
    assert list(arrays["class_names"][:2]) == ["abseiling", "air drumming"]
    assert len(set(arrays["class_names"])) == 400 and arrays["class_names"][-1] == "zumba"
    # The head is linear after pooling: logits = proj(pooled features).
    model = build_slowfast(size=32, clip_frames=8, arch=SLOWFAST_ARCH)
    model.load_state_dict(torch.load(models["slowfast"])["model_state"])
    proj = model.blocks[-1].proj
    with torch.no_grad():
        expected = proj(torch.from_numpy(arrays["pooled"])).numpy()
    np.testing.assert_allclose(arrays["logits"], expected, rtol=0, atol=1e-4)
    assert attrs["revision"].startswith("sha256:") and attrs["alpha"] == 4
    assert attrs["provenance"]["versions"]["pytorchvideo"] == "0.1.5"


def test_qwen2vl_clip_embeddings(video: Path, models: dict[str, Path], tmp_path: Path) -> None:
    settings = {
        "model": str(models["qwen2vl"]), "clip_frames": 4, "sampling_rate": 2, "stride": 8,
        "height": 56, "width": 56, "layers": [0, -1], "batch_size": 2,
    }  # fmt: skip
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    run_rule_script("qwen2vl", video, a, settings)
    run_rule_script("qwen2vl", video, b, settings)
    assert a.read_bytes() == b.read_bytes()
    fs = read_features(a)
    starts = np.arange(0, N_FRAMES - 7 + 1, 8)  # 4 frames every 2nd: spans 7 frames
    np.testing.assert_allclose(fs.times, (starts + 3.5) / FPS)
    assert fs.features.shape == (len(starts), 64)
    check_common(fs, "qwen2vl", str(models["qwen2vl"]))
    assert fs.attrs["model_class"] == "Qwen2VLForConditionalGeneration"
    # Different clips give different embeddings (the video tokens reach the output).
    assert np.abs(np.diff(fs.features[:, 32:], axis=0)).max() > 1e-3


def test_missing_models_name_the_id_and_the_fix(video: Path, tmp_path: Path) -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    with pytest.raises(InputError, match=r"nvtest/not-a-model.*not available offline.*hf download"):
        vit_features(video, tmp_path / "x.h5", model="nvtest/not-a-model")
    with pytest.raises(InputError, match=r"no_such_dir.*\[features.vivit.model\].*save_pretrained"):
        vivit_features(video, tmp_path / "x.h5", model=str(tmp_path / "no_such_dir"))
    with pytest.raises(InputError, match=r"missing.pyth.*does not exist.*SLOWFAST_8x8_R50"):
        slowfast_features(video, tmp_path / "x.h5", checkpoint=str(tmp_path / "missing.pyth"))
    with pytest.raises(InputError, match=r"multiples of 28"):
        qwen2vl_features(video, tmp_path / "x.h5", model="x", height=50)
    assert not (tmp_path / "x.h5").exists()


def test_bad_layers_and_pooling(video: Path, models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"\[features.vit.layers\].*4 hidden states"):
        vit_features(video, tmp_path / "x.h5", model=str(models["dinov2"]), layers=[7])
    with pytest.raises(InputError, match=r"\[features.vit.pooling\]"):
        vit_features(video, tmp_path / "x.h5", model=str(models["dinov2"]), pooling=["max"])
    assert not list(tmp_path.iterdir())


def test_windows_and_short_videos() -> None:
    times = (np.arange(10) + 0.5) / 10
    frames = np.arange(10, dtype=np.float32)[:, None]
    chunks = [(times[:3], frames[:3]), (times[3:], frames[3:])]
    windows = list(rt.iter_windows(chunks, clip_frames=3, stride=2, sampling_rate=2))
    assert [w.indices.tolist() for w in windows] == [[0, 2, 4], [2, 4, 6], [4, 6, 8]]
    assert [w.frames[:, 0].tolist() for w in windows][1] == [2, 4, 6]
    np.testing.assert_allclose([w.time for w in windows], [0.25, 0.45, 0.65])
    short = list(rt.iter_windows([(times[:2], frames[:2])], clip_frames=4, stride=4))
    assert len(short) == 1 and short[0].frames[:, 0].tolist() == [0, 1, 1, 1]


def test_feature_writer_is_atomic_and_checks_times(tmp_path: Path) -> None:
    out = tmp_path / "f.h5"
    with pytest.raises(ValueError, match="strictly increasing"):
        with rt.FeatureWriter(out, 2) as writer:
            writer.append(np.ones((2, 2)), np.array([0.1, 0.2]))
            writer.append(np.ones((1, 2)), np.array([0.2]))
    assert not list(tmp_path.iterdir())
    with rt.FeatureWriter(out, 2) as writer:
        for start in range(0, 600, 100):  # several appends across HDF5 chunks
            writer.append(np.full((100, 2), start), np.arange(start, start + 100) + 0.5)
        writer.close({"extractor": "x", "duration": 600.0, "layer": [1, 2]})
    fs = read_features(out)
    assert fs.features.shape == (600, 2) and fs.features[250, 0] == 200
    assert fs.attrs["layer"] == [1, 2]


MEMORY_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    from neurovid.features.vit import vit_features
    attrs = vit_features(sys.argv[1], sys.argv[2], model=sys.argv[3], batch_size=64)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mb": peak_mb, "rows": attrs["n_frames"]}))
    """
)


def test_memory_does_not_grow_with_video_length(models: dict[str, Path], tmp_path: Path) -> None:
    """A 20-minute video peaks within 1.5x the RSS of a 1-minute one (each in a fresh process).

    64x64 frames: holding the 20-minute video's decoded frames (18,000 x 64 x 64 x 3
    float32) would add ~880 MB, about twice the baseline of a torch process.
    """
    peaks = {}
    for minutes in (1, 20):
        path = tmp_path / f"{minutes}min.mp4"
        subprocess.run(
            [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size=64x64:rate={FPS}",
             "-t", str(60 * minutes), "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt",
             "yuv420p", str(path)],
            check=True,
        )  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-c", MEMORY_CHILD, str(path), str(tmp_path / f"{minutes}.h5"),
             str(models["dinov2"])],
            capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["rows"] == 60 * minutes * FPS
        peaks[minutes] = result["peak_mb"]
    print(f"peak RSS: 1 min {peaks[1]:.0f} MB, 20 min {peaks[20]:.0f} MB")
    assert peaks[20] <= 1.5 * peaks[1], peaks


@pytest.mark.skipif(
    not torch.cuda.is_available(),
    reason="needs a CUDA GPU (bf16 autocast, pinned memory, batch sizing from free memory)",
)
def test_cuda_path_bf16_pinned_auto_batch(video: Path, models: dict[str, Path], tmp_path: Path) -> None:  # fmt: skip
    runtime = rt.select_runtime("auto", 1)
    assert runtime.cuda and runtime.autocast_dtype in (torch.bfloat16, torch.float16)
    pinned = runtime.to_device(np.zeros((4, 3), np.float32))
    assert pinned.is_cuda
    gpu = vit_features(video, tmp_path / "gpu.h5", model=str(models["dinov2"]), batch_size="auto")
    cpu = vit_features(video, tmp_path / "cpu.h5", model=str(models["dinov2"]), device="cpu")
    assert gpu["device"] == "cuda" and gpu["dtype"] in ("bfloat16", "float16")
    assert gpu["batch_size"] >= 64 and cpu["dtype"] == "float32"
    a, b = read_features(tmp_path / "gpu.h5"), read_features(tmp_path / "cpu.h5")
    np.testing.assert_array_equal(a.times, b.times)
    cosine = (a.features * b.features).sum(1) / (
        np.linalg.norm(a.features, axis=1) * np.linalg.norm(b.features, axis=1)
    )
    assert cosine.min() > 0.99


def test_config_sections_are_validated(repo: Path) -> None:
    """The default config validates; an enabled extractor needs its section, with known keys."""
    import copy

    import yaml
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    config = yaml.safe_load((repo / "config.yaml").read_text())
    assert config["features"]["extractors"] == ["motion_energy"]  # the demo needs no weights
    validate(copy.deepcopy(config), str(repo / "schemas/config.schema.yaml"))
    enabled = copy.deepcopy(config)
    enabled["features"]["extractors"] = ["motion_energy", "vit"]
    del enabled["features"]["vit"]
    with pytest.raises(WorkflowError, match="'vit' is a required property"):
        validate(enabled, str(repo / "schemas/config.schema.yaml"))
    typo = copy.deepcopy(config)
    typo["features"]["vivit"]["strides"] = 8
    with pytest.raises(WorkflowError, match="strides"):
        validate(typo, str(repo / "schemas/config.schema.yaml"))


def test_video_shorter_than_one_clip_rejected(
    video: Path, models: dict[str, Path], tmp_path: Path
) -> None:
    """45 frames; clips of 8 frames every 8 span 57: an error naming the setting, and no file."""
    out = tmp_path / "x.h5"
    with pytest.raises(InputError) as info:
        slowfast_features(
            video, out, checkpoint=str(models["slowfast"]), clip_frames=8, sampling_rate=8,
            size=32, arch=SLOWFAST_ARCH, device="cpu",
        )  # fmt: skip
    assert str(info.value) == (
        f"{video} [features.slowfast.clip_frames]: the video has 45 frame(s) (3.000 s at 15 fps), "
        "fewer than the 57 frames one clip of 8 every 8 spans. Fix: lower "
        "features.slowfast.clip_frames or features.slowfast.sampling_rate (a clip spans "
        "(clip_frames - 1) x sampling_rate + 1 frames), or use a longer video."
    )
    with pytest.raises(InputError, match=r"\[features.qwen2vl.clip_frames\].*fewer than the 57"):
        qwen2vl_features(
            video, out, model=str(models["qwen2vl"]), clip_frames=8, sampling_rate=8,
            height=56, width=56, device="cpu",
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []
