"""The REST API runs the same rater loop with clear 400s and 404s."""

import uuid

import pytest

from labelapp.models import Rating

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(client, rater):
    client.force_login(rater)
    return client


def test_the_api_needs_the_guidelines_acknowledged(api, guideline, make_comparison):
    make_comparison()
    r = api.get("/api/assignments/next/")
    assert r.status_code == 403 and "Acknowledge guidelines version 1" in r.json()["detail"]
    assert api.post("/api/guidelines/acknowledge/", {"version": 99}).status_code == 400
    assert api.post("/api/guidelines/acknowledge/", {"version": 1}).status_code == 200
    assert api.get("/api/guidelines/current/").json()["acknowledged"] is True
    assert api.get("/api/assignments/next/").status_code == 200


def test_a_full_cycle_through_the_api(api, rater, acked, make_comparison):
    make_comparison(a="Four.", b="4")
    body = api.get("/api/assignments/next/").json()
    assert {body["left"]["label"], body["right"]["label"]} == {"A", "B"}
    assert "source_model" not in str(body)  # model names never reach a rater
    url = f"/api/assignments/{body['id']}/rating/"
    payload = {"preference": -1, "idempotency_key": body["idempotency_key"], "conciseness": 1}
    first = api.post(url, payload, content_type="application/json")
    second = api.post(url, payload, content_type="application/json")
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert Rating.objects.count() == 1
    assert api.get("/api/ratings/").json()["count"] == 1
    assert api.get("/api/assignments/next/").status_code == 204


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"preference": 4}, "preference"),
        ({"preference": "x"}, "preference"),
        ({}, "preference"),
        ({"preference": 0, "helpfulness": 7}, "helpfulness"),
        ({"preference": 0, "idempotency_key": "not-a-uuid"}, "idempotency_key"),
    ],
)
def test_bad_ratings_are_400_with_a_message(api, acked, make_comparison, payload, field):
    make_comparison()
    body = api.get("/api/assignments/next/").json()
    payload = {"idempotency_key": str(uuid.uuid4()), **payload}
    r = api.post(f"/api/assignments/{body['id']}/rating/", payload, content_type="application/json")
    assert r.status_code == 400 and field in r.json()
    assert Rating.objects.count() == 0


def test_the_api_enforces_the_length_question(api, acked, make_comparison):
    make_comparison(a="Yes.", b="Yes, and here is a long explanation of why that is the case in detail.")
    body = api.get("/api/assignments/next/").json()
    url = f"/api/assignments/{body['id']}/rating/"
    r = api.post(
        url, {"preference": 3, "idempotency_key": str(uuid.uuid4())}, content_type="application/json"
    )
    assert r.status_code == 400 and "length_check" in r.json()
    r = api.post(
        url,
        {"preference": 3, "idempotency_key": str(uuid.uuid4()), "length_check": "adds_content"},
        content_type="application/json",
    )
    assert r.status_code == 201 and r.json()["length_check"] == "adds_content"


def test_skip_needs_a_reason(api, acked, make_comparison):
    make_comparison()
    body = api.get("/api/assignments/next/").json()
    assert api.post(f"/api/assignments/{body['id']}/skip/", {}).status_code == 400
    assert api.post(f"/api/assignments/{body['id']}/skip/", {"reason": "broken"}).status_code == 200
    assert api.post(f"/api/assignments/{body['id']}/skip/", {"reason": "again"}).status_code == 400


def test_queue_figures_are_for_staff_only(api, client, staff, acked, make_comparison):
    make_comparison(required_ratings=3)
    assert api.get("/api/queue/").status_code == 403
    client.force_login(staff)
    assert client.get("/api/queue/").json() == {"pending": 3, "leased": 0, "done": 0}


def test_the_openapi_schema_builds(api):
    r = api.get("/api/schema/")
    assert r.status_code == 200 and b"/api/assignments/next/" in r.content


def _schema() -> dict:
    import json

    from drf_spectacular.generators import SchemaGenerator

    return json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))


def _operations(schema: dict):
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            yield path, method, op


def test_the_schema_says_what_the_api_does():
    """An audit against the running API: JSONL offered on every POST and refused, 415 and the error
    bodies of 409/503 undocumented, a paginated list without limit/offset, and the base view's
    docstring ("APIView with the strict query string...") as the description of eleven operations."""
    from labelapp.api.strict import ApiView, StrictQueryParams

    schema = _schema()
    base_docs = {ApiView.__doc__.split("\n")[0], StrictQueryParams.__doc__.split("\n")[0]}
    for path, method, op in _operations(schema):
        where = f"{method.upper()} {path}"
        assert not any(doc in op.get("description", "") for doc in base_docs), where
        body = op.get("requestBody", {}).get("content", {})
        if path != "/api/prompts/":
            assert not {"application/jsonl", "application/x-ndjson"} & set(body), where
        if body:
            assert "415" in op["responses"], where
        for code, response in op["responses"].items():
            if int(code) >= 400:
                assert "content" in response, (where, code)
    prompts = schema["paths"]["/api/prompts/"]
    assert {"limit", "offset"} <= {p["name"] for p in prompts["get"]["parameters"]}
    assert {"application/jsonl", "application/x-ndjson"} <= set(prompts["post"]["requestBody"]["content"])
    assert "200" in schema["paths"]["/api/prompts/{prompt_id}/responses/"]["post"]["responses"]


def test_a_jsonl_body_where_none_is_taken_is_a_415(api, acked):
    r = api.post("/api/guidelines/acknowledge/", '{"version": 1}\n', content_type="application/jsonl")
    assert r.status_code == 415, r.content  # it was a 400 "Unknown field(s): jsonl"
