"""Crash-safe training checkpoints and final model folders.

A checkpoint is a folder `ckpt-000120/` (the global step) holding

    model.safetensors    the whole RewardModel state (backbone + heads)
    optimizer.pt         optimizer, LR scheduler and torch / CUDA RNG states (tensors only: weights_only)
    trainer_state.json   global step, epoch, batch within the epoch, data-order seed, best val loss,
                         early-stopping counter, history, python / numpy RNG states, data fingerprint
    COMPLETE             written last

It is written as `ckpt-000120.tmp/` and renamed with `os.replace`, so a worker killed mid-write leaves
a `.tmp` folder that nobody reads. `latest_checkpoint` takes the newest folder that has its marker and
readable files, and logs and skips any that does not (a disk that lost the tail of a file, say).
The final model goes to its folder the same way (`save_final_model`).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

MARKER = "COMPLETE"
MODEL_FILE = "model.safetensors"
OPTIM_FILE = "optimizer.pt"
STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^ckpt-(\d+)(\.old)?$")  # .old: the copy a re-save of its step set aside


class CheckpointError(RuntimeError):
    """A checkpoint folder is incomplete or unreadable."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states; python/numpy as JSON-able values."""
    np_state = np.random.get_state()
    return {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
    }


def rank_rng_state() -> dict[str, Any]:
    """This process's torch generator and its own CUDA device's: under DDP each rank draws its own
    dropout masks (its shard pads to its own longest row), so a resume restores each rank's states,
    not rank 0's on every rank (a resumed run with dropout ended with other weights)."""
    cuda = torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def _set_rank_rng_state(ranks: list | None, rank: int) -> None:
    if not ranks or rank >= len(ranks):  # saved by a single process, or by fewer ranks: rank 0's states
        return
    torch.set_rng_state(ranks[rank]["torch"].cpu())
    if ranks[rank].get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(ranks[rank]["cuda"].cpu())


def set_rng_state(state: dict[str, Any], torch_state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    # A generator takes its state as a CPU ByteTensor; torch.load(map_location=<the GPU>) put the saved
    # states on the GPU, and a resume on CUDA failed with a TypeError that no fallback caught.
    torch.set_rng_state(torch_state["torch"].cpu())
    if torch_state.get("cuda") is not None and torch.cuda.is_available():
        # a machine with fewer GPUs than the one that saved: the states of the devices it has
        cuda = [s.cpu() for s in torch_state["cuda"]][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda)


def save_checkpoint(
    root: str | Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: dict[str, Any],
    keep: int = 2,
    rank_rng: list[dict[str, Any]] | None = None,
) -> Path:
    """Write `root/ckpt-{step}` atomically (temp folder, marker last, rename); keep the newest `keep`.
    `rank_rng`: every rank's `rank_rng_state()` under DDP (rank 0 writes for all)."""
    from safetensors.torch import save_model

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"ckpt-{step:06d}"
    tmp = root / f"ckpt-{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_model(model, str(tmp / MODEL_FILE))
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "ranks": rank_rng,
        },
        tmp / OPTIM_FILE,
    )
    full_state = dict(state, global_step=step, rng=rng_state())
    _write_bytes(tmp / STATE_FILE, json.dumps(full_state).encode())
    for name in (MODEL_FILE, OPTIM_FILE):  # torch.save / safetensors do not fsync
        with open(tmp / name, "rb+") as f:
            os.fsync(f.fileno())
    _write_bytes(tmp / MARKER, b"ok\n")
    _fsync_dir(tmp)
    old = root / f"ckpt-{step:06d}.old"
    if final.exists():
        # Re-saving a step (a run stopped again right after resuming): the old copy is set aside, not
        # deleted, until the new one is in place. Deleted first, a kill in between left no checkpoint
        # of the step (none at all with keep=1), and the run started over.
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(root)
    shutil.rmtree(old, ignore_errors=True)
    prune_checkpoints(root, keep)
    return final


def list_checkpoints(root: str | Path) -> list[Path]:
    """Checkpoint folders (complete or not, excluding .tmp), newest step first; of one step, the copy
    in place before the one a re-save set aside (`.old`, left only when it was interrupted)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), not m.group(2), p)
        for p in root.iterdir()
        if p.is_dir() and (m := _NAME.match(p.name))
    ]
    return [p for _, _, p in sorted(found, reverse=True)]


def validate_checkpoint(path: str | Path) -> dict[str, Any]:
    """Cheap integrity check; returns the trainer state or raises CheckpointError."""
    from safetensors import safe_open

    path = Path(path)
    if not (path / MARKER).is_file():
        raise CheckpointError(f"{path.name}: no {MARKER} marker (torn write)")
    try:
        state = json.loads((path / STATE_FILE).read_text())
        with safe_open(str(path / MODEL_FILE), framework="pt") as f:
            f.keys()
        with zipfile.ZipFile(path / OPTIM_FILE) as z:  # torch.save files are zip archives
            z.namelist()
    except Exception as e:  # any failure to read means: do not resume from this one
        raise CheckpointError(f"{path.name}: unreadable ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or "global_step" not in state:
        raise CheckpointError(f"{path.name}: {STATE_FILE} has no global_step")
    return state


def latest_checkpoint(root: str | Path) -> Path | None:
    """The newest complete, readable checkpoint under `root`; torn or corrupt ones are logged and skipped."""
    for path in list_checkpoints(root):
        try:
            validate_checkpoint(path)
        except CheckpointError as e:
            log.warning("ignoring checkpoint %s", e)
            continue
        return path
    return None


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    map_location: str | torch.device = "cpu",
    rank: int = 0,
) -> dict[str, Any]:
    """Restore model, optimizer, scheduler and RNG states (`rank`'s own torch states where the
    checkpoint holds every rank's); return the trainer state dict.

    On a CheckpointError the model's weights are as they were before the call (safetensors copies every
    matching tensor before it reports a mismatch, so they are put back from a host copy), and so is the
    optimizer unless only the scheduler's state failed to load after it (the optimizer checks its
    groups before it changes anything)."""
    from safetensors.torch import load_model

    path = Path(path)
    state = validate_checkpoint(path)
    try:
        extra = torch.load(path / OPTIM_FILE, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path.name}: cannot load ({type(e).__name__}: {e})") from e
    before = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    try:
        missing, unexpected = load_model(
            model, str(path / MODEL_FILE), strict=False, device=str(map_location)
        )
        if missing or unexpected:
            raise CheckpointError(
                f"{path.name}: state does not fit the model "
                f"(missing={sorted(missing)[:3]}, unexpected={sorted(unexpected)[:3]})"
            )
        if optimizer is not None:
            optimizer.load_state_dict(extra["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(extra["scheduler"])
    except Exception as e:
        model.load_state_dict(before)
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{path.name}: cannot load ({type(e).__name__}: {e})") from e
    set_rng_state(state["rng"], extra)
    _set_rank_rng_state(extra.get("ranks"), rank)
    return state


def prune_checkpoints(root: str | Path, keep: int) -> None:
    """Keep the newest `keep` checkpoints that have their marker; delete the rest and stale .tmp folders."""
    root = Path(root)
    for old in root.glob("ckpt-*.old"):  # a re-save's copy whose new one is in place: not a checkpoint
        if (old.with_suffix("") / MARKER).is_file():
            shutil.rmtree(old, ignore_errors=True)
    kept = 0
    for path in list_checkpoints(root):
        if kept < max(keep, 1) and (path / MARKER).is_file():
            kept += 1
        else:
            shutil.rmtree(path, ignore_errors=True)
    for tmp in root.glob("ckpt-*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True)


def save_final_model(model, tokenizer, directory: str | Path) -> Path:
    """`model.save_pretrained` into a temp folder, then rename over `directory`."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, tokenizer=tokenizer)
    _fsync_dir(tmp)
    if directory.exists():
        old = directory.with_name(directory.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, directory)
    return directory
