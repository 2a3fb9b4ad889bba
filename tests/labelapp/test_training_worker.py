"""Kill -9 a real Celery gpu worker in the middle of a run: after a restart it resumes and finishes.

Real components: a Celery worker subprocess on a private queue, Redis, PostgreSQL, and the real
trainer on a tiny BERT. No second run is started; the run records two attempts and where it resumed.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from labelapp.models import Rating, RewardModelVersion, TrainingRun
from labelapp.services import training

pytest.importorskip("torch")

pytestmark = [pytest.mark.celery, pytest.mark.django_db(transaction=True)]


def worker_output(proc) -> str:
    """What a worker started by the celery_worker_process fixture has logged so far."""
    with open(proc.log_path, errors="replace") as f:
        return f.read()


def _wait(predicate, timeout: float, what: str, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            out = worker_output(proc)[-3000:]
            raise AssertionError(f"worker exited early while waiting for {what}:\n{out}")
        time.sleep(0.2)
    out = worker_output(proc)[-3000:] if proc is not None else ""
    raise AssertionError(f"timed out waiting for {what}:\n{out}")


def _long_run_setup(settings, tiny_backbone, tmp_path, make_user) -> tuple[str, dict]:
    """A private queue and a reward-model run long enough to be killed mid-way (40 epochs of 40 pairs,
    a checkpoint every 10 steps), as the test settings and as the worker's environment."""
    from tests.labelapp.test_training import _rate_many

    queue = f"test-gpu-{os.getpid()}"
    knobs = {
        "BACKBONE": tiny_backbone,
        "MAX_LENGTH": 64,
        "BATCH_SIZE": 4,
        "EPOCHS": 40,
        "EVAL_EVERY": 50,
        "CHECKPOINT_EVERY": 10,
        "DEVICE": "cpu",
        "QUEUE": queue,
        "MAX_ATTEMPTS": 3,
    }
    settings.TRAINING = {**settings.TRAINING, **knobs}
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    env = {
        "RM_BACKBONE": tiny_backbone,
        "RM_MAX_LENGTH": "64",
        "RM_BATCH_SIZE": "4",
        "RM_EPOCHS": "40",
        "RM_EVAL_EVERY": "50",
        "RM_CHECKPOINT_EVERY": "10",
        "RM_DEVICE": "cpu",
        "RM_QUEUE": queue,
        "ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "OMP_NUM_THREADS": "1",
    }
    _rate_many(make_user, 40)
    return queue, env


def _past_a_checkpoint(run):
    r = TrainingRun.objects.get(pk=run.pk)
    return r.status == "running" and (r.progress_detail.get("step") or 0) >= 25


def _resumed_once(run, timeout: float, proc=None):
    finished = _wait(
        lambda: TrainingRun.objects.filter(pk=run.pk, status__in=["succeeded", "failed"]).first(),
        timeout,
        "the run",
        proc,
    )
    assert finished.status == "succeeded", finished.error
    assert finished.attempts == 2
    assert TrainingRun.objects.count() == 1  # no second run
    assert finished.metrics.get("resumed_from_step", 0) >= 10
    assert RewardModelVersion.objects.get().run_id == run.pk


def test_a_killed_worker_resumes_the_run_from_its_checkpoint(
    settings, tiny_backbone, tmp_path, guideline, make_user, celery_worker_process
):
    queue, env = _long_run_setup(settings, tiny_backbone, tmp_path, make_user)
    name = f"{queue}@%h"

    worker = celery_worker_process(queue=queue, name=name, extra_env=env)
    run = training.training_run_request(trigger="manual", force=True)
    assert run is not None

    _wait(lambda: _past_a_checkpoint(run), 120, "the run to pass a checkpoint", worker)
    os.killpg(worker.pid, signal.SIGKILL)  # the whole worker, pool child included: no goodbye
    worker.wait(timeout=30)
    run.refresh_from_db()
    assert run.status == "running" and run.attempts == 1  # the database still believes it runs

    celery_worker_process(queue=queue, name=name, extra_env=env)  # same node name: it recovers its runs
    _resumed_once(run, 240)


def test_a_pool_process_killed_alone_has_its_run_resumed_by_the_same_worker(
    settings, tiny_backbone, tmp_path, guideline, make_user, celery_worker_process
):
    # What the OOM killer does: the pool child dies, the worker lives and hands the message back. It
    # was dropped as "already taken" and the run stayed `running` until its heartbeat went stale
    # (RM_HEARTBEAT_TIMEOUT, 300 s by default, and only with a beat running; there is none here).
    queue, env = _long_run_setup(settings, tiny_backbone, tmp_path, make_user)
    worker = celery_worker_process(queue=queue, name=f"{queue}@%h", extra_env=env)
    run = training.training_run_request(trigger="manual", force=True)
    _wait(lambda: _past_a_checkpoint(run), 120, "the run to pass a checkpoint", worker)
    children = [int(p) for p in open(f"/proc/{worker.pid}/task/{worker.pid}/children").read().split()]
    assert len(children) == 1, children  # --concurrency 1: the one pool process running the task
    os.kill(children[0], signal.SIGKILL)
    _resumed_once(run, 240, worker)


def test_a_hung_run_is_ended_and_its_pool_process_restarted(
    settings, tiny_backbone, tmp_path, guideline, make_user, celery_worker_process
):
    """A read that never returns (here: the ratings table locked by another session) hung the attempt
    while its heartbeat thread kept the run `running` for ever. Through a real worker: each attempt is
    presumed hung after RM_STALL_TIMEOUT, its pool process is restarted (the worker itself lives on and
    claims the next attempt), and after max_attempts the run fails with the reason."""
    from django.db import connections

    from tests.labelapp.test_training import _rate_many

    queue = f"test-gpu-{os.getpid()}"
    settings.TRAINING = {**settings.TRAINING, "QUEUE": queue, "MAX_ATTEMPTS": 2, "BACKBONE": tiny_backbone}
    env = {
        "RM_BACKBONE": tiny_backbone,
        "RM_DEVICE": "cpu",
        "RM_QUEUE": queue,
        "RM_HEARTBEAT_TIMEOUT": "3",  # beats every second
        "RM_STALL_TIMEOUT": "2",
        "ARTIFACTS_DIR": str(tmp_path / "artifacts"),
    }
    _rate_many(make_user, 12)
    run = training.training_run_request(trigger="manual", force=True)  # reads the ratings: before the lock
    locker = connections.create_connection("default")  # a session of its own, outside the test's
    try:
        with locker.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute(f"LOCK TABLE {Rating._meta.db_table} IN ACCESS EXCLUSIVE MODE")
            worker = celery_worker_process(queue=queue, name=f"{queue}@%h", extra_env=env)
            failed = _wait(
                lambda: TrainingRun.objects.filter(pk=run.pk, status="failed").first(), 90, "the run", worker
            )
            cur.execute("ROLLBACK")
    finally:
        locker.close()
    assert failed.attempts == 2
    assert "Hung in attempt 2 of 2" in failed.error and "no sign of progress" in failed.error
    assert worker.poll() is None  # the worker lives on: only its pool processes were restarted
    log = worker_output(worker)
    assert log.count("presumed hung") == 2 and "exited with 'signal 9 (SIGKILL)'" in log
