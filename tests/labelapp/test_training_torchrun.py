"""The gpu worker launching a run under torchrun (RM_NPROC > 1): here 2 CPU processes with gloo.

Progress comes back through the run's progress file into the run row; the model and metrics written
by rank 0 become a version like any other.
"""

from __future__ import annotations

import pytest

from labelapp.models import RewardModelVersion, TrainingRun
from labelapp.services import training

from .test_training import _rate_many

pytest.importorskip("torch")


@pytest.mark.django_db
def test_a_run_trains_under_torchrun_with_two_processes(
    settings, tiny_backbone, tmp_path, guideline, make_user, monkeypatch
):
    monkeypatch.setattr(training, "_enqueue", lambda run_id: None)
    settings.TRAINING = {
        **settings.TRAINING,
        "BACKBONE": tiny_backbone,
        "MAX_LENGTH": 48,
        "BATCH_SIZE": 4,
        "EPOCHS": 1,
        "EVAL_EVERY": 0,
        "CHECKPOINT_EVERY": 0,
        "AUGMENT": "none",
        "DEVICE": "cpu",
        "NPROC": 2,
        "EVAL_SET_PERCENT": 0,
        "EVAL_SET_MIN_PAIRS": 0,
    }
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    _rate_many(make_user, 12)
    run = training.training_run_request(trigger="manual", force=True)
    assert training.training_run_execute(run_id=run.pk, worker="w1") == TrainingRun.Status.SUCCEEDED, (
        TrainingRun.objects.get(pk=run.pk).error
    )
    run.refresh_from_db()
    assert run.progress == 1.0 and run.metrics["n_pairs"] >= 1
    assert run.progress_detail.get("event") == "done"  # read back from the torchrun progress file
    version = RewardModelVersion.objects.get(run=run)
    assert version.metrics["pairs_train"] + version.metrics["pairs_val"] == 12
    assert (
        version.is_active
        and (tmp_path / "artifacts" / f"reward-run-{run.pk}" / "main" / "torchrun.log").exists()
    )
    # the texts handed to the ranks do not outlive the fit (no withdrawal or purge reaches them there)
    assert not list((tmp_path / "artifacts").rglob("pairs.jsonl"))


@pytest.mark.django_db(transaction=True)
def test_a_hung_torchrun_is_killed_with_its_ranks_and_the_attempt_retried(
    settings, tiny_backbone, tmp_path, guideline, make_user, monkeypatch
):
    """A stuck collective hangs the ranks while the worker process only supervises. The heartbeat
    kept beating, and once the watch killed the worker's pool process the launcher and its ranks were
    left running on the GPUs beside the next attempt. Now the supervisor ends the whole process group
    after RM_STALL_TIMEOUT without a progress line, and the attempt goes back to the queue."""
    import subprocess
    import sys
    import time

    from django.db import connections

    monkeypatch.setattr(training, "_enqueue", lambda run_id: None)
    settings.TRAINING = {
        **settings.TRAINING, "BACKBONE": tiny_backbone, "DEVICE": "cpu", "NPROC": 2,
        "STALL_TIMEOUT_SECONDS": 2, "MAX_ATTEMPTS": 3,
    }  # fmt: skip
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    rank_pid = tmp_path / "rank.pid"
    # A launcher and one rank, both stuck, writing no progress: what a hung collective looks like here.
    stuck = (
        "import subprocess, sys, time; "
        "rank = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
        f"open({str(rank_pid)!r}, 'w').write(str(rank.pid)); time.sleep(600)"
    )
    real_popen, launched = subprocess.Popen, []

    def hung_torchrun(cmd, **kwargs):
        launched.append(real_popen([sys.executable, "-c", stuck], **kwargs))
        return launched[-1]

    monkeypatch.setattr(training.subprocess, "Popen", hung_torchrun)
    _rate_many(make_user, 12)
    run = training.training_run_request(trigger="manual", force=True)
    started = time.monotonic()
    try:
        with pytest.raises(training.TransientTrainingError, match="torchrun wrote no progress"):
            training.training_run_execute(run_id=run.pk, worker="w1")
    finally:
        connections.close_all()
    assert time.monotonic() - started < 30
    run.refresh_from_db()
    assert run.status == "queued" and "presumed hung" in run.error and run.attempts == 1
    assert launched[0].poll() is not None  # the launcher is gone...
    assert _dead(int(rank_pid.read_text()))  # ...and so is its rank


def _dead(pid: int, wait: float = 5.0) -> bool:
    """Gone, or a zombie (killed; its parent was killed too, and reaping it is up to init)."""
    import time

    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False
