"""Built-in presets: quality/speed bundles and classic looks, so nobody needs to know layer names.

Every value is a :class:`nst_core.StyleConfig` field. ``steps`` are per scale; above
``min_scale_size`` (256 px) runs go coarse to fine. The look presets leave size and steps alone
(add ``--size``/``--steps``); they were chosen on tubingen.jpg with starry_night.jpg and
the_scream.jpg at 512 px (see ``nst list presets``):

* ``soft`` / ``bold``: style weight 0.3 / 10 instead of 1 (the same as ``--strength`` 0.37 / 0.75
  on the default); at 0.1 the style was hard to see, at 30 the scene began to dissolve.
* ``painterly``: average pooling and equal style-layer weights, so the deep layers (relu4_1,
  relu5_1) count as much as relu1_1: larger, brush-like strokes while the scene stays readable.
  The MRF patch loss (``--style-loss mrf``) was the other candidate; its look swings from barely
  visible to the scene gone within a factor of 10 of its weight (style weight 0.1 and 1 before its
  declared ``weight_scale``, i.e. 0.6 and 6 today), too touchy for a preset.
* ``gatys-2015``: the paper's settings (Gatys, Ecker & Bethge 2015, "A Neural Algorithm of
  Artistic Style"): average pooling, w_l = 1/5 on relu1_1 ... relu5_1, white-noise start, one
  scale, 500 L-BFGS steps.
"""

from __future__ import annotations

from nst_core._markers import hookimpl

PRESETS = {
    "fast": ({"size": 256, "steps": 100},
             "a quick look: 256 px, 100 L-BFGS steps (seconds on a GPU, about a minute on a CPU)"),
    "balanced": ({"size": 512, "steps": 250},
                 "512 px, coarse to fine (256 -> 512), 250 steps per scale"),
    "best": ({"size": 1024, "steps": 500},
             "1024 px, coarse to fine (256 -> 512 -> 1024), 500 steps per scale, Gatys' settings"),
    "gatys-2015": ({"pooling": "avg", "layer_schedule": "uniform", "init": "noise", "scales": 1, "steps": 500},
                   "the 2015 paper: average pooling, equal style-layer weights, white-noise start, "
                   "500 steps at one scale"),
    "soft": ({"style_weight": 0.3},
             "a gentle touch: style weight 0.3, the photo stays clear (like --strength 0.37)"),
    "bold": ({"style_weight": 10},
             "strong style: style weight 10, strokes and colours take over (like --strength 0.75)"),
    "keep-colors": ({"preserve_color": "luminance"},
                    "the style's strokes in the photo's own colours (luminance-only transfer, Gatys et al. 2016)"),
    "painterly": ({"pooling": "avg", "layer_schedule": "uniform"},
                  "larger brush strokes: average pooling, deep style layers weighted like shallow ones"),
}


@hookimpl
def nst_register_presets(register):
    for name, (settings, description) in PRESETS.items():
        register(name, settings, description=description)
