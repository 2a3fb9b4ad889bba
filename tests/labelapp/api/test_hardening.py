"""Regressions found by fuzzing and drills (issue 8): each answered 500 or leaked before."""

from __future__ import annotations

import re

import pytest
from django.contrib.staticfiles import finders

from labelapp.services.assignment import assignment_next

pytestmark = pytest.mark.django_db


def _deep(n: int) -> str:
    return "[" * n + "]" * n


@pytest.mark.parametrize("depth", [40, 950, 5000])
def test_it_answers_400_to_deeply_nested_json(api, acked, depth):
    r = api.post("/api/guidelines/acknowledge/", _deep(depth), content_type="application/json")
    assert r.status_code == 400
    assert "nested deeper" in r.json()["detail"]


def test_it_answers_400_to_deeply_nested_json_inside_an_object(api, acked):
    body = '{"version": ' + _deep(950) + "}"
    r = api.post("/api/guidelines/acknowledge/", body, content_type="application/json")
    assert r.status_code == 400


def test_malformed_json_gets_a_line_and_a_reason(api, acked):
    r = api.post("/api/guidelines/acknowledge/", '{\n"version": 1,,}', content_type="application/json")
    assert r.status_code == 400 and "line 2" in r.json()["detail"]


@pytest.fixture
def one_rating(api, rater, acked, make_comparison):
    make_comparison(a="Four.", b="4")
    a = assignment_next(rater=rater)
    body = {"preference": -1, "idempotency_key": str(a.form_key)}
    assert (
        api.post(f"/api/assignments/{a.pk}/rating/", body, content_type="application/json").status_code == 201
    )


@pytest.mark.parametrize("limit", ["99999999999999999999", "1" + "0" * 5000, "-5", "abc"])
def test_a_huge_or_bad_limit_is_clamped_or_refused_never_500(api, one_rating, limit):
    r = api.get(f"/api/ratings/?limit={limit}")
    assert r.status_code in (200, 400)
    if r.status_code == 200:
        assert r.json()["count"] == 1 and len(r.json()["results"]) == 1


def test_the_limit_is_clamped_to_the_maximum(staff_api, staff):
    from labelapp.services.tokens import token_create

    for i in range(205):
        token_create(user=staff, name=f"t{i}")
    body = staff_api.get("/api/tokens/?limit=1000000").json()
    assert body["count"] == 205 and len(body["results"]) == 200


def test_a_huge_offset_is_refused(api, one_rating):
    assert api.get("/api/ratings/?offset=99999999999999999999").status_code == 400


def test_a_lone_surrogate_in_length_check_is_a_400(api, rater, acked, make_comparison):
    make_comparison(a="Four.", b="4")
    a = assignment_next(rater=rater)
    body = '{"preference": -1, "idempotency_key": "' + str(a.form_key) + '", "length_check": "\\ud800"}'
    r = api.post(f"/api/assignments/{a.pk}/rating/", body, content_type="application/json")
    assert r.status_code == 400
    assert "surrogate" in r.json()["detail"]


def test_a_body_over_the_limit_gets_413(staff_api, settings):
    settings.API_MAX_BODY_BYTES = 1000
    r = staff_api.post("/api/prompts/", '{"text": "' + "x" * 2000 + '"}', content_type="application/json")
    assert r.status_code == 413


def test_the_docs_page_answers_what_it_does_not_serve_without_a_500(client, staff):
    # OPTIONS went through the page's HTML renderer, which has no template for it: a 500.
    client.force_login(staff)
    client.raise_request_exception = False
    for method in ("options", "post", "put", "delete"):
        assert getattr(client, method)("/api/docs/").status_code == 405, method
    assert client.head("/api/docs/").status_code == 200


def test_swagger_ui_is_served_from_our_own_static_files(staff_api):
    r = staff_api.get("/api/docs/")
    assert r.status_code == 200
    html = r.content.decode()
    assert "cdn" not in html.lower() and "unpkg" not in html.lower()
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    scripts = [u for u in urls if "swagger-ui" in u]
    assert scripts, html[:500]
    for u in scripts:
        assert u.startswith("/static/"), u
        assert finders.find(u.removeprefix("/static/")), u


def test_every_list_endpoint_paginates_with_a_maximum():
    from rest_framework.settings import api_settings

    assert api_settings.DEFAULT_PAGINATION_CLASS.max_limit == 200


@pytest.mark.parametrize("where", ["top", "field"])
def test_an_integer_with_too_many_digits_is_a_400(api, acked, where):
    # Python's json refuses integer literals over 4300 digits with a plain ValueError (not a
    # JSONDecodeError): it escaped the parser as a 500 on every JSON endpoint.
    digits = "9" * 5000
    body = digits if where == "top" else '{"version": ' + digits + "}"
    r = api.post("/api/guidelines/acknowledge/", body, content_type="application/json")
    assert r.status_code == 400
    assert "digits" in r.json()["detail"]


def test_a_nul_in_a_query_parameter_is_a_400(staff_api):
    # PostgreSQL refuses NUL in text: ?source=%00 reached the query as a DataError (500).
    r = staff_api.get("/api/prompts/?source=%00")
    assert r.status_code == 400
    assert "NUL" in r.json()["detail"]


# --- Found by the ninth session's fuzzing: values that were not text, stored as text --------------------


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_not_json(staff_api, literal):
    # Python's json read them as floats; a text field then stored "nan" or "inf".
    body = '{"text": "Q?", "source": "s", "consent": true, "category": ' + literal + "}"
    r = staff_api.post("/api/prompts/", body, content_type="application/json")
    assert r.status_code == 400 and ("not JSON" in r.json()["detail"] or "too large" in r.json()["detail"])


def _prompt_id(staff_api) -> int:
    r = staff_api.post(
        "/api/prompts/", {"text": "Q?", "source": "s", "consent": True}, content_type="application/json"
    )
    return r.json()["prompt_ids"][0]


@pytest.mark.parametrize(
    "answers, message",
    [
        ([{"text": 12345, "model": "m"}], "answers[1].text must be a string"),
        ([{"text": "fine", "model": -1}], "answers[1].model must be a non-empty string"),
        ([{"text": "fine", "model": "m", "model_version": 2}], "answers[1].model_version must be a string"),
        ([{"text": "fine", "model": "m", "score": 1}], "unknown field(s): score"),
        ([], "at least one answer"),
        ({}, "answers must be a list"),
    ],
)
def test_answers_attached_to_a_prompt_are_parsed_like_ingested_ones(staff_api, answers, message):
    from labelapp.models import Response

    pid = _prompt_id(staff_api)
    url = f"/api/prompts/{pid}/responses/"
    r = staff_api.post(url, {"answers": answers}, content_type="application/json")
    assert r.status_code == 400 and message in r.json()["answers"][0]
    assert not Response.objects.filter(prompt_id=pid).exists()


@pytest.mark.parametrize("answers", [{}, "", 0, False])
def test_a_prompt_whose_answers_are_not_a_list_is_refused(staff_api, answers):
    from labelapp.models import Prompt

    body = {"text": "Q?", "source": "s", "consent": True, "answers": answers}
    r = staff_api.post("/api/prompts/", body, content_type="application/json")
    assert r.status_code == 400 and "answers must be a list" in str(r.json())
    assert not Prompt.objects.exists()


def test_a_rationale_or_key_that_is_not_a_string_is_refused(api, rater, acked, make_comparison):
    from labelapp.models import Rating

    make_comparison(a="Four.", b="4")
    a = assignment_next(rater=rater)
    url = f"/api/assignments/{a.pk}/rating/"
    for body in (
        {"preference": -1, "idempotency_key": str(a.form_key), "rationale": 12},
        {"preference": -1, "idempotency_key": 0},
        {"preference": -1, "idempotency_key": True},
    ):
        r = api.post(url, body, content_type="application/json")
        assert r.status_code == 400, body
    assert not Rating.objects.exists()
    r = api.post(f"/api/assignments/{a.pk}/skip/", {"reason": 7}, content_type="application/json")
    assert r.status_code == 400 and "reason" in r.json()


def test_a_token_name_that_is_not_a_string_is_refused(staff_api, rater):
    from labelapp.models import ApiToken

    body = {"username": rater.username, "name": 5}
    r = staff_api.post("/api/tokens/", body, content_type="application/json")
    assert r.status_code == 400 and "name" in r.json()
    assert not ApiToken.objects.exists()


@pytest.mark.parametrize("debug", [False, True])
def test_an_api_url_that_matches_nothing_answers_json_with_or_without_debug(staff_api, settings, debug):
    # With DEBUG on (the development default) Django answered its HTML debug page before handler404.
    settings.DEBUG = debug
    r = staff_api.get("/api/no-such-thing/")
    assert r.status_code == 404 and r["Content-Type"] == "application/json"
    assert r.json()["detail"] == "Not found."
    r = staff_api.get("/api/queue")  # the slash left off: said so, not a redirect a POST would lose
    assert r.status_code == 404 and "/api/queue/" in r.json()["detail"]
    assert staff_api.get("/api/queue/").status_code == 200


def test_a_post_to_an_api_url_that_matches_nothing_is_a_json_404_not_the_csrf_page(rater):
    from django.test import Client

    c = Client(enforce_csrf_checks=True)
    c.force_login(rater)
    r = c.post("/api/assignments/null,null/rating/", {}, content_type="application/json")
    assert r.status_code == 404 and r.json()["detail"] == "Not found."


# --- Third pass (consent, tokens, ingest, exports, pages) --------------------------------------------


@pytest.mark.parametrize("key", ["rlhf_a\x00b_secret", "rlhf_\x00_secret", "rlhf_ab%cd_secret", "rlhf_ABC_x"])
def test_a_token_whose_prefix_is_not_hex_is_a_401(client, staff, key):
    # The prefix reached the query as it was: a NUL in it was a DataError from PostgreSQL (500).
    r = client.get("/api/queue/", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert r.status_code == 401 and r.json()["detail"] == "Invalid or revoked token."


@pytest.mark.parametrize("kind", ["pairs", "ties"])
def test_an_empty_parquet_export_is_a_parquet_file(staff_api, kind):
    # The view writes into a temporary file it made first; the sink saw the file existing and wrote
    # nothing, so an export with no rows was a 0-byte download no Parquet reader opens.
    import io

    import pyarrow.parquet as pq

    r = staff_api.get(f"/api/export/?output=parquet&kind={kind}")
    assert r.status_code == 200
    table = pq.read_table(io.BytesIO(b"".join(r.streaming_content)))
    assert table.num_rows == 0


def test_an_empty_parquet_export_replaces_an_earlier_file_at_its_path(tmp_path, staff):
    # An export with no rows left the earlier file at that path in place (rows withdrawn since
    # included) and recorded it as the new, empty export.
    import pyarrow as pa
    import pyarrow.parquet as pq

    from labelapp.services.export import ExportFilters, export_write

    path = tmp_path / "prefs.parquet"
    pq.write_table(pa.table({"prompt": ["an earlier export"]}), path)
    result = export_write(path=path, fmt="parquet", mode="rating", filters=ExportFilters(), record=False)
    assert result.pairs == 0 and pq.read_table(path).num_rows == 0


def test_a_key_repeated_in_a_json_object_is_refused_not_read_as_the_last(
    api, staff_api, rater, acked, make_comparison
):
    # {"preference": -3, "preference": 3} stored 3 (a rating cannot be edited afterwards), and a JSONL
    # prompt line with "text" twice was imported with the second text
    from labelapp.models import Prompt, Rating

    make_comparison(a="Four.", b="4")
    a = assignment_next(rater=rater)
    key = f'"idempotency_key": "{a.form_key}"'
    body = f'{{"preference": -3, "preference": 3, {key}, "length_check": "adds_content"}}'
    r = api.post(f"/api/assignments/{a.pk}/rating/", body, content_type="application/json")
    assert r.status_code == 400 and "'preference' appears more than once" in r.json()["detail"]
    assert not Rating.objects.exists()
    line = '{"text": "dup", "text": "dup2", "source": "s", "consent": true}\n'
    r = staff_api.post("/api/prompts/", line, content_type="application/jsonl")
    assert r.status_code == 400 and "appears more than once" in str(r.json())
    assert not Prompt.objects.filter(text__startswith="dup").exists()


@pytest.mark.parametrize("multipart", [False, True])
def test_a_field_repeated_in_a_form_body_is_refused_not_read_as_the_last(
    api, staff_api, rater, acked, make_comparison, multipart
):
    # preference=-3&preference=3 stored 3 with a 201 (the same in JSON is refused), and a token made
    # with name=first&name=second was named "second"
    from labelapp.models import ApiToken, Rating

    make_comparison(a="Four.", b="4")
    a = assignment_next(rater=rater)
    fields = [("preference", b"-3"), ("preference", b"3"), ("idempotency_key", str(a.form_key).encode())]
    fields.append(("length_check", b"adds_content"))
    if multipart:
        body, kind = _multipart(fields), "multipart/form-data; boundary=zz"
    else:
        body, kind = "&".join(f"{k}={v.decode()}" for k, v in fields), "application/x-www-form-urlencoded"
    r = api.post(f"/api/assignments/{a.pk}/rating/", body, content_type=kind)
    assert r.status_code == 400 and r.json() == {
        "preference": ["The field 'preference' appears more than once; send it once."]
    }
    assert not Rating.objects.exists()
    form = "application/x-www-form-urlencoded"
    r = staff_api.post("/api/tokens/", "username=rater&name=first&name=second&scopes=rate", content_type=form)
    assert r.status_code == 400 and "name" in r.json() and not ApiToken.objects.exists()
    # a list field takes its values repeated, as a form sends a multiple choice
    r = staff_api.post(
        "/api/tokens/", f"username={rater.username}&name=t&scopes=rate&scopes=read", content_type=form
    )
    assert r.status_code == 201 and sorted(ApiToken.objects.get().scopes) == ["rate", "read"]


def test_api_errors_are_json_whatever_the_client_accepts(api):
    # DRF's browsable API answered `Accept: text/html` (and ?format=api) with an HTML page
    for url, headers in [("/api/queue/?bogus=1", {}), ("/api/queue/", {"HTTP_ACCEPT": "text/html"})]:
        r = api.get(url, **{"HTTP_ACCEPT": "text/html", **headers})
        assert r.status_code in (400, 403) and r["Content-Type"] == "application/json", r.content[:200]
        assert "detail" in r.json()
    r = api.get("/api/assignments/next/?format=api")
    assert r.status_code == 404 and r["Content-Type"] == "application/json"


@pytest.mark.parametrize("debug", [False, True])
def test_form_bodies_are_read_like_json_ones(api, rater, acked, make_comparison, settings, debug):
    # bytes that were not UTF-8 became U+FFFD in a stored rationale; over 2.5 MB or 1,000 fields the
    # answer was Django's HTML debug page (DEBUG on) or {"detail": "Bad request."}
    from labelapp.models import Rating

    settings.DEBUG = debug
    make_comparison(a="Four.", b="4")
    a = assignment_next(rater=rater)
    url = f"/api/assignments/{a.pk}/rating/"
    form = "application/x-www-form-urlencoded"
    fields = f"preference=-1&idempotency_key={a.form_key}&length_check=adds_content"
    r = api.post(url, fields + "&rationale=%ED%A0%80x%FF", content_type=form)
    assert r.status_code == 400 and "not UTF-8" in r.json()["detail"]
    r = api.post(url, fields + "&rationale=" + "x" * 3_000_000, content_type=form)
    assert r.status_code == 400 and "rationale" in r.json()  # read (10 MiB limit), then refused as too long
    r = api.post(url, fields + "".join(f"&f{i}=1" for i in range(2000)), content_type=form)
    assert r.status_code == 400 and "more than 1000 fields" in r.json()["detail"]
    assert not Rating.objects.exists()
    r = api.post(url, (fields + "&rationale=caf%C3%A9 et thé").encode(), content_type=form)
    assert r.status_code == 201 and Rating.objects.get().rationale == "café et thé"


def test_a_form_body_in_the_charset_it_declares_is_read_in_it(api, rater, acked, make_comparison):
    from labelapp.models import Rating

    make_comparison(a="Four.", b="4")
    a = assignment_next(rater=rater)
    fields = f"preference=-1&idempotency_key={a.form_key}&length_check=adds_content&rationale=caf%E9"
    r = api.post(
        f"/api/assignments/{a.pk}/rating/",
        fields,
        content_type="application/x-www-form-urlencoded; charset=iso-8859-1",
    )
    assert r.status_code == 201 and Rating.objects.get().rationale == "café"


def _multipart(fields: list[tuple[str, bytes]], *, filename: str | None = None) -> bytes:
    out = b""
    for name, value in fields:
        extra = f'; filename="{filename}"' if filename and name == "rationale" else ""
        out += (
            f'--zz\r\nContent-Disposition: form-data; name="{name}"{extra}\r\n\r\n'.encode() + value + b"\r\n"
        )
    return out + b"--zz--\r\n"


@pytest.mark.parametrize("debug", [False, True])
def test_multipart_bodies_are_read_like_form_ones(api, rater, acked, make_comparison, settings, debug):
    # DRF's MultiPartParser stored bytes that were not UTF-8 as U+FFFD in a rationale (201), and over
    # 2.5 MB or 1,000 fields answered Django's HTML debug page
    from labelapp.models import Assignment, Rating

    settings.DEBUG = debug
    make_comparison(a="Four.", b="4")
    a = assignment_next(rater=rater)
    url, mp = f"/api/assignments/{a.pk}/rating/", "multipart/form-data; boundary=zz"
    fields = [
        ("preference", b"-1"),
        ("idempotency_key", str(a.form_key).encode()),
        ("length_check", b"adds_content"),
    ]
    r = api.post(url, _multipart([*fields, ("rationale", b"na\xefve \xff")]), content_type=mp)
    assert r.status_code == 400 and "not UTF-8" in r.json()["detail"]
    r = api.post(url, _multipart([*fields, ("rationale", b"x" * 3_000_000)]), content_type=mp)
    assert r.status_code == 413 and "at most 2621440 bytes" in r.json()["detail"]
    r = api.post(url, _multipart(fields + [(f"f{i}", b"1") for i in range(2000)]), content_type=mp)
    assert r.status_code == 400 and "more than 1000 fields" in r.json()["detail"]
    r = api.post(url, _multipart([*fields, ("rationale", b"x")], filename="a.txt"), content_type=mp)
    assert r.status_code == 400 and "Files are not accepted" in r.json()["detail"]
    r = api.post(url, _multipart(fields), content_type="multipart/form-data")
    assert r.status_code == 400 and "boundary" in r.json()["detail"]
    assert not Rating.objects.exists()
    latin = b'--zz\r\nContent-Disposition: form-data; name="rationale"\r\n'
    latin += b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf\xe9 et th\xe9\r\n--zz--\r\n"
    r = api.post(url, _multipart(fields)[: -len(b"--zz--\r\n")] + latin, content_type=mp)
    assert r.status_code == 400 and "send it in UTF-8" in r.json()["detail"]  # a part's charset: UTF-8 only
    assert not Rating.objects.exists()
    r = api.post(url, _multipart([*fields, ("rationale", "café et thé".encode())]), content_type=mp)
    assert r.status_code == 201 and Rating.objects.get().rationale == "café et thé"
    make_comparison(a="Five.", b="5")
    b = assignment_next(rater=rater)
    r = api.post(f"/api/assignments/{b.pk}/skip/", {"reason": "broken"})  # the test client's own multipart
    assert r.status_code == 200 and Assignment.objects.get(pk=b.pk).skip_reason == "broken"


def test_a_multipart_body_of_many_tiny_parts_is_refused_before_it_is_split(
    api, rater, acked, make_comparison
):
    # the whole body was parsed before the field count was checked: 10 MiB of tiny parts took 11.6 s
    make_comparison(a="Four.", b="4")
    a = assignment_next(rater=rater)
    body = b"".join(b'--zz\r\nContent-Disposition: form-data; name="f"\r\n\r\n1\r\n' for _ in range(20_000))
    r = api.post(
        f"/api/assignments/{a.pk}/skip/",
        body + b"--zz--\r\n",
        content_type="multipart/form-data; boundary=zz",
    )
    assert r.status_code == 400 and "more than 1000 fields" in r.json()["detail"]


def test_a_signed_in_browser_posting_multipart_to_the_api_is_read_strictly(rater, acked, make_comparison):
    # for a session the CSRF check read the form with Django's lenient parser and used up the body; DRF
    # then handed the view that parse, so the rationale was stored with U+FFFD (the test client skips
    # the CSRF check unless told, so the other tests missed it)
    from django.test import Client

    from labelapp.models import Rating

    make_comparison(a="Four.", b="4")
    a = assignment_next(rater=rater)
    client = Client(enforce_csrf_checks=True)
    client.force_login(rater)
    client.get("/accounts/login/")
    token = client.cookies["csrftoken"].value
    key = str(a.form_key).encode()
    fields = [("preference", b"-1"), ("idempotency_key", key), ("length_check", b"adds_content")]
    url, mp = f"/api/assignments/{a.pk}/rating/", "multipart/form-data; boundary=zz"
    bad = _multipart([*fields, ("rationale", b"na\xefve")])
    r = client.post(url, bad, content_type=mp, HTTP_X_CSRFTOKEN=token)
    assert r.status_code == 400 and "not UTF-8" in r.json()["detail"] and not Rating.objects.exists()
    good = _multipart([*fields, ("rationale", "naïve".encode())])
    r = client.post(url, good, content_type=mp, HTTP_X_CSRFTOKEN=token)
    assert r.status_code == 201 and Rating.objects.get().rationale == "naïve"


def test_an_api_multipart_body_is_split_once(api, rater, acked, make_comparison, monkeypatch):
    # the middleware read the body strictly and the API's parser split the same body again
    import labelapp.formbody
    import labelapp.middleware
    from labelapp.models import Rating

    calls = []
    real = labelapp.formbody.multipart_fields

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(labelapp.formbody, "multipart_fields", counting)
    monkeypatch.setattr(labelapp.middleware, "multipart_fields", counting)
    make_comparison(a="Four.", b="4")
    a = assignment_next(rater=rater)
    fields = [("preference", b"-1"), ("idempotency_key", str(a.form_key).encode())]
    fields += [("length_check", b"adds_content"), ("rationale", "café".encode())]
    r = api.post(
        f"/api/assignments/{a.pk}/rating/",
        _multipart(fields),
        content_type="multipart/form-data; boundary=zz",
    )
    assert r.status_code == 201 and Rating.objects.get().rationale == "café"
    assert len(calls) == 1


def test_jsonl_errors_read_whole_and_a_byte_order_mark_is_read_as_the_command_reads_it(staff_api):
    from labelapp.models import Prompt

    jsonl = "application/jsonl"
    line = '{"text": "With a BOM", "source": "s", "consent": true}\n'
    r = staff_api.post("/api/prompts/", "\ufeff" + line, content_type=jsonl)
    assert r.status_code == 201 and Prompt.objects.filter(text="With a BOM").exists()  # it was a 400
    r = staff_api.post("/api/prompts/", '{"text": "unterminated\n', content_type=jsonl)
    assert r.json()["errors"][0]["error"] == "malformed JSON at column 10: Unterminated string starting"
    r = staff_api.post("/api/prompts/", '{"text": "x', content_type="application/json")
    assert r.json()["detail"] == "Malformed JSON at line 1 column 10: Unterminated string starting."
    huge = "k" * 200_000
    r = staff_api.post(
        "/api/prompts/", f'{{"text": "t", "source": "s", "consent": true, "{huge}": 1}}\n', content_type=jsonl
    )
    assert r.status_code == 400 and len(r.content) < 1_000 and "k" * 50 in r.content.decode()


@pytest.mark.parametrize("value", [3.0, "3.0", True, "\uff13", "\u0663", "3e0", " ", "3"])
def test_an_integer_field_takes_a_json_integer_or_ascii_digits_only(
    api, rater, acked, make_comparison, value
):
    # 3.0, "３" (full-width) and "٣" (Arabic-Indic) were stored as the preference 3, true as 1
    from labelapp.models import Rating

    make_comparison(a="Four.", b="4")
    a = assignment_next(rater=rater)
    body = {"preference": value, "idempotency_key": str(a.form_key), "length_check": "adds_content"}
    r = api.post(f"/api/assignments/{a.pk}/rating/", body, content_type="application/json")
    assert r.status_code == 400 and "preference" in r.json() and not Rating.objects.exists()
    body["preference"] = 3
    assert (
        api.post(f"/api/assignments/{a.pk}/rating/", body, content_type="application/json").status_code == 201
    )


@pytest.mark.parametrize("bad", ["\x01", "a\tb", "x\u009fy", "\uffff", "name\x1f"])
def test_a_control_character_in_a_one_line_name_is_refused(staff_api, rater, bad):
    # stored in sources, models and token names ("\x1f" at the end silently stripped by str.strip())
    from labelapp.models import ApiToken, Prompt

    line = {"text": "A question?", "source": f"feed{bad}", "consent": True}
    r = staff_api.post("/api/prompts/", line, content_type="application/json")
    assert r.status_code == 400 and "control character" in str(r.json()) and not Prompt.objects.exists()
    answer = {
        "text": "A question?",
        "source": "feed",
        "consent": True,
        "answers": [{"text": "x", "model": bad}],
    }
    r = staff_api.post("/api/prompts/", answer, content_type="application/json")
    assert r.status_code == 400 and "answers[1].model" in str(r.json())
    body = {"username": rater.username, "name": f"c{bad}i", "scopes": ["rate"]}
    r = staff_api.post("/api/tokens/", body, content_type="application/json")
    assert r.status_code == 400 and "control character" in str(r.json()) and not ApiToken.objects.exists()


def test_a_services_refusal_of_a_field_is_a_list_like_the_serializers(api, rater, acked, make_comparison):
    # {"time_on_task_ms": "The page's timer ..."} beside serializer errors that are lists; the message
    # said nothing of the range an API client may send
    make_comparison(a="Four.", b="4")
    a = assignment_next(rater=rater)
    body = {"preference": 3, "idempotency_key": str(a.form_key), "time_on_task_ms": 2**31}
    r = api.post(f"/api/assignments/{a.pk}/rating/", body, content_type="application/json")
    assert r.status_code == 400 and isinstance(r.json()["time_on_task_ms"], list)
    assert f"0 to {2**31 - 1} ms" in r.json()["time_on_task_ms"][0]
    r = api.post("/api/guidelines/acknowledge/", {"version": 999}, content_type="application/json")
    assert r.json() == {"version": ["No such guideline version."]}


def test_a_browser_form_with_its_csrf_token_in_the_body_is_accepted(staff):
    # Django's way for a form: the token in the body; the check passed, then the body was refused
    # with "Unknown field(s): csrfmiddlewaretoken" (only the X-CSRFToken header worked)
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    client.get("/accounts/login/")
    token = client.cookies["csrftoken"].value
    r = client.post("/api/tokens/", {"username": "staff", "name": "form", "csrfmiddlewaretoken": token})
    assert r.status_code == 201, r.content
    again = client.post(
        "/api/tokens/", {"username": "staff", "name": "f2", "csrfmiddlewaretoken": [token, token]}
    )
    assert again.status_code == 201, again.content
    # without the token the session's POST is still refused
    assert client.post("/api/tokens/", {"username": "staff", "name": "none"}).status_code == 403
