"""Data-parallel training helpers (DDP): the trainer runs unchanged under torchrun.

    torchrun --nproc_per_node 8 -m rewardtrainer.train_rm --data prefs.jsonl --out runs/rm1

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; `init()` joins the process group (NCCL on CUDA, gloo on
CPU) and pins each process to its GPU. Every rank builds the same batch order (a pure function of the
seed) and takes its share of each global batch (`shard`), so N processes see exactly the global batch
one process would; the loss is rescaled so that DDP's gradient average equals the gradient of the
global batch mean even when the shares are uneven (`loss_scale`). Rank 0 alone writes checkpoints,
the model and metrics. Everything is a no-op in a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> Dist:
    return Dist(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def init(device_type: str) -> Dist:
    """Join the process group torchrun describes (once); returns the single-process Dist otherwise."""
    import torch
    import torch.distributed as td

    dist = from_env()
    if not dist.enabled:
        return dist
    if not td.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(dist.local_rank)
        td.init_process_group(backend=backend)
    return dist


def device_for(dist: Dist, device: torch.device) -> torch.device:
    import torch

    if dist.enabled and device.type == "cuda":
        return torch.device("cuda", dist.local_rank)
    return device


def shard(indices: list[int], dist: Dist) -> list[int]:
    """This rank's pairs of a global batch (strided, so shares differ by at most one pair)."""
    return indices[dist.rank :: dist.world_size] if dist.enabled else indices


def loss_scale(n_local: int, n_global: int, dist: Dist) -> float:
    """Multiply the local mean loss by this so the DDP-averaged gradient is the global-mean gradient."""
    return n_local * dist.world_size / n_global if dist.enabled else 1.0


def wrap(model: torch.nn.Module, dist: Dist, device: torch.device) -> torch.nn.Module:
    if not dist.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def sum_over_ranks(values: dict[str, torch.Tensor], dist: Dist) -> dict[str, torch.Tensor]:
    """Sum scalar stats (tensors or numbers) across ranks: one collective for all of them, on the device
    of the first tensor among them (NCCL takes no host tensor); only when logging."""
    if not dist.enabled or not values:
        return values
    import torch
    import torch.distributed as td

    keys = sorted(values)
    device = next((v.device for v in values.values() if isinstance(v, torch.Tensor)), None)
    stacked = torch.stack(
        [torch.as_tensor(values[k], dtype=torch.float32, device=device).reshape(()) for k in keys]
    )
    td.all_reduce(stacked, op=td.ReduceOp.SUM)
    return dict(zip(keys, stacked, strict=True))


def gather_objects(obj, dist: Dist) -> list | None:
    """Every rank's `obj` (picklable), in rank order, on every rank; None in a single process."""
    if not dist.enabled:
        return None
    import torch.distributed as td

    out: list = [None] * dist.world_size
    td.all_gather_object(out, obj)
    return out


def any_rank(flag: bool, dist: Dist, device: torch.device | None = None) -> bool:
    """True on every rank if it is True on one (say, rank 0 was told to stop)."""
    if not dist.enabled:
        return flag
    import torch
    import torch.distributed as td

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    td.all_reduce(t, op=td.ReduceOp.MAX)
    return bool(t.item())


def barrier(dist: Dist) -> None:
    if dist.enabled:
        import torch.distributed as td

        td.barrier()


def shutdown(dist: Dist) -> None:
    """Leave the process group together: every rank waits until all arrive (rank 0 arrives after it
    finalized and wrote the model), then all destroy it. A rank that destroyed the group and exited
    while rank 0 still held its gloo connections was seen to die of SIGABRT, failing the run."""
    if dist.enabled:
        import torch.distributed as td

        if td.is_initialized():
            td.barrier()
            td.destroy_process_group()
