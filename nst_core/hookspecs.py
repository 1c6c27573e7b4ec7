"""Hook specifications of nst_core plug-ins.

A plug-in is a module with functions decorated by ``nst_core.hookimpl``. A third-party package
exposes one with ``[project.entry-points.nst_core] name = "package.module"`` in its pyproject.
Every ``nst_register_*`` hook receives a ``register`` callable and all implementations run; the
registry refuses a name that is already taken and names both plug-ins. Keep imports at the top
of a plug-in module light: load weights inside factories, not at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nst_core._markers import hookspec

if TYPE_CHECKING:
    from nst_core.registry import Register

__all__ = [
    "nst_register_backbones", "nst_register_loss_terms", "nst_register_layer_schedules", "nst_register_presets",
    "nst_register_flow_estimators",
]

HOOK_API_VERSION = (1, 1)
"""The version of the plug-in contract: these hooks, ``register``'s signature and the types of
:mod:`nst_core.types` (what the engine calls and checks). ``(major, minor)``: a minor release
only adds (a hook, an optional field with a default); a major one may change or remove, and is
announced in docs/plugins.md. A plug-in checks it with
``nst_core.hookspecs.HOOK_API_VERSION[0] == 1`` (see docs/plugins.md, "Stability")."""


@hookspec
def nst_register_backbones(register: Register) -> None:
    """Register feature-extractor backbones.

    Call ``register(name, factory, description="...")`` once per backbone. ``factory()`` (or
    ``factory(pooling="avg")`` for average pooling) returns an :class:`nst_core.types.Backbone`:
    an ``nn.Module`` with declared ``layer_names``, ``channels``, default layers and memory
    profile, whose ``forward(image, layers)`` takes ``(N, 3, H, W)`` float RGB in [0, 1] and
    returns ``{layer_name: (N, C, h, w)}``. The factory is called only when a run uses the
    backbone, so it may load weights (and should cache them per process). The full contract and
    what the engine checks: docs/plugins.md.

    :param register: adds one backbone; raises on a name that is already registered.
    """


@hookspec
def nst_register_loss_terms(register: Register) -> None:
    """Register loss terms.

    Call ``register(name, factory, description="...")``. ``factory(**params)`` receives the
    ``params`` of the user's ``LossSpec``, checked against the factory's declared parameters
    (:mod:`nst_core.params`), and returns an :class:`nst_core.types.LossTerm`, whose
    ``bind(targets)`` returns ``loss(image, features, layer_weights) -> 0-d tensor``.

    :param register: adds one loss term; raises on a name that is already registered.
    """


@hookspec
def nst_register_layer_schedules(register: Register) -> None:
    """Register layer-weight schedules λ[l].

    Call ``register(name, LayerSchedule(fn, varies=...), description="...")`` where
    ``fn(layers, channels, progress) -> {layer: weight}`` and ``progress`` in [0, 1] is the
    fraction of the current scale's steps done (``varies=True`` if the weights depend on it).

    :param register: adds one schedule; raises on a name that is already registered.
    """


@hookspec
def nst_register_presets(register: Register) -> None:
    """Register presets: named bundles of settings shared by the CLI, the GIMP filter and the API.

    Call ``register(name, settings, description="...")`` where ``settings`` is a mapping of
    :class:`nst_core.StyleConfig` field names to values (``{"size": 768, "steps": 300}``); a run
    with the preset starts from these and the user's own options override them.

    :param register: adds one preset; raises on a name that is already registered.
    """


@hookspec
def nst_register_flow_estimators(register: Register) -> None:
    """Register optical-flow estimators for video stylization (RAFT, PWC-Net, ...).

    Call ``register(name, factory, description="...")``. ``factory()`` returns a callable
    ``estimate(frame_a, frame_b) -> flow`` where the frames are ``(1, 3, H, W)`` float RGB in
    [0, 1] on the CPU and ``flow`` is ``(H, W, 2)`` float32 (dx, dy) in pixels such that
    ``frame_a[y, x]`` shows what ``frame_b`` shows at ``(x + dx, y + dy)``. The factory is called
    only when a video run uses the estimator, so it may load weights there.

    :param register: adds one estimator; raises on a name that is already registered.
    """
