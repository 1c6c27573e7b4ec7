"""Run records: every setting, the seed and versions, in the PNG and a sidecar; they reproduce the run."""

import json

from PIL import Image
import torch

from nst_core import LossSpec, StyleConfig, stylize
from nst_core.config import config_from_dict, config_to_dict


def test_config_round_trips_through_json():
    config = StyleConfig(size=96, style_layers=("relu1_1", "relu2_1"), layer_weights={"relu1_1": 2, "relu2_1": 1},
                         extra_losses=(LossSpec(name="tv", weight=0.5, params={"exponent": 1}),),
                         style_blend=(2.0, 1.0), preserve_color="luminance", seed=4)
    assert config_from_dict(json.loads(json.dumps(config_to_dict(config)))) == config


def test_saved_record_reproduces_the_image(tmp_path, content_64, style_64, builtin_registries):
    result = stylize(content_64, style_64, StyleConfig(size=64, steps=3, init="noise", device="cpu"),
                     registries=builtin_registries)
    path = result.save(tmp_path / "out.png", record=True)
    embedded = json.loads(Image.open(path).text["nst-record"])
    sidecar = json.loads((tmp_path / "out.png.json").read_text())
    assert embedded == sidecar
    assert embedded["seed"] == result.seed and embedded["config"]["seed"] == result.seed
    assert embedded["torch"] == torch.__version__ and embedded["device"] == "cpu"
    again = stylize(content_64, style_64, config_from_dict(embedded["config"]), registries=builtin_registries)
    assert torch.equal(again.image, result.image)
