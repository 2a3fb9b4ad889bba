"""Ratings made straight in the ORM for export/retention tests (the rating flow has its own tests)."""

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


def rate(*, rater, comparison, preference, guideline, both_bad=False, flag_broken=False) -> Rating:
    now = timezone.now()
    assignment = Assignment.objects.create(
        rater=rater,
        comparison=comparison,
        shown_left="a",
        status="done",
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
        both_bad=both_bad,
        flag_broken=flag_broken,
        guideline_version=guideline,
        idempotency_key=uuid.uuid4(),
    )
