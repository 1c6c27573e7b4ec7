"""Hardening (issue 16, #9): the GIMP bridge's stale-folder cleanup removes only folders it made
(the exact name pattern and its marker file), never a user's own ``gimp-nst-*`` folder, and a
name with a huge number does not crash the filter."""

from __future__ import annotations

import os
from pathlib import Path
import subprocess
import sys
import time

from helpers import load_bridge

bridge = load_bridge()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _bridge_folder(base: Path, pid: int) -> Path:
    """A folder exactly as make_private_tempdir makes it, for another process id."""
    path = Path(bridge.make_private_tempdir(str(base)))
    renamed = path.with_name(path.name.replace(f"-{os.getpid()}-", f"-{pid}-", 1))
    path.rename(renamed)
    return renamed


def test_a_huge_number_in_a_folder_name_does_not_crash(tmp_path):
    huge = tmp_path / "gimp-nst-99999999999999999999999-x"
    huge.mkdir()
    also = tmp_path / "gimp-nst-9999999999-abcdefgh"  # the pattern, but no process can have that number
    also.mkdir()
    (also / bridge.TEMP_MARKER).write_text(bridge.TEMP_MARKER_TEXT)
    assert bridge.clean_stale_tempdirs(str(tmp_path)) == []
    assert huge.is_dir() and also.is_dir()


def test_a_users_own_gimp_nst_folder_is_kept(tmp_path):
    mine = tmp_path / "gimp-nst-my-renders"
    mine.mkdir()
    (mine / "final.png").write_bytes(b"a week of work")
    looks_like_ours = tmp_path / f"gimp-nst-{_dead_pid()}-abcdefgh"  # the pattern, without the marker
    looks_like_ours.mkdir()
    (looks_like_ours / "keep.png").write_bytes(b"x")
    assert bridge.clean_stale_tempdirs(str(tmp_path)) == []
    assert (mine / "final.png").read_bytes() == b"a week of work" and (looks_like_ours / "keep.png").exists()


def test_bridge_folders_of_dead_or_old_runs_are_removed(tmp_path):
    dead = _bridge_folder(tmp_path, _dead_pid())
    alive = Path(bridge.make_private_tempdir(str(tmp_path)))
    old_alive = Path(bridge.make_private_tempdir(str(tmp_path)))
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old_alive, (two_days_ago, two_days_ago))
    assert (dead / bridge.TEMP_MARKER).is_file()
    removed = bridge.clean_stale_tempdirs(str(tmp_path))
    assert sorted(removed) == sorted(str(p) for p in (dead, old_alive))
    assert alive.is_dir()


def test_a_link_or_a_forged_marker_is_not_enough(tmp_path):
    target = tmp_path / "precious"
    target.mkdir()
    (target / bridge.TEMP_MARKER).write_text(bridge.TEMP_MARKER_TEXT)
    link = tmp_path / f"gimp-nst-{_dead_pid()}-abcdefgh"
    link.symlink_to(target, target_is_directory=True)
    forged = tmp_path / f"gimp-nst-{_dead_pid()}-ijklmnop"
    forged.mkdir()
    (forged / bridge.TEMP_MARKER).symlink_to(target / bridge.TEMP_MARKER)
    assert bridge.clean_stale_tempdirs(str(tmp_path)) == []
    assert target.is_dir() and forged.is_dir()
