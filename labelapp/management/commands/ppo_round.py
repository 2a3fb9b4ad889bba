"""`manage.py ppo_round [--best-of-n] [--sync]`: start a policy round against the active reward model.

The round goes to the `gpu` Celery queue (one policy round at a time); --sync runs it in this process
instead and prints the round's figures.
"""

from django.core.management.base import BaseCommand, CommandError

from labelapp.management.run_output import run_queued_or_here
from labelapp.models import TrainingRun
from labelapp.services.policy import POLICY_KINDS, PolicyError, policy_round_request, policy_run_execute
from labelapp.services.training import BrokerUnavailable


class Command(BaseCommand):
    help = "Start a PPO round (or a best-of-n round) against the active reward model."

    def add_arguments(self, parser):
        parser.add_argument(
            "--best-of-n", action="store_true", help="Sample n and keep the best; no training."
        )
        parser.add_argument("--sync", action="store_true", help="Run here instead of on the gpu worker.")

    def handle(self, *args, best_of_n=False, sync=False, **options):
        kind = TrainingRun.Kind.BEST_OF_N if best_of_n else TrainingRun.Kind.PPO
        try:
            run = policy_round_request(kind=kind, trigger="command", enqueue=not sync)
        except PolicyError as exc:
            raise CommandError(str(exc)) from None
        except BrokerUnavailable as exc:
            raise CommandError(f"{exc} (--sync runs the round here without the broker)") from exc
        if run is None:
            active = TrainingRun.objects.filter(kind__in=POLICY_KINDS, status__in=TrainingRun.ACTIVE).first()
            if active is None:  # the round in the way ended between the request and this look-up
                raise CommandError("Another round was running; it has just ended. Run the command again.")
            raise CommandError(f"Round #{active.pk} is already {active.status}; one at a time.")
        where = "running here" if sync else "queued"
        self.stdout.write(f"round #{run.pk} ({run.get_kind_display()}) {where}")
        run_queued_or_here(self, run, sync=sync, execute=policy_run_execute, noun="round", page="/policy/")
