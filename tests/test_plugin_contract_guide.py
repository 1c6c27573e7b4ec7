"""docs/plugins.md stays true: its example module runs through nst_core.testing.check_plugin, and
it documents every hook and every attribute the engine reads from a plug-in's objects."""

from __future__ import annotations

import re
import sys
import types

from nst_core import hookspecs
from nst_core.testing import check_plugin
from nst_core.types import Backbone, LossTerm, Targets

from helpers import ROOT

GUIDE = (ROOT / "docs" / "plugins.md").read_text()


def test_the_readme_links_the_guide():
    assert "(docs/plugins.md)" in (ROOT / "README.md").read_text()


def test_the_guides_first_example_is_a_working_plugin(monkeypatch):
    source = re.search(r"```python\n(# nst_plugin_example/plugin.py\n.*?)```", GUIDE, re.S).group(1)
    module = types.ModuleType("guide_example_plugin")
    monkeypatch.setitem(sys.modules, module.__name__, module)  # dataclasses look their module up
    exec(compile(source, "docs/plugins.md", "exec"), module.__dict__)
    report = check_plugin(module, size=32, steps=2)
    assert report.names["loss term"] == ["mean-color"]


def test_the_guide_documents_every_hook_and_declared_attribute():
    for hook in hookspecs.__all__:
        assert f"`{hook}(register)`" in GUIDE, hook
    assert f"`{tuple(hookspecs.HOOK_API_VERSION)}`" in GUIDE
    declared = {"role", "default_layers", "low_precision_features", "weight_scale", "bind"}
    declared |= {"layer_names", "channels", "default_content_layers", "default_style_layers", "memory_profile",
                 "supports_checkpoint", "checkpoint", "weight_scales", "forward", "truncated"}
    assert declared >= {name for name in vars(LossTerm) if not name.startswith("_")}
    assert declared >= {name for name in vars(Backbone) if not name.startswith("_")}
    for name in declared | set(Targets.__dataclass_fields__):
        assert f"{name}" in GUIDE and re.search(rf"\b{name}\b", GUIDE), name
