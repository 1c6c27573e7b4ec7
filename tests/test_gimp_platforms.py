"""The GIMP filter where most artists get GIMP: the Flatpak build (engine on the host through
``flatpak-spawn --host``; ``nst gimp install --flatpak`` / ``doctor --flatpak``) and Windows (the
engine in a kill-on-close Job object). What Linux allows: the argument lists, the folders, the
permission file, and the Job calls against a recording stand-in for kernel32. The real run
through a stand-in flatpak-spawn is in tests/test_gimp_e2e.py; Windows is not run by CI.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from nst_cli import gimp
from nst_cli.app import app

from helpers import load_bridge

bridge = load_bridge()
ARGV = ["/home/u/venv/bin/python", "-u", "-m", "nst_cli", "run", "c.png", "s.png", "-o", "o.png"]


# ---------------------------------------------------------------------------------------------
# Flatpak: the bridge's argument list
# ---------------------------------------------------------------------------------------------


def test_outside_flatpak_the_argv_is_unchanged(tmp_path):
    missing = str(tmp_path / "no-flatpak-info")
    assert not bridge.in_flatpak({}, missing)
    assert bridge.sandbox_argv(ARGV, workdir="/w", environ={"PATH": "/usr/bin"}, info_path=missing) == ARGV
    assert bridge.sandbox_tempdir_base({}, missing) is None


@pytest.mark.parametrize("how", ["env", "info-file"])
def test_inside_flatpak_the_engine_starts_on_the_host(tmp_path, how):
    info = tmp_path / ".flatpak-info"
    environ = {"PATH": "/app/bin:/usr/bin", "PYTHONHOME": "/app", "PYTHONPATH": "/app/lib/gimp",
               "NST_MEMORY_CHECK": "0", "NST_GIMP_PYTHON": "/x", "CUDA_VISIBLE_DEVICES": "1", "HOME": "/home/u"}
    if how == "env":
        environ["FLATPAK_ID"] = "org.gimp.GIMP"
    else:
        info.write_text("[Application]\nname=org.gimp.GIMP\n")
    assert bridge.in_flatpak(environ, str(info))
    argv = bridge.sandbox_argv(ARGV, workdir="/home/u/.var/app/org.gimp.GIMP/cache/nst-gimp/gimp-nst-1-x",
                               environ=environ, info_path=str(info))
    assert argv == ["flatpak-spawn", "--host", "--watch-bus",
                    "--directory=/home/u/.var/app/org.gimp.GIMP/cache/nst-gimp/gimp-nst-1-x",
                    "--env=CUDA_VISIBLE_DEVICES=1", "--env=NST_MEMORY_CHECK=0", "--env=PYTHONIOENCODING=utf-8",
                    "--env=PYTHONUNBUFFERED=1", *ARGV]
    assert not any("PYTHONHOME" in a or "PYTHONPATH" in a for a in argv)  # the sandbox's Python stays inside


def test_flatpak_temp_folders_live_where_the_host_sees_them(tmp_path):
    base = bridge.sandbox_tempdir_base({"FLATPAK_ID": "org.gimp.GIMP", "XDG_CACHE_HOME": str(tmp_path / "cache")},
                                       str(tmp_path / "none"))
    assert base == str(tmp_path / "cache" / "nst-gimp") and Path(base).is_dir()
    assert (Path(base).stat().st_mode & 0o777) == 0o700
    workdir = bridge.make_private_tempdir(base)
    assert Path(workdir).parent == Path(base)


def test_estimate_argv_goes_through_flatpak_spawn_too(tmp_path):
    request = bridge.EngineRequest(content="", style="", output="", region_size=(800, 600))
    argv = bridge.sandbox_argv(bridge.build_estimate_argv("/venv/python", request),
                               environ={"FLATPAK_ID": "org.gimp.GIMP"}, info_path=str(tmp_path / "x"))
    assert argv[:3] == ["flatpak-spawn", "--host", "--watch-bus"] and "estimate" in argv


def test_a_missing_flatpak_spawn_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("FLATPAK_ID", "org.gimp.GIMP")
    monkeypatch.setenv("PATH", str(tmp_path))  # no flatpak-spawn here
    with pytest.raises(bridge.BridgeError, match="flatpak-spawn.*nst gimp doctor --flatpak"):
        bridge.run_engine([sys.executable, "-c", "pass"], str(tmp_path), lambda f, t: None)


def test_run_engine_through_a_stand_in_flatpak_spawn(tmp_path, monkeypatch):
    """The whole path on Linux: FLATPAK_ID set, a flatpak-spawn on PATH that honours --directory
    and --env the way the real one does, and an engine that reports what it saw."""
    spawn = tmp_path / "flatpak-spawn"
    spawn.write_text('#!/bin/sh\n[ "$1" = --host ] || exit 97\nshift\nwhile [ $# -gt 0 ]; do case "$1" in\n'
                     '--watch-bus) shift;; --directory=*) cd "${1#--directory=}"; shift;;\n'
                     '--env=*) export "${1#--env=}"; shift;; *) break;; esac; done\nexec "$@"\n')
    spawn.chmod(0o755)
    monkeypatch.setenv("FLATPAK_ID", "org.gimp.GIMP")
    monkeypatch.setenv("NST_E2E_MARK", "seen")
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    workdir = tmp_path / "work"
    workdir.mkdir()
    code = ("import json, os; print(json.dumps({'event': 'done', 'status': 'finished', 'output': os.getcwd(), "
            "'message': os.environ.get('NST_E2E_MARK', '')}))")
    outcome = bridge.run_engine([sys.executable, "-c", code], str(workdir), lambda f, t: None)
    assert outcome.returncode == 0 and outcome.state.output == str(workdir)
    assert outcome.state.done_message == "seen"  # NST_* variables reach the host engine


# ---------------------------------------------------------------------------------------------
# Flatpak: nst gimp install --flatpak, doctor --flatpak
# ---------------------------------------------------------------------------------------------


def test_flatpak_plugins_dir():
    assert gimp.default_plugins_dir(True, Path("/home/u")) == Path(
        "/home/u/.var/app/org.gimp.GIMP/config/GIMP/3.0/plug-ins")


def test_permission_is_read_from_the_override_keyfile(tmp_path):
    assert gimp.flatpak_may_spawn_on_host(tmp_path) is None
    override = tmp_path / ".local/share/flatpak/overrides/org.gimp.GIMP"
    override.parent.mkdir(parents=True)
    override.write_text("[Context]\nfilesystems=host\n\n[Environment]\norg.freedesktop.Flatpak=talk\n")
    assert gimp.flatpak_may_spawn_on_host(tmp_path) is None  # in the wrong section
    override.write_text("[Context]\nfilesystems=host\n\n[Session Bus Policy]\norg.freedesktop.Flatpak=talk\n")
    assert gimp.flatpak_may_spawn_on_host(tmp_path) == override


class Recorder:
    """Stands in for subprocess.run: records each argv, answers from ``answers`` by argv[:3]."""

    def __init__(self, answers=None):
        self.calls, self.answers = [], answers or {}

    def __call__(self, argv):
        self.calls.append(list(argv))
        rc, out = self.answers.get(tuple(argv[:3]), (0, ""))
        return subprocess.CompletedProcess(argv, rc, out, "" if rc == 0 else "error: no such thing")


def test_grant_permission_runs_flatpak_override(monkeypatch):
    monkeypatch.setattr(gimp.shutil, "which", lambda name: "/usr/bin/flatpak" if name == "flatpak" else None)
    said, run = [], Recorder()
    assert gimp.grant_flatpak_permission(said.append, run)
    assert run.calls == [["flatpak", "override", "--user", "--talk-name=org.freedesktop.Flatpak", "org.gimp.GIMP"]]
    failing = Recorder({("flatpak", "override", "--user"): (1, "")})
    assert not gimp.grant_flatpak_permission(said.append, failing) and "run it yourself" in said[-1]


def test_grant_permission_prints_the_command_without_flatpak(monkeypatch):
    monkeypatch.setattr(gimp.shutil, "which", lambda name: None)
    said = []
    assert not gimp.grant_flatpak_permission(said.append, Recorder())
    assert "flatpak override --user --talk-name=org.freedesktop.Flatpak org.gimp.GIMP" in said[0]


def test_install_flatpak_puts_the_plugin_into_the_flatpak_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(gimp.Path, "home", classmethod(lambda cls: tmp_path))
    monkeypatch.setattr(gimp.shutil, "which", lambda name: None)  # no flatpak here: the command is printed
    result = CliRunner().invoke(app, ["gimp", "install", "--flatpak", "--python", "/opt/venv/bin/python"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    target = tmp_path / ".var/app/org.gimp.GIMP/config/GIMP/3.0/plug-ins/nst-style-transfer"
    assert (target / "nst-style-transfer.py").is_file() and (target / "nst-engine.json").is_file()
    assert "flatpak-spawn --host" in result.output
    assert "flatpak override --user --talk-name=org.freedesktop.Flatpak org.gimp.GIMP" in result.output
    refused = CliRunner().invoke(app, ["gimp", "install", "--flatpak", "--link"])
    assert refused.exit_code == 1 and "--link does not work with --flatpak" in refused.output


def test_doctor_flatpak_checks_each_step(tmp_path, monkeypatch):
    monkeypatch.setattr(gimp.shutil, "which", lambda name: "/usr/bin/flatpak" if name == "flatpak" else None)
    plugins = gimp.default_plugins_dir(True, tmp_path)
    gimp.install_plugin(plugins, python=sys.executable)
    run = Recorder({("flatpak", "info", "org.gimp.GIMP"): (0, "GIMP - GNU Image Manipulation Program\n")})
    checks = gimp.diagnose(plugins, {}, flatpak=True, home=tmp_path, run=run)
    labels = {c.label: c for c in checks}
    assert labels["plug-in"].ok and labels["engine"].ok and labels["GIMP Flatpak"].ok
    assert labels["flatpak-spawn"].ok
    assert run.calls[1] == ["flatpak", "run", "--command=flatpak-spawn", "org.gimp.GIMP", "--help"]
    assert not labels["host permission"].ok and "flatpak override --user" in labels["host permission"].detail
    override = tmp_path / ".local/share/flatpak/overrides/org.gimp.GIMP"
    override.parent.mkdir(parents=True)
    override.write_text("[Session Bus Policy]\norg.freedesktop.Flatpak=talk\n")
    assert all(c.ok for c in gimp.diagnose(plugins, {}, flatpak=True, home=tmp_path, run=run))
    not_installed = Recorder({("flatpak", "info", "org.gimp.GIMP"): (1, "")})
    bad = {c.label: c for c in gimp.diagnose(plugins, {}, flatpak=True, home=tmp_path, run=not_installed)}
    assert not bad["GIMP Flatpak"].ok and "flatpak install flathub org.gimp.GIMP" in bad["GIMP Flatpak"].detail


def test_doctor_points_a_flatpak_user_to_the_flatpak_commands(tmp_path):
    (tmp_path / ".var/app/org.gimp.GIMP/config/GIMP/3.0").mkdir(parents=True)
    checks = gimp.diagnose(tmp_path / "plug-ins", {}, home=tmp_path, run=Recorder())
    assert any("nst gimp install --flatpak" in c.detail for c in checks)


# ---------------------------------------------------------------------------------------------
# Windows: the Job object (the calls, against a stand-in kernel32)
# ---------------------------------------------------------------------------------------------


class FakeKernel32:
    """Records the Job object calls; ``fail`` names one that returns 0 (failure)."""

    def __init__(self, fail=None):
        self.calls, self.fail, self.limits = [], fail, None

    def CreateJobObjectW(self, attributes, name):  # noqa: N802 - the Windows name
        self.calls.append(("CreateJobObjectW", attributes, name))
        return 0 if self.fail == "CreateJobObjectW" else 1234

    def SetInformationJobObject(self, handle, info_class, info_ref, size):  # noqa: N802
        info = info_ref._obj  # what ctypes.byref points at
        self.limits = info.BasicLimitInformation.LimitFlags
        self.calls.append(("SetInformationJobObject", handle, info_class, size))
        return 0 if self.fail == "SetInformationJobObject" else 1

    def AssignProcessToJobObject(self, handle, process):  # noqa: N802
        self.calls.append(("AssignProcessToJobObject", handle, process))
        return 0 if self.fail == "AssignProcessToJobObject" else 1


def test_job_object_is_set_to_kill_on_close_and_gets_the_engine():
    kernel32 = FakeKernel32()
    job = bridge.KillOnCloseJob(kernel32)
    job.assign(5678)
    size = ctypes.sizeof(bridge._job_structures())
    assert kernel32.calls == [("CreateJobObjectW", None, None), ("SetInformationJobObject", 1234, 9, size),
                              ("AssignProcessToJobObject", 1234, 5678)]
    assert kernel32.limits == bridge.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE == 0x2000


def test_job_structure_has_the_windows_layout():
    # JOBOBJECT_EXTENDED_LIMIT_INFORMATION is 144 bytes on 64-bit Windows, 112 on 32-bit (winnt.h)
    assert ctypes.sizeof(bridge._job_structures()) == (144 if ctypes.sizeof(ctypes.c_void_p) == 8 else 112)


@pytest.mark.parametrize("failing", ["CreateJobObjectW", "SetInformationJobObject"])
def test_a_refused_job_means_no_job_not_a_failed_run(failing, monkeypatch):
    monkeypatch.setattr(bridge, "_JOB", None)
    with pytest.raises(OSError, match=failing):
        bridge.KillOnCloseJob(FakeKernel32(fail=failing))
    assert bridge.engine_job("win32", FakeKernel32(fail=failing)) is None


def test_engine_job_only_on_windows_and_made_once(monkeypatch):
    monkeypatch.setattr(bridge, "_JOB", None)
    assert bridge.engine_job("linux", FakeKernel32()) is None and bridge.engine_job("darwin") is None
    kernel32 = FakeKernel32()
    first = bridge.engine_job("win32", kernel32)
    assert first is not None and bridge.engine_job("win32", kernel32) is first
    assert [c[0] for c in kernel32.calls].count("CreateJobObjectW") == 1
    with pytest.raises(OSError, match="AssignProcessToJobObject"):
        bridge.KillOnCloseJob(FakeKernel32(fail="AssignProcessToJobObject")).assign(1)


def test_windows_engine_has_no_console_window():
    assert bridge.windows_popen_options("win32") == {"creationflags": 0x08000000}
    assert bridge.windows_popen_options("linux") == {}
