"""``--checkpoint-every N`` and ``--resume``: the resume file next to the output.

With either option a run keeps its state in ``OUT.resume.pt`` (``out.png`` ->
``out.png.resume.pt``; :mod:`nst_core.resume`): every N steps, and when SIGINT/SIGTERM stops it.
``nst run <the same arguments> --resume`` goes on from that file at the saved scale and step
(the step numbers continue, the total stays); a finished run deletes the file. Each write is
atomic, so an interruption during a write leaves the previous state intact. A file that cannot
be written is a warning, never the end of a long run.

The file is refused (one line, before the run starts) when the settings or the input images
differ from the stopped run's, and it is read with ``torch.load(weights_only=True)`` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nst_core import NSTError, Progress, StyleConfig, StyleResult
from nst_core.errors import ResumeError
from nst_core.image import LoadedImage
from nst_core.planning import steps_per_scale
from nst_core.resume import RunState, check_resume, inputs_fingerprint, load_state, resume_path, save_state

from nst_cli.render import Reporter


@dataclass
class ResumeFile:
    """The resume file of one ``nst run``: where it is, how often it is written, what it held."""

    path: Path
    every: int | None
    """Write it every N steps (None: only when interrupted)."""
    state: RunState | None = None
    """The state read with ``--resume`` (None: a fresh run)."""

    @classmethod
    def open(cls, output: Path, every: int | None, resume: bool, reporter: Reporter) -> ResumeFile | None:
        """The resume file for ``output`` (None when neither option was given); with ``resume``,
        its state is read now (:class:`ResumeError` when it is missing or not usable)."""
        if every is None and not resume:
            return None
        path = resume_path(output)
        if path.is_dir():
            raise ResumeError(f"{path}: is a folder; the resume file of {output} needs that name")
        state = None
        if resume:
            if not path.exists():
                raise ResumeError(f"--resume: there is no resume file {path} (a run writes it with --checkpoint-every "
                                  f"N, and when --checkpoint-every or --resume is given and the run is "
                                  f"interrupted); run without --resume")
            state = load_state(path)
        elif path.exists():
            reporter.warning(f"{path} from an earlier run will be replaced; add --resume to continue that run instead")
        return cls(path, every, state)

    def check(self, config: StyleConfig, images: Sequence[LoadedImage], masks: Sequence[LoadedImage | None] | None,
              init: LoadedImage | None, sizes: Sequence[tuple[int, int]]) -> None:
        """Refuse (before the run starts) a state from other settings or images than this run's.

        :param images: the content, then each style image, as read.
        :param sizes: the working ``(width, height)`` of each scale.
        """
        if self.state is None:
            return
        fingerprint = inputs_fingerprint(images[0], images[1:], masks or (), init)
        try:
            check_resume(self.state, config=config, inputs=fingerprint, total=sum(steps_per_scale(config, len(sizes))),
                         shapes=[(h, w) for w, h in sizes])
        except ResumeError as exc:
            raise ResumeError(f"{self.path}: {exc}") from None

    def on_progress(self, progress: Progress, reporter: Reporter) -> None:
        """Every ``every`` steps (not the last: the finished run deletes the file), write the state."""
        if self.every and progress.step % self.every == 0 and progress.step < progress.total \
                and progress.state is not None:
            self._write(progress.state(), reporter)

    def after(self, result: StyleResult, reporter: Reporter) -> bool:
        """After the run: a finished run deletes the file, a stopped one writes where it stopped.
        Returns True when the file now holds the stopped run's state."""
        if result.status == "finished":
            try:
                self.path.unlink(missing_ok=True)
            except OSError as exc:
                reporter.warning(f"could not delete the resume file {self.path}: {exc.strerror or exc}")
            return False
        if result.status == "stopped" and result.state is not None:
            return self._write(result.state, reporter)
        return False

    def _write(self, state: RunState, reporter: Reporter) -> bool:
        try:
            save_state(state, self.path)
        except NSTError as exc:
            reporter.warning(f"could not save the resume file: {exc}")
            return False
        reporter.checkpoint(self.path, state.step)
        return True
