"""Recorded consent changes (services/consent.py): withdrawal takes a prompt out of training, exports and
the queue at once, with who, when and why kept; restoration puts it back; the admin only records.

Before: the only way to change a stored prompt's consent was the boolean on the admin's change form,
with no reason and no record, and a withdrawn prompt's comparisons were still served to raters (the
queue's claim checks `withheld`, not `consent`).
"""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from labelapp.models import Assignment, Comparison, Prompt, PromptConsentChange, Rating
from labelapp.services.assignment import assignment_next
from labelapp.services.consent import REASON_MAX, ConsentError, prompt_consent_set
from labelapp.services.export import ExportFilters, export_rows
from labelapp.services.ratings import RatingError, RatingInput, rating_submit
from labelapp.services.review import prompt_withhold
from labelapp.services.roles import NotPermitted
from labelapp.services.training import _usable_ratings
from tests.labelapp.export_helpers import make_pair, rate

pytestmark = pytest.mark.django_db


def _exported_rating_ids() -> set[int]:
    return {
        row["rating_id"]
        for kind, row in export_rows(mode="rating", filters=ExportFilters())
        if kind == "pair"
    }


# --- the service ---------------------------------------------------------------------------------------


def test_withdrawal_sets_consent_and_records_who_when_and_why(staff):
    prompt = make_pair().prompt
    change = prompt_consent_set(prompt=prompt, consent=False, reason="  user asked by e-mail  ", by=staff)
    prompt.refresh_from_db()
    assert prompt.consent is False
    assert (change.prompt_id, change.consent, change.reason, change.changed_by) == (
        prompt.pk,
        False,
        "user asked by e-mail",
        staff,
    )
    assert change.created_at is not None
    back = prompt_consent_set(prompt=prompt, consent=True, reason="consent given again", by=None)
    prompt.refresh_from_db()
    assert prompt.consent is True and back.changed_by is None
    assert list(prompt.consent_changes.values_list("consent", flat=True)) == [False, True]


def test_the_log_line_forges_nothing_and_holds_no_reason(staff, caplog):
    # the reason went into the log verbatim (it may name the person who asked, and retention's purge
    # cannot reach a log file); a line break in it could forge a log line
    prompt = make_pair().prompt
    reason = "Data subject Quentin Vorlauf asked\nERROR all ratings deleted"
    with caplog.at_level("INFO", logger="labelapp.services.consent"):
        change = prompt_consent_set(prompt=prompt, consent=False, reason=reason, by=staff)
    [line] = [r.getMessage() for r in caplog.records if "consent" in r.getMessage()]
    assert "\n" not in line and "Vorlauf" not in line and "ERROR" not in line
    assert f"prompt #{prompt.pk} consent withdrawn" in line and f"consent change #{change.pk}" in line


@pytest.mark.parametrize(
    "reason, message",
    [
        ("", "Give a reason"),
        ("   \n ", "Give a reason"),
        ("why\x00", "NUL"),
        ("x" * (REASON_MAX + 1), "Keep the reason"),
    ],
)
def test_a_bad_reason_is_refused_and_nothing_changes(staff, reason, message):
    prompt = make_pair().prompt
    with pytest.raises(ConsentError, match=message):
        prompt_consent_set(prompt=prompt, consent=False, reason=reason, by=staff)
    prompt.refresh_from_db()
    assert prompt.consent is True and not PromptConsentChange.objects.exists()


def test_a_reason_of_the_maximum_length_is_kept_whole(staff):
    prompt = make_pair().prompt
    change = prompt_consent_set(prompt=prompt, consent=False, reason="x" * REASON_MAX, by=staff)
    change.refresh_from_db()
    assert len(change.reason) == REASON_MAX


def test_a_change_to_the_value_in_force_is_refused_not_recorded(staff):
    prompt = make_pair().prompt
    with pytest.raises(ConsentError, match="already has consent=true"):
        prompt_consent_set(prompt=prompt, consent=True, reason="restore", by=staff)
    prompt_consent_set(prompt=prompt, consent=False, reason="withdrawn", by=staff)
    with pytest.raises(ConsentError, match="already has consent=false"):
        prompt_consent_set(prompt=prompt, consent=False, reason="again", by=staff)
    assert PromptConsentChange.objects.count() == 1


def test_the_error_is_a_value_error_and_non_booleans_and_raters_are_refused(staff, rater):
    prompt = make_pair().prompt
    assert issubclass(ConsentError, ValueError)
    with pytest.raises(ConsentError, match="true or false"):
        prompt_consent_set(prompt=prompt, consent=0, reason="r", by=staff)
    with pytest.raises(NotPermitted, match="may not change a prompt's consent"):
        prompt_consent_set(prompt=prompt, consent=False, reason="r", by=rater)
    prompt.refresh_from_db()
    assert prompt.consent is True and not PromptConsentChange.objects.exists()


# --- what a withdrawal does ----------------------------------------------------------------------------


def test_after_withdrawal_the_prompts_ratings_leave_training_and_exports(staff, rater, guideline):
    withdrawn = make_pair()
    kept = make_pair(text="Name a prime number.")
    gone = rate(rater=rater, comparison=withdrawn, preference=-2, guideline=guideline)
    stays = rate(rater=rater, comparison=kept, preference=2, guideline=guideline)
    assert set(Rating.objects.usable().values_list("pk", flat=True)) == {gone.pk, stays.pk}
    assert _exported_rating_ids() == {gone.pk, stays.pk}

    prompt_consent_set(prompt=withdrawn.prompt, consent=False, reason="data subject request", by=staff)

    assert set(Rating.objects.usable().values_list("pk", flat=True)) == {stays.pk}
    assert set(_usable_ratings().values_list("pk", flat=True)) == {stays.pk}  # what training reads
    assert _exported_rating_ids() == {stays.pk}
    assert Rating.objects.filter(pk=gone.pk).exists()  # evidence stays; it only stops being used

    prompt_consent_set(prompt=withdrawn.prompt, consent=True, reason="consent given again", by=staff)
    assert set(Rating.objects.usable().values_list("pk", flat=True)) == {gone.pk, stays.pk}


def test_withdrawal_stops_the_queue_serving_the_prompt_and_takes_back_open_leases(
    staff, rater, other_rater, acked, make_comparison
):
    comparison = make_comparison(required_ratings=3)
    held = assignment_next(rater=rater)  # a rater has the page open right now
    assert held.comparison_id == comparison.pk

    change = prompt_consent_set(prompt=comparison.prompt, consent=False, reason="withdrawn", by=staff)

    assert change.comparison_ids == [comparison.pk]
    comparison.refresh_from_db()
    assert comparison.is_active is False and comparison.claimed_count == 0
    assert Assignment.objects.get(pk=held.pk).status == Assignment.Status.EXPIRED
    assert assignment_next(rater=other_rater) is None  # not served to anyone else
    assert assignment_next(rater=rater) is None  # nor again to the rater who held it
    with pytest.raises(RatingError, match="withdrawn"):  # the open page's late rating is refused
        rating_submit(
            rater=rater, assignment_id=held.pk, idempotency_key=held.form_key, data=RatingInput(preference=0)
        )
    assert not Rating.objects.exists()


def test_withdrawal_takes_back_a_lease_on_a_comparison_staff_had_closed(staff, rater, acked, make_comparison):
    """Only leases on active comparisons were taken back: one on a comparison closed while a rater held
    it stayed `leased`, its slot counted, after the prompt's consent was withdrawn."""
    comparison = make_comparison(required_ratings=3)
    held = assignment_next(rater=rater)
    Comparison.objects.filter(pk=comparison.pk).update(is_active=False)  # staff close it meanwhile

    change = prompt_consent_set(prompt=comparison.prompt, consent=False, reason="withdrawn", by=staff)

    assert Assignment.objects.get(pk=held.pk).status == Assignment.Status.EXPIRED
    comparison.refresh_from_db()
    assert comparison.claimed_count == 0 and comparison.is_active is False
    assert change.comparison_ids == []  # not one the withdrawal deactivated: a restoration leaves it closed
    prompt_consent_set(prompt=comparison.prompt, consent=True, reason="given again", by=staff)
    assert Comparison.objects.get(pk=comparison.pk).is_active is False


def test_a_rating_on_a_lease_taken_back_does_not_blame_the_raters_time(staff, rater, acked, make_comparison):
    """The refusal said "Your time on this comparison ran out and it has been withdrawn" to a rater
    whose lease had 15 minutes left: the withdrawal, not the clock, ended it."""
    comparison = make_comparison(required_ratings=3)
    held = assignment_next(rater=rater)
    prompt_consent_set(prompt=comparison.prompt, consent=False, reason="withdrawn", by=staff)
    with pytest.raises(RatingError) as refused:
        rating_submit(
            rater=rater, assignment_id=held.pk, idempotency_key=held.form_key, data=RatingInput(preference=0)
        )
    assert "withdrawn" in str(refused.value) and "ran out" not in str(refused.value)


def test_restoration_puts_back_what_the_withdrawal_took_out(staff, rater, acked, make_comparison):
    comparison = make_comparison(required_ratings=2)
    staff_closed = Comparison.objects.create(  # staff had closed this one before the withdrawal
        prompt=comparison.prompt,
        response_a=comparison.response_b,
        response_b=comparison.response_a,
        is_active=False,
    )

    prompt_consent_set(prompt=comparison.prompt, consent=False, reason="withdrawn", by=staff)
    change = prompt_consent_set(prompt=comparison.prompt, consent=True, reason="given again", by=staff)

    assert change.comparison_ids == [comparison.pk]
    assert Comparison.objects.get(pk=comparison.pk).is_active is True
    assert Comparison.objects.get(pk=staff_closed.pk).is_active is False  # not ours to reopen
    assert assignment_next(rater=rater).comparison_id == comparison.pk


def test_restoration_leaves_a_withheld_prompt_out_of_the_queue(staff, make_comparison):
    comparison = make_comparison()
    prompt_consent_set(prompt=comparison.prompt, consent=False, reason="withdrawn", by=staff)
    prompt_withhold(prompt_id=comparison.prompt_id)
    change = prompt_consent_set(
        prompt=Prompt.objects.get(pk=comparison.prompt_id), consent=True, reason="ok", by=staff
    )
    assert change.comparison_ids == []
    assert Comparison.objects.get(pk=comparison.pk).is_active is False


def test_restoring_a_prompt_ingested_without_consent_is_recorded(staff):
    prompt = Prompt.objects.create(text="No consent at ingest", consent=False)
    change = prompt_consent_set(prompt=prompt, consent=True, reason="the user agreed later", by=staff)
    assert change.comparison_ids == [] and Prompt.objects.get(pk=prompt.pk).consent is True


# --- the admin -----------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, staff):
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    return client


def _change_form(prompt: Prompt, **overrides) -> dict:
    data = {
        "text": prompt.text,
        "category": prompt.category,
        "source": prompt.source,
        "responses-TOTAL_FORMS": "0",
        "responses-INITIAL_FORMS": "0",
        "responses-MIN_NUM_FORMS": "0",
        "responses-MAX_NUM_FORMS": "1000",
    }
    return data | overrides


def test_consent_is_read_only_on_the_prompt_change_form(admin_client):
    prompt = Prompt.objects.create(text="Stored prompt", consent=True)
    change = reverse("admin:labelapp_prompt_change", args=[prompt.pk])
    page = admin_client.get(change)
    assert page.status_code == 200 and b'name="consent"' not in page.content
    # A form that still sends the box (unticked: consent=false) changes nothing.
    r = admin_client.post(change, _change_form(prompt, text="Stored prompt, edited"))
    assert r.status_code == 302, r.content.decode()[:2000]
    prompt.refresh_from_db()
    assert prompt.text == "Stored prompt, edited" and prompt.consent is True
    assert not PromptConsentChange.objects.exists()
    # A new prompt typed in the admin still takes its first value, like an imported one.
    assert b'name="consent"' in admin_client.get(reverse("admin:labelapp_prompt_add")).content


def test_the_withdraw_action_asks_for_a_reason_and_records_it(admin_client, staff):
    first, second = Prompt.objects.create(text="One"), Prompt.objects.create(text="Two")
    changelist = reverse("admin:labelapp_prompt_changelist")
    ask = admin_client.post(
        changelist, {"action": "withdraw_consent", "_selected_action": [first.pk, second.pk]}
    )
    assert ask.status_code == 200 and b'name="reason"' in ask.content
    assert Prompt.objects.filter(consent=False).count() == 0
    empty = {"action": "withdraw_consent", "_selected_action": [first.pk], "apply": "1", "reason": "  "}
    assert admin_client.post(changelist, empty).status_code == 200  # the form again, with its error
    assert not PromptConsentChange.objects.exists()

    r = admin_client.post(
        changelist,
        {
            "action": "withdraw_consent",
            "_selected_action": [first.pk, second.pk],
            "apply": "1",
            "reason": "DSR 42",
        },
        follow=True,
    )
    assert b"Withdraw consent: 2 prompt(s), reason recorded." in r.content
    assert set(PromptConsentChange.objects.values_list("prompt_id", "consent", "reason", "changed_by")) == {
        (first.pk, False, "DSR 42", staff.pk),
        (second.pk, False, "DSR 42", staff.pk),
    }
    # The history shows on the prompt's page.
    page = admin_client.get(reverse("admin:labelapp_prompt_change", args=[first.pk]))
    assert b"withdrawn by staff: DSR 42" in page.content


def test_the_restore_action_reports_what_it_refused(admin_client, staff):
    withdrawn, consented = Prompt.objects.create(text="One"), Prompt.objects.create(text="Two")
    prompt_consent_set(prompt=withdrawn, consent=False, reason="asked", by=staff)
    r = admin_client.post(
        reverse("admin:labelapp_prompt_changelist"),
        {"action": "restore_consent", "_selected_action": [withdrawn.pk, consented.pk], "apply": "1",
         "reason": "agreed again"},
        follow=True,
    )  # fmt: skip
    body = r.content.decode()
    assert (
        "Restore consent: 1 prompt(s)" in body
        and f"#{consented.pk}: Prompt #{consented.pk} already has" in body
    )
    assert Prompt.objects.get(pk=withdrawn.pk).consent is True


def test_consent_changes_are_read_only_in_the_admin(admin_client, staff):
    prompt = Prompt.objects.create(text="One")
    change = prompt_consent_set(prompt=prompt, consent=False, reason="asked", by=staff)
    assert admin_client.get(reverse("admin:labelapp_promptconsentchange_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:labelapp_promptconsentchange_add")).status_code == 403
    url = reverse("admin:labelapp_promptconsentchange_change", args=[change.pk])
    page = admin_client.get(url)
    assert page.status_code == 200 and b'name="reason"' not in page.content
    admin_client.post(url, {"prompt": prompt.pk, "consent": "on", "reason": "rewritten"})
    change.refresh_from_db()
    assert (change.consent, change.reason) == (False, "asked")
    delete = reverse("admin:labelapp_promptconsentchange_delete", args=[change.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403


# --- the command ---------------------------------------------------------------------------------------


def test_the_command_withdraws_and_restores_with_a_recorded_reason(staff, make_comparison):
    comparison = make_comparison()
    out = StringIO()
    call_command(
        "prompt_consent",
        str(comparison.prompt_id),
        "--withdraw",
        "--reason",
        "DSR 7",
        "--by",
        "staff",
        stdout=out,
    )
    assert "consent withdrawn; 1 comparison(s) taken out of the queue" in out.getvalue()
    call_command("prompt_consent", str(comparison.prompt_id), "--restore", "--reason", "agreed", stdout=out)
    assert "consent restored; 1 comparison(s) put back" in out.getvalue()
    assert list(PromptConsentChange.objects.values_list("consent", "reason", "changed_by")) == [
        (False, "DSR 7", staff.pk),
        (True, "agreed", None),
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--withdraw", "--reason", ""], "Give a reason"),
        (["--restore", "--reason", "r"], "already has consent=true"),
        (["--withdraw", "--reason", "r", "--by", "nobody"], "No active user"),
        (["--withdraw", "--reason", "r", "--by", "rater"], "Only staff"),
        (["--withdraw", "--reason", "r", "--by", "st\x00aff"], "NUL"),
    ],
)
def test_the_command_refuses_with_a_message(staff, rater, args, message):
    prompt = Prompt.objects.create(text="One")
    with pytest.raises(CommandError, match=message):
        call_command("prompt_consent", str(prompt.pk), *args, stdout=StringIO())
    assert Prompt.objects.get(pk=prompt.pk).consent is True and not PromptConsentChange.objects.exists()


def test_the_command_refuses_an_unknown_prompt_and_needs_one_direction(staff):
    with pytest.raises(CommandError, match="No prompt #999999"):
        call_command("prompt_consent", "999999", "--withdraw", "--reason", "r", stdout=StringIO())
    prompt = Prompt.objects.create(text="One")
    with pytest.raises(CommandError):  # argparse: one of --withdraw / --restore, not both
        call_command("prompt_consent", str(prompt.pk), "--withdraw", "--restore", "--reason", "r")
    with pytest.raises(CommandError):
        call_command("prompt_consent", str(prompt.pk), "--reason", "r")


@pytest.mark.parametrize("how", ["consent", "withheld"])
def test_a_lease_that_escaped_the_take_back_is_neither_served_nor_rated(
    staff, rater, acked, make_comparison, how
):
    # A claim committing in the instant of a withdrawal keeps its lease (the take-back's SELECT did not
    # see it): the rater was served the prompt on every reload and the rating was accepted.
    comparison = make_comparison(required_ratings=3)
    held = assignment_next(rater=rater)
    change = {"consent": False} if how == "consent" else {"withheld": True}
    Prompt.objects.filter(pk=comparison.prompt_id).update(**change)  # the lease escaped, as in the race
    with pytest.raises(RatingError, match="withdrawn while you had it open"):
        rating_submit(
            rater=rater, assignment_id=held.pk, idempotency_key=held.form_key, data=RatingInput(preference=-1)
        )
    assert not Rating.objects.exists()
    assert assignment_next(rater=rater) is None  # not served again: the lease is ended, its slot freed
    assert Assignment.objects.get(pk=held.pk).status == Assignment.Status.EXPIRED
    assert Comparison.objects.get(pk=comparison.pk).claimed_count == 0


def test_the_rating_pages_of_a_withdrawn_prompt_lead_on_not_404(client, staff, rater, acked, make_comparison):
    # the selector hides a withdrawn prompt from its rater: the page, the skip and an htmx form error
    # answered a bare 404 where they had led to the next comparison
    comparison = make_comparison(required_ratings=3)
    held = assignment_next(rater=rater)
    prompt_consent_set(prompt=comparison.prompt, consent=False, reason="withdrawn", by=staff)
    client.force_login(rater)
    url = reverse("rate", args=[held.pk])
    r = client.get(url)
    assert r.status_code == 302 and r["Location"] == reverse("rate_next")
    r = client.post(reverse("rate_skip", args=[held.pk]), {"reason": "unsure"})
    assert r.status_code == 302 and r["Location"] == reverse("rate_next")
    r = client.post(url, {"preference": "9"}, HTTP_HX_REQUEST="true")
    assert r.status_code == 200 and r["HX-Redirect"] == reverse("rate_next")
    assert client.get(reverse("rate", args=[10**6])).status_code == 404  # no such assignment: still 404


def _page_post(client, assignment, **fields):
    data = {"form_key": str(assignment.form_key), "time_on_task_ms": "1234", "preference": "0", **fields}
    return client.post(reverse("rate", args=[assignment.pk]), data, HTTP_HX_REQUEST="true")


def test_a_lease_taken_back_then_rated_after_all_leaves_no_notice_of_loss(
    client, staff, rater, acked, make_comparison, django_capture_on_commit_callbacks
):
    """Consent withdrawn, then restored, while the page was open: the rating was stored, yet the next
    /rate/ said "set aside ... nothing of it was saved" (the note was kept per rater, not per lease)."""
    comparison = make_comparison(required_ratings=3)
    held = assignment_next(rater=rater)
    with django_capture_on_commit_callbacks(execute=True):
        prompt_consent_set(prompt=comparison.prompt, consent=False, reason="withdrawn", by=staff)
        prompt_consent_set(prompt=comparison.prompt, consent=True, reason="given again", by=staff)
    client.force_login(rater)
    with django_capture_on_commit_callbacks(execute=True):
        assert _page_post(client, held).status_code == 200
    assert Rating.objects.filter(assignment=held).exists()
    assert "set aside" not in client.get(reverse("rate_next"), follow=True).content.decode()


def test_a_withdrawal_under_a_new_guideline_version_is_named_as_the_reason(
    client, staff, rater, acked, make_comparison, django_capture_on_commit_callbacks
):
    """A submit on a lease taken back by a withholding said "Your time on this comparison ran out, and
    guidelines version 2 came into force" when a version had also been published meanwhile."""
    from labelapp.services.guidelines import guideline_create

    comparison = make_comparison(required_ratings=3)
    held = assignment_next(rater=rater)
    with django_capture_on_commit_callbacks(execute=True):
        prompt_withhold(prompt_id=comparison.prompt_id)
    guideline_create(text="v2: still prefer concise answers", publish=True)
    with pytest.raises(RatingError) as refused:
        rating_submit(
            rater=rater, assignment_id=held.pk, idempotency_key=held.form_key, data=RatingInput(preference=0)
        )
    assert "withdrawn" in str(refused.value) and "ran out" not in str(refused.value)
    # the refusal said it: the next ask does not say it again
    client.force_login(rater)
    assert "set aside" not in client.get("/api/assignments/next/").get("Notice", "")


def test_a_reload_of_a_lease_no_longer_open_says_what_became_of_it(
    client, staff, rater, acked, make_comparison, django_capture_on_commit_callbacks
):
    """Any lease not open read "That comparison is finished" on a reload, also one that ran out or was
    taken back with nothing saved."""
    from datetime import timedelta

    from django.utils import timezone

    from labelapp.services.assignment import leases_release_expired

    client.force_login(rater)
    comparison = make_comparison(required_ratings=3)
    held = assignment_next(rater=rater)
    with django_capture_on_commit_callbacks(execute=True):  # taken back, then the prompt came back
        prompt_consent_set(prompt=comparison.prompt, consent=False, reason="withdrawn", by=staff)
        prompt_consent_set(prompt=comparison.prompt, consent=True, reason="given again", by=staff)
    page = client.get(reverse("rate", args=[held.pk]), follow=True).content.decode()
    assert page.count("set aside") == 1 and "finished" not in page
    assignment_next(rater=rater)  # the same comparison again, under a new lease
    Assignment.objects.filter(rater=rater, status=Assignment.Status.LEASED).update(
        status=Assignment.Status.SKIPPED
    )

    other = make_comparison(prompt_text="Another question?")
    lapsed = assignment_next(rater=rater)
    assert lapsed.comparison_id == other.pk
    Assignment.objects.filter(pk=lapsed.pk).update(lease_expires_at=timezone.now() - timedelta(minutes=1))
    leases_release_expired(now=timezone.now())
    page = client.get(reverse("rate", args=[lapsed.pk]), follow=True).content.decode()
    assert "ran out" in page and "finished" not in page and "set aside" not in page


def test_a_submit_on_a_skipped_comparison_says_it_is_no_longer_yours_whatever_its_prompt_became(
    staff, rater, acked, make_comparison
):
    from labelapp.services.assignment import assignment_skip
    from labelapp.services.ratings import NO_LONGER_YOURS

    comparison = make_comparison(required_ratings=3)
    held = assignment_next(rater=rater)
    assignment_skip(rater=rater, assignment_id=held.pk, reason="outside my expertise")
    prompt_consent_set(prompt=comparison.prompt, consent=False, reason="withdrawn", by=staff)
    with pytest.raises(RatingError, match=NO_LONGER_YOURS[:30]):
        rating_submit(
            rater=rater, assignment_id=held.pk, idempotency_key=held.form_key, data=RatingInput(preference=0)
        )


def test_set_aside_notices_written_at_once_keep_every_lease(rater):
    """Withdrawals ending leases of one rater at once each read the rater's noted leases, added their
    own and wrote the list back: the last writer's list lacked the others', whose notices were lost."""
    from threading import Barrier, Thread

    from labelapp.services.assignment import _note_taken_back, assignment_taken_back_said

    ids = range(1, 17)
    start = Barrier(len(ids))

    def note(assignment_id):
        start.wait()
        _note_taken_back([(assignment_id, rater.pk, rater.date_joined)], at_commit=False)

    threads = [Thread(target=note, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [i for i in ids if not assignment_taken_back_said(rater=rater, assignment_id=i)] == []
    assert not assignment_taken_back_said(rater=rater, assignment_id=1)  # told once
