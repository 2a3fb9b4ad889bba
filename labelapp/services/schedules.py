"""The scheduled jobs, stored with django-celery-beat so admins can edit them in the admin.

`schedules_ensure()` creates missing entries and never overwrites an entry an admin has edited.
"""

from __future__ import annotations

from django.conf import settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask

QUEUE_HOUSEKEEPING = "Queue housekeeping: release expired leases, record figures"
REWARD_MODEL_CHECK = "Reward model: retrain when enough new ratings arrived"


def schedules_ensure() -> list[str]:
    created = []
    every = settings.LABEL["QUEUE_HOUSEKEEPING_SECONDS"]
    interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=IntervalSchedule.SECONDS)
    _, was_created = PeriodicTask.objects.get_or_create(
        name=QUEUE_HOUSEKEEPING,
        defaults={"task": "labelapp.tasks.queue_housekeeping", "interval": interval, "queue": "default"},
    )
    if was_created:
        created.append(QUEUE_HOUSEKEEPING)
    every = settings.TRAINING["CHECK_SECONDS"]
    interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=IntervalSchedule.SECONDS)
    _, was_created = PeriodicTask.objects.get_or_create(
        name=REWARD_MODEL_CHECK,
        defaults={"task": "labelapp.tasks.reward_model_check", "interval": interval, "queue": "default"},
    )
    if was_created:
        created.append(REWARD_MODEL_CHECK)
    return created
