"""Queue housekeeping run by Celery beat: release expired leases and record the queue figures."""

from __future__ import annotations

from django.db.models import F, Sum
from django.db.models.functions import Greatest

from labelapp.models import Assignment, Comparison, QueueSnapshot, Rating
from labelapp.services.assignment import leases_release_expired


def queue_figures() -> dict[str, int]:
    open_slots = (
        Comparison.objects.filter(is_active=True).aggregate(
            s=Sum(Greatest(F("required_ratings") - F("claimed_count"), 0))
        )["s"]
        or 0
    )
    return {
        "pending": int(open_slots),
        "leased": Assignment.objects.filter(status=Assignment.Status.LEASED).count(),
        "done": Rating.objects.count(),
    }


def queue_housekeeping() -> QueueSnapshot:
    released = leases_release_expired()
    return QueueSnapshot.objects.create(released=released, **queue_figures())
