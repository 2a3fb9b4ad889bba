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


def test_demo_gold_explanations_name_no_side(tmp_path, monkeypatch):
    # "A gives confidently wrong advice": raters see left and right, and which of A and B is on the
    # left varies per rater, so the feedback named an answer nobody could find
    import re

    monkeypatch.setattr("labelapp.services.demo.ACCOUNTS_FILE", tmp_path / "accounts.json")
    demo_seed()
    explanations = list(Comparison.objects.filter(kind="gold").values_list("gold_explanation", flat=True))
    assert len(explanations) >= 20
    assert not [e for e in explanations if re.search(r"\b[AB]('s)?\b", e)]


def test_guidelines_teach_length_aware_judging(tmp_path, monkeypatch):
    monkeypatch.setattr("labelapp.services.demo.ACCOUNTS_FILE", tmp_path / "accounts.json")
    demo_seed()
    text = GuidelineVersion.objects.get(number=1).text.lower()
    assert "longer" in text and "concise" in text and "example" in text and "word count" in text


def test_demo_refuses_a_database_with_real_prompts_and_make_run_skips_it(tmp_path, monkeypatch):
    # `make run` with DATABASE_URL on a real database put 45 demo prompts (with consent: they train),
    # 24 gold pairs and a superuser into it
    from io import StringIO

    from django.core.management import CommandError, call_command

    from labelapp.services.demo import DemoRefused

    monkeypatch.setattr("labelapp.services.demo.ACCOUNTS_FILE", tmp_path / "accounts.json")
    Prompt.objects.create(text="A partner's question", source="partner")
    with pytest.raises(DemoRefused, match="1 prompt"):
        demo_seed()
    with pytest.raises(CommandError, match="--force"):
        call_command("demo", stdout=StringIO())
    out = StringIO()
    call_command("demo", "--skip-if-real", stdout=out)
    assert "skipped" in out.getvalue() and Prompt.objects.count() == 1
    from django_celery_beat.models import PeriodicTask

    assert PeriodicTask.objects.exists()  # make run's beat gets its jobs all the same
    assert not get_user_model().objects.filter(username="demo-admin").exists()
    call_command("demo", "--force", stdout=StringIO())
    assert Prompt.objects.count() > 40


def test_demo_leaves_a_draft_guideline_to_its_author(tmp_path, monkeypatch):
    # with only a draft, the demo published its own guidelines as v2 over it
    from labelapp.services.guidelines import guideline_create

    monkeypatch.setattr("labelapp.services.demo.ACCOUNTS_FILE", tmp_path / "accounts.json")
    guideline_create(text="# Ours\n\nWork in progress.", publish=False)
    result = demo_seed()
    assert result.guideline_number is None
    assert list(GuidelineVersion.objects.values_list("published_at", flat=True)) == [None]


def test_demo_prints_only_a_password_the_account_still_takes(tmp_path, monkeypatch):
    # a password changed since (or the file of another database) was printed as if it worked
    monkeypatch.setattr("labelapp.services.demo.ACCOUNTS_FILE", tmp_path / "accounts.json")
    first = demo_seed()
    rater = get_user_model().objects.get(username="demo-rater")
    rater.set_password("changed-by-its-owner-1")
    rater.save()
    second = demo_seed()
    assert second.accounts["demo-rater"] is None
    assert second.accounts["demo-admin"] == first.accounts["demo-admin"]


def test_demo_refuses_an_account_that_differs_only_in_case(tmp_path, monkeypatch):
    from labelapp.services.demo import DemoRefused

    monkeypatch.setattr("labelapp.services.demo.ACCOUNTS_FILE", tmp_path / "accounts.json")
    get_user_model().objects.create_user(username="Demo-Rater", password="x-pw-123456")
    with pytest.raises(DemoRefused, match="only in case"):
        demo_seed()
    assert not get_user_model().objects.filter(username="demo-admin").exists()
