"""The Django app: rater and staff pages, REST API, services and Celery tasks of the preference loop."""
