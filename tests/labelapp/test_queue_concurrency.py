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
