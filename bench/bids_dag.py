"""DAG build for a BIDS + fMRIPrep dataset of 1,000 runs: indexing time and the whole dry-run.

Usage: python bench/bids_dag.py [--subjects 100] [--runs 10]

Writes a generated dataset (tiny 2x2x2 NIfTIs, real fMRIPrep names, events naming
one stimulus video) into a temporary project whose config reads it through
`bids:`, then times (1) neurovid.bids.bids_recordings alone, in this process,
and (2) `snakemake -n` from process start to exit, which indexes the dataset
once (the main process; jobs read the sheet it writes). Goal: under 60 s.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests"), str(HERE.parent / "src")]
import pandas as pd  # noqa: E402
from _bids_dataset import make_bids  # noqa: E402
from _workflow import copy_workflow, without_demo_bids  # noqa: E402

from neurovid import bids  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=100)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = copy_workflow(Path(tmp) / "wf")
        (work / "data").mkdir()
        (work / "data/clip.mp4").write_bytes(b"placeholder: the dry-run never opens it")
        (work / "videos.tsv").write_text("video_id\tpath\tkind\nclip\tdata/clip.mp4\tstimulus\n")
        subjects = [f"{s:03d}" for s in range(args.subjects)]
        start = time.perf_counter()
        runs = make_bids(
            work / "ds",
            work / "ds/derivatives/fmriprep",
            subjects=subjects,
            runs=range(1, args.runs + 1),
            events=((0.0, 4.0, "clip.mp4"),),
        )
        print(f"generated {len(runs)} runs in {time.perf_counter() - start:.1f} s")

        settings = {"root": "ds", "derivatives": "ds/derivatives/fmriprep"}
        settings["space"] = "MNI152NLin2009cAsym"
        videos = pd.DataFrame({"video_id": ["clip"], "path": ["data/clip.mp4"]})
        start = time.perf_counter()
        table = bids.bids_recordings(
            {k: str(work / v) if k != "space" else v for k, v in settings.items()}, videos
        )
        index_s = time.perf_counter() - start
        print(f"index (pybids, raw + derivatives): {index_s:.1f} s for {len(table)} runs")

        config = (work / "config.yaml").read_text()
        config = config.replace("videos: demo/videos.tsv", "videos: videos.tsv")
        config = config.replace("recordings: demo/recordings.tsv", "recordings: null")
        config = without_demo_bids(
            config, "{root: ds, derivatives: ds/derivatives/fmriprep, space: MNI152NLin2009cAsym}"
        )
        (work / "config.yaml").write_text(config)
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", "--cores", "2"],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
        )
        dry_s = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(done.stdout[-3000:] + done.stderr[-3000:])
        total = re.search(r"^total\s+(\d+)", done.stdout, re.MULTILINE)
        sheet = work / "results/sheets/recordings.tsv"
        rows = len(pd.read_csv(sheet, sep="\t"))
        print(
            f"snakemake DAG build + dry-run: {dry_s:.1f} s, {total.group(1) if total else '?'} jobs"
        )
        print(f"derived sheet {sheet.relative_to(work)}: {rows} runs (goal: dry-run < 60 s)")


if __name__ == "__main__":
    main()
