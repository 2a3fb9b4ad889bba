"""Storing a rater's judgment of a comparison.

Idempotent: the rating form carries a key issued with the page, so a double click or a retried POST
returns the rating already stored instead of a second row. A different judgment of a comparison the
rater already rated is refused (and the database's unique constraint backs that up).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from labelapp.models import Assignment, Rating
from labelapp.services.assignment import QueueError, assignment_reclaim_expired
from labelapp.services.guidelines import guideline_current


def length_check_asked(*, preference: int, words_a: int, words_b: int) -> bool:
    """True when the chosen answer is at least LENGTH_CHECK_RATIO times longer (in words) than the other.

    Then the rater is asked whether the extra length adds content, and must answer.
    """
    if preference == 0:
        return False
    chosen, other = (words_a, words_b) if preference < 0 else (words_b, words_a)
    return chosen >= settings.LABEL["LENGTH_CHECK_RATIO"] * max(other, 1)


class RatingError(Exception):
    """The rating cannot be stored; the message is for the rater."""


@dataclass(frozen=True)
class RatingInput:
    preference: int
    both_bad: bool = False
    scores: dict[str, int | None] = field(default_factory=dict)
    rationale: str = ""
    flag_pii: bool = False
    flag_unsafe: bool = False
    flag_broken: bool = False
    length_check: str = ""
    time_on_task_ms: int = 0


def rating_submit(
    *, rater, assignment_id: int, idempotency_key: uuid.UUID, data: RatingInput
) -> tuple[Rating, bool]:
    """Store the rating for the rater's assignment. Returns (rating, created).

    Raises Assignment.DoesNotExist when the assignment is not this rater's (callers answer 404), and
    RatingError with a message for anything the rater can act on.
    """
    guideline = guideline_current()
    if guideline is None:
        raise RatingError("No rating guidelines are published yet; ask an admin.")

    try:
        with transaction.atomic():
            assignment = Assignment.objects.select_for_update().filter(pk=assignment_id, rater=rater).first()
            if assignment is None:
                raise Assignment.DoesNotExist
            if assignment.status == Assignment.Status.DONE:
                existing = Rating.objects.filter(assignment=assignment).first()
                if existing is not None and existing.idempotency_key == idempotency_key:
                    return existing, False  # the same form sent twice: same answer, no second row
                raise RatingError("You have already rated this comparison; a rating cannot be changed here.")
            if assignment.status == Assignment.Status.EXPIRED:
                try:
                    assignment_reclaim_expired(assignment=assignment)
                except QueueError as exc:
                    raise RatingError(str(exc)) from exc
            elif assignment.status != Assignment.Status.LEASED:
                raise RatingError("This comparison is no longer assigned to you (skipped or finished).")

            rating = Rating.objects.create(
                rater=rater,
                comparison_id=assignment.comparison_id,
                assignment=assignment,
                preference=data.preference,
                both_bad=data.both_bad,
                rationale=data.rationale,
                flag_pii=data.flag_pii,
                flag_unsafe=data.flag_unsafe,
                flag_broken=data.flag_broken,
                length_check=data.length_check,
                guideline_version=guideline,
                time_on_task_ms=max(0, min(int(data.time_on_task_ms), 24 * 3600 * 1000)),
                idempotency_key=idempotency_key,
                **{name: data.scores.get(name) for name in Rating.DIMENSIONS},
            )
            assignment.status = Assignment.Status.DONE
            assignment.finished_at = timezone.now()
            assignment.save(update_fields=["status", "finished_at"])
    except IntegrityError:
        # The unique constraints speak: this key or this comparison already has this rater's rating
        # (a duplicate submit on another connection, or a second assignment of the same comparison).
        existing = Rating.objects.filter(rater=rater, idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.assignment_id == assignment_id:
                return existing, False
            raise RatingError("This form was already used for another comparison; reload the page.") from None
        raise RatingError(
            "You have already rated this comparison; a rating cannot be changed here."
        ) from None
    return rating, True
