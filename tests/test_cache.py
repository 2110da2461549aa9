"""Between-workflow cache: a second workflow directory takes its features from the first's.

Two copies of the workflow with the same two tiny stimulus videos share one
$SNAKEMAKE_OUTPUT_CACHE (README: "Sharing features and models between projects").
Snakemake 9.15's local cache moves a computed output into the cache and leaves a
symlink ("Moving output file ... to cache."), and serves a hit as a symlink to the
entry without running the job ("Symlinking output file ... from cache.").
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from _workflow import copy_workflow, without_demo_bids  # noqa: E402

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")
VIDEOS = ("v1", "v2")
FEATURES = [f"results/features/motion_energy/{v}.h5" for v in VIDEOS]
SPATIAL = "spatial_frequencies: [0, 2, 4, 8, 16]"


def write_video(path: Path, seed: int, seconds: float = 2, fps: int = 15) -> None:
    """A small moving-noise movie (rgb24 -> H.264), distinct per seed."""
    import imageio_ffmpeg

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (48 + 40, 64 + 40), dtype=np.uint8)
    writer = imageio_ffmpeg.write_frames(
        str(path), (64, 48), fps=fps, macro_block_size=1, ffmpeg_log_level="error"
    )
    writer.send(None)
    for i in range(int(seconds * fps)):
        frame = base[i : i + 48, i : i + 64]
        writer.send(np.ascontiguousarray(np.repeat(frame[..., None], 3, axis=2)))
    writer.close()


def make_workflow(root: Path, stimuli: Path) -> Path:
    """A workflow copy whose sheets list the two stimuli (same bytes in every copy)."""
    work = copy_workflow(root)
    (work / "data").mkdir()
    for video in VIDEOS:
        (work / "data" / f"{video}.mp4").write_bytes((stimuli / f"{video}.mp4").read_bytes())
    (work / "data/rec.tsv").write_text(
        "time\tn0\n" + "".join(f"{(i + 0.5) / 10}\t{i % 3}\n" for i in range(20))
    )
    (work / "videos.tsv").write_text(
        "video_id\tpath\tkind\n" + "".join(f"{v}\tdata/{v}.mp4\tstimulus\n" for v in VIDEOS)
    )
    (work / "recordings.tsv").write_text(
        "recording_id\tsubject\tmodality\tpath\tstimulus\tsampling_rate\n"
        "r1\ts1\tspikes\tdata/rec.tsv\tv1\t10\n"
    )
    config = (work / "config.yaml").read_text()
    edits = {
        "videos: demo/videos.tsv": "videos: videos.tsv",
        "recordings: demo/recordings.tsv": "recordings: recordings.tsv",
        "  width: 160\n  height: 120": "  width: 64\n  height: 48",
        "height: 72 # frames are resized": "height: 24 # frames are resized",
        "    width: 96\n": "    width: 32\n",
    }
    for old, new in edits.items():
        assert old in config, old
        config = config.replace(old, new)
    (work / "config.yaml").write_text(without_demo_bids(config))
    return work


def snakemake(work: Path, cache: Path, *args: str) -> str:
    """Run Snakemake in ``work`` with the shared cache; ``--cache`` (no rule names) goes last.

    (``--cache`` takes rule names: targets after it would be read as rules.)
    """
    env = {**os.environ, "SNAKEMAKE_OUTPUT_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [SNAKEMAKE, "--profile", "profiles/workstation", "--cores", "2", *args],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    return out


def jobs_run(log: str) -> dict[str, int]:
    """Jobs a run's log announces, per rule."""
    counts: dict[str, int] = {}
    for line in log.splitlines():
        if line.startswith(("rule ", "localrule ")) and line.endswith(":"):
            rule = line.split()[1].rstrip(":")
            counts[rule] = counts.get(rule, 0) + 1
    return counts


def cached(f: str) -> str:
    return f"Output file {f} will be obtained from global between-workflow cache."


def uncached(f: str) -> str:
    return f"Output file {f} will be written to global between-workflow cache."


@pytest.fixture(scope="module")
def stimuli(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("stimuli")
    for seed, video in enumerate(VIDEOS):
        write_video(folder / f"{video}.mp4", seed)
    return folder


def test_second_workflow_takes_features_from_the_cache(tmp_path: Path, stimuli: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    first = make_workflow(tmp_path / "project-a", stimuli)
    second = make_workflow(tmp_path / "project-b", stimuli)

    # First workflow: computes both videos' features and stores them.
    log_a = snakemake(first, cache, *FEATURES, "--cache")
    assert jobs_run(log_a)["motion_energy"] == 2
    for f in FEATURES:
        assert f"Moving output file {f} to cache." in log_a
        assert (first / f).is_symlink()
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) == 2 and all(e.endswith(".h5") for e in entries), entries
    reference = {f: (first / f).read_bytes() for f in FEATURES}

    # Second workflow: the dry-run plans the features from the cache ...
    plan = snakemake(second, cache, "--dry-run", *FEATURES, "--cache")
    for f in FEATURES:
        assert cached(f) in plan and uncached(f) not in plan
    # ... and the run symlinks them without running the feature script (no log written).
    log_b = snakemake(second, cache, *FEATURES, "--cache")
    assert jobs_run(log_b)["motion_energy"] == 2  # announced, then served from the cache
    assert "to cache." not in log_b  # nothing computed, nothing stored
    for f in FEATURES:
        assert f"Symlinking output file {f} from cache." in log_b
        target = (second / f).resolve()
        assert target.parent == cache.resolve() and target.name in entries
        assert (second / f).read_bytes() == reference[f]  # byte-identical, provenance included
    for video in VIDEOS:  # the script ran in the first workflow only (Snakemake touches the log)
        assert (
            "wrote results/features"
            in (first / f"results/logs/motion_energy/{video}.log").read_text()
        )
        assert (second / f"results/logs/motion_energy/{video}.log").read_text() == ""
    assert not (second / "results/benchmarks/motion_energy").exists()
    assert sorted(p.name for p in cache.iterdir()) == entries

    # A feature parameter change misses the cache for exactly the motion-energy jobs.
    config = (second / "config.yaml").read_text()
    (second / "config.yaml").write_text(
        config.replace(SPATIAL, "spatial_frequencies: [0, 2, 4, 8]")
    )
    plan = snakemake(second, cache, "--dry-run", *FEATURES, "--cache")
    assert jobs_run(plan) == {"motion_energy": 2}  # not probe, standardize
    for f in FEATURES:
        assert uncached(f) in plan and cached(f) not in plan
    log_c = snakemake(second, cache, *FEATURES, "--cache")
    assert jobs_run(log_c) == {"motion_energy": 2}
    for f in FEATURES:
        assert f"Moving output file {f} to cache." in log_c
        assert (second / f).read_bytes() != reference[f]
    assert len(list(cache.iterdir())) == 4

    # Back to the first parameters: the first workflow's entries serve again.
    (second / "config.yaml").write_text(config)
    plan = snakemake(second, cache, "--dry-run", *FEATURES, "--cache")
    assert all(cached(f) in plan for f in FEATURES)

    # Editing the library the extractor runs changes its `code` param: a miss too.
    module = second / "src/neurovid/features/motion_energy.py"
    module.write_text(module.read_text() + "\n# an edit of the library code\n")
    plan = snakemake(second, cache, "--dry-run", *FEATURES, "--cache")
    assert jobs_run(plan) == {"motion_energy": 2}
    assert all(uncached(f) in plan for f in FEATURES)
