"""Erasure (services/erasure.py): the words of a withdrawn or withheld prompt removed on request.

Before: nothing could remove them. A withdrawal took the prompt out of training, exports and the queue,
but its text, its answers, the rationales quoting it and the reasons naming the person stayed in the
database, served to staff, for good with the default retention; the admin could not even edit a rated
prompt's text, and could not delete it.
"""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from labelapp.models import (
    Assignment,
    Comparison,
    Prompt,
    PromptConsentChange,
    Rating,
    RatingReview,
    Response,
)
from labelapp.services.comparisons import prompt_text_fixed, response_text_fixed
from labelapp.services.consent import ConsentError, prompt_consent_set
from labelapp.services.erasure import ERASED, ErasureError, prompt_erase
from labelapp.services.ingest import AnswerIn, IngestError, PromptIn, ingest_prompts, responses_add
from labelapp.services.review import prompt_withhold
from labelapp.services.roles import NotPermitted
from tests.labelapp.export_helpers import make_pair, rate

pytestmark = pytest.mark.django_db

SECRET = "Quentin Vorlauf of Zelmoorlane"  # nothing the scrubber replaces: imported as typed


def _withdrawn_with_words(rater, other_rater, staff, guideline) -> Comparison:
    """A rated prompt whose words are everywhere: answers, a rationale, a skip reason, a gold
    explanation, a review's reason and the withdrawal's reason."""
    from labelapp.services.review import rating_review_add

    c = make_pair(text=f"Write to {SECRET}.", a=f"Dear {SECRET},", b="Hello.")
    rating = rate(rater=rater, comparison=c, preference=-2, guideline=guideline, rationale=f"names {SECRET}")
    rate(rater=other_rater, comparison=c, preference=1, guideline=guideline, flag_pii=True)
    Assignment.objects.filter(rating__isnull=True).update(skip_reason=f"it names {SECRET}")
    Assignment.objects.filter(pk=rating.assignment_id).update(skip_reason="")
    Comparison.objects.filter(pk=c.pk).update(kind="gold", gold_preference=-1, gold_explanation=SECRET)
    rating_review_add(
        rating=Rating.objects.get(flag_pii=True), decision="exclude", reason=SECRET, reviewer=staff
    )
    prompt_consent_set(prompt=c.prompt, consent=False, reason=f"{SECRET} asked by phone", by=staff)
    return c


def _texts_left() -> list[str]:
    """Every stored text that still holds the secret."""
    found = []
    for model, fields in [
        (Prompt, ["text", "html"]),
        (Response, ["text", "html"]),
        (Rating, ["rationale"]),
        (Assignment, ["skip_reason"]),
        (Comparison, ["gold_explanation"]),
        (PromptConsentChange, ["reason"]),
        (RatingReview, ["reason"]),
    ]:
        for name in fields:
            if model.objects.filter(**{f"{name}__contains": "Zelmoorlane"}).exists():
                found.append(f"{model.__name__}.{name}")
    return found


def test_erasing_a_withdrawn_prompt_replaces_every_word_and_keeps_ids_judgments_and_hashes(
    rater, other_rater, staff, guideline
):
    c = _withdrawn_with_words(rater, other_rater, staff, guideline)
    assert len(_texts_left()) == 8
    prompt = Prompt.objects.get(pk=c.prompt_id)
    hashes = (prompt.text_hash, prompt.question_hash)
    judgments = sorted(Rating.objects.values_list("pk", "preference"))
    out = StringIO()
    call_command("erase_prompts", str(prompt.pk), stdout=out)
    assert "Erased 1 prompt(s) (1 prompts, 2 answers, 1 rationales" in out.getvalue()
    assert _texts_left() == []
    prompt.refresh_from_db()
    assert (
        prompt.text == ERASED
        and prompt.erased_at is not None
        and (prompt.text_hash, prompt.question_hash) == hashes
    )
    assert sorted(Rating.objects.values_list("pk", "preference")) == judgments
    assert Comparison.objects.get(pk=c.pk).gold_explanation == ERASED  # a gold pair keeps an explanation
    again = StringIO()
    call_command("erase_prompts", str(prompt.pk), stdout=again)
    assert "erased before" in again.getvalue()


def test_an_erased_prompt_stays_out_of_use_and_its_text_does_not_come_back(
    rater, other_rater, staff, guideline
):
    c = _withdrawn_with_words(rater, other_rater, staff, guideline)
    prompt = prompt_erase(prompt=c.prompt, by=staff) and Prompt.objects.get(pk=c.prompt_id)
    with pytest.raises(ConsentError, match="was erased"):
        prompt_consent_set(prompt=prompt, consent=True, reason="asked again", by=staff)
    item = PromptIn(text=f"Write to {SECRET}.", source="feed", consent=False, answers=[AnswerIn("x", "m")])
    with pytest.raises(IngestError, match="was erased"):
        ingest_prompts(items=[item])
    with pytest.raises(IngestError, match="takes no answers"):
        responses_add(prompt=prompt, answers=[AnswerIn(f"{SECRET} again", "m")])
    assert prompt_text_fixed(prompt=prompt) and response_text_fixed(response=prompt.responses.first())
    assert _texts_left() == []


def test_a_prompt_in_use_is_refused_and_a_withheld_one_is_erased(rater, staff, make_user, guideline):
    in_use = make_pair(text="Fine question?")
    with pytest.raises(ErasureError, match="in use"):
        prompt_erase(prompt=in_use.prompt, by=staff)
    with pytest.raises(CommandError, match="in use"):
        call_command("erase_prompts", str(in_use.prompt_id))
    with pytest.raises(CommandError, match="in use.*Nothing was erased"):  # a dry run said "Would erase"
        call_command("erase_prompts", str(in_use.prompt_id), "--dry-run")
    withheld = make_pair(text=f"Call {SECRET}?")
    prompt_withhold(prompt_id=withheld.prompt_id)
    # one in use among them: none is erased (the ones before it were, and nothing said so)
    with pytest.raises(CommandError, match="Nothing was erased"):
        call_command("erase_prompts", str(withheld.prompt_id), str(in_use.prompt_id))
    assert len(_texts_left()) == 2  # the withheld prompt's text and html
    plain = make_user("plain-staff", staff=True, roles=())
    with pytest.raises(NotPermitted):
        prompt_erase(prompt=withheld.prompt, by=plain)
    call_command("erase_prompts", "--all", "--dry-run", stdout=StringIO())
    assert _texts_left()  # a dry run changes nothing
    call_command("erase_prompts", "--all", stdout=StringIO())
    assert _texts_left() == [] and Prompt.objects.get(pk=in_use.prompt_id).text == "Fine question?"


def test_the_admin_action_erases_after_confirmation(client, rater, other_rater, staff, guideline):
    c = _withdrawn_with_words(rater, other_rater, staff, guideline)
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    url = reverse("admin:labelapp_prompt_changelist")
    asked = client.post(url, {"action": "erase_words", "_selected_action": [c.prompt_id]})
    assert asked.status_code == 200 and b"Erase for good" in asked.content and _texts_left()
    done = client.post(
        url,
        {"action": "erase_words", "_selected_action": [c.prompt_id], "apply": "1", "confirm": "on"},
        follow=True,
    )
    assert "1 prompt(s) erased" in done.content.decode() and _texts_left() == []
    page = client.get(reverse("admin:labelapp_prompt_change", args=[c.prompt_id])).content.decode()
    assert 'name="text"' not in page and 'name="responses-0-text"' not in page  # nothing to type back in


def test_a_save_of_an_erased_prompt_keeps_the_hashes_of_its_words(
    client, rater, other_rater, staff, guideline
):
    # Prompt.save computed the hashes from "[erased]": an admin edit of the category let the erased
    # text be imported again, with consent
    c = _withdrawn_with_words(rater, other_rater, staff, guideline)
    prompt_erase(prompt=c.prompt, by=staff)
    prompt = Prompt.objects.get(pk=c.prompt_id)
    hashes = (prompt.text_hash, prompt.question_hash)
    prompt.category = "edited"
    prompt.save()
    prompt.refresh_from_db()
    assert (prompt.text_hash, prompt.question_hash) == hashes and prompt.text == ERASED
    item = PromptIn(text=f"Write to {SECRET}.", source="feed", consent=True)
    with pytest.raises(IngestError, match="consent conflict|was erased"):
        ingest_prompts(items=[item])


def test_a_policy_round_stores_no_answer_on_a_prompt_erased_while_it_ran(
    rater, other_rater, staff, guideline
):
    # the round's recording wrote its new answers beside the erased words, out of a later erasure's reach
    from labelapp.services.policy import _lock_round_prompts

    c = _withdrawn_with_words(rater, other_rater, staff, guideline)
    other = make_pair(text="Another question?")
    prompt_erase(prompt=c.prompt, by=staff)
    existing, servable = _lock_round_prompts([c.prompt, other.prompt])
    assert existing == servable == {other.prompt_id}


def test_the_same_words_in_another_case_are_refused_after_an_erasure_and_withheld_after_a_withhold(
    rater, other_rater, staff, guideline
):
    # the exact text was refused, "WRITE TO ..." imported fine; a twin of a withheld prompt imported
    # after the withholding was served
    c = _withdrawn_with_words(rater, other_rater, staff, guideline)
    prompt_erase(prompt=c.prompt, by=staff)
    shouted = PromptIn(text=f"WRITE TO {SECRET.upper()}.", source="feed", consent=True)
    with pytest.raises(IngestError, match="was erased on request"):
        ingest_prompts(items=[shouted])
    held = make_pair(text="Call Hortensia Blaubeerkamp tonight?")
    prompt_withhold(prompt_id=held.prompt_id)
    report = ingest_prompts(
        items=[PromptIn(text="call hortensia blaubeerkamp  tonight?", source="f", consent=True)]
    )
    assert Prompt.objects.get(pk=report.created[0]).withheld
