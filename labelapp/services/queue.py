"""Queue housekeeping run by Celery beat: release expired leases and record the queue figures."""

from __future__ import annotations

from django.db.models import F, Sum
from django.db.models.functions import Greatest

from labelapp.models import Assignment, Comparison, QueueSnapshot, Rating
from labelapp.services.assignment import SERVABLE, due_repeats, leases_release_expired


def queue_figures() -> dict[str, int]:
    """`pending`: the judgments raters can be served now: open slots of active normal pairs on prompts
    that may be shown (consent, not withheld) and repeats that are due. Gold pairs are mixed into the
    stream without a required count, and a repeat before its time or a withheld prompt is work nobody
    can claim: counting them showed staff a queue that raters found empty."""
    servable = Comparison.objects.filter(SERVABLE)
    open_slots = (
        servable.filter(kind=Comparison.Kind.NORMAL).aggregate(
            s=Sum(Greatest(F("required_ratings") - F("claimed_count"), 0))
        )["s"]
        or 0
    )
    return {
        "pending": int(open_slots) + servable.filter(due_repeats()).count(),
        "leased": Assignment.objects.filter(status=Assignment.Status.LEASED).count(),
        "done": Rating.objects.count(),
    }


HOUSEKEEPING_BATCH = 1000  # expired leases released per transaction


def queue_housekeeping() -> QueueSnapshot:
    # In batches (one short transaction each), until none is left: one batch of 1,000 per run let a
    # larger backlog (raters gone at the end of a shift) drain at 1,000 a minute.
    released = 0
    while (batch := leases_release_expired(limit=HOUSEKEEPING_BATCH)) > 0:
        released += batch
        if batch < HOUSEKEEPING_BATCH:
            break
    return QueueSnapshot.objects.create(released=released, **queue_figures())
