"""Pick the compute device: CUDA, then Apple MPS, then CPU; log the choice and the dtype."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def pick_device(prefer: str | None = None):
    """Return (torch.device, autocast dtype or None). `prefer` forces 'cuda', 'mps' or 'cpu'."""
    import torch

    if prefer:
        device = torch.device(prefer)
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    dtype = torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    log.info("rewardtrainer device=%s autocast_dtype=%s", device, dtype)
    return device, dtype
