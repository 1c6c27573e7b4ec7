"""The two other PyTorch peers as benchmark contestants: neural-style-pt and pystiche.

Both run **their own default recipe** (layers, weights, initialisation, L-BFGS settings) on the
**same weights** as nst-core (:mod:`benchmarks.convert_weights`), at the pair's size, for a
given number of steps; the installed packages are not modified. What the harness adapts, from
here only:

* neural-style-pt (PyPI ``neural-style`` 0.5.7, ``neural_style/neural_style.py``) parses
  ``sys.argv`` when imported and runs everything in ``main()``; it is called with its own
  command-line flags (``-gpu c -model_file <converted> -disable_check -num_iterations N
  -print_iter 0 -save_iter 0 -seed 0``: no console or intermediate-file output, a fixed seed).
  ``-disable_check`` is its flag for a file without the classifier. One ``optim.LBFGS.step``
  with ``max_iter=N`` runs the whole optimisation; to count and pace steps, the module's
  ``optim`` is swapped for one whose ``LBFGS`` is torch's, with the closure wrapped (one
  closure call = one step, as in its own ``num_calls``). Its output is the PNG it writes itself
  (``deprocess``: /256, clamp, 8 bits), read back.
* pystiche 1.0.1 imports ``model_urls`` from ``torchvision.models.alexnet``/``.vgg``, which
  torchvision removed in 0.15 (here 0.29); :func:`import_pystiche` puts those dicts back (built
  from torchvision's weight enums) before importing it. The recipe is the one of pystiche's
  example "Neural Style Transfer with pystiche" (``examples/beginner``): VGG19 multi-layer
  encoder, content ``FeatureReconstructionLoss`` at relu4_2 (weight 1), style ``GramLoss`` at
  relu1_1 … relu5_1 (layer weights "mean", score weight 1e3), start from the content image,
  ``pystiche.optim.image_optimization`` with its ``default_image_optimizer`` (L-BFGS, lr 1,
  ``max_iter=1``: one evaluation per step). The encoder is built with ``pretrained=False,
  framework="caffe"`` and given the converted weights through its ``load_state_dict``; the
  optimizer getter passed to ``image_optimization`` builds the same L-BFGS and only reports each
  step. Output as its ``write_image`` writes it (clamp, 8 bits), read back.

Each runner has the contract of :mod:`benchmarks.common`'s: ``(pair, steps, device, *, turn,
**options) -> Run`` with the image RGB in [0, 1].
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
import sys
import tempfile
import types
from typing import Any

import torch

from benchmarks.common import Pair, PeakMemory, Run, Turn
from benchmarks.convert_weights import convert

NEURAL_STYLE_PT_DEFAULTS = {"content_weight": 5.0, "style_weight": 100.0, "tv_weight": 1e-3, "init": "random"}
PYSTICHE_DEFAULTS = {"content_weight": 1.0, "style_weight": 1e3}


class StopRun(Exception):
    """Raised inside a peer's loop when the pacing says stop (a time budget is spent)."""


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def import_pystiche():
    """``import pystiche`` (and its enc/loss/optim/image) on a torchvision without ``model_urls``."""
    import importlib

    import torchvision.models as tvm

    # the modules, not the functions of the same name that torchvision.models exports
    tv_alexnet = importlib.import_module("torchvision.models.alexnet")
    tv_vgg = importlib.import_module("torchvision.models.vgg")

    if not hasattr(tv_alexnet, "model_urls"):
        tv_alexnet.model_urls = {"alexnet": tvm.get_model_weights("alexnet").IMAGENET1K_V1.url}
    if not hasattr(tv_vgg, "model_urls"):
        tv_vgg.model_urls = {arch: tvm.get_model_weights(arch).IMAGENET1K_V1.url
                             for arch in ("vgg11", "vgg13", "vgg16", "vgg19",
                                          "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn")}
    import pystiche
    import pystiche.enc
    import pystiche.image
    import pystiche.loss
    import pystiche.optim

    return pystiche


def _read_rgb(path: Path) -> torch.Tensor:
    from nst_core.image import read_image

    return read_image(path).rgb


def pystiche_vgg19(weights: Path):
    """pystiche's ``vgg19_multi_layer_encoder(framework="caffe")`` holding the converted weights
    (built with ``pretrained=False``, so nothing is downloaded, then its ``load_state_dict``)."""
    import warnings

    pystiche = import_pystiche()
    with warnings.catch_warnings():  # torchvision's note on the `pretrained` argument pystiche passes
        warnings.simplefilter("ignore", UserWarning)
        mle = pystiche.enc.vgg19_multi_layer_encoder(pretrained=False, framework="caffe")
    keys = mle.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), framework="caffe")
    if keys.missing_keys or keys.unexpected_keys:
        raise RuntimeError(f"pystiche did not take the weights in {weights}: {keys}")
    return mle


# ---------------------------------------------------------------- neural-style-pt

def neural_style_pt_argv(pair: Pair, steps: int, model_file: Path, output: Path, **options: Any) -> list[str]:
    """neural-style-pt's command line for this run: its defaults except what the harness must set
    (files, size, steps, CPU, quiet, seed) and what ``options`` overrides
    (``style_weight``, ``content_weight``, ``tv_weight``, ``init``: its flag names without the dash)."""
    h, w = pair.content.shape[-2:]
    argv = ["neural-style", "-content_image", str(pair.content_path), "-style_image", str(pair.style_path),
            "-image_size", str(max(h, w)), "-gpu", "c", "-num_iterations", str(steps),
            "-model_file", str(model_file), "-disable_check", "-print_iter", "0", "-save_iter", "0",
            "-output_image", str(output), "-seed", "0"]
    for key, value in options.items():
        argv += [f"-{key}", str(value)]
    return argv


def run_neural_style_pt(pair: Pair, steps: int, device: str = "cpu", *, turn: Turn | None = None,
                        **options: Any) -> Run:
    """``steps`` L-BFGS iterations of neural-style-pt's ``main()`` (one evaluation each)."""
    import contextlib
    import io

    if device != "cpu":
        raise ValueError("the neural-style-pt runner drives its CPU mode (-gpu c) only")
    turn = turn or Turn()
    model_file = convert()["neural-style-pt"]
    workdir = Path(tempfile.mkdtemp(prefix="nst-bench-nspt-"))
    output = workdir / "out.png"
    argv = neural_style_pt_argv(pair, steps, model_file, output, **options)
    saved_argv = sys.argv
    sys.argv = argv
    try:
        import neural_style.neural_style as ns  # parses sys.argv on first import
    finally:
        sys.argv = saved_argv
    ns.params = ns.parser.parse_args(argv[1:])

    state: dict[str, Any] = {}

    class PacedLBFGS(torch.optim.LBFGS):
        def __init__(self, params, **kwargs):
            super().__init__(params, **kwargs)
            state["optimizer"] = self

        def step(self, closure):
            def paced():
                loss = closure()
                if not turn.step_done():
                    raise StopRun
                return loss

            return super().step(paced)

    ns.optim = types.SimpleNamespace(LBFGS=PacedLBFGS, Adam=torch.optim.Adam)
    log = io.StringIO()
    with PeakMemory(device) as mem, contextlib.redirect_stdout(log):
        turn.wait()
        try:
            ns.main()
        except StopRun:
            pass
        if not output.is_file():  # stopped early: the iterate, as its own deprocess writes it
            param = state["optimizer"].param_groups[0]["params"][0]
            ns.deprocess(param.detach().clone()).save(str(output))
        image = _read_rgb(output)
        tail = turn.tail()
    h, w = pair.content.shape[-2:]
    return Run("neural-style-pt", (w, h), len(turn.times), list(turn.times), sum(turn.times) + tail,
               mem.peak_mb, image, mem.before_mb, extra={"argv": argv[1:]}, cpu_times=list(turn.cpu_times))


# ---------------------------------------------------------------- pystiche

def run_pystiche(pair: Pair, steps: int, device: str = "cpu", *, turn: Turn | None = None,
                 content_weight: float = PYSTICHE_DEFAULTS["content_weight"],
                 style_weight: float = PYSTICHE_DEFAULTS["style_weight"]) -> Run:
    """``steps`` steps of ``pystiche.optim.image_optimization`` with its example's recipe."""
    pystiche = import_pystiche()
    from pystiche import loss, optim

    turn = turn or Turn()
    weights = convert()["pystiche"]
    dev = torch.device(device)
    output = Path(tempfile.mkdtemp(prefix="nst-bench-pystiche-")) / "out.png"
    holder: dict[str, torch.Tensor] = {}

    class PacedLBFGS(torch.optim.LBFGS):
        def step(self, closure):
            result = super().step(closure)
            if not turn.step_done():
                raise StopRun
            return result

    def get_optimizer(input_image: torch.Tensor) -> torch.optim.Optimizer:
        # pystiche.optim.default_image_optimizer, paced
        holder["image"] = input_image
        return PacedLBFGS([input_image.requires_grad_(True)], lr=1.0, max_iter=1)

    with PeakMemory(dev) as mem:
        turn.wait()
        mle = pystiche_vgg19(weights)
        content_loss = loss.FeatureReconstructionLoss(mle.extract_encoder("relu4_2"), score_weight=content_weight)
        style_loss = loss.MultiLayerEncodingLoss(
            mle, ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
            lambda encoder, layer_weight: loss.GramLoss(encoder, score_weight=layer_weight),
            score_weight=style_weight)
        criterion = loss.PerceptualLoss(content_loss, style_loss).to(dev)
        content = pair.content.to(dev)
        criterion.set_content_image(content)
        criterion.set_style_image(pair.style.to(dev))
        input_image = content.clone()
        try:
            result = optim.image_optimization(input_image, criterion, optimizer=get_optimizer,
                                              num_steps=steps, quiet=True)
        except StopRun:
            result = holder["image"].detach()
        pystiche.image.write_image(result, str(output))
        image = _read_rgb(output)
        tail = turn.tail()
    h, w = pair.content.shape[-2:]
    return Run("pystiche", (w, h), len(turn.times), list(turn.times), sum(turn.times) + tail,
               mem.peak_mb, image, mem.before_mb, cpu_times=list(turn.cpu_times))
