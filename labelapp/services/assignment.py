"""The assignment queue: claim the next comparison for a rater, skip it, release expired leases.

Concurrency design (checked by tests/labelapp/test_queue_concurrency.py against real PostgreSQL):
- `Comparison.claimed_count` (leased + done) is changed only while that comparison's row is locked.
- A claim picks the best open comparison with `SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1`: two raters
  never wait on each other, and because the open condition `claimed_count < required_ratings` is a
  column of the locked row, PostgreSQL re-checks it against the newest row version after the lock is
  taken, so a comparison filled a moment ago is not claimed again.
- Lock order is always assignment rows, then comparison rows in id order: no deadlock between the
  releaser, skips and claims.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from labelapp.models import Assignment, Comparison


class QueueError(Exception):
    """A queue operation the caller asked for cannot be done; the message is for the user."""


def _open_assignment(rater) -> Assignment | None:
    return (
        Assignment.objects.select_related(
            "comparison__prompt", "comparison__response_a", "comparison__response_b"
        )
        .filter(rater=rater, status=Assignment.Status.LEASED)
        .first()
    )


def _claim_one(*, rater, now: datetime) -> Assignment | None:
    seen = Assignment.objects.filter(
        rater=rater,
        comparison=OuterRef("pk"),
        status__in=[Assignment.Status.LEASED, Assignment.Status.DONE, Assignment.Status.SKIPPED],
    )
    with transaction.atomic():
        # select_related: the rating page needs the prompt and both answers; only the comparison is locked.
        comparison = (
            Comparison.objects.filter(is_active=True, claimed_count__lt=F("required_ratings"))
            .exclude(Exists(seen))
            .select_related("prompt", "response_a", "response_b")
            .order_by("-priority", "created_at", "id")
            .select_for_update(skip_locked=True, of=("self",))
            .first()
        )
        if comparison is None:
            return None
        Comparison.objects.filter(pk=comparison.pk).update(claimed_count=F("claimed_count") + 1)
        return Assignment.objects.create(
            rater=rater,
            comparison=comparison,
            # Left/right is random per assignment so position bias averages out and can be measured.
            shown_left=random.choice([Assignment.Side.A, Assignment.Side.B]),
            status=Assignment.Status.LEASED,
            issued_at=now,
            lease_expires_at=now + settings.LEASE_DURATION,
            form_key=uuid.uuid4(),
        )


def assignment_next(*, rater, just_finished: bool = False) -> Assignment | None:
    """The rater's open assignment, or a newly claimed one, or None when nothing is left for them.

    `just_finished`: the caller has just closed the rater's assignment, so skip looking for an open
    one (if another tab claimed meanwhile, the unique constraint sends us to it anyway).
    """
    now = timezone.now()
    current = None if just_finished else _open_assignment(rater)
    if current is not None:
        if current.lease_expires_at > now:
            return current  # same one back on reload
        leases_release_expired(now=now, rater=rater)
    try:
        claimed = _claim_one(rater=rater, now=now)
    except IntegrityError:
        # The same rater claimed in another tab at the same instant: the unique "one open
        # assignment per rater" constraint refused the second; give back the winner's.
        return _open_assignment(rater)
    if claimed is None and leases_release_expired(now=now):
        # Expired leases of other raters just went back into the pool: try once more.
        claimed = _claim_one(rater=rater, now=now)
    return claimed


def assignment_skip(*, rater, assignment_id: int, reason: str) -> Assignment:
    reason = (reason or "").strip()
    if not reason:
        raise QueueError("Say why you skip (for example: outside my expertise, broken prompt).")
    with transaction.atomic():
        assignment = Assignment.objects.select_for_update().filter(pk=assignment_id, rater=rater).first()
        if assignment is None:
            raise Assignment.DoesNotExist
        if assignment.status != Assignment.Status.LEASED:
            raise QueueError("This comparison is no longer assigned to you.")
        assignment.status = Assignment.Status.SKIPPED
        assignment.skip_reason = reason[:500]
        assignment.finished_at = timezone.now()
        assignment.save(update_fields=["status", "skip_reason", "finished_at"])
        Comparison.objects.filter(pk=assignment.comparison_id).update(claimed_count=F("claimed_count") - 1)
    return assignment


def leases_release_expired(*, now: datetime | None = None, rater=None, limit: int = 1000) -> int:
    """Expire leases past their deadline and give their slots back to the pool. Returns how many."""
    now = now or timezone.now()
    with transaction.atomic():
        qs = Assignment.objects.filter(status=Assignment.Status.LEASED, lease_expires_at__lte=now)
        if rater is not None:
            qs = qs.filter(rater=rater)
        # skip_locked: a lease being rated or skipped right now is left to that request.
        rows = list(
            qs.select_for_update(skip_locked=True).order_by("id").values_list("id", "comparison_id")[:limit]
        )
        if not rows:
            return 0
        Assignment.objects.filter(pk__in=[r[0] for r in rows]).update(
            status=Assignment.Status.EXPIRED, finished_at=now
        )
        per_comparison = Counter(r[1] for r in rows)
        for comparison_id in sorted(per_comparison):  # id order: see the module docstring
            Comparison.objects.filter(pk=comparison_id).update(
                claimed_count=F("claimed_count") - per_comparison[comparison_id]
            )
    return len(rows)


def assignment_reclaim_expired(*, assignment: Assignment) -> None:
    """Re-take the slot of an expired assignment whose rater submits late, if the slot is still free.

    Called inside the rating transaction with `assignment` locked. Raises QueueError when the
    comparison was filled by other raters in the meantime.
    """
    updated = Comparison.objects.filter(
        pk=assignment.comparison_id, claimed_count__lt=F("required_ratings")
    ).update(claimed_count=F("claimed_count") + 1)
    if updated != 1:
        raise QueueError(
            "Your time on this comparison ran out and other raters have completed it. "
            "Nothing was saved; please take the next one."
        )
