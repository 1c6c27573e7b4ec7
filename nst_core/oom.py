"""Running out of device memory mid-run: the one-line error, and the retry policy's next mode."""

from __future__ import annotations

import torch

from nst_core.config import StyleConfig
from nst_core.errors import ResourceError
from nst_core.types import Backbone

OutOfMemory = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)

OUT_OF_MEMORY_TEXT = ("DefaultCPUAllocator: can't allocate memory", "DefaultCPUAllocator: not enough memory",
                      "out of memory")
"""What the allocators say in a RuntimeError when memory runs out (CPU on Linux/macOS and
Windows; MPS and older CUDA builds)."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True when ``exc`` means the device ran out of memory: ``torch.OutOfMemoryError`` (CUDA), a
    ``MemoryError``, or the ``RuntimeError`` a CPU (or MPS) allocation failure raises
    ("DefaultCPUAllocator: can't allocate memory: you tried to allocate ... bytes")."""
    if isinstance(exc, (MemoryError, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError))):
        return True
    return isinstance(exc, RuntimeError) and any(text in str(exc) for text in OUT_OF_MEMORY_TEXT)


def out_of_memory_error(device: torch.device, size: tuple[int, int], config: StyleConfig) -> ResourceError:
    """The one-line error for a device that ran out of memory at ``size`` ``(w, h)``."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    hint = "a smaller size" if config.precision != "float32" else "precision='bf16' or a smaller size"
    return ResourceError(f"{device} ran out of memory at {size[0]}x{size[1]} px; try {hint} "
                         f"(or device='cpu', which has more memory)")


def lower_memory_mode(backbone: Backbone, config: StyleConfig, device: torch.device,
                      size: tuple[int, int]) -> tuple[StyleConfig, str]:
    """After running out of memory at ``size`` ``(w, h)`` with ``on_oom="retry"``: switch to the
    next lower-memory mode (gradient checkpointing on, then bf16) and return the config to go on
    with and what was switched. Raises the one-line :class:`ResourceError` when retrying is off or
    no mode is left."""
    switched = None
    if config.on_oom == "retry":
        if backbone.supports_checkpoint and not backbone.checkpoint:
            backbone.checkpoint, switched = True, "gradient checkpointing on"
        elif config.precision == "float32":
            config, switched = config.replace(precision="bf16"), "precision bf16"
    if switched is None:
        raise out_of_memory_error(device, size, config)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return config, switched
