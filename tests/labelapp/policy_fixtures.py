"""Tiny policy and reward model folders for the policy-loop tests (import the fixtures by name)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_policy_dir(tmp_path_factory) -> str:
    from tests.rewardtrainer.tiny_policy import tiny_llama, tiny_tokenizer

    out = tmp_path_factory.mktemp("tiny-policy")
    tok = tiny_tokenizer()
    tiny_llama(tok).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def tiny_rm_dir(tmp_path_factory, tiny_backbone) -> str:
    from transformers import AutoTokenizer

    from rewardtrainer.model import RewardModel

    out = tmp_path_factory.mktemp("tiny-rm")
    import torch

    torch.manual_seed(0)
    model = RewardModel.from_backbone(tiny_backbone, odin=True)
    model.max_length = 64
    model.save_pretrained(out, tokenizer=AutoTokenizer.from_pretrained(tiny_backbone))
    return str(out)
