"""Second workflow's feature stage with and without the between-workflow cache.

Usage: python bench/cache.py [--videos bigbuckbunny bikes]

Two fresh copies of the workflow (demo sheets, default config) share one
$SNAKEMAKE_OUTPUT_CACHE. The first computes the motion-energy features of the
given demo stimuli with `--cache` (storing them). In the second, the upstream
video jobs run first (untimed); then its feature stage is timed with `--cache`
(served from the cache) and, after deleting those features, without it (computed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _workflow import copy_workflow  # noqa: E402

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def snakemake(work: Path, cache: Path, *args: str) -> float:
    env = {**os.environ, "SNAKEMAKE_OUTPUT_CACHE": str(cache)}
    start = time.perf_counter()
    done = subprocess.run(
        [SNAKEMAKE, "--profile", "profiles/workstation", "--cores", "2", *args],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(done.stderr[-5000:])
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", nargs="+", default=["bigbuckbunny", "bikes"])
    args = parser.parse_args()
    features = [f"results/features/motion_energy/{v}.h5" for v in args.videos]
    videos = [f"results/video/{v}/standard.mp4" for v in args.videos]
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        cache.mkdir()
        first, second = (copy_workflow(Path(tmp) / name) for name in ("a", "b"))
        computed_first = snakemake(first, cache, *features, "--cache")
        snakemake(second, cache, *videos)  # upstream of the feature stage, untimed
        with_cache = snakemake(second, cache, *features, "--cache")
        shutil.rmtree(second / "results/features/motion_energy")
        without_cache = snakemake(second, cache, *features)
        print(f"videos: {', '.join(args.videos)} (motion energy, default config)")
        print(f"first workflow, videos + features, storing: {computed_first:6.1f} s wall")
        print(f"second workflow, feature stage, --cache:    {with_cache:6.1f} s wall")
        print(f"second workflow, feature stage, no cache:   {without_cache:6.1f} s wall")


if __name__ == "__main__":
    main()
