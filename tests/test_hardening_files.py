"""Hardening (issue 16, #4): resume files, run records and config files are opened with the same
regular-file check as images, so a named pipe, a device or a huge file is refused in one line
instead of hanging the run or filling the memory."""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys
import threading

import pytest

from nst_core.errors import ConfigError, ResumeError
from nst_core.resume import load_state

from nst_cli.config_file import MAX_CONFIG_BYTES, read_config_file
from nst_cli.record import load_record

from conftest import EXAMPLES

CONTENT = EXAMPLES / "tubingen.jpg"
STYLE = EXAMPLES / "starry_night.jpg"
pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")


def without_hanging(call, fifo: Path, timeout: float = 30.0) -> BaseException | None:
    """Run ``call()`` in a thread; if it blocks on ``fifo``, open the pipe's other end to release
    it and fail. Returns the exception it raised (None if it returned)."""
    box: dict = {}

    def target():
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # a reader is waiting: this releases it with EOF
        os.close(fd)
        thread.join(timeout)
        pytest.fail(f"reading {fifo.name} blocked on the named pipe")
    return box.get("error")


def test_a_named_pipe_as_config_file_is_refused(tmp_path):
    fifo = tmp_path / "run.toml"
    os.mkfifo(fifo)
    error = without_hanging(lambda: read_config_file(fifo), fifo)
    assert isinstance(error, ConfigError) and "not a regular file" in str(error)


@pytest.mark.parametrize("name", ["rec.json", "out.png"])
def test_a_named_pipe_as_run_record_is_refused(tmp_path, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    error = without_hanging(lambda: load_record(fifo), fifo)
    assert isinstance(error, ConfigError) and "not a regular file" in str(error)


def test_a_named_pipe_as_the_sidecar_record_is_refused(tmp_path):
    image = tmp_path / "out.jpg"
    image.write_bytes(CONTENT.read_bytes())
    fifo = tmp_path / "out.jpg.json"
    os.mkfifo(fifo)
    error = without_hanging(lambda: load_record(image), fifo)
    assert isinstance(error, ConfigError) and "not a regular file" in str(error)


def test_a_named_pipe_as_resume_file_is_refused(tmp_path):
    fifo = tmp_path / "r.png.resume.pt"
    os.mkfifo(fifo)
    error = without_hanging(lambda: load_state(fifo), fifo)
    assert isinstance(error, ResumeError) and "not a regular file" in str(error)


def test_devices_are_refused():
    with pytest.raises(ConfigError, match="not a regular file"):
        read_config_file(Path("/dev/null"))
    with pytest.raises(ResumeError, match="not a regular file"):
        load_state("/dev/null")
    with pytest.raises(ConfigError, match="not a regular file"):
        load_record(Path("/dev/null"))


def test_a_huge_config_file_is_refused_before_it_is_read(tmp_path):
    config = tmp_path / "big.toml"
    with open(config, "wb") as handle:
        handle.truncate(MAX_CONFIG_BYTES + 1)  # sparse: nothing is written
    with pytest.raises(ConfigError, match="too large for a TOML config file"):
        read_config_file(config)


def test_an_empty_config_file_is_still_no_settings(tmp_path):
    config = tmp_path / "empty.toml"
    config.write_text("")
    assert read_config_file(config) == {}


def test_nst_run_resume_with_a_named_pipe_exits_at_once(tmp_path):
    """The reproduction of the issue, with the console entry point in a process of its own: before,
    it blocked in open() forever (and the first SIGTERM did not stop it)."""
    os.mkfifo(tmp_path / "r.png.resume.pt")
    command = [sys.executable, "-m", "nst_cli", "run", str(CONTENT), str(STYLE), "-o", "r.png", "--resume",
               "--size", "64", "--progress", "none"]
    try:
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=180,
                              env={**os.environ, "NST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    except subprocess.TimeoutExpired:
        pytest.fail("nst run --resume hung on a named pipe")
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("nst: error:")]
    assert len(errors) == 1 and "not a regular file" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
