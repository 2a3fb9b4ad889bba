"""Every API endpoint refuses body fields and query parameters it does not know (labelapp/api/strict.py).

Most endpoints dropped them: `{"train_plain_baseline": true}` queued a run without the baseline, a
misspelt rating field was lost, `?foo=1` listed everything and `?limit=abc` on an unpaginated list
passed, so a typo looked like success."""

from __future__ import annotations

import uuid

import pytest
from django.urls import URLPattern

from labelapp.api import urls as api_urls
from labelapp.api.strict import StrictQueryParams
from labelapp.models import TrainingRun

pytestmark = pytest.mark.django_db


def _paths() -> list[str]:
    out = []
    for p in api_urls.urlpatterns:
        assert isinstance(p, URLPattern)
        route = str(p.pattern)
        for name in p.pattern.converters:
            route = route.replace(f"<int:{name}>", "1")
        out.append("/api/" + route)
    return out


def test_every_api_view_checks_its_query_string():
    for p in api_urls.urlpatterns:
        assert issubclass(p.callback.view_class, StrictQueryParams), p.callback.view_class


@pytest.mark.parametrize("path", _paths())
@pytest.mark.parametrize("method", ["get", "post"])
def test_an_unknown_query_parameter_is_a_400_that_names_it(staff_api, path, method):
    r = getattr(staff_api, method)(path + "?foo=1", content_type="application/json")
    assert r.status_code == 400, (path, r.status_code, r.content[:200])
    assert "Unknown query parameter(s): foo" in r.json()["detail"]


def test_a_limit_on_a_list_that_does_not_page_is_refused(staff_api):
    assert staff_api.get("/api/policies/?limit=abc").status_code == 400
    assert staff_api.get("/api/staff/ratings/?limit=5").status_code == 200  # one that does
    assert staff_api.get("/api/policies/?format=json").status_code == 200  # DRF's own


def test_a_training_run_with_a_misspelt_field_is_refused_not_queued_without_it(staff_api):
    r = staff_api.post("/api/training/runs/", {"train_plain_baseline": True}, content_type="application/json")
    assert r.status_code == 400
    assert (
        "Unknown field(s): train_plain_baseline. Allowed: with_baseline." in r.json()["non_field_errors"][0]
    )
    assert not TrainingRun.objects.exists()


def test_a_rating_with_an_unknown_field_is_refused_and_nothing_is_stored(api, acked, make_comparison):
    make_comparison()
    assignment = api.get("/api/assignments/next/").json()
    body = {
        "preference": -3,
        "idempotency_key": str(uuid.uuid4()),
        "length_check": "adds_content",
        "dimensions": {"helpfulness": 7},
    }
    r = api.post(f"/api/assignments/{assignment['id']}/rating/", body, content_type="application/json")
    assert r.status_code == 400 and "dimensions" in r.json()["non_field_errors"][0]
    assert api.get("/api/ratings/").json()["count"] == 0


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/tokens/", {"name": "x", "extra": 1}),
        ("/api/guidelines/acknowledge/", {"version": 1, "zzz": 1}),
        ("/api/comparisons/", {"prompt_ids": [1], "zzz": 1}),
        ("/api/policy-rounds/", {"kind": "ppo", "zzz": 1}),
        ("/api/policies/0/reject/", {"reason": "r", "zzz": 1}),
    ],
)
def test_other_bodies_with_an_unknown_field_are_refused(staff_api, path, body):
    r = staff_api.post(path, body, content_type="application/json")
    assert r.status_code == 400 and "Unknown field(s): " in r.json()["non_field_errors"][0], r.content


def test_the_export_refuses_format_which_its_negotiation_would_ignore(staff_api):
    # ?format=parquet answered 200 with JSONL: the export chooses with ?output=
    r = staff_api.get("/api/export/?format=parquet")
    assert r.status_code == 400 and "Unknown query parameter(s): format." in r.json()["detail"]
    assert "output" in r.json()["detail"].split("Allowed: ")[1]


@pytest.mark.parametrize("path", ["/api/reward-models/1/activate/", "/api/tokens/1/revoke/"])
def test_an_action_that_takes_no_body_refuses_one_rather_than_drop_it(staff_api, path):
    # {"reason": ...} sent with an activation was dropped: the caller believed a reason was recorded
    r = staff_api.post(path, {"reason": "roll back after the bad run"}, content_type="application/json")
    assert r.status_code == 400 and "takes no request body" in r.json()["detail"], r.content
    for body in ("null", "[]", '[{"reason": "x"}]'):  # read as no body: the action ran
        r = staff_api.post(path, body, content_type="application/json")
        assert r.status_code == 400 and "takes no request body" in r.json()["detail"], (body, r.content)
    assert staff_api.post(path, content_type="application/json").status_code != 400
    assert staff_api.post(path, "{}", content_type="application/json").status_code != 400


@pytest.mark.parametrize(
    "query",
    [
        "/api/prompts/?source=a&source=b",
        "/api/staff/ratings/?rater=a&rater=b",
        "/api/prompts/?limit=1&limit=2",
    ],
)
def test_a_query_parameter_given_twice_is_refused_not_read_as_the_last(staff_api, query):
    # the last one was used: ?source=a&source=b listed only b's, silently dropping a filter
    r = staff_api.get(query)
    assert r.status_code == 400 and "given more than once" in r.json()["detail"], r.content


def test_the_exports_list_filters_may_repeat(staff_api):
    from labelapp.models import Prompt, Response
    from labelapp.services.guidelines import guideline_create

    for n in (1, 2):  # a version never published is refused
        guideline_create(text=f"# Guidelines {n}\n\nPrefer the concise answer.", publish=True)
    prompt = Prompt.objects.create(text="q")
    for model in ("a", "b"):  # so is a source model no answer comes from
        Response.objects.create(prompt=prompt, text=f"answer {model}", source_model=model)
    assert (
        staff_api.get(
            "/api/export/?guideline_version=1&guideline_version=2&source_model=a&source_model=b"
        ).status_code
        == 200
    )
    unknown = staff_api.get("/api/export/?source_model=a&source_model=zz")
    assert unknown.status_code == 400 and "'zz'" in unknown.json()["detail"]
