"""Training runs when the broker (Redis) is down: a clear 503, and lost messages are re-sent.

Real components: the Celery app pointed at a port where nothing listens (connection refused, as when
Redis is down), then back at the real Redis, where the re-sent message is read from the queue's list.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from kombu import pools as kombu_pools

from config.celery import app
from config.embedded import redis_py_url
from labelapp.models import TrainingRun
from labelapp.services import training

DEAD_BROKER = "redis://127.0.0.1:1/0"


@contextlib.contextmanager
def broker(url: str):
    """Point the Celery app at `url` (forgetting, not closing, its cached connection and producer pools:
    kombu keeps producer pools in a global registry per URL, and a closed one would be handed back)."""
    old = app.conf.broker_url

    def reset():
        # kombu keeps process-wide pools keyed by connection: closing only the app's pool would leave a
        # closed pool behind for the real broker URL, and every later send in this process would fail.
        kombu_pools.reset()
        app._pool = None
        app.amqp._producer_pool = None

    app.conf.broker_url = url
    reset()
    try:
        yield
    finally:
        app.conf.broker_url = old
        reset()


@pytest.fixture
def private_queue(settings):
    name = f"test-resend-{os.getpid()}"
    settings.TRAINING = {**settings.TRAINING, "QUEUE": name, "QUEUED_RESEND_SECONDS": 60}
    client = redis.Redis.from_url(redis_py_url(settings.CELERY_BROKER_URL))
    client.delete(name)
    yield name, client
    client.delete(name)


@pytest.mark.django_db
def test_the_api_answers_503_with_a_message_while_the_broker_is_unreachable(client, staff, guideline):
    client.force_login(staff)
    with broker(DEAD_BROKER):
        response = client.post(reverse("api-training-runs"), {}, content_type="application/json")
    assert response.status_code == 503
    assert "broker (Redis) is unreachable" in response.json()["detail"]
    assert not TrainingRun.objects.exists()  # nothing queued that nobody would hear of
    page = client.post(reverse("training_start"), follow=True)
    assert page.status_code == 200  # the page path says so too, no 500


@pytest.mark.django_db(transaction=True)
def test_a_run_whose_message_was_lost_is_resent_by_the_periodic_check(private_queue):
    queue, redis_client = private_queue
    run = TrainingRun.objects.create(config={}, data_snapshot={"rating_ids": []})
    with broker(DEAD_BROKER):
        assert training._send(run.pk) is False  # Redis down at send time: logged, not raised
    run.refresh_from_db()
    assert run.status == "queued" and run.sent_at is None and redis_client.llen(queue) == 0

    # Young runs are left alone (their message may be on its way); old ones are re-sent.
    assert training.training_resend_queued() == []
    TrainingRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    training.training_check_and_start()
    run.refresh_from_db()
    assert run.sent_at is not None and redis_client.llen(queue) == 1
    assert TrainingRun.objects.count() == 1  # no second run: the queued one still holds the slot
    # sent a moment ago: not sent again until the threshold passes
    assert training.training_resend_queued() == []
    assert settings.TRAINING["QUEUED_RESEND_SECONDS"] == 60


@contextlib.contextmanager
def redis_down(settings):
    """The whole Redis gone: the broker and the cache (sessions, throttling) point at a dead port."""
    from django.core.cache import caches

    old = settings.CACHES
    settings.CACHES = {"default": {**old["default"], "LOCATION": DEAD_BROKER}}
    try:
        with broker(DEAD_BROKER):
            yield
    finally:
        settings.CACHES = old
        caches["default"].close()


@pytest.mark.django_db
def test_with_all_of_redis_down_the_api_answers_and_queuing_is_a_503(client, staff, guideline, settings):
    # DRF's throttling and the sessions read the cache before any view: with Django's own Redis backend
    # every request was a 500 while Redis was down.
    client.force_login(staff)
    with redis_down(settings):
        assert client.get("/api/queue/").status_code == 200
        response = client.post(reverse("api-training-runs"), {}, content_type="application/json")
        assert response.status_code == 503 and "unreachable" in response.json()["detail"]
        assert client.get(reverse("training_home")).status_code == 200
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_a_policy_round_is_not_queued_while_the_broker_is_unreachable(client, staff, monkeypatch):
    from labelapp.services import policy

    monkeypatch.setattr(policy, "reward_model_active", lambda: object())  # past "no active reward model"
    client.force_login(staff)
    with broker(DEAD_BROKER):
        r = client.post("/api/policy-rounds/", {"kind": "best_of_n"}, content_type="application/json")
        assert r.status_code == 503 and "unreachable" in r.json()["detail"]
        page = client.post(reverse("policy_round_start"), {"kind": "best_of_n"}, follow=True)
        assert page.status_code == 200 and b"unreachable" in page.content
    assert not TrainingRun.objects.exists()  # no queued round left holding the one-at-a-time slot


@pytest.mark.django_db(transaction=True)
def test_the_resend_hands_a_policy_round_to_the_policy_task_never_to_the_reward_models(settings):
    # The reward model's re-send had no kind filter and its task claimed any kind: a policy round
    # queued for 10 minutes (the gpu worker busy) was handed to the reward-model task and failed with
    # "Unusable training data".
    name = f"test-policy-resend-{os.getpid()}"
    settings.POLICY = {**settings.POLICY, "QUEUE": name}
    settings.TRAINING = {**settings.TRAINING, "QUEUE": name + "-rm", "QUEUED_RESEND_SECONDS": 60}
    client = redis.Redis.from_url(redis_py_url(settings.CELERY_BROKER_URL))
    client.delete(name, name + "-rm")
    try:
        run = TrainingRun.objects.create(kind="best_of_n", config={})
        TrainingRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=20))
        assert training.training_resend_queued() == [run.pk]
        assert client.llen(name) == 1 and client.llen(name + "-rm") == 0
        assert training.training_run_execute(run_id=run.pk) == "not-claimed"
        run.refresh_from_db()
        assert run.status == "queued" and run.sent_at is not None
    finally:
        client.delete(name, name + "-rm")


@pytest.mark.django_db(transaction=True)
def test_the_policy_check_resends_a_lost_policy_round_itself(settings):
    # Only the reward model's check re-sent lost messages: with its schedule disabled in the admin (no
    # automatic retraining wanted) a policy round queued while Redis was down stayed queued for good,
    # though the policy check ran every few minutes.
    name = f"test-policy-check-resend-{os.getpid()}"
    settings.POLICY = {**settings.POLICY, "QUEUE": name, "AUTO_ROUND": False}
    settings.TRAINING = {**settings.TRAINING, "QUEUED_RESEND_SECONDS": 60}
    client = redis.Redis.from_url(redis_py_url(settings.CELERY_BROKER_URL))
    client.delete(name)
    try:
        from labelapp.services import policy

        run = TrainingRun.objects.create(kind="ppo", config={})
        TrainingRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=20))
        policy.policy_check_and_start()
        run.refresh_from_db()
        assert run.sent_at is not None and client.llen(name) == 1
    finally:
        client.delete(name)


@contextlib.contextmanager
def frozen_redis():
    """A port that accepts connections and never answers: a stopped (SIGSTOP) or partitioned Redis."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    finally:
        server.close()


def test_a_broker_that_never_answers_is_unavailable_within_seconds():
    # Only the connect was bounded: the ping waited for ever, and so did the request queueing a run.
    outcome = []

    def check():
        try:
            training.broker_check()
            outcome.append("answered")
        except training.BrokerUnavailable as exc:
            outcome.append(exc)

    with frozen_redis() as url, broker(url):
        started = time.monotonic()
        worker = threading.Thread(target=check, daemon=True)
        worker.start()
        worker.join(timeout=30)
        assert outcome and isinstance(outcome[0], training.BrokerUnavailable), outcome
        assert time.monotonic() - started < 30
