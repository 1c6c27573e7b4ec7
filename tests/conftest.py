"""Shared fixtures: real example images (downscaled) and registries without third-party plug-ins."""

from __future__ import annotations

from pathlib import Path
import shutil
import sys
import tempfile

import pytest

from nst_core import collect_registries, get_plugin_manager
from nst_core.image import read_image, resize

from helpers import EXAMPLES


@pytest.fixture(scope="session")
def examples() -> Path:
    return EXAMPLES


@pytest.fixture(scope="session")
def builtin_registries():
    """Registries with only the built-in plug-ins (third-party autoload off)."""
    return collect_registries(get_plugin_manager(autoload=False))


@pytest.fixture(scope="session")
def content_64():
    """Tübingen, (1, 3, 48, 64) in [0, 1]."""
    return resize(read_image(EXAMPLES / "tubingen.jpg").rgb, 48, 64)


@pytest.fixture(scope="session")
def style_64():
    """The Starry Night, (1, 3, 40, 64) in [0, 1]."""
    return resize(read_image(EXAMPLES / "starry_night.jpg").rgb, 40, 64)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on sys.path where tests install plug-in distributions (found like installed ones)."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv("NST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("NST_DISABLE_PLUGINS", raising=False)
    yield root
    for name in [m for m in sys.modules if m.startswith("nst_cli_test_")]:
        del sys.modules[name]


@pytest.fixture
def shared_dir():
    """A folder that an unprivileged user can enter (pytest's tmp_path parents are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="nst-image-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
