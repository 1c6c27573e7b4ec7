"""Hardening (issue 16): replaying a run record never starts a download by itself. A record that
names a backbone whose weights are not on this machine asks for ``--backbone`` instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from nst_core.builtins.vgg import torchvision_checkpoint
from nst_core.config import StyleConfig
from nst_core.errors import ConfigError

from nst_cli.record import RunRecord
from nst_cli.settings import SETTINGS, resolve


def record(backbone: str) -> RunRecord:
    return RunRecord(path=Path("old.png"), config=StyleConfig(backbone=backbone, size=64), content=None, styles=(),
                     masks=None, init=None, strength=None, base_style_weight=None)


def command_line(**given) -> dict:
    return {**{setting.key: None for setting in SETTINGS}, **given}


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert not torchvision_checkpoint("vgg19").exists()
    return tmp_path


def test_a_record_naming_a_downloading_backbone_asks_first(empty_cache, builtin_registries):
    with pytest.raises(ConfigError, match=r"old.png: the recorded run used backbone 'vgg19-torchvision', whose "
                                          r"weights \(548 MB\) are not on this machine; give --backbone "
                                          r"vgg19-torchvision to download them"):
        resolve(command_line(), None, builtin_registries, record("vgg19-torchvision"))


def test_the_explicit_flag_or_cached_weights_let_it_run(empty_cache, builtin_registries):
    settings = resolve(command_line(backbone="vgg19-torchvision"), None, builtin_registries,
                       record("vgg19-torchvision"))
    assert settings.config.backbone == "vgg19-torchvision"
    assert resolve(command_line(backbone="vgg19"), None, builtin_registries,
                   record("vgg16-torchvision")).config.backbone == "vgg19"
    checkpoint = torchvision_checkpoint("vgg19")
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"cached")  # only its presence is looked at here
    assert resolve(command_line(), None, builtin_registries,
                   record("vgg19-torchvision")).config.backbone == "vgg19-torchvision"


def test_the_shipped_backbone_replays_as_before(empty_cache, builtin_registries):
    assert resolve(command_line(), None, builtin_registries, record("vgg19")).config.backbone == "vgg19"
