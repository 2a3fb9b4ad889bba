"""Retention: delete what is past its source's retention period (settings.RETENTION_DAYS).

A prompt older than its source's period goes with everything hanging off it (answers, comparisons,
assignments, ratings, reviews, consent changes, policy samples and pairs, evaluation-set entries:
database cascades). Export files are deleted from disk once any
prompt in them expires, after the prompts' delete commits, each file's record only once the file is
gone. The deadline is computed at each purge from the file's oldest prompt per source and today's
periods (`retention_deadline`): a deadline fixed when the file was written (`ExportFile.expires_at`,
still shown) let files written before a period was set, or under a longer one, outlive their prompts.
Files recorded before the per-source times were kept fall back to that stored deadline. The report
says what was deleted, by kind and count, and which files were not found or could not be deleted.

Sources match RETENTION_DAYS case-insensitively ("Playground" is "playground"): ingest stores the
source as sent, and a period that missed a capitalised spelling kept those prompts forever. The admin's
history rows (django_admin_log) of everything purged go too (_LOGGED_WITH_PROMPT): they are history of
data that no longer exists, and rows written before __str__ lost the text carried the prompt's first
words.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import Q, Value
from django.db.models.functions import Lower
from django.utils import timezone

from labelapp.models import (
    Assignment,
    Comparison,
    EvalSetRating,
    ExportFile,
    PolicyPair,
    PolicySample,
    Prompt,
    PromptConsentChange,
    Rating,
    RatingReview,
    Response,
)
from labelapp.quality_models import SimulatedDecision
from labelapp.rawsql import xact_lock_name

log = logging.getLogger(__name__)


def _lower(source: str) -> str:
    """A source name in lower case letter by letter, as PostgreSQL's LOWER() in _expired_prompts does
    it: casefold made "Straße" "strasse", and str.lower gives a final sigma its own letter, names no
    prompt's source matched there (its export files went at the named period, its prompts never)."""
    return "".join(c.lower() for c in source)


def _periods() -> dict[str, int]:
    """RETENTION_DAYS with each source name in lower case ("*" stays)."""
    return {_lower(s): d for s, d in settings.RETENTION_DAYS.items()}


def retention_deadline(oldest_by_source: dict[str, datetime]) -> datetime | None:
    """The earliest moment a prompt of these sources (each with its oldest creation time) passes its
    source's period under RETENTION_DAYS (a source without one takes "*"); None: never."""
    days = _periods()
    deadlines = []
    for source, oldest in oldest_by_source.items():
        d = days.get(_lower(source), days.get("*", 0))
        if d and d > 0:
            deadlines.append(oldest + timedelta(days=d))
    return min(deadlines) if deadlines else None


def _file_deadline(record: ExportFile) -> datetime | None:
    if not record.oldest_by_source:  # recorded before the per-source times were kept
        return record.expires_at
    oldest = {s: datetime.fromisoformat(t) for s, t in record.oldest_by_source.items()}
    return retention_deadline(oldest)


def _expired_files(now: datetime) -> list[ExportFile]:
    """The export records whose deadline under today's periods has passed (records are few: one per
    file written)."""
    return [r for r in ExportFile.objects.order_by("pk") if (d := _file_deadline(r)) is not None and d <= now]


def _expired_prompts(now: datetime):
    """Each source compared by PostgreSQL's LOWER() on both sides (the setting's name as written), so
    the match does not depend on how Python and the database lower a letter differently (final sigma)."""
    days = settings.RETENTION_DAYS
    is_source = {s: Q(source_lower=Lower(Value(s))) for s in days if s != "*"}
    cond = Q(pk__in=[])
    for source, same in is_source.items():
        if days[source] and days[source] > 0:
            cond |= same & Q(created_at__lt=now - timedelta(days=days[source]))
    default = days.get("*", 0)
    if default and default > 0:
        any_named = Q(pk__in=[])
        for same in is_source.values():
            any_named |= same
        cond |= Q(created_at__lt=now - timedelta(days=default)) & ~any_named
    return Prompt.objects.alias(source_lower=Lower("source")).filter(cond)


# Every admin-registered model whose rows go with a purged prompt (a cascade), and the lookup from it
# to the prompt: the admin's history rows about them go too (a comparison's row names its prompt,
# "Comparison #8 (normal) on prompt #3", left pointing at data that is gone).
_LOGGED_WITH_PROMPT = (
    (Prompt, "pk__in"),
    (Response, "prompt_id__in"),
    (Comparison, "prompt_id__in"),
    (Assignment, "comparison__prompt_id__in"),
    (Rating, "comparison__prompt_id__in"),
    (RatingReview, "rating__comparison__prompt_id__in"),
    (PromptConsentChange, "prompt_id__in"),
    (EvalSetRating, "prompt_id__in"),
    (PolicySample, "prompt_id__in"),
    (PolicyPair, "comparison__prompt_id__in"),
    (SimulatedDecision, "rating__comparison__prompt_id__in"),
)


# The report's counts, by kind: the rows of these models that go.
_REPORTED = {
    "prompts": Prompt,
    "responses": Response,
    "comparisons": Comparison,
    "assignments": Assignment,
    "ratings": Rating,
    "reviews": RatingReview,
}


def _delete_admin_history(ids_by_model: dict) -> None:
    """The admin's log rows about these rows, by model (object_id is text in that table)."""
    for model, ids in ids_by_model.items():
        if ids:
            LogEntry.objects.filter(
                content_type=ContentType.objects.get_for_model(model), object_id__in=[str(i) for i in ids]
            ).delete()


def purge_expired(*, now: datetime | None = None, dry_run: bool = False) -> dict[str, int]:
    """Delete expired prompts (with their data), then expired export files. Returns counts by kind:
    `export_files` deleted from disk, `export_files_missing` not on this machine's disk (the record
    goes; the file may live where the export was written, see the README), `export_files_failed`
    whose deletion failed (kept on record: the next purge tries again)."""
    now = now or timezone.now()
    report = {
        "prompts": 0,
        "responses": 0,
        "comparisons": 0,
        "assignments": 0,
        "ratings": 0,
        "reviews": 0,
        "export_files": 0,
        "export_files_missing": 0,
        "export_files_failed": 0,
    }
    with transaction.atomic():
        ids = list(_expired_prompts(now).values_list("pk", flat=True))
        # the rows that go, by model: counted for the report, and whose admin history goes with them
        going = {
            model: list(model.objects.filter(**{lookup: ids}).values_list("pk", flat=True))
            for model, lookup in _LOGGED_WITH_PROMPT
        }
        for kind, model in _REPORTED.items():
            report[kind] = len(going[model])
        if dry_run:
            report["export_files"] = len(_expired_files(now))
            return report
        Prompt.objects.filter(pk__in=ids).delete()
        _delete_admin_history(going)
    _purge_export_files(now, report)
    return report


_EXPORT_PATH_LOCK = 0x3E7F11  # pg_advisory_xact_lock kind of an export file's path


def export_path_lock(path: str) -> None:
    """Hold the path of a recorded export file until the transaction ends: an export landing a file at
    the path and recording it, and a deletion of the file and its record, happen one after the other.
    The purge deleted, by an expired record read before, the new file an export had just written there,
    and left the new record pointing at nothing."""
    xact_lock_name(_EXPORT_PATH_LOCK, path)


def _purge_export_files(now: datetime, report: dict[str, int]) -> None:
    """Each expired file on its own: its record goes only once the file is gone (or was never on this
    disk). Deleting every record first and the files after (all in one callback) reported files as
    deleted that a failed or skipped unlink had left on disk, with no record left to find them by."""
    for record in _expired_files(now):
        outcome = export_file_delete(record)
        if outcome == "replaced":
            continue
        report["export_files" if outcome == "deleted" else f"export_files_{outcome}"] += 1


def export_file_delete(record: ExportFile) -> str:
    """Delete an export file, then its record: "deleted"; "missing" when the file was not on this disk
    (the record goes); "failed" when it could not be deleted (the record stays: it is how a later try
    finds the file); "replaced" when a new export at its path took its record since it was read (the
    new file stays). The purge and the admin's delete both come here: the admin's plain delete took
    the record and left the file, with prompt texts, where no purge would look for it again."""
    with transaction.atomic():
        export_path_lock(record.path)
        if not ExportFile.objects.filter(pk=record.pk).exists():
            return "replaced"
        try:
            Path(record.path).unlink()
        except FileNotFoundError:
            log.warning("export file %s (record %s) was not on this disk", record.path, record.pk)
            outcome = "missing"
        except OSError as exc:
            log.error("export file %s could not be deleted (%s); kept on record", record.path, exc)
            return "failed"
        else:
            outcome = "deleted"
        record.delete()
    return outcome
