"""Repeats: a comparison a rater judged comes back to them later with left and right swapped.

The pair of ratings measures test-retest consistency (labelapp/metrics.py reads `repeat_of`). A repeat
is its own Comparison row (kind=repeat, the same two answers, `repeat_of` the original) because a
rater has one rating per comparison; it is served only to `repeat_for`, not before `available_at`,
with `forced_left` the side that was on the right the first time. The queue serves a due repeat
before anything else (services/assignment.py).
"""

from __future__ import annotations

import random
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.utils import timezone

from labelapp.models import Assignment, Comparison

_SWAPPED = {Assignment.Side.A: Assignment.Side.B, Assignment.Side.B: Assignment.Side.A}

# One INSERT ... SELECT: copy the answers of the original without reading it first. Never on a prompt
# without consent or withheld (no comparison is made on one): its row is read under a share lock, so a
# withdrawal committing meanwhile is either waited for and seen, or waits and deactivates the repeat
# too (a repeat inserted just after the withdrawal's check stayed active on a withdrawn prompt).
_REPEAT_SQL = """
INSERT INTO labelapp_comparison
    (prompt_id, response_a_id, response_b_id, kind, priority, required_ratings, claimed_count,
     gold_preference, gold_explanation, repeat_of_id, repeat_for_id, available_at, forced_left,
     is_active, external_id, created_at)
SELECT c.prompt_id, c.response_a_id, c.response_b_id, 'repeat', 0, 1, 0, NULL, '', c.id, %(rater)s,
       %(due)s, %(left)s, true, NULL, %(now)s
FROM labelapp_comparison c JOIN labelapp_prompt p ON p.id = c.prompt_id
WHERE c.id = %(comparison)s AND c.kind = 'normal' AND p.consent AND NOT p.withheld
FOR SHARE OF p
"""


def repeat_maybe_schedule(*, rater, comparison_id: int, kind: str, shown_left: str) -> bool:
    """After a rating: with probability REPEAT_RATE schedule a swapped repeat of a normal pair."""
    rate = settings.LABEL["REPEAT_RATE"]
    if kind != Comparison.Kind.NORMAL or rate <= 0 or random.random() >= rate:
        return False
    return repeat_schedule(rater=rater, comparison_id=comparison_id, shown_left=shown_left)


def repeat_schedule(*, rater, comparison_id: int, shown_left: str, delay: timedelta | None = None) -> bool:
    """Schedule the repeat now (the caller decided). Returns False if the pair is not a normal one."""
    now = timezone.now()
    if delay is None:
        delay = timedelta(minutes=settings.LABEL["REPEAT_DELAY_MINUTES"])
    with connection.cursor() as cursor:
        cursor.execute(
            _REPEAT_SQL,
            {
                "rater": rater.pk,
                "comparison": comparison_id,
                "due": now + delay,
                "left": _SWAPPED.get(shown_left, Assignment.Side.A),
                "now": now,
            },
        )
        return cursor.rowcount == 1
