"""`manage.py purge_expired`: delete prompts past their source's retention (with their ratings)
and export files holding them; prints what it deleted."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from labelapp.services.retention import purge_expired


class Command(BaseCommand):
    help = "Delete data past its retention period (settings.RETENTION_DAYS) and expired export files."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="only say what would be deleted")

    def handle(self, *args, dry_run: bool = False, **options):
        report = purge_expired(dry_run=dry_run)
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(
            f"{verb}: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report.items()) + "."
        )
