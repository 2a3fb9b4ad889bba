"""20 raters claiming at the same instant never over-assign a comparison (real PostgreSQL, threads)."""

import threading

import pytest
from django.db import connection, connections
from django.db.models import Count, Q

from labelapp.models import Assignment, Comparison, Rating
from labelapp.services.assignment import assignment_next
from labelapp.services.ratings import RatingInput, rating_submit


@pytest.mark.django_db(transaction=True)
def test_20_concurrent_claims_never_exceed_required_ratings(make_user, guideline, make_comparison):
    assert connection.vendor == "postgresql"
    for _ in range(6):
        make_comparison(required_ratings=3)  # 18 slots for 20 raters: some must get nothing
    raters = [make_user(ack=True) for _ in range(20)]
    barrier = threading.Barrier(len(raters))
    results, errors = {}, []

    def claim(rater):
        try:
            barrier.wait()
            for _ in range(3):  # claim, rate, claim again: ratings and leases both count
                a = assignment_next(rater=rater)
                results.setdefault(rater.pk, []).append(a and a.comparison_id)
                if a is None:
                    break
                rating_submit(
                    rater=rater,
                    assignment_id=a.pk,
                    idempotency_key=a.form_key,
                    data=RatingInput(preference=1, length_check="adds_content"),
                )
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=claim, args=(r,)) for r in raters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    per_comparison = Comparison.objects.annotate(
        n=Count("assignments", filter=Q(assignments__status__in=["leased", "done"]))
    )
    for c in per_comparison:
        assert c.n <= c.required_ratings, f"comparison {c.pk} over-assigned: {c.n}"
        assert c.claimed_count == c.n
    # All 18 slots got used, none twice by the same rater.
    assert Rating.objects.count() == 18
    assert not Rating.objects.values("rater", "comparison").annotate(n=Count("id")).filter(n__gt=1).exists()
    assert Assignment.objects.filter(status="leased").count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_late_submit_racing_the_raters_reload_leaves_no_lease_on_what_they_rated(
    make_user, guideline, make_comparison, monkeypatch
):
    # The late rating checked for a re-issued lease, then a reload claimed the comparison back and
    # committed, then the rating was stored: the rater held a lease on a comparison they had rated,
    # served on every reload, each submit refused ("already rated").
    import threading
    import time
    from datetime import timedelta

    from django.db import connections
    from django.utils import timezone

    from labelapp.models import Assignment
    from labelapp.services import assignment as assignment_service
    from labelapp.services.assignment import assignment_next
    from labelapp.services.guidelines import guideline_acknowledge
    from labelapp.services.ratings import RatingInput, rating_submit

    rater = make_user()
    guideline_acknowledge(rater=rater, version=guideline)
    comparison = make_comparison(required_ratings=3)
    held = assignment_next(rater=rater)
    Assignment.objects.filter(pk=held.pk).update(
        status=Assignment.Status.EXPIRED, lease_expires_at=timezone.now() - timedelta(minutes=1)
    )
    comparison.__class__.objects.filter(pk=comparison.pk).update(claimed_count=0)  # released
    real = assignment_service._release_reissued_lease

    def slow_release(assignment):
        found = real(assignment)
        time.sleep(0.4)  # the window between the check and the rating, widened
        return found

    monkeypatch.setattr(assignment_service, "_release_reissued_lease", slow_release)
    errors = []

    def late_submit():
        try:
            rating_submit(
                rater=rater,
                assignment_id=held.pk,
                idempotency_key=held.form_key,
                data=RatingInput(preference=-1),
            )
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(repr(exc))
        finally:
            connections.close_all()

    def reload():
        try:
            assignment_next(rater=rater)
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))
        finally:
            connections.close_all()

    submitting = threading.Thread(target=late_submit)
    submitting.start()
    time.sleep(0.15)
    reloading = threading.Thread(target=reload)
    reloading.start()
    submitting.join()
    reloading.join()
    assert errors == []
    assert Assignment.objects.filter(pk=held.pk, status=Assignment.Status.DONE).exists()
    assert not Assignment.objects.filter(
        rater=rater, comparison=comparison, status=Assignment.Status.LEASED
    ).exists()


def test_a_late_submit_after_the_rater_skipped_the_comparison_is_refused(rater, acked, make_comparison):
    # an old tab's rating was stored after the rater had skipped the same comparison in a new one
    from datetime import timedelta

    from django.utils import timezone

    from labelapp.models import Assignment, Rating
    from labelapp.services.assignment import assignment_next, assignment_skip
    from labelapp.services.ratings import RatingError, RatingInput, rating_submit

    comparison = make_comparison(required_ratings=3)
    old = assignment_next(rater=rater)
    Assignment.objects.filter(pk=old.pk).update(
        status=Assignment.Status.EXPIRED, lease_expires_at=timezone.now() - timedelta(minutes=1)
    )
    comparison.__class__.objects.filter(pk=comparison.pk).update(claimed_count=0)
    new = assignment_next(rater=rater)
    assert new.comparison_id == comparison.pk
    assignment_skip(rater=rater, assignment_id=new.pk, reason="unsure")
    with pytest.raises(RatingError, match="skipped this comparison"):
        rating_submit(
            rater=rater, assignment_id=old.pk, idempotency_key=old.form_key, data=RatingInput(preference=-1)
        )
    assert not Rating.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_late_submit_and_a_skip_of_the_reissued_lease_do_not_deadlock(
    make_user, guideline, make_comparison, monkeypatch
):
    # The late rating locked the comparison, then the re-issued lease; the new tab's skip held that
    # lease and waited for the comparison: "deadlock detected", a 500 for one of them.
    import threading
    import time
    from datetime import timedelta

    from django.utils import timezone

    from labelapp.services import assignment as assignment_service
    from labelapp.services.assignment import assignment_skip
    from labelapp.services.guidelines import guideline_acknowledge
    from labelapp.services.ratings import RatingError

    rater = make_user()
    guideline_acknowledge(rater=rater, version=guideline)
    comparison = make_comparison(required_ratings=3)
    old = assignment_next(rater=rater)
    Assignment.objects.filter(pk=old.pk).update(
        status=Assignment.Status.EXPIRED, lease_expires_at=timezone.now() - timedelta(minutes=1)
    )
    Comparison.objects.filter(pk=comparison.pk).update(claimed_count=0)
    new = assignment_next(rater=rater)
    assert new.comparison_id == comparison.pk
    real = assignment_service._release_reissued_lease

    def slow_release(assignment):
        time.sleep(0.5)  # the skip takes its lease and waits for the comparison meanwhile
        return real(assignment)

    monkeypatch.setattr(assignment_service, "_release_reissued_lease", slow_release)
    outcomes = {}

    def run(name, fn):
        try:
            fn()
            outcomes[name] = "ok"
        except RatingError as exc:
            outcomes[name] = f"refused: {exc}"
        except Exception as exc:  # noqa: BLE001 (reported below)
            outcomes[name] = repr(exc)
        finally:
            connections.close_all()

    submit = threading.Thread(
        target=run,
        args=(
            "submit",
            lambda: rating_submit(
                rater=rater,
                assignment_id=old.pk,
                idempotency_key=old.form_key,
                data=RatingInput(preference=-1),
            ),
        ),
    )
    skip = threading.Thread(
        target=run, args=("skip", lambda: assignment_skip(rater=rater, assignment_id=new.pk, reason="unsure"))
    )
    submit.start()
    time.sleep(0.2)
    skip.start()
    submit.join()
    skip.join()
    assert "deadlock" not in str(outcomes), outcomes
    assert outcomes["skip"] == "ok" and outcomes["submit"].startswith("refused"), outcomes
    assert not Rating.objects.exists()
