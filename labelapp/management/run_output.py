"""What `manage.py train_reward_model` and `manage.py ppo_round` print once their run is queued."""

import json
import time
from collections.abc import Callable

from django.core.management.base import BaseCommand, CommandError

from labelapp.models import TrainingRun
from labelapp.services.training import TransientTrainingError, run_queue

RETRY_PAUSE_SECONDS = 5.0


def run_queued_or_here(
    command: BaseCommand, run: TrainingRun, *, sync: bool, execute: Callable[..., str], noun: str, page: str
) -> None:
    """Without --sync: say where to follow the queued run. With it: execute the run in this process,
    print its status, error and metrics, and fail the command unless it succeeded."""
    if not sync:
        queue = run_queue(run.kind)
        command.stdout.write(f"a Celery worker on queue '{queue}' will pick it up; follow it at {page}")
        return
    status = _execute_with_retries(command, run, execute)
    run.refresh_from_db()
    command.stdout.write(f"{noun} #{run.pk} {status}")
    if run.error:
        command.stdout.write(f"error: {run.error}")
    command.stdout.write(json.dumps(run.metrics, indent=2, default=str))
    if status != TrainingRun.Status.SUCCEEDED:
        raise CommandError(f"{noun} #{run.pk} {status}")


def _execute_with_retries(command: BaseCommand, run: TrainingRun, execute: Callable[..., str]) -> str:
    """Execute here, and after a transient error (the run is queued again) claim it again here, as the
    Celery task would retry it, until it ends or its attempts are used up: the command ended in a
    traceback and left the run queued, blocking every new run until the periodic re-send found a
    worker on its queue, or until staff cancelled it where there was none."""
    while True:
        try:
            return execute(run_id=run.pk, worker="manage.py")
        except TransientTrainingError as exc:
            run.refresh_from_db()
            attempt = f"attempt {run.attempts} of {run.max_attempts}"
            command.stdout.write(f"{attempt} hit a transient error ({exc}); trying again here")
            time.sleep(RETRY_PAUSE_SECONDS)
