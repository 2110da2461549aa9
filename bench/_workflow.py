"""Copy the workflow (not results/ or .snakemake/) into a fresh folder, as a new clone would be."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_PARTS = (
    "Snakefile",
    "rules",
    "scripts",
    "schemas",
    "config.yaml",
    "demo",
    "profiles",
    "report",
    "envs",
    "src",
)


def copy_workflow(dest: Path) -> Path:
    """Copy the files a Snakemake run needs into ``dest`` (modification times kept)."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for part in WORKFLOW_PARTS:
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, dest / part, ignore=ignore, dirs_exist_ok=True)
        else:
            shutil.copy2(source, dest / part)
    return dest


DEMO_BIDS = re.compile(r"^bids:\n(?:[ #].*\n)+", re.MULTILINE)


def without_demo_bids(config_text: str, bids: str = "null") -> str:
    """config.yaml text whose `bids:` block (the demo's fMRI) is replaced, e.g. by null
    for a project that brings its own sheets."""
    text, count = DEMO_BIDS.subn(f"bids: {bids}\n", config_text)
    assert count == 1, "config.yaml has no `bids:` block"
    return text
