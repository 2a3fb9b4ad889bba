"""varlen.py: flash attention over packed rows as a transformers attention function.

torch's varlen kernel runs on CUDA only; here a reference with the same contract (SDPA row by row)
stands in for it, which checks everything of ours around the kernel: offsets, layout, GQA, scale,
causality, and that packed rows score (and train) as the same rows padded.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rewardtrainer import varlen
from rewardtrainer.config import TrainConfig
from rewardtrainer.data import PreferencePair, collate, collate_packed, encode_pairs
from rewardtrainer.model import RewardModel


def reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, *, is_causal=None, window_size=None, **kw):
    """What torch.nn.attention.varlen.varlen_attn computes, row by row with SDPA: (T, H, D) in and out."""
    assert max_q >= int(torch.diff(cu_q).max()), "max_q must cover every row"
    causal = bool(is_causal) or window_size == (-1, 0)
    if k.shape[1] != q.shape[1]:
        assert kw.pop("enable_gqa", False), "fewer kv heads without enable_gqa"
    out = torch.empty_like(q)
    for a, b in zip(cu_q[:-1].tolist(), cu_q[1:].tolist(), strict=True):
        if b == a:
            continue
        rows = [t[a:b].transpose(0, 1) for t in (q, k, v)]  # (H, n, D)
        out[a:b] = F.scaled_dot_product_attention(
            *rows, is_causal=causal, scale=kw.get("scale"), enable_gqa=rows[1].shape[0] != rows[0].shape[0]
        ).transpose(0, 1)
    return out


SPELLINGS = {  # (kernel, spells causal as is_causal, takes enable_gqa, takes scale)
    "torch 2.10": (reference_varlen, True, False, False),
    "torch 2.12": (reference_varlen, False, True, True),
}


def test_offsets_cut_the_padding_into_pieces_no_longer_than_the_longest_row():
    cu, longest = varlen.offsets([3, 5, 2], 20)
    assert longest == 5
    assert cu.tolist() == [0, 3, 8, 10, 15, 20]  # the 10 padding tokens: two pieces of 5
    cu, _ = varlen.offsets([3, 5, 2], 12)
    assert cu.tolist() == [0, 3, 8, 10, 12]
    assert varlen.offsets([4, 4], 8)[0].tolist() == [0, 4, 8]
    assert cu.dtype == np.int32
    with pytest.raises(ValueError, match="do not fit"):
        varlen.offsets([4, 4], 7)


def test_the_attention_refuses_to_run_outside_packed_rows():
    q = torch.zeros(1, 2, 4, 8)
    with pytest.raises(RuntimeError, match="packed rows only"):
        varlen._attention(None, q, q, q, None)


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_packed_rows_under_varlen_score_and_train_as_padded_rows(
    spelling, tiny_llama, minilm_tokenizer, monkeypatch
):
    monkeypatch.setattr(varlen, "_kernel", lambda: SPELLINGS[spelling])
    packed_model = RewardModel.from_backbone(tiny_llama, attn_implementation=varlen.register())
    padded_model = RewardModel.from_backbone(tiny_llama)
    packed_model.load_state_dict(padded_model.state_dict())  # the same heads
    pairs = [
        PreferencePair(f"q{i} " * (1 + 5 * i), "yes " * (40 * i + 3), "no " * (90 - 20 * i)) for i in range(4)
    ]
    enc = encode_pairs(pairs, minilm_tokenizer, 256)
    packed = collate_packed(enc, range(4), width=1024)  # a long padding tail, cut into pieces
    lengths = np.diff(packed["ends"].numpy(), prepend=-1)
    with varlen.rows(lengths, packed["input_ids"].shape[1], "cpu"):
        got = packed_model(
            packed["input_ids"], None, position_ids=packed["position_ids"], ends=packed["ends"]
        )[0]
        got.sum().backward()
    padded = collate(enc, range(4))
    want = padded_model(padded["input_ids"], padded["attention_mask"])[0]
    want.sum().backward()
    assert torch.allclose(got, want, atol=1e-5)
    grads = dict(padded_model.named_parameters())
    for name, p in packed_model.named_parameters():
        assert (p.grad is None) == (grads[name].grad is None), name  # heads the reward does not use
        assert p.grad is None or torch.allclose(p.grad, grads[name].grad, atol=1e-5), name
    assert packed_model.backbone.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0


def test_the_model_switches_between_varlen_and_sdpa(tiny_llama):
    # validation runs padded batches through SDPA (train_rm._scoring) and returns to varlen after
    model = RewardModel.from_backbone(tiny_llama, attn_implementation=varlen.register())
    assert model.backbone.config._attn_implementation == varlen.NAME
    model.backbone.set_attn_implementation("sdpa")
    model.backbone.set_attn_implementation(varlen.NAME)
    assert model.backbone.config._attn_implementation == varlen.NAME


def test_packed_attention_is_checked():
    assert TrainConfig(packed_attention="flex").packed_attention == "flex"
    with pytest.raises(ValueError, match="packed_attention"):
        TrainConfig(packed_attention="dense")


def test_compiled_blocks_do_not_recompile_for_new_row_offsets(tiny_llama, minilm_tokenizer, monkeypatch):
    # the trainer compiles a packed run's blocks for one static shape; each batch brings other row
    # offsets and another longest row, which must not be guards of the compiled blocks
    from rewardtrainer.train_rm import compile_blocks

    monkeypatch.setattr(varlen, "_kernel", lambda: SPELLINGS["torch 2.12"])
    model = RewardModel.from_backbone(tiny_llama, attn_implementation=varlen.register())
    compile_blocks(model.backbone, dynamic=False)
    pairs = [PreferencePair(f"q{i} " * (1 + i), "yes " * (7 * i + 3), "no " * (30 - 3 * i)) for i in range(8)]
    enc = encode_pairs(pairs, minilm_tokenizer, 256)
    torch._dynamo.reset()

    def step(batch):
        packed = collate_packed(enc, batch, width=512)
        lengths = np.diff(packed["ends"].numpy(), prepend=-1)
        with varlen.rows(lengths, 512, "cpu"):
            r = model(packed["input_ids"], None, position_ids=packed["position_ids"], ends=packed["ends"])[0]
            r.sum().backward()

    # the first batch compiles the layer and, at the graph break the kernel makes, the attention module
    # on its own (transformers wraps both forwards in the same decorator: two entries of one code object)
    step([0, 1])
    assert varlen.register() == varlen.NAME
    with torch._dynamo.config.patch(error_on_recompile=True):
        for batch in ([2, 3, 4], [5, 6, 7], [7]):
            step(batch)
