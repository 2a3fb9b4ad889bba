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
from labelapp.rawsql import fetch_one, loaded_instance
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

    @classmethod
    def from_validated(cls, d: dict) -> RatingInput:
        """From a validated form's or serializer's data (same field names as the Rating model)."""
        return cls(
            preference=d["preference"],
            both_bad=bool(d.get("both_bad")),
            scores={name: d.get(name) for name in Rating.DIMENSIONS},
            rationale=(d.get("rationale") or "").strip(),
            flag_pii=bool(d.get("flag_pii")),
            flag_unsafe=bool(d.get("flag_unsafe")),
            flag_broken=bool(d.get("flag_broken")),
            length_check=d.get("length_check") or "",
            time_on_task_ms=d.get("time_on_task_ms") or 0,
        )


# The common case in one statement: close the leased assignment and insert the rating with the
# guideline version in force. The UPDATE's row lock serialises a double submit (the second sees
# status 'done' and matches nothing), and a unique violation undoes the UPDATE with the INSERT.
# Anything unusual (no row: expired, done, someone else's, no guidelines) takes the ORM path below.
_SUBMIT_SQL = """
WITH closed AS (
    UPDATE labelapp_assignment a SET status = 'done', finished_at = %(now)s
    WHERE a.id = %(assignment)s AND a.rater_id = %(rater)s AND a.status = 'leased'
      AND EXISTS (SELECT 1 FROM labelapp_guidelineversion g WHERE g.published_at IS NOT NULL)
    RETURNING a.id, a.comparison_id
)
INSERT INTO labelapp_rating
    (rater_id, comparison_id, assignment_id, preference, both_bad, helpfulness, factual_accuracy,
     harmlessness, conciseness, coherence, rationale, flag_pii, flag_unsafe, flag_broken, length_check,
     guideline_version_id, time_on_task_ms, idempotency_key, created_at)
SELECT %(rater)s, closed.comparison_id, closed.id, %(preference)s, %(both_bad)s, %(helpfulness)s,
       %(factual_accuracy)s, %(harmlessness)s, %(conciseness)s, %(coherence)s, %(rationale)s, %(flag_pii)s,
       %(flag_unsafe)s, %(flag_broken)s, %(length_check)s,
       (SELECT g.id FROM labelapp_guidelineversion g WHERE g.published_at IS NOT NULL
        ORDER BY g.number DESC LIMIT 1),
       %(time_on_task_ms)s, %(key)s, %(now)s
FROM closed
RETURNING id, comparison_id, guideline_version_id
"""


def _rating_fields(data: RatingInput) -> dict:
    """The Rating columns a RatingInput fills (both insert paths use it)."""
    return {
        "preference": data.preference,
        "both_bad": data.both_bad,
        "rationale": data.rationale,
        "flag_pii": data.flag_pii,
        "flag_unsafe": data.flag_unsafe,
        "flag_broken": data.flag_broken,
        "length_check": data.length_check,
        "time_on_task_ms": _clamp_ms(data.time_on_task_ms),
        **{name: data.scores.get(name) for name in Rating.DIMENSIONS},
    }


def _submit_fast(
    *, rater, assignment_id: int, idempotency_key: uuid.UUID, data: RatingInput
) -> Rating | None:
    now = timezone.now()
    fields = _rating_fields(data)
    row = fetch_one(
        _SUBMIT_SQL,
        {**fields, "now": now, "assignment": assignment_id, "rater": rater.pk, "key": idempotency_key},
    )
    if row is None:
        return None
    return loaded_instance(
        Rating,
        id=row[0],
        rater=rater,
        comparison_id=row[1],
        assignment_id=assignment_id,
        guideline_version_id=row[2],
        idempotency_key=idempotency_key,
        created_at=now,
        **fields,
    )


def _clamp_ms(ms: int) -> int:
    return max(0, min(int(ms or 0), 24 * 3600 * 1000))


def rating_submit(
    *, rater, assignment_id: int, idempotency_key: uuid.UUID, data: RatingInput
) -> tuple[Rating, bool]:
    """Store the rating for the rater's assignment. Returns (rating, created).

    Raises Assignment.DoesNotExist when the assignment is not this rater's (callers answer 404), and
    RatingError with a message for anything the rater can act on.
    """
    try:
        rating = _submit_fast(
            rater=rater, assignment_id=assignment_id, idempotency_key=idempotency_key, data=data
        )
        if rating is not None:
            return rating, True
        guideline = guideline_current()
        if guideline is None:
            raise RatingError("No rating guidelines are published yet; ask an admin.")
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
                guideline_version=guideline,
                idempotency_key=idempotency_key,
                **_rating_fields(data),
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
