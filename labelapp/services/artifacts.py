"""What a finished run leaves on disk: its resume checkpoints go once it can no longer resume.

A PPO round kept two checkpoints of 1.6 GB each (the policy and AdamW's state) besides the 0.5 GB
policy it recorded, a reward-model run ~260 MB of checkpoints, for good: four small rounds filled 14 GB,
and beat starts a round after every activation. Checkpoints serve only a resumed attempt of the same
run, so once a run is succeeded, failed or cancelled (terminal: nothing re-queues it) they are deleted;
so are the finished-model folders (`attempt-K`) of a run that recorded no version, which nothing points
to. The version's own files, and a succeeded run's other folders, stay.

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


def _prunable(root: Path, *, recorded: bool, kept: set[Path]) -> list[Path]:
    """The folders under a run's folder that may go: every `checkpoints*` folder, and with no version
    recorded every `attempt-*` folder; never one that holds (or is within) a version's files."""
    found = [p for p in root.rglob("checkpoints*") if p.is_dir()]
    if not recorded:
        found += [p for p in root.rglob("attempt-*") if p.is_dir()]
    return [p for p in found if not p.is_symlink() and not _holds_kept(p, kept)]


def run_files_prune(run: TrainingRun, kept: set[Path] | None = None) -> int:
    """Delete what `run` (terminal) no longer needs from its folder; returns the bytes freed."""
    if run.status not in TERMINAL or not run.artifact_path:
        return 0
    root = Path(run.artifact_path)
    if not root.is_dir():
        return 0  # another machine's disk, or pruned by hand
    kept = _kept_paths() if kept is None else kept
    recorded = (
        RewardModelVersion.objects.filter(run=run).exists() or PolicyVersion.objects.filter(run=run).exists()
    )
    freed = 0
    for folder in _prunable(root, recorded=recorded, kept=kept):
        if not folder.exists():  # within a folder deleted before it
            continue
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())
        shutil.rmtree(folder, ignore_errors=True)
        freed += size
    return freed


def finished_runs_prune() -> int:
    """`run_files_prune` for every terminal run whose folder is on this machine; the bytes freed.
    Never raises: a file it cannot delete is logged and left for the next time."""
    freed = 0
    try:
        kept = _kept_paths()
        for run in TrainingRun.objects.filter(status__in=TERMINAL).exclude(artifact_path=""):
            freed += run_files_prune(run, kept)
    except Exception:  # noqa: BLE001 (housekeeping must not fail the run that called it)
        log.exception("pruning finished runs' files failed")
    if freed:
        log.info("pruned %.1f MB of finished runs' checkpoints", freed / 1e6)
    return freed
