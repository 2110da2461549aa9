"""Demo end-to-end wall time on this machine, in a fresh copy of the workflow.

Usage: python bench/demo.py [--keep DIR]

Runs `snakemake --profile profiles/workstation` (which also writes the report)
and prints the wall time, the number of jobs and the slowest steps measured by
the rules' benchmark files.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _workflow import copy_workflow  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = copy_workflow(args.keep or Path(tmp) / "demo")
        start = time.perf_counter()
        done = subprocess.run(
            [
                str(Path(sys.executable).parent / "snakemake"),
                "--profile",
                "profiles/workstation",
                "--report",
                "results/report.html",
                "--report-after-run",
            ],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(done.stderr[-5000:])
        n_jobs = done.stderr.count("Finished jobid")
        print(
            f"demo end to end (incl. data generation and report): {seconds:.1f} s wall, {n_jobs} jobs"
        )
        rows = []
        for bench in (work / "results" / "benchmarks").rglob("*.tsv"):
            table = pd.read_csv(bench, sep="\t")
            rows.append(
                (
                    str(bench.relative_to(work / "results" / "benchmarks").with_suffix("")),
                    float(table["s"].iloc[0]),
                )
            )
        for name, secs in sorted(rows, key=lambda r: -r[1])[:10]:
            print(f"  {secs:7.1f} s  {name}")
        print(f"report: {(work / 'results' / 'report.html').stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
