"""Flash attention over packed rows (torch.nn.attention.varlen), as a transformers attention function.

A packed batch (data.collate_packed) is one (1, L) sequence holding every row of a micro-batch end to
end. FlexAttention handles it with a document mask (packing.py), but its kernels are Triton ones and
measured slower per position than the flash kernel SDPA runs on padded rows (README). PyTorch 2.10+
ships the flash kernel's variable-length form, `varlen_attn`: it takes the rows' cumulative offsets and
never looks across a row's end, with no mask at all.

The row offsets reach the attention function as keyword arguments of the backbone's forward
(`backbone_kwargs`), which transformers hands through every decoder layer to its attention function;
the trainer sets them with `rows(...)`, a context held around a packed micro-batch's forward and
backward (backward too: gradient checkpointing runs the forward again inside it), and the reward model
reads them there. The kernel is a torch custom op, so the function traces into a compiled block: the
offsets are a tensor input, not guards. A compiled run fixes everything else about a batch as well
(`rows(..., fixed_max=max_length)`): the maximum row length is max_length, the padding after the last
row is cut into pieces no longer than that, and the offsets are padded with empty rows to a power of
two, so that the blocks compile once for the run's one packed width (again only when the row count
passes a power of two). Uncompiled, the maximum is the batch's longest row.

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


# Decoder families checked on CPU (tests/rewardtrainer/test_varlen.py, a reference kernel with the same
# contract) to hand the forward's keyword arguments to their attention function and to score packed rows
# as the same rows padded. Others are refused: a layer that drops the kwargs would fail late (StableLM),
# and one that never calls the attention function would silently let packed rows see each other (Bloom).
# Gemma2 is left out on purpose: its attention soft-caps the logits, which the flash kernel cannot.
MODEL_TYPES = frozenset(
    "cohere gemma gemma3_text gpt2 gpt_neox granite llama mistral mixtral olmo olmo2 opt phi phi3 qwen2"
    " qwen2_moe qwen3 smollm3 starcoder2".split()
)


def supports(model_type: str) -> bool:
    """This backbone family (a config's model_type) is one the varlen attention was checked on."""
    return model_type in MODEL_TYPES


def available() -> bool:
    """torch ships varlen_attn (2.10 or later) and a CUDA device can run it."""
    import torch

    try:
        from torch.nn.attention import varlen  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


KW_OFFSETS = "rm_varlen_offsets"  # the backbone kwargs the attention function reads (backbone_kwargs)
KW_MAX = "rm_varlen_max"
MIN_FIXED_ROWS = 64  # fixed offsets: at least this many rows, then powers of two


def offsets(lengths: Sequence[int], width: int, longest: int = 0, rows: int = 0) -> tuple[np.ndarray, int]:
    """(N+1,) int32 cumulative offsets of rows of `lengths` tokens end to end in a row of `width`, the
    padding after them cut into pieces of at most `longest` (default: the longest row), then empty rows
    up to `rows` in all; and that maximum length."""
    import numpy as np

    lengths = np.asarray(lengths, dtype=np.int64)
    tail = width - int(lengths.sum())
    if tail < 0:
        raise ValueError(f"rows of {int(lengths.sum())} tokens do not fit a width of {width}")
    longest_row = int(lengths.max()) if len(lengths) else 0
    if longest and longest < longest_row:
        raise ValueError(f"a row of {longest_row} tokens is longer than the maximum {longest}")
    longest = max(longest or longest_row, 1)
    pieces = [longest] * (tail // longest) + ([tail % longest] if tail % longest else [])
    cu = np.concatenate([[0], np.cumsum(np.concatenate([lengths, pieces]))]).astype(np.int32)
    return _pad_rows(cu, rows), longest


def _pad_rows(cu: np.ndarray, rows: int) -> np.ndarray:
    """Offsets `cu` with empty rows appended (the last offset repeated) up to `rows` rows in all."""
    import numpy as np

    return np.concatenate([cu, np.full(max(0, rows + 1 - len(cu)), cu[-1], dtype=cu.dtype)])


def fixed_row_count(n: int) -> int:
    """The row count a compiled run pads offsets to: a power of two, at least MIN_FIXED_ROWS."""
    return max(MIN_FIXED_ROWS, 1 << (max(n, 1) - 1).bit_length())


@contextlib.contextmanager
def rows(lengths: Sequence[int], width: int, device, fixed_max: int = 0) -> Iterator[None]:
    """Inside: the reward model hands these rows' offsets (copied to `device` without waiting) to its
    backbone. `fixed_max` (a compiled run: max_length) fixes the maximum row length and pads the row count
    to fixed_row_count, so that nothing about the batch but the offsets' values reaches the kernel."""
    import torch

    cu, longest = offsets(lengths, width, fixed_max)
    if fixed_max:
        cu = _pad_rows(cu, fixed_row_count(len(cu) - 1))
    cu_t = torch.from_numpy(cu)
    if torch.device(device).type == "cuda":
        cu_t = cu_t.pin_memory()
    previous = getattr(_current, "rows", None)
    _current.rows = (cu_t.to(device, non_blocking=True), longest)
    try:
        yield
    finally:
        _current.rows = previous


def backbone_kwargs() -> dict:
    """Inside `rows(...)`: the keyword arguments that carry the offsets to the attention function through
    the backbone's forward; else none."""
    current = getattr(_current, "rows", None)
    return {} if current is None else {KW_OFFSETS: current[0], KW_MAX: current[1]}


_KERNEL: tuple | None = None


def _kernel():
    """torch's varlen_attn and how this version spells causal, GQA and the scale (2.10: is_causal; later:
    window_size=(-1, 0) and enable_gqa), looked up once (a module global, set by `register` before any
    compiled block reads it: set during a trace, it would be a guard that fails on the next call). Where
    the public function refuses fewer key/value heads (no enable_gqa), its op is called directly
    (`_op_with_gqa`)."""
    global _KERNEL
    if _KERNEL is None:
        from torch.nn.attention.varlen import varlen_attn

        params = inspect.signature(varlen_attn).parameters
        causal, gqa, scale = "is_causal" in params, "enable_gqa" in params, "scale" in params
        _KERNEL = (varlen_attn, causal, gqa, scale) if gqa else (_op_with_gqa, True, True, _op_takes_scale())
    return _KERNEL


def _op_takes_scale() -> bool:
    """Whether torch's varlen op takes a softmax scale (2.11 does; 2.10's stops at is_causal)."""
    import torch

    return any(a.name == "scale" for a in torch.ops.torch_attn._varlen_attn.default._schema.arguments)


def _op_with_gqa(q, k, v, cu_q, cu_k, max_q, max_k, *, is_causal=True, enable_gqa=False, scale=None):
    """torch 2.10/2.11's varlen op, which the public function wraps: it hands the heads as they are to the
    flash kernel, and that kernel takes fewer key/value heads than query heads (GQA) natively, where the
    public function's check would make us repeat them (3x the key/value traffic on SmolLM2-360M's shape).
    On an H100 with torch 2.11 its output matched the repeated heads' exactly and its gradients within
    bf16 rounding (largest difference 0.001); packed training went from 34.2% to 34.5% MFU (README).
    `scale` only where the op takes one (`_op_takes_scale`; else the caller scales q)."""
    import torch

    extra = () if scale is None else (scale,)
    return torch.ops.torch_attn._varlen_attn(q, k, v, cu_q, cu_k, max_q, max_k, is_causal, *extra)[0]


def _attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention function: query (1, H, L, D), key/value (1, Hkv, L, D) -> (1, L, H, D)."""
    import torch

    cu, longest = kwargs.get(KW_OFFSETS), kwargs.get(KW_MAX)
    if cu is None:
        raise RuntimeError(
            "varlen attention runs on packed rows only (inside varlen.rows), through a backbone whose layers "
            "hand the forward's keyword arguments to their attention (MODEL_TYPES)"
        )
    # what the flash kernel here cannot do: refuse rather than compute another attention
    if kwargs.get("softcap") is not None:
        raise ValueError("varlen attention has no logit soft-capping; use packed_attention='flex'")
    window = kwargs.get("sliding_window")
    if window is not None and window < longest:
        raise ValueError(
            f"varlen attention has no sliding window ({window} tokens, rows up to {longest}); "
            "use packed_attention='flex' or max_length at most the window"
        )
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
    from transformers import AttentionInterface

    if available():
        _kernel()  # resolved before any compiled block runs (see _kernel)
    AttentionInterface.register(NAME, _attention)
    return NAME
