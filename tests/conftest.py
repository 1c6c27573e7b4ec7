"""Shared fixtures: real example images (downscaled) and registries without third-party plug-ins."""

from __future__ import annotations

from pathlib import Path

import pytest

from nst_core import collect_registries, get_plugin_manager
from nst_core.image import read_image, resize

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


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
