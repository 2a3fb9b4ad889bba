"""Rating guidelines: drafts, publishing a new version, raters acknowledging the version in force."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from labelapp.models import GuidelineAcknowledgment, GuidelineVersion


class GuidelineError(Exception):
    """A guideline operation was refused; the message is for the user."""


def guideline_current() -> GuidelineVersion | None:
    """The newest published version: the one in force."""
    return GuidelineVersion.objects.filter(published_at__isnull=False).order_by("-number").first()


def guideline_create(
    *, text: str, author=None, title: str = "Rating guidelines", changelog: str = "", publish: bool = False
) -> GuidelineVersion:
    if not (text or "").strip():
        raise GuidelineError("The guideline text is empty.")
    for _ in range(3):
        try:
            with transaction.atomic():
                number = (GuidelineVersion.objects.aggregate(m=Max("number"))["m"] or 0) + 1
                return GuidelineVersion.objects.create(
                    number=number,
                    text=text,
                    title=title,
                    changelog=changelog,
                    author=author,
                    published_at=timezone.now() if publish else None,
                )
        except IntegrityError:
            continue  # two admins saved at once; take the next number
    raise GuidelineError("Could not allocate a version number; try again.")


def guideline_publish(*, version: GuidelineVersion) -> GuidelineVersion:
    """Publish a draft. Published versions are immutable history: ratings point at them."""
    if version.published_at is not None:
        raise GuidelineError(f"Version {version.number} is already published.")
    newest = guideline_current()
    if newest is not None and newest.number > version.number:
        raise GuidelineError(f"Version {newest.number} is newer; edit a new draft instead.")
    version.published_at = timezone.now()
    version.save(update_fields=["published_at"])
    return version


def guideline_acknowledge(*, rater, version: GuidelineVersion) -> GuidelineAcknowledgment:
    if version.published_at is None:
        raise GuidelineError("A draft cannot be acknowledged.")
    ack, _ = GuidelineAcknowledgment.objects.get_or_create(rater=rater, version=version)
    return ack


def guideline_needs_ack(*, rater) -> GuidelineVersion | None:
    """The version in force if this rater has not acknowledged it yet, else None."""
    current = guideline_current()
    if current is None:
        return None
    if GuidelineAcknowledgment.objects.filter(rater=rater, version=current).exists():
        return None
    return current
