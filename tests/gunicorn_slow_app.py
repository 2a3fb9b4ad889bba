"""A WSGI app that streams one line every STEP seconds, LINES lines in all: a long export in miniature
(tests/test_gunicorn.py serves it with the web process's own gunicorn command line)."""

import time

LINES, STEP = 8, 0.5


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])

    def body():
        for i in range(LINES):
            yield f"line {i}\n".encode()
            time.sleep(STEP)

    return body()
