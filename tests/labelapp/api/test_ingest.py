"""Ingest through the API and `manage.py import_prompts`: scrubbed, deduplicated, all or nothing."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from labelapp.models import Prompt, Response

pytestmark = pytest.mark.django_db


def _jsonl(*objs) -> str:
    return "\n".join(o if isinstance(o, str) else json.dumps(o) for o in objs) + "\n"


GOOD = {
    "text": "Email anna.schmidt@example.com and call +44 20 7946 0958 about the refund.",
    "source": "playground",
    "consent": True,
    "external_id": "pg-1",
    "answers": [
        {"text": "Sure, I wrote to anna.schmidt@example.com.", "model": "policy", "model_version": "v3"},
        {"text": "I cannot help with that.", "model": "baseline"},
    ],
}


def test_one_prompt_is_scrubbed_before_storage_and_counts_are_recorded(staff_api):
    r = staff_api.post("/api/prompts/", GOOD, content_type="application/json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["created"] == 1 and body["answers_created"] == 2
    assert body["pii_found"] == {"EMAIL": 2, "PHONE": 1}
    p = Prompt.objects.get()
    assert p.text == "Email [EMAIL] and call [PHONE] about the refund."
    assert p.pii_found == {"EMAIL": 1, "PHONE": 1} and "anna" not in json.dumps(p.pii_found)
    assert not Response.objects.filter(text__contains="@").exists()
    assert set(Response.objects.values_list("source_model", flat=True)) == {"policy", "baseline"}


def test_a_jsonl_upload_stores_many_and_skips_duplicates(staff_api):
    body = _jsonl(
        GOOD,
        {"text": "What is  the capital of France?", "source": "feed", "consent": True},
        {
            "text": "What is  the capital of France?\r\n",
            "source": "feed",
            "consent": True,
        },  # its line end aside
    )
    r = staff_api.post("/api/prompts/", body, content_type="application/jsonl")
    assert r.status_code == 201, r.content
    assert (r.json()["created"], r.json()["duplicates"]) == (2, 1)
    again = staff_api.post("/api/prompts/", body, content_type="application/jsonl")
    assert again.status_code == 201 and again.json()["created"] == 0 and again.json()["duplicates"] == 3
    assert (again.json()["answers_created"], again.json()["answers_skipped_duplicate"]) == (0, 2)
    assert Prompt.objects.count() == 2 and Response.objects.count() == 2


def test_reimported_prompts_get_a_new_models_answers(staff_api):
    # the normal way to grow a dataset; a duplicate's answers used to be dropped without a word
    staff_api.post("/api/prompts/", _jsonl(GOOD), content_type="application/jsonl")
    v4 = {
        **GOOD,
        "answers": [
            {"text": "Sure, I wrote to anna.schmidt@example.com.", "model": "policy", "model_version": "v4"},
            {"text": "Done: I emailed [EMAIL] and called.", "model": "policy", "model_version": "v4"},
        ],
    }
    r = staff_api.post("/api/prompts/", _jsonl(v4), content_type="application/jsonl")
    assert r.status_code == 201, r.content
    body = r.json()
    assert (body["created"], body["duplicates"], body["answers_created"]) == (0, 1, 1)
    assert (body["answers_added_to_existing"], body["answers_skipped_duplicate"]) == (1, 1)
    prompt = Prompt.objects.get()
    assert body["duplicate_of"] == [prompt.pk] and prompt.responses.count() == 3


def test_a_consent_conflict_with_a_stored_prompt_refuses_the_request(staff_api):
    staff_api.post("/api/prompts/", GOOD, content_type="application/json")
    prompt = Prompt.objects.get()
    withdrawn = {**GOOD, "consent": False, "answers": [{"text": "new", "model": "m"}]}
    r = staff_api.post(
        "/api/prompts/",
        [{"text": "new", "source": "s", "consent": True}, withdrawn],
        content_type="application/json",
    )
    assert r.status_code == 400, r.content
    (error,) = r.json()["errors"]
    assert error["line"] == 2 and f"prompt {prompt.pk}" in error["error"] and "consent=true" in error["error"]
    assert f"/api/prompts/{prompt.pk}/consent/" in error["error"]
    prompt.refresh_from_db()
    assert prompt.consent is True and Prompt.objects.count() == 1 and prompt.responses.count() == 2


def test_a_duplicate_with_another_external_id_is_a_400(staff_api):
    staff_api.post("/api/prompts/", GOOD, content_type="application/json")
    r = staff_api.post("/api/prompts/", {**GOOD, "external_id": "pg-2"}, content_type="application/json")
    assert r.status_code == 400 and "'pg-1'" in r.json()["errors"][0]["error"]


def test_the_jsonl_media_type_is_case_insensitive(staff_api):
    # media types are case-insensitive (RFC 9110); "Application/JSONL" got "unknown field(s): jsonl"
    r = staff_api.post("/api/prompts/", _jsonl(GOOD), content_type="Application/JSONL")
    assert r.status_code == 201, r.content


def test_a_bad_file_is_refused_whole_with_every_line_and_reason(staff_api):
    body = _jsonl(
        {"text": "fine", "source": "feed", "consent": True},
        '{"text": "broken",',
        {"text": "   ", "source": "feed", "consent": True},
        {"text": "x", "source": "feed", "consent": True, "is_staff": True},
        {"text": "y", "source": "feed"},
        {"text": "z", "source": "feed", "consent": "yes"},
    )
    r = staff_api.post("/api/prompts/", body, content_type="application/jsonl")
    assert r.status_code == 400
    errors = r.json()["errors"]
    assert [e["line"] for e in errors] == [2, 3, 4, 5, 6]
    assert "malformed JSON" in errors[0]["error"]
    assert "empty" in errors[1]["error"]
    assert "unknown field(s): is_staff" in errors[2]["error"]
    assert "missing field(s): consent" in errors[3]["error"]
    assert Prompt.objects.count() == 0


def test_a_list_is_all_or_nothing_too(staff_api):
    r = staff_api.post(
        "/api/prompts/",
        [{"text": "ok", "source": "s", "consent": True}, {"text": "", "source": "s", "consent": True}],
        content_type="application/json",
    )
    assert r.status_code == 400 and r.json()["errors"][0]["line"] == 2
    assert Prompt.objects.count() == 0


def test_a_taken_external_id_refuses_the_file(staff_api):
    staff_api.post("/api/prompts/", GOOD, content_type="application/json")
    other = {**GOOD, "text": "A different question entirely?"}
    r = staff_api.post(
        "/api/prompts/",
        _jsonl({"text": "new one", "source": "s", "consent": True}, other),
        content_type="application/jsonl",
    )
    assert r.status_code == 400 and r.json()["errors"][0]["line"] == 2
    assert Prompt.objects.count() == 1


def test_a_jsonl_body_over_the_limit_gets_413(staff_api, settings):
    settings.API_MAX_BODY_BYTES = 500
    body = _jsonl(*({"text": f"q{i} " + "x" * 50, "source": "s", "consent": True} for i in range(20)))
    assert staff_api.post("/api/prompts/", body, content_type="application/jsonl").status_code == 413
    assert Prompt.objects.count() == 0


def test_more_prompts_than_a_request_may_hold_are_refused_in_jsonl_as_in_a_list(staff_api, monkeypatch):
    # the count limit held for JSON lists only: a JSONL body of small lines could hold 20x as many
    from labelapp.api import data_views

    monkeypatch.setattr(data_views, "MAX_PROMPTS_PER_REQUEST", 3)
    objs = [{"text": f"question {i}?", "source": "s", "consent": True} for i in range(4)]
    for body, kind in ((_jsonl(*objs), "application/jsonl"), (json.dumps(objs), "application/json")):
        r = staff_api.post("/api/prompts/", body, content_type=kind)
        assert r.status_code == 400 and "at most 3 prompts per request (this one has 4)" in r.content.decode()
    assert Prompt.objects.count() == 0
    assert (
        staff_api.post("/api/prompts/", _jsonl(*objs[:3]), content_type="application/jsonl").status_code
        == 201
    )


def test_the_command_takes_a_file_of_any_size(tmp_path, monkeypatch):
    from django.core.management import call_command

    from labelapp.services import ingest

    monkeypatch.setattr(
        ingest.ingest_jsonl, "__kwdefaults__", {"limit": 1, "by": None}
    )  # the service's own default
    f = tmp_path / "p.jsonl"
    f.write_text(_jsonl(*({"text": f"question {i}?", "source": "s", "consent": True} for i in range(3))))
    call_command("import_prompts", str(f))
    assert Prompt.objects.count() == 3


def test_raters_cannot_ingest_or_read_prompts(api):
    assert api.post("/api/prompts/", GOOD, content_type="application/json").status_code == 403
    assert api.get("/api/prompts/").status_code == 403


def test_answers_attach_to_a_prompt(staff_api):
    pid = staff_api.post(
        "/api/prompts/", {"text": "Q?", "source": "s", "consent": True}, content_type="application/json"
    ).json()["prompt_ids"][0]
    r = staff_api.post(
        f"/api/prompts/{pid}/responses/",
        {"answers": [{"text": "Mail bob@example.org", "model": "m", "model_version": "1"}]},
        content_type="application/json",
    )
    assert r.status_code == 201 and r.json()[0]["text"] == "Mail [EMAIL]"
    assert (
        staff_api.post(
            "/api/prompts/999999/responses/", {"answers": []}, content_type="application/json"
        ).status_code
        == 404
    )


def test_the_command_imports_and_refuses_like_the_api(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text(_jsonl(GOOD, {"text": "Second prompt", "source": "feed", "consent": False}))
    from io import StringIO

    out = StringIO()
    call_command("import_prompts", str(good), stdout=out)
    assert "Imported 2 prompt(s) and 2 answer(s)" in out.getvalue() and "EMAIL 2" in out.getvalue()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(_jsonl({"text": "Third", "source": "feed", "consent": True}, "not json"))
    with pytest.raises(CommandError, match="line 2: malformed JSON"):
        call_command("import_prompts", str(bad))
    assert Prompt.objects.count() == 2


def test_the_command_reports_answers_added_to_prompts_already_stored(tmp_path):
    from io import StringIO

    f = tmp_path / "p.jsonl"
    f.write_text(_jsonl(GOOD))
    call_command("import_prompts", str(f), stdout=StringIO())
    f.write_text(_jsonl({**GOOD, "answers": [*GOOD["answers"], {"text": "New answer", "model": "m2"}]}))
    out = StringIO()
    call_command("import_prompts", str(f), stdout=out)
    assert "Imported 0 prompt(s) and 1 answer(s); 1 duplicate(s) not stored again" in out.getvalue()
    assert "1 new answer(s) added to them, 2 duplicate answer(s) skipped" in out.getvalue()
    assert Response.objects.count() == 3


@pytest.mark.parametrize("content_type", ["application/jsonl", "application/x-ndjson"])
def test_an_empty_jsonl_body_is_a_400_not_a_500(staff_api, content_type):
    # Django's test client drops the Content-Type of an empty body; a real client sends it.
    for body in ("", "\n\n"):
        r = staff_api.post("/api/prompts/", body, content_type=content_type, CONTENT_TYPE=content_type)
        assert r.status_code == 400 and "no prompts" in r.json()["errors"][0]["error"]
    assert Prompt.objects.count() == 0


def test_two_answers_with_one_external_id_are_refused_not_a_500(staff_api):
    # Each answer's external_id was checked against the table only, so a repeat inside one prompt
    # met the unique constraint at insert (IntegrityError, 500).
    twice = {
        **GOOD,
        "answers": [
            {"text": "one", "model": "m", "external_id": "ans-1"},
            {"text": "two", "model": "m", "external_id": "ans-1"},
        ],
    }
    for body, content_type in ((twice, "application/json"), (_jsonl(twice), "application/jsonl")):
        r = staff_api.post("/api/prompts/", body, content_type=content_type)
        assert r.status_code == 400, r.content
        assert "ans-1" in r.json()["errors"][0]["error"]
    assert Prompt.objects.count() == 0 and Response.objects.count() == 0


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85"])
def test_a_line_separator_inside_a_jsonl_string_does_not_split_the_line(staff_api, separator):
    # JSON allows these unescaped inside strings; str.splitlines() split valid lines in two.
    line = json.dumps({"text": f"one{separator}two", "source": "s", "consent": True}, ensure_ascii=False)
    body = _jsonl(line, {"text": "second", "source": "s", "consent": True})
    r = staff_api.post("/api/prompts/", body.encode(), content_type="application/jsonl")
    assert r.status_code == 201, r.content
    assert r.json()["created"] == 2
    bad = _jsonl(line, "not json")
    r = staff_api.post("/api/prompts/", bad.encode(), content_type="application/jsonl")
    assert r.status_code == 400 and r.json()["errors"][0]["line"] == 2


def test_answers_added_twice_with_one_external_id_in_one_request_are_refused(staff_api):
    pid = staff_api.post(
        "/api/prompts/", {"text": "Q?", "source": "s", "consent": True}, content_type="application/json"
    ).json()["prompt_ids"][0]
    before = Response.objects.count()
    twice = {
        "answers": [
            {"text": "a", "model": "m", "external_id": "x-1"},
            {"text": "b", "model": "m", "external_id": "x-1"},
        ]
    }
    r = staff_api.post(f"/api/prompts/{pid}/responses/", twice, content_type="application/json")
    assert r.status_code == 400 and "x-1" in r.json()["errors"][0]["error"]
    assert Response.objects.count() == before


def test_a_jsonl_line_with_a_huge_number_says_so_in_plain_words(staff_api):
    body = '{"text": "t", "source": "s", "consent": true, "n": ' + "9" * 5000 + "}\n"
    r = staff_api.post("/api/prompts/", body.encode(), content_type="application/jsonl")
    assert r.status_code == 400
    error = r.json()["errors"][0]
    assert error["line"] == 1 and "more than 4300 digits" in error["error"]
    assert "int_max_str_digits" not in error["error"]


@pytest.mark.parametrize("text", ["\u200b\u200b", "\ufeff", " \u2060 \n"])
def test_a_prompt_or_answer_of_invisible_characters_only_is_refused(staff_api, text):
    # str.strip() keeps zero-width characters: a prompt nobody could read was stored and queued
    from labelapp.models import Prompt

    r = staff_api.post(
        "/api/prompts/", {"text": text, "source": "s", "consent": True}, content_type="application/json"
    )
    assert r.status_code == 400 and "invisible" in str(r.json()), r.content
    body = {
        "text": "A real prompt?",
        "source": "s",
        "consent": True,
        "answers": [{"text": text, "model": "m"}],
    }
    r = staff_api.post("/api/prompts/", body, content_type="application/json")
    assert r.status_code == 400 and "invisible" in str(r.json()), r.content
    assert not Prompt.objects.exists()


def test_answers_sent_again_are_not_stored_twice(staff_api):
    # a retried request stored every answer again (ingest skipped them; this endpoint did not)
    pid = staff_api.post(
        "/api/prompts/", {"text": "Q?", "source": "s", "consent": True}, content_type="application/json"
    ).json()["prompt_ids"][0]
    body = {"answers": [{"text": "Mail bob@example.org", "model": "m"}, {"text": "Four.", "model": "m"}]}
    first = staff_api.post(f"/api/prompts/{pid}/responses/", body, content_type="application/json")
    again = staff_api.post(f"/api/prompts/{pid}/responses/", body, content_type="application/json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert [a["id"] for a in again.json()] == [a["id"] for a in first.json()]
    assert Response.objects.filter(prompt_id=pid).count() == 2
    more = {"answers": [{"text": "Four.", "model": "m"}, {"text": "4", "model": "m"}]}
    r = staff_api.post(f"/api/prompts/{pid}/responses/", more, content_type="application/json")
    assert r.status_code == 201 and [a["text"] for a in r.json()] == ["Four.", "4"]
    assert Response.objects.filter(prompt_id=pid).count() == 3


def test_answers_sent_again_with_their_external_ids_are_the_stored_answers(staff_api):
    # the retry was refused (400 "already exists") because the stored answers' ids were checked
    # before the answers already held were set aside
    answer = {"text": "ans A", "model": "m", "external_id": "RX1"}
    body = {"text": "Hello prompt one", "source": "t", "consent": True, "answers": [answer]}
    pid = staff_api.post("/api/prompts/", body, content_type="application/json").json()["prompt_ids"][0]
    url = f"/api/prompts/{pid}/responses/"
    r = staff_api.post(url, {"answers": [answer]}, content_type="application/json")
    assert r.status_code == 200 and r.json()[0]["external_id"] == "RX1", r.content
    new = {"answers": [answer, {"text": "ans B", "model": "m", "external_id": "RX2"}]}
    first = staff_api.post(url, new, content_type="application/json")
    again = staff_api.post(url, new, content_type="application/json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert Response.objects.filter(prompt_id=pid).count() == 2


def test_an_external_id_sent_with_a_stored_answer_names_it_or_is_refused(staff_api):
    # sent with an answer the prompt held, the id was dropped without a word
    body = {
        "text": "Hello prompt two",
        "source": "t",
        "consent": True,
        "answers": [{"text": "x", "model": "m"}],
    }
    pid = staff_api.post("/api/prompts/", body, content_type="application/json").json()["prompt_ids"][0]
    url = f"/api/prompts/{pid}/responses/"
    named = {"answers": [{"text": "x", "model": "m", "external_id": "W"}]}
    assert staff_api.post(url, named, content_type="application/json").status_code == 200
    assert Response.objects.get(prompt_id=pid).external_id == "W"  # it had none: it takes this one
    other = {"answers": [{"text": "x", "model": "m", "external_id": "W2"}]}
    r = staff_api.post(url, other, content_type="application/json")
    assert (
        r.status_code == 400
        and "stored for this prompt with external_id 'W'" in r.json()["errors"][0]["error"]
    )
    body["answers"] = [
        {"text": "x", "model": "m", "external_id": "W"},
        {"text": "x", "model": "m", "external_id": "W3"},
    ]
    r = staff_api.post("/api/prompts/", body, content_type="application/json")
    assert r.status_code == 400 and "W3" in r.json()["errors"][0]["error"]
    assert list(Response.objects.values_list("external_id", flat=True)) == ["W"]


def test_the_same_answer_sent_twice_once_with_an_id_is_one_answer_with_that_id(staff_api):
    # refused with "sent earlier in this request with external_id None"
    answers = [{"text": "t", "model": "m"}, {"text": "t", "model": "m", "external_id": "X"}]
    body = {"text": "Hello prompt three", "source": "t", "consent": True, "answers": answers}
    r = staff_api.post("/api/prompts/", body, content_type="application/json")
    assert r.status_code == 201, r.content
    assert list(Response.objects.values_list("text", "external_id")) == [("t", "X")]
