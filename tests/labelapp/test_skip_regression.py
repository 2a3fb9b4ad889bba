"""Regression (issue 8, fuzzing): an htmx skip with an empty reason on someone else's id answered 500."""

import pytest
from django.urls import reverse

from labelapp.services.assignment import assignment_next

pytestmark = pytest.mark.django_db


def test_it_answers_404_to_an_htmx_skip_without_reason_on_another_raters_assignment(
    rater_client, other_rater, make_comparison
):
    make_comparison()
    theirs = assignment_next(rater=other_rater)
    r = rater_client.post(reverse("rate_skip", args=[theirs.pk]), {"reason": ""}, HTTP_HX_REQUEST="true")
    assert r.status_code == 404


def test_it_answers_404_to_an_htmx_skip_without_reason_on_an_unknown_id(rater_client):
    r = rater_client.post(reverse("rate_skip", args=[999999]), {"reason": ""}, HTTP_HX_REQUEST="true")
    assert r.status_code == 404
