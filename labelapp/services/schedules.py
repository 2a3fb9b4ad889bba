"""The scheduled jobs, stored with django-celery-beat so admins can edit them in the admin.

`schedules_ensure()` creates missing entries and never overwrites an entry an admin has edited.
"""

from __future__ import annotations

from django.conf import settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask

QUEUE_HOUSEKEEPING = "Queue housekeeping: release expired leases, record figures"
REWARD_MODEL_CHECK = "Reward model: retrain when enough new ratings arrived"
QUALITY_REFRESH = "Quality: recompute rater figures, trust weights and dashboard reports"
POLICY_CHECK = "Policy: start a round when a new reward model is active"
RETENTION_PURGE = "Retention: delete prompts, ratings and export files past RETENTION_DAYS"


def _jobs() -> list[tuple[str, str, int]]:
    """(name, task, every seconds) of each scheduled job."""
    return [
        (
            QUEUE_HOUSEKEEPING,
            "labelapp.tasks.queue_housekeeping",
            settings.LABEL["QUEUE_HOUSEKEEPING_SECONDS"],
        ),
        (REWARD_MODEL_CHECK, "labelapp.tasks.reward_model_check", settings.TRAINING["CHECK_SECONDS"]),
        (QUALITY_REFRESH, "labelapp.tasks.quality_refresh", settings.QUALITY["REFRESH_SECONDS"]),
        (POLICY_CHECK, "labelapp.tasks.policy_check", settings.POLICY["CHECK_SECONDS"]),
        (RETENTION_PURGE, "labelapp.tasks.retention_purge", settings.RETENTION_PURGE_SECONDS),
    ]


def schedules_ensure() -> list[str]:
    created = []
    for name, task, every in _jobs():
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=IntervalSchedule.SECONDS)
        _, was_created = PeriodicTask.objects.get_or_create(
            name=name, defaults={"task": task, "interval": interval, "queue": "default"}
        )
        if was_created:
            created.append(name)
    return created
