"""The two hand-written SQL statements of the rating hot path run through here, and the
transaction-scoped advisory lock that serialises a kind of write (imports, guideline drafts).

The claim and the submit are single statements (one round trip, atomic on their own, no explicit
transaction: see services/assignment.py and services/ratings.py). Their rows become model instances
without another query.
"""

from __future__ import annotations

import contextlib

from django.db import connection, transaction


def fetch_one(sql: str, params: dict) -> tuple | None:
    """Run one statement and return its first row. Inside an outer transaction (a caller's atomic
    block, a test) a savepoint keeps a constraint violation from poisoning it."""
    block = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
    with block, connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def loaded_instance(model, **fields):
    """A model instance for a row we just read or wrote ourselves (later saves are UPDATEs)."""
    obj = model(**fields)
    obj._state.adding = False
    obj._state.db = "default"
    return obj


def xact_lock(key: int) -> None:
    """Wait for PostgreSQL's advisory lock `key`, held until the caller's transaction ends."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def xact_lock_name(kind: int, name: str) -> None:
    """Wait for the advisory lock of the thing called `name` among those of `kind` (an export file by
    its path), held until the caller's transaction ends. Two names that hash alike only wait for each
    other."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [kind, name])
