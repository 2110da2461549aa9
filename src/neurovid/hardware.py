"""What this machine offers, found without importing torch (workflow start-up and
the ridge backend's ``auto`` run on every job and must stay cheap)."""

from __future__ import annotations

import os
from collections.abc import Mapping

#: Kernel-driver nodes of NVIDIA (CUDA) and AMD (ROCm) GPUs.
GPU_DRIVER_NODES = ("/proc/driver/nvidia/version", "/dev/nvidia0", "/dev/nvidiactl", "/dev/kfd")


def gpu_visible(environ: Mapping[str, str] | None = None) -> bool:
    """Whether a GPU may be usable here: a GPU driver is present and
    ``CUDA_VISIBLE_DEVICES`` does not hide every device (empty or ``-1``)."""
    env = os.environ if environ is None else environ
    if env.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return False
    return any(os.path.exists(node) for node in GPU_DRIVER_NODES)


def gpu_setting(value: bool | str | None, environ: Mapping[str, str] | None = None) -> bool:
    """The config's ``gpu``: ``true`` / ``false``, or ``auto`` (default): whether this
    machine sees a GPU (:func:`gpu_visible`). Cluster profiles set ``true``: their
    GPUs are on the compute nodes, not the login node the workflow starts on."""
    if value is None or value == "auto":
        return gpu_visible(environ)
    if isinstance(value, bool):
        return value
    raise ValueError(f"config gpu must be true, false or auto, got {value!r}")
