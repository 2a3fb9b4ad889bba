"""Logging filters for config/settings.py's LOGGING.

Django logs every 4xx answer to a refused request (`Forbidden (Permission denied): /staff/...`) with the
exception's traceback: a rater opening a staff page wrote some thirty lines to the web log, twice with
DEBUG on, and real errors drowned in them. A 4xx is the client's mistake and its one line says what
happened; tracebacks stay for 5xx.
"""

from __future__ import annotations

import logging


class ClientErrorWithoutTraceback(logging.Filter):
    """Drop the traceback of `django.request` / `django.security` records about a 4xx answer."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if record.name.startswith("django.") and status is not None and 400 <= status < 500:
            record.exc_info = None
            record.exc_text = None
        return True
