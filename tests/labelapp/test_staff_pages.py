"""Staff pages as an admin or ML engineer reads them (found in a browser review): what the training and
policy pages say about runs and versions, and how their charts label whole-number axes."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse
from django.utils import timezone

from labelapp import charts
from labelapp.models import PolicyVersion, RewardModelVersion, TrainingRun
from labelapp.services import policy

pytestmark = pytest.mark.django_db


def _spec(html: str, chart_id: str) -> dict:
    found = re.search(rf'<script id="{chart_id}-spec" type="application/json">(.*?)</script>', html, re.S)
    assert found, f"no {chart_id} on the page"
    return json.loads(found.group(1))


def test_round_charts_tick_whole_version_numbers(client, staff):
    """With versions 1 and 2 Plotly ticked "version 1.2, 1.4, 1.6" between them."""
    v0 = policy.policy_base()
    v1 = PolicyVersion.objects.create(number=1, kind="ppo", parent=v0, metrics={"rm_score": 0.5})
    PolicyVersion.objects.create(number=2, kind="ppo", parent=v1, metrics={"rm_score": 0.8})
    client.force_login(staff)
    spec = _spec(client.get(reverse("policy_home")).content.decode(), "chart-reward")
    xaxis = spec["layout"]["xaxis"]
    assert xaxis["dtick"] == 1 and xaxis["tickformat"] == "d"
    charts.validate(spec)


def test_the_runs_table_says_which_runs_are_policy_rounds(client, staff):
    """The reward-model page lists every run: a failed PPO round read as a failed reward model run."""
    TrainingRun.objects.create(kind=TrainingRun.Kind.PPO, status=TrainingRun.Status.FAILED, error="boom")
    TrainingRun.objects.create(kind=TrainingRun.Kind.REWARD_MODEL, status=TrainingRun.Status.SUCCEEDED)
    client.force_login(staff)
    table = client.get(reverse("training_home")).content.decode()
    assert "<th>kind</th>" in table
    assert "<td>PPO round</td>" in table and "<td>reward model</td>" in table


@pytest.mark.parametrize(
    ("started", "finished", "says", "not_says"),
    [
        (False, False, "never used. </p>", ". ."),  # queued: nothing about times, no stray " ."
        (False, True, "Ended ", ", finished"),  # cancelled before a worker took it: no leading comma
        (True, True, ", finished ", "Ended "),
    ],
)
def test_the_run_page_says_when_a_run_ran_in_a_sentence(client, staff, started, finished, says, not_says):
    now = timezone.now()
    run = TrainingRun.objects.create(
        data_snapshot={"n_usable": 3, "n_consented": 3, "n_ties": 0, "n_flagged_broken": 0},
        started_at=now if started else None,
        finished_at=now if finished else None,
    )
    client.force_login(staff)
    html = client.get(reverse("training_run", args=[run.pk])).content.decode()
    text = re.sub(r"\s+", " ", html)
    assert says in text and not_says not in text


def test_the_versions_table_writes_accuracies_as_the_version_page_does(client, staff):
    """/training/ said "0.723" for the accuracy the version's own page writes "72.3%"."""
    run = TrainingRun.objects.create(status=TrainingRun.Status.SUCCEEDED)
    metrics = {"accuracy": 0.72345, "balanced_accuracy": 0.65, "pearson_length": 0.0234}
    RewardModelVersion.objects.create(number=1, run=run, artifact_path="/x", metrics=metrics)
    client.force_login(staff)
    home = client.get(reverse("training_home")).content.decode()
    version = client.get(reverse("reward_model_version", args=[1])).content.decode()
    for figure in ("72.3%", "65.0%", "0.023"):
        assert f"<td>{figure}</td>" in home and f"<td>{figure}</td>" in version


def test_the_version_page_writes_the_no_eos_share_as_the_versions_table_does(client, staff):
    """The policy page said "33%" of answers ended without EOS, the version's page "0.33"."""
    v0 = policy.policy_base()
    metrics = {"no_eos_share": 1 / 3, "parent": {"number": 0, "no_eos_share": 0.125}}
    PolicyVersion.objects.create(number=1, kind="ppo", parent=v0, metrics=metrics)
    client.force_login(staff)
    home = client.get(reverse("policy_home")).content.decode()
    page = client.get(reverse("policy_version", args=[1])).content.decode()
    assert "33%" in home
    assert '<td id="no-eos">33%</td><td>12%</td>' in page


def test_the_kl_and_beta_chart_draws_beta_on_its_own_axis(client, staff):
    """It was titled "KL and beta" and drew only KL (beta, on another scale, was not drawn at all)."""
    v0 = policy.policy_base()
    history = [{"update": u, "kl": 0.1 * u, "beta": b} for u, b in ((1, 0.06), (2, 0.07), (3, 0.08))]
    PolicyVersion.objects.create(number=1, kind="ppo", parent=v0, metrics={"rm_score": 0.5}, history=history)
    client.force_login(staff)
    spec = _spec(client.get(reverse("policy_version", args=[1])).content.decode(), "chart-kl")
    by_name = {trace["name"]: trace for trace in spec["data"]}
    assert by_name["beta (right axis)"]["y"] == [0.06, 0.07, 0.08]
    assert by_name["beta (right axis)"]["yaxis"] == "y2" and spec["layout"]["yaxis2"]["side"] == "right"
    assert "yaxis" not in by_name["KL"]
    charts.validate(spec)


def test_a_version_without_plots_draws_no_empty_chart_card(client, staff):
    run = TrainingRun.objects.create(kind=TrainingRun.Kind.REWARD_MODEL, status=TrainingRun.Status.SUCCEEDED)
    RewardModelVersion.objects.create(number=1, run=run, artifact_path="/nowhere", metrics={}, plots={})
    client.force_login(staff)
    page = client.get(reverse("reward_model_version", args=[1])).content.decode()
    assert page.count('class="card') >= 1 and 'class="card charts"' not in page


@pytest.mark.parametrize(
    ("url", "target"), [("training_runs_table", "runs-table"), ("policy_home", "policy-runs")]
)
def test_the_poll_that_finds_no_round_running_reloads_the_page(client, staff, url, target):
    """Polling refreshed only the runs table: when a run finished, the versions table and curves beside
    it stayed stale until a reload."""
    kind = TrainingRun.Kind.REWARD_MODEL if url == "training_runs_table" else TrainingRun.Kind.PPO
    run = TrainingRun.objects.create(kind=kind, status=TrainingRun.Status.RUNNING)
    client.force_login(staff)
    poll = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": target}
    assert "HX-Refresh" not in client.get(reverse(url), **poll)
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.SUCCEEDED)
    assert client.get(reverse(url), **poll)["HX-Refresh"] == "true"
    assert "HX-Refresh" not in client.get(reverse(url))  # a plain page load


@pytest.mark.django_db
def test_the_schedules_link_is_shown_only_to_who_may_open_it(client, make_user, admin_client):
    # every role account got a "Schedules" link to the beat admin, which answers it 403
    reviewer = make_user("rev", staff=True, roles=("reviewer",))
    client.force_login(reviewer)
    for url in (reverse("home"), reverse("training_home")):
        assert "periodictask" not in client.get(url).content.decode(), url
    for url in (reverse("home"), reverse("training_home")):
        assert "periodictask" in admin_client.get(url).content.decode(), url


@pytest.mark.django_db
def test_the_ratings_admin_link_is_shown_only_to_who_may_open_it(client, make_user):
    # a staff account without a role got a "Ratings" link that the admin answered with 403
    plain = make_user("plain", staff=True, roles=())
    client.force_login(plain)
    assert "/admin/labelapp/rating/" not in client.get(reverse("home")).content.decode()
    assert client.get("/admin/labelapp/rating/").status_code == 403
    reviewer = make_user("rev2", staff=True, roles=("reviewer",))
    client.force_login(reviewer)
    assert "/admin/labelapp/rating/" in client.get(reverse("home")).content.decode()
    assert client.get("/admin/labelapp/rating/").status_code == 200
