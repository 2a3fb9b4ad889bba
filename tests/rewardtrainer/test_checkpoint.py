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
