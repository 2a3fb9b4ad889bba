"""The Celery app. Workers: `celery -A config worker -Q default` and `-Q gpu --concurrency 1`; beat uses
django-celery-beat's DatabaseScheduler so schedules are edited in the admin."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
