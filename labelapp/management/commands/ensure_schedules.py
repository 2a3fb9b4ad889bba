"""`manage.py ensure_schedules`: create the scheduled jobs that are missing (never overwrites admin edits)."""

from django.core.management.base import BaseCommand

from labelapp.services.schedules import schedules_ensure


class Command(BaseCommand):
    help = "Create missing django-celery-beat schedules for the preference loop's jobs."

    def handle(self, *args, **options):
        created = schedules_ensure()
        self.stdout.write(f"created: {', '.join(created)}" if created else "schedules already present")
