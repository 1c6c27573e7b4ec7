"""Hardening (issue 16): whole numbers written as floats, and deeply nested values, in TOML
configs, run records and the Python API: converted or refused in one line, never a traceback."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from nst_core.config import StyleConfig, config_from_dict, config_to_dict
from nst_core.errors import ConfigError

from nst_cli import exit_codes
from nst_cli.app import app
from nst_cli.record import load_record

from conftest import EXAMPLES

CONTENT = EXAMPLES / "tubingen.jpg"
STYLE = EXAMPLES / "starry_night.jpg"


def nst(*args):
    return CliRunner().invoke(app, ["run", *[str(a) for a in args]], prog_name="nst")


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("nst: error:")]
    assert len(lines) == 1, result.output[-2000:]
    assert "Traceback" not in result.output
    assert len(lines[0]) < 400, lines[0][:400]
    return lines[0]


# 5. whole numbers written as floats


def test_whole_floats_become_ints_in_the_config():
    config = StyleConfig(size=64.0, steps=3.0, seed=7.0, scales=1.0, min_scale_size=32.0)
    for name, value in (("size", 64), ("steps", 3), ("seed", 7), ("scales", 1), ("min_scale_size", 32)):
        assert getattr(config, name) == value and type(getattr(config, name)) is int, name
    assert config_to_dict(config)["steps"] == 3 and isinstance(config_to_dict(config)["steps"], int)
    assert type(config.replace(steps=2.0).steps) is int


@pytest.mark.parametrize("field, value", [("steps", 3.5), ("seed", 7.25), ("scales", 1.5), ("size", 64.1)])
def test_fractional_whole_number_fields_are_refused(field, value):
    with pytest.raises(ConfigError, match=f"StyleConfig.{field} must be a whole number"):
        StyleConfig(**{field: value})


def test_toml_whole_floats_run(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text("steps = 1.0\nseed = 7.0\nscales = 1.0\nsize = 64.0\n")
    out = tmp_path / "out.png"
    result = nst(CONTENT, STYLE, "-o", out, "--config", config, "--progress", "none")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "out.png.json").read_text())
    assert record["config"]["steps"] == 1 and record["config"]["seed"] == 7 and record["steps"] == 1


def test_record_whole_floats_run(tmp_path):
    data = {"format": "nst-record/1",
            "config": {**config_to_dict(StyleConfig(size=64, scales=1, seed=3)), "steps": 2.0, "size": 64.0},
            "inputs": {"content": str(CONTENT), "styles": [str(STYLE)], "masks": None, "init": None}}
    record = tmp_path / "rec.json"
    record.write_text(json.dumps(data))
    assert type(load_record(record).config.steps) is int
    result = nst("--from-record", record, "-o", tmp_path / "again.png", "--progress", "none")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "again.png.json").read_text())["steps"] == 2


# 6. deep nesting


def test_deeply_nested_toml_is_one_line(tmp_path):
    config = tmp_path / "deep.toml"
    config.write_text("size = " + "[" * 50_000 + "]" * 50_000 + "\n")
    result = nst(CONTENT, STYLE, "-o", tmp_path / "out.png", "--config", config)
    assert result.exit_code == exit_codes.USER_ERROR
    assert "nested too deeply" in one_error_line(result)


def test_deeply_nested_record_is_one_line(tmp_path):
    record = tmp_path / "deep.json"
    record.write_text('{"format": "nst-record/1", "config": {"size": ' + "[" * 100_000 + "]" * 100_000 + "}}")
    result = nst("--from-record", record, "-o", tmp_path / "out.png")
    assert result.exit_code == exit_codes.USER_ERROR
    assert "nested too deeply" in one_error_line(result)


@pytest.mark.parametrize("depth", [50, 400])
def test_nesting_below_the_recursion_limit_is_a_short_line(tmp_path, depth):
    config = tmp_path / "deep.toml"
    config.write_text("size = " + "[" * depth + "1" + "]" * depth + "\n")
    result = nst(CONTENT, STYLE, "-o", tmp_path / "out.png", "--config", config)
    assert result.exit_code == exit_codes.USER_ERROR
    assert "size" in one_error_line(result)
    data = {"format": "nst-record/1", "config": {"steps": json.loads("[" * depth + "]" * depth)}}
    record = tmp_path / "deep.json"
    record.write_text(json.dumps(data))
    result = nst("--from-record", record, "-o", tmp_path / "out.png")
    assert result.exit_code == exit_codes.USER_ERROR
    assert "steps" in one_error_line(result)


def test_messages_shorten_large_values():
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"pooling": "x" * 10_000})
    assert len(str(caught.value)) < 200
    with pytest.raises(ConfigError) as caught:
        StyleConfig(size=[[[[[[[[1]]]]]]]])
    assert len(str(caught.value)) < 200
