"""Regression (issue 8): `make test` left the test database behind after the browser test.

Runs the browser test in a child pytest against its own database name and checks that the test
database is gone afterwards (a connection left open in Playwright's greenlet kept it busy).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.browser.test_rating_flow import _chromium

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]


def _database_exists(name: str) -> bool:
    with connection._nodb_cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        return cursor.fetchone() is not None


@pytest.mark.django_db
def test_the_browser_test_leaves_no_test_database_behind():
    if _chromium() is None:
        pytest.skip("Debian's chromium is not installed")
    db = settings.DATABASES["default"]
    name = f"{db['NAME'].removeprefix('test_')}_teardown_check"
    host = db["HOST"].replace("/", "%2F")
    url = f"postgres://{db['USER']}@{host}:{db['PORT'] or 5432}/{name}"
    env = {**os.environ, "DATABASE_URL": url}
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/browser/test_rating_flow.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-3000:]
    assert "Error when trying to teardown test databases" not in r.stdout
    assert not _database_exists(f"test_{name}")
