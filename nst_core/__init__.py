"""nst_core: neural style transfer (Gatys et al. 2015) with pluggable backbones and losses.

Public API::

    import nst_core
    result = nst_core.stylize("photo.jpg", "painting.jpg", size=512)
    result.save("out.png")

    plan = nst_core.plan("photo.jpg", "painting.jpg", size=512)   # every decision, nothing run yet
    print(plan.device, plan.config.precision, plan.seed, plan.sizes)
    result = nst_core.run(plan)

    model = nst_core.load_model()   # many runs, one backbone load: plan(..., model=model)

Images are ``(1, 3, H, W)`` float32 RGB tensors in [0, 1]; see :func:`stylize`.
"""

from nst_core._markers import hookimpl
from nst_core.config import LossSpec, StyleConfig
from nst_core.device import resolve_device
from nst_core.engine import run, stylize
from nst_core.errors import NSTError
from nst_core.image import load_image, read_image, save_image
from nst_core.planning import Model, RunPlan, load_model, plan
from nst_core.plugins import get_plugin_manager
from nst_core.progress import Progress
from nst_core.registry import Registries, collect_registries
from nst_core.result import StyleResult
from nst_core.resume import RunState
from nst_core.types import Backbone, LayerSchedule, LossTerm, MemoryProfile, Targets

try:
    from importlib.metadata import version as _version

    __version__ = _version("nst-core")
except Exception:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "Backbone", "LayerSchedule", "LossSpec", "LossTerm", "MemoryProfile", "Model", "NSTError", "Progress",
    "Registries", "RunPlan",
    "RunState", "StyleConfig", "StyleResult", "Targets", "collect_registries", "get_plugin_manager", "hookimpl",
    "load_image", "load_model", "plan", "read_image", "resolve_device", "run", "save_image", "stylize",
    "__version__",
]
