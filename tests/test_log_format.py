"""config.log_format.py: a refused request is one log line, without the exception's traceback."""

import logging
import sys

from config.log_format import ClientErrorWithoutTraceback


def _record(status: int) -> logging.LogRecord:
    try:
        raise PermissionError("refused")
    except PermissionError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Forbidden: /x", (), exc_info)
    record.status_code = status
    return record


def test_the_console_drops_a_4xx_traceback_and_keeps_a_5xx_one():
    # a rater opening a staff page wrote the PermissionDenied traceback to the web log, twice with DEBUG
    consoles = [
        h for h in logging.getLogger().handlers if isinstance(h.formatter, ClientErrorWithoutTraceback)
    ]
    assert len(consoles) == 1
    console = consoles[0]
    refused, failed = _record(403), _record(500)
    assert "Traceback" not in console.format(refused) and "Traceback" in console.format(failed)
    assert refused.exc_info is not None  # the record itself keeps it for other handlers
    assert logging.getLogger("django").handlers == []  # one line, through the root's console only
