"""Out of memory mid-run, on the real engine: ``on_oom="retry"`` switches to a lower-memory mode
and goes on; without it (the default) the one-line ResourceError comes as before.

The memory pressure is real code, not a mock: a plug-in (registered through a real pluggy
manager) brings a backbone, the real VGG19 it keeps an eye on, and a loss term that raises
``torch.OutOfMemoryError`` while that backbone runs without gradient checkpointing, or a given
number of times, as a device that is too small would.
"""

from __future__ import annotations

import pytest
import torch

from nst_core import LossSpec, StyleConfig, collect_registries, get_plugin_manager, hookimpl, stylize
from nst_core.builtins.vgg import caffe_vgg19
from nst_core.config import config_from_dict, config_to_dict
from nst_core.errors import ConfigError, ResourceError
from nst_core.types import LossTerm

OOM = "CUDA out of memory. Tried to allocate 20.00 GiB"


class TightDevice:
    """A plug-in: backbone ``vgg19-watched`` and loss term ``tight``, which runs out of memory
    from its ``from_call``-th evaluation on, while checkpointing is off (``until="checkpoint"``)
    or for ``times`` evaluations in a row (``until="times"``)."""

    def __init__(self, *, from_call: int = 1, until: str = "checkpoint", times: int = 0) -> None:
        self.from_call, self.until, self.times = from_call, until, times
        self.backbones: list = []
        self.calls = 0
        self.failures = 0

    def fails_now(self) -> bool:
        if self.calls < self.from_call:
            return False
        if self.until == "checkpoint":
            return not self.backbones[-1].checkpoint
        return self.failures < self.times

    @hookimpl
    def nst_register_backbones(self, register):
        def watched(pooling="max"):
            backbone = caffe_vgg19(pooling)
            self.backbones.append(backbone)
            return backbone

        register("vgg19-watched", watched)

    @hookimpl
    def nst_register_loss_terms(self, register):
        device = self

        class Tight(LossTerm):
            role = "image"

            def bind(self, targets):
                def loss(image, features, layer_weights):
                    device.calls += 1
                    if device.fails_now():
                        device.failures += 1
                        raise torch.OutOfMemoryError(OOM)
                    return image.sum() * 0

                return loss

        register("tight", Tight)


def run(plugin, content, style, on_progress=None, **fields):
    """A small run starting in float32 (the top of the ladder: float32, + checkpointing, bf16)."""
    registries = collect_registries(get_plugin_manager(autoload=False, extra=[plugin]))
    config = StyleConfig(**{"size": 64, "steps": 8, "seed": 0, "device": "cpu", "backbone": "vgg19-watched",
                            "precision": "float32", "extra_losses": (LossSpec(name="tight"),), **fields})
    return stylize(content, style, config, registries=registries, on_progress=on_progress)


def test_retry_switches_checkpointing_on_and_goes_on_from_the_best_image(content_64, style_64):
    plugin = TightDevice(from_call=4)  # steps 1-3 fit, step 4 runs out of memory
    seen = []
    result = run(plugin, content_64, style_64, on_progress=seen.append, on_oom="retry")
    assert result.status == "finished" and result.steps == 8
    assert [p.step for p in seen] == list(range(1, 9))  # step 4 is done once, in the new mode; none lost
    assert plugin.failures == 1 and plugin.backbones[-1].checkpoint is True
    assert ("cpu ran out of memory at 64x48 px after step 3: switched to gradient checkpointing on and went on "
            "from the best image so far") in result.notes
    assert seen[3].loss <= min(p.loss for p in seen[:3])  # step 4 started from the best of steps 1-3
    assert result.loss < 0.6 * seen[0].loss  # and the run still went downhill
    assert result.config.on_oom == "retry" and result.config.checkpoint is None  # the settings asked for


def test_without_retry_it_is_still_the_one_line_resource_error(content_64, style_64):
    plugin = TightDevice(from_call=4)
    seen = []
    with pytest.raises(ResourceError, match=r"^cpu ran out of memory at 64x48 px; try precision='bf16' or a "
                                            r"smaller size \(or device='cpu', which has more memory\)$"):
        run(plugin, content_64, style_64, on_progress=seen.append)
    assert [p.step for p in seen] == [1, 2, 3] and plugin.failures == 1
    assert plugin.backbones[-1].checkpoint is False  # nothing was switched


def test_retry_goes_on_to_bf16_and_the_state_keeps_the_lower_mode(content_64, style_64):
    plugin = TightDevice(from_call=3, until="times", times=2)  # float32, then float32 + checkpointing fail
    seen, states = [], []

    def keep(progress):
        seen.append(progress)
        if progress.step == progress.total:
            states.append(progress.state())

    result = run(plugin, content_64, style_64, on_progress=keep, on_oom="retry")
    assert result.status == "finished" and [p.step for p in seen] == list(range(1, 9))
    assert plugin.failures == 2
    assert [n.split(": ", 1)[1] for n in result.notes if "ran out of memory" in n] == [
        "switched to gradient checkpointing on and went on from the best image so far",
        "switched to precision bf16 and went on from the best image so far"]
    assert result.config.precision == "float32"  # the request; the notes say what ran
    assert (states[0].precision, states[0].checkpoint) == ("bf16", True)  # a resume goes on in the lower mode
    assert torch.isfinite(result.image).all() and result.loss < 0.6 * seen[0].loss


def test_with_no_lower_mode_left_the_resource_error_comes(content_64, style_64):
    plugin = TightDevice(from_call=1, until="times", times=100)
    with pytest.raises(ResourceError, match=r"^cpu ran out of memory at 64x48 px; try a smaller size"):
        run(plugin, content_64, style_64, on_oom="retry")
    assert plugin.failures == 3  # float32; float32 + checkpointing; bf16 + checkpointing
    plugin = TightDevice(from_call=1, until="times", times=100)
    with pytest.raises(ResourceError, match=r"try a smaller size"):
        run(plugin, content_64, style_64, on_oom="retry", precision="bf16", checkpoint=True)
    assert plugin.failures == 1  # nothing lower to switch to


def test_on_oom_is_a_validated_recorded_setting():
    assert StyleConfig().on_oom == "fail"
    with pytest.raises(ConfigError, match=r"StyleConfig\.on_oom must be 'fail' or 'retry', got 'sometimes'"):
        StyleConfig(on_oom="sometimes")
    config = StyleConfig(on_oom="retry")
    assert config_to_dict(config)["on_oom"] == "retry"
    assert config_from_dict(config_to_dict(config)) == config
    old_record = {k: v for k, v in config_to_dict(StyleConfig()).items() if k != "on_oom"}
    assert config_from_dict(old_record).on_oom == "fail"  # records from before the setting still load
