"""checkpoint.py: loading a checkpoint is all or nothing."""

from __future__ import annotations

import pytest
import torch

from rewardtrainer.checkpoint import CheckpointError, load_checkpoint, save_checkpoint


def _parts(model: torch.nn.Module):
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)


def test_a_checkpoint_that_does_not_fit_leaves_the_model_as_it_was(tmp_path):
    torch.manual_seed(0)
    saved = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 1))
    save_checkpoint(tmp_path, 3, saved, *_parts(saved), {})
    # shares the first layer's names and shapes, not the second's: safetensors copies the first layer
    # before it reports the mismatch
    other = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(CheckpointError, match="does not fit|cannot load"):
        load_checkpoint(tmp_path / "ckpt-000003", other, *_parts(other))
    for k, v in other.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_a_missing_key_is_named_in_the_error(tmp_path):
    saved = torch.nn.Sequential(torch.nn.Linear(4, 4))
    save_checkpoint(tmp_path, 1, saved, *_parts(saved), {})
    bigger = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 1))
    before = {k: v.clone() for k, v in bigger.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"missing=\['1.bias', '1.weight'\]"):
        load_checkpoint(tmp_path / "ckpt-000001", bigger, *_parts(bigger))
    assert all(torch.equal(v, before[k]) for k, v in bigger.state_dict().items())


def test_a_fitting_checkpoint_loads(tmp_path):
    torch.manual_seed(0)
    saved = torch.nn.Linear(4, 1)
    save_checkpoint(tmp_path, 2, saved, *_parts(saved), {"note": "x"})
    fresh = torch.nn.Linear(4, 1)
    state = load_checkpoint(tmp_path / "ckpt-000002", fresh, *_parts(fresh))
    assert state["note"] == "x" and torch.equal(fresh.weight, saved.weight)


class _OnDevice:
    """A saved generator state as torch.load(map_location=<a GPU>) returns it: not on the CPU."""

    device = torch.device("meta")

    def __init__(self, state: torch.Tensor):
        self.state = state

    def cpu(self) -> torch.Tensor:
        return self.state.clone()


def test_rng_states_loaded_onto_a_device_are_restored(monkeypatch):
    # load_checkpoint(map_location=<the GPU>) put the saved CUDA generator states on the GPU, and a
    # generator takes only a CPU ByteTensor: every resume on CUDA failed with a TypeError. The fake
    # set_rng_state_all checks what the CUDA generator checks.
    from rewardtrainer.checkpoint import rng_state, set_rng_state

    torch.manual_seed(7)
    saved_state = torch.get_rng_state()
    given = []

    def set_all(states):
        assert all(isinstance(s, torch.Tensor) and s.device.type == "cpu" for s in states)
        given.extend(states)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # saved on two GPUs, resumed on one
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", set_all)
    saved = {"torch": _OnDevice(saved_state), "cuda": [_OnDevice(saved_state), _OnDevice(saved_state)]}
    torch.manual_seed(8)
    set_rng_state(rng_state(), saved)
    assert torch.equal(torch.get_rng_state(), saved_state)
    assert len(given) == 1 and torch.equal(given[0], saved_state)


def test_a_kill_while_a_step_is_saved_again_leaves_that_step_to_resume_from(tmp_path, monkeypatch):
    # the old copy was deleted before the new one was renamed in: killed between the two (with keep=1
    # nothing older was left), the run found no checkpoint and started over
    import os

    from rewardtrainer import checkpoint

    model = torch.nn.Linear(4, 1)
    save_checkpoint(tmp_path, 5, model, *_parts(model), {"note": "first"}, keep=1)
    real_replace = os.replace

    def killed_at_the_second_rename(src, dst):
        if str(src).endswith(".tmp"):
            raise KeyboardInterrupt  # the process dies here
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", killed_at_the_second_rename)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 5, model, *_parts(model), {"note": "second"}, keep=1)
    monkeypatch.setattr(checkpoint.os, "replace", real_replace)
    found = checkpoint.latest_checkpoint(tmp_path)
    assert found is not None and checkpoint.validate_checkpoint(found)["note"] == "first"
    # the next save of the step puts things right: one copy, the new one
    save_checkpoint(tmp_path, 5, model, *_parts(model), {"note": "third"}, keep=1)
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["ckpt-000005"]
    assert checkpoint.validate_checkpoint(tmp_path / "ckpt-000005")["note"] == "third"
