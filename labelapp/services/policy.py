"""Closing the loop: policy versions, PPO and best-of-n rounds, their answers back to the raters, and the
over-optimization watch.

A round is a TrainingRun of kind `ppo` (train the policy against the active reward model) or
`best_of_n` (no training: sample n answers, keep the one the reward model prefers). It has the reward
model run's reliability, with the same helpers (services/training.py): single flight per kind (a
partial unique index) and one policy round at a time (checked here), ownership by a conditional UPDATE
queued -> running, a heartbeat, requeue of runs whose worker died (the round resumes from its last PPO
update's checkpoint), bounded attempts, and the reason on the page when it fails.

After a round the new policy answers the held-out evaluation prompts (never trained on) and a few
fresh prompts. Evaluation prompts get a comparison new-vs-previous policy, fresh prompts one
new-vs-new (two samples), all at the front of the queue (`COMPARISON_PRIORITY`). Once raters judged
them, the win rate of new vs previous (with a Wilson interval) joins the round's figures: reward-model
score, KL to the reference, mean length, share of answers without EOS. `policy_warnings` flags the two
patterns of reward over-optimization (Gao et al. 2022; Singhal et al. 2023): length up more than 10%
while the win rate does not rise, and reward up while the win rate falls.

This module is the only door from labelapp to rewardtrainer's sampling and PPO (with
services/training.py for the reward model).
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.db.models.functions import Now
from django.utils import timezone

from labelapp import metrics
from labelapp.models import (
    Comparison,
    PolicyDecision,
    PolicyPair,
    PolicySample,
    PolicyVersion,
    Prompt,
    Rating,
    Response,
    RewardModelVersion,
    TrainingRun,
    prompts_awaiting_review,
)
from labelapp.services import training
from labelapp.services.gold import without_gold_copies
from labelapp.services.privacy import scrub
from labelapp.services.roles import permission_check
from labelapp.services.training import (
    BrokerUnavailable,
    _finish,
    _Heartbeat,
    _Reporter,
    _sign_of_life,
    _transient_errors,
    attempt_dir,
    broker_check,
    queue_name_check,
    reward_model_active,
    run_claim,
    run_execute_guarded,
    run_owned,
    run_still_owned,
    training_recover_stale,
)

log = logging.getLogger(__name__)

POLICY_KINDS = (TrainingRun.Kind.PPO, TrainingRun.Kind.BEST_OF_N)
MAX_PRIORITY = 2**31 - 1  # Comparison.priority is a PostgreSQL integer
LENGTH_GROWTH_LIMIT = 0.10


class PolicyError(Exception):
    """A round cannot be requested or run (no reward model, unknown kind, no prompts)."""


# --- prompts ---------------------------------------------------------------------------------------------


def _is_eval(prompt: Prompt) -> bool:
    """A fixed pseudo-random share of prompts: the split never changes as prompts are added. Decided by
    the question (`Prompt.question_hash`: case and runs of white space aside), so that PPO never trains
    on a question the watch evaluates in another spelling; by the id for a row without one. The hash's
    last digits, not the first ones the reward model's evaluation set reads (services/training.py),
    so that the two splits are independent."""
    if prompt.question_hash:
        return int(prompt.question_hash[-8:], 16) / 16**8 < settings.POLICY["EVAL_SHARE"]
    return ((prompt.pk * 2654435761) % 2**32) / 2**32 < settings.POLICY["EVAL_SHARE"]


def _usable_prompts():
    """Prompts a round may train on, answer or show: consented, not withheld, and not waiting for staff
    to review a rater's personal-data flag (the reward model's data waits too: `Rating.usable`)."""
    return (
        Prompt.objects.filter(consent=True, withheld=False)
        .exclude(pk__in=prompts_awaiting_review())
        .order_by("pk")
    )


def policy_eval_prompts() -> list[Prompt]:
    """The held-out evaluation prompts: PPO never trains on them."""
    limit = settings.POLICY["EVAL_PROMPTS"]
    out = []
    for p in _usable_prompts().iterator(chunk_size=500):
        if _is_eval(p):
            out.append(p)
            if len(out) >= limit:
                break
    return out


def policy_train_prompts() -> list[Prompt]:
    return [p for p in _usable_prompts().iterator(chunk_size=500) if not _is_eval(p)]


def policy_fresh_prompts(*, limit: int) -> list[Prompt]:
    """Training prompts no policy answered yet, newest first."""
    answered = PolicySample.objects.values("prompt_id")
    qs = _usable_prompts().exclude(pk__in=answered).order_by("-pk")
    return [p for p in qs[: limit * 10] if not _is_eval(p)][:limit]


# --- versions ------------------------------------------------------------------------------------------


def _sampling_settings(**extra) -> dict:
    p = settings.POLICY
    return {
        "temperature": p["TEMPERATURE"],
        "top_p": p["TOP_P"],
        "max_new_tokens": p["MAX_NEW_TOKENS"],
        **extra,
    }


def policy_settings_check() -> None:
    """ValueError for POLICY_* / PPO_* settings a round would fail on or, worse, run with: PPO_UPDATES=0
    published an untrained "PPO" policy and queued comparisons of it. The numbers go through
    PPOConfig's own checks (`manage.py check`, at every start: labelapp/checks.py)."""
    from rewardtrainer.config import check_numbers
    from rewardtrainer.ppo_config import PPOConfig

    p = settings.POLICY
    # the config a round requested now would store, read as _ppo_config reads it (the first round's beta)
    PPOConfig(**_ppo_numbers({**_round_settings(), "init_kl_coef": p["PPO_INIT_KL_COEF"]}))
    named = SimpleNamespace(
        POLICY_BEST_OF_N=p["BEST_OF_N"],
        POLICY_MAX_ATTEMPTS=p["MAX_ATTEMPTS"],
        POLICY_CHECK_SECONDS=p["CHECK_SECONDS"],  # 0: beat ran the check without a pause
        POLICY_AUTO_REJECT_MIN_JUDGMENTS=p["AUTO_REJECT_MIN_JUDGMENTS"],
        POLICY_EVAL_PROMPTS=p["EVAL_PROMPTS"],
        POLICY_FRESH_PROMPTS=p["FRESH_PROMPTS"],
        POLICY_EVAL_SHARE=p["EVAL_SHARE"],
        POLICY_TOP_P=p["TOP_P"],
    )
    check_numbers(
        named,
        whole=(
            "POLICY_BEST_OF_N", "POLICY_MAX_ATTEMPTS", "POLICY_CHECK_SECONDS",
            "POLICY_AUTO_REJECT_MIN_JUDGMENTS",
        ),
        counts=("POLICY_EVAL_PROMPTS", "POLICY_FRESH_PROMPTS"),
        fractions=("POLICY_EVAL_SHARE", "POLICY_TOP_P"),
    )  # fmt: skip
    if p["AUTO_MODE"] not in POLICY_KINDS:  # the beat's every round request failed on it
        raise ValueError(f"POLICY_AUTO_MODE must be 'ppo' or 'best_of_n', got {p['AUTO_MODE']!r}")
    if abs(p["COMPARISON_PRIORITY"]) > MAX_PRIORITY:  # the round's comparisons could not be stored
        raise ValueError(
            f"POLICY_COMPARISON_PRIORITY must be between -{MAX_PRIORITY} and {MAX_PRIORITY}, "
            f"got {p['COMPARISON_PRIORITY']!r}"
        )
    queue_name_check("POLICY_QUEUE", p["QUEUE"])
    if p["TOP_P"] == 0:
        raise ValueError("POLICY_TOP_P must be in (0, 1], got 0")


def _round_settings() -> dict:
    """What a round's stored config takes from the settings (policy_round_request adds the reward
    model, the parent and the starting beta)."""
    p = settings.POLICY
    return {
        "sampling": _sampling_settings(),
        "best_of_n": p["BEST_OF_N"],
        "updates": p["PPO_UPDATES"],
        "batch_size": p["PPO_BATCH_SIZE"],
        "mini_batch_size": p["PPO_MINI_BATCH_SIZE"],
        "ppo_epochs": p["PPO_EPOCHS"],
        "lr": p["PPO_LEARNING_RATE"],
        "target_kl": p["PPO_TARGET_KL"],
        "kl_horizon": p["PPO_KL_HORIZON"] or p["PPO_UPDATES"] * p["PPO_BATCH_SIZE"],
        "lora": p["PPO_LORA"],
        "checkpoint_every": p["PPO_CHECKPOINT_EVERY"],
        "device": p["DEVICE"],
        "seed": p["SEED"],
    }


def _ppo_numbers(c: dict) -> dict:
    """PPOConfig's training fields from a round's stored config."""
    from rewardtrainer.ppo_config import PPOConfig

    return {
        "updates": c["updates"],
        "batch_size": c["batch_size"],
        "mini_batch_size": c["mini_batch_size"],
        "ppo_epochs": c["ppo_epochs"],
        "lr": c["lr"],
        "temperature": c["sampling"]["temperature"],
        "max_new_tokens": c["sampling"]["max_new_tokens"],
        "init_kl_coef": c["init_kl_coef"],
        "target_kl": c["target_kl"],
        # runs requested before the setting existed resume with the horizon they began with
        "kl_horizon": c.get("kl_horizon", PPOConfig.kl_horizon),
        "lora": c["lora"],
        "checkpoint_every": c["checkpoint_every"],
        "seed": c["seed"],
    }


def policy_base() -> PolicyVersion:
    """Policy v0, the instruct model as shipped (created on first use)."""
    version, _ = PolicyVersion.objects.get_or_create(
        number=0,
        defaults={"kind": PolicyVersion.Kind.BASE, "sampling": _sampling_settings()},
    )
    return version


def policy_version_get(number: int) -> PolicyVersion | None:
    """Version `number` with what its pages show, or None. v0 always exists: asked for, it is created
    (an API client on a fresh install found no versions until someone had opened the policy page)."""
    if number == 0:
        policy_base()
    related = ("parent", "reward_model", "run", "rejected_by")
    return PolicyVersion.objects.select_related(*related).filter(number=number).first()


def _start_beta(parent: PolicyVersion) -> float:
    """Beta where the round starts: where the newest PPO round in the parent's line left it, else
    PPO_INIT_KL_COEF. The reference is v0 in every round, so the KL the controller steers accumulates
    over rounds; a round that began at PPO_INIT_KL_COEF again undid what the controller had learned."""
    node: PolicyVersion | None = parent
    while node is not None:
        if isinstance((node.metrics or {}).get("beta_end"), float):
            return node.metrics["beta_end"]
        node = node.parent
    return settings.POLICY["PPO_INIT_KL_COEF"]


def policy_next_parent() -> PolicyVersion:
    """The version the next round starts from: the newest one that is not rejected and does not
    descend from a rejected one (v0 at the latest, which cannot be rejected)."""
    versions = {v.pk: v for v in PolicyVersion.objects.only("pk", "number", "parent_id", "rejected_at")}
    for v in sorted(versions.values(), key=lambda v: -v.number):
        if _rejected_in_line(v, versions) is None:
            return v
    return policy_base()


# --- rejecting versions ------------------------------------------------------------------------------------


def _rejected_in_line(version: PolicyVersion, versions: dict | None = None) -> PolicyVersion | None:
    """`version` or the first of its ancestors that is rejected, or None. `versions` (id -> version)
    looks the parents up without a query each."""
    node: PolicyVersion | None = version
    while node is not None and node.rejected_at is None:
        node = versions.get(node.parent_id) if versions is not None else node.parent
    return node


def _rejected_in_line_locked(version: PolicyVersion) -> PolicyVersion | None:
    """`_rejected_in_line` read under row locks (in the caller's transaction): a decision on any of
    these versions waits until the caller commits, or the caller sees it."""
    node_id = version.pk
    while node_id is not None:
        node = PolicyVersion.objects.select_for_update().get(pk=node_id)
        if node.rejected_at is not None:
            return node
        node_id = node.parent_id
    return None


def _rejected_meanwhile(rejected: PolicyVersion, parent: PolicyVersion) -> str:
    return (
        f"v{rejected.number} was rejected after this round was queued, and the round starts from "
        f"v{parent.number}: nothing was recorded; start a new round (it starts from "
        f"v{policy_next_parent().number})"
    )


MAX_REASON_CHARS = 2000


def _clean_reason(reason: str, what: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise PolicyError(f"Say why the version is {what}: the reason is recorded.")
    if "\x00" in reason:
        raise PolicyError("The reason must be plain text: it holds a NUL character.")
    if len(reason) > MAX_REASON_CHARS:
        raise PolicyError(f"The reason is {len(reason)} characters long; at most {MAX_REASON_CHARS}.")
    return reason


def _record_decision(version: PolicyVersion, action: str, reason: str, by, *, automatic: bool = False):
    """Change the rejection in force and record the decision, under a row lock on the version, so that
    two decisions at once apply one after the other and are recorded in that order. PolicyError (and
    nothing written) when the decision does not apply to the version as it is now."""
    reject = action == PolicyDecision.Action.REJECT
    with transaction.atomic():
        locked = PolicyVersion.objects.select_for_update().get(pk=version.pk)
        if reject and locked.rejected_at is not None:
            raise PolicyError(f"v{locked.number} was already rejected: {locked.rejected_reason}")
        if not reject and locked.rejected_at is None:
            raise PolicyError(f"v{locked.number} is not rejected: there is nothing to reinstate.")
        if automatic and locked.decisions.filter(action=PolicyDecision.Action.REINSTATE).exists():
            raise PolicyError(f"v{locked.number} was reinstated by staff: the watch leaves it.")
        now = timezone.now()
        locked.rejected_at, locked.rejected_reason, locked.rejected_by = (
            (now, reason, by) if reject else (None, "", None)
        )
        locked.save(update_fields=["rejected_at", "rejected_reason", "rejected_by"])
        PolicyDecision.objects.create(
            version=locked, action=action, reason=reason, by=by, automatic=automatic, at=now
        )
    version.refresh_from_db()
    log.info("policy v%s %s by %s: %s", version.number, action, "the watch" if automatic else by, reason)
    return version


def policy_reject(*, version: PolicyVersion, reason: str, by=None, automatic: bool = False) -> PolicyVersion:
    """Reject `version` with a reason (recorded): later rounds start from an earlier version (see
    `policy_next_parent`). `automatic`: the watch decided (it leaves versions staff reinstated).
    PolicyError for v0, an empty or unstorable reason, or a second rejection; NotPermitted when `by`
    may not decide on policy versions (None: the watch)."""
    permission_check(by, "policy_decide")
    if version.kind == PolicyVersion.Kind.BASE:
        raise PolicyError("v0, the model as shipped, cannot be rejected: every round can fall back to it.")
    reason = _clean_reason(reason, "rejected")
    return _record_decision(version, PolicyDecision.Action.REJECT, reason, by, automatic=automatic)


def policy_reinstate(*, version: PolicyVersion, reason: str, by) -> PolicyVersion:
    """Lift the rejection of `version` (staff only, with a reason; both decisions stay recorded): rounds
    may start from it again (unless a version it is built on is still rejected), and the watch does not
    reject it a second time, since a person has looked at its evidence. PolicyError when it is not
    rejected or the reason is empty or unstorable; NotPermitted when `by` may not."""
    permission_check(by, "policy_decide")
    reason = _clean_reason(reason, "reinstated")
    return _record_decision(version, PolicyDecision.Action.REINSTATE, reason, by)


def policy_auto_reject() -> list[PolicyVersion]:
    """The watch acting on its own, before a round picks its parent: while the version the round would
    start from was judged worse than its own parent by raters at equal length (the 95% interval of
    its length-controlled win rate lies below one half, on at least
    POLICY["AUTO_REJECT_MIN_JUDGMENTS"] judged comparisons), reject it and look at the next candidate. Only
    candidates are tested, not every version at every request: fewer looks, fewer false rejections.
    A version staff reinstated is not rejected again by the watch."""
    minimum = settings.POLICY["AUTO_REJECT_MIN_JUDGMENTS"]
    rejected: list[PolicyVersion] = []
    while (candidate := policy_next_parent()).parent_id is not None:
        win = policy_win_rate(version=candidate)
        if win is None or win["n"] < minimum or win["lc_hi"] is None or win["lc_hi"] >= 0.5:
            break
        reason = (
            f"Automatic: raters prefer v{candidate.parent.number} at equal length "
            f"(length-controlled win rate {win['lc_win_rate']:.2f}, 95% interval "
            f"{win['lc_lo']:.2f}-{win['lc_hi']:.2f}, {win['n']} judged comparisons)."
        )
        try:
            rejected.append(policy_reject(version=candidate, reason=reason, automatic=True))
        except PolicyError:  # rejected meanwhile (look at the next candidate), or reinstated by staff
            candidate.refresh_from_db()
            if candidate.rejected_at is None:
                break
    return rejected


def policy_weights_version(version: PolicyVersion) -> PolicyVersion:
    """The version whose weights `version` samples with: itself, or for a best-of-n version (no training)
    the nearest ancestor that is not one (best-of-n's KL is to those weights)."""
    while version.kind == PolicyVersion.Kind.BEST_OF_N and version.parent_id:
        version = version.parent
    return version


def policy_weights_path(version: PolicyVersion) -> str:
    """The folder (or name) whose weights a version samples with: best-of-n versions use their parent's.
    PolicyError when a trained version's folder is gone: loading it failed with transformers' "Repo id
    must be in the form..." about a path, naming neither the version nor what was missing."""
    asked, version = version, policy_weights_version(version)
    if version.artifact_path and not Path(version.artifact_path).exists():
        via = f", whose weights v{asked.number} samples with," if asked.pk != version.pk else ""
        raise PolicyError(
            f"policy v{version.number}{via} has lost its weights: the folder {version.artifact_path} is "
            "missing. Restore it, or reject the version on its page so that rounds start from another."
        )
    from rewardtrainer.config import missing_local_model

    if not version.artifact_path and missing_local_model(settings.POLICY["MODEL"]):
        raise PolicyError(
            f"policy v{version.number} is the POLICY_MODEL setting, {settings.POLICY['MODEL']}, which does "
            "not exist: set it to a transformers folder, a .gguf file or a model name (empty: the shipped "
            "SmolLM2-135M-Instruct)."
        )
    return version.artifact_path or settings.POLICY["MODEL"]


# --- requesting rounds -------------------------------------------------------------------------------------


def policy_round_request(
    *, kind: str, trigger: str, requested_by=None, enqueue: bool = True
) -> TrainingRun | None:
    """Queue a PPO or best-of-n round against the active reward model.

    Returns None when a policy round is already queued or running (one at a time: both kinds write the
    next policy version). Raises PolicyError when the round cannot be run at all, NotPermitted when
    `requested_by` may not start rounds (None: the schedule or a command).
    """
    permission_check(requested_by, "training_request")
    if kind not in POLICY_KINDS:
        raise PolicyError(f"unknown round kind {kind[:50]!r}: use 'ppo' or 'best_of_n'")
    rm = reward_model_active()
    if rm is None:
        raise PolicyError("no active reward model: train and activate one first (/training/)")
    if TrainingRun.objects.filter(kind__in=POLICY_KINDS, status__in=TrainingRun.ACTIVE).exists():
        return None
    if enqueue:
        broker_check()  # BrokerUnavailable: nothing queued, the caller says so (503 in the API)
    p = settings.POLICY
    if p["AUTO_REJECT"]:
        policy_auto_reject()
    parent = policy_next_parent()
    config = {
        "reward_model_id": rm.pk,
        "reward_model_number": rm.number,
        "parent_id": parent.pk,
        "parent_number": parent.number,
        "init_kl_coef": _start_beta(parent),
        **_round_settings(),
    }
    try:
        with transaction.atomic():
            run = TrainingRun.objects.create(
                kind=kind,
                trigger=trigger,
                requested_by=requested_by,
                max_attempts=p["MAX_ATTEMPTS"],
                config=config,
            )
    except IntegrityError:
        return None  # another request won the single-flight slot at the same moment
    if enqueue:
        _enqueue(run.pk)
    return run


def _enqueue(run_id: int) -> None:
    # The reward model's send: it records `sent_at`, logs a broker error instead of raising it, and the
    # periodic re-send (training_resend_queued) then finds a round whose message was lost.
    training._enqueue(run_id)


def policy_recover_stale(*, worker: str | None = None) -> list[int]:
    """Requeue policy rounds whose worker died (the reward model's rule, its helper)."""
    return training_recover_stale(worker=worker, kinds=POLICY_KINDS, enqueue=_enqueue)


def policy_check_and_start() -> TrainingRun | None:
    """Beat: recover dead rounds, re-send lost messages of queued ones (the reward model's check does
    too, but its schedule may be off); start one when the active reward model has no policy trained
    on it yet."""
    policy_recover_stale()
    training.training_resend_queued(kinds=POLICY_KINDS)
    if not settings.POLICY["AUTO_ROUND"]:
        return None
    rm = reward_model_active()
    if rm is None or PolicyVersion.objects.filter(reward_model=rm).exists():
        return None
    tried = TrainingRun.objects.filter(kind__in=POLICY_KINDS, config__reward_model_id=rm.pk)
    if tried.exists():  # a round on this reward model ran (maybe failed): staff decide, not the beat
        return None
    try:
        return policy_round_request(kind=settings.POLICY["AUTO_MODE"], trigger="beat")
    except BrokerUnavailable as exc:
        log.warning("policy check: %s", exc)  # the next beat tries again
        return None


# --- executing rounds --------------------------------------------------------------------------------------


def policy_run_execute(*, run_id: int, worker: str = "", task_id: str = "") -> str:
    """Claim and execute a queued policy round. Returns the final status, or 'not-claimed' for a no-op."""
    run = run_claim(run_id=run_id, worker=worker, kinds=POLICY_KINDS, task_id=task_id)
    if run is None:
        log.info("policy round %s not claimed (already taken or finished)", run_id)
        return "not-claimed"
    return run_execute_guarded(
        run, _execute_with_heartbeat, label="policy round", expected_errors=(PolicyError,)
    )


def _execute_with_heartbeat(run: TrainingRun) -> str:
    with _Heartbeat(run):
        return _execute(run)


@dataclass
class _Answer:
    """One generated answer, ready to be stored."""

    text: str
    num_tokens: int
    finished: bool
    reward: float | None = None
    kl: float | None = None
    sample: PolicySample | None = None  # set when the answer is already stored
    # stored as the sample's reward when it differs from `reward`: the score on the reward model of the
    # round that made the version (a parent's answer made now is scored by this round's for figures)
    own_reward: float | None = None


def _load_scorer(rm: RewardModelVersion, device: str | None):
    from rewardtrainer.sampling import RewardScorer

    if not Path(rm.artifact_path).is_dir():
        raise PolicyError(f"reward model v{rm.number}: its folder {rm.artifact_path} is missing")
    try:
        return RewardScorer.from_pretrained(rm.artifact_path, device=device or None)
    except Exception as exc:  # noqa: BLE001 (a truncated file, bad JSON: say which model, not only how)
        # out of memory, or a transient error (a network file system): not the files' fault, not final
        if isinstance(exc, (MemoryError, *_transient_errors())) or type(exc).__name__ == "OutOfMemoryError":
            raise
        raise PolicyError(
            f"reward model v{rm.number}: its files in {rm.artifact_path} cannot be loaded "
            f"({type(exc).__name__}: {exc}); activate another version or train a new one"
        ) from exc


def _device(name: str | None) -> str:
    """The device to load models on: the setting, else CUDA / MPS / CPU, whichever is there."""
    from rewardtrainer.devices import pick_device

    try:
        return str(pick_device(name or None)[0])
    except (ValueError, RuntimeError) as exc:  # unknown, or not on this machine: said, not a traceback
        raise PolicyError(f"device: {exc}") from None


def _sampling_params(config: dict):
    from rewardtrainer.sampling import SamplingParams

    s = config["sampling"]
    return SamplingParams(temperature=s["temperature"], top_p=s["top_p"], max_new_tokens=s["max_new_tokens"])


def _round_seed(run: TrainingRun) -> int:
    """A round's seed: the POLICY_SEED setting it was queued with, and the run, so no two rounds draw
    alike."""
    return run.config["seed"] * 1000 + run.pk


def _ppo_config(run: TrainingRun, parent: PolicyVersion):
    from rewardtrainer.ppo import PPOConfig
    from rewardtrainer.sampling import resolve_policy_path

    c = run.config
    numbers = _ppo_numbers(c)
    # a round queued before minibatches were checked ran a larger one as the whole batch
    numbers["mini_batch_size"] = min(c["mini_batch_size"], c["batch_size"])
    # the round's own seed, as its evaluation's (_Round.seed): with the setting alone, update u of every
    # round drew the same prompts and the same sampling noise; a resumed attempt keeps its run's
    numbers["seed"] = _round_seed(run)
    return PPOConfig(
        policy=resolve_policy_path(policy_weights_path(parent)),
        # The KL reference is always v0, the instruct model as shipped (InstructGPT: KL to the SFT model),
        # not the round's starting point: KL to the reference then measures the whole drift.
        reference=resolve_policy_path(policy_weights_path(policy_base())),
        device=c["device"] or None,
        **numbers,
    )


def _answers(samples, scores=None, kls=None) -> list[_Answer]:
    scores = scores if scores is not None else [None] * len(samples)
    kls = kls if kls is not None else [None] * len(samples)
    return [
        _Answer(
            s.text, s.num_tokens, s.finished, None if r is None else float(r), None if k is None else float(k)
        )
        for s, r, k in zip(samples, scores, kls, strict=True)
    ]


@dataclass
class _Round:
    """What every step of a round reads: the run, where it starts, what scores it, what it answers."""

    run: TrainingRun
    parent: PolicyVersion
    rm: RewardModelVersion
    scorer: object  # rewardtrainer.sampling.RewardScorer
    params: object  # rewardtrainer.sampling.SamplingParams
    eval_prompts: list[Prompt]
    fresh: list[Prompt]
    device: str
    out_dir: Path
    seed: int
    reporter: _Reporter  # PPO's progress; its should_stop() also ends a generation when staff cancel

    def parent_generator(self):
        from rewardtrainer.sampling import HFGenerator, load_policy

        model, tok = load_policy(policy_weights_path(self.parent), device=self.device)
        return HFGenerator(model, tok, should_stop=self.reporter.should_stop)


@dataclass
class _Outcome:
    """What a PPO or best-of-n step produced, before the parent's answers and the version are recorded."""

    new_eval: list[_Answer]
    fresh: list[_Answer]
    parent_gen: object  # rewardtrainer.sampling.HFGenerator of the parent policy
    watch: dict
    extra: dict
    history: list[dict]
    artifact: str


def _execute(run: TrainingRun) -> str:
    """One round: check what it needs, run PPO or best-of-n, answer with the parent too, record it."""
    from rewardtrainer.sampling import GenerationStopped

    r = _prepare_round(run)
    try:
        outcome = _ppo_step(r) if run.kind == TrainingRun.Kind.PPO else _best_of_n_step(r)
        if outcome is None:
            _finish(run, TrainingRun.Status.CANCELLED, error="Cancelled; no version was recorded.")
            return TrainingRun.Status.CANCELLED
        _progress(run, 0.92, "previous policy on the evaluation prompts")
        previous = _previous_answers(r, outcome.parent_gen)
    except GenerationStopped:
        # a best-of-n round, or the answers after PPO, are all generation: a cancel ends them mid-way
        error = "Cancelled while generating; no version was recorded."
        _finish(run, TrainingRun.Status.CANCELLED, error=error)
        return TrainingRun.Status.CANCELLED
    return _commit_round(r, outcome, previous)


def _prepare_round(run: TrainingRun) -> _Round:
    """The round's inputs, or PolicyError with the reason its page shows."""
    c = run.config
    rm = RewardModelVersion.objects.filter(pk=c["reward_model_id"]).first()
    if rm is None:
        raise PolicyError("the reward model this round was requested for no longer exists")
    if not rm.is_active:
        raise PolicyError(_not_active(rm))
    parent = PolicyVersion.objects.get(pk=c["parent_id"])
    rejected = _rejected_in_line(parent)
    if rejected is not None:
        raise PolicyError(_rejected_meanwhile(rejected, parent))
    eval_prompts = policy_eval_prompts()
    if not eval_prompts:
        raise PolicyError("no held-out evaluation prompts: import consented prompts first")
    device = _device(c["device"])
    out_dir = Path(settings.ARTIFACTS_DIR) / f"policy-run-{run.pk}"
    out_dir.mkdir(parents=True, exist_ok=True)
    TrainingRun.objects.filter(pk=run.pk).update(artifact_path=str(out_dir))
    return _Round(
        run=run,
        parent=parent,
        rm=rm,
        scorer=_load_scorer(rm, device),
        params=_sampling_params(c),
        eval_prompts=eval_prompts,
        fresh=policy_fresh_prompts(limit=settings.POLICY["FRESH_PROMPTS"]),
        device=device,
        out_dir=out_dir,
        seed=_round_seed(run),
        reporter=_Reporter(run, "ppo", (0.0, 0.8)),
    )


def _round_train_prompts(run: TrainingRun) -> list[str]:
    """The texts PPO trains on: the training prompts as the round's first attempt found them (ids kept
    in `data_snapshot`), less those that lost their consent or were withheld or deleted since.

    Update u draws its prompts from (seed, u) and this list, so a resumed attempt must see the list
    the checkpointed updates saw: prompts ingested while it waited would change every later draw."""
    ids = (run.data_snapshot or {}).get("train_prompt_ids")
    if ids is None:
        ids = [p.pk for p in policy_train_prompts()]
        run_owned(run).update(data_snapshot={**(run.data_snapshot or {}), "train_prompt_ids": ids})
    keep = set(ids)  # filtered here, not in an IN list that grows with the prompt pool
    return [
        text
        for pk, text in _usable_prompts().values_list("pk", "text").iterator(chunk_size=2000)
        if pk in keep
    ]


def _ppo_step(r: _Round) -> _Outcome | None:
    """Train the policy against the reward model (resuming from the last checkpoint), then answer the
    evaluation prompts (with their KL to v0) and two answers per fresh prompt. None: cancelled."""
    from rewardtrainer.ppo import sequence_kl, train_ppo, watch_metrics
    from rewardtrainer.sampling import HFGenerator

    train_prompts = _round_train_prompts(r.run)
    if not train_prompts:
        raise PolicyError("no training prompts outside the evaluation set")
    # until the first update's row comes back (minutes on a CPU) the page showed 0% and no phase
    _progress(r.run, 0.01, "PPO: loading the policy, reward normalization on reference samples, first update")
    result = train_ppo(
        train_prompts,
        r.scorer,
        _ppo_config(r.run, r.parent),
        r.out_dir,
        progress=r.reporter,
        should_stop=r.reporter.should_stop,
        resume=True,
        final_dir=attempt_dir(r.out_dir, r.run),
    )
    if result.stopped:
        return None
    _progress(r.run, 0.85, "evaluation")
    gen = HFGenerator(result.policy, result.tokenizer, should_stop=r.reporter.should_stop)
    eval_texts = [p.text for p in r.eval_prompts]
    new_eval = gen.generate(eval_texts, r.params, seed=r.seed)
    kls = sequence_kl(result.policy, result.reference, new_eval, gen.pad_id, r.params.temperature)
    new_eval_answers = _answers(new_eval, r.scorer(eval_texts, [s.text for s in new_eval]), kls)
    fresh = gen.generate([p.text for p in r.fresh for _ in range(2)], r.params, seed=r.seed + 1)
    fresh_answers = _answers(fresh, r.scorer([s.prompt for s in fresh], [s.text for s in fresh]))
    return _Outcome(
        new_eval=new_eval_answers,
        fresh=fresh_answers,
        parent_gen=r.parent_generator(),
        watch=watch_metrics(new_eval, [a.reward for a in new_eval_answers], kls),
        extra={
            "resumed_from_update": result.resumed_from_update or 0,
            "ppo_seconds": round(result.seconds, 1),
            "beta_end": float(result.kl_coef),  # where the next round in this line starts
        },
        history=result.history,
        artifact=result.policy_dir,
    )


def _parent_kl_to_reference(r: _Round, parent_gen, samples) -> list[float]:
    """Per answer sampled with the parent's weights: their KL to v0's (the sum over its tokens of
    log parent - log v0, as PPO's watch measures it); zeros when the parent samples with v0's weights."""
    from rewardtrainer.ppo import sequence_kl
    from rewardtrainer.sampling import load_policy, resolve_policy_path

    reference = policy_weights_path(policy_base())
    if resolve_policy_path(policy_weights_path(r.parent)) == resolve_policy_path(reference):
        return [0.0] * len(samples)
    ref_model, _ = load_policy(reference, device=r.device)
    return sequence_kl(parent_gen.model, ref_model, samples, parent_gen.pad_id, r.params.temperature)


def _best_of_n_step(r: _Round) -> _Outcome:
    """No training: the parent samples n answers per prompt and the reward model keeps its favourite."""
    from rewardtrainer.ppo import watch_metrics
    from rewardtrainer.sampling import best_of_n

    n = int(r.run.config["best_of_n"])
    _progress(r.run, 0.1, "best-of-n sampling")
    parent_gen = r.parent_generator()
    eval_texts = [p.text for p in r.eval_prompts]
    bon = best_of_n(parent_gen, r.scorer, eval_texts, n=n, params=r.params, seed=r.seed)
    fresh_texts = [p.text for p in r.fresh for _ in range(2)]
    bon_fresh = best_of_n(parent_gen, r.scorer, fresh_texts, n=n, params=r.params, seed=r.seed + 1)
    # KL(best-of-n || v0) = KL(best-of-n || parent) + E_kept[log parent - log v0]: the analytic term alone
    # is the KL to the parent, and the watch's KL is to the reference for every kind of round.
    kls = [bon.kl_bon + d for d in _parent_kl_to_reference(r, parent_gen, bon.best)]
    return _Outcome(
        new_eval=_answers(bon.best, bon.best_scores, kls),
        fresh=_answers(bon_fresh.best, bon_fresh.best_scores),
        parent_gen=parent_gen,
        watch=watch_metrics(bon.best, bon.best_scores, kls),
        extra={k: v for k, v in bon.summary().items() if k in ("reward_gain", "reward_first", "kl_bon")},
        history=[],
        artifact="",
    )


def _round_metrics(r: _Round, outcome: _Outcome, previous: dict[int, _Answer]) -> dict:
    """The watch's figures for the new policy, the parent's beside them (scored by this round's reward
    model), and the last PPO update's entropy, beta, explained variance and raw reward."""
    prev = [previous[p.pk] for p in r.eval_prompts]
    watch = dict(outcome.watch)
    watch["parent"] = {
        "number": r.parent.number,
        "rm_score": sum(a.reward for a in prev) / len(prev),
        "mean_length": sum(a.num_tokens for a in prev) / len(prev),
        "no_eos_share": sum(not a.finished for a in prev) / len(prev),
        # per evaluation prompt, so the sample viewer shows both answers on this round's reward model
        "rewards": {str(p.pk): a.reward for p, a in zip(r.eval_prompts, prev, strict=True)},
    }
    metrics_ = {**watch, **outcome.extra, "reward_model": r.rm.number}
    if outcome.history:
        last = outcome.history[-1]
        metrics_ |= {k: last[k] for k in ("entropy", "beta", "explained_variance", "reward_raw") if k in last}
    return metrics_


def _not_active(rm: RewardModelVersion) -> str:
    active = RewardModelVersion.objects.filter(is_active=True).values_list("number", flat=True).first()
    now = f"v{active} is" if active is not None else "none is"
    return (
        f"reward model v{rm.number}, which this round was requested for, is no longer the active one "
        f"({now}); a round optimizes against the active reward model only: start a new round"
    )


def _commit_round(r: _Round, outcome: _Outcome, previous: dict[int, _Answer]) -> str:
    """Record the version, its answers and their comparisons, and the run's success, in one transaction
    (unless the run was cancelled or taken away meanwhile)."""
    round_metrics = _round_metrics(r, outcome, previous)
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=r.run.pk)
        if not run_still_owned(r.run, run):
            return run.status
        # asked to stop, or the reward model changed, while the round ran: record nothing, queue nothing
        if run.cancel_requested:
            _finish(r.run, TrainingRun.Status.CANCELLED, error="Cancelled; no version was recorded.")
            return TrainingRun.Status.CANCELLED
        if not RewardModelVersion.objects.filter(pk=r.rm.pk, is_active=True).exists():
            _finish(r.run, TrainingRun.Status.FAILED, error=_not_active(r.rm))
            return TrainingRun.Status.FAILED
        rejected = _rejected_in_line_locked(r.parent)
        if rejected is not None:  # staff rejected the starting point (or one below it) while it ran
            _finish(r.run, TrainingRun.Status.FAILED, error=_rejected_meanwhile(rejected, r.parent))
            return TrainingRun.Status.FAILED
        version = _record_version(
            run,
            r.parent,
            r.rm,
            outcome.artifact,
            round_metrics,
            outcome.history,
            r.eval_prompts,
            outcome.new_eval,
            r.fresh,
            outcome.fresh,
            previous,
        )
        run.status = TrainingRun.Status.SUCCEEDED
        run.progress = 1.0
        run.finished_at = timezone.now()
        run.metrics = {
            **{k: v for k, v in round_metrics.items() if not isinstance(v, dict)},
            "policy_version": version.number,
        }
        run.metrics_history = outcome.history
        run.error = ""
        run.save(update_fields=["status", "progress", "finished_at", "metrics", "metrics_history", "error"])
    return TrainingRun.Status.SUCCEEDED


def _progress(run: TrainingRun, progress: float, phase: str) -> None:
    _sign_of_life(run)  # a phase ended: the stall watch's sign of life too
    run_owned(run).update(progress=progress, progress_detail={"phase": phase}, heartbeat_at=Now())


def _previous_answers(r: _Round, parent_gen) -> dict[int, _Answer]:
    """The parent's evaluation answers: stored ones, and new ones (stored with the parent) where missing.

    Every one is (re)scored with this round's reward model, so the two policies' scores compare. A
    best-of-n parent picks its missing answers with its own reward model, as its round did: picked by
    this round's, they were the new model's favourites, not the parent's, and flattered the parent.
    """
    from rewardtrainer.sampling import best_of_n

    parent, prompts, params, scorer, seed = r.parent, r.eval_prompts, r.params, r.scorer, r.seed + 2
    have = {
        s.prompt_id: s
        for s in PolicySample.objects.filter(policy=parent, split="eval", index=0).select_related("response")
    }
    missing = [p for p in prompts if p.pk not in have]
    created: dict[int, _Answer] = {}
    if missing:
        texts = [p.text for p in missing]
        own: list | None = None
        if parent.kind == PolicyVersion.Kind.BEST_OF_N:
            n = int(parent.sampling.get("n", 4))
            bon = best_of_n(parent_gen, _parent_picker(r), texts, n=n, params=params, seed=seed)
            samples, own = bon.best, list(bon.best_scores)
        else:
            samples = parent_gen.generate(texts, params, seed=seed)
        scores = scorer(texts, [s.text for s in samples]).tolist()
        answers = _answers(samples, scores)
        if own is not None:
            for a, mine in zip(answers, own, strict=True):
                a.own_reward = float(mine)
        created = {p.pk: a for p, a in zip(missing, answers, strict=True)}
    stored = [p for p in prompts if p.pk in have]
    rescored = (
        scorer([p.text for p in stored], [have[p.pk].response.text for p in stored]).tolist()
        if stored
        else []
    )
    out: dict[int, _Answer] = {}
    for p, r in zip(stored, rescored, strict=True):
        s = have[p.pk]
        out[p.pk] = _Answer(s.response.text, s.num_tokens, s.finished, float(r), s.kl, sample=s)
    out.update(created)
    return out


def _parent_picker(r: _Round):
    """The reward model a best-of-n parent picked its answers with (this round's when it is the same,
    or when the parent's can no longer be loaded: then logged, and the parent is flattered a little)."""
    parent_rm = r.parent.reward_model
    if parent_rm is None or parent_rm.pk == r.rm.pk:
        return r.scorer
    try:
        return _load_scorer(parent_rm, r.device)
    except (OSError, ValueError, PolicyError) as exc:
        log.warning("v%s's reward model v%s cannot be loaded (%s): its missing answers are picked by "
                    "this round's", r.parent.number, parent_rm.number, exc)  # fmt: skip
        return r.scorer


def _store_answer(
    version: PolicyVersion, prompt: Prompt, answer: _Answer, split: str, index: int
) -> PolicySample:
    # A model can write (or recall) an address or a phone number: its answers are scrubbed as every
    # ingested answer is, before raters see them or an export carries them. The reward figures stay
    # those of the text as generated.
    # PostgreSQL refuses NUL in text, and a byte-level tokenizer can emit it: one would fail the round.
    scrubbed = scrub(answer.text.replace("\x00", "\ufffd"))
    response = Response.objects.create(
        prompt=prompt,
        text=scrubbed.text,
        source_model=version.source_model,
        source_model_version=str(version.number),
        token_count=answer.num_tokens,
        pii_found=scrubbed.found,
    )
    return PolicySample.objects.create(
        policy=version,
        prompt=prompt,
        response=response,
        split=split,
        index=index,
        reward=answer.own_reward if answer.own_reward is not None else answer.reward,
        num_tokens=answer.num_tokens,
        finished=answer.finished,
        kl=answer.kl,
    )


def _pair(
    prompt, new: PolicySample, old: PolicySample, kind: str, old_version, rng: random.Random, priority=None
) -> int:
    """A comparison of two stored answers (A/B order random); 0 when they are identical, else 1."""
    if new.response.text.strip() == old.response.text.strip():
        return 0  # nothing to judge between two identical answers
    new_is_a = rng.random() < 0.5
    a, b = (new.response, old.response) if new_is_a else (old.response, new.response)
    comparison = Comparison.objects.create(
        prompt=prompt,
        response_a=a,
        response_b=b,
        priority=settings.POLICY["COMPARISON_PRIORITY"] if priority is None else priority,
        required_ratings=settings.LABEL["DEFAULT_REQUIRED_RATINGS"],
    )
    PolicyPair.objects.create(
        comparison=comparison, kind=kind, new=new.policy, old=old_version, new_is_a=new_is_a
    )
    return 1


def _lock_round_prompts(prompts: list[Prompt]) -> tuple[set[int], set[int]]:
    """(ids of the round's prompts that still exist, ids of those that may be served to raters), read
    under a row lock held to the end of the recording transaction.

    The round picked its prompts when it started. One deleted since (retention) gets no answer stored:
    a row pointing at it failed the whole round at commit; nor does one erased since (its answers
    would be new words beside a prompt whose words were removed on request, out of a later erasure's
    reach). One whose consent was withdrawn (or that staff withheld) gets its answers stored for the
    watch's figures but no comparison. The lock makes a deletion, an erasure or a consent change wait
    for this commit (and then take away what it recorded) instead of slipping in between this read and
    the commit."""
    rows = (
        Prompt.objects.select_for_update(no_key=True)
        .filter(pk__in=sorted({p.pk for p in prompts}))
        .order_by("pk")
        .values_list("pk", "consent", "withheld", "erased_at")
    )
    existing, servable = set(), set()
    for pk, consent, withheld, erased_at in rows:
        if erased_at is not None:
            continue
        existing.add(pk)
        if consent and not withheld:
            servable.add(pk)
    return existing, servable


def _record_version(
    run, parent, rm, artifact, round_metrics, history, eval_prompts, new_eval, fresh, fresh_answers, previous
) -> PolicyVersion:
    number = (PolicyVersion.objects.aggregate(m=Max("number"))["m"] or 0) + 1
    sampling = dict(run.config["sampling"])
    if run.kind == TrainingRun.Kind.BEST_OF_N:
        sampling["n"] = int(run.config["best_of_n"])
    version = PolicyVersion.objects.create(
        number=number,
        kind=PolicyVersion.Kind.PPO if run.kind == TrainingRun.Kind.PPO else PolicyVersion.Kind.BEST_OF_N,
        parent=parent,
        reward_model=rm,
        run=run,
        artifact_path=artifact or "",
        sampling=sampling,
        metrics=round_metrics,
        history=history,
    )
    rng = random.Random(run.pk)
    existing, servable = _lock_round_prompts([*eval_prompts, *fresh])
    for prompt, answer in zip(eval_prompts, new_eval, strict=True):
        if prompt.pk not in existing:
            continue
        new = _store_answer(version, prompt, answer, PolicySample.Split.EVAL, 0)
        prev = previous[prompt.pk]
        old = prev.sample or _store_answer(parent, prompt, prev, PolicySample.Split.EVAL, 0)
        if prompt.pk in servable:
            _pair(prompt, new, old, PolicyPair.Kind.VS_PREVIOUS, parent, rng)
    for k, prompt in enumerate(fresh):
        if prompt.pk not in existing:
            continue
        first = _store_answer(version, prompt, fresh_answers[2 * k], PolicySample.Split.FRESH, 0)
        second = _store_answer(version, prompt, fresh_answers[2 * k + 1], PolicySample.Split.FRESH, 1)
        if prompt.pk in servable:
            _pair(prompt, first, second, PolicyPair.Kind.VS_SELF, version, rng)
    return version


# --- the over-optimization watch ---------------------------------------------------------------------------


SAME_POLICY_PAIRS_USED = 5000  # the latest new-vs-new judgments that pin the raters' length pull


def _won(preference: int, new_is_a: bool) -> float:
    """1 if the new policy's answer won, 0.5 on a tie, 0 if it lost."""
    a = float(metrics.a_won(preference))
    return a if new_is_a else 1.0 - a


def _words(new_is_a: bool, words_a: int, words_b: int) -> tuple[int, int]:
    return (words_a, words_b) if new_is_a else (words_b, words_a)


def _judgments():
    """The ratings the watch counts: those that may train or be exported (`Rating.objects.usable()`:
    not excluded in review, not flagged broken, on a prompt whose consent stands, not withheld and
    not awaiting a personal-data review). A withdrawal acts at once here too: the win rate (and the
    automatic rejection it drives) counted judgments of prompts the sample viewer no longer shows."""
    return Rating.objects.usable()


def policy_same_pairs() -> tuple[list[float], list[float]]:
    """New-vs-new comparisons (two answers of the same policy), from their latest
    SAME_POLICY_PAIRS_USED judgments: (A won, log(words_A / words_B)) per comparison, A's wins the mean
    of its judgments (`_per_comparison`). They measure how much these raters pull toward the longer
    answer."""
    rows = list(
        _judgments()
        .filter(comparison__policy_pair__kind=PolicyPair.Kind.VS_SELF)
        .order_by("-pk")
        .values_list(
            "comparison_id",
            "preference",
            "comparison__response_a__word_count",
            "comparison__response_b__word_count",
        )[:SAME_POLICY_PAIRS_USED]
    )
    won, words, _ = _per_comparison([(c, float(metrics.a_won(pref)), (a, b)) for c, pref, a, b in rows])
    ratio = metrics.log_length_ratio([b for _, b in words], [a for a, _ in words]).tolist()
    return won, ratio


def _per_comparison(judgments) -> tuple[list[float], list[tuple[int, int]], int]:
    """Judgments (comparison id, won, words) grouped by comparison: (won, words) per comparison, `won`
    the mean of its judgments, and the number of judgments. The comparison is the unit that the
    intervals count: several raters judging one pair of answers are not independent draws of the two
    policies' answers (counting each rating once made an interval sqrt(3) too narrow with three
    raters per comparison)."""
    grouped: dict[int, list] = {}
    for comparison, won, words in judgments:
        grouped.setdefault(comparison, [words, []])[1].append(won)
    per = list(grouped.values())
    return [sum(w) / len(w) for _, w in per], [words for words, _ in per], len(judgments)


LC_MIN_SAME_POLICY_PAIRS = 20  # fewer, and the length pull cannot be told from the new policy's edge


def _vs_previous_rows(versions) -> dict[int, list[tuple]]:
    """The judged new-vs-previous comparisons of `versions` in one query: per version id, rows of
    (comparison id, preference, new_is_a, words_a, words_b), one per judgment."""
    rows: dict[int, list[tuple]] = {v.pk: [] for v in versions}
    ratings = _judgments().filter(
        comparison__policy_pair__new__in=list(rows), comparison__policy_pair__kind=PolicyPair.Kind.VS_PREVIOUS
    )
    for new_id, *row in ratings.values_list(
        "comparison__policy_pair__new_id",
        "comparison_id",
        "preference",
        "comparison__policy_pair__new_is_a",
        "comparison__response_a__word_count",
        "comparison__response_b__word_count",
    ):
        rows[new_id].append(tuple(row))
    return rows


def _win_rate(rows: list[tuple], same_pairs: tuple[list[float], list[float]]) -> dict | None:
    """The raw win rate over judged comparisons (a comparison's score is the mean of its judgments,
    ties half; 95% Wilson interval with the comparisons as n) and the length-controlled one
    (`metrics.length_controlled_win_rate` on the same comparisons; None with fewer than
    LC_MIN_SAME_POLICY_PAIRS new-vs-new comparisons to measure the raters' length pull on). `wins`,
    `ties` and `losses` count judgments. None without judgments."""
    if not rows:
        return None
    judged = [(c, _won(pref, new_is_a), _words(new_is_a, wa, wb)) for c, pref, new_is_a, wa, wb in rows]
    won, lengths, judgments = _per_comparison(judged)
    each = [w for _, w, _ in judged]
    wins, ties, n = each.count(1.0), each.count(0.5), len(won)
    raw = metrics.wilson(sum(won), n)
    same_won, same_ratio = same_pairs
    fit = {"win_rate": metrics.EMPTY, "length_slope": metrics.EMPTY}
    if len(same_won) >= LC_MIN_SAME_POLICY_PAIRS:
        ratio = metrics.log_length_ratio([old for _, old in lengths], [new for new, _ in lengths])
        fit = metrics.length_controlled_win_rate(won, ratio, same_won, same_ratio)
    lc = fit["win_rate"]
    return {
        "n": n,
        "judgments": judgments,
        "wins": wins,
        "ties": ties,
        "losses": judgments - wins - ties,
        "win_rate": raw.value,
        "lo": raw.lo,
        "hi": raw.hi,
        "lc_win_rate": lc.value,
        "lc_lo": lc.lo,
        "lc_hi": lc.hi,
        "length_slope": fit["length_slope"].value,
        "same_policy_pairs": len(same_won),
    }


def policy_win_rates(versions) -> dict[int, dict | None]:
    """`policy_win_rate` for many versions with two queries in all (version id -> figures or None)."""
    same_pairs = policy_same_pairs()
    return {pk: _win_rate(rows, same_pairs) for pk, rows in _vs_previous_rows(versions).items()}


def policy_win_rate(*, version: PolicyVersion) -> dict | None:
    """Win rate of `version` against its parent from the judged new-vs-previous comparisons, or None:
    the raw rate and the length-controlled one (the raters' length pull measured on new-vs-new
    judgments, see `_win_rate`)."""
    return policy_win_rates([version])[version.pk]


def _judged_rate(win: dict | None) -> float | None:
    """The rate the watch trusts: length-controlled when there is one (raters' length pull would
    otherwise count as a win for a policy that only grew longer), else the raw rate."""
    if win is None:
        return None
    lc = win.get("lc_win_rate")
    return lc if lc is not None else win["win_rate"]


def policy_figure(value) -> float | None:
    """A stored round figure as a finite number, or None (older or hand-edited rows hold nulls,
    strings or NaN: a warning they cannot support is not given, and the page does not fail)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def policy_warnings(*, version: PolicyVersion, win: dict | None) -> list[str]:
    """The over-optimization warnings of a round (empty for v0 and when all is well)."""
    m = version.metrics or {}
    parent = _stored_dict(m.get("parent"))
    name = f"v{parent.get('number', '?')}"
    rate = _judged_rate(win)
    out: list[str] = []
    length, prev_len = policy_figure(m.get("mean_length")), policy_figure(parent.get("mean_length"))
    if length is not None and prev_len is not None:
        # from nothing to something is growth past any limit; rounded: 55 / 50 - 1 is
        # 0.10000000000000009, and exactly 10% longer is not "more than 10%"
        growth = length / prev_len - 1 if prev_len > 0 else (math.inf if length > 0 else 0.0)
        if round(growth, 9) > LENGTH_GROWTH_LIMIT and (rate is None or rate <= 0.5):
            judged = "no ratings yet" if rate is None else _rate_phrase(win, rate)
            grew = f"{growth:.0%} longer" if math.isfinite(growth) else "longer"
            out.append(
                f"Answers grew {grew} than {name} ({prev_len:.0f} -> {length:.0f} tokens) while the win "
                f"rate does not rise ({judged}): length may be buying reward."
            )
    score, prev_score = policy_figure(m.get("rm_score")), policy_figure(parent.get("rm_score"))
    if (
        rate is not None
        and score is not None
        and prev_score is not None
        and score > prev_score
        and rate < 0.5
    ):
        out.append(
            f"The reward model score rose ({prev_score:.3f} -> {score:.3f}) while raters "
            f"prefer {name} ({_rate_phrase(win, rate)}): the policy is over-optimizing "
            "the reward model (Gao et al. 2022)."
        )
    if win is not None and win["win_rate"] > 0.5 and rate is not None and rate <= 0.5:
        out.append(
            f"Raters prefer v{version.number} (win rate {win['win_rate']:.0%}) only for its length: "
            f"at equal length it wins {rate:.0%}."
        )
    no_eos = policy_figure(m.get("no_eos_share"))
    if no_eos is not None and no_eos > 0.5:
        out.append(f"{no_eos:.0%} of the answers hit the token cap without EOS.")
    return out


def _rate_phrase(win: dict, rate: float) -> str:
    """ "length-controlled win rate 37% on 12 comparisons": how much the warning rests on (one lost
    comparison warned as loudly as a hundred)."""
    name = "length-controlled win rate" if win.get("lc_win_rate") is not None else "win rate"
    n = win.get("n") or 0
    return f"{name} {rate:.0%} on {n} comparison{'s' if n != 1 else ''}"


@dataclass
class VersionRow:
    """A policy version with its win rate and warnings, for pages and the API."""

    version: PolicyVersion
    win: dict | None
    warnings: list[str]


def policy_versions_query():
    """Every policy version, newest first, with what the pages and the API read of it (v0 made if
    missing: it is always listed)."""
    policy_base()
    return (
        PolicyVersion.objects.select_related("parent", "reward_model", "run")
        .prefetch_related("decisions__by")
        .order_by("-number")
    )


def policy_version_rows(versions) -> list[VersionRow]:
    """`versions` with their win rates (two queries in all) and warnings."""
    versions = list(versions)
    wins = policy_win_rates(versions)
    return [VersionRow(v, wins[v.pk], policy_warnings(version=v, win=wins[v.pk])) for v in versions]


def policy_versions_overview(limit: int = 50) -> list[VersionRow]:
    """The newest `limit` versions as rows (the page; the API pages through all of them)."""
    return policy_version_rows(policy_versions_query()[:limit])


def policy_sample_pairs(*, version: PolicyVersion) -> list[dict]:
    """Evaluation prompts side by side: the previous policy's answer and this one's, with reward scores.

    `old_reward` is the previous answer's reward under this round's reward model (the one the new
    answer's reward is on); the previous answer's own stored `reward` is on the reward model of the
    round that made it, which may be another one. None for rounds recorded before it was kept.
    Prompts whose consent was withdrawn, that staff withheld for personal data, or that wait for the
    review of a rater's personal-data flag are left out, as everywhere raters, training and exports
    read prompts."""
    new = {
        s.prompt_id: s
        for s in version.samples.filter(
            split="eval", index=0, prompt__in=_usable_prompts().order_by()
        ).select_related("prompt", "response")
    }
    old = {}
    if version.parent_id:
        old = {
            s.prompt_id: s
            for s in PolicySample.objects.filter(
                policy_id=version.parent_id, split="eval", index=0, prompt_id__in=new
            ).select_related("response", "policy")
        }
    rescored = _stored_dict(_stored_dict(version.metrics).get("parent")).get("rewards")
    return [
        {
            "prompt": s.prompt,
            "new": s,
            "old": old.get(pid),
            "old_reward": policy_figure(_stored_dict(rescored).get(str(pid))),
        }
        for pid, s in sorted(new.items())
    ]


def _stored_dict(value) -> dict:
    """A stored figure's mapping, or an empty one where an older or hand-edited row holds another kind
    (the sample viewer failed on a parent stored as "v0")."""
    return value if isinstance(value, dict) else {}


# --- the demo queue: real model output for raters -------------------------------------------------------


def policy_sample_demo(*, limit: int = 20, device: str | None = None, seed: int = 0) -> int:
    """Policy v0 answers prompts it has not answered yet; each answer is paired with a team-written answer
    to the same prompt when there is one (else with a second v0 sample). Returns comparisons created."""
    from rewardtrainer.sampling import HFGenerator, load_policy

    device = _device(device or settings.POLICY["DEVICE"])  # a bad one is said even with nothing to do
    base = policy_base()
    done = PolicySample.objects.filter(policy=base, split=PolicySample.Split.DEMO).values("prompt_id")
    prompts = list(_usable_prompts().exclude(pk__in=done)[:limit])
    if not prompts:
        return 0
    model, tok = load_policy(policy_weights_path(base), device=device)
    gen = HFGenerator(model, tok)
    params = _sampling_params({"sampling": base.sampling or _sampling_settings()})
    samples = gen.generate([p.text for p in prompts for _ in range(2)], params, seed=seed)
    rng = random.Random(seed)
    created = 0
    with transaction.atomic():
        # Generation took minutes: a prompt deleted since failed the whole command at commit, and one
        # whose consent was withdrawn (or that staff withheld) since was put in front of raters.
        _, servable = _lock_round_prompts(prompts)
        # A second `sample_policy` started meanwhile chose the same prompts; the lock above made this
        # one wait for its commit, and what it stored stands (a duplicate failed the whole command).
        servable -= set(done.filter(prompt_id__in=servable).values_list("prompt_id", flat=True))
        for k, prompt in enumerate(prompts):
            if prompt.pk not in servable:
                continue
            first = _store_answer(base, prompt, _answers([samples[2 * k]])[0], PolicySample.Split.DEMO, 0)
            written = Response.objects.filter(prompt=prompt, policy_sample__isnull=True)  # not a model's
            team = without_gold_copies(written).first()
            if team is not None:
                new_is_a = rng.random() < 0.5
                a, b = (first.response, team) if new_is_a else (team, first.response)
                comparison = Comparison.objects.create(
                    prompt=prompt,
                    response_a=a,
                    response_b=b,
                    required_ratings=settings.LABEL["DEFAULT_REQUIRED_RATINGS"],
                )
                PolicyPair.objects.create(
                    comparison=comparison, kind=PolicyPair.Kind.VS_DEMO, new=base, new_is_a=new_is_a
                )
                created += 1
                continue
            second = _store_answer(
                base, prompt, _answers([samples[2 * k + 1]])[0], PolicySample.Split.DEMO, 1
            )
            created += _pair(prompt, first, second, PolicyPair.Kind.VS_SELF, base, rng, priority=0)
    return created
