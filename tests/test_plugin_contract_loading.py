"""Loading plug-ins cannot be broken by one of them: unknown hook names, entry-point clashes, a
distribution listed twice, bad registrations and presets are each one warning naming the
distribution, and the other plug-ins keep working; ``nst plugins --json`` and its exit code;
``nst --debug`` shows the plug-in's own traceback.
"""

from __future__ import annotations

import json
import sys
import textwrap
import warnings

import pytest

from nst_core import collect_registries, get_plugin_manager, hookimpl
from nst_core.errors import PluginWarning
from nst_core import hookspecs
from nst_core.hookspecs import HOOK_API_VERSION

from helpers import install_broken_plugin, install_plugin, nst

GOOD_LOSS = """
    from nst_core import LossTerm, hookimpl

    class Term(LossTerm):
        role = "image"

    @hookimpl
    def nst_register_loss_terms(register):
        register("{name}", Term)
"""


def collect() -> tuple[list[str], object]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        regs = collect_registries()
    return [str(w.message) for w in caught if issubclass(w.category, PluginWarning)], regs


def test_a_misspelt_hook_skips_that_plugin_with_a_warning_naming_its_distribution(site):
    install_plugin(site, "typo", """
        from nst_core import hookimpl

        @hookimpl
        def nst_register_los_terms(register):
            pass
    """)
    problems, regs = collect()
    assert problems == [
        "plug-in 'typo' (nst-cli-test-typo 1.2.3) implements unknown hook(s) 'nst_register_los_terms' (did you mean "
        f"'nst_register_loss_terms'?) and was skipped; the hooks are {', '.join(hookspecs.__all__)} "
        f"(hook API {HOOK_API_VERSION})"]
    assert "mean-color" in regs.loss_terms and "gram" in regs.loss_terms  # the others keep working
    result = nst("list", "losses")
    assert result.exit_code == 0 and "mean-color" in result.stdout


def test_a_misspelt_hook_in_code_is_skipped_too():
    class Typo:
        @hookimpl
        def nst_register_backbone(self, register):
            pass

    pm = get_plugin_manager(autoload=False, extra=[Typo()])
    assert len(pm.load_failures) == 1 and "'nst_register_backbone' (did you mean" in pm.load_failures[0]


def test_an_entry_point_name_clash_is_reported_and_the_first_kept(site, tmp_path, monkeypatch):
    install_plugin(site, "clash", GOOD_LOSS.format(name="first-term"))
    other = tmp_path / "other-site"
    other.mkdir()
    monkeypatch.setattr(sys, "path", [*sys.path, str(other)])
    (other / "nst_other_clash.py").write_text(textwrap.dedent(GOOD_LOSS.format(name="second-term")))
    info = other / "nst_other_clash-2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nst-other-clash\nVersion: 2.0\n")
    (info / "entry_points.txt").write_text("[nst_core]\nclash = nst_other_clash\n")
    problems, regs = collect()
    assert problems == ["plug-in 'clash' (nst-other-clash 2.0) has the entry-point name of plug-in 'clash' "
                        "(nst-cli-test-clash 1.2.3) and was skipped; entry-point names must be unique: rename one "
                        "(use the distribution's name)"]
    assert "first-term" in regs.loss_terms and "second-term" not in regs.loss_terms


def test_a_distribution_listed_twice_is_loaded_and_reported_once(site, tmp_path, monkeypatch):
    install_broken_plugin(site)
    again = tmp_path / "again"  # an editable install: the same distribution found on two paths
    again.mkdir()
    (again / "nst_cli_test_broken-1.2.3.dist-info").mkdir()
    for name in ("METADATA", "entry_points.txt"):
        source = site / "nst_cli_test_broken-1.2.3.dist-info" / name
        (again / "nst_cli_test_broken-1.2.3.dist-info" / name).write_text(source.read_text())
    monkeypatch.setattr(sys, "path", [*sys.path, str(again)])
    problems, _ = collect()
    assert len(problems) == 1 and "'broken' (nst-cli-test-broken 1.2.3) failed to load" in problems[0]
    pm = get_plugin_manager()
    assert [info.name for info in pm.third_party].count("broken") == 1


@pytest.mark.parametrize("registration, problem", [
    ('register("p", {"sise": 64})', "preset 'p' from plug-in 'reg' (nst-cli-test-reg 1.2.3) is invalid: preset "
                                    "sets unknown setting(s) sise; it is ignored"),
    ('register("p", {"size": -3})', "preset 'p' from plug-in 'reg' (nst-cli-test-reg 1.2.3) is invalid: "
                                    "StyleConfig.size must be >= 16, got -3; it is ignored"),
    ('register("p", {"style_loss": "gramm"})', "preset 'p' from plug-in 'reg' (nst-cli-test-reg 1.2.3) uses the "
                                               "unknown loss term 'gramm'; it is ignored"),
    ('register("p", [("size", 64)])', "preset 'p' from plug-in 'reg' (nst-cli-test-reg 1.2.3) is a list; a preset "
                                      "is a mapping of StyleConfig fields; it is ignored"),
])
def test_presets_are_validated_when_registered(site, registration, problem):
    install_plugin(site, "reg", f"""
        from nst_core import hookimpl

        @hookimpl
        def nst_register_presets(register):
            register("fine", {{"size": 64, "style_loss": "mean-color"}})
            {registration}
    """)
    problems, regs = collect()
    assert problems == [problem]
    assert "p" not in regs.presets and "fine" in regs.presets  # a plug-in's preset may use another's loss


def test_a_schedule_that_is_not_a_layer_schedule_is_refused_at_registration(site):
    install_plugin(site, "sched", """
        from nst_core import hookimpl

        @hookimpl
        def nst_register_layer_schedules(register):
            register("plain", lambda layers, channels, progress: {l: 1.0 for l in layers})
    """)
    problems, regs = collect()
    assert problems == ["layer schedule 'plain' from plug-in 'sched' (nst-cli-test-sched 1.2.3) is a function; "
                        "register nst_core.LayerSchedule(fn, varies=...); it is ignored"]
    assert "plain" not in regs.schedules


def test_plugins_json_lists_what_each_plugin_adds_and_exits_0_when_all_loaded():
    result = nst("plugins", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["hook_api"] == list(HOOK_API_VERSION) and data["problems"] == []
    example = next(p for p in data["plugins"] if p["distribution"] == "nst-plugin-example")
    assert {"kind": "loss term", "name": "mean-color"} in example["provides"] and example["error"] is None


def test_plugins_json_reports_failures_and_exits_1(site):
    install_broken_plugin(site)
    result = nst("plugins", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    broken = next(p for p in data["plugins"] if p["name"] == "broken")
    assert "failed to load: ModuleNotFoundError" in broken["error"] and data["problems"] == [broken["error"]]


def test_debug_shows_a_failing_plugins_traceback(site):
    install_plugin(site, "raises", """
        from nst_core import hookimpl

        def helper():
            raise RuntimeError("boom in the plug-in")

        @hookimpl
        def nst_register_backbones(register):
            helper()
    """)
    plain = nst("list", "backbones")
    assert plain.exit_code == 0 and "Traceback" not in plain.stderr
    assert "nst: warning: plug-in 'raises' (nst-cli-test-raises 1.2.3) raised in nst_register_backbones: " \
           "RuntimeError: boom in the plug-in" in plain.stderr
    debug = nst("--debug", "list", "backbones")
    assert debug.exit_code == 0
    assert "Traceback (most recent call last)" in debug.stderr and "in helper" in debug.stderr
