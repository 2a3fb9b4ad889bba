"""Log formatting for config/settings.py's LOGGING.

Django logs every 4xx answer to a refused request (`Forbidden (Permission denied): /staff/...`) with the
exception's traceback: a rater opening a staff page wrote some thirty lines to the web log, twice with
DEBUG on, and real errors drowned in them. A 4xx is the client's mistake and its one line says what
happened; tracebacks stay for 5xx.
"""

from __future__ import annotations

import logging


class ClientErrorWithoutTraceback(logging.Formatter):
    """The console's formatter: `django.*` records about a 4xx answer without their traceback. A copy
    of the record is formatted, so other handlers (a log collector, pytest's caplog) keep it."""

    def format(self, record: logging.LogRecord) -> str:
        status = getattr(record, "status_code", None)
        if record.name.startswith("django.") and status is not None and 400 <= status < 500:
            record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
        return super().format(record)
