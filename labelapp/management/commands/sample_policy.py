"""`manage.py sample_policy [--limit N]`: policy v0 answers prompts so raters judge real model output.

Each new answer is paired with a team-written answer to the same prompt (or with a second v0 answer)
in the normal queue. Runs the model in this process (SmolLM2-135M: ~20 s to load, then a few tokens/s
per answer on a small CPU); prompts v0 already answered are skipped, so running it again adds only new ones.
"""

import argparse

from django.core.management.base import BaseCommand, CommandError

from labelapp.management.args import INT_MAX, int_arg
from labelapp.services.policy import PolicyError, policy_sample_demo


def _device_name(value: str) -> str:
    if not value.strip():  # it fell back to the setting without a word
        raise argparse.ArgumentTypeError("name a device (cuda, mps, cpu or auto), or leave --device out")
    return value


class Command(BaseCommand):
    help = "Fill the demo queue with answers of policy v0 (the instruct model as shipped)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--limit", type=int_arg(1, 100_000), default=20, help="Prompts to answer (default 20)."
        )
        parser.add_argument(
            "--device",
            type=_device_name,
            default=None,
            help="cuda, mps or cpu (default: the POLICY_DEVICE setting).",
        )
        parser.add_argument("--seed", type=int_arg(0, INT_MAX), default=0)

    def handle(self, *args, limit=20, device=None, seed=0, **options):
        try:
            created = policy_sample_demo(limit=limit, device=device, seed=seed)
        except (PolicyError, OSError) as exc:  # the policy model is missing or not a model, a bad device
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{created} comparisons with policy v0 answers added to the queue")
