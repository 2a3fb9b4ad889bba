"""`manage.py purge_expired`: delete prompts past their source's retention (with their ratings)
and export files holding them; prints what it deleted."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from labelapp.services.retention import purge_expired


class Command(BaseCommand):
    help = "Delete data past its retention period (settings.RETENTION_DAYS) and expired export files."

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="only say what would be deleted")

    def handle(self, *args, dry_run: bool = False, **options):
        report = purge_expired(dry_run=dry_run)
        missing, failed = report.pop("export_files_missing"), report.pop("export_files_failed")
        verb = "Would delete" if dry_run else "Deleted"
        line = f"{verb}: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report.items()) + "."
        if missing:
            line += f" {missing} expired export file(s) were not on this disk (records removed; see the log)."
        self.stdout.write(line)
        if failed:
            raise CommandError(
                f"{failed} expired export file(s) could not be deleted (see the log); they stay on record "
                "and the next purge tries again."
            )
