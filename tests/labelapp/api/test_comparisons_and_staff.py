"""Comparisons from answers, and the staff ratings list with whitelisted filters only."""

from __future__ import annotations

import pytest

from labelapp.models import Comparison, Prompt, Response
from labelapp.services.assignment import assignment_next
from tests.labelapp.export_helpers import make_pair, rate

pytestmark = pytest.mark.django_db


def _prompt(consent=True, lengths=(5, 6, 20, 40)):
    p = Prompt.objects.create(text=f"prompt {consent} {lengths}", consent=consent, source="t")
    for i, n in enumerate(lengths):
        Response.objects.create(prompt=p, text=" ".join(["word"] * n), source_model=f"m{i}")
    return p


def test_all_pairs_then_no_duplicates(staff_api):
    p = _prompt()
    r = staff_api.post("/api/comparisons/", {"prompt_ids": [p.pk]}, content_type="application/json")
    assert r.status_code == 201 and len(r.json()["created"]) == 6
    again = staff_api.post("/api/comparisons/", {"prompt_ids": [p.pk]}, content_type="application/json")
    assert again.json()["created"] == [] and Comparison.objects.count() == 6


def test_a_prompt_listed_twice_is_paired_once_with_no_contradictory_skip(staff_api):
    # [p, p] created the pairs, then reported p skipped: "every pair exists"
    p = _prompt()
    r = staff_api.post("/api/comparisons/", {"prompt_ids": [p.pk, p.pk]}, content_type="application/json")
    assert len(r.json()["created"]) == 6 and r.json()["skipped_prompts"] == {}


def test_an_answer_stored_twice_is_not_compared_with_itself_nor_twice(staff_api):
    # The answers endpoint keeps what it is sent: two identical answers made a comparison with nothing
    # to judge, and the copy repeated every comparison of the original under new ids.
    p = _prompt(lengths=(5, 6))
    Response.objects.create(prompt=p, text="word " * 4 + "word", source_model="again")  # = the 5-word one
    r = staff_api.post("/api/comparisons/", {"prompt_ids": [p.pk]}, content_type="application/json")
    assert r.status_code == 201 and len(r.json()["created"]) == 1
    c = Comparison.objects.get()
    assert c.response_a.text != c.response_b.text
    lone = _prompt(lengths=(3, 3))  # two answers, one text
    again = staff_api.post("/api/comparisons/", {"prompt_ids": [lone.pk]}, content_type="application/json")
    skipped = again.json()["skipped_prompts"][str(lone.pk)]
    assert again.json()["created"] == [] and "different answers" in skipped


def test_a_length_limit_that_leaves_no_pair_says_so(staff_api):
    # every skip read "fewer than two different answers or every pair exists", also when the answers
    # differed and no pair was within the ratio asked for
    p = _prompt(lengths=(1, 2, 10))
    body = {"prompt_ids": [p.pk], "per_prompt": 1, "max_length_ratio": 1.5}
    r = staff_api.post("/api/comparisons/", body, content_type="application/json")
    assert r.json()["skipped_prompts"][str(p.pk)] == "no new pair within max_length_ratio 1.5"
    assert not Comparison.objects.exists()


@pytest.mark.parametrize("ratio", [True, "2"])
def test_a_length_limit_that_is_not_a_number_is_refused(staff_api, ratio):
    # true was read as a ratio of 1.0: 201, and pairs made under a limit nobody asked for
    p = _prompt(lengths=(1, 2, 10))
    body = {"prompt_ids": [p.pk], "per_prompt": 1, "max_length_ratio": ratio}
    r = staff_api.post("/api/comparisons/", body, content_type="application/json")
    assert r.status_code == 400 and "max_length_ratio" in r.json(), r.content
    assert not Comparison.objects.exists()


def test_a_sampled_length_matched_pair_is_the_closest_in_length(staff_api):
    p = _prompt()
    body = {"prompt_ids": [p.pk], "per_prompt": 1, "length_matched": True, "seed": 1}
    [cid] = staff_api.post("/api/comparisons/", body, content_type="application/json").json()["created"]
    c = Comparison.objects.get(pk=cid)
    assert sorted([c.response_a.word_count, c.response_b.word_count]) == [5, 6]


def test_prompts_without_consent_are_never_put_in_a_comparison(staff_api):
    p = _prompt(consent=False)
    r = staff_api.post("/api/comparisons/", {"prompt_ids": [p.pk]}, content_type="application/json")
    assert r.json()["created"] == [] and "no consent" in r.json()["skipped_prompts"][str(p.pk)]
    assert not Comparison.objects.exists()


def test_staff_list_all_ratings_with_listed_filters(staff_api, rater, other_rater, guideline):
    rate(rater=rater, comparison=make_pair(), preference=1, guideline=guideline)
    rate(
        rater=other_rater,
        comparison=make_pair(text="q2", model_b="llama"),
        preference=-2,
        guideline=guideline,
    )
    assert staff_api.get("/api/staff/ratings/").json()["count"] == 2
    body = staff_api.get("/api/staff/ratings/?rater=rater&ordering=created_at").json()
    assert body["count"] == 1 and body["results"][0]["rater"] == "rater"
    assert staff_api.get("/api/staff/ratings/?source_model=llama").json()["count"] == 1
    assert staff_api.get("/api/staff/ratings/?preference=-2").json()["count"] == 1


@pytest.mark.parametrize(
    "query",
    [
        "rater__password__startswith=pbkdf2",
        "ordering=rater__password",
        "search=x",
        "comparison__prompt__text=a",
    ],
)
def test_free_form_filters_and_orderings_are_refused(staff_api, rater, guideline, query):
    rate(rater=rater, comparison=make_pair(), preference=1, guideline=guideline)
    r = staff_api.get(f"/api/staff/ratings/?{query}")
    assert r.status_code == 400


def test_raters_see_only_their_own_ratings_and_no_staff_endpoints(api, rater, other_rater, guideline, acked):
    rate(rater=other_rater, comparison=make_pair(), preference=1, guideline=guideline)
    assert api.get("/api/ratings/").json()["count"] == 0
    for url in ("/api/staff/ratings/", "/api/staff/raters/", "/api/export/", "/api/prompts/", "/api/tokens/"):
        assert api.get(url).status_code == 403, url


def test_gold_answers_and_model_names_never_reach_a_rater(api, rater, acked, make_comparison):
    c = make_comparison(kind=Comparison.Kind.GOLD)
    Comparison.objects.filter(pk=c.pk).update(gold_preference=-1, gold_explanation="A is right because")
    assignment_next(rater=rater)
    body = api.get("/api/assignments/next/").content.decode()
    assert "gold" not in body and "A is right because" not in body and '"test"' not in body
    assert "source_model" not in body


def test_the_reward_model_runs_list_holds_only_reward_model_runs(staff_api):
    # policy rounds were listed among them, with n_ratings 0 (they have their own list)
    from labelapp.models import TrainingRun

    TrainingRun.objects.create(kind="ppo", status="succeeded", config={})
    rm = TrainingRun.objects.create(kind="reward_model", status="succeeded", config={})
    assert [r["id"] for r in staff_api.get("/api/training/runs/").json()["results"]] == [rm.pk]
    rounds = staff_api.get("/api/policy-rounds/").json()["results"]
    assert [r["kind"] for r in rounds] == ["ppo"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/training/runs/", {"with_baseline": "yes"}),
        ("/api/training/runs/", {"with_baseline": 1}),
        ("/api/comparisons/", {"prompt_ids": [1], "length_matched": "no"}),
    ],
)
def test_a_switch_takes_json_true_or_false_only(staff_api, path, body):
    # "yes" and 1 were read as true: a typed value passed for a boolean
    from labelapp.models import TrainingRun

    r = staff_api.post(path, body, content_type="application/json")
    assert r.status_code == 400 and "Must be a valid boolean." in str(r.json()), r.content
    assert not TrainingRun.objects.exists()


def test_paging_through_ratings_sorted_on_a_shared_value_shows_each_once(staff_api, make_user, guideline):
    # ordering=preference alone left ties in any order: LIMIT/OFFSET pages repeated some ratings and
    # never showed others (373 of 498 distinct in the review)
    raters = [make_user() for _ in range(4)]
    for i in range(60):
        c = make_pair(text=f"question {i}")
        for j, u in enumerate(raters):
            rate(rater=u, comparison=c, preference=[-1, 1][(i + j) % 2], guideline=guideline)
    for ordering in ("preference", "-preference", "time_on_task_ms"):
        seen = []
        for offset in range(0, 240, 20):
            body = staff_api.get(f"/api/staff/ratings/?ordering={ordering}&limit=20&offset={offset}").json()
            seen += [row["id"] for row in body["results"]]
        assert len(seen) == 240 and len(set(seen)) == 240, ordering
