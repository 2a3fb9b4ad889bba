"""`manage.py demo`: seed the demo project (idempotent) and print the demo accounts."""

from django.core.management.base import BaseCommand, CommandError

from labelapp.management.args import SMALL_MAX, int_arg
from labelapp.services.demo import ACCOUNTS_FILE, DemoRefused, demo_real_prompts, demo_seed
from labelapp.services.schedules import schedules_ensure


class Command(BaseCommand):
    help = "Seed the demo project (prompts, answers, comparisons, guidelines v1, demo accounts). Idempotent."

    def add_arguments(self, parser):
        parser.add_argument(
            "--required-ratings", type=int_arg(1, SMALL_MAX), default=None, help="Ratings per comparison."
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="seed also a database that holds prompts not from the demo (refused otherwise)",
        )
        parser.add_argument(
            "--skip-if-real",
            action="store_true",
            help="on a database with prompts not from the demo, say so and seed nothing (make run)",
        )

    def handle(self, *args, required_ratings=None, force=False, skip_if_real=False, **options):
        if skip_if_real and not force and (real := demo_real_prompts()):
            schedules_ensure()  # what the seeding does besides: `make run`'s beat needs its jobs
            self.stdout.write(
                f"demo: skipped, this database holds {real} prompt(s) that are not the demo's "
                "(manage.py demo --force adds it all the same); scheduled jobs ensured"
            )
            return
        try:
            result = demo_seed(required_ratings=required_ratings, force=force)
        except DemoRefused as exc:
            raise CommandError(str(exc)) from None
        in_force = (
            f"guidelines v{result.guideline_number} in force"
            if result.guideline_number is not None
            else "no guidelines in force: publish the draft at /staff/guidelines/"
        )
        self.stdout.write(
            f"demo: +{result.prompts_created} prompts, +{result.responses_created} answers, "
            f"+{result.comparisons_created} comparisons; {in_force}"
        )
        for username, password in result.accounts.items():
            shown = (
                password or f"(set earlier, or not the one in {ACCOUNTS_FILE}; use manage.py changepassword)"
            )
            self.stdout.write(f"  account {username:<11} password {shown}")
