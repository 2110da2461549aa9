"""Motion SVD (Facemap's method): exact SVD match, known motion, times, determinism,
streaming memory, and the errors a user gets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from conftest import run_script
from sklearn.decomposition import PCA
from snakemake.io import Namedlist

from neurovid.errors import InputError
from neurovid.features.motion_svd import fit_segments, motion_svd
from neurovid.io import read_features
from neurovid.video import ffmpeg_exe, iter_frames, write_video

REPO = Path(__file__).resolve().parents[1]
FPS = 15
H, W = 48, 64
N_FRAMES = 90
PATCH = (slice(12, 36), slice(16, 48))  # the "whisker pad": a drifting grating


def speeds(n: int) -> np.ndarray:
    """Grating speed (cycles of phase per frame) with still periods and bursts."""
    rng = np.random.default_rng(7)
    v = np.where(rng.random(n) < 0.35, 0.0, rng.uniform(0.03, 0.25, n))
    v[:5] = 0.0
    return v


def face_frames(n: int = N_FRAMES) -> list[np.ndarray]:
    """uint8 gray frames: a static texture, a grating patch drifting at :func:`speeds`
    and a small blob circling at its own pace (a second, independent motion)."""
    rng = np.random.default_rng(3)
    background = rng.integers(60, 190, (H, W)).astype(np.float64)
    yy, xx = np.mgrid[0:H, 0:W]
    phase = np.cumsum(speeds(n)) * 2 * np.pi
    frames = []
    for t in range(n):
        img = background.copy()
        ph, pw = PATCH
        x = xx[ph, pw]
        img[ph, pw] = 128 + 90 * np.sin(2 * np.pi * x / 8 + phase[t])
        cy, cx = 40 + 4 * np.sin(t / 5), 8 + 4 * np.cos(t / 5)
        img += 120 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 6)
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return frames


@pytest.fixture(scope="module")
def face(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("msvd") / "face.mp4"
    write_video(face_frames(), path, FPS, crf=8)
    return path


def binned_differences(path: Path, bin: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """Reference: all |frame differences| of the cropped, block-averaged decoded frames."""
    frames = np.concatenate([f for _, f in iter_frames(path, gray=True, chunk=1000)])
    y0, y1, x0, x1 = box
    hb, wb = (y1 - y0) // bin, (x1 - x0) // bin
    crop = frames[:, y0 : y0 + hb * bin, x0 : x0 + wb * bin].astype(np.float64)
    binned = crop.reshape(len(crop), hb, bin, wb, bin).mean(axis=(2, 4))
    return np.abs(np.diff(binned.reshape(len(binned), -1), axis=0))


@pytest.mark.parametrize(
    ("bin", "roi", "box"), [(2, None, (0, H, 0, W)), (3, [5, 2, 50, 40], (2, 42, 5, 55))]
)
def test_components_match_an_exact_svd(face: Path, bin: int, roi, box) -> None:
    k = 6
    result = motion_svd(face, n_components=k, bin=bin, roi=roi, max_fit_frames=1000)
    diffs = binned_differences(face, bin, box)
    assert result.attrs["n_fit_differences"] == len(diffs) == N_FRAMES - 1
    # scikit-learn's PCA: exact (LAPACK) SVD of the centred differences, svd_flip'ed
    # so each component's largest-magnitude loading is positive, as here.
    pca = PCA(n_components=k, svd_solver="full").fit(diffs)
    ours = result.components.reshape(k, -1).astype(np.float64)
    cosines = np.abs(np.sum(ours * pca.components_, axis=1))
    assert cosines.min() >= 0.9999, cosines
    np.testing.assert_allclose(ours, pca.components_, atol=1e-5)  # same signs
    np.testing.assert_allclose(result.singular_values, pca.singular_values_, rtol=1e-5)
    np.testing.assert_allclose(result.mean_motion.ravel(), pca.mean_, atol=1e-6)
    # Time courses: every difference projected; frame 0 repeats frame 1 (Facemap).
    expected = pca.transform(diffs)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(result.features[1:], expected, atol=1e-5 * scale)
    np.testing.assert_array_equal(result.features[0], result.features[1])
    assert result.features.shape == (N_FRAMES, k) and result.features.dtype == np.float32
    assert result.components.shape == (k, (box[1] - box[0]) // bin, (box[3] - box[2]) // bin)
    assert result.attrs["components_shape"] == list(result.components.shape)
    np.testing.assert_allclose(result.motion[1:], diffs.sum(axis=1), rtol=1e-5)


def test_first_component_follows_the_known_motion(face: Path) -> None:
    result = motion_svd(face, n_components=4, bin=2, max_fit_frames=1000)
    frames = np.asarray(face_frames(), dtype=np.float64)
    patch_energy = np.abs(np.diff(frames[:, PATCH[0], PATCH[1]], axis=0)).sum(axis=(1, 2))
    r = np.corrcoef(result.features[1:, 0], patch_energy)[0, 1]
    assert r > 0.97, r  # positive: the sign convention makes the mask positive
    # ... and its mask lies on the grating patch (bin 2 -> rows 6..18, cols 8..24).
    mask = result.components[0] ** 2
    assert mask[6:18, 8:24].sum() / mask.sum() > 0.9


def test_chunking_does_not_change_the_result(face: Path) -> None:
    whole = motion_svd(face, n_components=5, max_fit_frames=1000, chunk_frames=1000)
    chunked = motion_svd(face, n_components=5, max_fit_frames=1000, chunk_frames=7)
    np.testing.assert_allclose(chunked.features, whole.features, atol=1e-5)
    np.testing.assert_array_equal(chunked.times, whole.times)


def test_fit_segments_are_evenly_spaced_and_bounded() -> None:
    assert fit_segments(500, 1000, 256) == [(0, 500)]
    runs = fit_segments(10_000, 3000, 256)
    assert len(runs) == 12 and sum(b - a for a, b in runs) == 3000
    assert [b - a for a, b in runs] == [256] * 11 + [184]
    assert runs[0][0] == 0 and runs[-1][1] == 10_000
    gaps = [a2 - b1 for (_, b1), (a2, _) in zip(runs, runs[1:], strict=False)]
    assert min(gaps) >= 636 and max(gaps) <= 637  # 7000 unused differences / 11 gaps


def test_times_attrs_and_deterministic_script_output(face: Path, tmp_path: Path) -> None:
    settings = {"n_components": 5, "bin": 2, "roi": None, "max_fit_frames": 40}
    settings["chunk_frames"] = 16
    outputs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.h5"
        smk = SimpleNamespace(
            input=Namedlist(fromdict={"video": str(face)}),
            output=Namedlist([str(out)]),
            params=Namedlist(fromdict={"settings": settings}),
            log=Namedlist([str(tmp_path / f"{name}.log")]),
            threads=1,
        )
        run_script(str(REPO / "scripts" / "motion_svd.py"), init_globals={"snakemake": smk})
        outputs.append(out)
    assert outputs[0].read_bytes() == outputs[1].read_bytes()
    fs = read_features(outputs[0])
    assert fs.features.shape == (N_FRAMES, 5)
    np.testing.assert_allclose(fs.times, (np.arange(N_FRAMES) + 0.5) / FPS)
    assert fs.duration == pytest.approx(N_FRAMES / FPS) == pytest.approx(6.0)
    assert fs.attrs["extractor"] == "motion_svd" and fs.attrs["fps"] == 15.0
    # 89 differences > 40: runs of 16 at evenly spaced starts, 40 in all.
    assert fs.attrs["fit_runs"] == [[0, 16], [40, 56], [81, 89]]
    assert fs.attrs["n_fit_differences"] == 40
    assert fs.attrs["components_shape"] == [5, 24, 32] and fs.attrs["bin"] == 2
    assert fs.attrs["provenance"]["params"]["max_fit_frames"] == 40
    assert fs.attrs["provenance"]["inputs"]["video"]["digest"].startswith("sha256:")
    with h5py.File(outputs[0]) as h5:
        assert h5["components"].shape == (5, 24, 32)
        assert h5["mean_motion"].shape == (24, 32) and h5["motion"].shape == (N_FRAMES,)
        assert h5["singular_values"].shape == (5,)
    log = (tmp_path / "a.log").read_text()
    assert "fitting 5 components on 40 differences (3 runs)" in log
    assert f"{N_FRAMES} frames projected" in log


PEAK = """
import resource, sys, tracemalloc
from neurovid.features.motion_svd import motion_svd
tracemalloc.start()
result = motion_svd(sys.argv[1], n_components=10, bin=1, max_fit_frames=600)
traced = tracemalloc.get_traced_memory()[1]
print(len(result.features), traced, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def test_memory_does_not_grow_with_the_video(tmp_path: Path) -> None:
    """Peak memory for a 20-minute video within 1.5x of a 1-minute one (64x48, 10 fps)."""
    peaks = {}
    for minutes in (1, 20):
        path = tmp_path / f"{minutes}min.mp4"
        source = f"testsrc=size=64x48:rate=10:duration={60 * minutes}"
        subprocess.run(
            [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", source]
            + ["-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast"]
            + ["-threads", "1", str(path)],
            check=True,
        )
        env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        out = subprocess.run(
            [sys.executable, "-c", PEAK, str(path)],
            check=True,
            capture_output=True,
            text=True,
            env={**__import__("os").environ, **env},
        ).stdout.split()
        frames, traced, rss_kb = (int(v) for v in out)
        assert frames == 600 * minutes
        peaks[minutes] = (traced, rss_kb)
    traced_ratio = peaks[20][0] / peaks[1][0]
    rss_ratio = peaks[20][1] / peaks[1][1]
    assert traced_ratio <= 1.5, peaks  # numpy/Python allocations of the extraction
    assert rss_ratio <= 1.5, peaks  # whole process (fresh interpreter each)


def test_errors_name_the_file_the_setting_and_the_fix(face: Path, tmp_path: Path) -> None:
    one = tmp_path / "one.mp4"
    write_video(face_frames(1), one, FPS)
    with pytest.raises(InputError) as info:
        motion_svd(one, n_components=2)
    assert str(info.value) == (
        f"{one} [features.motion_svd]: the video has 1 frame(s) (0.067 s at 15 fps), fewer than "
        "the 2 frames motion needs (one frame difference). Fix: use a video of at least 2 "
        "frames, or do not request features.motion_svd for this video."
    )
    with pytest.raises(InputError) as info:
        motion_svd(face, n_components=89, max_fit_frames=1000)
    assert str(info.value) == (
        f"{face} [features.motion_svd.n_components]: the video has 90 frames (89 differences); "
        "89 centred components need at least 90 differences (91 frames). Fix: lower "
        "features.motion_svd.n_components to at most 88 or use a longer video."
    )
    with pytest.raises(InputError) as info:
        motion_svd(face, roi=[40, 10, 30, 20])
    assert str(info.value) == (
        f"{face} [features.motion_svd.roi]: roi [x=40, y=10, width=30, height=20] reaches pixel "
        "(70, 30), outside the 64 x 48 frame. Fix: draw the ROI inside the frame: x + width <= 64 "
        "and y + height <= 48 (pixels of the video the rule reads, "
        "results/video/{video}/standard.mp4)."
    )
    with pytest.raises(InputError) as info:
        motion_svd(face, n_components=20, bin=4, roi=[0, 0, 16, 16])
    assert str(info.value) == (
        f"{face} [features.motion_svd.n_components]: n_components=20 exceeds the 16 pixels "
        "(4 x 4) of the binned ROI. Fix: lower n_components to at most 16, or lower `bin` / "
        "enlarge `roi`."
    )
    with pytest.raises(
        InputError,
        match=r"\[features.motion_svd.max_fit_frames\]: max_fit_frames=10 .* n_components=50",
    ):
        motion_svd(face, n_components=50, max_fit_frames=10)
    with pytest.raises(InputError, match=r"\[features.motion_svd.roi\]: roi=\[1, 2, 3\] is not"):
        motion_svd(face, roi=[1, 2, 3])
    still = tmp_path / "still.mp4"
    write_video([face_frames(1)[0]] * 10, still, FPS)
    with pytest.raises(InputError) as info:
        motion_svd(still, n_components=3)
    assert f"{still} [features.motion_svd.n_components]: the 9 frame differences" in str(info.value)
    assert "span too few directions (0 non-zero singular values, 3 asked)" in str(info.value)
