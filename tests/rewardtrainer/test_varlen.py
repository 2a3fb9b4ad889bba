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


# The reference as torch ships its kernel: a custom op with a fake and a backward that is a custom op too,
# so that a compiled block traces both without looking inside (no graph break, no guard on the offsets).
@torch.library.custom_op("rm_test::varlen", mutates_args=())
def _reference_op(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_q: torch.Tensor,
    cu_k: torch.Tensor,
    max_q: int,
    max_k: int,
) -> torch.Tensor:
    return reference_varlen(q, k, v, cu_q, cu_k, max_q, max_k, is_causal=True)


@_reference_op.register_fake
def _(q, k, v, cu_q, cu_k, max_q, max_k):
    return torch.empty_like(q)


@torch.library.custom_op("rm_test::varlen_backward", mutates_args=())
def _reference_op_backward(
    grad: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu: torch.Tensor, max_q: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _, vjp = torch.func.vjp(
        lambda q, k, v: reference_varlen(q, k, v, cu, cu, max_q, max_q, is_causal=True), q, k, v
    )
    return tuple(g.clone() for g in vjp(grad))


@_reference_op_backward.register_fake
def _(grad, q, k, v, cu, max_q):
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup(ctx, inputs, output):
    q, k, v, cu, _, max_q, _ = inputs
    ctx.save_for_backward(q, k, v, cu)
    ctx.max_q = max_q


def _backward(ctx, grad):
    q, k, v, cu = ctx.saved_tensors
    return (*_reference_op_backward(grad, q, k, v, cu, ctx.max_q), None, None, None, None)


_reference_op.register_autograd(_backward, setup_context=_setup)


def _reference_op_kernel(q, k, v, cu_q, cu_k, max_q, max_k, *, is_causal=True):
    return _reference_op(q, k, v, cu_q, cu_k, max_q, max_k)


def test_offsets_of_a_compiled_run_are_one_shape():
    # a compiled run: the maximum is max_length, the padding tail in pieces of at most that, and empty rows
    # up to a power of two (at least 64)
    cu, longest = varlen.offsets([3, 5, 2], 20, longest=8, rows=8)
    assert longest == 8
    assert cu.tolist() == [0, 3, 8, 10, 18, 20, 20, 20, 20]
    with pytest.raises(ValueError, match="longer than the maximum"):
        varlen.offsets([3, 9], 20, longest=8)
    assert [varlen.fixed_row_count(n) for n in (1, 64, 65, 200)] == [64, 64, 128, 256]
    with varlen.rows([3, 5, 2], 500, "cpu", fixed_max=16):  # 3 rows and 31 pieces: 64 rows
        kw = varlen.backbone_kwargs()
    assert kw[varlen.KW_MAX] == 16 and kw[varlen.KW_OFFSETS].shape == (65,)
    assert kw[varlen.KW_OFFSETS][-1] == 500 and int(torch.diff(kw[varlen.KW_OFFSETS]).max()) <= 16
    assert varlen.backbone_kwargs() == {}


def test_compiled_blocks_trace_the_kernel_and_do_not_recompile_for_new_row_offsets(
    tiny_llama, minilm_tokenizer, monkeypatch
):
    # the trainer compiles a packed run's blocks for one static shape; each batch brings other row
    # offsets, which must not be guards of the compiled blocks (rows(..., fixed_max) as the trainer calls
    # it compiled). A custom-op kernel, as torch's varlen_attn is, traces into the block: no graph break,
    # and forward and backward give what the padded model gives.
    from torch._dynamo.utils import counters

    from rewardtrainer.train_rm import compile_blocks

    monkeypatch.setattr(varlen, "_kernel", lambda: (_reference_op_kernel, True, False, False))
    model = RewardModel.from_backbone(tiny_llama, attn_implementation=varlen.register())
    padded_model = RewardModel.from_backbone(tiny_llama)
    padded_model.load_state_dict(model.state_dict())
    compile_blocks(model.backbone, dynamic=False)
    pairs = [PreferencePair(f"q{i} " * (1 + i), "yes " * (7 * i + 3), "no " * (30 - 3 * i)) for i in range(8)]
    enc = encode_pairs(pairs, minilm_tokenizer, 256)
    torch._dynamo.reset()
    counters.clear()

    def step(batch):
        packed = collate_packed(enc, batch, width=512)
        lengths = np.diff(packed["ends"].numpy(), prepend=-1)
        with varlen.rows(lengths, 512, "cpu", fixed_max=256):
            r = model(packed["input_ids"], None, position_ids=packed["position_ids"], ends=packed["ends"])[0]
            r.sum().backward()
        return r

    for n, batch in enumerate(([0, 1], [2, 3, 4], [5, 6, 7], [7])):
        model.zero_grad()
        padded_model.zero_grad()
        with torch._dynamo.config.patch(error_on_recompile=n > 0):
            got = step(batch)
        padded = collate(enc, batch)
        want = padded_model(padded["input_ids"], padded["attention_mask"])[0]
        want.sum().backward()
        assert torch.allclose(got.detach(), want, atol=1e-5)
        grad = model.backbone.layers[0].self_attn.q_proj.weight.grad
        assert torch.allclose(grad, padded_model.backbone.layers[0].self_attn.q_proj.weight.grad, atol=1e-5)
    assert varlen.register() == varlen.NAME
    assert counters["stats"]["unique_graphs"] >= 1  # the layers did compile
    assert not counters["graph_break"], dict(counters["graph_break"])


def test_the_kernel_takes_fewer_key_value_heads_whatever_torch_spells(monkeypatch):
    # torch 2.12+: the public function with enable_gqa; 2.10/2.11's refuses fewer key/value heads, so its
    # op (which hands them to the flash kernel as they are, GQA natively) is called directly
    import torch.nn.attention.varlen as torch_varlen

    def public_2_11(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, scale=None, window_size=(-1, -1)):
        raise AssertionError("not called here")

    def public_2_13(
        query,
        key,
        value,
        cu_seq_q,
        cu_seq_k,
        max_q,
        max_k,
        *,
        scale=None,
        window_size=(-1, -1),
        enable_gqa=False,
    ):
        raise AssertionError("not called here")

    for public, want in (
        (public_2_11, (varlen._op_with_gqa, True, True, True)),
        (public_2_13, (public_2_13, False, True, True)),
    ):
        monkeypatch.setattr(torch_varlen, "varlen_attn", public)
        monkeypatch.setattr(varlen, "_KERNEL", None)
        assert varlen._kernel() == want


def _prep(backbone: str, choice: str):
    from types import SimpleNamespace

    from transformers import AutoConfig

    config = TrainConfig(backbone=backbone, packed_attention=choice)
    family = AutoConfig.from_pretrained(backbone).model_type  # what prepare() records
    return SimpleNamespace(packing=True, device=torch.device("cuda"), config=config, model_type=family)


@pytest.mark.parametrize(
    ("choice", "available", "want"),
    [
        ("auto", True, varlen.NAME),
        ("auto", False, "flex_attention"),
        ("flex", True, "flex_attention"),
        ("varlen", True, varlen.NAME),
    ],
)
def test_auto_packed_attention_is_varlen_where_torch_has_it(choice, available, want, tiny_llama, monkeypatch):
    from rewardtrainer.train_rm import _attention

    monkeypatch.setattr(varlen, "available", lambda: available)
    assert _attention(_prep(tiny_llama, choice)) == want


def test_varlen_where_torch_or_the_backbone_cannot_is_a_clear_error_and_auto_falls_back(
    tiny_llama, tiny_bert, monkeypatch
):
    from rewardtrainer.train_rm import _attention

    monkeypatch.setattr(varlen, "available", lambda: False)
    with pytest.raises(ValueError, match="torch 2.10"):
        _attention(_prep(tiny_llama, "varlen"))
    monkeypatch.setattr(varlen, "available", lambda: True)
    with pytest.raises(ValueError, match="'bert' is not one of them"):
        _attention(_prep(tiny_bert, "varlen"))
    assert _attention(_prep(tiny_bert, "auto")) == "flex_attention"


def test_what_the_kernel_cannot_do_is_refused_not_computed_otherwise():
    q = torch.zeros(1, 2, 8, 4)
    rows = {varlen.KW_OFFSETS: torch.tensor([0, 8], dtype=torch.int32), varlen.KW_MAX: 8}
    with pytest.raises(ValueError, match="soft-capping"):
        varlen._attention(None, q, q, q, None, softcap=50.0, **rows)
    with pytest.raises(ValueError, match="sliding window"):
        varlen._attention(None, q, q, q, None, sliding_window=4, **rows)


def test_torch_2_10s_op_gets_no_scale(monkeypatch):
    # 2.10's op stops at is_causal: the kernel reports no scale, so the attention function scales q
    import torch.nn.attention.varlen as torch_varlen

    def public_2_10(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, is_causal=False, return_aux=None):
        raise AssertionError("not called here")

    monkeypatch.setattr(torch_varlen, "varlen_attn", public_2_10)
    monkeypatch.setattr(varlen, "_op_takes_scale", lambda: False)
    monkeypatch.setattr(varlen, "_KERNEL", None)
    assert varlen._kernel() == (varlen._op_with_gqa, True, True, False)


@pytest.mark.parametrize("model_type", sorted(varlen.MODEL_TYPES))
def test_every_family_varlen_accepts_scores_packed_rows_as_padded_rows(
    model_type, minilm_tokenizer, tmp_path, monkeypatch
):
    # MODEL_TYPES is the list of families whose layers hand the offsets to the attention function and
    # whose attention the kernel computes; each is checked here on a tiny model of its own config
    from transformers import AutoConfig, AutoModel

    monkeypatch.setattr(varlen, "_kernel", lambda: SPELLINGS["torch 2.12"])
    dims = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    dims |= {"num_key_value_heads": 2, "head_dim": 8, "n_embd": 32, "n_layer": 2, "n_head": 4}
    config = AutoConfig.for_model(
        model_type,
        vocab_size=minilm_tokenizer.vocab_size,
        max_position_embeddings=512,
        pad_token_id=0,
        **dims,
    )
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(tmp_path)
    packed_model = RewardModel.from_backbone(str(tmp_path), attn_implementation=varlen.register())
    assert packed_model.backbone.config._attn_implementation == varlen.NAME
    padded_model = RewardModel.from_backbone(str(tmp_path))
    padded_model.load_state_dict(packed_model.state_dict())
    pairs = [
        PreferencePair(f"q{i} " * (1 + 5 * i), "yes " * (30 * i + 3), "no " * (70 - 15 * i)) for i in range(3)
    ]
    enc = encode_pairs(pairs, minilm_tokenizer, 128)
    packed = collate_packed(enc, range(3), width=600)
    with varlen.rows(np.diff(packed["ends"].numpy(), prepend=-1), 600, "cpu", fixed_max=128), torch.no_grad():
        got = packed_model(
            packed["input_ids"], None, position_ids=packed["position_ids"], ends=packed["ends"]
        )[0]
    padded = collate(enc, range(3))
    with torch.no_grad():
        want = padded_model(padded["input_ids"], padded["attention_mask"])[0]
    assert torch.allclose(got, want, atol=1e-4)
