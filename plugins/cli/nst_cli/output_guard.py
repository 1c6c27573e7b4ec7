"""Before step 1 of ``nst run``: every file the run may write, checked against every file it reads.

A run may write the output ``OUT``, its run record ``OUT.json``, its resume file
``OUT.resume.pt`` and, with ``--save-every N``, the intermediates ``OUT-stem.stepK.ext`` for every
K = N, 2N, … up to the run's total. :func:`check_output` refuses, in one line and before anything
heavy happens:

* an unknown output extension, a missing output folder, a target that is a folder;
* a target that is (the same path, a symbolic link to, or a hard link of) an input: the content,
  style, mask and init images, the ``--config`` file and the ``--from-record`` file;
* an existing target without any write permission bit (``chmod 0444``: someone protected it);
* a name the file system cannot hold: the target's name, or the name of the temporary file it is
  written through (``.NAME.xxxxxxxx.part``, 15 characters longer), over the folder's name limit;
* a folder the run cannot write to (probed by creating and deleting a temporary file, so a
  read-only file system or a permission problem is found now, not after the whole run).

Then :func:`remove_stale_parts` deletes temporary files of the targets' own pattern
(``.NAME.<8 hex>.part``) that a killed run left behind, when they are older than
:data:`STALE_PART_SECONDS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
import os
from pathlib import Path
import re
import stat
import time

from nst_core.config import StyleConfig
from nst_core.planning import scale_sizes, steps_per_scale
from nst_core.errors import ConfigError, ImageError
from nst_core.image import FORMATS, PART_SUFFIX_LENGTH, is_temporary_of, probe_writable
from nst_core.resume import resume_path

from nst_cli.record import sidecar_path

STALE_PART_SECONDS = 600.0
"""A temporary ``.part`` file untouched for this long belongs to a run that was killed."""


def intermediate_path(output: Path, step: int) -> Path:
    """``out.png`` -> ``out.step50.png``."""
    return output.with_name(f"{output.stem}.step{step}{output.suffix}")


def _intermediate_step(output: Path, candidate: Path) -> int | None:
    """K when ``candidate`` (a name in the output's folder) is ``OUT-stem.stepK.ext``, else None."""
    match = re.fullmatch(re.escape(output.stem) + r"\.step([0-9]+)" + re.escape(output.suffix), candidate.name)
    return int(match.group(1)) if match else None


def total_steps(config: StyleConfig) -> int:
    """The run's total steps (the steps of every scale; the scales do not depend on the image)."""
    sides = scale_sizes(config.size, config.scales, config.scale_factor, min(config.min_scale_size, config.size))
    return sum(steps_per_scale(config, len(sides)))


def _name_max(directory: Path) -> int:
    try:
        return int(os.pathconf(directory, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def _same(path: Path, target: Path) -> bool:
    try:
        if path.resolve() == target.resolve():
            return True
        return path.exists() and target.exists() and os.path.samefile(path, target)
    except OSError:
        return False


def _what(output: Path, target: Path) -> str:
    if target == output:
        return "output"
    if target.name == sidecar_path(output).name:
        return "run record"
    if target.name == resume_path(output).name:
        return "resume file"
    return "intermediate image"


def planned_targets(output: Path, *, record: bool, resume: bool) -> list[Path]:
    """Every path the run may write, except the intermediates (named by :func:`intermediate_names`)."""
    return [output, *([sidecar_path(output)] if record else []), *([resume_path(output)] if resume else [])]


def check_output(output: Path, inputs: Iterable[Path], *, record: bool = False, resume: bool = False,
                 save_every: int | None = None, total: int | None = None) -> None:
    """Refuse (before any work) a run whose output, run record, resume file or intermediates
    would overwrite an input or cannot be written (see the module docstring).

    :param inputs: every file the run reads.
    :param save_every: ``--save-every N`` (intermediates every N steps), or None.
    :param total: the run's total steps (the last intermediate); None: no bound.
    :raises ConfigError: the extension, an input in the way.
    :raises ImageError: the folder, a name too long, a read-only target, a folder not writable.
    """
    if output.suffix.lower() not in FORMATS:
        raise ConfigError(f"{output}: unknown output extension {output.suffix!r}; "
                          f"use one of {', '.join(sorted(FORMATS))}")
    directory = output.parent
    if not directory.is_dir():
        raise ImageError(f"{output}: the output directory {str(directory)!r} does not exist; create it first")
    inputs = [Path(p) for p in inputs]
    targets = planned_targets(output, record=record, resume=resume)
    if save_every:
        targets += _intermediate_targets(output, inputs, save_every, total)
    for target in targets:
        if target.is_dir():
            raise ImageError(f"{target}: is a directory; give the output a file name")
    for target in targets:
        for path in inputs:
            if _same(path, target):
                raise ConfigError(f"{output}: the {_what(output, target)} {target.name} would overwrite the input "
                                  f"{path}; choose another output path")
    for target in targets:
        try:
            mode = os.stat(target).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) and not mode & 0o222:
            raise ImageError(f"{target}: the file exists and is read-only (protected?); make it writable "
                             f"(chmod u+w) or choose another output path")
    check_names(output, record=record, resume=resume, save_every=save_every, total=total)
    probe_writable(directory, output.name)


def _intermediate_targets(output: Path, inputs: Sequence[Path], save_every: int, total: int | None) -> list[Path]:
    """The intermediates ``OUT-stem.stepK.ext`` the run will write (K a multiple of ``save_every``,
    at most ``total``) that exist now in the output's folder, or that an input resolves to."""
    directory = output.parent

    def written(path: Path) -> bool:
        k = _intermediate_step(output, path)
        return k is not None and k > 0 and k % save_every == 0 and (total is None or k <= total)

    try:
        found = [path for path in sorted(directory.iterdir()) if written(path)]
    except OSError:
        found = []
    for path in inputs:  # an input reached through a link or another spelling of the folder
        real = path.resolve()
        if real.parent == directory.resolve() and written(real):
            found.append(directory / real.name)
    return found


def check_names(output: Path, *, record: bool, resume: bool, save_every: int | None, total: int | None) -> None:
    """Refuse a name the folder cannot hold: with its temporary ``.NAME.xxxxxxxx.part`` (the
    longest of all), every name the run writes must fit the file system's name limit."""
    names = [p.name for p in planned_targets(output, record=record, resume=resume)]
    if save_every:
        names.append(intermediate_path(output, max(save_every, total or 0)).name)
    limit = _name_max(output.parent)
    for name in names:
        if len(os.fsencode(name)) + PART_SUFFIX_LENGTH > limit:
            room = limit - PART_SUFFIX_LENGTH - (len(os.fsencode(name)) - len(os.fsencode(output.name)))
            raise ImageError(f"{output.parent / name}: the name is too long for this file system (at most {limit} "
                             f"bytes, and nst writes through a temporary name {PART_SUFFIX_LENGTH} bytes longer); "
                             f"use an output name of at most {max(room, 1)} bytes")


def remove_stale_parts(output: Path, *, older_than: float = STALE_PART_SECONDS, now: float | None = None,
                       names: Sequence[str] | None = None) -> list[Path]:
    """Delete the temporary files ``.NAME.<8 hex>.part`` of the run's own targets (output, run
    record, resume file, intermediates) that a killed run left in the output's folder, when they
    were last written more than ``older_than`` seconds ago (a run writing now keeps its own).
    Returns what was removed; files that cannot be removed are left alone."""
    now = time.time() if now is None else now
    own = {output.name, sidecar_path(output).name, resume_path(output).name} if names is None else set(names)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(output.parent))
    except OSError:
        return removed
    for entry in entries:
        target = is_temporary_of(entry.name)
        if target is None or not (target in own or _intermediate_step(output, Path(target)) is not None):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or now - info.st_mtime <= older_than:
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed
