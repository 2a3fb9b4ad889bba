"""Retention: delete what is past its source's retention period (settings.RETENTION_DAYS).

A prompt older than its source's period goes with everything hanging off it (answers, comparisons,
assignments, ratings, reviews: database cascades). Export files are deleted from disk once any
prompt in them expires (`ExportFile.expires_at`, fixed when the file is written). The report says
what was deleted, by kind and count.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from labelapp.models import Assignment, Comparison, ExportFile, Prompt, Rating, RatingReview, Response


def _expired_prompts(now: datetime):
    days = settings.RETENTION_DAYS
    named = {s: d for s, d in days.items() if s != "*"}
    cond = Q(pk__in=[])
    for source, d in named.items():
        if d and d > 0:
            cond |= Q(source=source, created_at__lt=now - timedelta(days=d))
    default = days.get("*", 0)
    if default and default > 0:
        cond |= Q(created_at__lt=now - timedelta(days=default)) & ~Q(source__in=list(named))
    return Prompt.objects.filter(cond)


def purge_expired(*, now: datetime | None = None, dry_run: bool = False) -> dict[str, int]:
    """Delete expired prompts (with their data) and expired export files. Returns counts by kind."""
    now = now or timezone.now()
    report = {
        "prompts": 0,
        "responses": 0,
        "comparisons": 0,
        "assignments": 0,
        "ratings": 0,
        "reviews": 0,
        "export_files": 0,
    }
    with transaction.atomic():
        prompts = _expired_prompts(now)
        ids = list(prompts.values_list("pk", flat=True))
        report["prompts"] = len(ids)
        report["responses"] = Response.objects.filter(prompt_id__in=ids).count()
        report["comparisons"] = Comparison.objects.filter(prompt_id__in=ids).count()
        report["assignments"] = Assignment.objects.filter(comparison__prompt_id__in=ids).count()
        report["ratings"] = Rating.objects.filter(comparison__prompt_id__in=ids).count()
        report["reviews"] = RatingReview.objects.filter(rating__comparison__prompt_id__in=ids).count()
        files = list(ExportFile.objects.filter(expires_at__lte=now))
        report["export_files"] = len(files)
        if dry_run:
            return report
        Prompt.objects.filter(pk__in=ids).delete()
        ExportFile.objects.filter(pk__in=[f.pk for f in files]).delete()
        # Files go only once the rows are gone for good (on commit): a rollback keeps both.
        paths = [Path(f.path) for f in files]
        transaction.on_commit(lambda: [p.unlink(missing_ok=True) for p in paths])
    return report
