"""The scheduled housekeeping job: through the service, and through a real Celery worker and Redis."""

import os
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from labelapp.models import Assignment, QueueSnapshot
from labelapp.services.assignment import assignment_next
from labelapp.services.queue import queue_housekeeping
from labelapp.services.schedules import QUEUE_HOUSEKEEPING, schedules_ensure


@pytest.mark.django_db
def test_it_releases_expired_leases_and_records_figures(rater, other_rater, acked, make_comparison):
    make_comparison(required_ratings=2)
    a = assignment_next(rater=rater)
    assignment_next(rater=other_rater)
    Assignment.objects.filter(pk=a.pk).update(lease_expires_at=timezone.now() - timedelta(minutes=1))
    snap = queue_housekeeping()
    assert (snap.released, snap.pending, snap.leased, snap.done) == (1, 1, 1, 0)
    a.refresh_from_db()
    assert a.status == "expired"


@pytest.mark.django_db
def test_schedules_are_created_once_and_admin_edits_survive():
    schedules_ensure()
    task = PeriodicTask.objects.get(name=QUEUE_HOUSEKEEPING)
    task.enabled = False
    task.save()
    assert schedules_ensure() == []
    assert PeriodicTask.objects.get(name=QUEUE_HOUSEKEEPING).enabled is False


@pytest.mark.celery
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_housekeeping_task(rater, acked, make_comparison, celery_worker_process):
    from labelapp.tasks import queue_housekeeping as task

    make_comparison(required_ratings=1)
    a = assignment_next(rater=rater)
    Assignment.objects.filter(pk=a.pk).update(lease_expires_at=timezone.now() - timedelta(minutes=1))
    queue = f"test-housekeeping-{os.getpid()}"
    worker = celery_worker_process(queue=queue, name=f"{queue}@%h")
    task.apply_async(queue=queue)
    deadline = time.time() + 60
    while time.time() < deadline and not QueueSnapshot.objects.exists():
        time.sleep(0.3)
    snap = QueueSnapshot.objects.first()
    assert snap is not None, "the worker never ran the task"
    assert snap.released == 1
    a.refresh_from_db()
    assert a.status == "expired"
    assert worker.poll() is None
