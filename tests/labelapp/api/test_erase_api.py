"""POST /api/prompts/{id}/erase/: staff erase a withdrawn or withheld prompt's words through the API
(services/erasure.py), as `manage.py erase_prompts` and the admin action do; a prompt in use is a 400
with the message, an unknown one a 404, raters and staff without the data-manager role a 403."""

from __future__ import annotations

import pytest
from django.test import Client

from labelapp.models import Prompt, Rating, Response
from labelapp.services.consent import prompt_consent_set
from labelapp.services.erasure import ERASED
from labelapp.services.tokens import token_create
from tests.labelapp.export_helpers import make_pair, rate

pytestmark = pytest.mark.django_db


def _url(prompt_id: int) -> str:
    return f"/api/prompts/{prompt_id}/erase/"


def _withdrawn(rater, guideline, staff):
    comparison = make_pair(text="Please write to Quorrin Vale about my visa")
    rating = rate(rater=rater, comparison=comparison, preference=2, guideline=guideline)
    Rating.objects.filter(pk=rating.pk).update(rationale="Quorrin's answer is better")
    prompt_consent_set(prompt=comparison.prompt, consent=False, reason="request from Quorrin", by=staff)
    return comparison.prompt


def test_staff_erase_a_withdrawn_prompt_and_a_second_call_does_nothing(staff_api, rater, guideline, staff):
    prompt = _withdrawn(rater, guideline, staff)
    r = staff_api.post(_url(prompt.pk), content_type="application/json")
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["prompt_id"] == prompt.pk and body["erased_now"] is True and body["erased_at"]
    assert body["counts"]["prompts"] == 1 and body["counts"]["answers"] == 2
    assert body["counts"]["rationales"] == 1 and body["counts"]["consent_reasons"] == 1
    assert Prompt.objects.get(pk=prompt.pk).text == ERASED
    assert set(Response.objects.filter(prompt=prompt).values_list("text", flat=True)) == {ERASED}
    assert staff_api.get(f"/api/prompts/{prompt.pk}/").json()["erased_at"] == body["erased_at"]

    again = staff_api.post(_url(prompt.pk), {}, content_type="application/json")
    assert again.status_code == 200 and again.json()["erased_now"] is False
    assert again.json()["counts"] == {} and again.json()["erased_at"] == body["erased_at"]


def test_a_prompt_in_use_is_a_400_and_keeps_its_words(staff_api):
    comparison = make_pair(text="Still in use")
    r = staff_api.post(_url(comparison.prompt_id), content_type="application/json")
    assert r.status_code == 400 and "withdraw its consent first" in r.json()["detail"]
    assert Prompt.objects.get(pk=comparison.prompt_id).text == "Still in use"


@pytest.mark.parametrize("body", [{"confirm": True}, [1], "x"])
def test_a_body_with_anything_in_it_is_a_400_and_erases_nothing(staff_api, rater, guideline, staff, body):
    prompt = _withdrawn(rater, guideline, staff)
    r = staff_api.post(_url(prompt.pk), body, content_type="application/json")
    assert r.status_code == 400, r.content
    assert "Allowed: ." not in r.content.decode()  # it listed no allowed field as "Allowed: ."
    assert Prompt.objects.get(pk=prompt.pk).erased_at is None


def test_unknown_prompt_404_anonymous_401_rater_and_plain_staff_403(
    staff_api, api, client, make_user, rater, guideline, staff
):
    prompt = _withdrawn(rater, guideline, staff)
    assert staff_api.post(_url(999999), content_type="application/json").status_code == 404
    assert Client().post(_url(prompt.pk)).status_code == 401
    assert api.post(_url(prompt.pk)).status_code == 403
    plain = Client()
    plain.force_login(make_user("plain-staff", staff=True, roles=()))
    refused = plain.post(_url(prompt.pk))
    assert refused.status_code == 403 and "data-manager" in refused.json()["detail"]
    assert "may not erase a prompt's words" in refused.json()["detail"]  # it said "change a prompt's consent"
    assert Prompt.objects.get(pk=prompt.pk).erased_at is None


def test_a_token_needs_the_ingest_scope(staff, client, rater, guideline):
    prompt = _withdrawn(rater, guideline, staff)

    def bearer(scopes):
        return {"HTTP_AUTHORIZATION": f"Bearer {token_create(user=staff, name='t', scopes=scopes)[1]}"}

    assert client.post(_url(prompt.pk), **bearer(["read", "export"])).status_code == 403
    assert Prompt.objects.get(pk=prompt.pk).erased_at is None
    assert client.post(_url(prompt.pk), **bearer(["ingest"])).status_code == 200
    assert Prompt.objects.get(pk=prompt.pk).erased_at is not None


def test_the_schema_documents_the_endpoint(staff_api):
    schema = staff_api.get("/api/schema/", {"format": "json"}).json()
    post = schema["paths"]["/api/prompts/{prompt_id}/erase/"]["post"]
    assert {"200", "400", "403", "404"} <= set(post["responses"])
