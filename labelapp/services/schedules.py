"""The scheduled jobs, stored with django-celery-beat so admins can edit them in the admin.

`schedules_ensure()` creates missing entries, applies a changed interval setting (RM_CHECK_SECONDS, ...)
to the entries nobody edited, and never overwrites an entry an admin has edited.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from labelapp.rawsql import xact_lock

QUEUE_HOUSEKEEPING = "Queue housekeeping: release expired leases, record figures"
REWARD_MODEL_CHECK = "Reward model: retrain when enough new ratings arrived"
QUALITY_REFRESH = "Quality: recompute rater figures, trust weights and dashboard reports"
POLICY_CHECK = "Policy: start a round when a new reward model is active"
RETENTION_PURGE = "Retention: delete prompts, ratings and export files past RETENTION_DAYS"


def _jobs() -> list[tuple[str, str, str, int]]:
    """(name, task, setting, every seconds) of each scheduled job."""
    return [
        (
            QUEUE_HOUSEKEEPING,
            "labelapp.tasks.queue_housekeeping",
            "QUEUE_HOUSEKEEPING_SECONDS",
            settings.LABEL["QUEUE_HOUSEKEEPING_SECONDS"],
        ),
        (
            REWARD_MODEL_CHECK,
            "labelapp.tasks.reward_model_check",
            "RM_CHECK_SECONDS",
            settings.TRAINING["CHECK_SECONDS"],
        ),
        (
            QUALITY_REFRESH,
            "labelapp.tasks.quality_refresh",
            "QUALITY_REFRESH_SECONDS",
            settings.QUALITY["REFRESH_SECONDS"],
        ),
        (
            POLICY_CHECK,
            "labelapp.tasks.policy_check",
            "POLICY_CHECK_SECONDS",
            settings.POLICY["CHECK_SECONDS"],
        ),
        (
            RETENTION_PURGE,
            "labelapp.tasks.retention_purge",
            "RETENTION_PURGE_SECONDS",
            settings.RETENTION_PURGE_SECONDS,
        ),
    ]


# The interval a job got from its setting, written into its description: while the job still runs at
# that interval nobody has edited it, so a changed setting may replace it.
_FROM_SETTING = re.compile(r"^Every (-?\d+) s from (\w+)\.", re.M)  # a stored -5 is the setting's too
_SCHEDULES_LOCK = 0x5C4ED1  # pg_advisory_xact_lock key: one schedules_ensure at a time


def _description(setting: str, every: int) -> str:
    return (
        f"Every {every} s from {setting}. While the interval stays at that, a new {setting} replaces "
        "it at the next ensure_schedules; an interval edited here stays."
    )


def _with_description(old: str, setting: str, every: int) -> str:
    """The setting's line first; whatever else an admin wrote in the description stays below it."""
    rest = [ln for ln in (old or "").splitlines() if not _FROM_SETTING.match(ln)]
    return "\n".join([_description(setting, every), *rest]).strip()


def schedules_settings_check() -> None:
    """Every job's interval setting is a whole number of seconds, at least 1: beat sends a job whose
    interval is 0 or below without pause (about 70 messages a second of each such job). ValueError."""
    for _, _, setting, every in _jobs():
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"{setting} must be a whole number of seconds, at least 1 (it is {every!r})")


@dataclass
class SchedulesReport:
    created: list[str] = field(default_factory=list)
    # the setting changed and nobody had edited the job's interval
    updated: list[str] = field(default_factory=list)
    # edited in the admin: its interval differs from the setting's
    kept: list[str] = field(default_factory=list)


def _interval(every: int) -> IntervalSchedule:
    return IntervalSchedule.objects.get_or_create(every=every, period=IntervalSchedule.SECONDS)[0]


def _seconds(task: PeriodicTask) -> int | None:
    """The job's interval in seconds (None: it runs on another kind of schedule)."""
    interval = task.interval
    return interval.every if interval is not None and interval.period == IntervalSchedule.SECONDS else None


def _unedited(task: PeriodicTask, setting: str) -> bool:
    """The job still runs at the interval its description says it got from `setting`."""
    mark = _FROM_SETTING.search(task.description or "")
    return mark is not None and mark.group(2) == setting and _seconds(task) == int(mark.group(1))


@transaction.atomic
def schedules_ensure(*, reset: bool = False) -> SchedulesReport:
    """Create the missing jobs; give a job the interval of its setting when that changed and nobody
    edited the job (or always, with `reset`). A job created before the descriptions named their
    setting is adopted when it runs at its setting's interval, and kept otherwise."""
    schedules_settings_check()
    # Web containers starting together each run this: with nothing to lock on a fresh database, all but
    # one failed to create the jobs ("already exists") and exited before serving.
    xact_lock(_SCHEDULES_LOCK)
    report = SchedulesReport()
    for name, task_path, setting, every in _jobs():
        task = (
            PeriodicTask.objects.select_for_update(of=("self",))
            .select_related("interval")
            .filter(name=name)
            .first()
        )
        if task is None:
            PeriodicTask.objects.create(
                name=name,
                task=task_path,
                interval=_interval(every),
                queue="default",
                description=_description(setting, every),
                expire_seconds=every,
            )
            report.created.append(name)
            continue
        unedited, current = _unedited(task, setting), _seconds(task)
        if task.expire_seconds is None and task.expires is None and current is not None:
            # A message older than one interval is dropped: after a day without a worker, the backlog
            # (1,440 housekeepings, 144 full quality recomputes...) ran one after another. The job's own
            # interval (an admin may have edited it); none beside an end date (beat refuses both).
            task.expire_seconds = current
            task.save(update_fields=["expire_seconds"])
        if not unedited and current != every and not reset:
            report.kept.append(name)
            continue
        if current != every:
            report.updated.append(name)
        if current != every or not unedited:
            task.interval, task.crontab, task.solar, task.clocked = _interval(every), None, None, None
            if task.expires is None and task.expire_seconds in (None, current):  # not an admin's choice
                task.expire_seconds = every
            task.description = _with_description(task.description, setting, every)
            task.save()
    return report
