"""Run records for ``nst run``: what the CLI adds to :meth:`StyleResult.record`, and ``--from-record``.

Every output carries its record (unless ``--no-record``): the PNG text key ``nst-record`` and a
sidecar ``<output>.json`` (other formats: the sidecar only). On top of the engine's record (every
setting, the seed, versions, device) the CLI stores::

    "inputs": {"content": "/abs/photo.jpg", "styles": ["/abs/style.jpg"],
               "masks": ["/abs/sky.png", null] or null, "init": "/abs/start.png" or null},
    "strength": 0.75 or null,            # --strength, when given
    "base_style_weight": 1.0 or null     # the style weight --strength multiplied

so ``nst run --from-record out.png -o again.png`` finds the same files and settings, and a new
``--strength`` or ``--style-weight`` is applied to the recorded base, not on top of the old strength.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
import json
from pathlib import Path
from typing import Any

from nst_core import StyleConfig
from nst_core.config import config_from_dict
from nst_core.result import RECORD_KEY
from nst_core.errors import ConfigError, NSTError
from nst_core.image import open_regular_file

FORMAT_PREFIX = "nst-record/"


@dataclass(frozen=True)
class RunRecord:
    """A record read back: the settings and, when the CLI wrote it, the input paths."""

    path: Path
    config: StyleConfig
    content: Path | None
    styles: tuple[Path, ...]
    masks: tuple[Path | None, ...] | None
    init: Path | None
    strength: float | None
    base_style_weight: float | None


def _absolute(path: Path | str | None) -> str | None:
    return None if path is None else str(Path(path).absolute())


def cli_fields(content: Path, styles: Sequence[Path], masks: Sequence[Path | None] | None, init: Path | None,
               strength: float | None, base_style_weight: float | None) -> dict[str, Any]:
    """The keys the CLI adds to the engine's record (absolute paths)."""
    return {
        "inputs": {
            "content": _absolute(content),
            "styles": [_absolute(s) for s in styles],
            "masks": None if masks is None else [_absolute(m) for m in masks],
            "init": _absolute(init),
        },
        "strength": strength,
        "base_style_weight": base_style_weight if strength is not None else None,
    }


def sidecar_path(output: Path) -> Path:
    """``out.png`` -> ``out.png.json``."""
    return Path(f"{output}.json")


MAX_RECORD_BYTES = 16 * 2**20
"""A ``.json`` run record larger than this is refused before it is read (records take a few kB)."""


def _open(path: Path, missing: str | None = None, max_bytes: int | None = None):
    """A run record's file, opened with the same regular-file check as images (a named pipe or a
    device there is refused, never read)."""
    return open_regular_file(path, error=ConfigError, kind="a run record", max_bytes=max_bytes,
                             missing=missing or f"{path}: no such run record (give an image written by nst run, "
                                                f"or its .json sidecar)")


def _record_text(path: Path) -> str:
    """The record's JSON text: the file itself (``.json``), the PNG's ``nst-record`` text, or the sidecar."""
    sidecar = sidecar_path(path)
    try:
        if path.suffix.lower() == ".json":
            with _open(path, max_bytes=MAX_RECORD_BYTES) as handle:
                return handle.read().decode("utf-8")
        with _open(path) as handle:
            text = _png_text(handle)
        if text is not None:
            return text
        if sidecar.exists():
            with _open(sidecar, max_bytes=MAX_RECORD_BYTES) as handle:
                return handle.read().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the run record ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a run record (not UTF-8 text)") from None
    raise ConfigError(f"{path}: no run record in this file (written with --no-record or by another program?) "
                      f"and no {sidecar.name} next to it")


def _png_text(handle) -> str | None:
    """The ``nst-record`` text chunk of a PNG (None for other files); the pixels are not decoded."""
    if handle.read(8) != b"\x89PNG\r\n\x1a\n":
        return None
    handle.seek(0)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(handle) as image:
            return image.text.get(RECORD_KEY)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None


def _path(value: Any, where: str) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: expected a file path, got {value!r}")
    return Path(value)


def _number(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    return float(value)


def parse_record(data: Any, path: Path) -> RunRecord:
    """A record dict (from the PNG or the sidecar) -> :class:`RunRecord`; damage is one clear line."""
    if not isinstance(data, Mapping) or not str(data.get("format", "")).startswith(FORMAT_PREFIX) \
            or not isinstance(data.get("config"), Mapping):
        raise ConfigError(f"{path}: not an nst run record (expected a JSON object with "
                          f"\"format\": \"{FORMAT_PREFIX}...\" and \"config\")")
    try:
        config = config_from_dict(data["config"])
    except NSTError as exc:
        raise ConfigError(f"{path}: the record's settings: {exc}") from None
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise ConfigError(f"{path}: damaged run record settings ({type(exc).__name__}: {exc})") from None
    inputs = data.get("inputs") or {}
    if not isinstance(inputs, Mapping):
        raise ConfigError(f"{path}: damaged run record: \"inputs\" is not an object")
    where = f"{path}: record inputs"
    styles = inputs.get("styles") or []
    masks = inputs.get("masks")
    if not isinstance(styles, list) or (masks is not None and not isinstance(masks, list)):
        raise ConfigError(f"{where}: \"styles\" and \"masks\" must be lists")
    return RunRecord(
        path=path,
        config=config,
        content=_path(inputs.get("content"), where),
        styles=tuple(_path(s, where) for s in styles),
        masks=None if masks is None else tuple(_path(m, where) for m in masks),
        init=_path(inputs.get("init"), where),
        strength=_number(data.get("strength"), f"{path}: record strength"),
        base_style_weight=_number(data.get("base_style_weight"), f"{path}: record base_style_weight"),
    )


def load_record(path: Path) -> RunRecord:
    """Read ``--from-record FILE``: a PNG written by ``nst run``, its ``.json`` sidecar, or any image
    with a sidecar next to it."""
    text = _record_text(path)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: the run record is not valid JSON ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not a run record (its JSON is nested too deeply)") from None
    try:
        return parse_record(data, path)
    except RecursionError:
        raise ConfigError(f"{path}: damaged run record (its values are nested too deeply)") from None
