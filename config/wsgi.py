"""WSGI entry point for gunicorn (`gunicorn config.wsgi`) and runserver (WSGI_APPLICATION)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
_django = get_wsgi_application()

# after django.setup(), which get_wsgi_application ran: labelapp imports models
from labelapp.middleware import refuse_unsupported_charset  # noqa: E402

# A charset Django cannot decode fails while it builds the request, before any middleware.
application = refuse_unsupported_charset(_django)
