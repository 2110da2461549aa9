"""Logging for rule scripts: messages and warnings go to the rule's ``log:`` file."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

# Environment variables that say where a job ran: the SLURM job (the SLURM
# executor's job step keeps SLURM_JOB_ID) and the GPUs the scheduler gave it.
JOB_VARIABLES = ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES")
UNSET = "<unset>"


def job_environment() -> str:
    """One line naming the host, the SLURM job, the visible GPUs and the library's location.

    Every rule log starts with it, so a log shows whether its job ran through
    sbatch, which GPUs it could see, and which copy of ``neurovid`` it imported.
    """
    fields = [f"host={socket.gethostname()}"]
    fields += [f"{name}={os.environ.get(name, UNSET)}" for name in JOB_VARIABLES]
    fields.append(f"neurovid={Path(__file__).resolve().parent}")
    return "job environment: " + " ".join(fields)


def script_logger(smk: Any, name: str) -> logging.Logger:
    """A logger writing to the rule's log file (or stderr when the rule has none).

    Python warnings (e.g. from nilearn) and an uncaught exception (with its
    traceback) are written to the same log, so a failed job's log says why.
    The first line is :func:`job_environment`.
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
    logger.info("%s", job_environment())
    return logger
