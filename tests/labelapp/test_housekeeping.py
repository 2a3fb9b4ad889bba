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


@pytest.mark.django_db
def test_it_releases_a_backlog_larger_than_one_batch(make_user, acked, make_comparison, monkeypatch):
    # one batch of 1,000 per run: a larger backlog drained at 1,000 a minute
    from labelapp.services import queue
    from labelapp.services.guidelines import guideline_acknowledge

    monkeypatch.setattr(queue, "HOUSEKEEPING_BATCH", 2)
    make_comparison(required_ratings=5)
    for _ in range(5):
        rater = make_user()
        guideline_acknowledge(rater=rater, version=acked)
        assignment_next(rater=rater)
    Assignment.objects.update(lease_expires_at=timezone.now() - timedelta(minutes=1))
    assert queue_housekeeping().released == 5
    assert not Assignment.objects.filter(status="leased").exists()


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


@pytest.mark.django_db(transaction=True)
def test_web_containers_starting_together_all_start():
    """Each web container runs ensure_schedules before serving: on a fresh database all runs but one
    failed with "Periodic task with this Name already exists" and their containers exited."""
    from threading import Barrier, Thread

    from django.db import connection

    start, failed = Barrier(4), []

    def run():
        try:
            start.wait()
            schedules_ensure()
        except Exception as exc:  # noqa: BLE001 (the test reports each failure)
            failed.append(exc)
        finally:
            connection.close()

    threads = [Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failed == []
    assert PeriodicTask.objects.filter(name=QUEUE_HOUSEKEEPING).count() == 1
    assert (
        IntervalSchedule.objects.values("every", "period").distinct().count()
        == IntervalSchedule.objects.count()
    )


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


@pytest.mark.parametrize(
    ("section", "key", "setting"),
    [
        ("LABEL", "QUEUE_HOUSEKEEPING_SECONDS", "QUEUE_HOUSEKEEPING_SECONDS"),
        ("QUALITY", "REFRESH_SECONDS", "QUALITY_REFRESH_SECONDS"),
        (None, "RETENTION_PURGE_SECONDS", "RETENTION_PURGE_SECONDS"),
    ],
)
@pytest.mark.django_db
def test_an_interval_below_one_second_is_an_error_at_start_up(settings, section, key, setting):
    # only RM_CHECK_SECONDS and POLICY_CHECK_SECONDS were checked: QUALITY_REFRESH_SECONDS=-5 was
    # stored, and beat then sent the job about 35 times a second
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    if section is None:
        setattr(settings, key, 0)
    else:
        setattr(settings, section, getattr(settings, section) | {key: -5})
    with pytest.raises(SystemCheckError, match=f"labelapp.E003.*{setting}"):
        call_command("check")
    with pytest.raises(ValueError, match=setting):
        schedules_ensure()
    assert not PeriodicTask.objects.exists()


@pytest.mark.django_db
def test_a_job_stored_with_a_negative_interval_takes_the_setting_again(settings):
    # "Every -5 s from ..." did not match the description's pattern: the job counted as edited in the
    # admin, and only --reset repaired it
    schedules_ensure()
    task = PeriodicTask.objects.get(name=REWARD_MODEL_CHECK)
    task.interval = IntervalSchedule.objects.create(every=-5, period=IntervalSchedule.SECONDS)
    task.description = task.description.replace("Every 300 s", "Every -5 s")
    task.save()
    assert schedules_ensure().updated == [REWARD_MODEL_CHECK]
    assert _every(REWARD_MODEL_CHECK) == settings.TRAINING["CHECK_SECONDS"]


@pytest.mark.django_db
def test_a_job_s_message_expires_after_one_interval():
    # a day without a worker left every beat message queued; they all ran once a worker came back
    PeriodicTask.objects.create(  # as an older version stored it
        name=QUEUE_HOUSEKEEPING,
        task="labelapp.tasks.queue_housekeeping",
        interval=IntervalSchedule.objects.create(every=60, period=IntervalSchedule.SECONDS),
    )
    schedules_ensure()
    for task in PeriodicTask.objects.select_related("interval"):
        assert task.expire_seconds == task.interval.every, task.name


@pytest.mark.django_db
def test_the_expiry_follows_the_job_s_own_interval_and_leaves_an_end_date_alone():
    # an admin's end date (beat refuses it beside expire_seconds) made ensure_schedules fail, and with
    # it the compose web service's start; an edited interval got the setting's expiry
    from datetime import timedelta

    schedules_ensure()
    PeriodicTask.objects.update(expire_seconds=None)
    ended = PeriodicTask.objects.get(name=REWARD_MODEL_CHECK)
    ended.expires = timezone.now() + timedelta(days=30)
    ended.save()
    edited = PeriodicTask.objects.get(name=QUEUE_HOUSEKEEPING)
    edited.interval = IntervalSchedule.objects.create(every=3600, period=IntervalSchedule.SECONDS)
    edited.save()
    schedules_ensure()
    assert PeriodicTask.objects.get(name=REWARD_MODEL_CHECK).expire_seconds is None
    assert PeriodicTask.objects.get(name=QUEUE_HOUSEKEEPING).expire_seconds == 3600


def test_jobs_that_are_not_runs_have_a_time_limit():
    # a job stuck on a lock held its worker slot for ever, and the scheduled jobs behind it never ran
    from labelapp import tasks

    for task in (
        tasks.queue_housekeeping,
        tasks.quality_refresh,
        tasks.retention_purge,
        tasks.reward_model_check,
        tasks.policy_check,
        tasks.decide_reward_model,
    ):
        assert task.time_limit and task.time_limit <= 6 * 3600, task.name
    assert tasks.execute_reward_model_run.time_limit is None  # runs: their own heartbeat watchdog


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
