"""Logging for rule scripts: messages and warnings go to the rule's ``log:`` file."""

from __future__ import annotations

import logging
import sys
from typing import Any


def script_logger(smk: Any, name: str) -> logging.Logger:
    """A logger writing to the rule's log file (or stderr when the rule has none).

    Python warnings (e.g. from nilearn) and an uncaught exception (with its
    traceback) are written to the same log, so a failed job's log says why.
    """
    handler: logging.Handler
    log_files = list(getattr(smk, "log", []) or [])
    handler = (
        logging.FileHandler(log_files[0], mode="w")
        if log_files
        else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    logger = logging.getLogger(f"neurovid.{name}")
    previous_hook = sys.excepthook

    def log_uncaught(kind, error, trace):  # type: ignore[no-untyped-def]
        logger.error("%s failed: %s", name, error, exc_info=(kind, error, trace))
        previous_hook(kind, error, trace)

    sys.excepthook = log_uncaught
    return logger
