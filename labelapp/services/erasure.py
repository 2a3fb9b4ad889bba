"""Erasure: the words of a prompt that is out of use removed from the database on request, before
retention would delete it (a data subject's request, a confirmed personal-data report).

A withdrawal or a withholding takes a prompt out of training, exports and the queue at once, but its
text stayed in the database for staff to read, and with the default retention (none) for good; a
rated prompt's text cannot be edited either (the ratings judged it as it stands). `prompts_erase`
replaces, for each prompt withdrawn or withheld:
- the prompt's text (and its rendered html) and every answer's, the policy samples' among them;
- the words written about it: the ratings' rationales, the skip reasons, the gold explanations, the
  reasons of its consent changes and of the reviews of its ratings (they quote or name what it held).

What stays: the rows and their ids, the judgments (a rating is evidence; its rationale is the one part
of it ever changed, and only here), counts, and the text's hashes, which keep the same text from being
imported again as a new prompt with consent (ingest refuses a text whose prompt was erased). Export
files written before and trained models are out of its reach, as they are of a withdrawal (README).
An erased prompt's consent cannot be restored: there is nothing left to rate.

Reached through `manage.py erase_prompts` and the Prompt admin's action; a staff account needs the
permission to change consent (the data-manager role).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from labelapp.models import (
    Assignment,
    Comparison,
    Prompt,
    PromptConsentChange,
    Rating,
    RatingReview,
    Response,
)
from labelapp.services.roles import permission_check

log = logging.getLogger(__name__)

ERASED = "[erased]"


class ErasureError(ValueError):
    """The prompt may not be erased (it is in use); the message says what to do first."""


@dataclass
class ErasureReport:
    """Per kind, how many rows had their words replaced; `erased` the prompts erased now, `already`
    those erased before (nothing done)."""

    erased: list[int] = field(default_factory=list)
    already: list[int] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def prompt_erase(*, prompt: Prompt, by=None) -> dict[str, int] | None:
    """Erase one prompt's words (see the module). Returns the counts by kind, or None when it was
    erased before. ErasureError for a prompt in use; NotPermitted when `by` may not (None: a command)."""
    permission_check(by, "prompt_erase")
    with transaction.atomic():
        locked = Prompt.objects.select_for_update().filter(pk=prompt.pk).first()
        if locked is None:
            raise ErasureError(f"Prompt #{prompt.pk} no longer exists.")
        if locked.erased_at is not None:
            return None
        if locked.comparable:
            raise ErasureError(_in_use(locked.pk))
        counts = _replace_words(locked.pk)
    log.info("prompt #%s erased by %s", locked.pk, getattr(by, "username", "a command"))
    return counts


def erasure_refusal(prompt_ids) -> str | None:
    """Why `prompts_erase` would refuse these ids (the first that does not exist or is in use), or
    None: checked for all of them before any is erased, and by a dry run."""
    found = {p.pk: p for p in Prompt.objects.filter(pk__in=list(prompt_ids))}
    for pk in prompt_ids:
        prompt = found.get(pk)
        if prompt is None:
            return f"No prompt #{pk}."
        if prompt.erased_at is None and prompt.comparable:
            return _in_use(pk)
    return None


def _in_use(pk: int) -> str:
    return (
        f"Prompt #{pk} is in use (consent in force, not withheld): withdraw its consent first, with the "
        "reason, then erase it."
    )


def prompts_erase(*, prompt_ids, by=None) -> ErasureReport:
    """`prompt_erase` for each id, each in its own transaction. ErasureError, before any is erased,
    when one does not exist or is in use (a refusal half-way erased the ids before it and said
    nothing of them)."""
    refusal = erasure_refusal(prompt_ids)
    if refusal:
        raise ErasureError(f"{refusal} Nothing was erased.")
    report = ErasureReport()
    for pk in prompt_ids:
        prompt = Prompt.objects.filter(pk=pk).first()
        if prompt is None:
            raise ErasureError(f"No prompt #{pk}.")
        counts = prompt_erase(prompt=prompt, by=by)
        if counts is None:
            report.already.append(pk)
            continue
        report.erased.append(pk)
        for kind, n in counts.items():
            report.counts[kind] = report.counts.get(kind, 0) + n
    return report


def prompts_out_of_use():
    """Prompts withdrawn or withheld and not erased yet (what `erase_prompts --all` erases)."""
    return Prompt.objects.filter(Q(consent=False) | Q(withheld=True), erased_at__isnull=True).order_by("pk")


def _replace_words(prompt_id: int) -> dict[str, int]:
    """Every text of the prompt replaced by ERASED (or emptied where empty means "none given"), by
    UPDATE: a save() would compute the dedup hashes from the placeholder."""
    ratings = Rating.objects.filter(comparison__prompt_id=prompt_id)
    comparisons = Comparison.objects.filter(prompt_id=prompt_id)
    counts = {
        "prompts": Prompt.objects.filter(pk=prompt_id).update(
            text=ERASED, html=f"<p>{ERASED}</p>", erased_at=timezone.now()
        ),
        "answers": Response.objects.filter(prompt_id=prompt_id).update(text=ERASED, html=f"<p>{ERASED}</p>"),
        "rationales": ratings.exclude(rationale="").update(rationale=""),
        "skip_reasons": Assignment.objects.filter(comparison__in=comparisons)
        .exclude(skip_reason="")
        .update(skip_reason=ERASED),
        # a gold pair needs an explanation (a database constraint): the placeholder, not ""
        "gold_explanations": comparisons.exclude(gold_explanation="").update(gold_explanation=ERASED),
        "consent_reasons": PromptConsentChange.objects.filter(prompt_id=prompt_id).update(reason=ERASED),
        "review_reasons": RatingReview.objects.filter(rating__in=ratings).update(reason=ERASED),
    }
    return counts
