"""What `manage.py train_reward_model` and `manage.py ppo_round` print once their run is queued."""

import json
from collections.abc import Callable

from django.core.management.base import BaseCommand, CommandError

from labelapp.models import TrainingRun


def run_queued_or_here(
    command: BaseCommand, run: TrainingRun, *, sync: bool, execute: Callable[..., str], noun: str, page: str
) -> None:
    """Without --sync: say where to follow the queued run. With it: execute the run in this process,
    print its status, error and metrics, and fail the command unless it succeeded."""
    if not sync:
        command.stdout.write(f"a Celery worker on queue 'gpu' will pick it up; follow it at {page}")
        return
    status = execute(run_id=run.pk, worker="manage.py")
    run.refresh_from_db()
    command.stdout.write(f"{noun} #{run.pk} {status}")
    if run.error:
        command.stdout.write(f"error: {run.error}")
    command.stdout.write(json.dumps(run.metrics, indent=2, default=str))
    if status != TrainingRun.Status.SUCCEEDED:
        raise CommandError(f"{noun} #{run.pk} {status}")
