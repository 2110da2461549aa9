"""Local runs stay within --cores: the fix for Snakemake's lone-job reservation bug."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from neurovid.scheduler_fix import peak_reservations, reserve_single_job_resources

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")

# snakemake/snakemake#3913: once `prepare` ends, the two 2-thread jobs must run one at a time.
WORKFLOW = """
rule final:
    input:
        "file1",
        "file2",


rule prepare:
    output:
        "common",
    threads: 2
    shell:
        "touch {output}"


rule do_something:
    input:
        "common",
    output:
        "file{number}",
    threads: 2
    shell:
        "echo start {wildcards.number} >> events.txt; sleep 1; "
        "echo end {wildcards.number} >> events.txt; touch {output}"
"""
PATCH = "from neurovid.scheduler_fix import reserve_single_job_resources\n\nreserve_single_job_resources()\n"


def run_two_core_workflow(folder: Path, patched: bool) -> tuple[dict[str, int], list[str]]:
    folder.mkdir()
    (folder / "Snakefile").write_text((PATCH if patched else "") + WORKFLOW)
    done = subprocess.run(
        [SNAKEMAKE, "--cores", "2"], cwd=folder, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    events = [line.split()[0] for line in (folder / "events.txt").read_text().splitlines()]
    return peak_reservations(done.stderr), events


def test_two_core_jobs_run_one_at_a_time_on_two_cores(tmp_path: Path) -> None:
    peak, events = run_two_core_workflow(tmp_path / "patched", patched=True)
    assert peak == {"cores": 2, "gpu": 0, "peak_cores": 2, "peak_gpu": 0}
    assert events == ["start", "end", "start", "end"]
    if reserve_single_job_resources():  # this Snakemake has the bug: show it without the fix
        peak, events = run_two_core_workflow(tmp_path / "unpatched", patched=False)
        assert peak["peak_cores"] == 4 and events[:2] == ["start", "start"]


def test_peak_reservations_replays_starts_and_ends_in_order() -> None:
    log = "\n".join(
        [
            "Provided cores: 4",
            "Provided resources: gpu=1",
            "[Sun Dec  6 13:11:49 2026]",
            "localrule encode:",
            "    jobid: 7",
            "    threads: 2",
            "    resources: mem_mb=8000, runtime=120, gpu=1",
            "Shell command: None",
            "rule align:",
            "    jobid: 8",
            "    resources: mem_mb=2000",
            "",
            "Finished jobid: 7 (Rule: encode)",
            "rule deep:",
            "    jobid: 9",
            "    threads: 3",
            "    resources: gpu=1",
            "Shell command: None",
        ]
    )
    assert peak_reservations(log) == {"cores": 4, "gpu": 1, "peak_cores": 4, "peak_gpu": 1}
