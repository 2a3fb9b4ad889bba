"""POST / GET /api/prompts/{id}/consent/: staff record a consent withdrawal or restoration with a reason
(services/consent.py); bad input is a 400 with the message, an unknown prompt a 404, raters a 403."""

from __future__ import annotations

import pytest

from labelapp.models import Prompt, PromptConsentChange, Rating
from labelapp.services.consent import REASON_MAX
from labelapp.services.tokens import token_create
from tests.labelapp.export_helpers import make_pair, rate

pytestmark = pytest.mark.django_db


def _url(prompt_id: int) -> str:
    return f"/api/prompts/{prompt_id}/consent/"


def _post(client, prompt_id, body, **headers):
    return client.post(_url(prompt_id), body, content_type="application/json", **headers)


def test_staff_withdraw_consent_and_list_the_changes(staff_api, rater, guideline):
    comparison = make_pair()
    rating = rate(rater=rater, comparison=comparison, preference=2, guideline=guideline)
    assert Rating.objects.usable().filter(pk=rating.pk).exists()
    r = _post(staff_api, comparison.prompt_id, {"consent": False, "reason": "data subject request 17"})
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["prompt_id"] == comparison.prompt_id and body["consent"] is False
    assert body["reason"] == "data subject request 17" and body["changed_by"] == "staff"
    assert body["comparison_ids"] == [comparison.pk] and body["created_at"]
    assert Prompt.objects.get(pk=comparison.prompt_id).consent is False
    assert not Rating.objects.usable().filter(pk=rating.pk).exists()  # out of training and exports

    r = _post(staff_api, comparison.prompt_id, {"consent": True, "reason": "agreed again"})
    assert r.status_code == 201, r.content
    listed = staff_api.get(_url(comparison.prompt_id))
    assert listed.status_code == 200
    assert [(c["consent"], c["reason"]) for c in listed.json()] == [
        (False, "data subject request 17"),
        (True, "agreed again"),
    ]


@pytest.mark.parametrize(
    "body, message",
    [
        ({"consent": False, "reason": "   "}, "may not be blank"),
        ({"consent": True, "reason": "already"}, "already has consent=true"),
        ({"consent": False, "reason": "x" * (REASON_MAX + 1)}, "2000"),
        ({"consent": False, "reason": "nul\x00"}, "ull character"),  # DRF: "Null characters are not allowed."
        ({"consent": "false", "reason": "r"}, "valid boolean"),
        ({"consent": 0, "reason": "r"}, "valid boolean"),
        ({"consent": False, "reason": 12}, "valid string"),
        ({"consent": False}, "required"),
        ({"reason": "r"}, "required"),
        ({"consent": False, "reason": "r", "by": "someone"}, "Unknown field(s): by"),
        ([{"consent": False, "reason": "r"}], "dictionary"),
    ],
)
def test_bad_input_is_a_400_with_the_message_and_changes_nothing(staff_api, body, message):
    prompt = Prompt.objects.create(text="One")
    r = _post(staff_api, prompt.pk, body)
    assert r.status_code == 400, r.content
    assert message in r.content.decode()
    assert Prompt.objects.get(pk=prompt.pk).consent is True and not PromptConsentChange.objects.exists()


def test_an_unknown_prompt_is_a_404(staff_api):
    assert _post(staff_api, 999999, {"consent": False, "reason": "r"}).status_code == 404
    assert staff_api.get(_url(999999)).status_code == 404


def test_raters_get_403_signed_in_or_with_a_token(api, rater_key, client):
    prompt = Prompt.objects.create(text="One")
    assert _post(api, prompt.pk, {"consent": False, "reason": "r"}).status_code == 403
    assert api.get(_url(prompt.pk)).status_code == 403
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {rater_key}"}
    assert _post(client, prompt.pk, {"consent": False, "reason": "r"}, **bearer).status_code == 403
    assert Prompt.objects.get(pk=prompt.pk).consent is True and not PromptConsentChange.objects.exists()


def test_the_endpoint_needs_the_ingest_scope(staff, client):
    prompt = Prompt.objects.create(text="One")

    def bearer(scopes):
        return {"HTTP_AUTHORIZATION": f"Bearer {token_create(user=staff, name='t', scopes=scopes)[1]}"}

    read = bearer(["read"])
    r = _post(client, prompt.pk, {"consent": False, "reason": "r"}, **read)
    assert r.status_code == 403 and "'ingest' scope" in r.json()["detail"]
    assert client.get(_url(prompt.pk), **read).status_code == 403  # ingest data is never "just reading"
    assert (
        _post(client, prompt.pk, {"consent": False, "reason": "r"}, **bearer(["export"])).status_code == 403
    )
    assert not PromptConsentChange.objects.exists()

    ingest = bearer(["ingest"])
    r = _post(client, prompt.pk, {"consent": False, "reason": "via a program"}, **ingest)
    assert r.status_code == 201, r.content
    assert r.json()["changed_by"] == "staff"  # the token's account
    assert client.get(_url(prompt.pk), **ingest).status_code == 200


def test_anonymous_requests_get_401(client):
    prompt = Prompt.objects.create(text="One")
    assert _post(client, prompt.pk, {"consent": False, "reason": "r"}).status_code == 401
    assert Prompt.objects.get(pk=prompt.pk).consent is True


def test_the_schema_documents_the_endpoint(staff_api):
    schema = staff_api.get("/api/schema/", {"format": "json"}).json()
    operations = schema["paths"]["/api/prompts/{prompt_id}/consent/"]
    assert {"get", "post"} <= set(operations)
    assert {"200", "400", "403", "404"} <= set(operations["get"]["responses"])
    assert {"201", "400", "403", "404"} <= set(operations["post"]["responses"])


@pytest.mark.parametrize("how", ["withdrawn", "withheld"])
def test_a_rater_no_longer_reads_a_prompt_taken_out(api, rater, guideline, staff, how):
    # the API's assignment detail showed the prompt and both answers to the rater who had judged them
    from labelapp.services.consent import prompt_consent_set
    from labelapp.services.review import prompt_withhold

    comparison = make_pair(text="My private question")
    rating = rate(rater=rater, comparison=comparison, preference=2, guideline=guideline)
    url = f"/api/assignments/{rating.assignment_id}/"
    assert api.get(url).status_code == 200
    if how == "withdrawn":
        prompt_consent_set(prompt=comparison.prompt, consent=False, reason="data subject request", by=staff)
    else:
        prompt_withhold(prompt_id=comparison.prompt_id)
    r = api.get(url)
    assert r.status_code == 404 and "private" not in r.content.decode()
