"""The scheduled housekeeping job: through the service, and through a real Celery worker and Redis."""

import os
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from labelapp.models import Assignment, Comparison, Prompt, QueueSnapshot
from labelapp.services.assignment import assignment_next
from labelapp.services.queue import queue_figures, queue_housekeeping
from labelapp.services.schedules import (
    QUEUE_HOUSEKEEPING,
    REWARD_MODEL_CHECK,
    SchedulesReport,
    schedules_ensure,
)


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


def test_pending_counts_only_what_raters_can_be_served(rater, make_comparison):
    # Gold pairs, repeats not yet due and withheld prompts showed on the staff home as pending work
    # that no rater could claim.
    make_comparison(required_ratings=3)
    make_comparison(prompt_text="gold", kind=Comparison.Kind.GOLD, required_ratings=3)
    withheld = make_comparison(prompt_text="held", required_ratings=2)
    Prompt.objects.filter(pk=withheld.prompt_id).update(withheld=True)
    soon = timezone.now() + timedelta(hours=1)
    for when in (soon, timezone.now() - timedelta(minutes=1)):
        c = make_comparison(prompt_text=f"repeat {when}", kind=Comparison.Kind.REPEAT)
        Comparison.objects.filter(pk=c.pk).update(repeat_for=rater, available_at=when)
    assert queue_figures()["pending"] == 3 + 1


@pytest.mark.django_db
def test_schedules_are_created_once_and_admin_edits_survive():
    schedules_ensure()
    task = PeriodicTask.objects.get(name=QUEUE_HOUSEKEEPING)
    task.enabled = False
    task.save()
    assert schedules_ensure().created == []
    assert PeriodicTask.objects.get(name=QUEUE_HOUSEKEEPING).enabled is False


def _every(name: str) -> int:
    return PeriodicTask.objects.select_related("interval").get(name=name).interval.every


@pytest.mark.django_db
def test_a_changed_interval_setting_reaches_a_job_nobody_edited(settings):
    # get_or_create never touched an existing job: RM_CHECK_SECONDS=999 left it at 300 for ever.
    schedules_ensure()
    settings.TRAINING = settings.TRAINING | {"CHECK_SECONDS": 999}
    report = schedules_ensure()
    assert report.updated == [REWARD_MODEL_CHECK] and report.kept == []
    assert _every(REWARD_MODEL_CHECK) == 999
    assert (
        "Every 999 s from RM_CHECK_SECONDS." in PeriodicTask.objects.get(name=REWARD_MODEL_CHECK).description
    )
    assert schedules_ensure() == SchedulesReport()  # nothing left to do


@pytest.mark.django_db
def test_an_interval_edited_in_the_admin_stays_until_reset(settings):
    schedules_ensure()
    task = PeriodicTask.objects.get(name=REWARD_MODEL_CHECK)
    task.interval = IntervalSchedule.objects.create(every=42, period=IntervalSchedule.SECONDS)
    task.save()
    settings.TRAINING = settings.TRAINING | {"CHECK_SECONDS": 999}
    assert schedules_ensure().kept == [REWARD_MODEL_CHECK] and _every(REWARD_MODEL_CHECK) == 42
    assert schedules_ensure(reset=True).updated == [REWARD_MODEL_CHECK] and _every(REWARD_MODEL_CHECK) == 999


@pytest.mark.django_db
def test_a_job_made_before_the_descriptions_is_adopted_only_at_its_setting_s_interval(settings):
    schedules_ensure()
    for task in PeriodicTask.objects.all():  # as an older version stored them, one with a note
        task.description = "ours: do not touch" if task.name == QUEUE_HOUSEKEEPING else ""
        task.save()
    odd = PeriodicTask.objects.get(name=REWARD_MODEL_CHECK)
    odd.interval = IntervalSchedule.objects.create(every=42, period=IntervalSchedule.SECONDS)
    odd.save()
    report = schedules_ensure()
    assert report.kept == [REWARD_MODEL_CHECK] and report.updated == []
    note = PeriodicTask.objects.get(name=QUEUE_HOUSEKEEPING).description
    assert note.startswith("Every 60 s from QUEUE_HOUSEKEEPING_SECONDS.") and note.endswith(
        "ours: do not touch"
    )


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
