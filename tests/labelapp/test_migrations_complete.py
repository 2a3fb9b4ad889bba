"""Every model change has its migration: a field added to a model without one runs in the tests (the test
database is built from the migrations, so the column would be missing) only by luck, and breaks a
deployment at the first query that touches it."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command


@pytest.mark.django_db
def test_no_model_change_lacks_a_migration():
    out = io.StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=out)
    except SystemExit as exc:  # --check exits 1 when a migration would be made
        pytest.fail(f"makemigrations would write a migration (exit {exc.code}):\n{out.getvalue()}")
