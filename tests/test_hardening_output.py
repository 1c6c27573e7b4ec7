"""Hardening (issue 16): what a run writes never replaces what it reads, is checked before step 1,
and an image and its run record are written together or not at all.

Refusals happen before the network loads, so most tests here take well under a second; the runs
that do start are 64 px and 1-3 steps.
"""

from __future__ import annotations

import os
from pathlib import Path
import shutil
import time

import pytest
import torch
from typer.testing import CliRunner

import nst_core
from nst_core import StyleResult
from nst_core.config import StyleConfig
from nst_core.errors import ConfigError, ImageError
from nst_core.image import PART_SUFFIX_LENGTH, is_temporary_of, probe_writable, save_together

from nst_cli import exit_codes, output_guard, run as run_module
from nst_cli.app import app

from conftest import EXAMPLES

CONTENT = EXAMPLES / "tubingen.jpg"
STYLE = EXAMPLES / "starry_night.jpg"
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def nst(*args):
    return CliRunner().invoke(app, ["run", *[str(a) for a in args]], prog_name="nst")


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("nst: error:")]
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    return lines[0]


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


# 1. --save-every must not overwrite an input


def test_save_every_intermediate_named_like_the_content_is_refused(tmp_path):
    photo = tmp_path / "out.step2.jpg"
    shutil.copy(CONTENT, photo)
    before = photo.read_bytes()
    result = nst(photo, STYLE, "-o", tmp_path / "out.jpg", "--size", 64, "--steps", 3, "--save-every", 2)
    assert result.exit_code == exit_codes.USER_ERROR, result.output
    line = one_error_line(result)
    assert "intermediate image out.step2.jpg would overwrite the input" in line
    assert photo.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.step2.jpg"]


def test_save_every_checks_only_the_steps_it_will_write(tmp_path):
    # step 3 is not a multiple of 2, step 4 is past the total of 3: neither is written, so both may be inputs
    for name in ("out.step3.jpg", "out.step4.jpg"):
        shutil.copy(CONTENT, tmp_path / name)
    output_guard.check_output(tmp_path / "out.jpg", [tmp_path / "out.step3.jpg", tmp_path / "out.step4.jpg"],
                              save_every=2, total=3)
    with pytest.raises(ConfigError, match="intermediate image out.step4.jpg"):
        output_guard.check_output(tmp_path / "out.jpg", [tmp_path / "out.step4.jpg"], save_every=2, total=4)


def test_save_every_hard_link_to_an_input_is_refused(tmp_path):
    photo = tmp_path / "photo.jpg"
    shutil.copy(CONTENT, photo)
    os.link(photo, tmp_path / "out.step4.jpg")
    with pytest.raises(ConfigError, match="intermediate image out.step4.jpg would overwrite the input"):
        output_guard.check_output(tmp_path / "out.jpg", [photo], save_every=2, total=10)


def test_intermediate_names_agree_with_what_the_run_writes():
    assert run_module.intermediate_path(Path("a/out.png"), 50) == Path("a/out.step50.png")
    assert output_guard._intermediate_step(Path("a/out.png"), Path("out.step50.png")) == 50


def test_total_steps_counts_every_scale():
    assert output_guard.total_steps(StyleConfig(size=64, steps=3)) == 3
    assert output_guard.total_steps(StyleConfig(size=1024, steps=10)) == 30  # 256, 512, 1024


# 7. the --config file is an input


def test_config_file_named_like_the_record_is_refused(tmp_path):
    config = tmp_path / "out9.png.json"
    config.write_text("steps = 1\n")
    result = nst(CONTENT, STYLE, "-o", tmp_path / "out9.png", "--size", 64, "--config", config)
    assert result.exit_code == exit_codes.USER_ERROR, result.output
    assert "run record out9.png.json would overwrite the input" in one_error_line(result)
    assert config.read_text() == "steps = 1\n"
    assert not (tmp_path / "out9.png").exists()


def test_from_record_file_is_an_input(tmp_path):
    record = tmp_path / "a.png.json"
    record.write_text("{}")
    with pytest.raises(ConfigError, match="run record a.png.json would overwrite the input"):
        output_guard.check_output(tmp_path / "a.png", [record], record=True)


# 2. names the file system cannot hold, folders that cannot be written: before step 1


def test_output_name_whose_temporary_is_too_long_is_refused_before_the_run(tmp_path):
    name = "x" * (255 - 4 - 5) + ".png"  # 250 bytes: legal, but ".NAME.xxxxxxxx.part" is 265
    result = nst(CONTENT, STYLE, "-o", tmp_path / name, "--size", 64, "--steps", 1)
    assert result.exit_code == exit_codes.USER_ERROR, result.output
    line = one_error_line(result)
    assert "the name is too long" in line and "use an output name of at most" in line
    assert list(tmp_path.iterdir()) == []


def test_record_name_too_long_keeps_the_existing_output(tmp_path):
    name = "y" * 232 + ".png"  # 236 bytes: the image and its temporary fit, OUT.json's temporary (256) does not
    out = tmp_path / name
    out.write_bytes(b"an older picture")
    result = nst(CONTENT, STYLE, "-o", out, "--size", 64, "--steps", 1)
    assert result.exit_code == exit_codes.USER_ERROR, result.output
    assert f"{name}.json: the name is too long" in one_error_line(result)
    assert out.read_bytes() == b"an older picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    # without a record the same name is fine
    output_guard.check_output(out, [CONTENT], record=False)


def test_the_longest_intermediate_name_is_checked(tmp_path):
    name = "z" * (255 - PART_SUFFIX_LENGTH - 4) + ".png"  # exactly fits; "out.step1000.png" does not
    output_guard.check_output(tmp_path / name, [CONTENT])
    with pytest.raises(ImageError, match=r"step1000\.png: the name is too long"):
        output_guard.check_output(tmp_path / name, [CONTENT], save_every=1000, total=1000)


def test_a_folder_that_cannot_be_written_is_refused_before_the_run():
    # /proc refuses new files even to root: the probe finds it before any work
    with pytest.raises(ImageError, match="nothing was written"):
        probe_writable("/proc", "out.png")
    result = nst(CONTENT, STYLE, "-o", "/proc/out.png", "--size", 64, "--steps", 1)
    assert result.exit_code == exit_codes.USER_ERROR
    assert "/proc/out.png" in one_error_line(result)


@pytest.mark.skipif(ROOT, reason="root writes into any folder")
def test_a_read_only_folder_is_refused_before_the_run(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        result = nst(CONTENT, STYLE, "-o", folder / "out.png", "--size", 64, "--steps", 1)
    finally:
        folder.chmod(0o755)
    assert result.exit_code == exit_codes.USER_ERROR
    assert "permission denied" in one_error_line(result)
    assert list(folder.iterdir()) == []


# 2. the image and its record: all or nothing


def _result() -> StyleResult:
    return StyleResult(image=torch.rand(1, 3, 8, 8), alpha=None, seed=1, status="finished", message="finished",
                       steps=1, total_steps=1, loss=1.0, terms={}, elapsed=0.1, device="cpu", sizes=((8, 8),),
                       config=StyleConfig(size=16, steps=1), notes=(), recoveries=0)


def test_image_and_record_are_written_together_or_not_at_all(tmp_path):
    # the image's temporary fits the 255-byte limit, the record's does not: before, the image was
    # replaced and then the record failed with "nothing was written"
    name = "r" * (255 - PART_SUFFIX_LENGTH - 4) + ".png"
    out = tmp_path / name
    out.write_bytes(b"an older picture")
    with pytest.raises(ImageError, match="nothing was written"):
        _result().save(out, record=True)
    assert out.read_bytes() == b"an older picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temporary left behind


def test_save_with_record_writes_both(tmp_path):
    out = _result().save(tmp_path / "a.png", record=True)
    assert out == tmp_path / "a.png"
    assert nst_core.read_image(out).size == (8, 8)
    assert '"format"' in (tmp_path / "a.png.json").read_text()


def test_save_together_leaves_every_target_alone_when_one_cannot_be_written(tmp_path):
    (tmp_path / "a.txt").write_bytes(b"old a")

    def broken(handle):
        handle.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(ImageError, match="no space left.*nothing was written"):
        save_together([(tmp_path / "a.txt", b"new a"), (tmp_path / "b.txt", broken)])
    assert listing(tmp_path) == {"a.txt": b"old a"}
    save_together([(tmp_path / "a.txt", b"new a"), (tmp_path / "b.txt", b"new b")])
    assert listing(tmp_path) == {"a.txt": b"new a", "b.txt": b"new b"}


# smaller: a read-only output, stale temporaries


def test_a_read_only_output_is_refused(tmp_path):
    out = tmp_path / "kept.png"
    out.write_bytes(b"protected")
    out.chmod(0o444)
    result = nst(CONTENT, STYLE, "-o", out, "--size", 64, "--steps", 1)
    assert result.exit_code == exit_codes.USER_ERROR, result.output
    assert "read-only" in one_error_line(result)
    assert out.read_bytes() == b"protected"


def test_stale_temporaries_of_the_run_are_removed(tmp_path):
    out = tmp_path / "out.png"
    old = time.time() - 2 * output_guard.STALE_PART_SECONDS
    stale = [tmp_path / ".out.png.0123abcd.part", tmp_path / ".out.png.json.89abcdef.part",
             tmp_path / ".out.png.resume.pt.00000000.part", tmp_path / ".out.step4.png.deadbeef.part"]
    fresh = tmp_path / ".out.png.fedcba98.part"  # a run writing right now
    others = [tmp_path / ".other.png.0123abcd.part", tmp_path / ".out.png.notours.part", tmp_path / "out.png.part"]
    for path in [*stale, fresh, *others]:
        path.write_bytes(b"partial")
        if path is not fresh:
            os.utime(path, (old, old))
    run_module.check_output(out, [CONTENT], record=True, resume=True, save_every=2, total=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in [fresh, *others])


def test_temporary_names_are_recognised():
    assert is_temporary_of(".out.png.0123abcd.part") == "out.png"
    assert is_temporary_of(".out.png.0123abcg.part") is None
    assert is_temporary_of("out.png.0123abcd.part") is None


def test_a_run_with_save_every_still_writes_its_intermediates(tmp_path):
    result = nst(CONTENT, STYLE, "-o", tmp_path / "out.png", "--size", 64, "--steps", 2, "--save-every", 2,
                 "--seed", 1, "--progress", "none")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png", "out.png.json", "out.step2.png"]
