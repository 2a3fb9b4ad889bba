"""Celery tasks: thin entry points that call one service each (DESIGN section 3)."""

from celery import shared_task


@shared_task(name="labelapp.tasks.queue_housekeeping")
def queue_housekeeping() -> int:
    from labelapp.services.queue import queue_housekeeping as run

    return run().pk
