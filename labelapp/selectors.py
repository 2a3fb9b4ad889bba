"""Reads for pages and the API (HackSoft style: no writes here)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q
from django.utils import timezone

from labelapp.models import Assignment, QueueSnapshot, Rating


@dataclass(frozen=True)
class ShownAnswer:
    """One answer as the rater sees it: a side and a label, never the model that wrote it."""

    side: str  # "left" / "right"
    label: str  # "A" / "B"
    html: str
    words: int


@dataclass(frozen=True)
class RatingView:
    assignment: Assignment
    prompt_html: str
    left: ShownAnswer
    right: ShownAnswer
    words_a: int
    words_b: int
    word_diff: int  # |A - B| in words
    longer: str  # "A", "B" or "" when equal
    length_ratio: float  # longer / shorter (>= 1)


def rating_view(*, assignment: Assignment) -> RatingView:
    comparison = assignment.comparison
    a, b = comparison.response_a, comparison.response_b
    shown_a = ShownAnswer("", "A", a.html, a.word_count)
    shown_b = ShownAnswer("", "B", b.html, b.word_count)
    first, second = (shown_a, shown_b) if assignment.shown_left == Assignment.Side.A else (shown_b, shown_a)
    longer = "A" if a.word_count > b.word_count else "B" if b.word_count > a.word_count else ""
    shorter_words = max(1, min(a.word_count, b.word_count))
    return RatingView(
        assignment=assignment,
        prompt_html=comparison.prompt.html,
        left=ShownAnswer("left", first.label, first.html, first.words),
        right=ShownAnswer("right", second.label, second.html, second.words),
        words_a=a.word_count,
        words_b=b.word_count,
        word_diff=abs(a.word_count - b.word_count),
        longer=longer,
        length_ratio=max(a.word_count, b.word_count) / shorter_words,
    )


def rater_progress(*, rater) -> dict[str, int]:
    start_of_day = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    return Rating.objects.filter(rater=rater).aggregate(
        total=Count("id"), today=Count("id", filter=Q(created_at__gte=start_of_day))
    )


def assignment_for_page(*, rater, assignment_id: int) -> Assignment:
    """The rater's own assignment with everything the page shows, in one query (DoesNotExist for
    others', and for one whose prompt's consent was withdrawn or that was withheld for personal data:
    the API showed those texts to the rater who had judged them, whatever the assignment's state)."""
    return Assignment.objects.select_related(
        "comparison__prompt", "comparison__response_a", "comparison__response_b"
    ).get(pk=assignment_id, rater=rater, comparison__prompt__consent=True, comparison__prompt__withheld=False)


def queue_latest_snapshot() -> QueueSnapshot | None:
    return QueueSnapshot.objects.first()


def trust_weights(*, rater_ids) -> dict[int, float]:
    """Trust weight per rater id (1.0 for raters without a profile yet)."""
    from labelapp.models import RaterProfile

    found = dict(
        RaterProfile.objects.filter(rater_id__in=set(rater_ids)).values_list("rater_id", "trust_weight")
    )
    return {rid: found.get(rid, 1.0) for rid in set(rater_ids)}
