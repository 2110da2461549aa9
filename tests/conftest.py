"""Shared test fixtures: repository paths and an offline environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Any accidental model/dataset download must fail fast, not hang.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


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
