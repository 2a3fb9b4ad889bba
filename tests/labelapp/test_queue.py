"""The assignment queue service against real PostgreSQL."""

from datetime import timedelta

import pytest
from django.utils import timezone

from labelapp.models import Assignment, Comparison, Prompt
from labelapp.services.assignment import QueueError, assignment_next, assignment_skip, leases_release_expired
from labelapp.services.ratings import RatingInput, rating_submit

pytestmark = pytest.mark.django_db


def _rate(rater, assignment, preference=0):
    return rating_submit(
        rater=rater,
        assignment_id=assignment.pk,
        idempotency_key=assignment.form_key,
        data=RatingInput(preference=preference),
    )


def test_it_serves_highest_priority_then_oldest(rater, acked, make_comparison):
    old = make_comparison()
    newer = make_comparison()
    urgent = make_comparison(priority=5)
    first = assignment_next(rater=rater)
    assert first.comparison_id == urgent.pk
    _rate(rater, first)
    assert assignment_next(rater=rater).comparison_id == old.pk
    assert newer.pk > old.pk


def test_it_returns_the_same_open_assignment_on_reload(rater, acked, make_comparison):
    make_comparison()
    make_comparison()
    first = assignment_next(rater=rater)
    again = assignment_next(rater=rater)
    assert again.pk == first.pk
    assert Assignment.objects.filter(rater=rater, status="leased").count() == 1


def test_it_never_serves_a_comparison_the_rater_already_rated(rater, acked, make_comparison):
    make_comparison(required_ratings=3)
    a = assignment_next(rater=rater)
    _rate(rater, a)
    assert assignment_next(rater=rater) is None


def test_it_stops_at_required_ratings(rater, other_rater, make_user, acked, make_comparison):
    c = make_comparison(required_ratings=2)
    assert assignment_next(rater=rater).comparison_id == c.pk
    assert assignment_next(rater=other_rater).comparison_id == c.pk
    third = make_user(ack=True)
    assert assignment_next(rater=third) is None
    c.refresh_from_db()
    assert c.claimed_count == 2


def test_it_returns_an_expired_lease_to_the_pool(rater, other_rater, acked, make_comparison):
    c = make_comparison(required_ratings=1)
    a = assignment_next(rater=rater)
    assert assignment_next(rater=other_rater) is None
    Assignment.objects.filter(pk=a.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    b = assignment_next(rater=other_rater)
    assert b is not None and b.comparison_id == c.pk
    a.refresh_from_db()
    assert a.status == Assignment.Status.EXPIRED
    c.refresh_from_db()
    assert c.claimed_count == 1


def test_a_late_submit_is_accepted_while_the_slot_is_free(rater, acked, make_comparison):
    c = make_comparison(required_ratings=1)
    a = assignment_next(rater=rater)
    Assignment.objects.filter(pk=a.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert leases_release_expired() == 1
    rating, created = _rate(rater, a)
    assert created
    c.refresh_from_db()
    assert c.claimed_count == 1


def test_a_late_submit_is_refused_when_others_filled_the_comparison(
    rater, other_rater, acked, make_comparison
):
    from labelapp.services.ratings import RatingError

    make_comparison(required_ratings=1)
    a = assignment_next(rater=rater)
    Assignment.objects.filter(pk=a.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    b = assignment_next(rater=other_rater)
    _rate(other_rater, b)
    with pytest.raises(RatingError, match="ran out"):
        _rate(rater, a)


def _late_submit_after_reissue(settings, rater, make_comparison, required_ratings=3):
    """The rater's lease runs out and the housekeeping releases it, a reload re-issues the same
    comparison, then the old tab submits. (A reload before the release renews the old lease instead.)"""
    settings.LABEL = {**settings.LABEL, "GOLD_RATE": 0.0, "REPEAT_RATE": 0.0}
    c = make_comparison(prompt_text="first", required_ratings=required_ratings)
    other = make_comparison(prompt_text="other", required_ratings=3)
    old = assignment_next(rater=rater)
    assert old.comparison_id == c.pk
    Assignment.objects.filter(pk=old.pk).update(lease_expires_at=timezone.now() - timedelta(minutes=1))
    assert leases_release_expired() == 1
    reissued = assignment_next(rater=rater)
    assert reissued.comparison_id == c.pk and reissued.pk != old.pk
    return c, other, old, reissued


def test_a_late_submit_after_the_comparison_was_reissued_ends_the_new_lease(
    settings, rater, acked, make_comparison
):
    c, other, old, reissued = _late_submit_after_reissue(settings, rater, make_comparison)
    rating, created = _rate(rater, old)  # the old tab
    assert created and rating.comparison_id == c.pk and rating.assignment_id == old.pk
    reissued.refresh_from_db()
    assert reissued.status == Assignment.Status.EXPIRED
    c.refresh_from_db()
    assert c.claimed_count == 1  # the one rating; the re-issued lease's slot went to it
    nxt = assignment_next(rater=rater, just_finished=True)
    assert nxt.comparison_id == other.pk
    assert assignment_next(rater=rater).pk == nxt.pk  # not the rated comparison on reload either


def test_a_late_submit_takes_the_slot_of_its_own_reissued_lease_when_the_comparison_is_full(
    settings, rater, acked, make_comparison
):
    # required_ratings 1: the re-issued lease holds the only slot; the late rating takes it over.
    c, _, old, reissued = _late_submit_after_reissue(settings, rater, make_comparison, required_ratings=1)
    rating, created = _rate(rater, old)
    assert created and rating.comparison_id == c.pk
    c.refresh_from_db()
    assert c.claimed_count == 1
    reissued.refresh_from_db()
    assert reissued.status == Assignment.Status.EXPIRED


def test_a_late_submit_of_the_reissued_lease_after_the_old_one_is_refused(
    settings, rater, acked, make_comparison
):
    from labelapp.services.ratings import RatingError

    c, _, old, reissued = _late_submit_after_reissue(settings, rater, make_comparison)
    _rate(rater, old)
    with pytest.raises(RatingError, match="already rated"):
        _rate(rater, reissued)  # a third tab with the re-issued page: one rating per comparison
    c.refresh_from_db()
    assert c.claimed_count == 1


def test_skip_needs_a_reason_and_frees_the_slot(rater, other_rater, acked, make_comparison):
    c = make_comparison(required_ratings=1)
    a = assignment_next(rater=rater)
    with pytest.raises(QueueError, match="why"):
        assignment_skip(rater=rater, assignment_id=a.pk, reason="  ")
    assignment_skip(rater=rater, assignment_id=a.pk, reason="outside my expertise")
    a.refresh_from_db()
    assert a.status == "skipped" and a.skip_reason == "outside my expertise"
    assert assignment_next(rater=rater) is None  # a skipped comparison is not served again to the same rater
    assert assignment_next(rater=other_rater).comparison_id == c.pk


def test_it_rejects_skipping_another_raters_assignment(rater, other_rater, acked, make_comparison):
    make_comparison()
    a = assignment_next(rater=rater)
    with pytest.raises(Assignment.DoesNotExist):
        assignment_skip(rater=other_rater, assignment_id=a.pk, reason="x")
    a.refresh_from_db()
    assert a.status == "leased"


def test_left_right_order_is_randomized_and_stored(make_user, acked, make_comparison):
    make_comparison(required_ratings=40)
    sides = {assignment_next(rater=make_user(ack=True)).shown_left for _ in range(30)}
    assert sides == {"a", "b"}


def test_inactive_comparisons_are_not_served(rater, acked, make_comparison):
    c = make_comparison()
    Comparison.objects.filter(pk=c.pk).update(is_active=False)
    assert assignment_next(rater=rater) is None


def test_a_prompt_without_consent_is_never_served_even_if_its_comparison_is_switched_on(
    rater, acked, make_comparison, settings
):
    """A withdrawal deactivates the prompt's comparisons, but one switched back on by hand, or marked
    gold (which activates it), was served again: the queue checked `withheld`, not `consent`."""
    from labelapp.services.assignment import queue_has_work_for

    settings.LABEL = {**settings.LABEL, "GOLD_RATE": 1.0}
    normal = make_comparison(prompt_text="no consent any more", priority=9)
    gold = make_comparison(prompt_text="gold without consent", kind=Comparison.Kind.GOLD)
    Prompt.objects.filter(pk__in=[normal.prompt_id, gold.prompt_id]).update(consent=False)
    other = make_comparison(prompt_text="fine")
    assignment = assignment_next(rater=rater)
    assert assignment.comparison_id == other.pk  # neither the higher-priority one nor gold
    rating_submit(
        rater=rater,
        assignment_id=assignment.pk,
        idempotency_key=assignment.form_key,
        data=RatingInput(preference=-1, length_check="adds_content"),
    )
    assert assignment_next(rater=rater) is None and not queue_has_work_for(rater=rater)


def test_a_late_submit_after_a_new_guideline_version_came_into_force_is_refused(
    rater, acked, make_comparison
):
    # re-taking the expired lease is a claim: it was stored under the old version, which a claim
    # (and an open lease) would not have allowed once the rater's lease had run out
    from labelapp.models import Rating
    from labelapp.services.guidelines import guideline_publish_text
    from labelapp.services.ratings import RatingError

    c = make_comparison(required_ratings=1)
    a = assignment_next(rater=rater)
    guideline_publish_text(text="# Guidelines\n\nnew rules", changelog="new", author=None)
    Assignment.objects.filter(pk=a.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert leases_release_expired() == 1
    with pytest.raises(RatingError, match="version 2 came into force meanwhile"):
        _rate(rater, a)
    assert not Rating.objects.exists()
    c.refresh_from_db()
    assert c.claimed_count == 0  # the slot stays free for a rater under the version in force


def test_a_submit_after_the_deadline_under_new_guidelines_is_refused_before_any_sweep(
    rater, acked, make_comparison
):
    # the refusal only looked at released leases: one past its deadline and not yet swept (the usual
    # case between housekeeping runs) was still stored under the old version
    from labelapp.models import Rating
    from labelapp.services.guidelines import guideline_publish_text
    from labelapp.services.ratings import RatingError

    make_comparison(required_ratings=1)
    a = assignment_next(rater=rater)
    guideline_publish_text(text="# Guidelines\n\nnew rules", changelog="new", author=None)
    Assignment.objects.filter(pk=a.pk).update(lease_expires_at=timezone.now() - timedelta(hours=3))
    with pytest.raises(RatingError, match="version 2 came into force meanwhile"):
        _rate(rater, a)
    assert not Rating.objects.exists()


def test_a_late_submit_on_a_prompt_held_for_a_personal_data_review_is_refused(
    rater, other_rater, acked, make_comparison
):
    from labelapp.models import Rating
    from labelapp.services.ratings import RatingError

    make_comparison(required_ratings=3)
    late = assignment_next(rater=other_rater)
    a = assignment_next(rater=rater)
    rating_submit(
        rater=rater,
        assignment_id=a.pk,
        idempotency_key=a.form_key,
        data=RatingInput(preference=0, flag_pii=True),
    )
    Assignment.objects.filter(pk=late.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(RatingError, match="is waiting for a staff review"):
        _rate(other_rater, late)  # past its deadline, not released yet: it was accepted
    assert leases_release_expired() == 1
    with pytest.raises(RatingError, match="is waiting for a staff review"):
        _rate(other_rater, late)
    assert Rating.objects.count() == 1
