"""Plug-in discovery and failure handling with real entry points.

The example package under tests/plugin_example is pip-installed by `make venv`; the broken
plug-ins here are real distributions (a .dist-info folder with an entry_points.txt) placed on
sys.path for the test, discovered by importlib.metadata exactly like installed ones.
"""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from nst_core import LossSpec, StyleConfig, collect_registries, get_plugin_manager, hookimpl, stylize
from nst_core.errors import PluginError, PluginWarning, ResourceError, UnknownNameError
from nst_core.types import LossTerm


def make_distribution(root, dist: str, module: str, source: str, entry_name: str) -> None:
    """A minimal installed distribution: module file + dist-info with an nst_core entry point."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[nst_core]\n{entry_name} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("NST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("NST_DISABLE_PLUGINS", raising=False)
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("nst_test_")]:
        del sys.modules[name]


def test_builtins_are_registered(builtin_registries):
    assert {"vgg19", "vgg19-torchvision", "vgg16-torchvision"} <= set(builtin_registries.backbones.names())
    assert {"content", "gram", "tv"} <= set(builtin_registries.loss_terms.names())
    assert {"uniform", "inverse-channels", "geometric", "coarse-to-fine"} <= set(builtin_registries.schedules.names())
    assert {"fast", "balanced", "best"} <= set(builtin_registries.presets.names())
    assert builtin_registries.loss_terms.entry("gram").distribution == "built-in"


def test_installed_example_plugin_is_discovered_and_used(content_64, style_64):
    regs = collect_registries(get_plugin_manager(autoload=True))
    entry = regs.loss_terms.entry("mean-color")
    assert entry.distribution.startswith("nst-plugin-example ")
    # only the plug-in's term: the mean colour of G must move to the style's mean colour
    config = StyleConfig(size=64, steps=20, losses=(LossSpec(name="mean-color", weight=1.0),),
                         optimizer="adam", learning_rate=0.02, seed=0, device="cpu")
    result = stylize(content_64, style_64, config, registries=regs)
    before = (content_64.mean(dim=(2, 3)) - style_64.mean(dim=(2, 3))).abs().sum()
    after = (result.image.mean(dim=(2, 3)) - style_64.mean(dim=(2, 3))).abs().sum()
    assert after < 0.2 * before


def test_autoload_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("NST_DISABLE_PLUGIN_AUTOLOAD", "1")
    assert "mean-color" not in collect_registries().loss_terms


def test_single_plugin_can_be_disabled(monkeypatch):
    monkeypatch.setenv("NST_DISABLE_PLUGINS", "mean-color")
    regs = collect_registries()
    assert "mean-color" not in regs.loss_terms and "gram" in regs.loss_terms


def test_import_error_names_plugin_and_distribution_others_keep_working(site):
    make_distribution(site, "nst-broken-import", "nst_test_broken", "import no_such_module_xyz\n", "broken")
    with pytest.warns(PluginWarning, match=r"'broken' \(nst-broken-import 1.2.3\) failed to load: ModuleNotFoundError"):
        regs = collect_registries()
    assert "gram" in regs.loss_terms and "mean-color" in regs.loss_terms
    with pytest.raises(UnknownNameError, match="failed to load"):
        regs.loss_terms.get("whatever-broken-provides")


def test_duplicate_name_names_both_plugins(site):
    make_distribution(site, "nst-dup", "nst_test_dup", """
        from nst_core import hookimpl
        from nst_core.builtins.losses import GramStyleLoss

        @hookimpl
        def nst_register_loss_terms(register):
            register("gram", GramStyleLoss)
    """, "dup")
    with pytest.warns(PluginWarning) as caught:
        regs = collect_registries()
    message = " ".join(str(w.message) for w in caught)
    assert "'gram' from plug-in 'dup' (nst-dup 1.2.3)" in message
    assert "nst_core.builtins.losses" in message and "built-in" in message
    assert regs.loss_terms.entry("gram").distribution == "built-in"


def test_hook_raising_is_reported_and_skipped(site):
    make_distribution(site, "nst-raises", "nst_test_raises", """
        from nst_core import hookimpl

        @hookimpl
        def nst_register_backbones(register):
            raise RuntimeError("boom")
    """, "raises")
    with pytest.warns(PluginWarning, match=r"'raises' \(nst-raises 1.2.3\) raised in nst_register_backbones: RuntimeError: boom"):
        regs = collect_registries()
    assert "vgg19" in regs.backbones


class _ExplodingTerm(LossTerm):
    role = "image"

    def bind(self, targets):
        def loss(image, features, layer_weights):
            raise ValueError("bad math")

        return loss


class _ExplodingPlugin:
    @hookimpl
    def nst_register_loss_terms(self, register):
        register("explodes", _ExplodingTerm)


def test_loss_term_raising_during_run_names_the_plugin(content_64, style_64):
    regs = collect_registries(get_plugin_manager(autoload=False, extra=[_ExplodingPlugin()]))
    config = StyleConfig(size=64, steps=2, extra_losses=(LossSpec(name="explodes"),), device="cpu")
    with pytest.raises(PluginError, match="loss term 'explodes'.*raised ValueError: bad math"):
        stylize(content_64, style_64, config, registries=regs)


def test_unknown_names_suggest_close_matches(builtin_registries):
    with pytest.raises(UnknownNameError, match="did you mean 'gram'"):
        builtin_registries.loss_terms.get("gramm")
    with pytest.raises(UnknownNameError, match="did you mean 'vgg19'"):
        builtin_registries.backbones.get("vgg91")


def test_each_call_builds_a_fresh_manager():
    first, second = get_plugin_manager(autoload=False), get_plugin_manager(autoload=False)
    assert first is not second
    assert first.get_plugins() is not second.get_plugins()


class _MemoryHungryTerm(LossTerm):
    role = "image"

    def bind(self, targets):
        def loss(image, features, layer_weights):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

        return loss


class _MemoryHungryPlugin:
    @hookimpl
    def nst_register_loss_terms(self, register):
        register("hungry", _MemoryHungryTerm)


def test_running_out_of_memory_mid_run_is_a_resource_error_not_a_plugin_error(content_64, style_64):
    regs = collect_registries(get_plugin_manager(autoload=False, extra=[_MemoryHungryPlugin()]))
    config = StyleConfig(size=64, steps=2, extra_losses=(LossSpec(name="hungry"),), device="cpu", precision="float32")
    with pytest.raises(ResourceError, match=r"cpu ran out of memory at 64x48 px; try precision='bf16' or a smaller size"):
        stylize(content_64, style_64, config, registries=regs)
