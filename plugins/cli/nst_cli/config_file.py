"""``nst run --config FILE.toml``: the same keys as the long options, for repeatable runs.

Example ``run.toml``::

    preset = "balanced"
    steps = 300
    style-weight = 5.0
    style-layers = ["relu1_1", "relu2_1", "relu3_1"]   # or "relu1_1,relu2_1,relu3_1"
    layer-weights = { relu1_1 = 0.5, relu2_1 = 0.3, relu3_1 = 0.2 }
    loss = ["tv:1e-4"]
    seed = 7
    strength = 0.7                     # multiplies style-weight (see nst run --help)
    preserve-color = "luminance"
    mask = ["sky.png"]                 # one per style image; "none" for the whole image
    precision = "bf16"
    record = false                     # no run record next to the output

Keys may be spelled with ``-`` or ``_``. Options given on the command line override the file.
A relative ``init`` or ``mask`` path is relative to the working directory, as on the command line.
"""

from __future__ import annotations

from pathlib import Path
import sys
from typing import Any

from nst_core.errors import ConfigError
from nst_core.image import open_regular_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


MAX_CONFIG_BYTES = 16 * 2**20
"""A config file larger than this is refused before it is read (settings take a few kB)."""


def read_config_file(path: Path) -> dict[str, Any]:
    """The file's top-level keys (``_`` turned into ``-``) and their TOML values.

    The file must be a regular file (a named pipe or a device is refused, never read) of at most
    :data:`MAX_CONFIG_BYTES`.
    """
    try:
        with open_regular_file(path, error=ConfigError, kind="a TOML config file", allow_empty=True,
                               missing=f"{path}: no such config file", max_bytes=MAX_CONFIG_BYTES) as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid TOML file ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{path}: its values are nested too deeply to be settings; check the file") from None
    return {key.replace("_", "-"): value for key, value in data.items()}
