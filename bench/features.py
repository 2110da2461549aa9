"""Benchmark: CPU frames/s of ViT-small per-frame features including decode, streamed vs the seed.

A random-weight ViT-S/16 (``ViTModel``: hidden 384, 12 layers, 6 heads, patch 16,
224x224 input, ~22 M parameters, ~4.6 GFLOP per frame; the architecture of
facebook/dino-vits16 / WinKawaks/vit-small-patch16-224) is saved locally with
its ``ViTImageProcessor``, so no download is needed: speed depends on the
architecture, not the weight values. One generated video (moving test pattern,
``--seconds`` at ``--fps``, 320x240, H.264). Two approaches, each in its own
process, timed in one run on the same video and model, CLS + mean of the last
layer per frame:

* streaming (the pipeline): :func:`neurovid.features.vit.vit_features`: PyAV
  decode with swscale resize in a background thread -> normalize -> batches of
  ``--batch`` -> model -> HDF5 appends;
* seed: ffmpeg dumps every frame to JPEG (``-q:v 2``), then each JPEG is loaded
  with PIL, preprocessed by the image processor and run through the model one
  at a time; features kept in a list and saved at the end.

Reported: wall time (decode + JPEG dump included), frames/s, the ratio, and the
peak RSS of each Python process (ru_maxrss; ffmpeg's own is not counted: a
forked child's ru_maxrss includes its parent's pages before exec). The streaming
time includes loading the model (the function loads it); the seed's does not.

Usage::

    python bench/features.py                 # 20 s at 15 fps = 300 frames
    python bench/features.py --seconds 6     # quick run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

STREAMING = textwrap.dedent(
    """
    import json, resource, sys, time
    import torch
    torch.set_num_threads(int(sys.argv[4]))
    from neurovid.features.vit import vit_features
    start = time.perf_counter()
    attrs = vit_features(sys.argv[1], sys.argv[2], model=sys.argv[3], layers=[-1],
                         batch_size=int(sys.argv[5]), threads=int(sys.argv[4]))
    seconds = time.perf_counter() - start
    print(json.dumps({"frames": attrs["n_frames"], "seconds": seconds,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)

SEED = textwrap.dedent(
    """
    import json, resource, subprocess, sys, time
    from pathlib import Path
    import numpy as np
    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModel
    torch.set_num_threads(int(sys.argv[4]))
    from neurovid.video import ffmpeg_exe
    processor = AutoImageProcessor.from_pretrained(sys.argv[3])
    model = AutoModel.from_pretrained(sys.argv[3]).eval()
    frames_dir = Path(sys.argv[2])
    frames_dir.mkdir()
    start = time.perf_counter()
    subprocess.run([ffmpeg_exe(), "-v", "error", "-i", sys.argv[1], "-q:v", "2",
                    str(frames_dir / "%06d.jpg")], check=True)
    dumped = time.perf_counter() - start
    rows = []
    with torch.inference_mode():
        for jpeg in sorted(frames_dir.glob("*.jpg")):
            image = Image.open(jpeg).convert("RGB")
            pixels = processor(images=image, return_tensors="pt")["pixel_values"]
            tokens = model(pixel_values=pixels).last_hidden_state
            rows.append(torch.cat([tokens[:, 0], tokens[:, 1:].mean(1)], 1)[0].numpy())
    np.save(frames_dir / "features.npy", np.stack(rows))
    seconds = time.perf_counter() - start
    print(json.dumps({"frames": len(rows), "seconds": seconds, "dump_seconds": dumped,
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
    """
)


def make_model(directory: Path) -> None:
    """Random-weight ViT-S/16 + its image processor, saved with save_pretrained."""
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    config = ViTConfig(
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=6,
        intermediate_size=1536,
        image_size=224,
        patch_size=16,
    )
    ViTModel(config, add_pooling_layer=False).save_pretrained(directory)
    ViTImageProcessor(size={"height": 224, "width": 224}).save_pretrained(directory)


def make_video(path: Path, seconds: float, fps: int) -> None:
    from neurovid.video import ffmpeg_exe

    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size=320x240:rate={fps}",
         "-t", str(seconds), "-c:v", "libx264", "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )  # fmt: skip


def run_child(code: str, *args: str) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="neurovid-bench-") as tmp:
        root = Path(tmp)
        make_model(root / "vit-small")
        make_video(root / "video.mp4", args.seconds, args.fps)
        common = (str(root / "video.mp4"),)
        model, threads = str(root / "vit-small"), str(args.threads)
        stream = run_child(
            STREAMING, *common, str(root / "out.h5"), model, threads, str(args.batch)
        )
        seed = run_child(SEED, *common, str(root / "jpeg"), model, threads)

    for result in (stream, seed):
        result["frames_per_s"] = result["frames"] / result["seconds"]
    ratio = stream["frames_per_s"] / seed["frames_per_s"]
    print(
        f"ViT-S/16 (random weights, 224x224), {stream['frames']} frames of 320x240 video, "
        f"{args.threads} torch threads, {platform.processor() or platform.machine()}"
    )
    print(
        f"streaming (PyAV -> batches of {args.batch} -> HDF5): {stream['seconds']:.1f} s, "
        f"{stream['frames_per_s']:.1f} frames/s, peak RSS {stream['peak_mb']:.0f} MB"
    )
    print(
        f"seed (ffmpeg -> JPEG, one by one): {seed['seconds']:.1f} s "
        f"(JPEG dump {seed['dump_seconds']:.1f} s), {seed['frames_per_s']:.1f} frames/s, "
        f"peak RSS {seed['peak_mb']:.0f} MB"
    )
    print(f"speed-up (streaming / seed frames/s): {ratio:.2f}x")
    print(json.dumps({"streaming": stream, "seed": seed, "ratio": ratio}, sort_keys=True))


if __name__ == "__main__":
    main()
