"""Reads for the staff review list: flagged and both-bad ratings with their latest review."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet

from labelapp.models import Rating, RatingReview

NEEDS_REVIEW = Q(flag_pii=True) | Q(flag_unsafe=True) | Q(flag_broken=True) | Q(both_bad=True)


def review_queue(*, state: str = "open", flag: str = "") -> QuerySet[Rating]:
    """Ratings for the review list. state: "open" (no review yet), "done" or "all"; flag narrows it
    to one of pii / unsafe / broken / both_bad (the partial index rating_needs_review covers them)."""
    reviewed = RatingReview.objects.filter(rating=OuterRef("pk"))
    qs = Rating.objects.filter(NEEDS_REVIEW)
    if flag in {"pii", "unsafe", "broken"}:
        qs = qs.filter(**{f"flag_{flag}": True})
    elif flag == "both_bad":
        qs = qs.filter(both_bad=True)
    if state == "open":
        qs = qs.exclude(Exists(reviewed))
    elif state == "done":
        qs = qs.filter(Exists(reviewed))
    return (
        qs.select_related(
            "rater",
            "api_token__created_by",
            "comparison__prompt",
            "comparison__response_a",
            "comparison__response_b",
        )
        .prefetch_related("reviews__reviewer")
        .order_by("-created_at", "-id")
    )
