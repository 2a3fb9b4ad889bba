"""Recorded consent changes on a stored prompt: a withdrawal (the data subject takes consent back) and,
rarely, a restoration.

`Prompt.consent` is what is in force; each change also writes a PromptConsentChange (who, when, why),
in the same transaction, under a row lock on the prompt, so two changes at once apply one after the
other and a repeat of the value in force is refused rather than recorded twice. Ingest never changes a
stored prompt's consent (services/ingest.py); this module is the only way, reached through
`POST /api/prompts/{id}/consent/`, `manage.py prompt_consent` and the Prompt admin's actions.

A withdrawal takes effect at once:
- training and exports read `Prompt.consent` when they run (`Rating.objects.usable()`; a queued
  reward-model run re-checks its snapshot at start), so the prompt's ratings leave both;
- raters: the queue's claim (services/assignment.py) never serves a prompt without consent, and the
  withdrawal also deactivates the prompt's active comparisons and takes back open leases on them
  (`assignment.comparisons_withdraw`, as `review.prompt_withhold` does for personal data), so a
  restoration knows what to put back. A rating sent on a taken-back lease is refused ("withdrawn");
  ratings already given stay, as evidence, and no longer train.
A restoration puts back the comparisons the latest withdrawal took out (unless the prompt was
withheld since: that keeps it from raters on its own account).
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models.query import QuerySet

from labelapp.models import Assignment, Comparison, Prompt, PromptConsentChange
from labelapp.services.assignment import comparisons_withdraw
from labelapp.services.roles import permission_check

log = logging.getLogger(__name__)

REASON_MAX = PromptConsentChange.REASON_MAX


class ConsentError(ValueError):
    """The consent change was refused; the message says why (for staff, the API and the command)."""


def _clean_reason(reason) -> str:
    if not isinstance(reason, str):
        raise ConsentError("The reason must be text.")
    reason = reason.strip()
    if not reason:
        raise ConsentError("Give a reason: it is recorded with the change, with your name and the time.")
    if "\x00" in reason:
        # PostgreSQL refuses NUL in text columns: without this the insert was a server error.
        raise ConsentError("The reason contains a NUL character (U+0000); remove it.")
    if len(reason) > REASON_MAX:  # never cut: a record must say what was typed
        raise ConsentError(f"Keep the reason to {REASON_MAX} characters (it has {len(reason)}).")
    return reason


def _word(consent: bool) -> str:
    return "restored" if consent else "withdrawn"


def prompt_consent_set(
    *, prompt: Prompt, consent: bool, reason: str, by, on_behalf: bool = False
) -> PromptConsentChange:
    """Set `prompt`'s consent to `consent` and record who (`by`: a staff account, or None for a command
    run without one), when and why. ConsentError, and nothing written, for an empty, over-long or NUL
    reason, a non-boolean value, or a change to the value already in force; NotPermitted when `by` lacks
    the permission to change consent. `on_behalf`: the system acts (a command on the server) and `by`
    is only recorded as the staff member who asked, which any staff account may be."""
    if not isinstance(consent, bool):
        raise ConsentError("consent must be true or false.")
    if on_behalf:
        if by is not None and not by.is_staff:
            raise ConsentError("Only staff change a prompt's consent: name a staff account.")
    else:
        permission_check(by, "prompt_consent")
    reason = _clean_reason(reason)
    with transaction.atomic():
        locked = Prompt.objects.select_for_update().filter(pk=prompt.pk).first()
        if locked is None:
            raise ConsentError(f"Prompt #{prompt.pk} no longer exists.")
        if consent and locked.erased_at is not None:
            raise ConsentError(
                f"Prompt #{locked.pk} was erased: its text and answers are gone, so nothing is left to "
                "rate or train on."
            )
        if locked.consent == consent:
            raise ConsentError(
                f"Prompt #{locked.pk} already has consent={str(consent).lower()}: nothing to change "
                f"(a change is recorded only when it changes something)."
            )
        Prompt.objects.filter(pk=locked.pk).update(consent=consent)
        comparison_ids = _put_back(locked) if consent else _take_out(locked)
        change = PromptConsentChange.objects.create(
            prompt=locked, consent=consent, reason=reason, changed_by=by, comparison_ids=comparison_ids
        )
    prompt.consent = consent
    # not the reason: it may name the person who asked, and a log line is out of retention's reach
    log.info(
        "prompt #%s consent %s by %s (%d comparisons); reason in consent change #%s",
        prompt.pk,
        _word(consent),
        getattr(by, "username", "a command"),
        len(comparison_ids),
        change.pk,
    )
    return change


def prompt_consent_changes(*, prompt: Prompt) -> QuerySet[PromptConsentChange]:
    """The prompt's recorded consent changes, oldest first."""
    return (
        PromptConsentChange.objects.filter(prompt=prompt)
        .select_related("changed_by")
        .order_by("created_at", "pk")
    )


def _take_out(prompt: Prompt) -> list[int]:
    """Deactivate the prompt's active comparisons and take back every open lease on its comparisons,
    inactive ones too (staff may close a comparison a rater holds: that lease stayed open, its slot
    counted); the ids of those that were active (what a restoration puts back)."""
    rows = Comparison.objects.filter(prompt=prompt)
    active = list(rows.filter(is_active=True).order_by("id").values_list("id", flat=True))
    held = rows.filter(is_active=False, assignments__status=Assignment.Status.LEASED)
    comparisons_withdraw({*active, *held.values_list("id", flat=True)})
    return active


def _put_back(prompt: Prompt) -> list[int]:
    """Reactivate what the prompt's latest withdrawal deactivated (nothing while it is withheld); the
    ids reactivated."""
    if prompt.withheld:
        return []
    withdrawal = (
        PromptConsentChange.objects.filter(prompt=prompt, consent=False)
        .order_by("-created_at", "-pk")
        .first()
    )
    if withdrawal is None:  # consent was never given (ingested without it): nothing was taken out
        return []
    ids = sorted(
        Comparison.objects.filter(
            pk__in=withdrawal.comparison_ids, prompt=prompt, is_active=False
        ).values_list("id", flat=True)
    )
    for comparison_id in ids:  # id order, as everywhere comparison rows are locked
        Comparison.objects.filter(pk=comparison_id).update(is_active=True)
    return ids
