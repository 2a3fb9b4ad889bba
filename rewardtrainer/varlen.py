"""Flash attention over packed rows (torch.nn.attention.varlen), as a transformers attention function.

A packed batch (data.collate_packed) is one (1, L) sequence holding every row of a micro-batch end to
end. FlexAttention handles it with a document mask (packing.py), but its kernels are Triton ones and
measured slower per position than the flash kernel SDPA runs on padded rows (README). PyTorch 2.10+
ships the flash kernel's variable-length form, `varlen_attn`: it takes the rows' cumulative offsets and
never looks across a row's end, with no mask at all.

transformers passes its attention function only what the layer has; the row offsets reach it through
`rows(...)`, a context the trainer holds around a packed micro-batch's forward and backward (backward
too: gradient checkpointing runs the forward again inside it). The function runs outside
torch.compile (`torch.compiler.disable`): the offsets change from batch to batch and would otherwise
be guards of the compiled layer. The padding after the last row is cut into pieces no longer than the
longest row, so that one maximum length (a host int, known before the copy) covers every piece.

Plain torch + transformers' attention registry; no Django.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

NAME = "rm_varlen"  # the attn_implementation name this module registers with transformers

_current = threading.local()


def available() -> bool:
    """torch ships varlen_attn (2.10 or later) and a CUDA device can run it."""
    import torch

    try:
        from torch.nn.attention import varlen  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def offsets(lengths: Sequence[int], width: int) -> tuple[np.ndarray, int]:
    """(N+1,) int32 cumulative offsets of rows of `lengths` tokens end to end in a row of `width`, the
    padding after them cut into pieces of at most the longest row; and that longest length."""
    import numpy as np

    lengths = np.asarray(lengths, dtype=np.int64)
    tail = width - int(lengths.sum())
    if tail < 0:
        raise ValueError(f"rows of {int(lengths.sum())} tokens do not fit a width of {width}")
    longest = max(int(lengths.max()) if len(lengths) else 1, 1)
    pieces = [longest] * (tail // longest) + ([tail % longest] if tail % longest else [])
    cu = np.concatenate([[0], np.cumsum(np.concatenate([lengths, pieces]))]).astype(np.int32)
    return cu, longest


@contextlib.contextmanager
def rows(lengths: Sequence[int], width: int, device) -> Iterator[None]:
    """Inside: the attention function reads these rows' offsets (copied to `device` without waiting)."""
    import torch

    cu, longest = offsets(lengths, width)
    cu_t = torch.from_numpy(cu)
    if torch.device(device).type == "cuda":
        cu_t = cu_t.pin_memory()
    previous = getattr(_current, "rows", None)
    _current.rows = (cu_t.to(device, non_blocking=True), longest)
    try:
        yield
    finally:
        _current.rows = previous


@functools.cache
def _kernel():
    """torch's varlen_attn and how this version spells causal and GQA (2.10: is_causal; later:
    window_size=(-1, 0) and enable_gqa)."""
    from torch.nn.attention.varlen import varlen_attn

    params = inspect.signature(varlen_attn).parameters
    return varlen_attn, "is_causal" in params, "enable_gqa" in params, "scale" in params


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention function: query (1, H, L, D), key/value (1, Hkv, L, D) -> (1, L, H, D)."""
    import torch

    current = getattr(_current, "rows", None)
    if current is None:
        raise RuntimeError("varlen attention runs on packed rows only (inside varlen.rows)")
    cu, longest = current
    varlen_attn, spells_causal, gqa, takes_scale = _kernel()
    # the kernel takes fp16/bf16 only and, a custom op, is not cast by autocast as SDPA is: cast here
    # (under autocast the rotary embedding leaves q and k in fp32)
    dtype = query.dtype
    if torch.is_autocast_enabled(query.device.type):
        dtype = torch.get_autocast_dtype(query.device.type)
    q, k, v = (t[0].transpose(0, 1).to(dtype).contiguous() for t in (query, key, value))  # (L, H, D)
    extra = {"is_causal": True} if spells_causal else {"window_size": (-1, 0)}
    if k.shape[1] != q.shape[1]:
        if gqa:
            extra["enable_gqa"] = True
        else:
            k, v = (t.repeat_interleave(q.shape[1] // t.shape[1], dim=1) for t in (k, v))
    if scaling is not None and not takes_scale:
        q = q * (scaling * q.shape[-1] ** 0.5)  # the kernel's own scale is D ** -0.5
    elif scaling is not None:
        extra["scale"] = scaling
    out = varlen_attn(q, k, v, cu, cu, longest, longest, **extra)  # (L, H, D)
    return out.unsqueeze(0), None


@functools.cache
def register() -> str:
    """Register the attention function with transformers, once (a new function object each call would
    be a new guard value for the compiled layers that look it up: a recompile); returns its name."""
    import torch
    from transformers import AttentionInterface

    AttentionInterface.register(NAME, torch.compiler.disable(_attention))
    return NAME
