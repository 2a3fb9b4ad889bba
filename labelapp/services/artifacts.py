"""What a finished run leaves on disk: its resume checkpoints go once it can no longer resume.

A PPO round kept two checkpoints of 1.6 GB each (the policy and AdamW's state) besides the 0.5 GB
policy it recorded, a reward-model run ~260 MB of checkpoints, for good: four small rounds filled 14 GB,
and beat starts a round after every activation. Checkpoints serve only a resumed attempt of the same
run, so once a run is succeeded, failed or cancelled (terminal: nothing re-queues it) they are deleted;
so are the finished-model folders (`attempt-K`) no version points to (a run that recorded nothing, a
late attempt's, a plain baseline's) and a leftover training copy of the pairs. The version's own files
stay, and so do ensemble members (`members/`).

Runs on the machine that holds the files: the training worker calls `finished_runs_prune` after each
run it executes, which also catches runs that ended otherwise (recovery, a cancel while queued).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from labelapp.models import PolicyVersion, RewardModelVersion, TrainingRun

log = logging.getLogger(__name__)

TERMINAL = (TrainingRun.Status.SUCCEEDED, TrainingRun.Status.FAILED, TrainingRun.Status.CANCELLED)


def _kept_paths() -> set[Path]:
    """Folders a version's model lives in."""
    paths = {*RewardModelVersion.objects.values_list("artifact_path", flat=True)}
    paths |= {*PolicyVersion.objects.exclude(artifact_path="").values_list("artifact_path", flat=True)}
    return {Path(p).resolve() for p in paths if p}


def _holds_kept(folder: Path, kept: set[Path]) -> bool:
    folder = folder.resolve()
    return any(k == folder or folder in k.parents or k in folder.parents for k in kept)


# Left in a run's folder once it is pruned: the next passes skip the folder without walking it.
_PRUNED = ".pruned"


def _prunable(root: Path, kept: set[Path]) -> list[Path]:
    """The folders and files under a run's folder that may go: every `checkpoints*` folder, every
    `attempt-*` folder (a late attempt's, a baseline's, a run's that recorded nothing) and a training
    copy of the pairs (`pairs.jsonl`: prompt and answer texts a killed supervisor left); never one that
    holds (or is within) a version's files."""
    found = [p for p in root.rglob("checkpoints*") if p.is_dir()]
    found += [p for p in root.rglob("attempt-*") if p.is_dir()]
    found += [p for p in root.rglob("pairs.jsonl") if p.is_file()]
    return [p for p in found if not p.is_symlink() and not _holds_kept(p, kept)]


def _size(path: Path) -> int:
    """Bytes under `path`; what vanished meanwhile (another machine pruning, a rename) counts 0."""
    files = [path] if path.is_file() else [f for f in path.rglob("*") if not f.is_symlink()]
    total = 0
    for f in files:
        try:
            total += f.stat().st_size if f.is_file() else 0
        except FileNotFoundError:
            pass
    return total


def _delete(path: Path) -> bool:
    """Delete a folder or file; False (logged) when something of it stays."""
    errors = []
    if path.is_dir():
        shutil.rmtree(path, onerror=lambda _f, p, exc: errors.append((p, exc[1])))
    else:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            errors.append((str(path), exc))
    for where, exc in errors[:3]:
        log.warning("could not delete %s: %s", where, exc)
    return not errors


def run_files_prune(root: Path, kept: set[Path]) -> int:
    """Delete what a finished run no longer needs from its folder `root`; returns the bytes freed."""
    if not root.is_dir() or (root / _PRUNED).exists():
        return 0  # another machine's disk, pruned by hand, or pruned before
    freed, whole = 0, True
    for path in _prunable(root, kept):
        if not path.exists():  # within a folder deleted before it
            continue
        size = _size(path)
        if _delete(path):
            freed += size
        else:
            whole = False
    if whole:
        (root / _PRUNED).touch()
    return freed


def finished_runs_prune() -> int:
    """`run_files_prune` for every terminal run whose folder is on this machine; the bytes freed.
    Never raises: what it cannot delete is logged and tried again the next time; one run's trouble
    does not stop the others."""
    freed = 0
    try:
        kept = _kept_paths()
        runs = TrainingRun.objects.filter(status__in=TERMINAL).exclude(artifact_path="")
        paths = runs.order_by("pk").values_list("pk", "artifact_path")  # not the rows: snapshots are big
    except Exception:  # noqa: BLE001 (housekeeping must not fail the run that called it)
        log.exception("pruning finished runs' files failed")
        return 0
    for pk, path in paths.iterator(chunk_size=500):
        try:
            freed += run_files_prune(Path(path), kept)
        except Exception:  # noqa: BLE001
            log.exception("pruning the files of run %s failed", pk)
    if freed:
        log.info("pruned %.1f MB of finished runs' checkpoints", freed / 1e6)
    return freed
