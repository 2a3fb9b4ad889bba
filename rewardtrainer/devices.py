"""Pick the compute device: CUDA, then Apple MPS, then CPU; log the choice and the dtype."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def pick_device(prefer: str | None = None) -> tuple[torch.device, torch.dtype | None]:
    """Return (torch.device, autocast dtype or None). `prefer` forces 'cuda', 'mps' or 'cpu' ('auto' = None).

    The autocast dtype is bf16 on CUDA GPUs that support it, else None (train in fp32): CPU bf16 autocast
    is slower than fp32 on most CPUs, and fp16 would need a grad scaler.
    """
    import torch  # lazily: `rewardtrainer` must import where torch is not installed (the web container)

    if prefer and prefer != "auto":
        try:
            device = torch.device(prefer)
        except RuntimeError:
            raise ValueError(f"unknown device {prefer!r}: use cuda, mps, cpu or auto") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {prefer!r} was asked for but torch sees no CUDA GPU")
        if device.type == "mps" and not (
            getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
        ):
            raise RuntimeError(f"device {prefer!r} was asked for but torch sees no Apple GPU")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    log.info("rewardtrainer device=%s autocast_dtype=%s", device, dtype)
    return device, dtype


def enable_checkpointing(model) -> None:
    """Recompute a transformers model's activations in backward (non-reentrant). transformers 5.24
    renamed gradient_checkpointing_enable to activation_checkpointing_enable (the old name warns and
    goes in v6); older releases have only the old one."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
