"""`manage.py train_reward_model [--now] [--sync] [--with-baseline | --no-with-baseline]`: start a
reward model run by hand.

Without --now it does what the scheduled check does: start a run only if at least RM_MIN_NEW_RATINGS
new trainable ratings arrived since the last reward model. The run goes to the `gpu` Celery queue
(task `execute_reward_model_run`, which calls rewardtrainer's `fit_reward_model`); --sync executes it in
this process instead (no worker needed) and prints the metrics.
"""

import argparse

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from labelapp.management.run_output import run_queued_or_here
from labelapp.models import TrainingRun
from labelapp.services.training import (
    BrokerUnavailable,
    TooFewRatings,
    training_new_ratings_count,
    training_run_execute,
    training_run_request,
)


class Command(BaseCommand):
    help = "Start a reward model training run on the consented ratings (single flight: one at a time)."

    def add_arguments(self, parser):
        parser.add_argument("--now", action="store_true", help="Start even if few new ratings arrived.")
        parser.add_argument("--sync", action="store_true", help="Run here instead of on the gpu worker.")
        parser.add_argument(
            "--with-baseline",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="Also train a plain Bradley-Terry model (--no-with-baseline: not even when "
            "RM_TRAIN_PLAIN_BASELINE is on; default: that setting).",
        )

    def handle(self, *args, now=False, sync=False, with_baseline=None, **options):
        try:
            run = training_run_request(
                trigger="command", force=now, with_baseline=with_baseline, enqueue=not sync
            )
        except BrokerUnavailable as exc:
            raise CommandError(f"{exc} (--sync trains here without the broker)") from exc
        except TooFewRatings as exc:
            raise CommandError(str(exc)) from exc
        if run is None:
            # Only a reward-model run holds this slot; a policy round running beside it does not.
            active = TrainingRun.objects.filter(
                kind=TrainingRun.Kind.REWARD_MODEL, status__in=TrainingRun.ACTIVE
            ).first()
            if active:
                raise CommandError(f"Run #{active.pk} is already {active.status}; one run at a time.")
            raise CommandError(
                f"Only {training_new_ratings_count()} new trainable ratings since the last reward-model run "
                f"ended (at least RM_MIN_NEW_RATINGS, {settings.TRAINING['MIN_NEW_RATINGS']}, start one); "
                "use --now to train anyway."
            )
        where = "running here" if sync else "queued"
        self.stdout.write(f"run #{run.pk} {where} on {len(run.data_snapshot['rating_ids'])} ratings")
        run_queued_or_here(self, run, sync=sync, execute=training_run_execute, noun="run", page="/training/")
