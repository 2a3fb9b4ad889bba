"""`manage.py simulate_raters`: simulated raters judge through the same services as humans."""

from django.core.management.base import BaseCommand, CommandError

from labelapp.management.args import INT_MAX, SMALL_MAX, int_arg
from labelapp.services.simulation import simulate_raters


class Command(BaseCommand):
    help = (
        "Create simulated rater accounts and have them judge comparisons by a known rule (true utility + "
        "length pull + left pull + noise), logging the probabilities of each decision. Per-rater values: "
        "one number, a list a,b,c (one per rater) or a spread lo:hi."
    )

    def add_arguments(self, parser):
        parser.add_argument("--raters", type=int_arg(1, 1_000), default=20)
        parser.add_argument(
            "--ratings", type=int_arg(1, 10_000_000), default=2000, help="Ratings in total, taken in turns."
        )
        parser.add_argument(
            "--length-bias", default="0.6", help="Pull toward the longer answer per unit of log ratio."
        )
        parser.add_argument("--position-bias", default="0.1", help="Pull toward the left answer.")
        parser.add_argument("--noise", default="0.3", help="Standard deviation of the Gaussian noise.")
        parser.add_argument(
            "--seed",
            type=int_arg(0, INT_MAX),
            default=None,
            help="Seed (also names the accounts sim-<seed>-NN).",
        )
        parser.add_argument(
            "--encoder",
            choices=["minilm", "lexical"],
            default="minilm",
            help="Similarity to the reference: MiniLM embeddings (needs torch) or a cheap lexical one.",
        )
        parser.add_argument(
            "--required-ratings", type=int_arg(1, SMALL_MAX), default=3, help="Ratings per added comparison."
        )
        parser.add_argument("--no-top-up", action="store_true", help="Do not add variant comparisons.")

    def handle(self, *args, **o):
        try:
            result = simulate_raters(
                raters=o["raters"],
                ratings=o["ratings"],
                length_bias=o["length_bias"],
                position_bias=o["position_bias"],
                noise=o["noise"],
                seed=o["seed"],
                encoder=o["encoder"],
                required_ratings=o["required_ratings"],
                top_up=not o["no_top_up"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"simulate_raters: {result.ratings} ratings by {len(result.raters)} raters "
            f"({result.raters[0]} .. {result.raters[-1]}), +{result.comparisons_created} comparisons, "
            f"{result.length_questions} length questions answered"
        )
        for name, why in result.refused.items():
            self.stdout.write(self.style.WARNING(f"{name} stopped, refused by the rating service: {why}"))
        if result.stopped_early:
            self.stdout.write(self.style.WARNING(f"stopped early: {result.stopped_early}"))
