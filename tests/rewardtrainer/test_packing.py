"""packing.py: the FlexAttention block mask of a packed batch, built on the host."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.attention.flex_attention import create_block_mask

from rewardtrainer.data import PreferencePair, collate, collate_packed, encode_pairs
from rewardtrainer.model import RewardModel
from rewardtrainer.packing import block_structure, document_block_mask, document_ids


def test_document_ids_number_the_rows_and_the_tail():
    assert document_ids([2, 3], 7).tolist() == [0, 0, 1, 1, 1, 2, 2]
    assert document_ids([2, 3], 5).tolist() == [0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="do not fit"):
        document_ids([4, 4], 7)


@pytest.mark.parametrize("seed", range(5))
def test_the_host_built_blocks_are_those_flex_attention_derives_from_the_mask(seed):
    # create_block_mask evaluates the document-causal mask at every position; ours reasons per block
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 400, size=rng.integers(1, 12))
    width = int(lengths.sum()) + int(rng.integers(0, 300))
    doc = torch.from_numpy(document_ids(lengths, width))
    ref = create_block_mask(
        lambda b, h, q, kv: (doc[q] == doc[kv]) & (q >= kv), None, None, width, width, device="cpu"
    )
    kv_n, kv_idx, full_n, full_idx = (torch.from_numpy(a) for a in block_structure(doc.numpy()))
    assert torch.equal(kv_n, ref.kv_num_blocks[0, 0].to(kv_n.dtype))
    assert torch.equal(full_n, ref.full_kv_num_blocks[0, 0].to(full_n.dtype))
    ours = document_block_mask(lengths, width, "cpu")
    assert torch.equal(ours.to_dense(), ref.to_dense())  # the same partial and full blocks
    assert full_n.sum() > 0 or width < 384  # long rows leave whole blocks that skip the mask


def test_packed_rows_under_flex_attention_score_as_padded_rows(tiny_llama, minilm_tokenizer):
    # the mask the trainer hands FlexAttention on a GPU, run here on CPU (forward only: FlexAttention
    # has no CPU backward); the padded batch runs SDPA
    flex = RewardModel.from_backbone(tiny_llama, attn_implementation="flex_attention").eval()
    sdpa = RewardModel.from_backbone(tiny_llama).eval()
    flex.load_state_dict(sdpa.state_dict())  # the same heads
    pairs = [
        PreferencePair(f"q{i} " * (1 + 5 * i), "yes " * (40 * i + 3), "no " * (90 - 20 * i)) for i in range(4)
    ]
    enc = encode_pairs(pairs, minilm_tokenizer, 256)
    packed = collate_packed(enc, range(4), multiple=128)
    lengths = np.diff(packed["ends"].numpy(), prepend=-1)
    with torch.no_grad():
        got = flex(
            packed["input_ids"],
            document_block_mask(lengths, packed["input_ids"].shape[1], "cpu"),
            position_ids=packed["position_ids"],
            ends=packed["ends"],
        )[0]
        padded = collate(enc, range(4))
        want = sdpa(padded["input_ids"], padded["attention_mask"])[0]
    assert torch.allclose(got, want, atol=1e-5)
