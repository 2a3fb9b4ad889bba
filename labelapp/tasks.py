"""Celery tasks: thin entry points that call one service each (DESIGN section 3).

Training tasks run on queue `gpu` (one at a time, prefetch 1) with `acks_late`: the run row, not the
message, is the truth; a redelivered message finds the run already claimed and does nothing, unless
the process that ran it on this worker is gone (services.training.run_claim takes the run over then).
"""

from celery import shared_task
from celery.signals import worker_ready

# Hard time limits (seconds) of the jobs that are not runs (runs have their own heartbeat watchdog):
# with none, a job stuck on a lock (a migration, a session idle in a transaction) held its worker slot
# for ever, and with two slots every scheduled job after it (run recovery, re-sends, quality, retention)
# stopped without a word. The worker's pool (prefork) kills the stuck child; the next beat runs it again.
CHECK_LIMIT_S = 600  # housekeeping and the two checks: seconds of work
QUALITY_LIMIT_S = 1800  # the quality job took 18 s on 1,000,000 ratings
PURGE_LIMIT_S = 6 * 3600  # deleting rows and export files past retention (one transaction: a first purge
# of a large backlog must be able to finish, or it is rolled back every day)
DECISION_LIMIT_S = 3600  # at least: scoring two reward models on the frozen evaluation set (gpu worker);
# a re-sent decision gets the longer of this and the check's wait (services/training._send_decision)


@shared_task(name="labelapp.tasks.queue_housekeeping", time_limit=CHECK_LIMIT_S)
def queue_housekeeping() -> int:
    from labelapp.services.queue import queue_housekeeping as run

    return run().pk


@shared_task(name="labelapp.tasks.quality_refresh", time_limit=QUALITY_LIMIT_S)
def quality_refresh() -> list[int] | None:
    """Beat (default queue): rater figures, trust weights and dashboard reports (services/quality.py)."""
    from labelapp.services.quality import quality_refresh as run

    return run()


@shared_task(name="labelapp.tasks.retention_purge", time_limit=PURGE_LIMIT_S)
def retention_purge() -> dict[str, int]:
    """Beat (daily by default): what `manage.py purge_expired` does (services/retention.py)."""
    from labelapp.services.retention import purge_expired

    return purge_expired()


@shared_task(name="labelapp.tasks.reward_model_check", time_limit=CHECK_LIMIT_S)
def reward_model_check() -> int | None:
    """Beat: recover dead runs; start a run if enough new trainable ratings arrived."""
    from labelapp.services.training import training_check_and_start

    run = training_check_and_start()
    return run.pk if run else None


@shared_task(
    bind=True,
    name="labelapp.tasks.execute_reward_model_run",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # the run's own max_attempts bounds the retries (RM_MAX_ATTEMPTS, POLICY_MAX_ATTEMPTS)
)
def execute_reward_model_run(self, run_id: int) -> str:
    """Execute one queued reward-model TrainingRun (the trainer itself is rewardtrainer's
    fit_reward_model; `manage.py train_reward_model` is the command that queues a run)."""
    from labelapp.services.artifacts import finished_runs_prune
    from labelapp.services.training import TransientTrainingError, training_run_execute

    try:
        return training_run_execute(
            run_id=run_id, worker=self.request.hostname or "", task_id=self.request.id or ""
        )
    except TransientTrainingError as exc:
        # Only named transient errors get here; the run is already back to `queued`.
        raise self.retry(exc=exc, countdown=30) from exc
    finally:
        finished_runs_prune()  # this machine holds the files: checkpoints of runs that cannot resume


@shared_task(name="labelapp.tasks.decide_reward_model", acks_late=True, time_limit=DECISION_LIMIT_S)
def decide_reward_model(version_id: int) -> bool | None:
    """The activation decision on a reward model version whose run succeeded but whose decision never
    ran (re-sent by the beat's check, on the reward-model queue: it loads both models)."""
    from labelapp.services.training import reward_model_decide_pending

    return reward_model_decide_pending(version_id=version_id)


@shared_task(name="labelapp.tasks.policy_check", time_limit=CHECK_LIMIT_S)
def policy_check() -> int | None:
    """Beat: recover dead policy rounds; start one when a new reward model became active (setting)."""
    from labelapp.services.policy import policy_check_and_start

    run = policy_check_and_start()
    return run.pk if run else None


@shared_task(
    bind=True,
    name="labelapp.tasks.ppo_round",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # the run's own max_attempts bounds the retries (RM_MAX_ATTEMPTS, POLICY_MAX_ATTEMPTS)
)
def ppo_round(self, run_id: int) -> str:
    """A policy round, PPO or best-of-n (the run's kind says which), on queue `gpu`."""
    from labelapp.services.artifacts import finished_runs_prune
    from labelapp.services.policy import policy_run_execute
    from labelapp.services.training import TransientTrainingError

    try:
        return policy_run_execute(
            run_id=run_id, worker=self.request.hostname or "", task_id=self.request.id or ""
        )
    except TransientTrainingError as exc:
        raise self.retry(exc=exc, countdown=30) from exc
    finally:
        finished_runs_prune()  # this machine holds the files: checkpoints of runs that cannot resume


@worker_ready.connect
def recover_runs_of_this_worker(sender=None, **kwargs) -> None:
    """A worker that starts again after being killed requeues the runs it was running."""
    hostname = getattr(sender, "hostname", None)
    if not hostname:
        return
    from labelapp.services.policy import policy_recover_stale
    from labelapp.services.training import training_recover_stale

    training_recover_stale(worker=hostname)
    policy_recover_stale(worker=hostname)
