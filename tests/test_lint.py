"""The workflow stays lint-clean: snakemake --lint, snakefmt, ruff."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def test_snakemake_lint(repo: Path) -> None:
    done = run([str(BIN / "snakemake"), "--lint", "--cores", "1"], repo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Congratulations, your workflow is in a good condition!" in done.stdout + done.stderr


def test_snakefmt(repo: Path) -> None:
    done = run([str(BIN / "snakefmt"), "--check", "."], repo)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff(repo: Path) -> None:
    done = run([str(BIN / "ruff"), "check", "src", "scripts", "tests", "bench"], repo)
    assert done.returncode == 0, done.stdout + done.stderr
