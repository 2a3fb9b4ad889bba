"""API test fixtures: clients for a rater, staff and a program (token), and a clean throttle cache."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client

from labelapp.services.tokens import token_create


def _clear_throttle_counters() -> None:
    # Only DRF's throttle keys: Redis may hold other things (Celery's broker in CI), never flush it.
    client = cache._cache.get_client(write=True)
    for key in client.scan_iter(match="*throttle_*"):
        client.delete(key)


@pytest.fixture(autouse=True)
def _fresh_throttle_counters():
    _clear_throttle_counters()
    yield
    _clear_throttle_counters()


@pytest.fixture
def api(client, rater):
    client.force_login(rater)
    return client


@pytest.fixture
def staff_api(staff):
    c = Client()
    c.force_login(staff)
    return c


@pytest.fixture
def staff_key(staff):
    return token_create(user=staff, name="tests")[1]


@pytest.fixture
def rater_key(rater):
    return token_create(user=rater, name="tests")[1]
