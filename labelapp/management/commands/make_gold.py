"""manage.py make_gold: generate "concise is right" gold pairs from existing answers."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from labelapp.management.args import INT_MAX, int_arg
from labelapp.services.gold import PADDING_KINDS, GoldError, gold_make_batch


class Command(BaseCommand):
    help = (
        "Make gold pairs where the concise answer is right: an existing answer against the same answer "
        "padded with filler, a restatement of the question or repetition."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--count", type=int_arg(1, 100_000), default=20, help="how many gold pairs (default 20)"
        )
        parser.add_argument("--kind", choices=PADDING_KINDS, help="one padding kind (default: mixed)")
        parser.add_argument("--seed", type=int_arg(0, INT_MAX), help="random seed (answers, sides, padding)")

    def handle(self, *args, count: int, kind: str | None, seed: int | None, **options):
        try:
            made = gold_make_batch(count=count, seed=seed, kind=kind)
        except GoldError as exc:
            raise CommandError(str(exc)) from exc
        for m in made:
            self.stdout.write(f"comparison #{m.comparison.pk} ({m.padding}): {m.comparison.gold_explanation}")
        if len(made) < count:  # it said "Made 12 gold pairs." to --count 100000 as if that were all asked
            self.stdout.write(
                self.style.WARNING(
                    f"Made {len(made)} gold pairs, not {count}: only {len(made)} answers can be padded "
                    "(with consent, not withheld, not generated padding, and not padded for a gold pair "
                    "already)."
                )
            )
            return
        self.stdout.write(self.style.SUCCESS(f"Made {len(made)} gold pairs."))
