"""One turn of the loop through a real Celery worker, Redis and PostgreSQL, on tiny models:
ratings -> reward model run -> the beat's policy check -> PPO round (its worker killed with -9 halfway,
restarted, resumed from its last update) -> new comparisons at the front of the queue -> a rater judges
them -> simulated raters (services/simulation.py) judge them -> the win rate on the policy page.
"""

from __future__ import annotations

import os
import signal

import pytest
from django.urls import reverse

from labelapp.models import PolicyPair, PolicyVersion, Rating, RewardModelVersion, TrainingRun
from labelapp.services import policy, training
from labelapp.services.simulation import simulate_raters
from tests.labelapp.policy_fixtures import tiny_policy_dir  # noqa: F401 (a fixture)
from tests.labelapp.test_training_worker import _wait

pytest.importorskip("torch")

pytestmark = [pytest.mark.celery, pytest.mark.django_db(transaction=True)]

# A tiny update takes about 40 ms on a quiet 2-core machine: the round must last long enough (seconds)
# for the test, polling every 0.2 s, to kill its worker part-way.
UPDATES = 150


def test_a_loop_turn_through_a_real_worker_survives_kill_9_and_ends_with_a_win_rate(
    settings,
    tiny_backbone,
    tiny_policy_dir,  # noqa: F811 (the fixture)
    tmp_path,
    guideline,
    make_user,
    celery_worker_process,
    client,  # noqa: F811
):
    from tests.labelapp.test_training import _rate_many

    queue = f"test-loop-{os.getpid()}"
    rm = {
        "BACKBONE": tiny_backbone,
        "MAX_LENGTH": 64,
        "BATCH_SIZE": 8,
        "EPOCHS": 1,
        "EVAL_EVERY": 50,
        "CHECKPOINT_EVERY": 50,
        "DEVICE": "cpu",
        "QUEUE": queue,
        # Safe activation has its own tests; here the first version must go live so the loop can turn.
        "EVAL_SET_PERCENT": 0,
        "EVAL_SET_MIN_PAIRS": 0,
    }
    pol = {
        "MODEL": tiny_policy_dir,
        "MAX_NEW_TOKENS": 6,
        "TEMPERATURE": 1.0,
        "PPO_UPDATES": UPDATES,
        "PPO_BATCH_SIZE": 4,
        "PPO_MINI_BATCH_SIZE": 2,
        "PPO_EPOCHS": 1,
        "PPO_LEARNING_RATE": 1e-3,
        "EVAL_SHARE": 0.3,
        "EVAL_PROMPTS": 4,
        "FRESH_PROMPTS": 2,
        "DEVICE": "cpu",
        "QUEUE": queue,
        "AUTO_ROUND": True,
        "AUTO_MODE": "ppo",
    }
    settings.TRAINING = {**settings.TRAINING, **rm}
    settings.POLICY = {**settings.POLICY, **pol}
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    env = {
        "RM_BACKBONE": tiny_backbone,
        "RM_MAX_LENGTH": "64",
        "RM_BATCH_SIZE": "8",
        "RM_EPOCHS": "1",
        "RM_EVAL_EVERY": "50",
        "RM_CHECKPOINT_EVERY": "50",
        "RM_DEVICE": "cpu",
        "RM_QUEUE": queue,
        "RM_EVAL_SET_PERCENT": "0",
        "RM_EVAL_SET_MIN_PAIRS": "0",
        "POLICY_MODEL": tiny_policy_dir,
        "POLICY_MAX_NEW_TOKENS": "6",
        "POLICY_TEMPERATURE": "1.0",
        "PPO_UPDATES": str(UPDATES),
        "PPO_BATCH_SIZE": "4",
        "PPO_MINI_BATCH_SIZE": "2",
        "PPO_EPOCHS": "1",
        "PPO_LEARNING_RATE": "0.001",
        "POLICY_EVAL_SHARE": "0.3",
        "POLICY_EVAL_PROMPTS": "4",
        "POLICY_FRESH_PROMPTS": "2",
        "POLICY_DEVICE": "cpu",
        "POLICY_QUEUE": queue,
        "ARTIFACTS_DIR": str(tmp_path / "artifacts"),
        "OMP_NUM_THREADS": "1",
    }
    _rate_many(make_user, 24)
    name = f"{queue}@%h"
    worker = celery_worker_process(queue=queue, name=name, extra_env=env)

    # ratings -> reward model (activated on success)
    rm_run = training.training_run_request(trigger="manual", force=True)
    done = _wait(
        lambda: TrainingRun.objects.filter(pk=rm_run.pk, status__in=["succeeded", "failed"]).first(),
        180,
        "the reward model run",
        worker,
    )
    assert done.status == "succeeded", done.error
    # training.py activates the new version just after it marks the run succeeded (two commits): wait for it
    _wait(lambda: RewardModelVersion.objects.filter(is_active=True).exists(), 30, "the activation", worker)

    # the beat's check sees a reward model no policy was trained on: a PPO round on the gpu queue
    run = policy.policy_check_and_start()
    assert run is not None and run.kind == "ppo"

    def past_two_updates():
        r = TrainingRun.objects.get(pk=run.pk)
        assert r.status in ("queued", "running"), f"the round ended ({r.status}) before it could be killed"
        return r.status == "running" and (r.progress_detail.get("step") or 0) >= 2

    _wait(past_two_updates, 180, "the round to pass two updates", worker)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)
    run.refresh_from_db()
    assert run.status == "running" and run.attempts == 1

    worker = celery_worker_process(queue=queue, name=name, extra_env=env)  # same name: requeues its round
    finished = _wait(
        lambda: TrainingRun.objects.filter(pk=run.pk, status__in=["succeeded", "failed"]).first(),
        300,
        "the round",
        worker,
    )
    assert finished.status == "succeeded", finished.error
    assert finished.attempts == 2 and finished.metrics["resumed_from_update"] >= 2
    assert TrainingRun.objects.filter(kind="ppo").count() == 1
    v1 = PolicyVersion.objects.get(number=1)
    assert [row["update"] for row in v1.history] == list(range(1, UPDATES + 1))

    # the new comparisons come first; simulated raters (length-biased, judging by the true utility of
    # services/simulation.py) judge them through the same services as people
    pairs = PolicyPair.objects.filter(new=v1)
    assert pairs.filter(kind="vs_previous").exists()
    priority = settings.POLICY["COMPARISON_PRIORITY"]
    assert all(p.comparison.priority == priority for p in pairs.select_related("comparison"))
    slots = sum(p.comparison.required_ratings for p in pairs.select_related("comparison"))
    result = simulate_raters(
        raters=3, ratings=slots, length_bias=0.6, seed=7, encoder="lexical", prefix="loop", top_up=False
    )
    assert result.ratings == slots
    judged = Rating.objects.filter(comparison__policy_pair__new=v1, rater__username__startswith="loop-")
    assert judged.count() == slots  # the policy pairs were served before anything else
    win = policy.policy_win_rate(version=v1)
    assert win is not None and win["n"] >= 1 and 0 <= win["lo"] <= win["win_rate"] <= win["hi"] <= 1

    client.force_login(make_user("boss", staff=True))
    page = client.get(reverse("policy_version", args=[1]))
    assert f"{win['win_rate']:.3f}".encode() in page.content
