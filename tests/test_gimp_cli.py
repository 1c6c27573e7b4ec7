"""``nst gimp install | uninstall | doctor`` (plugins/cli/nst_cli/gimp.py), always with --dir in a tmp dir."""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from nst_cli import gimp
from nst_cli.app import app

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO / "plugins" / "gimp" / "nst-style-transfer"


@pytest.fixture
def runner():
    return CliRunner()


def invoke(runner, *args, env=None):
    result = runner.invoke(app, ["gimp", *args], env=env, catch_exceptions=False)
    return result.exit_code, result.output


@pytest.mark.parametrize(("platform", "environ", "expected"), [
    ("linux", {}, "/home/u/.config/GIMP/3.0"),
    ("linux", {"XDG_CONFIG_HOME": "/cfg"}, "/cfg/GIMP/3.0"),
    ("darwin", {}, "/home/u/Library/Application Support/GIMP/3.0"),
    ("win32", {"APPDATA": "/appdata"}, "/appdata/GIMP/3.0"),
    ("win32", {}, "/home/u/AppData/Roaming/GIMP/3.0"),
    ("linux", {"GIMP3_DIRECTORY": "/custom"}, "/custom"),
    ("darwin", {"GIMP3_DIRECTORY": "/custom"}, "/custom"),
])
def test_gimp_config_dir(platform, environ, expected):
    assert gimp.gimp_config_dir(platform, environ, Path("/home/u")) == Path(expected)


def test_plugin_source_is_the_checkout():
    assert gimp.plugin_source() == SOURCE


def test_install_copies_sets_exec_bit_and_records_this_python(runner, tmp_path):
    code, output = invoke(runner, "install", "--dir", str(tmp_path / "plug-ins"))
    assert code == 0, output
    target = tmp_path / "plug-ins" / "nst-style-transfer"
    assert "restart GIMP" in output and str(target) in output
    for name in gimp.PLUGIN_FILES:
        assert (target / name).is_file() and not (target / name).is_symlink()
        assert (target / name).read_bytes() == (SOURCE / name).read_bytes()
    assert os.access(target / "nst-style-transfer.py", os.X_OK)
    config = json.loads((target / "nst-engine.json").read_text())
    assert config["python"] == sys.executable
    assert set(os.listdir(target)) == {*gimp.PLUGIN_FILES, "nst-engine.json"}  # no __pycache__ etc.


def test_install_with_python_and_reinstall_replaces(runner, tmp_path):
    plugins = tmp_path / "plug-ins"
    invoke(runner, "install", "--dir", str(plugins))
    (plugins / "nst-style-transfer" / "stale.txt").write_text("old")
    code, output = invoke(runner, "install", "--dir", str(plugins), "--python", "/opt/env/bin/python")
    assert code == 0, output
    target = plugins / "nst-style-transfer"
    assert not (target / "stale.txt").exists()
    assert json.loads((target / "nst-engine.json").read_text())["python"] == "/opt/env/bin/python"


def test_install_link_for_development(runner, tmp_path):
    code, output = invoke(runner, "install", "--dir", str(tmp_path), "--link")
    assert code == 0, output
    target = tmp_path / "nst-style-transfer"
    assert not target.is_symlink()  # a real folder, so nst-engine.json stays out of the checkout
    for name in gimp.PLUGIN_FILES:
        assert (target / name).is_symlink() and (target / name).resolve() == SOURCE / name
    assert (target / "nst-engine.json").is_file() and not (SOURCE / "nst-engine.json").exists()


def test_uninstall(runner, tmp_path):
    invoke(runner, "install", "--dir", str(tmp_path))
    code, output = invoke(runner, "uninstall", "--dir", str(tmp_path))
    assert code == 0 and "removed" in output
    assert not (tmp_path / "nst-style-transfer").exists()
    code, output = invoke(runner, "uninstall", "--dir", str(tmp_path))
    assert code == 0 and "not installed" in output


def test_install_refuses_to_overwrite_its_own_source(runner, tmp_path):
    copy = tmp_path / "src" / "nst-style-transfer"
    copy.mkdir(parents=True)
    for name in gimp.PLUGIN_FILES:
        (copy / name).write_bytes((SOURCE / name).read_bytes())
    result = runner.invoke(app, ["gimp", "install", "--dir", str(copy.parent)],
                           env={gimp.ENV_SOURCE: str(copy)})
    assert result.exit_code == 1 and "source folder" in result.output
    assert all((copy / name).is_file() for name in gimp.PLUGIN_FILES)


def test_doctor_reports_a_working_install(runner, tmp_path):
    invoke(runner, "install", "--dir", str(tmp_path))
    result = runner.invoke(app, ["gimp", "doctor", "--dir", str(tmp_path)], env={gimp.ENV_PYTHON: None})
    assert result.exit_code == 0, result.output
    assert "ok   plug-in:" in result.output and "Filters > Artistic > Neural Style Transfer" in result.output
    assert f"ok   engine: {sys.executable}" in result.output
    assert "device cpu" in result.output or "device cuda" in result.output or "device mps" in result.output


def test_doctor_reports_problems(runner, tmp_path):
    code, output = invoke(runner, "doctor", "--dir", str(tmp_path / "nowhere"))
    assert code == 1
    assert "BAD  GIMP plug-ins folder" in output and "BAD  plug-in: not installed" in output
    invoke(runner, "install", "--dir", str(tmp_path))
    code, output = invoke(runner, "doctor", "--dir", str(tmp_path), env={gimp.ENV_PYTHON: "/nonexistent/python"})
    assert code == 1
    assert "BAD  engine: /nonexistent/python (from NST_GIMP_PYTHON): /nonexistent/python does not exist" in output
    (tmp_path / "nst-style-transfer" / "nst-style-transfer.py").chmod(0o644)
    code, output = invoke(runner, "doctor", "--dir", str(tmp_path))
    assert code == 1 and "is not executable" in output


def test_probe_engine_with_a_python_without_nst_core(tmp_path):
    bare = tmp_path / "bare-python"
    bare.write_text(f"#!/bin/sh\nexec {sys.executable} -I -S \"$@\"\n")  # no site-packages: no nst_core
    bare.chmod(0o755)
    ok, detail = gimp.probe_engine(str(bare))
    assert not ok and "No module named" in detail


def test_console_script_path(tmp_path):
    """The real entry point, as a user types it (python -m nst_cli == the `nst` script)."""
    proc = subprocess.run([sys.executable, "-m", "nst_cli", "gimp", "install", "--dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "nst-style-transfer" / "nst-style-transfer.py").is_file()
