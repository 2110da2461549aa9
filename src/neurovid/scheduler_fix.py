"""Keep Snakemake's local scheduler within ``--cores`` and the ``gpu`` resource.

Snakemake 9.10 to 9.16 start a job without reserving its threads and resources
whenever exactly one job is ready (snakemake/snakemake#3913, fixed in 9.17 by
#4026): two ``threads: 2`` jobs then run at once on 2 cores, and two GPU jobs on
a machine whose profile says ``gpu: 1``. On 2 cores that made encoding jobs 3x
slower and the demo's wall time vary from 6 to 11 minutes.

neurovid cannot move to Snakemake >= 9.17 yet: those releases require
``packaging < 26`` and nilearn 0.14 requires ``packaging >= 26``. Until that
wall goes, :func:`reserve_single_job_resources` (called by the Snakefile)
reserves what the affected code path forgets. It changes nothing where that
code path is absent (other Snakemake versions), so it cannot double-count.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Sequence
from typing import Any

_BUGGY_BRANCH = "if len(jobs) == 1:"


def _has_unreserved_single_job_path(job_selector: Callable[..., Any]) -> bool:
    """Whether ``JobScheduler.job_selector`` returns a lone job before reserving it."""
    try:
        source = inspect.getsource(job_selector)
    except (OSError, TypeError):
        return False
    return _BUGGY_BRANCH in source and "return self.job_selector_greedy(" in source


def reserve_single_job_resources() -> bool:
    """Patch the affected Snakemake versions; return whether a patch was applied."""
    from snakemake.scheduling.job_scheduler import JobScheduler

    original = JobScheduler.job_selector
    if getattr(original, "_neurovid_reserves", False):
        return True
    if not _has_unreserved_single_job_path(original):
        return False

    @functools.wraps(original)
    def job_selector(self: JobScheduler, jobs: Sequence[Any]) -> Sequence[Any]:
        selected = original(self, jobs)
        if len(jobs) == 1 and selected:
            with self._lock:
                self.update_available_resources(selected)
        return selected

    job_selector._neurovid_reserves = True  # type: ignore[attr-defined]
    JobScheduler.job_selector = job_selector  # type: ignore[method-assign]
    return True


def peak_reservations(log: str) -> dict[str, int]:
    """Provided and peak concurrent ``cores`` and ``gpu`` in a local Snakemake run's log.

    Replays the log in order: a rule block (``rule x:`` ... ``jobid: N``, with its
    ``threads:`` and ``resources: ... gpu=G``) starts a job, ``Finished jobid: N``
    ends it. Returns ``{"cores", "peak_cores", "gpu", "peak_gpu"}``.
    """
    provided = {"cores": 0, "gpu": 0}
    running: dict[str, tuple[int, int]] = {}
    peak = {"cores": 0, "gpu": 0}
    block: dict[str, Any] | None = None
    for line in log.splitlines():
        stripped = line.strip()
        if stripped.startswith("Provided cores:"):
            provided["cores"] = int(stripped.split(":")[1])
        elif stripped.startswith("Provided resources:"):
            provided["gpu"] = _gpu_of(stripped)
        elif re.match(r"^(local)?rule \w+:$", stripped):
            block = {"threads": 1, "gpu": 0}
        elif block is not None and stripped.startswith("threads:"):
            block["threads"] = int(stripped.split(":")[1])
        elif block is not None and stripped.startswith("resources:"):
            block["gpu"] = _gpu_of(stripped)
        elif block is not None and stripped.startswith("jobid:"):
            block["jobid"] = stripped.split(":")[1].strip()
        elif block is not None and "jobid" in block and not line.startswith("    "):
            running[block["jobid"]] = (block["threads"], block["gpu"])
            block = None
        finished = re.match(r"^Finished jobid: (\d+)", stripped)
        if finished:
            running.pop(finished.group(1), None)
        peak["cores"] = max(peak["cores"], sum(t for t, _ in running.values()))
        peak["gpu"] = max(peak["gpu"], sum(g for _, g in running.values()))
    return {**provided, "peak_cores": peak["cores"], "peak_gpu": peak["gpu"]}


def _gpu_of(line: str) -> int:
    """The ``gpu=N`` value in a Snakemake resources line (0 when absent)."""
    found = re.search(r"\bgpu=(\d+)", line)
    return int(found.group(1)) if found else 0
