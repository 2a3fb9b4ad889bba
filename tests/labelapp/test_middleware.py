"""A request stuck on the database answers 503 with a message once PostgreSQL cancels its statement.

The web process's gthread workers keep reporting to gunicorn's master while one thread waits, so the
worker timeout no longer ends a request that waits forever on a lock; DB_STATEMENT_TIMEOUT_MS (60 s in
the web process, config/gunicorn.py) does, and the middleware words it (it was a 500).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from labelapp.middleware import DB_TIMEOUT
from labelapp.models import GuidelineVersion

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def guidelines_locked():
    """Another session holds the guidelines table exclusively, as a stuck transaction would; this
    session cancels its statements after 300 ms."""
    s = connection.settings_dict
    other = psycopg.connect(
        dbname=s["NAME"], user=s["USER"], host=s["HOST"] or None, port=s["PORT"] or None, autocommit=False
    )
    other.execute(f"LOCK TABLE {GuidelineVersion._meta.db_table} IN ACCESS EXCLUSIVE MODE")
    with connection.cursor() as cursor:
        cursor.execute("SET statement_timeout = 300")
    try:
        yield
    finally:
        other.rollback()
        other.close()
        with connection.cursor() as cursor:
            cursor.execute("RESET statement_timeout")


@pytest.mark.django_db(transaction=True)
def test_a_request_whose_statement_is_cancelled_answers_503_page_and_api(rater_client, guidelines_locked):
    api = rater_client.get("/api/guidelines/current/")
    assert api.status_code == 503 and api["Retry-After"] == "5"
    assert json.loads(api.content) == {"detail": DB_TIMEOUT}
    page = rater_client.get("/guidelines/")
    assert page.status_code == 503 and DB_TIMEOUT in page.content.decode()


def test_the_statement_timeout_reaches_the_web_process_connection_only():
    env = {k: v for k, v in os.environ.items() if k != "DB_STATEMENT_TIMEOUT_MS"}
    probe = "from django.conf import settings as s; print(s.DATABASES['default']['OPTIONS'].get('options'))"

    def options(**extra):
        r = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", probe],
            cwd=ROOT, env={**env, **extra}, capture_output=True, text=True, check=True,
        )  # fmt: skip
        return r.stdout.strip().splitlines()[-1]

    assert options() == "None"
    # commands and workers keep no limit even when the variable is set (compose passes .env to all)
    assert options(DB_STATEMENT_TIMEOUT_MS="1234") == "None"

    def web(**extra):  # the settings as a gunicorn worker loads them
        r = subprocess.run(
            [sys.executable, "-c", "import runpy; runpy.run_path('config/gunicorn.py'); "
             "from django.conf import settings as s; "
             "print(s.DATABASES['default']['OPTIONS'].get('options'))"],
            cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": "config.settings", **extra},
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return r.stdout.strip().splitlines()[-1]

    assert web() == "-c statement_timeout=60000"
    # a value set for the web process wins over its default (one in .env too: gunicorn.py no longer
    # sets the variable itself before settings read .env)
    assert web(DB_STATEMENT_TIMEOUT_MS="2500") == "-c statement_timeout=2500"


def _wsgi(path: str, query: str, content_type: str, body: bytes = b"", method: str = "GET"):
    """(status, body) of the project's WSGI application (config/wsgi.py, as gunicorn serves it)."""
    import io
    from wsgiref.util import setup_testing_defaults

    from config.wsgi import application

    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_TYPE": content_type,
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "SERVER_NAME": "localhost",
        "HTTP_HOST": "localhost",
    }
    setup_testing_defaults(environ)
    seen = {}
    chunks = application(environ, lambda status, headers, exc_info=None: seen.update(status=status))
    return int(seen["status"].split()[0]), b"".join(chunks).decode()


@pytest.mark.django_db
@pytest.mark.parametrize("charset", ["utf-7", "unicode_escape", "hex", "bz2", "rot13", "undefined"])
def test_a_charset_that_decodes_to_what_postgresql_refuses_is_a_400(charset):
    # Django decodes the query string with the Content-Type's charset: utf-7 made ?q=+2AA- a lone
    # surrogate (PostgreSQL: 500); a bytes-to-bytes codec failed while Django built the request (500).
    status, body = _wsgi("/accounts/login/", "next=%2B2AA-", f"text/plain; charset={charset}")
    assert status == 400 and f"Unsupported charset '{charset}'" in body
    ct = f"application/json; charset={charset}"
    status, body = _wsgi("/api/prompts/", "", ct, b"{}", method="POST")
    assert status == 400 and json.loads(body)["detail"].startswith("Unsupported charset")


@pytest.mark.django_db
@pytest.mark.parametrize("charset", ["utf-8", "ISO-8859-1", "windows-1252", "UTF-16", "no-such-codec"])
def test_the_charsets_clients_send_pass(charset):
    status, _ = _wsgi("/accounts/login/", "next=/", f"text/plain; charset={charset}")
    assert status == 200


@pytest.mark.django_db
def test_a_session_cookie_holding_a_nul_is_ignored_not_a_500(client):
    # Django reads the quoted cookie "\000abc" as NUL + abc; the session lookup hit PostgreSQL with it.
    client.raise_request_exception = False
    client.cookies["sessionid"] = "\x00abcdefghij"
    assert client.get("/accounts/login/").status_code == 200
    assert client.get("/api/prompts/").status_code in (401, 403)


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("path", ["/accounts/login/", "/api/tokens/"])
def test_too_many_query_parameters_are_a_400_that_says_so_with_debug_on_or_off(client, settings, debug, path):
    # Django's own 400 (TooManyFieldsSent) turned into a 500 with DEBUG on: its debug page parsed the
    # query string again and failed the same way
    settings.DEBUG = debug
    query = "&".join(f"f{i}=1" for i in range(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS + 1))
    r = client.get(f"{path}?{query}&x=%00")
    assert r.status_code == 400
    body = r.json()["detail"] if path.startswith("/api/") else r.content.decode()
    assert "Too many query parameters" in body
    assert client.get(f"{path}?{query.rsplit('&', 1)[0]}").status_code in (200, 401)  # at the limit: as usual


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("charset", "status"),
    [("utf8", 302), ("UTF8", 302), ("us-ascii", 302), ("UTF-8", 302), ("iso-8859-1", 400), ("utf-16", 400)],
)
def test_a_form_charset_other_than_utf8_is_read_or_refused_never_a_500(charset, status, rater):
    # Django 5.2 reads a url-encoded body only when its charset is named exactly "utf-8" and raised
    # from the CSRF check and again from the error pages: a 500 on every POST, signed in or not
    from django.test import Client

    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    client.get("/accounts/login/")
    token = client.cookies["csrftoken"].value
    body = f"csrfmiddlewaretoken={token}&username=rater&password=pw-for-tests-123".encode()
    r = client.post(
        "/accounts/login/", body, content_type=f"application/x-www-form-urlencoded; charset={charset}"
    )
    assert r.status_code == status, r.content[:300]
    if status == 400:
        assert b"must be UTF-8" in r.content


_CD = b'Content-Disposition: form-data; name="a"'


@pytest.mark.parametrize(
    ("part", "says"),
    [
        # one part whose header held thousands of parameters took minutes in the MIME parser
        (b'Content-Disposition: form-data; name="a"' + b"; p=q" * 20_000 + b"\r\n\r\nx", b"headers must end"),
        # a nested multipart of 200,000 parts counted as one field and took 12 s
        (
            b'Content-Disposition: form-data; name="a"\r\nContent-Type: multipart/mixed; boundary=in\r\n\r\n'
            + b"--in\r\n\r\nx\r\n" * 20_000,
            b"only text fields",
        ),
        (_CD + b"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=41", b"transfer encoding"),
        (_CD + b"\r\nContent-Type: text/plain; charset=utf-7\r\n\r\n+ADw-", b"send it in UTF-8"),
    ],
)
def test_a_multipart_body_outside_the_plain_shape_is_refused_quickly_before_login(client, part, says):
    import time

    body = b"--zz\r\n" + part + b"\r\n--zz--\r\n"
    started = time.perf_counter()
    r = client.post("/accounts/login/", body, content_type="multipart/form-data; boundary=zz")
    assert r.status_code == 400 and says in r.content
    assert time.perf_counter() - started < 5


@pytest.mark.django_db
def test_a_page_reads_the_multipart_body_the_middleware_checked(rater, acked):
    # the middleware checked the body, then the view read it again with Django's parser, which knows
    # no LF-only line ends and no part charset: what was checked was not what was stored
    from django.test import Client

    client = Client()
    body = (
        b'--zz\nContent-Disposition: form-data; name="version"\n\n' + str(acked.pk).encode() + b"\n--zz--\n"
    )
    client.force_login(rater)
    from labelapp.models import GuidelineAcknowledgment

    GuidelineAcknowledgment.objects.filter(rater=rater).delete()
    r = client.post("/guidelines/", body, content_type="multipart/form-data; boundary=zz")
    assert (
        r.status_code == 302 and GuidelineAcknowledgment.objects.filter(rater=rater, version=acked).exists()
    )


@pytest.mark.parametrize(
    "body",
    [
        b"garbage no boundary here",  # no delimiter at all
        b'--zz\r\nContent-Disposition: form-data; name="reason"\r\n\r\ncut short',  # no closing one
    ],
)
@pytest.mark.django_db
def test_a_multipart_body_without_its_closing_boundary_is_refused_not_read_as_empty(staff, body):
    # read as an empty form, "garbage" started a training run from the page and from the API
    from django.test import Client

    from labelapp.models import TrainingRun

    client = Client()
    client.force_login(staff)
    mp = "multipart/form-data; boundary=zz"
    for url in ("/training/start/", "/api/training/runs/"):
        r = client.post(url, body, content_type=mp)
        assert r.status_code == 400 and b"closing boundary" in r.content, (url, r.status_code)
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_every_page_says_only_this_site_s_scripts_run_and_the_api_docs_have_no_inline_script(client, staff):
    """No Content-Security-Policy was sent; the Swagger page's start-up script was inline."""
    import re

    assert "script-src 'self';" in client.get("/accounts/login/")["Content-Security-Policy"]
    client.force_login(staff)
    page = client.get("/api/docs/")
    html = page.content.decode()
    assert page.status_code == 200 and "frame-ancestors 'none'" in page["Content-Security-Policy"]
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>\s*\S", html)  # every script is a file
    script = re.search(r'<script src="([^"]*script[^"]*)"', html).group(1).replace("&amp;", "&")
    assert "SwaggerUIBundle" in client.get(script).content.decode()
