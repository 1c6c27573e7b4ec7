"""What ``nst batch`` will do, decided before any work: inputs, jobs, output names, what is done already.

INPUTS are files, folders (their images; ``--recursive`` goes into subfolders), globs
(``'photos/*.jpg'``, ``'**'`` with ``--recursive``) or ``@list.txt`` (one INPUT a line, relative
to the list's folder; blank lines and ``#`` comments skipped). A manifest (``--manifest
jobs.jsonl`` or ``.csv``) adds jobs with their own styles, masks, output name and settings.

Output names come from a template (``--name``, default ``{stem}_{style}.{ext}``); two jobs with
one output, an output that is an input, or a name outside OUTDIR are refused before anything runs.
An output is *done* when it exists and its run record (or, with ``--no-record``, the summary
``OUTDIR/batch.jsonl``) holds the same item key: the same input bytes, settings, seed and format.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
import csv
from dataclasses import dataclass, field
import glob
import json
import os
from pathlib import Path
import string
from typing import Any

from nst_core.batch.items import file_digest, input_digests, item_key, item_seed
from nst_core.errors import ConfigError, UnknownNameError
from nst_core.image import FORMATS
from nst_core.result import RECORD_KEY

from nst_cli import options
from nst_cli.record import sidecar_path
from nst_cli.settings import BY_KEY, RunSettings

IMAGE_SUFFIXES = frozenset({*FORMATS, ".bmp", ".gif"})
"""The files a folder INPUT contributes (any file named explicitly is tried, whatever its name)."""
DEFAULT_NAME = "{stem}_{style}.{ext}"
NAME_FIELDS = {
    "stem": "the content file's name without extension",
    "name": "the content file's name",
    "parent": "the content file's folder name",
    "rel": "the content's path inside the folder INPUT it came from, without extension (keeps subfolders)",
    "style": "the style images' names without extension, joined by +",
    "index": "the job's number, from 1",
    "ext": "the output format (--format)",
}
SUMMARY = "batch.jsonl"
MANIFEST_KEYS = {"content", "style", "styles", "mask", "masks", "name", "id"}
"""Manifest columns besides the settings (``steps``, ``style-weight`` ... as on the command line)."""
LIST_SEPARATOR = ";"
"""Several styles or masks in one CSV cell: ``a.jpg;b.jpg``."""


@dataclass(frozen=True)
class Content:
    """A content image and the name fields it gives (``rel``: its path inside its folder INPUT)."""

    path: Path
    rel: str


def _has_magic(text: str) -> bool:
    return glob.has_magic(text)


def _inside(path: Path, folder: Path | None) -> bool:
    if folder is None:
        return False
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _folder_images(folder: Path, recursive: bool, outdir: Path | None) -> list[Content]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    images = []
    for path in found:
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or not path.is_file():
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES and not _inside(path, outdir):
            images.append(Content(path, rel.with_suffix("").as_posix()))
    return sorted(images, key=lambda c: c.rel)


def expand_inputs(inputs: Sequence[str], *, recursive: bool = False, outdir: Path | None = None,
                  warn: Callable[[str], None] = lambda message: None, base: Path | None = None,
                  nested: bool = False) -> list[Content]:
    """INPUTS -> content files, in order, each once. A missing file stays in the list (its job
    fails with one line, the others go on); a folder or glob without images is a warning."""
    contents: list[Content] = []
    for text in inputs:
        if text.startswith("@") and not nested:
            contents += _list_file(Path(text[1:]), recursive, outdir, warn)
            continue
        path = Path(text) if base is None or Path(text).is_absolute() else base / text
        if path.is_dir():
            images = _folder_images(path, recursive, outdir)
            if _inside(path, outdir):
                warn(f"{path}: is inside OUTDIR, whose images are outputs, not inputs; choose another OUTDIR")
            elif not images:
                warn(f"{path}: no images in this folder{'' if recursive else ' (--recursive looks in subfolders)'}")
            contents += images
        elif not path.exists() and _has_magic(str(path)):
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=recursive))
            files = [p for p in matches if p.is_file() and not _inside(p, outdir)]
            if not files:
                warn(f"{text}: matched no file")
            contents += [Content(p, p.with_suffix("").name) for p in files]
        else:
            contents.append(Content(path, path.with_suffix("").name))
    seen: set[str] = set()
    unique = []
    for content in contents:
        key = os.path.normcase(str(content.path.absolute()))
        if key not in seen:
            seen.add(key)
            unique.append(content)
    return unique


def _list_file(path: Path, recursive: bool, outdir: Path | None, warn: Callable[[str], None]) -> list[Content]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"@{path}: cannot read the list ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"@{path}: not a text file (one input path a line)") from None
    entries = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    return expand_inputs(entries, recursive=recursive, outdir=outdir, warn=warn, base=path.parent, nested=True)


# --- manifests -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ManifestRow:
    """One job of a manifest: paths relative to the manifest's folder, settings by option key."""

    where: str
    """``jobs.csv:3`` for messages."""
    content: Path
    styles: tuple[Path, ...] | None
    masks: tuple[Path | None, ...] | None
    name: str | None
    settings: dict[str, Any] = field(default_factory=dict)


def _texts(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        value = [v.strip() for v in value.split(LIST_SEPARATOR)] if LIST_SEPARATOR in value else [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: expected a path or a list of paths, got {value!r}")
    return value


def _paths(value: Any, where: str, base: Path) -> tuple[Path, ...]:
    """One path or several (a list, or ``a;b`` in CSV), relative to ``base``."""
    return tuple(Path(text) if Path(text).is_absolute() else base / text for text in _texts(value, where))


def _mask_paths(value: Any, where: str, base: Path) -> tuple[Path | None, ...]:
    """Like :func:`_paths`; ``none`` is None (that style applies everywhere)."""
    return tuple(None if text.strip().lower() == options.MASK_NONE else
                 Path(text) if Path(text).is_absolute() else base / text for text in _texts(value, where))


def _row(raw: Mapping[str, Any], where: str, base: Path) -> ManifestRow:
    values = {str(k).strip().replace("_", "-"): v for k, v in raw.items() if v is not None and v != ""}
    for key in values:
        if key not in MANIFEST_KEYS and key not in BY_KEY:
            raise UnknownNameError(f"column in {where}", key, sorted(MANIFEST_KEYS | set(BY_KEY)))
    if "content" not in values:
        raise ConfigError(f"{where}: no content (give the photo's path in a \"content\" column)")
    [content] = _paths(values["content"], f"{where} content", base)
    style_value = values.get("styles", values.get("style"))
    mask_value = values.get("masks", values.get("mask"))
    name = values.get("name", values.get("id"))
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"{where}: name must be text, got {name!r}")
    settings = {key: value for key, value in values.items() if key in BY_KEY}
    for key in ("save-every", "checkpoint-every", "mask"):
        settings.pop(key, None)
    return ManifestRow(where, content,
                       None if style_value is None else _paths(style_value, f"{where} styles", base),
                       None if mask_value is None else _mask_paths(mask_value, f"{where} masks", base),
                       name, settings)


def _jsonl_rows(text: str, path: Path) -> list[ManifestRow]:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{where}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a JSON object like {{\"content\": \"photo.jpg\"}}")
        rows.append(_row(data, where, path.parent))
    return rows


def _csv_rows(text: str, path: Path) -> list[ManifestRow]:
    reader = csv.DictReader(text.splitlines())
    if not reader.fieldnames or "content" not in [f.strip() for f in reader.fieldnames]:
        raise ConfigError(f"{path}: the CSV manifest needs a header row with a \"content\" column")
    rows = []
    for number, record in enumerate(reader, start=2):
        if None in record:
            raise ConfigError(f"{path}:{number}: more cells than columns")
        cells = {k: options.scalar(v.strip()) for k, v in record.items() if v is not None and v.strip()}
        rows.append(_row(cells, f"{path}:{number}", path.parent))
    return rows


def read_manifest(path: Path) -> list[ManifestRow]:
    """A ``.jsonl`` (one JSON object a line) or ``.csv`` (a header row) manifest. Keys: ``content``
    (required), ``style``/``styles`` and ``mask``/``masks`` (a list, or ``;``-separated in CSV),
    ``name`` (an output name or template), and any setting of ``nst run`` (``steps``,
    ``style-weight``, ...), which overrides the command line for that job."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the manifest ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the manifest is not UTF-8 text") from None
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        rows = _jsonl_rows(text, path)
    elif suffix == ".csv":
        rows = _csv_rows(text, path)
    else:
        raise ConfigError(f"{path}: a manifest is .jsonl or .csv")
    if not rows:
        raise ConfigError(f"{path}: the manifest has no jobs")
    return rows


# --- jobs -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchJob:
    """One output to make."""

    id: str
    """The output's path inside OUTDIR (posix), which names the item everywhere."""
    content: Path
    styles: tuple[Path, ...]
    masks: tuple[Path | None, ...] | None
    output: Path
    settings: RunSettings


def render_name(template: str, fields: Mapping[str, Any]) -> str:
    """``template`` with ``{field}`` replaced (:data:`NAME_FIELDS`); a ConfigError names an unknown field."""
    try:
        for _, name, spec, conversion in string.Formatter().parse(template):
            if name is not None and name not in NAME_FIELDS:
                raise UnknownNameError("field in --name", name or "{}", NAME_FIELDS)
            if spec or conversion:
                raise ConfigError(f"--name {template!r}: write fields as {{name}} without a format spec")
        return template.format_map(fields)
    except ValueError as exc:
        raise ConfigError(f"--name {template!r}: {exc} (a literal brace is written {{{{ or }}}})") from None


def output_path(outdir: Path, name: str, template: str) -> tuple[str, Path]:
    """The item id and output path for a rendered name; refuses names outside OUTDIR and unknown formats."""
    relative = Path(name)
    if not name or relative.is_absolute() or ".." in relative.parts or name.endswith(("/", os.sep)):
        raise ConfigError(f"--name {template!r} gives {name!r}; names must be file names inside OUTDIR")
    if relative.suffix.lower() not in FORMATS:
        raise ConfigError(f"--name {template!r} gives {name!r}: unknown output extension "
                          f"{relative.suffix or '(none)'!r}; use one of {', '.join(sorted(FORMATS))}")
    return relative.as_posix(), outdir / relative


def check_collisions(jobs: Sequence[BatchJob], template: str) -> None:
    """Two jobs writing one file, or a job writing over any input, is refused (before any work)."""
    by_output: dict[str, BatchJob] = {}
    for job in jobs:
        key = os.path.normcase(str(job.output.absolute()))
        other = by_output.get(key)
        if other is not None:
            raise ConfigError(f"two jobs would write {job.output}: {other.content} and {job.content} (with "
                              f"{', '.join(str(s) for s in job.styles)}); make --name {template!r} tell them "
                              f"apart, e.g. with {{rel}}, {{parent}} or {{index}}")
        by_output[key] = job
    inputs: dict[str, Path] = {}
    for job in jobs:
        settings = job.settings
        for path in (job.content, *job.styles, *(m for m in job.masks or () if m is not None),
                     *([settings.init_image] if settings.init_image else [])):
            inputs[os.path.normcase(str(path.absolute()))] = path
    for key, job in by_output.items():
        for target in (key, os.path.normcase(str(sidecar_path(job.output).absolute()))):
            if target in inputs:
                raise ConfigError(f"{job.output}: the output would overwrite the input {inputs[target]}; choose "
                                  f"another OUTDIR or --name")
        if job.output.is_dir():
            raise ConfigError(f"{job.output}: is a folder; choose another --name")
    if SUMMARY in {job.id for job in jobs}:
        raise ConfigError(f"--name {template!r} would overwrite the summary {SUMMARY}")


# --- what is done already ------------------------------------------------------------------------


class Digests:
    """sha256 of input files, each file read once per batch (None: unreadable)."""

    def __init__(self) -> None:
        self._cache: dict[Path, str | None] = {}

    def __call__(self, path: Path | None) -> str | None:
        if path is None:
            return None
        if path not in self._cache:
            try:
                self._cache[path] = file_digest(path)
            except OSError:
                self._cache[path] = None
        return self._cache[path]


def job_key(job: BatchJob, digests: Digests) -> str | None:
    """The key the job's :class:`~nst_core.batch.BatchItem` will have (None: an input is unreadable)."""
    settings = job.settings
    found = input_digests(digests(job.content), [digests(s) for s in job.styles],
                          None if job.masks is None else [digests(m) if m is not None else None for m in job.masks],
                          digests(settings.init_image) if settings.init_image is not None else None)
    named = [job.content, *job.styles, *(m for m in job.masks or () if m is not None),
             *([settings.init_image] if settings.init_image else [])]
    if any(digests(path) is None for path in named):
        return None
    config = settings.config
    if config.seed is None:
        config = config.replace(seed=item_seed(found))
    return item_key(found, config, job.output.suffix)


def _png_record(path: Path) -> str | None:
    """The run record in a PNG's ``nst-record`` text (None for other files); pixels not decoded."""
    with open(path, "rb") as handle:
        if handle.read(8) != b"\x89PNG\r\n\x1a\n":
            return None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.text.get(RECORD_KEY)  # type: ignore[attr-defined]
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None


def recorded_key(output: Path) -> tuple[str | None, str | None]:
    """``(batch key, status)`` from the output's run record (sidecar, else PNG text); Nones if none."""
    text = None
    try:
        sidecar = sidecar_path(output)
        if sidecar.is_file():
            text = sidecar.read_text(encoding="utf-8")
        elif output.is_file():
            text = _png_record(output)
        data = json.loads(text) if text else None
    except (OSError, ValueError):
        return None, None
    if not isinstance(data, dict) or not isinstance(data.get("batch"), dict):
        return None, None
    return data["batch"].get("key"), data.get("status")


def read_summary(outdir: Path) -> dict[str, dict[str, Any]]:
    """The last summary line of each item in ``OUTDIR/batch.jsonl`` (a damaged line is skipped)."""
    latest: dict[str, dict[str, Any]] = {}
    try:
        text = (outdir / SUMMARY).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return latest
    for line in text.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("item"), str):
            latest[entry["item"]] = entry
    return latest


def is_done(job: BatchJob, key: str | None, summary: Mapping[str, Mapping[str, Any]]) -> bool:
    """The output exists and was made from the same inputs, settings, seed and format, and finished."""
    if key is None or not job.output.is_file():
        return False
    recorded, status = recorded_key(job.output)
    if recorded is not None:
        return recorded == key and status == "finished"
    entry = summary.get(job.id)  # --no-record: the summary remembers
    return entry is not None and entry.get("status") == "done" and entry.get("key") == key
