"""API test fixtures: clients for a rater, staff and a program (token), and a clean throttle cache."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client

from labelapp.services.tokens import token_create


@pytest.fixture(autouse=True)
def _fresh_throttle_counters():
    cache.clear()
    yield
    cache.clear()


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
