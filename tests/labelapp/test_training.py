"""Reward model retraining from the database side: single flight, claims, failures, versions, pages.

Training itself uses a tiny BERT built from a config (tests/conftest.py) so a run takes seconds.
The worker-kill test is in test_training_worker.py.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import OperationalError, connections
from django.urls import reverse
from django.utils import timezone

from labelapp.models import (
    Comparison,
    EvalSetRating,
    Prompt,
    Rating,
    Response,
    RewardModelVersion,
    TrainingRun,
)
from labelapp.services import training
from labelapp.services.assignment import assignment_next
from labelapp.services.ratings import RatingInput, rating_submit

pytest.importorskip("torch")


@pytest.fixture
def enqueued(monkeypatch):
    """Record what would be sent to the gpu queue instead of sending it."""
    sent: list[int] = []
    monkeypatch.setattr(training, "_enqueue", sent.append)
    return sent


@pytest.fixture
def tiny_settings(settings, tiny_backbone, tmp_path):
    settings.TRAINING = {
        **settings.TRAINING,
        "BACKBONE": tiny_backbone,
        "MAX_LENGTH": 64,
        "BATCH_SIZE": 8,
        "EPOCHS": 2,
        "EVAL_EVERY": 5,
        "CHECKPOINT_EVERY": 5,
        "MIN_NEW_RATINGS": 10,
        "DEVICE": "cpu",
        # No frozen evaluation set unless a test asks for one (test_training_activation.py does).
        "EVAL_SET_PERCENT": 0,
        "EVAL_SET_MIN_PAIRS": 0,
    }
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    return settings


_PROMPT_SERIAL = itertools.count()


def _rate_many(make_user, n_prompts: int, *, tie: bool = False, consent: bool = True) -> list[Rating]:
    """n_prompts comparisons, each rated by one rater; the correct answer names the right animal."""
    from labelapp.services.guidelines import guideline_acknowledge, guideline_current

    rater = make_user()
    guideline_acknowledge(rater=rater, version=guideline_current())
    for i in range(n_prompts):
        # a new text each call: a prompt with the text of an earlier one evaluates or trains with it
        p = Prompt.objects.create(text=f"Which animal barks? ({next(_PROMPT_SERIAL)})", consent=consent)
        good = Response.objects.create(
            prompt=p, text=f"A dog barks. {'Really. ' * (i % 4)}", source_model="t"
        )
        bad = Response.objects.create(
            prompt=p, text=f"A cat barks. {'Truly. ' * ((i + 2) % 4)}", source_model="t"
        )
        a, b = (good, bad) if i % 2 else (bad, good)
        Comparison.objects.create(prompt=p, response_a=a, response_b=b, required_ratings=1)
    ratings = []
    while (assignment := assignment_next(rater=rater)) is not None:
        c = assignment.comparison
        pref = 0 if tie else (-2 if "dog" in c.response_a.text else 2)
        rating, _ = rating_submit(
            rater=rater,
            assignment_id=assignment.pk,
            idempotency_key=assignment.form_key,
            data=RatingInput(preference=pref, length_check="adds_content"),
        )
        ratings.append(rating)
    return ratings


@pytest.mark.django_db
def test_it_waits_for_enough_new_ratings(tiny_settings, guideline, make_user, enqueued):
    _rate_many(make_user, 6)
    assert training.training_run_request(trigger="beat") is None
    _rate_many(make_user, 6)
    run = training.training_run_request(trigger="beat")
    assert run is not None and enqueued == [run.pk]
    assert run.data_snapshot["n_usable"] == 12 and len(run.data_snapshot["rating_ids"]) == 12


@pytest.mark.django_db(transaction=True)
def test_two_beats_at_the_same_moment_start_exactly_one_run(tiny_settings, guideline, make_user, enqueued):
    _rate_many(make_user, 12)
    barrier = threading.Barrier(2)
    results = []

    def beat():
        try:
            barrier.wait()
            results.append(training.training_check_and_start())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=beat) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert TrainingRun.objects.count() == 1
    assert sorted(r is None for r in results) == [False, True]
    assert len(enqueued) == 1


@pytest.mark.django_db
def test_a_full_run_makes_a_version_decided_by_safe_activation_and_a_redelivered_task_does_nothing(
    tiny_settings, guideline, make_user, enqueued, client, staff
):
    tiny_settings.TRAINING = {**tiny_settings.TRAINING, "EVAL_SET_PERCENT": 30, "EVAL_SET_MIN_PAIRS": 1}
    _rate_many(make_user, 24)
    run = training.training_run_request(trigger="manual", force=True, with_baseline=True)
    assert training.training_run_execute(run_id=run.pk, worker="w1") == TrainingRun.Status.SUCCEEDED
    assert training.training_run_execute(run_id=run.pk, worker="w2") == "not-claimed"
    run.refresh_from_db()
    assert run.status == "succeeded" and run.attempts == 1 and run.progress == 1.0
    version = RewardModelVersion.objects.get()
    # Activated only if it beats a coin on the frozen evaluation set (6-8 pairs here): a tiny random
    # backbone after a few steps does so on most but not all splits, and the split follows the prompt
    # ids, which depend on the tests that ran before. The rule itself: test_training_activation.py.
    assert version.run_id == run.pk and version.eval_set_metrics["n_pairs"] >= 1
    assert version.is_active == version.activation_note.startswith("Activated"), version.activation_note
    for key in (
        "accuracy",
        "accuracy_length_matched",
        "accuracy_shorter_won",
        "pearson_length",
        "ece",
        "loss",
    ):
        assert key in version.metrics, key
    assert version.baseline_metrics  # the plain model trained beside it

    client.force_login(staff)
    page = client.get(reverse("reward_model_version", args=[version.number])).content.decode()
    assert "Pearson(reward, length)" in page and "plain model" in page
    for chart in ("chart-loss", "chart-buckets", "chart-scatter"):
        assert f'id="{chart}"' in page and f'id="{chart}-spec" type="application/json"' in page, chart
    run_page = client.get(reverse("training_run", args=[run.pk])).content.decode()
    # human labels with rounded numbers, not raw metric keys
    assert "balanced accuracy" in run_page and "accuracy_shorter_won" not in run_page
    assert "balanced accuracy" in page and 'id="activation-note"' in page
    assert client.get(reverse("training_home")).status_code == 200

    # A second version, then roll back to the first from the page.
    _rate_many(make_user, 12)
    run2 = training.training_run_request(trigger="manual", force=True)
    training.training_run_execute(run_id=run2.pk, worker="w1")
    v2 = RewardModelVersion.objects.get(number=2)
    # Safe activation decided on the frozen evaluation set, and said why on the version.
    assert v2.is_active == v2.activation_note.startswith("Activated"), v2.activation_note
    assert v2.eval_set_metrics["n_pairs"] >= 1 and "candidate" in v2.eval_set_metrics
    client.post(reverse("reward_model_activate", args=[1]))
    assert RewardModelVersion.objects.get(is_active=True).number == 1


@pytest.mark.django_db
def test_too_few_ratings_queue_nothing_and_a_run_whose_ratings_went_fails_clearly_once(
    tiny_settings, guideline, make_user, enqueued
):
    # "train now" with nothing to train on queued a run that could only fail in the worker
    with pytest.raises(training.TooFewRatings, match="Only 0 rating"):
        training.training_run_request(trigger="manual", force=True)
    assert not TrainingRun.objects.exists() and not enqueued
    # counted after the evaluation set grew: its new prompts' ratings never train (a run was queued
    # on no rating when all four joined it)
    tiny_settings.TRAINING = {**tiny_settings.TRAINING, "EVAL_SET_PERCENT": 100}
    _rate_many(make_user, 4)
    with pytest.raises(training.TooFewRatings, match="Only 0 rating"):
        training.training_run_request(trigger="manual", force=True)
    assert not TrainingRun.objects.exists() and not EvalSetRating.objects.exists()  # rolled back
    tiny_settings.TRAINING = {**tiny_settings.TRAINING, "EVAL_SET_PERCENT": 0}
    _rate_many(make_user, 4)
    run = training.training_run_request(trigger="manual", force=True)
    # the ratings lost their consent after the run was queued: the worker finds none usable
    Prompt.objects.update(consent=False)
    assert training.training_run_execute(run_id=run.pk) == TrainingRun.Status.FAILED
    run.refresh_from_db()
    assert run.status == "failed" and "nothing is left to train on" in run.error
    assert run.attempts == 1
    assert training.training_run_execute(run_id=run.pk) == "not-claimed"


@pytest.mark.django_db
def test_only_ties_fail_clearly(tiny_settings, guideline, make_user, enqueued):
    _rate_many(make_user, 8, tie=True)
    with pytest.raises(training.TooFewRatings, match="Only 0 rating.*not a tie"):
        training.training_run_request(trigger="manual", force=True)


@pytest.mark.django_db
def test_ratings_without_consent_are_never_used(tiny_settings, guideline, make_user, enqueued):
    # the queue never serves a prompt without consent: these lost theirs after they were rated
    withdrawn = _rate_many(make_user, 5)
    Prompt.objects.filter(comparisons__ratings__in=withdrawn).update(consent=False)
    kept = _rate_many(make_user, 5)
    run = training.training_run_request(trigger="manual", force=True)
    assert sorted(run.data_snapshot["rating_ids"]) == sorted(r.pk for r in kept)
    assert run.data_snapshot["n_without_consent"] == 5


def test_prompts_flagged_for_personal_data_train_only_once_reviewed(
    tiny_settings, guideline, make_user, staff, enqueued
):
    # an unreviewed "contains personal data" flag went into the next run's pairs like any rating
    from labelapp.services.review import rating_review_add
    from tests.labelapp.export_helpers import make_pair, rate

    kept = [r.pk for r in _rate_many(make_user, 4)]
    suspect = make_pair(text="Remind Anna about the rent")
    flagged = rate(rater=make_user(), comparison=suspect, preference=1, guideline=guideline, flag_pii=True)
    other = rate(rater=make_user(), comparison=suspect, preference=-2, guideline=guideline)
    run = training.training_run_request(trigger="manual", force=True)
    assert sorted(run.data_snapshot["rating_ids"]) == sorted(kept)
    assert run.data_snapshot["n_awaiting_review"] == 2
    # Reviewed (excluded): the flagged rating stays out, the prompt's other rating trains.
    rating_review_add(rating=flagged, decision="exclude", reason="no personal data", reviewer=staff)
    snapshot = training.training_snapshot()
    assert sorted(snapshot["rating_ids"]) == sorted([*kept, other.pk])
    assert snapshot["n_awaiting_review"] == 0


def _undecided_version(tiny_settings, make_user, monkeypatch) -> RewardModelVersion:
    """A version whose run succeeded and whose worker died before the activation decision."""
    tiny_settings.TRAINING = {**tiny_settings.TRAINING, "EVAL_SET_PERCENT": 30, "EVAL_SET_MIN_PAIRS": 1}
    _rate_many(make_user, 12)
    real_decide = training.reward_model_decide
    monkeypatch.setattr(training, "reward_model_decide", lambda **kwargs: None)  # the worker dies here
    run = training.training_run_request(trigger="manual", force=True)
    assert training.training_run_execute(run_id=run.pk) == TrainingRun.Status.SUCCEEDED
    monkeypatch.setattr(training, "reward_model_decide", real_decide)
    return RewardModelVersion.objects.get(run=run)


@pytest.fixture
def decisions_sent(monkeypatch):
    from labelapp import tasks

    sent = []
    monkeypatch.setattr(
        tasks.decide_reward_model, "apply_async", lambda args, **kw: sent.append((args, kw["queue"]))
    )
    return sent


def _after_the_wait(times: int = 1):
    return timezone.now() + times * timedelta(seconds=training._decision_wait_seconds() + 1)


@pytest.mark.django_db
def test_a_worker_killed_before_the_activation_decision_has_it_sent_again(
    tiny_settings, guideline, make_user, enqueued, monkeypatch, decisions_sent
):
    # kill -9 between the run's success commit and the decision left the version undecided for ever:
    # recovery only looked at running runs, and the loop never moved on to the version.
    from labelapp import tasks

    version = _undecided_version(tiny_settings, make_user, monkeypatch)
    assert version.activation_note.startswith("Deciding") and not version.is_active
    assert training.reward_model_decisions_resend() == []  # the worker may still be deciding
    later = _after_the_wait()
    assert training.reward_model_decisions_resend(now=later) == [version.pk]
    assert training.reward_model_decisions_resend(now=later) == []  # a second beat at once: sent once
    assert decisions_sent == [([version.pk], tiny_settings.TRAINING["QUEUE"])]

    monkeypatch.setattr(training, "database_now", lambda: later)  # the message is taken after the wait
    tasks.decide_reward_model(version.pk)  # what the worker on the reward-model queue runs
    version.refresh_from_db()
    assert "n_pairs" in version.eval_set_metrics and not version.activation_note.startswith("Deciding")
    assert tasks.decide_reward_model(version.pk) is None  # decided: a duplicate message does nothing
    assert training.reward_model_decisions_resend(now=_after_the_wait(3)) == []


@pytest.mark.django_db
def test_the_decision_wait_runs_on_the_database_clock_not_the_workers(
    tiny_settings, guideline, make_user, enqueued, monkeypatch, decisions_sent
):
    # The worker wrote "since" on its own clock and beat compared it with its own: a worker clock an
    # hour ahead held the re-send back an hour longer (behind: it came early, while still deciding).
    real_now = timezone.now
    monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(hours=1))  # the worker's clock
    version = _undecided_version(tiny_settings, make_user, monkeypatch)
    monkeypatch.setattr(timezone, "now", real_now)  # beat's clock is right
    t = tiny_settings.TRAINING
    tiny_settings.TRAINING = {**t, "HEARTBEAT_TIMEOUT_SECONDS": 1, "STALL_TIMEOUT_SECONDS": 1}
    time.sleep(1.2)
    assert training.reward_model_decisions_resend() == [version.pk]


@pytest.mark.django_db
def test_two_beats_reading_the_same_pending_version_send_its_decision_once(
    tiny_settings, guideline, make_user, enqueued, monkeypatch, decisions_sent
):
    version = _undecided_version(tiny_settings, make_user, monkeypatch)
    read = RewardModelVersion.objects.get(pk=version.pk).eval_set_metrics
    later = _after_the_wait()
    # both beats read the version before either wrote: the jsonb compare-and-set lets one through
    assert training._decision_resend(version.pk, read, now=later, cutoff=later) is True
    assert training._decision_resend(version.pk, read, now=later, cutoff=later) is False
    assert len(decisions_sent) == 1


@pytest.mark.django_db
def test_a_pending_decision_leaves_a_hand_roll_back_alone_and_gives_up_after_the_attempts(
    tiny_settings, guideline, make_user, enqueued, monkeypatch, decisions_sent, staff
):
    from labelapp import tasks

    version = _undecided_version(tiny_settings, make_user, monkeypatch)
    other = RewardModelVersion.objects.create(number=99, run=TrainingRun.objects.create(status="succeeded"))
    training.reward_model_activate(version=other, by=staff)  # staff chose a version meanwhile
    later = _after_the_wait()
    monkeypatch.setattr(training, "database_now", lambda: later)  # re-sent, and taken after the wait
    assert tasks.decide_reward_model(version.pk) is False
    version.refresh_from_db()
    assert "changed while this one waited" in version.activation_note and not version.is_active
    assert "(v99 is active now, activated by hand)" in version.activation_note

    limit = tiny_settings.TRAINING["MAX_ATTEMPTS"]
    RewardModelVersion.objects.filter(pk=version.pk).update(
        activation_note=training.DECIDING_NOTE,
        eval_set_metrics=training.decision_pending_marker(active=other, started=limit),
    )
    assert training.reward_model_decisions_resend(now=_after_the_wait(2)) == []
    version.refresh_from_db()
    assert f"stopped {limit} times" in version.activation_note and version.eval_set_metrics == {}


@pytest.mark.django_db
def test_the_run_s_own_decision_leaves_a_roll_back_made_since_its_success_alone(
    tiny_settings, guideline, make_user, enqueued, monkeypatch, staff
):
    # the immediate decision read the active version afresh: a roll-back made after the run succeeded
    # was compared against and replaced (only the re-sent decision checked the marker)
    version = _undecided_version(tiny_settings, make_user, monkeypatch)
    other = RewardModelVersion.objects.create(number=99, run=TrainingRun.objects.create(status="succeeded"))
    training.reward_model_activate(version=other, by=staff)
    version.refresh_from_db()
    assert training.reward_model_safe_activate(version=version) is False
    version.refresh_from_db()
    assert "changed while this one waited" in version.activation_note and not version.is_active
    assert RewardModelVersion.objects.get(is_active=True).pk == other.pk


@pytest.mark.django_db
def test_a_second_copy_of_the_decision_does_nothing_while_one_that_started_may_still_run(
    tiny_settings, guideline, make_user, enqueued, monkeypatch, decisions_sent
):
    # each re-send queues a message; with two workers two copies both passed the compare-and-set one
    # after the other and ran two decisions at once (both loading every model)
    from labelapp import tasks

    version = _undecided_version(tiny_settings, make_user, monkeypatch)
    later = _after_the_wait()
    monkeypatch.setattr(training, "database_now", lambda: later)
    started = []
    monkeypatch.setattr(training, "reward_model_decide", lambda **kw: started.append(kw) or True)
    assert tasks.decide_reward_model(version.pk) is True  # the first copy decides (here: pretends to)
    assert tasks.decide_reward_model(version.pk) is None  # the second, moments later, leaves it be
    assert len(started) == 1
    monkeypatch.setattr(training, "database_now", lambda: _after_the_wait(3))  # that one died long ago
    assert tasks.decide_reward_model(version.pk) is True and len(started) == 2


@pytest.mark.django_db
def test_decisions_that_never_started_do_not_count_toward_giving_up(
    tiny_settings, guideline, make_user, enqueued, monkeypatch, decisions_sent
):
    # the re-send counted messages, not decisions: a worker busy with a long run (the messages waited)
    # or a broker that was down (none could be sent) had the version given up "after the worker
    # deciding it stopped 4 times", though nothing had tried to decide it since the run
    version = _undecided_version(tiny_settings, make_user, monkeypatch)
    limit = tiny_settings.TRAINING["MAX_ATTEMPTS"]
    for hours in range(1, limit + 3):
        assert training.reward_model_decisions_resend(now=_after_the_wait(hours)) == [version.pk]
    version.refresh_from_db()
    assert version.activation_note == training.DECIDING_NOTE and len(decisions_sent) == limit + 2
    # decisions that start and die do count: the run's own, then limit - 1 more
    for _ in range(limit - 1):
        marker = RewardModelVersion.objects.get(pk=version.pk).eval_set_metrics
        RewardModelVersion.objects.filter(pk=version.pk).update(
            eval_set_metrics=marker | {"started": marker["started"] + 1}
        )
    assert training.reward_model_decisions_resend(now=_after_the_wait(limit + 4)) == []
    version.refresh_from_db()
    assert f"stopped {limit} times" in version.activation_note


@pytest.mark.django_db
def test_a_run_is_taken_over_only_by_its_own_message_on_its_worker_once_its_process_is_gone():
    import subprocess

    gone = subprocess.Popen(["true"])
    gone.wait()
    alive = os.getppid()

    def running(pid, **fields):
        TrainingRun.objects.filter(status="running").update(status="failed")  # one run at a time
        return TrainingRun.objects.create(
            status="running", attempts=1, task_id="t-1", worker="gpu@a", pid=pid, **fields
        )

    run = running(alive)  # the message came back while its run still runs (a lost broker connection)
    assert training.run_claim(run_id=run.pk, worker="gpu@a", task_id="t-1") is None
    run = running(gone.pid)
    assert training.run_claim(run_id=run.pk, worker="gpu@b", task_id="t-1") is None  # another worker
    assert training.run_claim(run_id=run.pk, worker="gpu@a", task_id="t-2") is None  # another message
    assert training.run_claim(run_id=run.pk, worker="gpu@a", task_id="") is None  # --sync
    taken = training.run_claim(run_id=run.pk, worker="gpu@a", task_id="t-1")
    assert taken.attempts == 2 and taken.status == "running" and taken.pid == os.getpid()
    cancelled = running(gone.pid, cancel_requested=True)
    assert training.run_claim(run_id=cancelled.pk, worker="gpu@a", task_id="t-1") is None
    cancelled.refresh_from_db()
    assert cancelled.status == "cancelled" and "process died" in cancelled.error
    # its last attempt's process died: failed as recovery fails it, not taken over as "attempt 4 of 3"
    last = running(gone.pid, max_attempts=1)
    assert training.run_claim(run_id=last.pk, worker="gpu@a", task_id="t-1") is None
    last.refresh_from_db()
    assert (last.status, last.attempts) == ("failed", 1) and "stopped during the run 1 times" in last.error


@pytest.mark.django_db(transaction=True)
def test_a_really_dropped_connection_requeues_the_run(
    tiny_settings, guideline, make_user, enqueued, monkeypatch
):
    # A stub OperationalError leaves the connection healthy; a real drop left it dead, the handler's
    # first UPDATE failed on it, and the run stayed `running` with nothing running it.
    import psycopg
    from django.db import connection

    _rate_many(make_user, 12)

    def dropped(*args, **kwargs):
        pid = connection.cursor().connection.info.backend_pid
        dsn = connection.get_connection_params()
        with psycopg.connect(**{k: v for k, v in dsn.items() if k != "cursor_factory"}, autocommit=True) as c:
            c.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])  # returns once it has exited
        TrainingRun.objects.count()  # the worker's next query meets the dead connection

    monkeypatch.setattr("rewardtrainer.train_rm.fit_reward_model", dropped)
    run = training.training_run_request(trigger="manual", force=True)
    with pytest.raises(training.TransientTrainingError):
        training.training_run_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "queued" and run.worker == "" and "Retrying" in run.error


@pytest.mark.django_db
def test_transient_errors_retry_then_fail_after_max_attempts(
    tiny_settings, guideline, make_user, enqueued, monkeypatch
):
    _rate_many(make_user, 12)
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("rewardtrainer.train_rm.fit_reward_model", flaky)
    run = training.training_run_request(trigger="manual", force=True)
    for _ in range(run.max_attempts - 1):
        with pytest.raises(training.TransientTrainingError):
            training.training_run_execute(run_id=run.pk)
        run.refresh_from_db()
        assert run.status == "queued" and "Retrying" in run.error
    assert training.training_run_execute(run_id=run.pk) == "failed"
    run.refresh_from_db()
    assert run.status == "failed" and "OperationalError" in run.error and run.attempts == run.max_attempts
    assert len(calls) == run.max_attempts


@pytest.mark.django_db
def test_a_bug_fails_at_once_with_its_message(tiny_settings, guideline, make_user, enqueued, monkeypatch):
    _rate_many(make_user, 12)

    def broken(*args, **kwargs):
        raise ValueError("shapes (4,) and (5,) do not match")

    monkeypatch.setattr("rewardtrainer.train_rm.fit_reward_model", broken)
    run = training.training_run_request(trigger="manual", force=True)
    assert training.training_run_execute(run_id=run.pk) == "failed"
    run.refresh_from_db()
    assert run.error == "ValueError: shapes (4,) and (5,) do not match" and run.attempts == 1


@pytest.mark.django_db
def test_dead_runs_are_requeued_and_given_up_after_max_attempts(
    tiny_settings, guideline, make_user, enqueued
):
    from datetime import timedelta

    from django.utils import timezone

    _rate_many(make_user, 12)
    run = training.training_run_request(trigger="manual", force=True)
    stale = timezone.now() - timedelta(hours=1)
    TrainingRun.objects.filter(pk=run.pk).update(
        status="running", attempts=1, heartbeat_at=stale, worker="gpu@x"
    )
    assert training.training_recover_stale() == [run.pk]
    run.refresh_from_db()
    assert run.status == "queued"
    TrainingRun.objects.filter(pk=run.pk).update(status="running", attempts=run.max_attempts, worker="gpu@x")
    assert training.training_recover_stale(worker="gpu@x") == []
    run.refresh_from_db()
    assert run.status == "failed" and "gave up" in run.error


@pytest.mark.django_db
def test_a_run_cancelled_before_its_worker_died_is_not_run_again(enqueued):
    """Cancel asks a running run to stop at its next step; when the worker died first (make run's
    Ctrl-C, a crash), recovery put the run back in the queue and it trained again, a whole attempt
    for a PPO round, until a progress write saw the request. Recovery ends it as cancelled."""
    run = TrainingRun.objects.create(
        kind=TrainingRun.Kind.PPO, status="running", attempts=1, worker="gpu@x", cancel_requested=True
    )
    assert training.training_recover_stale(worker="gpu@x", kinds=(TrainingRun.Kind.PPO,)) == []
    run.refresh_from_db()
    assert run.status == "cancelled" and run.finished_at is not None and "Cancelled" in run.error
    assert enqueued == []


def test_a_worker_presumed_dead_writes_nothing_over_the_next_attempt(
    tiny_settings, guideline, make_user, enqueued
):
    """Recovery re-queued a run whose heartbeat went stale and another worker claimed it; then the first
    worker wakes up. Its guards checked only `status == running`, which the second attempt's run is:
    it recorded a version, wrote progress and could fail the live attempt. The attempt number fences it."""
    _rate_many(make_user, 12)
    run = training.training_run_request(trigger="manual", force=True)
    first = training.run_claim(run_id=run.pk, worker="w1")
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=first.heartbeat_at - timedelta(hours=1))
    assert training.training_recover_stale(enqueue=lambda pk: None) == [run.pk]
    second = training.run_claim(run_id=run.pk, worker="w2")
    assert second.attempts == first.attempts + 1

    # its first progress write finds the run is no longer its own: it stops, and writes and records nothing
    assert training.run_execute_guarded(first, training._execute, label="training run") == "superseded"
    assert not RewardModelVersion.objects.exists()

    def crash(_run):
        raise RuntimeError("late failure of the first attempt")

    training.run_execute_guarded(first, crash, label="training run")
    run.refresh_from_db()
    assert (run.status, run.worker, run.progress, run.error) == ("running", "w2", 0.0, "")
    # the live attempt still owns it and finishes
    assert training._execute(second) == TrainingRun.Status.SUCCEEDED
    assert RewardModelVersion.objects.count() == 1


def test_ratings_excluded_or_withheld_after_the_run_was_queued_do_not_train(
    tiny_settings, guideline, make_user, enqueued, staff
):
    """The run trains on the ids its snapshot took when it was queued; a rating excluded in review, or
    a prompt withheld for personal data (or whose consent was withdrawn), afterwards still trained."""
    from labelapp.models import RaterProfile
    from labelapp.services.review import rating_review_add

    ratings = _rate_many(make_user, 12)
    run = training.training_run_request(trigger="manual", force=True)
    assert len(run.data_snapshot["rating_ids"]) == 12
    rating_review_add(rating=ratings[0], decision="exclude", reason="spam", reviewer=staff)
    Prompt.objects.filter(pk=ratings[1].comparison.prompt_id).update(consent=False)
    # a weight set after queueing (or out of range) is not what the run trains with
    RaterProfile.objects.update_or_create(rater=ratings[2].rater, defaults={"trust_weight": -1.0})
    pairs = training.training_pairs(
        run.data_snapshot["rating_ids"], weights=run.data_snapshot["trust_weights"]
    )
    ids = {p.pair_id for p in pairs}
    assert len(pairs) == 10 and f"rating:{ratings[0].pk}" not in ids and f"rating:{ratings[1].pk}" not in ids
    assert {p.weight for p in pairs} == {1.0}
    assert training.training_run_execute(run_id=run.pk, worker="w1") == TrainingRun.Status.SUCCEEDED
    run.refresh_from_db()
    assert run.metrics["ratings_dropped_since_queued"] == 2


def test_a_trust_weight_out_of_range_is_clipped_in_the_pairs(guideline, make_user, db):
    from labelapp.models import RaterProfile

    ratings = _rate_many(make_user, 2)
    RaterProfile.objects.update_or_create(rater=ratings[0].rater, defaults={"trust_weight": -1.0})
    assert {p.weight for p in training.training_pairs([r.pk for r in ratings])} == {0.0}


@pytest.mark.django_db
def test_a_corrupt_checkpoint_is_ignored(tiny_settings, guideline, make_user, enqueued):
    _rate_many(make_user, 16)
    run = training.training_run_request(trigger="manual", force=True)
    bad = tiny_settings.ARTIFACTS_DIR / f"reward-run-{run.pk}" / "main" / "checkpoints" / "ckpt-000005"
    bad.mkdir(parents=True)
    for name in ("model.safetensors", "optimizer.pt", "trainer_state.json"):
        (bad / name).write_bytes(b"not a checkpoint")
    (bad / "COMPLETE").write_text("")
    assert training.training_run_execute(run_id=run.pk) == "succeeded"


@pytest.mark.django_db
def test_cancel_a_queued_run(tiny_settings, guideline, make_user, enqueued, client, staff):
    _rate_many(make_user, 12)
    client.force_login(staff)
    r = client.post(reverse("training_start"))
    run = TrainingRun.objects.get()
    assert r.url == reverse("training_run", args=[run.pk])
    page = client.get(r.url).content.decode()
    assert "not started yet (at most 3 attempts)" in page and "attempt 0 of" not in page
    assert client.post(reverse("training_start")).url == reverse("training_home")  # one at a time
    client.post(reverse("training_run_cancel", args=[run.pk]))
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert training.training_run_execute(run_id=run.pk) == "not-claimed"


@pytest.mark.django_db
def test_training_pages_are_staff_only(client, rater):
    client.force_login(rater)
    assert client.get(reverse("training_home")).status_code == 403
    assert client.post(reverse("training_start")).status_code == 403
    assert TrainingRun.objects.count() == 0


@pytest.mark.django_db
def test_the_training_api_is_for_staff_and_single_flight(
    client, rater, staff, guideline, enqueued, make_user, settings
):
    settings.TRAINING = {**settings.TRAINING, "EVAL_SET_PERCENT": 0}  # all four ratings train
    client.force_login(staff)
    empty = client.post("/api/training/runs/", {}, content_type="application/json")
    assert empty.status_code == 400 and "a run needs at least 4" in empty.json()["detail"]
    _rate_many(make_user, 4)
    client.force_login(rater)
    assert client.get("/api/training/runs/").status_code == 403
    assert client.post("/api/training/runs/", {}).status_code == 403
    client.force_login(staff)
    first = client.post("/api/training/runs/", {"with_baseline": True}, content_type="application/json")
    assert first.status_code == 201 and first.json()["status"] == "queued"
    again = client.post("/api/training/runs/", {}, content_type="application/json")
    assert again.status_code == 409 and "one at a time" in again.json()["detail"]
    assert (
        client.post(
            "/api/training/runs/", {"with_baseline": "maybe"}, content_type="application/json"
        ).status_code
        == 400
    )
    assert [r["id"] for r in client.get("/api/training/runs/").json()["results"]] == [first.json()["id"]]
    assert client.post("/api/reward-models/7/activate/").status_code == 404


@pytest.mark.django_db
def test_the_api_and_the_page_start_from_the_plain_baseline_setting(
    client, staff, guideline, enqueued, settings, make_user
):
    # Only the command and the schedule read RM_TRAIN_PLAIN_BASELINE: the API and the button said no.
    settings.TRAINING = settings.TRAINING | {"TRAIN_PLAIN_BASELINE": True, "EVAL_SET_PERCENT": 0}
    _rate_many(make_user, 4)
    client.force_login(staff)
    assert 'name="with_baseline" checked' in client.get(reverse("training_home")).content.decode()
    run = client.post("/api/training/runs/", {}, content_type="application/json").json()
    assert TrainingRun.objects.get(pk=run["id"]).with_baseline is True
    TrainingRun.objects.filter(pk=run["id"]).update(status=TrainingRun.Status.CANCELLED)
    off = client.post("/api/training/runs/", {"with_baseline": False}, content_type="application/json").json()
    assert TrainingRun.objects.get(pk=off["id"]).with_baseline is False


@pytest.mark.django_db
def test_the_command_with_sync_retries_a_transient_error_here(
    tiny_settings, guideline, make_user, enqueued, monkeypatch
):
    """It ended in a TransientTrainingError traceback and left the run queued, which blocked every new
    run until the periodic re-send found a gpu worker (or forever where there was none)."""
    from io import StringIO

    from django.core.management import call_command

    from labelapp.management import run_output
    from rewardtrainer import train_rm

    _rate_many(make_user, 12)
    real, calls = train_rm.fit_reward_model, []

    def flaky_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real(*args, **kwargs)

    monkeypatch.setattr("rewardtrainer.train_rm.fit_reward_model", flaky_once)
    monkeypatch.setattr(run_output, "RETRY_PAUSE_SECONDS", 0.0)
    out = StringIO()
    call_command("train_reward_model", "--now", "--sync", stdout=out)
    run = TrainingRun.objects.get()
    assert run.status == "succeeded" and run.attempts == 2 and len(calls) == 2
    assert "hit a transient error" in out.getvalue() and "succeeded" in out.getvalue()


@pytest.mark.django_db
def test_the_command_checks_like_the_schedule_and_trains_with_now(
    tiny_settings, guideline, make_user, enqueued
):
    from django.core.management import CommandError, call_command

    _rate_many(make_user, 12)
    tiny_settings.TRAINING = {**tiny_settings.TRAINING, "MIN_NEW_RATINGS": 100}
    with pytest.raises(CommandError, match="Only 12 new trainable ratings"):
        call_command("train_reward_model")
    from io import StringIO

    out = StringIO()
    call_command("train_reward_model", "--now", "--sync", stdout=out)
    assert "succeeded" in out.getvalue() and '"accuracy"' in out.getvalue()
    assert enqueued == []  # --sync ran it here, nothing went to the queue
    assert RewardModelVersion.objects.get().is_active


@pytest.mark.django_db
def test_the_command_names_the_queue_the_run_went_to(tiny_settings, guideline, make_user, enqueued):
    # It always said queue 'gpu', also where RM_QUEUE names another: whoever looked for the worker
    # that never came looked at the wrong queue.
    from io import StringIO

    from django.core.management import call_command

    _rate_many(make_user, 12)
    tiny_settings.TRAINING = {**tiny_settings.TRAINING, "QUEUE": "rm-big"}
    out = StringIO()
    call_command("train_reward_model", "--now", stdout=out)
    assert "on queue 'rm-big' will pick it up" in out.getvalue() and len(enqueued) == 1


@pytest.mark.django_db
def test_the_command_does_not_blame_a_running_policy_round(settings):
    """A running PPO round does not hold the reward model's slot, yet the command said "Run #N is
    already running; one run at a time." (it looked for an active run of any kind) instead of why it
    started nothing: too few new ratings."""
    from django.core.management import CommandError, call_command

    settings.TRAINING = {**settings.TRAINING, "MIN_NEW_RATINGS": 50}
    TrainingRun.objects.create(kind=TrainingRun.Kind.PPO, status=TrainingRun.Status.RUNNING)
    with pytest.raises(CommandError, match="Only 0 new trainable ratings"):
        call_command("train_reward_model")


@pytest.mark.django_db
def test_the_run_page_counts_the_evaluation_set_among_what_was_left_out(client, staff):
    """ "1858 usable ratings (of 2380 consented; 258 ties ... left out)": the 264 ratings of the frozen
    evaluation set, which never train, were in the snapshot but not on the page, so it did not add up."""
    snapshot = {"rating_ids": [], "n_usable": 1858, "n_eval_set": 264, "n_consented": 2380, "n_ties": 258,
                "n_flagged_broken": 0, "n_awaiting_review": 0, "n_without_consent": 0}  # fmt: skip
    run = TrainingRun.objects.create(kind=TrainingRun.Kind.REWARD_MODEL, data_snapshot=snapshot)
    client.force_login(staff)
    page = client.get(reverse("training_run", args=[run.pk])).content.decode()
    assert "264 in the frozen evaluation set" in page


def test_contradictory_reward_model_settings_fail_the_system_check(settings):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    from labelapp.checks import reward_model_settings

    assert reward_model_settings() == []
    settings.TRAINING = {**settings.TRAINING, "RELEVANCE_HEAD": True, "AUGMENT": "none"}
    errors = reward_model_settings()
    assert [e.id for e in errors] == ["labelapp.E001"] and "relevance_head" in errors[0].msg
    settings.TRAINING = {**settings.TRAINING, "RELEVANCE_HEAD": False, "OBJECTIVE": "longest"}
    with pytest.raises(SystemCheckError, match="objective must be one of"):
        call_command("check")


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("MAX_STEPS", -1, "max_steps must be a whole number >= 0"),  # trained nothing, recorded a model
        ("BATCH_SIZE", 0, "batch_size must be a whole number >= 1"),  # "range() arg 3 must not be zero"
        ("LEARNING_RATE", float("nan"), "lr must be > 0"),
        ("MAX_ATTEMPTS", 0, "RM_MAX_ATTEMPTS must be a whole number >= 1"),  # runs failed at once
    ],
)
def test_reward_model_numbers_out_of_range_fail_the_system_check(settings, name, value, says):
    from labelapp.checks import reward_model_settings

    settings.TRAINING = {**settings.TRAINING, name: value}
    errors = reward_model_settings()
    assert [e.id for e in errors] == ["labelapp.E001"] and says in errors[0].msg
    assert f"(RM_{name})" in errors[0].msg  # the variable to fix, not only the config field's name


@pytest.mark.parametrize(
    ("name", "value", "variable", "says"),
    [
        # every scheduled check took live runs from their workers (and heartbeats wrote without a pause)
        ("HEARTBEAT_TIMEOUT_SECONDS", 0, "RM_HEARTBEAT_TIMEOUT", "a whole number >= 1"),
        ("CHECK_SECONDS", 0, "RM_CHECK_SECONDS", "a whole number >= 1"),  # beat ran it without a pause
        ("QUEUED_RESEND_SECONDS", -1, "RM_QUEUED_RESEND_SECONDS", "a whole number >= 1"),
        ("MIN_NEW_RATINGS", 0, "RM_MIN_NEW_RATINGS", "a whole number >= 1"),
        ("EVAL_SET_MIN_PAIRS", -1, "RM_EVAL_SET_MIN_PAIRS", "a whole number >= 0"),
        ("EVAL_SET_PERCENT", 150, "RM_EVAL_SET_PERCENT", "a whole number from 0 to 99"),
        ("QUEUE", " ", "RM_QUEUE", "must name a Celery queue"),
    ],
)
def test_reward_model_job_settings_out_of_range_fail_the_system_check(settings, name, value, variable, says):
    from labelapp.checks import reward_model_settings

    settings.TRAINING = {**settings.TRAINING, name: value}
    errors = reward_model_settings()
    assert [e.id for e in errors] == ["labelapp.E001"] and says in errors[0].msg
    assert f"({variable})" in errors[0].msg


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("PPO_UPDATES", 0, "updates must be a whole number >= 1"),  # an untrained "PPO" policy was published
        ("PPO_MINI_BATCH_SIZE", 32, "mini_batch_size (32) must be at most batch_size (16)"),
        ("MAX_NEW_TOKENS", -5, "max_new_tokens must be a whole number >= 1"),
        ("TEMPERATURE", 0.0, "temperature must be > 0"),
        ("BEST_OF_N", 0, "POLICY_BEST_OF_N must be a whole number >= 1"),
        ("TOP_P", 0, "POLICY_TOP_P must be in (0, 1]"),
        # the beat's every round request failed on it, and no round ever started on its own
        ("AUTO_MODE", "foo", "POLICY_AUTO_MODE must be 'ppo' or 'best_of_n'"),
        ("CHECK_SECONDS", 0, "POLICY_CHECK_SECONDS must be a whole number >= 1"),
        ("AUTO_REJECT_MIN_JUDGMENTS", 0, "POLICY_AUTO_REJECT_MIN_JUDGMENTS must be a whole number >= 1"),
        ("COMPARISON_PRIORITY", 2**31, "POLICY_COMPARISON_PRIORITY must be between"),
        ("QUEUE", "", "POLICY_QUEUE must name a Celery queue"),
    ],
)
def test_policy_numbers_out_of_range_fail_the_system_check(settings, name, value, says):
    from labelapp.checks import policy_settings

    assert policy_settings() == []
    settings.POLICY = {**settings.POLICY, name: value}
    errors = policy_settings()
    assert [e.id for e in errors] == ["labelapp.E002"] and says in errors[0].msg


def test_a_reward_model_backbone_that_is_not_there_is_a_startup_warning(settings, tmp_path):
    # each run failed with transformers' "Repo id must use alphanumeric chars", naming no file
    from labelapp.checks import reward_model_backbone

    assert reward_model_backbone() == []
    settings.TRAINING = {**settings.TRAINING, "BACKBONE": str(tmp_path / "missing")}
    [warning] = reward_model_backbone()
    assert warning.id == "labelapp.W001" and str(tmp_path / "missing") in warning.msg


def test_every_reward_model_setting_reaches_the_trainer(settings):
    from labelapp.services.training import train_config_from_settings

    assert train_config_from_settings().length_balance is False
    settings.TRAINING = {**settings.TRAINING, "LENGTH_BALANCE": True, "ENSEMBLE": 2, "AUGMENT_PADDING": 0.25}
    config = train_config_from_settings()
    assert (config.length_balance, config.ensemble, config.augment_padding) == (True, 2, 0.25)
    gate = {"RELEVANCE_GATE": "pmi", "RELEVANCE_LM": "/models/lm", "RELEVANCE_QUANTILE": 0.05,
            "RELEVANCE_WEIGHT": 50.0}  # fmt: skip
    settings.TRAINING = {**settings.TRAINING, **gate}
    config = train_config_from_settings()
    got = config.relevance_gate, config.relevance_lm, config.relevance_quantile, config.relevance_weight
    assert got == ("pmi", "/models/lm", 0.05, 50.0)
    settings.TRAINING = {**settings.TRAINING, "PACKING": True, "PACKED_ATTENTION": "varlen"}
    config = train_config_from_settings()
    assert (config.packing, config.packed_attention) == (True, "varlen")
    assert config.length_beta_start == "fit"
    settings.TRAINING = {**settings.TRAINING, "LENGTH_BETA_START": "zero"}
    assert train_config_from_settings().length_beta_start == "zero"


def test_a_bad_packed_attention_setting_fails_the_system_check(settings):
    from labelapp.checks import reward_model_settings

    settings.TRAINING = {**settings.TRAINING, "PACKED_ATTENTION": "dense"}
    assert "packed_attention must be one of auto, varlen, flex" in reward_model_settings()[0].msg


def test_a_bad_relevance_gate_setting_fails_the_system_check(settings):
    from labelapp.checks import reward_model_settings

    settings.TRAINING = {**settings.TRAINING, "RELEVANCE_GATE": "true"}  # the old boolean spelling
    errors = reward_model_settings()
    assert [e.id for e in errors] == ["labelapp.E001"] and "none, cosine, pmi" in errors[0].msg
    settings.TRAINING = {**settings.TRAINING, "RELEVANCE_GATE": "pmi", "RELEVANCE_QUANTILE": 1.5}
    assert "relevance_quantile" in reward_model_settings()[0].msg


def test_the_compile_setting_reads_its_old_boolean_spelling_and_a_bad_value_fails_the_check(
    settings, monkeypatch
):
    from config.settings import _auto_on_off
    from labelapp.checks import reward_model_settings

    for given, read in (("true", "on"), ("False", "off"), ("auto", "auto"), (" On ", "on")):
        monkeypatch.setenv("RM_COMPILE", given)
        assert _auto_on_off("RM_COMPILE") == read
    settings.TRAINING = {**settings.TRAINING, "COMPILE": "sometimes"}
    assert "compile must be one of auto, on, off" in reward_model_settings()[0].msg


# --- lifecycle: liveness, recovery races, cancel -----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_reward_model_run_in_a_long_step_without_progress_is_not_presumed_dead(
    tiny_settings, guideline, make_user, enqueued, monkeypatch
):
    """Only progress writes beat for a reward-model run, and the trainer writes none while it prepares
    the data or computes its final metrics (calibration, a PMI gate's LM forwards, the padding and
    off-prompt tests), which can outlast RM_HEARTBEAT_TIMEOUT: recovery re-queued the live run, its
    result was thrown away, and after max_attempts such tries it failed as 'killed or crashed'."""
    import time

    tiny_settings.TRAINING = {**tiny_settings.TRAINING, "HEARTBEAT_TIMEOUT_SECONDS": 2}
    _rate_many(make_user, 12)
    run = training.training_run_request(trigger="manual", force=True)
    recovered = []

    def long_final_metrics(*args, **kwargs):
        time.sleep(3.5)  # past the timeout, no progress call
        recovered.append(training.training_recover_stale())
        raise ValueError("end of the test's fake training")

    monkeypatch.setattr("rewardtrainer.train_rm.fit_reward_model", long_final_metrics)
    try:
        training.training_run_execute(run_id=run.pk, worker="gpu@live")
    finally:
        connections.close_all()
    assert recovered == [[]]
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("failed", 1) and "end of the test" in run.error


@pytest.fixture
def restarts(monkeypatch):
    """The calls of restart_pool_process (its SIGKILL would end pytest), in order."""
    calls = []
    monkeypatch.setattr(training, "restart_pool_process", lambda: calls.append(1))
    return calls


@contextlib.contextmanager
def _watched(run: TrainingRun, stall_after: float):
    """The run's heartbeat every 0.05 s with a stall watch of `stall_after` s; afterwards the connection
    its thread opened is closed (a transactional test database cannot be flushed while it is open)."""
    try:
        with training._Heartbeat(run, every=0.05, stall_after=stall_after) as beat:
            yield beat
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("attempts", "cancel", "status", "resent"),
    [(1, False, "queued", True), (3, False, "failed", False), (1, True, "cancelled", False)],
)
def test_a_hung_attempt_stops_beating_and_is_ended_and_its_process_restarted(
    monkeypatch, restarts, attempts, cancel, status, resent
):
    """The heartbeat thread beat whatever the trainer did: an attempt stuck in a read that never
    returned (or a deadlocked collective) stayed `running` with a fresh heartbeat for ever and held the
    single-flight slot. After STALL_TIMEOUT without a sign of life it is ended as recovery ends a dead
    one (re-queued and re-sent, failed once out of attempts, cancelled if staff asked) and its pool
    process is restarted."""
    import time

    run = TrainingRun.objects.create(
        kind=TrainingRun.Kind.REWARD_MODEL, status="running", attempts=attempts, max_attempts=3,
        cancel_requested=cancel,
    )  # fmt: skip
    sent = []
    monkeypatch.setattr(training, "_send", lambda pk: sent.append(pk) or True)
    with _watched(run, stall_after=0.3) as beat:
        time.sleep(1.0)  # hung: no progress call, no cancellation poll
        assert not beat._thread.is_alive()  # no more beats
    run.refresh_from_db()
    assert run.status == status and restarts == [1]
    assert "hung" in run.error.lower() and "no sign of progress" in run.error
    assert sent == ([run.pk] if resent else [])


def test_a_history_row_keeps_its_shape_with_nan_and_infinity_as_null():
    # the history rows were stored raw: a NaN figure failed the run's final save
    row = {"step": 10, "val_loss_quality": float("nan"), "val_pearson": float("-inf"), "phase": "length"}
    assert training._finite(row) == {
        "step": 10,
        "val_loss_quality": None,
        "val_pearson": None,
        "phase": "length",
    }


@pytest.mark.django_db
def test_progress_with_a_nan_or_infinite_figure_is_stored_without_it():
    # PostgreSQL's jsonb refuses NaN: the write failed with "Token "NaN" is invalid", and that was the
    # error a diverged run showed instead of its reason
    run = TrainingRun.objects.create(kind=TrainingRun.Kind.REWARD_MODEL, status="running", attempts=1)
    info = {"step": 3, "total_steps": 10, "train_loss": float("nan"), "val_loss": float("inf"), "lr": 1e-4}
    training._Reporter(run, "reward model", (0.0, 1.0))(info)
    run.refresh_from_db()
    detail = run.progress_detail
    assert (detail["train_loss"], detail["val_loss"], detail["lr"], run.progress) == (None, None, 1e-4, 0.3)


@pytest.mark.django_db(transaction=True)
def test_a_trainer_that_polls_is_not_presumed_hung(monkeypatch, restarts):
    """Progress calls and cancellation polls are the signs of life: a long phase that polls keeps
    beating however long it runs; outside a Celery pool process a hang is logged, the process kept."""
    import time

    run = TrainingRun.objects.create(kind=TrainingRun.Kind.PPO, status="running", attempts=1)
    reporter = training._Reporter(run, "ppo", (0.0, 1.0))
    with _watched(run, stall_after=0.3):
        for _ in range(12):
            assert not reporter.should_stop()
            time.sleep(0.1)
    run.refresh_from_db()
    assert (run.status, restarts) == ("running", [])
    monkeypatch.undo()
    training.restart_pool_process()  # pytest is no pool child: it logs and returns


@pytest.mark.django_db(transaction=True)
def test_the_stall_watch_kills_nothing_once_the_run_has_ended(restarts):
    """After the result is recorded the heartbeat still covers the version's safe activation, which
    makes no progress calls: a long one was presumed hung and its process killed mid-activation,
    leaving a version never activated. A run this attempt no longer owns is left alone."""
    import time

    run = TrainingRun.objects.create(kind=TrainingRun.Kind.REWARD_MODEL, status="succeeded", attempts=1)
    with _watched(run, stall_after=0.2):
        time.sleep(0.6)  # activation: no progress calls
    run.refresh_from_db()
    assert (run.status, run.error, restarts) == ("succeeded", "", [])


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stall_after", [0, -5])
def test_a_stall_timeout_of_zero_or_less_is_off(restarts, stall_after):
    import time

    run = TrainingRun.objects.create(kind=TrainingRun.Kind.PPO, status="running", attempts=1)
    with _watched(run, stall_after=stall_after):
        time.sleep(0.3)
    run.refresh_from_db()
    assert (run.status, restarts) == ("running", [])


@pytest.mark.django_db(transaction=True)
def test_a_stale_attempt_alive_in_the_same_process_does_not_feed_the_new_attempts_watch(
    monkeypatch, restarts
):
    """Signs of life were kept per run: a presumed-dead attempt still polling in this process (a solo
    pool, --sync) kept a hung newer attempt of the same run looking alive."""
    import copy
    import time

    run = TrainingRun.objects.create(kind=TrainingRun.Kind.PPO, status="running", attempts=2)
    old = copy.copy(run)
    old.attempts = 1
    stale = training._Reporter(old, "ppo", (0.0, 1.0))
    monkeypatch.setattr(training, "_send", lambda pk: True)
    with _watched(run, stall_after=0.3):
        for _ in range(10):
            stale.should_stop()  # the old attempt polls on (it reads the row only every 5 s)
            time.sleep(0.1)
    run.refresh_from_db()
    assert run.status == "queued" and restarts == [1]


@pytest.mark.django_db
@pytest.mark.parametrize("kind", [TrainingRun.Kind.REWARD_MODEL, TrainingRun.Kind.PPO])
def test_the_task_retries_as_long_as_the_run_has_attempts_left(settings, monkeypatch, kind):
    """The Celery tasks gave up after 5 retries whatever RM_MAX_ATTEMPTS said: with 8 attempts, the
    sixth transient error ended the task and left the run queued with no message until the periodic
    re-send (10 minutes). The run's own attempt limit bounds the retries now."""
    from django.db import OperationalError

    from labelapp import tasks
    from labelapp.services import policy

    monkeypatch.setattr(training, "_enqueue", lambda pk: None)
    run = TrainingRun.objects.create(kind=kind, max_attempts=8)

    def flaky(r):
        if r.attempts < 7:
            raise OperationalError("connection lost")
        training._finish(r, TrainingRun.Status.SUCCEEDED)
        return TrainingRun.Status.SUCCEEDED

    is_rm = kind == TrainingRun.Kind.REWARD_MODEL
    monkeypatch.setattr(training if is_rm else policy, "_execute", flaky)
    task = tasks.execute_reward_model_run if is_rm else tasks.ppo_round
    task.apply(args=[run.pk])  # eager: each retry runs at once
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("succeeded", 7)


def _two_stale_runs():
    """A reward-model run and a PPO round, both running with a stale heartbeat (attempt 1)."""
    from django.utils import timezone

    stale = timezone.now() - timedelta(hours=1)
    return [
        TrainingRun.objects.create(
            kind=kind, status="running", attempts=1, worker="gpu@x", heartbeat_at=stale
        )
        for kind in (TrainingRun.Kind.REWARD_MODEL, TrainingRun.Kind.PPO)
    ]


@pytest.mark.django_db
def test_recovery_leaves_a_run_that_was_claimed_again_since_it_looked(db):
    """Recovery read the stale runs, then re-queued each with an UPDATE guarded by `status = running`
    only: a run that a concurrent recovery (the restarted worker's, the beat's) had re-queued and a
    worker had claimed again meanwhile (attempt 2, a fresh heartbeat) was put back in the queue, and
    its live attempt was fenced off (or failed as 'gave up' when the stale copy counted max attempts)."""
    from django.utils import timezone

    first, second = _two_stale_runs()
    kinds = (TrainingRun.Kind.REWARD_MODEL, TrainingRun.Kind.PPO)
    order = [r.pk for r in TrainingRun.objects.filter(status="running", kind__in=kinds)]
    later = second if order[0] == first.pk else first

    def meanwhile(run_id):  # while recovery handles the first run, the other is re-queued and re-claimed
        if run_id == order[0]:
            TrainingRun.objects.filter(pk=later.pk).update(status="queued", worker="")
            training.run_claim(run_id=later.pk, worker="gpu@y")

    assert training.training_recover_stale(kinds=kinds, enqueue=meanwhile) == [order[0]]
    later.refresh_from_db()
    assert (later.status, later.attempts, later.worker) == ("running", 2, "gpu@y")
    assert later.heartbeat_at > timezone.now() - timedelta(minutes=1)


@pytest.mark.django_db
def test_recovery_does_not_requeue_a_run_cancelled_since_it_looked(db):
    """Staff cancelled a dead run (cancel_requested) after recovery had read it as not cancelled: the
    UPDATE re-queued it anyway and the next attempt ran until its first progress write (a whole
    best-of-n round, which writes none). It stays for the next pass, which ends it as cancelled."""
    first, second = _two_stale_runs()
    kinds = (TrainingRun.Kind.REWARD_MODEL, TrainingRun.Kind.PPO)
    order = [r.pk for r in TrainingRun.objects.filter(status="running", kind__in=kinds)]
    later = second if order[0] == first.pk else first

    def staff_cancel_meanwhile(run_id):
        if run_id == order[0]:
            training.training_run_cancel(run=later)

    training.training_recover_stale(kinds=kinds, enqueue=staff_cancel_meanwhile)
    later.refresh_from_db()
    assert later.status == "running" and later.cancel_requested
    assert training.training_recover_stale(kinds=kinds, enqueue=staff_cancel_meanwhile) == []
    later.refresh_from_db()
    assert later.status == "cancelled"


@pytest.mark.django_db
def test_a_run_cancelled_before_a_transient_error_ends_cancelled_not_requeued(
    tiny_settings, guideline, make_user, enqueued, monkeypatch
):
    """Staff cancelled a running run, then it hit a transient error (the database went away) before a
    progress write saw the request: it went back to the queue and the task retried it, a new attempt
    of a run staff had stopped."""
    _rate_many(make_user, 12)
    run = training.training_run_request(trigger="manual", force=True)

    def cancelled_then_db_lost(*args, **kwargs):
        training.training_run_cancel(run=run)
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("rewardtrainer.train_rm.fit_reward_model", cancelled_then_db_lost)
    assert training.training_run_execute(run_id=run.pk) == "cancelled"
    run.refresh_from_db()
    assert run.status == "cancelled" and run.finished_at is not None and run.attempts == 1
    assert "Cancelled" in run.error and "OperationalError" in run.error


@pytest.mark.django_db
def test_a_cancel_while_recovery_requeues_the_run_is_not_lost(enqueued, monkeypatch):
    """Cancel took two statements (queued -> cancelled, else running -> cancel_requested): recovery
    re-queuing the dead run between them left neither to match, and the run trained again."""
    from django.db.models import QuerySet
    from django.utils import timezone

    run = TrainingRun.objects.create(
        kind=TrainingRun.Kind.REWARD_MODEL,
        status="running",
        attempts=1,
        worker="gpu@x",
        heartbeat_at=timezone.now() - timedelta(hours=1),
    )
    real_update, state = QuerySet.update, {"recovered": False}

    def update_then_recovery_runs(self, **kwargs):
        n = real_update(self, **kwargs)
        if self.model is TrainingRun and not state["recovered"]:
            state["recovered"] = True  # the beat's recovery runs right after the cancel's first statement
            training.training_recover_stale()
        return n

    monkeypatch.setattr(QuerySet, "update", update_then_recovery_runs)
    training.training_run_cancel(run=run)
    run.refresh_from_db()
    assert run.status == "cancelled"


@pytest.mark.django_db
def test_a_cancel_after_the_last_progress_write_records_no_version(
    tiny_settings, guideline, make_user, enqueued, monkeypatch
):
    """A reward-model run saw a cancel only in its progress writes; one that came after the last (while
    the trainer saved the model, or between the main and the baseline model's last writes) was
    ignored: the run succeeded and its version went live. A policy round checks under the lock."""
    from types import SimpleNamespace

    _rate_many(make_user, 12)
    run = training.training_run_request(trigger="manual", force=True)

    def trained_then_cancelled(pairs, config, out_dir, progress=None, **kwargs):
        progress({"event": "done", "step": 4, "total_steps": 4, "val_accuracy": 1.0})
        training.training_run_cancel(run=run)  # staff press cancel as the model is being saved
        return SimpleNamespace(
            stopped=False, metrics={"accuracy": 1.0}, history=[], model_dir=str(out_dir / "model"),
            pairs_train=10, pairs_val=2, seconds=1.0, pairs_per_second=10.0, device="cpu",
            resumed_from_step=0, global_step=4,
        )  # fmt: skip

    monkeypatch.setattr("rewardtrainer.train_rm.fit_reward_model", trained_then_cancelled)
    assert training.training_run_execute(run_id=run.pk) == "cancelled"
    run.refresh_from_db()
    assert run.status == "cancelled" and not RewardModelVersion.objects.exists()


def test_an_attempt_that_lost_its_run_stops_without_writing_a_checkpoint(
    tiny_settings, guideline, make_user, enqueued, monkeypatch
):
    """An attempt presumed dead but alive (a paused VM, a partition) saw "stop" once the run was
    another attempt's, and stopped as for a cancel: it wrote a checkpoint, and pruned old ones, in the
    folder where the new attempt resumes and trains. Fencing kept its row writes out, not its files."""
    from django.db.models import F

    tiny_settings.TRAINING = {**tiny_settings.TRAINING, "CHECKPOINT_EVERY": 1000, "EVAL_EVERY": 0}
    monkeypatch.setattr(training._Reporter, "POLL_SECONDS", 0.0)
    _rate_many(make_user, 12)
    run = training.training_run_request(trigger="manual", force=True)
    real_poll = training._Reporter.should_stop

    def taken_over_after_the_first_step(self):
        # after the first optimizer step, recovery re-queued the run and another worker claimed it
        taken = TrainingRun.objects.filter(pk=run.pk, attempts=1)
        taken.update(attempts=F("attempts") + 1, worker="gpu@other")
        return real_poll(self)

    monkeypatch.setattr(training._Reporter, "should_stop", taken_over_after_the_first_step)
    status = training.training_run_execute(run_id=run.pk, worker="gpu@paused")
    checkpoints = tiny_settings.ARTIFACTS_DIR / f"reward-run-{run.pk}" / "main" / "checkpoints"
    assert not checkpoints.exists() or not any(checkpoints.iterdir())
    assert status == "superseded"
    run.refresh_from_db()
    assert (run.status, run.attempts, run.worker, run.error) == ("running", 2, "gpu@other", "")
    assert not RewardModelVersion.objects.exists()


def test_a_late_attempt_does_not_overwrite_the_model_of_the_attempt_that_recorded_a_version(
    tiny_settings, guideline, make_user, enqueued, monkeypatch
):
    """Attempts share the run's folder (to resume from its checkpoints) and every attempt saved its
    finished model to the same `main/model`. An attempt ended as hung while it saved (a solo pool, where
    its process is not restarted) went on and wrote over the model of the attempt that had taken the
    run over and recorded a version from it: the version's files were no longer what it measured."""
    import rewardtrainer.train_rm as train_rm

    _rate_many(make_user, 12)
    run = training.training_run_request(trigger="manual", force=True)
    real_save = train_rm.save_final_model
    calls: list[str] = []

    def taken_over_while_saving(model, tokenizer, directory):
        calls.append(str(directory))
        if len(calls) == 1:  # attempt 1, in its last write: the stall watch ends it, attempt 2 runs
            assert training.end_stalled_attempt(TrainingRun.objects.get(pk=run.pk), 4000.0, 3600.0)
            assert training.training_run_execute(run_id=run.pk, worker="gpu@next") == "succeeded"
        return real_save(model, tokenizer, directory)

    monkeypatch.setattr(train_rm, "save_final_model", taken_over_while_saving)

    def recorded_files():
        model = Path(RewardModelVersion.objects.get().artifact_path)
        return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in model.iterdir()}

    monkeypatch.setattr(training, "reward_model_safe_activate", lambda **kw: False)
    real_record = training._record_version
    seen: dict = {}

    def record_and_remember(*args, **kwargs):
        version = real_record(*args, **kwargs)
        seen["files"] = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
                         for p in Path(version.artifact_path).iterdir()}  # fmt: skip
        return version

    monkeypatch.setattr(training, "_record_version", record_and_remember)
    assert training.training_run_execute(run_id=run.pk, worker="gpu@hung") == "superseded"
    run.refresh_from_db()
    assert (run.status, run.attempts, run.worker) == ("succeeded", 2, "gpu@next")
    assert recorded_files() == seen["files"]  # nothing of the version's model was rewritten
    assert "attempt-2" in RewardModelVersion.objects.get().artifact_path


@pytest.mark.django_db
def test_heartbeats_and_their_timeout_use_the_database_clock(monkeypatch):
    """The worker that beats and the beat that recovers may run on machines whose clocks disagree:
    with each side's own clock, a recovery host ten minutes ahead of the worker's (beyond the
    5-minute timeout) requeued a live run whose worker had beaten a moment ago."""
    from django.utils import timezone

    run = TrainingRun.objects.create(kind=TrainingRun.Kind.REWARD_MODEL, status="queued")
    behind = timezone.now() - timedelta(minutes=10)
    monkeypatch.setattr(timezone, "now", lambda: behind)  # the worker's clock: ten minutes behind
    run = training.run_claim(run_id=run.pk, worker="gpu@slow-clock")
    training.run_owned(run).update(progress=0.1)
    monkeypatch.undo()  # recovery runs on a host with the right time
    assert training.training_recover_stale() == []
    run.refresh_from_db()
    assert (run.status, run.worker) == ("running", "gpu@slow-clock")
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    assert training.training_recover_stale(enqueue=lambda run_id: None) == [run.pk]


@pytest.mark.django_db
@pytest.mark.parametrize(("value", "expected"), [("on", True), ("false", False), ("0", False), (None, False)])
def test_the_start_buttons_baseline_box_reads_false_as_no(
    tiny_settings, guideline, make_user, enqueued, client, staff, value, expected
):
    # bool(request.POST.get(...)) read "false" as yes
    _rate_many(make_user, 12)
    client.force_login(staff)
    client.post(reverse("training_start"), {} if value is None else {"with_baseline": value})
    assert TrainingRun.objects.get().with_baseline is expected


def test_shares_on_the_version_page_are_percentages():
    # the PMI gate's share of training answers below its threshold showed as 0.120
    rows = dict(training.metric_rows({"relevance_gate_touched": 0.12, "accuracy": 0.6}))
    assert rows[training.METRIC_LABELS["relevance_gate_touched"]] == "12.0%"


@pytest.mark.django_db
def test_the_command_can_turn_the_baseline_off(settings, guideline, enqueued, make_user):
    # --with-baseline was store_true: with RM_TRAIN_PLAIN_BASELINE on there was no way to say no
    import io

    from django.core.management import CommandError, call_command

    settings.TRAINING = {**settings.TRAINING, "EVAL_SET_PERCENT": 0}
    with pytest.raises(CommandError, match="a run needs at least 4"):
        call_command("train_reward_model", "--now", stdout=io.StringIO())
    _rate_many(make_user, 4)
    settings.TRAINING = {**settings.TRAINING, "TRAIN_PLAIN_BASELINE": True}
    call_command("train_reward_model", "--now", "--no-with-baseline", stdout=io.StringIO())
    assert TrainingRun.objects.get().with_baseline is False and len(enqueued) == 1


@pytest.mark.django_db
def test_the_snapshot_says_why_each_left_out_rating_is_out_and_the_parts_add_up(
    make_user, guideline, client, staff
):
    # repeats, exclusions and withheld prompts were in "consented" but named nowhere, and a broken
    # tie counted as a tie and as broken: the run page's line did not add up
    from labelapp.models import EvalSetRating, Prompt, RatingReview, SimulatedDecision
    from tests.labelapp.export_helpers import make_pair, rate

    raters = iter(make_user(f"snap{i}") for i in range(20))

    def one(preference=2, text="Why is the sky blue?", **fields):
        return rate(
            rater=next(raters),
            comparison=make_pair(text=text),
            preference=preference,
            guideline=guideline,
            **fields,
        )

    usable = [one(text=f"usable {i}") for i in range(3)]
    SimulatedDecision.objects.create(
        rating=usable[0], rater=usable[0].rater, utility_a=0, utility_b=1, length_bias=0, position_bias=0,
        noise=1, p_longer=0.5, p_left=0.5, p_tie=0,
    )  # fmt: skip
    one(preference=0, text="broken tie", flag_broken=True)
    one(preference=0, text="a tie")
    excluded = one(text="excluded")
    RatingReview.objects.create(rating=excluded, decision="exclude", reason="spam", reviewer=staff)
    withheld = one(text="withheld")
    Prompt.objects.filter(pk=withheld.comparison.prompt_id).update(withheld=True)
    repeat = one(text="repeat")
    Comparison.objects.filter(pk=repeat.comparison_id).update(kind="repeat")
    held = one(text="in the set")
    EvalSetRating.objects.create(rating=held, prompt=held.comparison.prompt)
    one(text="in the set")  # its twin
    snap = training.training_snapshot()
    parts = {k: snap[k] for k in ("n_excluded", "n_withheld", "n_awaiting_review", "n_flagged_broken",
                                  "n_repeats", "n_ties", "n_eval_set")}  # fmt: skip
    assert parts == {"n_excluded": 1, "n_withheld": 1, "n_awaiting_review": 0, "n_flagged_broken": 1,
                     "n_repeats": 1, "n_ties": 1, "n_eval_set": 2}  # fmt: skip
    assert snap["n_usable"] == 3 and snap["n_simulated"] == 1
    assert snap["n_consented"] == snap["n_usable"] + sum(parts.values()) == 10
    run = TrainingRun.objects.create(kind=TrainingRun.Kind.REWARD_MODEL, data_snapshot=snap)
    client.force_login(staff)
    page = client.get(reverse("training_run", args=[run.pk])).content.decode()
    told = ("3 usable ratings (1 of them by simulated raters) of 10 consented", "1 ties", "1 flagged broken",
            "1 excluded in review", "1 of prompts withheld", "1 test-retest repeats",
            "2 in the frozen evaluation set")  # fmt: skip
    for said in told:
        assert said in page, said
