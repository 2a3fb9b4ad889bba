"""Training runs when the broker (Redis) is down: a clear 503, and lost messages are re-sent.

Real components: the Celery app pointed at a port where nothing listens (connection refused, as when
Redis is down), then back at the real Redis, where the re-sent message is read from the queue's list.
"""

from __future__ import annotations

import contextlib
import os
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.urls import reverse
from django.utils import timezone
from kombu import pools as kombu_pools

from config.celery import app
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
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
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
