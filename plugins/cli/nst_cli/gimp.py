"""``nst gimp install | uninstall | doctor``: put the GIMP 3 plug-in where GIMP finds it.

GIMP 3 loads Python plug-ins from ``<GIMP config>/plug-ins/NAME/NAME.py`` (folder and file share
the name; the file must be executable). The config folder is

* Linux and other Unixes: ``$XDG_CONFIG_HOME/GIMP/3.0`` (default ``~/.config/GIMP/3.0``)
* macOS: ``~/Library/Application Support/GIMP/3.0``
* Windows: ``%APPDATA%\\GIMP\\3.0``

or ``$GIMP3_DIRECTORY`` when that is set (GIMP itself honours it). GIMP's own Python has no torch,
so the plug-in starts the engine with the interpreter recorded here in ``nst-engine.json`` next to
the plug-in (the environment variable ``NST_GIMP_PYTHON`` overrides it at run time).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import json
import os
from pathlib import Path
import shutil
import stat
import subprocess
import sys
from typing import Annotated

import typer

from nst_core import __version__
from nst_core.errors import NSTError

PLUGIN_NAME = "nst-style-transfer"
PLUGIN_FILES = ("nst-style-transfer.py", "nst_gimp_bridge.py")
CONFIG_NAME = "nst-engine.json"
ENV_PYTHON = "NST_GIMP_PYTHON"
ENV_SOURCE = "NST_GIMP_PLUGIN_SOURCE"
MENU = "Filters > Artistic > Neural Style Transfer..."


class GimpSetupError(NSTError):
    """The plug-in could not be installed or found; the message says what to do."""


gimp_app = typer.Typer(
    name="gimp", no_args_is_help=True, pretty_exceptions_show_locals=False,
    help="Install the GIMP 3 filter (Filters > Artistic > Neural Style Transfer...) and check it.",
    epilog="[bold]Examples[/bold]\n\n  nst gimp install   [dim](then restart GIMP)[/dim]\n\n"
           "  nst gimp doctor\n\n  nst gimp install --flatpak   [dim](GIMP from Flathub)[/dim]\n\n"
           "  nst gimp install --link   [dim](for plug-in development)[/dim]\n\n"
           "  nst gimp uninstall",
)


# ------------------------------------------------------------------------------------------------
# Where things are
# ------------------------------------------------------------------------------------------------


def gimp_config_dir(platform: str | None = None, environ: dict[str, str] | None = None,
                    home: Path | None = None) -> Path:
    """GIMP 3's per-user folder on this platform (``$GIMP3_DIRECTORY`` wins)."""
    platform = sys.platform if platform is None else platform
    environ = dict(os.environ) if environ is None else environ
    home = Path.home() if home is None else home
    if environ.get("GIMP3_DIRECTORY"):
        return Path(environ["GIMP3_DIRECTORY"])
    if platform.startswith("win"):
        appdata = environ.get("APPDATA") or str(home / "AppData" / "Roaming")
        return Path(appdata) / "GIMP" / "3.0"
    if platform == "darwin":
        return home / "Library" / "Application Support" / "GIMP" / "3.0"
    config = environ.get("XDG_CONFIG_HOME") or str(home / ".config")
    return Path(config) / "GIMP" / "3.0"


def default_plugins_dir(flatpak: bool = False, home: Path | None = None) -> Path:
    """``<GIMP config folder>/plug-ins`` (with ``flatpak``: the Flatpak GIMP's, see :func:`flatpak_config_dir`)."""
    return (flatpak_config_dir(home) if flatpak else gimp_config_dir()) / "plug-ins"


FLATPAK_APP = "org.gimp.GIMP"
FLATPAK_PERMISSION = ["flatpak", "override", "--user", "--talk-name=org.freedesktop.Flatpak", FLATPAK_APP]
"""Lets the Flatpak GIMP start commands on the host (``flatpak-spawn --host``), the engine among them."""


def flatpak_config_dir(home: Path | None = None) -> Path:
    """GIMP 3's per-user folder in the Flatpak build: ``~/.var/app/org.gimp.GIMP/config/GIMP/3.0``."""
    home = Path.home() if home is None else home
    return home / ".var" / "app" / FLATPAK_APP / "config" / "GIMP" / "3.0"


def flatpak_override_files(home: Path | None = None) -> list[Path]:
    """Where ``flatpak override`` keeps GIMP's permissions: per user, then system-wide."""
    home = Path.home() if home is None else home
    return [home / ".local" / "share" / "flatpak" / "overrides" / FLATPAK_APP,
            Path("/var/lib/flatpak/overrides") / FLATPAK_APP]


def flatpak_may_spawn_on_host(home: Path | None = None) -> Path | None:
    """The override file that lets GIMP talk to org.freedesktop.Flatpak (so flatpak-spawn --host
    works), or None. The file is a keyfile; the permission is ``org.freedesktop.Flatpak=talk``
    in ``[Session Bus Policy]``."""
    for path in flatpak_override_files(home):
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        section = ""
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("["):
                section = line
            elif section == "[Session Bus Policy]" and line.replace(" ", "") == "org.freedesktop.Flatpak=talk":
                return path
    return None


def plugin_source() -> Path:
    """The folder holding the plug-in's files in this installation of nst-core.

    A source checkout (``pip install -e .`` / ``make venv``) has it at plugins/gimp/ next to the
    CLI package; a wheel would carry it as data files in ``<prefix>/share/nst-core/gimp/``;
    ``$NST_GIMP_PLUGIN_SOURCE`` points elsewhere.
    """
    candidates = []
    if os.environ.get(ENV_SOURCE):
        candidates.append(Path(os.environ[ENV_SOURCE]))
    here = Path(__file__).resolve().parent  # plugins/cli/nst_cli
    candidates += [here.parent.parent / "gimp" / PLUGIN_NAME,
                   Path(sys.prefix) / "share" / "nst-core" / "gimp" / PLUGIN_NAME]
    for folder in candidates:
        if all((folder / name).is_file() for name in PLUGIN_FILES):
            return folder
    raise GimpSetupError(
        "the GIMP plug-in's files are not part of this nst-core installation (looked in "
        f"{', '.join(str(c) for c in candidates)}); install nst-core from a source checkout "
        f"('pip install -e .' or 'make venv') or set {ENV_SOURCE} to the plug-in folder")


# ------------------------------------------------------------------------------------------------
# Install / uninstall
# ------------------------------------------------------------------------------------------------


def engine_config(python: str) -> dict:
    """What ``nst-engine.json`` records."""
    return {"python": python, "nst_core_version": __version__, "written_by": "nst gimp install"}


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _make_executable(path: Path) -> None:
    mode = path.stat().st_mode
    path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def install_plugin(plugins_dir: Path, *, python: str, link: bool = False, source: Path | None = None) -> Path:
    """Install (or replace) the plug-in in ``plugins_dir``; returns the plug-in's folder.

    Copies the files (or, with ``link``, symlinks them to the source for development), makes the
    entry point executable and writes ``nst-engine.json`` with ``python``.
    """
    source = source or plugin_source()
    target = plugins_dir / PLUGIN_NAME
    if target.resolve() == source.resolve():
        raise GimpSetupError(f"{target} is the plug-in's source folder; choose another --dir")
    plugins_dir.mkdir(parents=True, exist_ok=True)
    _remove(target)
    target.mkdir()
    for name in PLUGIN_FILES:
        if link:
            if name == PLUGIN_FILES[0]:
                _make_executable(source / name)  # GIMP checks the link's target
            try:
                (target / name).symlink_to(source / name)
            except OSError as exc:
                raise GimpSetupError(f"cannot create a symlink in {target} ({exc.strerror}); "
                                     "install without --link") from None
        else:
            shutil.copy2(source / name, target / name)
    _make_executable(target / PLUGIN_FILES[0])
    (target / CONFIG_NAME).write_text(json.dumps(engine_config(python), indent=2) + "\n", encoding="utf-8")
    return target


def uninstall_plugin(plugins_dir: Path) -> Path | None:
    """Remove the plug-in's folder from ``plugins_dir``; returns it, or None if it was not there."""
    target = plugins_dir / PLUGIN_NAME
    if not (target.exists() or target.is_symlink()):
        return None
    _remove(target)
    return target


# ------------------------------------------------------------------------------------------------
# Doctor
# ------------------------------------------------------------------------------------------------

_PROBE = ("import json, platform, nst_core, nst_cli, torch; "
          "print(json.dumps({'nst_core': nst_core.__version__, 'torch': torch.__version__, "
          "'python': platform.python_version(), 'device': str(nst_core.resolve_device('auto'))}))")


@dataclass
class Check:
    ok: bool
    label: str
    detail: str


def probe_engine(python: str, timeout: float = 120.0) -> tuple[bool, str]:
    """Start ``python`` the way the plug-in does and ask it for its nst_core, torch and device."""
    try:
        proc = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return False, f"{python} does not exist"
    except PermissionError:
        return False, f"{python} is not executable"
    except OSError as exc:
        return False, f"{python} cannot be started: {exc.strerror or exc}"
    except subprocess.TimeoutExpired:
        return False, f"{python} did not answer within {timeout:.0f} s"
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        return False, f"{python} cannot run the engine: {lines[-1] if lines else f'exit code {proc.returncode}'}"
    try:
        info = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return False, f"{python} gave an unexpected answer: {proc.stdout.strip()[:200]!r}"
    return True, (f"nst-core {info['nst_core']}, torch {info['torch']}, Python {info['python']}, "
                  f"device {info['device']}")


def sandboxed_gimp_dirs(home: Path | None = None) -> list[Path]:
    """Config folders of Flatpak/Snap GIMP builds found in ``home``."""
    home = Path.home() if home is None else home
    found = []
    for candidate in (flatpak_config_dir(home), home / "snap" / "gimp"):
        if candidate.exists():
            found.append(candidate)
    return found


Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def flatpak_checks(home: Path | None = None, run: Runner = _run) -> list[Check]:
    """The Flatpak-only steps: flatpak and GIMP's Flatpak installed, flatpak-spawn inside it, and
    the permission to start the engine on the host."""
    checks = []
    if shutil.which("flatpak") is None:
        return [Check(False, "flatpak", "the flatpak command is not on PATH: is GIMP really a Flatpak here?")]
    try:
        info = run(["flatpak", "info", FLATPAK_APP])
        ok = info.returncode == 0
        detail = (info.stdout.strip().splitlines() or [FLATPAK_APP])[0] if ok else \
            f"{FLATPAK_APP} is not installed: flatpak install flathub {FLATPAK_APP}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        ok, detail = False, f"flatpak info {FLATPAK_APP} failed: {exc}"
    checks.append(Check(ok, "GIMP Flatpak", detail.strip()))
    if ok:
        try:
            spawn = run(["flatpak", "run", "--command=flatpak-spawn", FLATPAK_APP, "--help"])
            has_spawn = spawn.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            has_spawn = False
        checks.append(Check(has_spawn, "flatpak-spawn", "in GIMP's sandbox" if has_spawn else
                            "flatpak-spawn does not run inside GIMP's sandbox; update the Flatpak runtime"))
    granted = flatpak_may_spawn_on_host(home)
    checks.append(Check(granted is not None, "host permission",
                        f"GIMP may start the engine on the host ({granted})" if granted else
                        "GIMP may not start programs on the host: run " + " ".join(FLATPAK_PERMISSION)))
    return checks


def diagnose(plugins_dir: Path, environ: dict[str, str] | None = None, *, flatpak: bool = False,
             home: Path | None = None, run: Runner = _run) -> list[Check]:
    """Everything ``nst gimp doctor`` reports, in order (``flatpak``: also the Flatpak steps)."""
    environ = dict(os.environ) if environ is None else environ
    checks = [Check(plugins_dir.is_dir(), "GIMP plug-ins folder",
                    str(plugins_dir) + ("" if plugins_dir.is_dir() else " (missing: start GIMP 3 once, "
                                        "or pass --dir)"))]
    target = plugins_dir / PLUGIN_NAME
    entry = target / PLUGIN_FILES[0]
    installed = entry.is_file() and (target / PLUGIN_FILES[1]).is_file()
    if not installed:
        checks.append(Check(False, "plug-in", f"not installed in {target}: run 'nst gimp install'"))
    elif not os.access(entry, os.X_OK):
        checks.append(Check(False, "plug-in", f"{entry} is not executable, so GIMP ignores it: run "
                                              "'nst gimp install' again"))
    else:
        kind = "linked to " + str(entry.resolve().parent) if entry.is_symlink() else "copied"
        checks.append(Check(True, "plug-in", f"{target} ({kind}); menu: {MENU}"))
    python, where = None, ""
    if environ.get(ENV_PYTHON):
        python, where = environ[ENV_PYTHON], ENV_PYTHON
    elif (target / CONFIG_NAME).is_file():
        try:
            python = json.loads((target / CONFIG_NAME).read_text(encoding="utf-8")).get("python")
            where = str(target / CONFIG_NAME)
        except (OSError, ValueError) as exc:
            checks.append(Check(False, "engine", f"cannot read {target / CONFIG_NAME}: {exc}"))
    if python:
        ok, detail = probe_engine(python)
        checks.append(Check(ok, "engine", f"{python} (from {where}): {detail}"))
    elif installed:
        checks.append(Check(False, "engine", f"no interpreter recorded: run 'nst gimp install' or set {ENV_PYTHON}"))
    if flatpak:
        checks += flatpak_checks(home, run)
        return checks
    gimp = next((shutil.which(name) for name in ("gimp-3.0", "gimp", "gimp-console-3.0") if shutil.which(name)), None)
    checks.append(Check(True, "GIMP executable", gimp or "none on PATH (fine if GIMP is started from a menu)"))
    for folder in sandboxed_gimp_dirs(home):
        if folder == flatpak_config_dir(home):
            checks.append(Check(True, "note", f"a Flatpak GIMP uses {folder}: for it, run 'nst gimp install "
                                              "--flatpak' and 'nst gimp doctor --flatpak'"))
        else:
            checks.append(Check(True, "note", f"a Snap GIMP uses {folder}; its sandbox cannot start this "
                                              "Python, so use a GIMP from your distribution, gimp.org or Flathub"))
    return checks


# ------------------------------------------------------------------------------------------------
# Commands
# ------------------------------------------------------------------------------------------------

DirOption = Annotated[Path | None, typer.Option(
    "--dir", help="GIMP's plug-ins folder (default: the per-user one of GIMP 3, or $GIMP3_DIRECTORY/plug-ins).",
    show_default=False)]


@gimp_app.command("install")
def install_command(
    dir: DirOption = None,
    link: Annotated[bool, typer.Option("--link", help="Symlink the files instead of copying them "
                                                      "(edits to the source take effect at once).")] = False,
    python: Annotated[str | None, typer.Option(
        "--python", help="The Python the plug-in runs the engine with (default: this one).",
        show_default=False)] = None,
    flatpak: Annotated[bool, typer.Option(
        "--flatpak", help="For the Flatpak GIMP (org.gimp.GIMP): its plug-ins folder, and the permission to start "
                          "the engine on the host (flatpak override), which is granted if flatpak is on PATH and "
                          "printed otherwise.")] = False,
) -> None:
    """Install the plug-in into GIMP 3 and record which Python runs the engine; restart GIMP after."""
    plugins_dir = (dir or default_plugins_dir(flatpak)).expanduser().absolute()
    interpreter = sys.executable
    if python:  # a bare command name is looked up on PATH; symlinks are kept (a venv needs its own path)
        interpreter = os.path.abspath(python if os.sep in python or not shutil.which(python) else shutil.which(python))
    if flatpak and link:
        raise GimpSetupError("--link does not work with --flatpak: the sandbox cannot follow links into the "
                             "source checkout; install without --link")
    target = install_plugin(plugins_dir, python=interpreter, link=link)
    typer.echo(f"installed {PLUGIN_NAME} in {target}{' (linked)' if link else ''}")
    typer.echo(f"engine: {interpreter}" + (" (started on the host through flatpak-spawn --host)" if flatpak else ""))
    if flatpak:
        grant_flatpak_permission(typer.echo)
    typer.echo(f"restart GIMP 3, then open an image and choose {MENU}")


def grant_flatpak_permission(echo: Callable[[str], None], run: Runner = _run) -> bool:
    """Run ``flatpak override --user --talk-name=org.freedesktop.Flatpak org.gimp.GIMP`` (once is
    enough; it is kept across updates), or print it when flatpak is not on PATH or it fails."""
    command = " ".join(FLATPAK_PERMISSION)
    if shutil.which("flatpak") is None:
        echo(f"flatpak is not on PATH; allow GIMP to start the engine on the host with:\n  {command}")
        return False
    try:
        done = run(list(FLATPAK_PERMISSION))
    except (OSError, subprocess.TimeoutExpired) as exc:
        echo(f"could not run {command} ({exc}); run it yourself")
        return False
    if done.returncode != 0:
        echo(f"{command} failed: {(done.stderr or done.stdout).strip()}; run it yourself")
        return False
    echo(f"allowed GIMP to start the engine on the host: {command}")
    return True


@gimp_app.command("uninstall")
def uninstall_command(dir: DirOption = None) -> None:
    """Remove the plug-in from GIMP 3's plug-ins folder."""
    plugins_dir = (dir or default_plugins_dir()).expanduser().absolute()
    removed = uninstall_plugin(plugins_dir)
    typer.echo(f"removed {removed}" if removed else f"{PLUGIN_NAME} is not installed in {plugins_dir}")


@gimp_app.command("doctor")
def doctor_command(dir: DirOption = None, flatpak: Annotated[bool, typer.Option(
        "--flatpak", help="Check the Flatpak GIMP: its plug-ins folder, flatpak-spawn and the host permission.")]
        = False) -> None:
    """Show what the plug-in will find: GIMP's folder, the plug-in, the engine and its device."""
    plugins_dir = (dir or default_plugins_dir(flatpak)).expanduser().absolute()
    checks = diagnose(plugins_dir, flatpak=flatpak)
    for check in checks:
        typer.echo(f"{'ok ' if check.ok else 'BAD'}  {check.label}: {check.detail}")
    if not all(check.ok for check in checks):
        raise typer.Exit(1)


@gimp_app.command("estimate")
def estimate_command(
    width: Annotated[int, typer.Argument(help="Width of the layer (or selection) in pixels.", min=1)],
    height: Annotated[int, typer.Argument(help="Height in pixels.", min=1)],
    size: Annotated[int, typer.Option(help="Longest working side asked for.", min=16)] = 512,
    steps: Annotated[int, typer.Option(help="Steps at the coarsest scale.", min=1)] = 100,
    step_decay: Annotated[float, typer.Option(help="Steps of each finer scale relative to the one before.")] = 1.0,
    fit_memory: Annotated[bool, typer.Option("--fit-memory/--no-fit-memory",
                                             help="Stop at the largest size that fits.")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    preset: Annotated[str | None, typer.Option(help="Start from this preset (`nst list presets`), as the run "
                                                    "will: its number of scales counts.")] = None,
    calibrate: Annotated[bool, typer.Option("--calibrate/--no-calibrate",
                                            help="Estimate the time (measures the device once, then cached).")] = True,
    refresh: Annotated[bool, typer.Option("--refresh", help="Measure the device again.")] = False,
) -> None:
    """Print, as one JSON line, what a run would do: working sizes, steps, the result's size, the
    upscale factor and (with the cached calibration) the time. The GIMP filter's dialog shows it."""
    from nst_core.config import config_from_preset

    from nst_cli import estimate

    try:
        settings = {}
        if preset is not None:
            from nst_cli.registries import load_registries

            settings = dict(load_registries(lambda line: None).presets.get(preset))
        config = config_from_preset(settings, size=size, steps=steps, step_decay=step_decay, fit_memory=fit_memory,
                                    device=device)
        calibrated = None
        measured = False
        if calibrate:
            device_obj = nst_core_device(device)
            from nst_core.precision import resolve_precision

            calibrated, measured = estimate.calibration(device_obj, resolve_precision("auto", device_obj),
                                                        refresh=refresh)
        answer = estimate.estimate_run(width, height, config, calibrated=calibrated)
        answer["calibrated_now"] = measured
    except NSTError as exc:
        typer.echo(json.dumps({"error": str(exc)}))
        raise typer.Exit(1) from None
    typer.echo(json.dumps(answer))


def nst_core_device(name: str):
    from nst_core import resolve_device

    return resolve_device(name)
