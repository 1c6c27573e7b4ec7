"""Plays GIMP's Cancel from outside: SIGKILL the plug-in while its engine runs, see the engine die.

Started in the background by run_gimp_e2e.sh (on the host, outside the chroot). It waits for the
engine process whose command line names MARKER (the e2e's "cancel" case uses a style file of that
path, inside this run's own folder, so concurrent runs do not see each other's engines), gives it
a moment to get going, then SIGKILLs only its parent, the plug-in, as GIMP does
when the user presses Cancel (GIMP kills the plug-in's process group when the plug-in leads one;
killing only the plug-in is the harder case: the engine must then die by PR_SET_PDEATHSIG).
Writes OUT/cancel.json: the pids, whether the plug-in led its own process group (os.setpgid in
the plug-in), and how long the engine survived the plug-in.

usage: python cancel_watcher.py OUT MARKER [TIMEOUT_S]   (MARKER: the cancel case's style file path)
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time


def find_engine(marker: str) -> int | None:
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"nst_cli" in argv and any(marker.encode() in arg for arg in argv):
            return int(name)
    return None


def stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    return text[text.rindex(")") + 2:].split()  # fields after "pid (comm)": state, ppid, pgrp, ...


def alive(pid: int) -> bool:
    try:
        return stat_fields(pid)[0] != "Z"
    except OSError:
        return False


def main() -> int:
    out, marker = sys.argv[1], sys.argv[2]
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 240.0
    report: dict = {"marker": marker}
    deadline = time.monotonic() + timeout
    engine = None
    while engine is None and time.monotonic() < deadline:
        engine = find_engine(marker)
        time.sleep(0.1)
    if engine is None:
        report["error"] = f"no engine process with {marker!r} appeared within {timeout:.0f} s"
    else:
        time.sleep(3.0)  # let it load the network and start stepping
        ppid, pgrp = int(stat_fields(engine)[1]), int(stat_fields(engine)[2])
        plugin_pgrp = int(stat_fields(ppid)[2])
        with open(f"/proc/{ppid}/cmdline", "rb") as f:
            plugin_cmd = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
        report.update(engine_pid=engine, plugin_pid=ppid, plugin_cmdline=plugin_cmd,
                      plugin_leads_group=plugin_pgrp == ppid, engine_in_plugin_group=pgrp == ppid,
                      engine_alive_before=alive(engine))
        if not any(arg.endswith("nst-style-transfer.py") for arg in plugin_cmd):
            report["error"] = f"the engine's parent is not the plug-in: {plugin_cmd}"
            os.kill(engine, signal.SIGTERM)  # our own test engine; end it so GIMP's call returns
            return finish(out, report)
        os.kill(ppid, signal.SIGKILL)  # only the plug-in: the engine must follow by itself
        killed = time.monotonic()
        while alive(engine) and time.monotonic() - killed < 15:
            time.sleep(0.02)
        report["engine_alive_after"] = alive(engine)
        report["engine_survived_s"] = round(time.monotonic() - killed, 3)
    return finish(out, report)


def finish(out: str, report: dict) -> int:
    with open(os.path.join(out, "cancel.json"), "w") as f:
        json.dump(report, f, indent=1)
    return 0 if "error" not in report else 1


if __name__ == "__main__":
    sys.exit(main())
