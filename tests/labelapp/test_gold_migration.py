"""Migration 0025 and its constraint: a gold pair carries its expected answer and an explanation."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from labelapp.models import Comparison
from tests.labelapp.migration_helpers import back_to_latest, migrate_to

BEFORE = [("labelapp", "0024_training_run_max_attempts_at_least_one")]
AFTER = [("labelapp", "0025_comparison_gold_has_answer")]


@pytest.mark.django_db
@pytest.mark.parametrize("fields", [{"gold_preference": None}, {"gold_explanation": ""}])
def test_gold_without_its_answer_or_explanation_is_refused(make_comparison, fields):
    # Only a script could store one: it was served as gold, and nothing could score it.
    c = make_comparison(kind=Comparison.Kind.GOLD)
    with pytest.raises(IntegrityError), transaction.atomic():
        Comparison.objects.filter(pk=c.pk).update(**fields)


@pytest.mark.django_db(transaction=True)
def test_gold_stored_without_its_answer_is_completed_or_made_normal():
    with back_to_latest():
        apps = migrate_to(BEFORE)
        prompt = apps.get_model("labelapp", "Prompt").objects.create(text="q", text_hash="h")
        response = apps.get_model("labelapp", "Response")
        answers = [
            response.objects.create(prompt=prompt, text=str(i), source_model="m", html="", pii_found={})
            for i in range(6)
        ]
        comparison = apps.get_model("labelapp", "Comparison")

        def pair(i, **fields):
            return comparison.objects.create(
                prompt=prompt, response_a=answers[2 * i], response_b=answers[2 * i + 1], **fields
            ).pk

        no_answer = pair(0, kind="gold", gold_explanation="why")
        no_explanation = pair(1, kind="gold", gold_preference=1)
        complete = pair(2, kind="gold", gold_preference=-1, gold_explanation="A is right")
        apps = migrate_to(AFTER)
        rows = apps.get_model("labelapp", "Comparison").objects.in_bulk()
        got = {pk: (rows[pk].kind, rows[pk].gold_preference, rows[pk].gold_explanation) for pk in rows}
        assert got == {
            no_answer: ("normal", None, ""),
            no_explanation: ("gold", 1, "No explanation was recorded when this pair was marked gold."),
            complete: ("gold", -1, "A is right"),
        }
