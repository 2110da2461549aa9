"""Where models run and how their weights are loaded: one implementation for every model.

The learned feature extractors (:mod:`neurovid.features`), the behavior models
(:mod:`neurovid.behavior.classifier`, :mod:`neurovid.behavior.actions`) and the
deep encoders (:mod:`neurovid.deep`) share:

- the device: :func:`resolve_device` (``auto`` -> CUDA when visible, ``cuda``
  without a GPU is an error naming the setting), :func:`select_runtime` (bf16
  autocast on CUDA, deterministic fp32 on CPU), :func:`auto_batch_size` (from free
  GPU memory);
- the weights: :func:`from_pretrained` (offline mode respected, a missing model
  becomes an error saying how to make it available, :func:`missing_model_error`),
  :func:`weights_revision` (hub commit or sha256 of local weight files, for the
  provenance), :func:`torch_versions`.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neurovid.errors import InputError

# ------------------------------------------------------------------------ runtime


@dataclass(frozen=True)
class Runtime:
    """Where and how a model runs: device, autocast dtype (None = fp32), CPU threads."""

    device: torch.device
    autocast_dtype: torch.dtype | None
    threads: int

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def dtype_name(self) -> str:
        """Compute precision recorded in the provenance (``float32``, ``bfloat16``, ...)."""
        return str(self.autocast_dtype or torch.float32).removeprefix("torch.")

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16/fp16 autocast on CUDA; nothing (fp32) on CPU."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def to_device(self, array: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Host array -> tensor on the device; on CUDA through pinned memory, asynchronously."""
        tensor = torch.from_numpy(array) if isinstance(array, np.ndarray) else array
        if self.cuda:
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor


def resolve_device(device: str, owner: str = "model") -> torch.device:
    """``auto`` -> CUDA when a GPU is visible, else CPU; ``cuda`` without a GPU is an error.

    ``owner`` names whose ``device`` setting the error's fix points to.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise InputError(
            None, f"device {device!r} is unknown.", "use auto, cpu or cuda.", field="device"
        )
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(
            None,
            "device is cuda but no CUDA GPU is visible to this job.",
            f"request a GPU (config `gpu: true`) or set the {owner}'s `device` to auto or cpu.",
            field="device",
        )
    if device != "cpu" and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def select_runtime(device: str = "auto", threads: int = 1) -> Runtime:
    """The runtime for this machine: CUDA when visible (``device: auto``), else CPU.

    ``device`` is ``auto``, ``cpu`` or ``cuda``. On CPU the intra-op thread count
    is set to ``threads`` (the rule's), and deterministic algorithms are
    requested so reruns give identical bytes.
    """
    cuda = resolve_device(device, "extractor").type == "cuda"
    threads = max(int(threads), 1)
    torch.set_num_threads(threads)
    if cuda:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        return Runtime(torch.device("cuda"), dtype, threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return Runtime(torch.device("cpu"), None, threads)


def auto_batch_size(
    run_batch: Callable[[int], Any],
    runtime: Runtime,
    requested: int | str,
    *,
    probe: int = 2,
    limit: int = 4096,
    memory_share: float = 0.7,
) -> int:
    """Batch size: ``requested`` (an int) or, with ``auto`` on CUDA, sized from free memory.

    ``run_batch(n)`` runs the model once on ``n`` samples. On CUDA it is run on
    ``probe`` samples and the peak memory per sample is measured; the batch is
    the number of samples that fit in ``memory_share`` of the free memory
    (a power of two, at most ``limit``). ``auto`` on CPU gives 16.
    """
    if requested != "auto":
        return max(int(requested), 1)
    if not runtime.cuda:
        return 16
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    run_batch(probe)
    torch.cuda.synchronize()
    per_sample = max((torch.cuda.max_memory_allocated() - before) / probe, 1.0)
    free, _total = torch.cuda.mem_get_info()
    fit = int(free * memory_share / per_sample)
    size = 2 ** int(math.log2(max(fit, 1)))
    return int(min(max(size, 1), limit))


# ------------------------------------------------------------------ weights


def is_local(model: str) -> bool:
    """Whether ``model`` names a local directory (rather than a hub id like ``org/name``)."""
    return model.startswith(("/", ".", "~")) or Path(model).expanduser().exists()


def missing_model_error(model: str, err: Exception, field: str) -> InputError:
    """The InputError for a model id/dir that cannot be loaded (offline or absent)."""
    if is_local(model):
        return InputError(
            model,
            f"the model directory cannot be loaded ({type(err).__name__}: {err}).",
            "point the setting at a directory written by save_pretrained (config.json and the weights), or at a hub id.",
            field=field,
        )
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    return InputError(
        model,
        f"the model {model!r} is not available{' offline (HF_HUB_OFFLINE is set)' if offline else ''} ({type(err).__name__}).",
        f"on a machine with internet run `hf download {model}` (or huggingface-cli download) and copy the cache "
        "($HF_HOME, default ~/.cache/huggingface) to this machine, or save the model with save_pretrained "
        "and set this setting to that directory.",
        field=field,
    )


def weights_revision(model: str, loaded: Any) -> str:
    """Revision of loaded weights: the hub commit hash, else a sha256 of the local weight files."""
    commit = getattr(getattr(loaded, "config", None), "_commit_hash", None)
    if commit:
        return f"hub:{commit}"
    directory = Path(model).expanduser()
    files = sorted(
        p
        for p in directory.glob("*")
        if p.suffix in (".safetensors", ".bin", ".pth", ".pyth", ".pt", ".ckpt")
    )
    if directory.is_file():
        files = [directory]
    if not files:
        return "unknown"
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def torch_versions() -> tuple[str, ...]:
    """Packages whose versions go into a learned extractor's provenance."""
    return ("torch", "torchvision", "transformers", "pytorchvideo", "av", "h5py")


def from_pretrained(loader: Callable[..., Any], model: str, field: str, **kwargs: Any) -> Any:
    """``loader(model, **kwargs)`` (a transformers ``from_pretrained``), offline mode respected.

    transformers reads ``HF_HUB_OFFLINE`` itself; a model that is neither a local
    directory nor in the cache becomes an :class:`InputError` naming the id/dir
    and how to make it available.
    """
    if is_local(model) and not Path(model).expanduser().is_dir():
        raise missing_model_error(model, FileNotFoundError("no such directory"), field)
    try:
        return loader(str(Path(model).expanduser()) if is_local(model) else model, **kwargs)
    except (OSError, ValueError) as err:
        raise missing_model_error(model, err, field) from err
