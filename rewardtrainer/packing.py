"""The attention mask of a packed batch for FlexAttention, built on the host from the row lengths.

A packed batch (data.collate_packed) is one sequence holding every row of a micro-batch end to end;
each token may attend to the earlier tokens of its own row only (document-causal). transformers can
derive that mask itself from position ids that restart, but it then checks the ids on the device (a
host synchronisation every forward) and evaluates the mask function over all L x L positions to find
which 128 x 128 blocks matter. The row lengths are known on the host before the batch is copied, so
the block structure is computed here with numpy: for each query block, the key blocks it touches, and
among them the "full" ones (every query sees every key: same row, strictly below the diagonal) that
FlexAttention runs without evaluating the mask at all. Only the partial blocks (on the diagonal, or
where a row starts or ends) evaluate `doc[q] == doc[kv] and q >= kv`.

Used by the trainer on CUDA (`TrainConfig.packing`); torch.nn.attention.flex_attention needs torch 2.5
or later. Plain torch + numpy: no transformers, no Django.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import torch

BLOCK = 128  # FlexAttention's default block size


def document_ids(lengths: Sequence[int], width: int) -> np.ndarray:
    """(width,) the row each position belongs to; the tail after the rows is one more row."""
    import numpy as np

    lengths = np.asarray(lengths, dtype=np.int64)
    tail = width - int(lengths.sum())
    if tail < 0:
        raise ValueError(f"rows of {int(lengths.sum())} tokens do not fit a width of {width}")
    return np.repeat(np.arange(len(lengths) + 1), np.append(lengths, tail))


def block_structure(doc: np.ndarray, block: int = BLOCK) -> tuple[np.ndarray, ...]:
    """For a document-causal mask over `doc` (L,): per query block the key blocks it touches
    (kv_num_blocks (nq,), kv_indices (nq, nk)) and the full ones among them (the same two again),
    padded with zeros to (nq, nq) as BlockMask.from_kv_blocks expects."""
    import numpy as np

    n = -(-len(doc) // block)
    padded = np.append(doc, np.full(n * block - len(doc), doc[-1] + 1))  # a ragged end is its own row
    first, last = padded[::block], padded[block - 1 :: block]  # (n,) the row at each block's ends
    # the first position of each row, so a query block's reach starts where its first row starts
    row_start = np.searchsorted(padded, np.arange(padded[-1] + 1))
    partial_rows, full_rows = [], []
    for i in range(n):
        lo = row_start[first[i]] // block
        js = np.arange(lo, i + 1)
        full = (js < i) & (first[js] == last[js]) & (first[js] == first[i]) & (last[i] == first[i])
        full_rows.append(js[full])
        partial_rows.append(js[~full])

    def pack(rows):
        counts = np.array([len(r) for r in rows], dtype=np.int32)
        indices = np.zeros((n, n), dtype=np.int32)  # (query blocks, key blocks), as from_kv_blocks wants
        for i, r in enumerate(rows):
            indices[i, : len(r)] = r
        return counts, indices

    return (*pack(partial_rows), *pack(full_rows))


def document_block_mask(lengths: Sequence[int], width: int, device: torch.device | str):
    """The FlexAttention BlockMask (batch 1, all heads) of a packed row: rows of `lengths` tokens end
    to end, padding up to `width`; built on the host, copied without waiting."""
    import torch
    from torch.nn.attention.flex_attention import BlockMask

    doc_np = document_ids(lengths, width)
    kv_n, kv_idx, full_n, full_idx = (
        torch.from_numpy(a)[None, None].to(device, non_blocking=True) for a in block_structure(doc_np)
    )
    doc = torch.from_numpy(doc_np).to(device, non_blocking=True)

    def document_causal(b, h, q, kv):
        return (doc[q] == doc[kv]) & (q >= kv)

    return BlockMask.from_kv_blocks(
        kv_n, kv_idx, full_n, full_idx, BLOCK_SIZE=BLOCK, mask_mod=document_causal, seq_lengths=(width, width)
    )
