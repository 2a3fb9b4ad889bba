"""Loaded before Django's settings: test-wide environment defaults."""

import os

# Live-server and thread tests open connections in other threads; persistent ones would keep the
# test database busy at teardown.
os.environ.setdefault("DB_CONN_MAX_AGE", "0")
