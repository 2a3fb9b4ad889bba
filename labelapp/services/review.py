"""Staff review of ratings: confirm or exclude a rating with a reason, and withhold prompts with
personal data.

Ratings are evidence and never change; a review (RatingReview) sits beside one. An excluded rating
never trains or is exported (`Rating.objects.not_excluded()`). Confirming a rating flagged as holding
personal data confirms that its PROMPT holds it: the prompt is withheld (never served to raters again;
the queue's claim also checks `Prompt.withheld`) and its open leases are taken back. Until a
personal-data flag has a review, every rating on its prompt is held back from exports and training
(`Rating.objects.usable()`); any decision releases that hold.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q

from labelapp.models import Comparison, Prompt, Rating, RatingReview
from labelapp.services.assignment import comparisons_withdraw
from labelapp.services.roles import permission_check

REASON_MAX = 500


class ReviewError(Exception):
    """The review was refused; the message is for the staff member."""


def rating_review_add(*, rating: Rating, decision: str, reason: str, reviewer) -> RatingReview:
    """Record a staff decision on a rating. The reason is required and kept with the reviewer's name."""
    if reviewer is None:
        raise ReviewError("A review needs the staff member who made it.")
    permission_check(reviewer, "rating_review")
    if decision not in RatingReview.Decision.values:
        raise ReviewError("Choose confirm or exclude.")
    reason = (reason or "").strip()
    if not reason:
        raise ReviewError("Give a reason; it is recorded with the decision.")
    if "\x00" in reason:
        # PostgreSQL refuses NUL in text columns: without this the insert was a 500.
        raise ReviewError("The reason contains a NUL character (U+0000); remove it.")
    if len(reason) > REASON_MAX:  # it was cut to fit without a word: a record must say what was typed
        raise ReviewError(f"Keep the reason to {REASON_MAX} characters (it has {len(reason)}).")
    with transaction.atomic():
        # one decision at a time per rating: a double-clicked form (or two tabs) posting the same
        # decision recorded it twice; the repeat now gets the row already there
        Rating.objects.select_for_update().filter(pk=rating.pk).values("pk").first()
        latest = rating.reviews.order_by("-created_at", "-pk").first()
        if latest is not None and (latest.decision, latest.reason, latest.reviewer_id) == (
            decision,
            reason,
            reviewer.pk,
        ):
            return latest
        review = RatingReview.objects.create(
            rating=rating, decision=decision, reason=reason, reviewer=reviewer
        )
        if decision == RatingReview.Decision.CONFIRM and rating.flag_pii:
            prompt_withhold(prompt_id=rating.comparison.prompt_id)
    return review


def prompt_withhold(*, prompt_id: int) -> int:
    """Withhold a prompt from raters, and the prompts that ask the same question (`question_hash`:
    the same text in another case or spacing holds the same personal data; a confirmed report
    withheld only the prompt flagged, and its twin went on being served, trained on and exported):
    deactivate their comparisons and take back open leases on them.

    Returns how many leases were taken back. Ratings already given stay (staff exclude them one by one).
    """
    with transaction.atomic():
        question = Prompt.objects.filter(pk=prompt_id).values_list("question_hash", flat=True).first()
        prompts = Prompt.objects.filter(pk=prompt_id)
        if question:
            prompts = Prompt.objects.filter(Q(pk=prompt_id) | Q(question_hash=question))
        prompt_ids = list(prompts.values_list("pk", flat=True))
        Prompt.objects.filter(pk__in=prompt_ids).update(withheld=True)
        ids = Comparison.objects.filter(prompt_id__in=prompt_ids).values_list("id", flat=True)
        return comparisons_withdraw(ids)
