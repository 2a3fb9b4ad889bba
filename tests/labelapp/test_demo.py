"""The demo project seeds what the issue asks for, and seeding twice duplicates nothing."""

import pytest
from django.contrib.auth import get_user_model

from labelapp.models import Comparison, GuidelineVersion, Prompt, Response
from labelapp.services.demo import demo_seed

pytestmark = pytest.mark.django_db


def test_demo_is_complete_and_idempotent(tmp_path, monkeypatch):
    monkeypatch.setattr("labelapp.services.demo.ACCOUNTS_FILE", tmp_path / "accounts.json")
    first = demo_seed()
    counts = (Prompt.objects.count(), Response.objects.count(), Comparison.objects.count())
    assert counts[0] >= 40 and counts[1] >= 2 * counts[0]
    assert set(Prompt.objects.values_list("category", flat=True)) >= {
        "facts",
        "howto",
        "coding",
        "advice",
        "creative",
    }
    assert all(first.accounts.values())
    assert (tmp_path / "accounts.json").stat().st_mode & 0o777 == 0o600

    second = demo_seed()
    assert (Prompt.objects.count(), Response.objects.count(), Comparison.objects.count()) == counts
    assert second.prompts_created == second.comparisons_created == 0
    assert second.accounts == first.accounts  # passwords kept, not regenerated
    assert GuidelineVersion.objects.count() == 1
    users = get_user_model().objects
    assert users.get(username="demo-admin").is_staff and not users.get(username="demo-rater").is_staff


def test_demo_has_pairs_that_differ_mainly_in_length(tmp_path, monkeypatch):
    monkeypatch.setattr("labelapp.services.demo.ACCOUNTS_FILE", tmp_path / "accounts.json")
    demo_seed()
    padded = 0
    for c in Comparison.objects.select_related("response_a", "response_b"):
        styles = {c.response_a.source_model_version, c.response_b.source_model_version}
        if styles == {"concise", "padded"}:
            words = sorted([c.response_a.word_count, c.response_b.word_count])
            assert words[1] >= 1.5 * words[0]
            padded += 1
    assert padded >= 10
    gold = Comparison.objects.filter(kind="gold")
    assert gold.count() >= 10 and not gold.filter(gold_preference__isnull=True).exists()
    # with GOLD_FEEDBACK on, a rater reads why: the demo's own "why" (it stored none before)
    assert "filler" in gold.get(external_id="demo:water-boiling-point:a-b").gold_explanation


def test_guidelines_teach_length_aware_judging(tmp_path, monkeypatch):
    monkeypatch.setattr("labelapp.services.demo.ACCOUNTS_FILE", tmp_path / "accounts.json")
    demo_seed()
    text = GuidelineVersion.objects.get(number=1).text.lower()
    assert "longer" in text and "concise" in text and "example" in text and "word count" in text
