"""The example plug-in's own tests, as a plug-in author writes them (docs/plugins.md, "Testing")."""

from nst_core.testing import check_plugin

import nst_plugin_example.plugin as plugin


def test_every_name_runs_through_the_engine():
    report = check_plugin(plugin)
    assert report.names == {"backbone": ["example-tiny"], "loss term": ["mean-color", "channel-mean"],
                            "layer schedule": ["example-deep-first"], "preset": ["example-colorful"]}
    assert 0 < report.memory_profiles["example-tiny"].saved_bytes_per_pixel < 1000
