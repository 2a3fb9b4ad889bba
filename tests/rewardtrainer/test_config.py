"""TrainConfig read back from what a run stored, including configs stored by earlier versions."""

from __future__ import annotations

import dataclasses

import pytest

from rewardtrainer.config import TrainConfig


def test_a_stored_config_round_trips():
    config = TrainConfig(objective="plain", augment="neighbour", max_length=128, seed=3)
    assert TrainConfig.from_stored(dataclasses.asdict(config)) == config


def test_a_config_stored_before_the_objective_field_still_runs(caplog):
    # What a run queued before the upgrade holds: `odin` and `decorrelate_max_pairs`, since renamed.
    legacy = {"odin": True, "decorrelate_max_pairs": 400, "max_length": 96, "retired_knob": 1}
    config = TrainConfig.from_stored(legacy)
    assert config.objective == "odin" and config.calibration_max_pairs == 400 and config.max_length == 96
    assert "retired_knob" in caplog.text
    assert TrainConfig.from_stored({"odin": False}).objective == "plain"
    with pytest.raises(TypeError):
        TrainConfig(**legacy)  # what the worker did before: the queued run failed


def test_a_stored_config_is_still_checked():
    with pytest.raises(ValueError, match="objective"):
        TrainConfig.from_stored({"objective": "longest"})


def test_epochs_are_whole_passes():
    # RM_EPOCHS=0.5 trained one epoch and 2.9 two, without a word
    for bad in (0, 0.5, 2.9, True):
        with pytest.raises(ValueError, match="epochs must be a whole number >= 1"):
            TrainConfig(epochs=bad)
    assert TrainConfig(epochs=3).epochs == 3


def test_compile_is_auto_by_default_and_on_only_for_a_gpu_and_a_large_backbone():
    import torch

    from rewardtrainer.train_rm import compile_enabled

    config, gpu, cpu = TrainConfig(), torch.device("cuda"), torch.device("cpu")
    assert config.compile == "auto"
    assert compile_enabled(config, gpu, 135_000_000) and not compile_enabled(config, cpu, 135_000_000)
    assert not compile_enabled(config, gpu, 22_000_000)  # MiniLM: compiling takes longer than training
    assert compile_enabled(TrainConfig(compile="on"), cpu, 1_000)
    assert not compile_enabled(TrainConfig(compile="off"), gpu, 10**9)
    with pytest.raises(ValueError, match="compile"):
        TrainConfig(compile="yes")
    with pytest.raises(ValueError, match="pad_to_multiple"):
        TrainConfig(pad_to_multiple=-1)


def test_a_config_stored_when_compile_was_a_switch_reads_back():
    assert TrainConfig.from_stored({"compile": True}).compile == "on"
    assert TrainConfig.from_stored({"compile": False}).compile == "off"


def test_the_command_line_help_shows_every_field(capsys):
    # the help is each field's docstring; one with a '%' once made --help crash (argparse formats it)
    from rewardtrainer.train_rm import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--packing" in out and "13% to 1%" in " ".join(out.split())


def test_a_config_stored_when_none_meant_off_reads_back():
    # max_steps, num_threads and early_stopping_patience could be None (= 0) until 2026-11-25; the range
    # checks refused such a stored run
    stored = {"max_steps": None, "num_threads": None, "early_stopping_patience": None}
    config = TrainConfig.from_stored(stored)
    assert (config.max_steps, config.num_threads, config.early_stopping_patience) == (0, 0, 0)
    with pytest.raises(ValueError, match="max_steps must be a whole number >= 0"):
        TrainConfig(max_steps=-1)


def test_a_small_ppo_batch_on_the_command_line_is_one_minibatch(capsys):
    # --batch-size 2 raised "mini_batch_size (4) must be at most batch_size (2)" once minibatches were
    # checked; before, a batch below the default minibatch was one minibatch
    from rewardtrainer.ppo import VALUE_MODELS, PPOConfig, main  # the benches import VALUE_MODELS from here

    assert VALUE_MODELS == ("shared", "separate")
    with pytest.raises(ValueError, match="mini_batch_size"):
        PPOConfig(batch_size=2)
    args = ["--prompts", "/nonexistent/prompts.txt", "--reward-model", "rm", "--out", "o"]
    assert main([*args, "--batch-size", "2"]) == 2  # past the config, stopped at the missing prompts file
    assert "No such file" in capsys.readouterr().err
    assert main([*args, "--updates", "0"]) == 2
    assert "updates must be a whole number >= 1" in capsys.readouterr().err
