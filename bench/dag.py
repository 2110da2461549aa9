"""Snakemake DAG build + dry-run time for a sheet of 10,000 videos.

Usage: python bench/dag.py [--videos 10000] [--per-recording 10]

Builds a temporary project whose videos.tsv lists N stimulus videos (all
pointing at one small real file: only the DAG is timed) and whose
recordings.tsv has one spike recording per `per-recording` videos (10 runs
per subject), then times `snakemake -n` from process start to exit.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _workflow import REPO, copy_workflow, without_demo_bids  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=10_000)
    parser.add_argument("--per-recording", type=int, default=10)
    parser.add_argument("--profile", type=Path, help="write cProfile stats of the run here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = copy_workflow(Path(tmp) / "wf")
        data = work / "data"
        data.mkdir()
        (data / "clip.mp4").write_bytes(b"placeholder: the dry-run never opens it")
        (data / "rec.tsv").write_text("time\tn0\n0.05\t0\n")
        rows = ["video_id\tpath\tkind"] + [
            f"v{i:05d}\tdata/clip.mp4\tstimulus" for i in range(args.videos)
        ]
        (work / "videos.tsv").write_text("\n".join(rows) + "\n")
        recs = ["recording_id\tsubject\tmodality\tpath\tstimulus\tsampling_rate"]
        n_recordings = args.videos // args.per_recording
        for r in range(n_recordings):
            videos = ";".join(
                f"v{r * args.per_recording + k:05d}@{k * 10}" for k in range(args.per_recording)
            )
            recs.append(f"r{r:05d}\tsubject{r // 10:04d}\tspikes\tdata/rec.tsv\t{videos}\t10")
        (work / "recordings.tsv").write_text("\n".join(recs) + "\n")

        config = (work / "config.yaml").read_text()
        config = config.replace("videos: demo/videos.tsv", "videos: videos.tsv")
        config = config.replace("recordings: demo/recordings.tsv", "recordings: recordings.tsv")
        config = without_demo_bids(config)
        (work / "config.yaml").write_text(config)

        profiler = ["-m", "cProfile", "-o", str(args.profile.resolve())] if args.profile else []
        start = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                *profiler,
                "-m",
                "snakemake",
                "-n",
                "--quiet",
                "rules",
                "--cores",
                "2",
            ],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(done.stdout + done.stderr)
        total = re.search(r"^total\s+(\d+)", done.stdout, re.MULTILINE)
        print(
            f"videos: {args.videos}, recordings: {n_recordings}, jobs: {total.group(1) if total else '?'}"
        )
        print(f"snakemake DAG build + dry-run: {seconds:.1f} s (repo {REPO.name})")


if __name__ == "__main__":
    main()
