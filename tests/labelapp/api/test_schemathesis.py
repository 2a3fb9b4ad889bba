"""Fuzz the OpenAPI schema with schemathesis as a rater, as staff and anonymously (issue 8).

A bounded number of generated examples per operation (SCHEMATHESIS_EXAMPLES, default 3), through
Django's WSGI app against the test database: no 5xx, every status code and body as documented
(error codes included), content types as documented. A couple of minutes at most on 2 cores.
"""

from __future__ import annotations

import json
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from labelapp.models import Comparison, Prompt, Response
from labelapp.services.guidelines import guideline_acknowledge

EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "3"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@schemathesis.serializer("application/jsonl", "application/x-ndjson")
def _jsonl(ctx, value):
    """JSONL bodies (bulk prompt upload): a generated string as is, anything else one JSON line."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    return (json.dumps(value) + "\n").encode("utf-8", "surrogatepass")


def _load_schema():
    """The schema as /api/schema/ serves it (built without a request or the database)."""
    from drf_spectacular.generators import SchemaGenerator

    from config.wsgi import application

    raw = json.loads(json.dumps(SchemaGenerator().get_schema(request=None, public=True), default=str))
    loaded = schemathesis.openapi.from_dict(raw)
    loaded.app = application
    return loaded


schema = _load_schema()


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Users are made per operation; PBKDF2 at full strength would take most of the run.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """As Django's test Client does: a request must not close the test's connection (and with it
    the test transaction) when it ends; schemathesis calls the real WSGI app."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def world(db, rater, guideline, make_comparison):
    """Something for every endpoint to find: guidelines acknowledged, a comparison, a prompt."""
    guideline_acknowledge(rater=rater, version=guideline)
    make_comparison(required_ratings=2)
    p = Prompt.objects.create(text="Fuzzing prompt", source="fuzz", consent=True)
    a = Response.objects.create(prompt=p, text="one", source_model="m")
    b = Response.objects.create(prompt=p, text="two words", source_model="m")
    Comparison.objects.create(prompt=p, response_a=a, response_b=b)


_FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: keeps a failing run short too
    suppress_health_check=list(HealthCheck),
)


@schema.parametrize()
@_FUZZ
def test_the_api_as_a_rater(case, world, rater_key):
    case.call_and_validate(headers={"Authorization": f"Bearer {rater_key}"}, checks=CHECKS)


@schema.parametrize()
@_FUZZ
def test_the_api_as_staff(case, world, staff_key):
    case.call_and_validate(headers={"Authorization": f"Bearer {staff_key}"}, checks=CHECKS)


@schema.parametrize()
@settings(_FUZZ, max_examples=max(1, EXAMPLES // 3))  # every answer is a 401: fewer examples suffice
def test_the_api_anonymously(case, world):
    case.call_and_validate(checks=CHECKS)
