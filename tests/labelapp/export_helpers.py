"""Ratings made straight in the ORM for export, retention and quality tests (no queue involved)."""

from __future__ import annotations

import uuid

from django.utils import timezone

from labelapp.models import Assignment, Comparison, Prompt, Rating, Response


def make_pair(
    *,
    text="Why is the sky blue?",
    consent=True,
    source="feed",
    a="Rayleigh scattering.",
    b="Because of the way sunlight scatters off air molecules, blue more than red.",
    model_b="policy",
):
    prompt = Prompt.objects.create(text=text, consent=consent, source=source)
    ra = Response.objects.create(prompt=prompt, text=a, source_model="baseline", source_model_version="1")
    rb = Response.objects.create(prompt=prompt, text=b, source_model=model_b, source_model_version="2")
    return Comparison.objects.create(prompt=prompt, response_a=ra, response_b=rb, required_ratings=3)


def rate(*, rater, comparison, preference, guideline, a_left: bool = True, ms: int = 0, **fields) -> Rating:
    """A stored judgment (assignment + rating rows) without going through the queue; `fields` are
    further Rating fields (both_bad, flag_broken, ...)."""
    now = timezone.now()
    assignment = Assignment.objects.create(
        rater=rater,
        comparison=comparison,
        shown_left=Assignment.Side.A if a_left else Assignment.Side.B,
        status=Assignment.Status.DONE,
        issued_at=now,
        lease_expires_at=now,
        finished_at=now,
        form_key=uuid.uuid4(),
    )
    return Rating.objects.create(
        rater=rater,
        comparison=comparison,
        assignment=assignment,
        preference=preference,
        guideline_version=guideline,
        time_on_task_ms=ms,
        idempotency_key=uuid.uuid4(),
        **fields,
    )
