"""The one place a device is chosen: what the user asked for, else cuda > mps > cpu."""

from __future__ import annotations

import torch

from nst_core.errors import DeviceError


def available_devices() -> list[str]:
    """Device kinds usable on this machine, best first, e.g. ``["cuda", "cpu"]``."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def resolve_device(requested: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"``/``None``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"mps"`` into a usable device.

    Raises :class:`DeviceError` when the device does not exist here, listing the ones that do.
    """
    if requested is None or str(requested) == "auto":
        return torch.device(available_devices()[0])
    try:
        device = torch.device(requested)
    except (RuntimeError, TypeError):
        raise DeviceError(f"unknown device {str(requested)!r}; use auto, "
                          f"{', '.join(available_devices())} (or cuda:N)") from None
    if device.type not in available_devices():
        raise DeviceError(f"device {str(requested)!r} is not available on this machine; "
                          f"available: {', '.join(available_devices())} (or use --device auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise DeviceError(f"device {str(requested)!r} does not exist: this machine has "
                          f"{torch.cuda.device_count()} CUDA device(s)")
    return device
