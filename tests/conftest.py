"""Shared test fixtures: repository paths and an offline environment."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data() -> Path:
    """The project's real test data (../shared/data beside the checkout, as the guide places it).

    A clone elsewhere (CI's clean clone, /tmp) finds it through $NEUROVID_SHARED_DATA or
    the workspace's /work/shared/data.
    """
    candidates = [os.environ.get("NEUROVID_SHARED_DATA", ""), REPO.parent / "shared" / "data"]
    candidates.append("/work/shared/data")
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return REPO.parent / "shared" / "data"


SHARED_DATA = _shared_data()

# Any accidental model/dataset download must fail fast, not hang.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def dry_run(work: Path, targets: list[str]) -> subprocess.CompletedProcess:
    """``snakemake --dry-run`` of the project in ``work`` (workstation profile, offline)."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "snakemake"), "--profile", "profiles/workstation"]
        + ["--dry-run", *targets],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        check=False,
    )


def planned_inputs(log: str) -> dict[tuple[str, str], list[str]]:
    """The jobs a dry run's log plans: (rule, first output) -> its inputs ([] for none)."""
    jobs = {}
    for rule, text in re.findall(r"^rule (\w+):\n((?:    .*\n)+)", log, flags=re.M):
        output = re.search(r"^    output: (.*)$", text, flags=re.M).group(1)
        inputs = re.search(r"^    input: (.*)$", text, flags=re.M)
        jobs[(rule, output.split(", ")[0].strip())] = inputs.group(1).split(", ") if inputs else []
    return jobs


@pytest.fixture(scope="session")
def schemas() -> Path:
    return REPO / "schemas"


def run_script(path: str, init_globals: dict) -> dict:
    """Run a rule script as Snakemake does; an uncaught error reaches ``sys.excepthook``.

    That is how a failing script's error lands in the rule's log
    (``neurovid.logs.script_logger`` installs the hook), so tests see the same log.
    """
    import runpy
    import sys

    saved = sys.excepthook
    try:
        return runpy.run_path(path, init_globals=init_globals, run_name="__main__")
    except Exception as err:
        sys.excepthook(type(err), err, err.__traceback__)
        raise
    finally:
        sys.excepthook = saved


def namedlist(items: tuple | list = (), **named: object):
    """snakemake's own Namedlist, shaped like a script's ``snakemake.input`` / ``.params``."""
    from snakemake.io import Namedlist

    return Namedlist(fromdict=named) if named else Namedlist(list(items))


# Two xdist workers (CI has 2 cores; `-n 2` in pyproject.toml). The SLURM run, the demo
# workflow and its re-runs each load both cores, so they run one after another on one
# worker, first, while the other worker takes the library tests. (xdist's own
# `xdist_group` mark does not group under pytest 9: it renames nodeids pytest no longer reads.)
WORKFLOW_FILES = ("tests/test_slurm.py", "tests/test_workflow.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def order(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        return WORKFLOW_FILES.index(path) if path in WORKFLOW_FILES else len(WORKFLOW_FILES)

    items.sort(key=order)  # stable: the library tests keep their order


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    from xdist.scheduler import LoadScopeScheduling

    class WorkflowTogether(LoadScopeScheduling):
        """One work unit per test file, except that the workflow files form one unit."""

        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::")[0]
            return "workflow" if path in WORKFLOW_FILES else path

    return WorkflowTogether(config, log)
