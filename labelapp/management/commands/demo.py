"""`manage.py demo`: seed the demo project (idempotent) and print the demo accounts."""

from django.core.management.base import BaseCommand

from labelapp.management.args import SMALL_MAX, int_arg
from labelapp.services.demo import ACCOUNTS_FILE, demo_seed


class Command(BaseCommand):
    help = "Seed the demo project (prompts, answers, comparisons, guidelines v1, demo accounts). Idempotent."

    def add_arguments(self, parser):
        parser.add_argument(
            "--required-ratings", type=int_arg(1, SMALL_MAX), default=None, help="Ratings per comparison."
        )

    def handle(self, *args, required_ratings=None, **options):
        result = demo_seed(required_ratings=required_ratings)
        self.stdout.write(
            f"demo: +{result.prompts_created} prompts, +{result.responses_created} answers, "
            f"+{result.comparisons_created} comparisons; guidelines v{result.guideline_number} in force"
        )
        for username, password in result.accounts.items():
            shown = password or f"(set earlier; not in {ACCOUNTS_FILE}; use manage.py changepassword)"
            self.stdout.write(f"  account {username:<11} password {shown}")
