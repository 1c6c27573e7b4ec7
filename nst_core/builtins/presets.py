"""Built-in presets: quality/speed bundles, so nobody needs to know layer names to start.

``steps`` are per scale; above ``min_scale_size`` (256 px) runs go coarse to fine.
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
}


@hookimpl
def nst_register_presets(register):
    for name, (settings, description) in PRESETS.items():
        register(name, settings, description=description)
