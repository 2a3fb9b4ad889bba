"""Storing a rater's judgment of a comparison: every rule of a rating lives here.

Every path (rating page, htmx panel, API, simulated raters) calls `rating_submit`, so every path
enforces the same rules:
- the rater must have acknowledged a published guideline version; the rating carries the newest
  version THEY acknowledged (never one published after their page was issued and not yet read);
- the length check: when the chosen answer is at least LENGTH_CHECK_RATIO times longer (in words),
  the rater must say whether the extra length adds content (`LengthCheckRequired` otherwise); when
  the question was not asked, no answer is stored;
- idempotent: the rating form carries a key issued with the page, so a double click or a retried POST
  returns the rating already stored instead of a second row. A different judgment of a comparison the
  rater already rated is refused (and the database's unique constraint backs that up).
After a rating on a normal pair, a repeat may be scheduled (services/repeats.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from labelapp.models import Assignment, Comparison, GuidelineVersion, Prompt, Rating, prompt_awaiting_review
from labelapp.rawsql import fetch_one, loaded_instance
from labelapp.services.assignment import (
    WITHDRAWN_WHILE_OPEN,
    QueueError,
    assignment_reclaim_expired,
    assignment_taken_back_said,
)
from labelapp.services.guidelines import guideline_current
from labelapp.services.privacy import scrub
from labelapp.services.repeats import repeat_maybe_schedule

LENGTH_CHECK_VALUES = frozenset(v for v, _ in Rating.LengthCheck.choices if v)


def length_check_asked(*, preference: int, words_a: int, words_b: int) -> bool:
    """True when the chosen answer is at least LENGTH_CHECK_RATIO times longer (in words) than the other.

    Then the rater is asked whether the extra length adds content, and must answer. The submit
    statement below computes the same condition in SQL (`_ASKED_SQL`); a test keeps them equal.
    """
    if preference == 0:
        return False
    chosen, other = (words_a, words_b) if preference < 0 else (words_b, words_a)
    return chosen >= settings.LABEL["LENGTH_CHECK_RATIO"] * max(other, 1)


class RatingError(Exception):
    """The rating cannot be stored; the message is for the rater. `field` names the input at fault."""

    field: str | None = None


class BadTimer(RatingError):
    """time_on_task_ms is not a reading of a page's clock (negative, or past what the column holds:
    2**31 - 1 ms, 24.8 days). It was clamped to 24 hours and stored as if measured."""

    field = "time_on_task_ms"


class FormKeyUsed(RatingError):
    """The idempotency key already carries this rater's rating of another comparison. The page swaps
    in the assignment's own key with this error (a plain error kept the bad key: every submit failed)."""

    field = "form_key"


MAX_TIME_ON_TASK_MS = 2**31 - 1  # Rating.time_on_task_ms is a PostgreSQL integer
ALREADY_RATED = "You have already rated this comparison; a rating cannot be changed here."
NO_LONGER_YOURS = "This comparison is no longer assigned to you (skipped or finished)."
HELD_FOR_REVIEW = (
    "This comparison's prompt was reported as holding personal data and is waiting for a staff review. "
    "Nothing was saved; please take the next one."
)
EXPIRED_UNDER_NEW_GUIDELINES = (
    "Your time on this comparison ran out, and guidelines version {number} came into force meanwhile. "
    "Nothing was saved: read and acknowledge the new version, then take the next comparison."
)


class AssignmentGone(RatingError):
    """The assignment can take no rating any more (finished, skipped, or expired and given to others):
    nothing the rater changes in the form helps; the next comparison is the way on."""


class LengthCheckRequired(RatingError):
    """The chosen answer is much longer and the rater did not say whether the extra length adds content.

    Answer with `length_check="adds_content"` or `"adds_nothing"` and submit again.
    """

    field = "length_check"

    def __init__(self, message: str = ""):
        super().__init__(
            message
            or "You picked the much longer answer: say whether its extra length adds content or adds nothing."
        )


class GuidelineNotAcknowledged(RatingError):
    """The rater has acknowledged no published guideline version; nothing can be rated yet."""


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
    # None: not measured by the page (no JavaScript; an API client that sends none): the service takes
    # the time from the lease's issue to the submit (time_on_task_measured). It was stored as 0, which
    # the quality figures read as an implausibly fast judgment: every no-JS rater was flagged for speed.
    time_on_task_ms: int | None = None

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
            time_on_task_ms=d.get("time_on_task_ms"),
        )


def rating_still_possible(assignment: Assignment) -> None:
    """AssignmentGone when the assignment was rated or skipped: no input makes it ratable again. A
    page asks this before showing an input error on it (the form of an old tab, sent without a
    choice, showed a finished comparison as ratable again), as the submit does before storing."""
    if assignment.status == Assignment.Status.DONE:
        raise AssignmentGone(ALREADY_RATED)
    if assignment.status == Assignment.Status.SKIPPED:
        raise AssignmentGone(NO_LONGER_YOURS)


def time_on_task_measured(issued_at) -> int:
    """The server's reading of a time on task: from the lease's issue to now, in ms (the fast path's SQL
    computes the same)."""
    ms = (timezone.now() - issued_at).total_seconds() * 1000
    return int(min(max(ms, 0), MAX_TIME_ON_TASK_MS))


def _validate(data: RatingInput) -> None:
    """Input rules that need no database (the form and serializer check types; this checks meaning)."""
    if data.preference not in range(-3, 4):
        raise RatingError("The preference must be between -3 (A much better) and 3 (B much better).")
    if data.length_check and data.length_check not in LENGTH_CHECK_VALUES:
        raise LengthCheckRequired("The length answer must be 'adds_content' or 'adds_nothing'.")
    if data.time_on_task_ms is not None and not 0 <= data.time_on_task_ms <= MAX_TIME_ON_TASK_MS:
        raise BadTimer(
            "The page's timer sent a bad value; please submit again "
            f"(time on task: 0 to {MAX_TIME_ON_TASK_MS} ms)."
        )
    for name in Rating.DIMENSIONS:
        value = data.scores.get(name)
        if value is not None and value not in range(-2, 3):
            raise RatingError(f"{name}: between -2 and 2, or empty.")


# The length check in SQL, over the joined answers `ra`/`rb` (same rule as length_check_asked).
_ASKED_SQL = """(%(preference)s <> 0 AND
    (CASE WHEN %(preference)s < 0 THEN ra.word_count ELSE rb.word_count END)
    >= %(ratio)s * GREATEST(CASE WHEN %(preference)s < 0 THEN rb.word_count ELSE ra.word_count END, 1))"""

# The common case in one statement: close the leased assignment and insert the rating with the newest
# guideline version the rater acknowledged. The UPDATE's row lock serialises a double submit (the second
# sees status 'done' and matches nothing), and a unique violation undoes the UPDATE with the INSERT.
# A missing length answer, no acknowledged version, or anything unusual (a lease past its deadline,
# expired, done, someone else's) matches no row and takes the ORM path below, which says why.
_SUBMIT_SQL = f"""
WITH ver AS (
    SELECT g.id FROM labelapp_guidelineacknowledgment k
    JOIN labelapp_guidelineversion g ON g.id = k.version_id
    WHERE k.rater_id = %(rater)s AND g.published_at IS NOT NULL
    ORDER BY g.number DESC LIMIT 1
), closed AS (
    UPDATE labelapp_assignment a SET status = 'done', finished_at = %(now)s
    FROM labelapp_comparison c, labelapp_response ra, labelapp_response rb, labelapp_prompt p
    WHERE a.id = %(assignment)s AND a.rater_id = %(rater)s AND a.status = 'leased'
      AND a.lease_expires_at > %(now)s
      AND c.id = a.comparison_id AND ra.id = c.response_a_id AND rb.id = c.response_b_id
      AND p.id = c.prompt_id AND p.consent AND NOT p.withheld
      AND EXISTS (SELECT 1 FROM ver)
      AND (%(length_check)s <> '' OR NOT {_ASKED_SQL})
    RETURNING a.id, a.comparison_id, a.shown_left, c.kind, {_ASKED_SQL} AS asked, a.issued_at
), inserted AS (
    INSERT INTO labelapp_rating
        (rater_id, comparison_id, assignment_id, preference, both_bad, helpfulness, factual_accuracy,
         harmlessness, conciseness, coherence, rationale, flag_pii, flag_unsafe, flag_broken, length_check,
         guideline_version_id, time_on_task_ms, idempotency_key, created_at, api_token_id)
    SELECT %(rater)s, closed.comparison_id, closed.id, %(preference)s, %(both_bad)s, %(helpfulness)s,
           %(factual_accuracy)s, %(harmlessness)s, %(conciseness)s, %(coherence)s, %(rationale)s,
           %(flag_pii)s, %(flag_unsafe)s, %(flag_broken)s,
           CASE WHEN closed.asked THEN %(length_check)s ELSE '' END,
           (SELECT id FROM ver),
           COALESCE(%(time_on_task_ms)s::integer, LEAST(GREATEST(
               EXTRACT(EPOCH FROM (%(now)s - closed.issued_at)) * 1000, 0), {MAX_TIME_ON_TASK_MS})::integer),
           %(key)s, %(now)s, %(token)s
    FROM closed
    RETURNING id, comparison_id, guideline_version_id, length_check, time_on_task_ms
)
SELECT inserted.id, inserted.comparison_id, inserted.guideline_version_id, inserted.length_check,
       closed.shown_left, closed.kind, inserted.time_on_task_ms
FROM inserted, closed
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
        "time_on_task_ms": data.time_on_task_ms,
        **{name: data.scores.get(name) for name in Rating.DIMENSIONS},
    }


def _submit_fast(
    *, rater, assignment_id: int, idempotency_key: uuid.UUID, data: RatingInput, token
) -> tuple[Rating, str, str] | None:
    now = timezone.now()
    fields = _rating_fields(data)
    row = fetch_one(
        _SUBMIT_SQL,
        {
            **fields,
            "now": now,
            "assignment": assignment_id,
            "rater": rater.pk,
            "key": idempotency_key,
            "token": token.pk if token is not None else None,
            "ratio": float(settings.LABEL["LENGTH_CHECK_RATIO"]),
        },
    )
    if row is None:
        return None
    rating_id, comparison_id, version_id, length_check, shown_left, kind, time_on_task_ms = row
    fields.update(length_check=length_check, time_on_task_ms=time_on_task_ms)
    rating = loaded_instance(
        Rating,
        id=rating_id,
        rater=rater,
        comparison_id=comparison_id,
        assignment_id=assignment_id,
        guideline_version_id=version_id,
        idempotency_key=idempotency_key,
        created_at=now,
        api_token=token,
        **fields,
    )
    return rating, shown_left, kind


def _acknowledged_version(rater) -> GuidelineVersion | None:
    return (
        GuidelineVersion.objects.filter(acknowledgments__rater=rater, published_at__isnull=False)
        .order_by("-number")
        .first()
    )


def rating_submit(
    *, rater, assignment_id: int, idempotency_key: uuid.UUID, data: RatingInput, token=None
) -> tuple[Rating, bool]:
    """Store the rating for the rater's assignment. Returns (rating, created). `token`: the API token
    the request came with (None: the page, the simulator), stored with the rating.

    Raises Assignment.DoesNotExist when the assignment is not this rater's (callers answer 404);
    LengthCheckRequired when the much longer answer was chosen without a length answer (ask it and
    submit again); RatingError (its subclasses included) with a message for anything else the rater
    can act on. Nothing is stored when it raises.
    """
    _validate(data)
    if data.rationale:
        # scrubbed like prompts and answers: a rationale quoting an address or naming a person was
        # stored and served as typed (staff API, review list), also after the prompt was withdrawn
        data = replace(data, rationale=scrub(data.rationale).text)
    if not rater.is_active:  # people cannot sign in then; the simulator's accounts came here anyway
        raise RatingError("This account is deactivated: it cannot rate.")
    try:
        fast = _submit_fast(
            rater=rater, assignment_id=assignment_id, idempotency_key=idempotency_key, data=data, token=token
        )
        if fast is not None:
            rating, shown_left, kind = fast
            repeat_maybe_schedule(
                rater=rater, comparison_id=rating.comparison_id, kind=kind, shown_left=shown_left
            )
            return rating, True
        return _submit_slow(
            rater=rater, assignment_id=assignment_id, idempotency_key=idempotency_key, data=data, token=token
        )
    except AssignmentGone:
        # the refusal says what became of it: a notice that it was taken back would say it again
        assignment_taken_back_said(rater=rater, assignment_id=assignment_id)
        raise
    except IntegrityError:
        # The unique constraints speak: this key or this comparison already has this rater's rating
        # (a duplicate submit on another connection, or a second assignment of the same comparison).
        existing = Rating.objects.filter(rater=rater, idempotency_key=idempotency_key).first()
        if existing is not None:
            if existing.assignment_id == assignment_id:
                return existing, False
            raise FormKeyUsed(
                "This form was already used for another comparison; please submit again."
            ) from None
        raise AssignmentGone(ALREADY_RATED) from None


def _submit_slow(
    *, rater, assignment_id: int, idempotency_key: uuid.UUID, data: RatingInput, token
) -> tuple[Rating, bool]:
    """Everything the one-statement path does not store, with the reason why."""
    with transaction.atomic():
        assignment = (
            Assignment.objects.select_for_update(of=("self",))
            .select_related("comparison__response_a", "comparison__response_b")
            .filter(pk=assignment_id, rater=rater)
            .first()
        )
        if assignment is None:
            raise Assignment.DoesNotExist
        if assignment.status == Assignment.Status.DONE:
            existing = Rating.objects.filter(assignment=assignment).first()
            if existing is not None and existing.idempotency_key == idempotency_key:
                return existing, False  # the same form sent twice: same answer, no second row
            raise AssignmentGone(ALREADY_RATED)
        version = _acknowledged_version(rater)
        if version is None:
            raise GuidelineNotAcknowledged("Read and acknowledge the rating guidelines before rating.")
        comparison = assignment.comparison
        asked = length_check_asked(
            preference=data.preference,
            words_a=comparison.response_a.word_count,
            words_b=comparison.response_b.word_count,
        )
        if asked and not data.length_check:
            raise LengthCheckRequired()
        if assignment.status not in (Assignment.Status.LEASED, Assignment.Status.EXPIRED):
            raise AssignmentGone(NO_LONGER_YOURS)  # skipped (in another tab): whatever its prompt became
        if not Prompt.objects.filter(pk=comparison.prompt_id, consent=True, withheld=False).exists():
            # Said first: the lease was taken back for this (a new guideline version since is not why).
            # A lease claimed in the instant of a withdrawal or a withholding escapes its take-back
            # (services/assignment.py: comparisons_withdraw); its rating is refused here too.
            raise AssignmentGone(WITHDRAWN_WHILE_OPEN)
        lapsed = assignment.status == Assignment.Status.EXPIRED or (
            assignment.status == Assignment.Status.LEASED and assignment.lease_expires_at <= timezone.now()
        )
        if lapsed:
            # Re-taking a lease that ran out (released yet or not) is a claim, and a claim needs a
            # prompt no personal-data flag holds back and the version in force acknowledged (an open
            # lease may finish under the one it was claimed under).
            if prompt_awaiting_review(comparison.prompt_id):
                raise AssignmentGone(HELD_FOR_REVIEW)
            current = guideline_current()
            if current is not None and current.pk != version.pk:
                raise AssignmentGone(EXPIRED_UNDER_NEW_GUIDELINES.format(number=current.number))
        if assignment.status == Assignment.Status.EXPIRED:
            try:
                assignment_reclaim_expired(assignment=assignment)
            except QueueError as exc:
                raise AssignmentGone(str(exc)) from exc
            # taken back, then re-taken when its prompt came back: rated after all, nothing to tell
            transaction.on_commit(
                lambda: assignment_taken_back_said(rater=rater, assignment_id=assignment_id)
            )

        fields = _rating_fields(data)
        if not asked:
            fields["length_check"] = ""  # only stored when the question was asked
        if fields["time_on_task_ms"] is None:
            fields["time_on_task_ms"] = time_on_task_measured(assignment.issued_at)
        rating = Rating.objects.create(
            rater=rater,
            comparison_id=assignment.comparison_id,
            assignment=assignment,
            guideline_version=version,
            idempotency_key=idempotency_key,
            api_token=token,
            **fields,
        )
        assignment.status = Assignment.Status.DONE
        assignment.finished_at = timezone.now()
        assignment.save(update_fields=["status", "finished_at"])
    repeat_maybe_schedule(
        rater=rater, comparison_id=comparison.pk, kind=comparison.kind, shown_left=assignment.shown_left
    )
    return rating, True


def gold_feedback(*, rating: Rating) -> dict | None:
    """After a gold pair, what the rater should have answered and why (only with GOLD_FEEDBACK on).

    Returns None when feedback is off or the pair was not gold, so nothing on the page hints that a
    pair was gold unless staff chose to tell raters.
    """
    if not settings.LABEL["GOLD_FEEDBACK"]:
        return None
    comparison = (
        Comparison.objects.filter(pk=rating.comparison_id, kind=Comparison.Kind.GOLD)
        .only("gold_preference", "gold_explanation")
        .first()
    )
    if comparison is None or comparison.gold_preference is None:
        return None
    expected = comparison.gold_preference
    given = (rating.preference > 0) - (rating.preference < 0)
    # in the rater's terms: the page shows "left" and "right", never A and B (their sides vary per rater)
    a_left = rating.assignment.shown_left == Assignment.Side.A
    side = None if expected == 0 else ("left" if (expected < 0) == a_left else "right")
    return {"agreed": given == expected, "expected_side": side, "explanation": comparison.gold_explanation}
