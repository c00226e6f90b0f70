"""Self-describing configs: the CLI options, their checks and the node inputs come from the
config fields, so a default, range or help text is stated once."""
import argparse
from dataclasses import fields

import pytest

from word2scene.errors import InputError
from word2scene.scenes.sampling import SamplingSettings
from word2scene.settings import add_arguments, check_ranges, flags, from_arguments, node_input
from word2scene.training.base_model import PretrainConfig
from word2scene.training.config import TrainConfig


@pytest.mark.parametrize("cls", [TrainConfig, PretrainConfig])
def test_defaults_round_trip_through_the_command_line(cls):
    parser = argparse.ArgumentParser()
    add_arguments(parser, cls)
    assert from_arguments(cls, parser.parse_args([])) == cls()
    helps = {a.dest: a.help for a in parser._actions if a.dest != "help"}
    assert set(helps) == {f.name for f in fields(cls)} and all(helps.values())


def test_flags_values_and_errors_name_what_the_user_typed():
    parser = argparse.ArgumentParser()
    add_arguments(parser, TrainConfig)
    args = parser.parse_args(["--lr", "3e-4", "--batch", "4", "--bands", "4,3,2", "--split", "all", "--concept", "park",
                              "--concept", "square", "--trigger-words", "gs, geographic scene , x", "--rslora"])
    cfg = from_arguments(TrainConfig, args)
    assert (cfg.learning_rate, cfg.batch_size, cfg.bands, cfg.split) == (3e-4, 4, (4, 3, 2), None)
    assert cfg.concepts == ["park", "square"] and cfg.trigger_words == ["gs", "geographic scene", "x"] and cfg.rslora
    with pytest.raises(InputError, match=r"^--lr: 5.0 is not accepted; use 1e-07 to 0.1"):
        TrainConfig(learning_rate=5.0).check(flags(TrainConfig))
    with pytest.raises(InputError, match=r"^learning_rate: "):  # the node's input name
        TrainConfig(learning_rate=5.0).check()
    with pytest.raises(InputError, match=r"^--lr-scheduler: 'bogus' is not accepted; accepted: constant"):
        TrainConfig(lr_scheduler="bogus").check(flags(TrainConfig))
    with pytest.raises(InputError, match="--bands"):
        from_arguments(TrainConfig, parser.parse_args(["--bands", "a,b"]))
    with pytest.raises(SystemExit):
        parser.parse_args(["--modules", "everything"])  # choices are the config's


def test_node_inputs_carry_the_config_defaults_and_ranges():
    kind, spec = node_input(TrainConfig, "learning_rate", step=1e-5)
    assert kind == "FLOAT" and (spec["default"], spec["min"], spec["max"], spec["step"]) == (1e-4, 1e-7, 0.1, 1e-5)
    assert node_input(TrainConfig, "module_set")[0] == ["attention", "kohya"]
    assert node_input(TrainConfig, "trigger_words") == ("STRING", {"default": "gs, geographic scene",
                                                                   "tooltip": next(f.metadata["help"] for f in fields(TrainConfig)
                                                                                   if f.name == "trigger_words")})
    assert node_input(SamplingSettings, "steps")[1]["max"] == 10_000
    assert node_input(SamplingSettings, "width")[1]["max"] == 4096


def test_sampling_bounds():
    SamplingSettings(width=4096, height=8).check()
    for bad, message in [({"width": 4104}, "width: 4104 is not accepted; use 8 to 4096"),
                         ({"height": 100}, "height: 100 is not accepted; use a positive multiple of 8"),
                         ({"steps": 0}, "steps: 0"), ({"cfg": float("nan")}, "cfg: nan is not a number"),
                         ({"seed": -1}, "seed: -1")]:
        with pytest.raises(InputError, match=message):
            SamplingSettings(**bad).check()
    with pytest.raises(InputError, match="^--size: 4104"):
        SamplingSettings(width=4104).check({"width": "--size"})
    check_ranges(PretrainConfig())
