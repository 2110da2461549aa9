"""Logging for rule scripts: messages and warnings go to the rule's ``log:`` file."""

from __future__ import annotations

import logging
import sys
from typing import Any


def script_logger(smk: Any, name: str) -> logging.Logger:
    """A logger writing to the rule's log file (or stderr when the rule has none).

    Python warnings (e.g. from nilearn) are captured into the same log.
    """
    handler: logging.Handler
    log_files = list(getattr(smk, "log", []) or [])
    handler = logging.FileHandler(log_files[0], mode="w") if log_files else logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    return logging.getLogger(f"neurovid.{name}")
