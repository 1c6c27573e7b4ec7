"""Helpers shared by the test modules (fixtures live in conftest.py): the example images, `nst`
in-process and its jsonl events, installing throw-away plug-in distributions, the documented
jsonl event shapes, and running a block as an unprivileged user."""

from __future__ import annotations

from contextlib import contextmanager
import importlib.util
import json
import os
from pathlib import Path
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from nst_core.image import read_image, resize

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
NST = Path(sys.executable).with_name("nst")
GIMP_PLUGIN_DIR = ROOT / "plugins" / "gimp" / "nst-style-transfer"
ENV = {k: v for k, v in os.environ.items() if k not in ("NST_DEBUG", "NST_DISABLE_PLUGINS")}
"""The environment for `nst` subprocesses: no --debug, plug-ins on."""
CONTENT = EXAMPLES / "tubingen.jpg"
STYLE = EXAMPLES / "starry_night.jpg"


def nst(*args, env=None):
    """`nst ARGS...` in-process (typer's CliRunner) on the real engine."""
    from nst_cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args], prog_name="nst", env=env)


def events(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def mean_difference(path, reference) -> float:
    image = read_image(path).rgb
    return (image - resize(read_image(reference).rgb, *image.shape[-2:])).abs().mean().item()


def install_plugin(site, name: str, source: str) -> None:
    """A distribution ``nst-cli-test-NAME 1.2.3`` with the nst_core entry point NAME = module."""
    module = f"nst_cli_test_{name}"
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{module}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: nst-cli-test-{name}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[nst_core]\n{name} = {module}\n")


def install_broken_plugin(site) -> None:
    """A distribution whose nst_core entry point cannot be imported."""
    install_plugin(site, "broken", "import no_such_module_for_nst_cli\n")


def documented_events() -> dict[str, dict]:
    """The example event of each kind from PROGRESS_JSONL.md's ```jsonl blocks (nst run's, nst batch's)."""
    text = (ROOT / "plugins" / "cli" / "PROGRESS_JSONL.md").read_text()
    blocks = [part.split("```", 1)[0] for part in text.split("```jsonl\n")[1:]]
    return {event["event"]: event for block in blocks for event in map(json.loads, block.splitlines())}


def same_shape(documented, actual) -> bool:
    """``actual`` has the JSON type of ``documented`` (numbers: any int or float)."""
    if isinstance(documented, bool) or documented is None:
        return type(actual) is type(documented)
    if isinstance(documented, float):
        return isinstance(actual, (int, float)) and not isinstance(actual, bool)
    if isinstance(documented, int):
        return isinstance(actual, int) and not isinstance(actual, bool)
    if isinstance(documented, str):
        return isinstance(actual, str)
    if isinstance(documented, list):
        return isinstance(actual, list) and all(same_shape(documented[0], item) for item in actual)
    if isinstance(documented, dict):
        sample = next(iter(documented.values()))
        return isinstance(actual, dict) and all(isinstance(k, str) and same_shape(sample, v)
                                                for k, v in actual.items())
    raise AssertionError(f"unexpected documented value {documented!r}")


def check_documented(event: dict) -> None:
    documented = documented_events()[event["event"]]
    assert set(event) == set(documented), (event, documented)
    for key, value in event.items():
        assert same_shape(documented[key], value), (key, value, documented[key])


@contextmanager
def as_unprivileged_user():
    """Run the block with the effective user and group 'nobody' (65534) when we are root, so that
    file permissions really apply; skip where that is impossible."""
    if os.geteuid() != 0:
        yield
        return
    try:
        os.setegid(65534)
        os.seteuid(65534)
    except (PermissionError, AttributeError):
        pytest.skip("running as root and cannot drop privileges, so chmod does not block reads")
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def load_bridge():
    """The GIMP plug-in's bridge module (GIMP's side, no torch), imported from its file once."""
    if "nst_gimp_bridge" in sys.modules:
        return sys.modules["nst_gimp_bridge"]
    spec = importlib.util.spec_from_file_location("nst_gimp_bridge", GIMP_PLUGIN_DIR / "nst_gimp_bridge.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module
