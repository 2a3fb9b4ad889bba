"""`manage.py ensure_schedules`: create the scheduled jobs that are missing and apply changed interval
settings to the jobs nobody edited in the admin (`--reset`: to every job)."""

from django.core.management.base import BaseCommand

from labelapp.services.schedules import schedules_ensure


class Command(BaseCommand):
    help = (
        "Create missing django-celery-beat schedules for the preference loop's jobs; a changed interval "
        "setting (RM_CHECK_SECONDS, ...) replaces the interval of a job nobody edited in the admin."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--reset",
            action="store_true",
            help="give every job its setting's interval, edited in the admin or not",
        )

    def handle(self, *args, **options):
        report = schedules_ensure(reset=options["reset"])
        for label, names in (("created", report.created), ("interval from its setting", report.updated)):
            for name in names:
                self.stdout.write(f"{label}: {name}")
        for name in report.kept:
            self.stdout.write(
                f"kept (its interval was edited in the admin; --reset applies the setting): {name}"
            )
        if not (report.created or report.updated or report.kept):
            self.stdout.write("schedules already present")
