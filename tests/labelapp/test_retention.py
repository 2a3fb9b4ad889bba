"""`manage.py purge_expired`: per-source retention, ratings and export files included, a report."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from labelapp.models import ExportFile, Prompt, Rating, RatingReview
from labelapp.services.export import ExportFilters, export_write
from labelapp.services.retention import purge_expired
from tests.labelapp.export_helpers import make_pair, rate

pytestmark = pytest.mark.django_db


def _age(prompt, days):
    Prompt.objects.filter(pk=prompt.pk).update(created_at=timezone.now() - timedelta(days=days))


def test_it_deletes_what_is_past_its_sources_retention_and_reports_it(
    rater, guideline, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.RETENTION_DAYS = {"playground": 30, "*": 365}
    old_pg = make_pair(text="old playground", source="playground")
    new_pg = make_pair(text="new playground", source="playground")
    old_feed = make_pair(text="old feed", source="feed")
    ancient_feed = make_pair(text="ancient feed", source="feed")
    ratings = [
        rate(rater=rater, comparison=c, preference=1, guideline=guideline)
        for c in (old_pg, new_pg, old_feed, ancient_feed)
    ]
    RatingReview.objects.create(rating=ratings[3], decision="confirm", reason="test")  # goes with its rating
    _age(old_pg.prompt, 31)
    _age(new_pg.prompt, 29)
    _age(old_feed.prompt, 100)
    _age(ancient_feed.prompt, 400)
    result = export_write(path=tmp_path / "e.jsonl", fmt="jsonl", mode="rating", filters=ExportFilters())
    assert result.expires_at is not None and result.expires_at < timezone.now()  # holds old_pg: already due

    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):  # files go once the delete commits
        call_command("purge_expired", stdout=out)
    assert (
        "Deleted: 2 prompts, 4 responses, 2 comparisons, 2 assignments, 2 ratings, 1 reviews, 1 export files."
        in out.getvalue()
    )
    assert set(Prompt.objects.values_list("text", flat=True)) == {"new playground", "old feed"}
    assert Rating.objects.count() == 2
    assert not (tmp_path / "e.jsonl").exists() and ExportFile.objects.count() == 0


def test_without_a_retention_setting_nothing_is_deleted(rater, guideline, settings):
    settings.RETENTION_DAYS = {}
    c = make_pair(source="playground")
    rate(rater=rater, comparison=c, preference=1, guideline=guideline)
    _age(c.prompt, 5000)
    assert purge_expired()["prompts"] == 0


def test_a_dry_run_deletes_nothing(rater, guideline, settings):
    settings.RETENTION_DAYS = {"feed": 1}
    c = make_pair()
    _age(c.prompt, 2)
    assert purge_expired(dry_run=True)["prompts"] == 1 and Prompt.objects.count() == 1


def test_an_export_without_expiring_sources_is_kept(rater, guideline, settings, tmp_path):
    settings.RETENTION_DAYS = {"playground": 30}
    rate(rater=rater, comparison=make_pair(source="feed"), preference=1, guideline=guideline)
    export_write(path=tmp_path / "keep.jsonl", fmt="jsonl", mode="rating", filters=ExportFilters())
    purge_expired()
    assert (tmp_path / "keep.jsonl").exists() and ExportFile.objects.count() == 1


@pytest.mark.parametrize("before", [{}, {"feed": 365}])
def test_an_export_written_before_a_period_was_set_or_shortened_still_goes(
    rater, guideline, settings, tmp_path, before
):
    # the deadline was fixed when the file was written: none without a period, a year under a longer
    # one, so the purge deleted the prompts and left the file holding them on disk for ever
    settings.RETENTION_DAYS = before
    c = make_pair(text="feed prompt", source="feed")
    rate(rater=rater, comparison=c, preference=1, guideline=guideline)
    export_write(path=tmp_path / "old.jsonl", fmt="jsonl", mode="rating", filters=ExportFilters())
    settings.RETENTION_DAYS = {"feed": 1}
    assert purge_expired(dry_run=True)["export_files"] == 0  # not due yet under the new period either
    later = timezone.now() + timedelta(days=1, minutes=1)
    assert purge_expired(now=later, dry_run=True)["export_files"] == 1
    report = purge_expired(now=later)
    assert (report["prompts"], report["export_files"]) == (1, 1)
    assert not (tmp_path / "old.jsonl").exists() and ExportFile.objects.count() == 0


def test_a_file_recorded_before_the_per_source_times_keeps_its_stored_deadline(tmp_path):
    path = tmp_path / "legacy.jsonl"
    path.write_text("{}\n")
    ExportFile.objects.create(path=str(path), format="jsonl", mode="rating", expires_at=timezone.now())
    assert purge_expired()["export_files"] == 1 and not path.exists()


def test_the_beat_purges_daily(rater, guideline, settings):
    from django_celery_beat.models import PeriodicTask

    from labelapp.services.schedules import RETENTION_PURGE, schedules_ensure
    from labelapp.tasks import retention_purge

    schedules_ensure()
    job = PeriodicTask.objects.get(name=RETENTION_PURGE)
    assert job.task == "labelapp.tasks.retention_purge" and job.interval.every == 24 * 3600
    settings.RETENTION_DAYS = {"*": 30}
    old = make_pair(text="old", source="feed")
    rate(rater=rater, comparison=old, preference=1, guideline=guideline)
    _age(old.prompt, 31)
    assert retention_purge()["prompts"] == 1  # the task the job names does the purge
    assert not Prompt.objects.filter(text="old").exists()


def _expired_record(path):
    return ExportFile.objects.create(
        path=str(path), format="jsonl", mode="rating", expires_at=timezone.now() - timedelta(days=1)
    )


def test_an_export_file_that_cannot_be_deleted_stays_on_record_and_the_rest_still_go(tmp_path):
    """The records went first and the files after, in one callback: a file the purge could not delete
    (or could not see) was reported deleted with no record left, and the files after it were never
    tried."""
    stuck = tmp_path / "stuck.jsonl"
    stuck.mkdir()  # unlink() fails on it with an OSError other than "not found"
    gone = tmp_path / "gone.jsonl"  # written on another machine, or deleted by hand
    present = tmp_path / "present.jsonl"
    present.write_text("{}\n")
    for p in (stuck, gone, present):
        _expired_record(p)
    out = StringIO()
    with pytest.raises(CommandError, match="1 expired export file"):
        call_command("purge_expired", stdout=out)
    assert (
        "1 export files." in out.getvalue()
        and "1 expired export file(s) were not on this disk" in out.getvalue()
    )
    assert not present.exists() and stuck.exists()
    assert list(ExportFile.objects.values_list("path", flat=True)) == [str(stuck)]  # the next purge retries


def test_the_admin_history_never_holds_a_prompts_words_and_goes_with_a_purged_prompt(staff, settings):
    """A staff edit in the admin wrote the prompt's first 60 characters (and an answer's first 50)
    into django_admin_log.object_repr, which a purge left behind."""
    from django.contrib.admin.models import CHANGE, LogEntry
    from django.contrib.contenttypes.models import ContentType

    settings.RETENTION_DAYS = {"feed": 30}
    c = make_pair(text="my neighbour Jo Bloggs at 4 Elm Road keeps bees", a="Bees are fine near a house.")
    LogEntry.objects.log_actions(staff.pk, [c.prompt], CHANGE, single_object=True)
    LogEntry.objects.log_actions(staff.pk, [c.response_a], CHANGE, single_object=True)
    reprs = list(LogEntry.objects.values_list("object_repr", flat=True))
    assert not [r for r in reprs if "Bloggs" in r or "Bees" in r], reprs

    # A row written by an earlier release (its name held the text) goes with the purged prompt.
    LogEntry.objects.create(
        user=staff,
        content_type=ContentType.objects.get_for_model(Prompt),
        object_id=str(c.prompt.pk),
        object_repr=f"#{c.prompt.pk} my neighbour Jo Bloggs at 4 Elm Road keeps bees",
        action_flag=CHANGE,
    )
    # the comparison's row ("Comparison #8 (normal) on prompt #3") stayed, pointing at what was gone
    LogEntry.objects.log_actions(staff.pk, [c], CHANGE, single_object=True)
    _age(c.prompt, 31)
    purge_expired()
    assert not LogEntry.objects.filter(object_repr__contains="Bloggs").exists()
    assert LogEntry.objects.count() == 0


def test_deleting_an_export_in_the_admin_deletes_its_file_first(admin_client, tmp_path):
    # Django's delete took the record and left the file (prompt texts) where no purge looks again
    kept, gone = tmp_path / "kept.jsonl", tmp_path / "gone.jsonl"
    kept.write_text("{}\n")
    records = [_expired_record(kept), _expired_record(gone)]
    assert admin_client.get(f"/admin/labelapp/exportfile/{records[0].pk}/delete/").status_code == 403
    r = admin_client.post(
        "/admin/labelapp/exportfile/",
        {"action": "delete_files", "_selected_action": [r.pk for r in records]},
        follow=True,
    )
    assert "Deleted 1 file(s); 1 were not on this server" in r.content.decode()
    assert not kept.exists() and not ExportFile.objects.exists()


def test_a_source_matches_its_retention_period_whatever_its_case(settings):
    settings.RETENTION_DAYS = {"playground": 30, "*": 0}
    shouted = make_pair(source="PlayGround")
    _age(shouted.prompt, 31)
    assert purge_expired()["prompts"] == 1

    settings.RETENTION_DAYS = {"Partner": 0, "*": 30}  # a named source is out of the default either way
    partner = make_pair(source="partner")
    _age(partner.prompt, 31)
    assert purge_expired()["prompts"] == 0


@pytest.mark.parametrize("named, sent", [("Straße", "STRAßE"), ("ΣΟΣ", "σοσ"), ("ﬁle", "FILE")])
def test_prompts_and_export_files_of_a_source_expire_alike(named, sent, settings, rater, guideline, tmp_path):
    """casefold made "Straße" "strasse" for the files' deadline, which PostgreSQL's LOWER() never gave
    a prompt's source: the files went at the named period and the prompts were kept."""
    settings.RETENTION_DAYS = {named: 30}
    c = make_pair(source=sent)
    rate(rater=rater, comparison=c, preference=1, guideline=guideline)
    _age(c.prompt, 60)
    export_write(path=tmp_path / "e.jsonl", fmt="jsonl", mode="rating", filters=ExportFilters())
    file_due = ExportFile.objects.get().oldest_by_source
    report = purge_expired()
    assert (report["prompts"], report["export_files"]) in ((1, 1), (0, 0)), (report, file_due)


@pytest.mark.parametrize("mode", ["rating", "comparison"])
def test_a_file_expires_by_the_prompts_it_holds_not_by_ties_it_left_out(
    mode, settings, rater, guideline, tmp_path
):
    # the file's oldest prompt was read from every rating the filters matched: an old prompt rated only
    # as a tie (left out without a ties file) set the date, and the purge deleted a file that held only
    # a prompt 10 days old
    settings.RETENTION_DAYS = {"partner": 365}
    old, new = make_pair(text="old?", source="partner"), make_pair(text="new?", source="partner")
    rate(rater=rater, comparison=old, preference=0, guideline=guideline)
    rate(rater=rater, comparison=new, preference=2, guideline=guideline)
    _age(old.prompt, 400)
    _age(new.prompt, 10)
    export_write(path=tmp_path / "e.jsonl", fmt="jsonl", mode=mode, filters=ExportFilters())
    record = ExportFile.objects.get()
    held = Prompt.objects.get(pk=new.prompt_id).created_at
    assert record.rows == 1 and record.oldest_by_source == {"partner": held.isoformat()}
    # with a ties file, the old tie's prompt dates the ties file only, not the pairs file beside it
    export_write(
        path=tmp_path / "p.jsonl",
        fmt="jsonl",
        mode=mode,
        filters=ExportFilters(),
        ties_path=tmp_path / "t.jsonl",
    )
    dates = dict(ExportFile.objects.values_list("path", "oldest_by_source"))
    old_date = Prompt.objects.get(pk=old.prompt_id).created_at.isoformat()
    assert dates[str((tmp_path / "p.jsonl").resolve())] == {"partner": held.isoformat()}
    assert dates[str((tmp_path / "t.jsonl").resolve())] == {"partner": old_date}
    assert purge_expired()["export_files"] == 1  # the ties file
    assert (tmp_path / "e.jsonl").exists() and (tmp_path / "p.jsonl").exists()
    assert not (tmp_path / "t.jsonl").exists()


def test_every_admin_model_a_purge_cascades_to_has_its_history_purged_too():
    # the purge took the admin rows of prompts and answers only: comparisons', assignments', consent
    # changes' and policy samples' rows stayed, naming rows that were gone
    from django.contrib import admin
    from django.db.models import CASCADE

    from labelapp.models import Prompt
    from labelapp.services.retention import _LOGGED_WITH_PROMPT

    reached, todo = {Prompt}, [Prompt]
    while todo:
        for rel in todo.pop()._meta.related_objects:
            if rel.on_delete is CASCADE and rel.related_model not in reached:
                reached.add(rel.related_model)
                todo.append(rel.related_model)
    in_admin = {m for m in reached if admin.site.is_registered(m)}
    assert in_admin <= {model for model, _ in _LOGGED_WITH_PROMPT}, in_admin


def test_an_expired_record_read_before_a_new_export_at_its_path_leaves_the_new_file(tmp_path, monkeypatch):
    """The purge lists the expired records, then deletes each one's file: an export that wrote to the
    same path in between had its new file deleted by the old record, and its record pointed at
    nothing."""
    from labelapp.services import retention

    path = tmp_path / "daily.jsonl"
    path.write_text("{}\n")
    _expired_record(path.resolve())
    stale = retention._expired_files(timezone.now())
    export_write(path=path, fmt="jsonl", mode="rating", filters=ExportFilters())  # the new export lands
    monkeypatch.setattr(retention, "_expired_files", lambda now: stale)  # listed before it landed
    report = purge_expired()
    assert report["export_files"] == 0 and path.exists()
    assert ExportFile.objects.get().path == str(path.resolve())


@pytest.mark.django_db(transaction=True)
def test_a_deletion_waits_for_an_export_landing_at_its_path_to_record_it(tmp_path, monkeypatch):
    """Between an export's moving its file into place and recording it, a deletion by the old record
    deleted the new file."""
    import threading

    from labelapp.services import export
    from labelapp.services.retention import export_file_delete

    path = tmp_path / "daily.jsonl"
    path.write_text("{}\n")
    old = _expired_record(path.resolve())
    landed, go_on = threading.Event(), threading.Event()
    land = export._Landing.land

    def land_then_wait(self):
        land(self)
        landed.set()
        go_on.wait(10)

    monkeypatch.setattr(export._Landing, "land", land_then_wait)
    writer = threading.Thread(
        target=export_write,
        kwargs={"path": path, "fmt": "jsonl", "mode": "rating", "filters": ExportFilters()},
    )
    writer.start()
    assert landed.wait(10)
    outcome = []
    deleter = threading.Thread(target=lambda: outcome.append(export_file_delete(old)))
    deleter.start()
    deleter.join(1)  # it waits for the export's record...
    go_on.set()
    writer.join(10)
    deleter.join(10)
    assert outcome == ["replaced"] and path.exists()  # ...and then finds its own record gone
    assert ExportFile.objects.get().path == str(path.resolve())
