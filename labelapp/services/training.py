"""Reward model retraining: snapshot consented ratings into pairs, run rewardtrainer, record versions.

The translation between the database and `rewardtrainer` (which knows nothing of Django) lives here.
Reliability rules (DESIGN sections 3 and 7), each backed by a test:
- single flight: at most one queued-or-running run (a partial unique index); a second request, or a
  second beat firing at the same moment, gets no new run;
- a worker owns a run only after the conditional UPDATE queued -> running; a redelivered task is a
  no-op;
- a worker killed mid-run leaves the run `running` with a stale heartbeat; the restarted worker (or
  the periodic check) puts it back to `queued`, and the next attempt resumes from the newest complete
  checkpoint in the run's folder; a heartbeat thread beats through the whole attempt (the trainer's
  progress writes stop during long steps), recovery changes only the attempt it found stale, and a run
  staff cancelled is ended, never re-queued;
- a hung attempt (a deadlocked collective, a read that never returns) must not beat forever and hold
  the single-flight slot: the heartbeat thread stops beating after STALL_TIMEOUT_SECONDS without a sign
  of life from the trainer (a progress call or a cancellation poll), ends the attempt as recovery would
  (re-queued and re-sent, or failed once out of attempts), and restarts the Celery pool process whose
  main thread is stuck;
- an attempt presumed dead that wakes up and finds its run re-queued or claimed again stops at its next
  poll without writing anything, its checkpoint included (AttemptSuperseded): the next attempt resumes
  and trains in the same folder;
- retries only on named transient errors, at most `max_attempts` attempts, then `failed` with the
  reason; bad data fails at once with a clear message and is never retried;
- a run queued while the broker (Redis) is down stays `queued` with no `sent_at`; the periodic check
  re-sends queued runs whose message is older than QUEUED_RESEND_SECONDS (a duplicate message is a
  no-op: the claim decides), and a request made while the broker is unreachable is refused with
  BrokerUnavailable (the API answers 503) instead of creating a run nobody will hear of;
- safe activation: a new version goes live automatically only if, on the frozen evaluation set
  (EvalSetRating: prompts no version trains on), the set has at least EVAL_SET_MIN_PAIRS pairs and the
  version's balanced accuracy is above one half and at least the active version's; otherwise the
  reason is on its page.

A run stores `dataclasses.asdict(TrainConfig)` in `run.config` and the worker rebuilds it with
`TrainConfig.from_stored(run.config)` (rewardtrainer/config.py, importable without torch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, IntegrityError, OperationalError, connection, transaction
from django.db.models import BigIntegerField, Case, Count, F, Max, Q, Value, When
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Coalesce, Now
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from labelapp.models import (
    EvalSetRating,
    Prompt,
    Rating,
    RewardModelVersion,
    TrainingRun,
    in_eval_set,
    prompts_awaiting_review,
    same_text_in_eval_set,
)
from labelapp.rawsql import xact_lock
from labelapp.services.roles import permission_check

log = logging.getLogger(__name__)

# Human labels for the metric keys rewardtrainer writes (the run and version pages show these).
METRIC_LABELS = {
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy (mean of longer-won and shorter-won)",
    "accuracy_longer_won": "accuracy where the longer answer won",
    "accuracy_shorter_won": "accuracy where the shorter answer won",
    "accuracy_full": "accuracy of the full model (reward + length term)",
    "accuracy_length_matched": "accuracy on length-matched pairs (ratio at most 1.2)",
    "pearson_length": "Pearson(reward, length)",
    "spearman_length": "Spearman(reward, length)",
    "padding_accuracy": "padding test (original beats a padded copy)",
    "n_padding_unread": "padding cases left out (truncation hides the padding)",
    "off_prompt_accuracy": "off-prompt test (beats a neighbouring prompt's answer)",
    "accuracy_raw": "accuracy before length calibration",
    "balanced_accuracy_raw": "balanced accuracy before length calibration",
    "pearson_length_raw": "Pearson(reward, length) before calibration",
    "padding_accuracy_raw": "padding test before calibration",
    "off_prompt_accuracy_raw": "off-prompt test before calibration and relevance gate",
    "relevance_gate_accuracy": "relevance gate: own answers told from other prompts' (fit data)",
    "relevance_gate_touched": "PMI gate: share of training answers below its threshold",
    "length_beta": "learned length coefficient (dropped at use)",
    "ece": "calibration error (ECE)",
    "loss": "validation loss",
    "n_pairs": "validation pairs",
    "n_shorter_won": "pairs the shorter answer won",
    "n_longer_won": "pairs the longer answer won",
    "augmented_pairs": "augmentation pairs added (prompt mismatch, padding)",
    "global_step": "optimizer steps",
    "pairs_train": "training pairs",
    "pairs_val": "validation pairs",
    "pairs_per_second": "training pairs per second",
    "seconds": "seconds",
    "device": "device",
    "resumed_from_step": "resumed from step",
    "ratings_dropped_since_queued": "ratings left out since queued (excluded, withheld, no consent)",
    "decorrelation_factor": "ODIN decorrelation factor",
}
PERCENT_KEYS = {k for k in METRIC_LABELS if "accuracy" in k} | {"relevance_gate_touched"}  # shares


def metric_rows(metrics: dict, keys: list[str] | None = None) -> list[tuple[str, str]]:
    """(human label, rounded value) for the known metrics, in METRIC_LABELS order; unknown keys skipped."""
    rows = []
    for key in keys or list(METRIC_LABELS):
        if key not in metrics:
            continue
        rows.append((METRIC_LABELS.get(key, key), format_metric(key, metrics[key])))
    return rows


def format_metric(key: str, value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or isinstance(value, str):
        return str(value)
    if key in PERCENT_KEYS:
        return f"{100 * float(value):.1f}%"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{float(value):.3f}" if abs(float(value)) < 100 else f"{float(value):,.1f}"


class BrokerUnavailable(Exception):
    """The Celery broker (Redis) cannot be reached: nothing can be queued right now."""


class TooFewRatings(Exception):
    """Fewer trainable ratings than a run needs: a run queued anyway could only fail."""


class AlreadyActive(Exception):
    """A hand activation of the version that is already active (a double click, a retried request):
    nothing is changed, so its note keeps the automatic decision's reason."""


class TransientTrainingError(Exception):
    """The run hit a transient error and was put back in the queue; the task retries it."""


def _transient_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OperationalError, ConnectionError, TimeoutError]
    try:
        import redis

        errors.append(redis.exceptions.ConnectionError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


# --- data ---------------------------------------------------------------------------------------


def _usable_ratings():
    """Ratings that may train or evaluate a model: `Rating.objects.usable()`, ties left out."""
    return Rating.objects.usable().exclude(preference=0)


def _trainable_ratings():
    """Usable ratings outside the frozen evaluation set: no rating of an evaluation prompt trains, nor
    of another prompt with the same text (`RatingQuerySet.outside_eval_set`)."""
    return _usable_ratings().outside_eval_set()


def _prompt_key(prompt_id: int, question_hash: str) -> str:
    """One key for prompts that ask one question (`Prompt.question_hash`: the same text, case and runs
    of white space aside): their ratings train together or evaluate together."""
    return question_hash or f"id:{prompt_id}"


def _is_eval_prompt(key: str) -> bool:
    """A fixed share of prompts, decided by the text's hash (the same for a twin, and a rated prompt's
    text never changes) or, for a row without one, a multiplicative hash of the id."""
    if key.startswith("id:"):
        bucket = (int(key[3:]) * 2654435761) % 100
    else:
        bucket = int(key[:15], 16) % 100
    return bucket < settings.TRAINING["EVAL_SET_PERCENT"]


_EVAL_SET_LOCK = 0x45E7A1  # pg_advisory_xact_lock key: one growth (or growth and snapshot) at a time


def eval_set_grow() -> int:
    """Add new usable ratings of evaluation prompts to the frozen set; returns how many joined.

    Only ratings no run has trained on can join, and a text joins only while no rating of it (of any
    prompt with that text) is older than every run's snapshot, so no version has seen an evaluation
    text. Once a text is in the set, every rating of it that no run trained on joins: the new ones, a
    twin's (prompts split by id before texts decided, or texts that a change of the hash made one: its
    ratings stop training, so later versions are clean, and the versions that trained on the twin only
    look better on the set than they are, which makes activation stricter, not looser), and one that
    became usable, or committed, only after a snapshot newer than it (an exclusion taken back in
    review; a rating whose id was drawn before a run's snapshot and committed after it): those were
    left out for good, neither training nor evaluating.

    Under an advisory lock held to the caller's commit: a growth reading the newest snapshot while a
    run's request was between its own growth and snapshot put a rating that run trains on in the set.
    """
    with transaction.atomic():
        xact_lock(_EVAL_SET_LOCK)
        rows = _eval_set_joining()
        EvalSetRating.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def _snapshot_watermark() -> int:
    """The newest rating any run's snapshot could hold (read in the database, not the id lists)."""
    return (
        TrainingRun.objects.annotate(
            m=Cast(KeyTextTransform("max_rating_id", "data_snapshot"), BigIntegerField())
        ).aggregate(w=Max("m"))["w"]
        or 0
    )


def _eval_set_joining() -> list[EvalSetRating]:
    """The ratings eval_set_grow adds (unsaved rows)."""
    watermark = _snapshot_watermark()
    in_set = {
        _prompt_key(*row)
        for row in Prompt.objects.filter(pk__in=EvalSetRating.objects.values("prompt_id")).values_list(
            "pk", "question_hash"
        )
    }
    fresh = [
        (rating_id, prompt_id, _prompt_key(prompt_id, question))
        for rating_id, prompt_id, question in _usable_ratings()
        .filter(pk__gt=watermark, eval_set_entry__isnull=True)
        .values_list("pk", "comparison__prompt_id", "comparison__prompt__question_hash")
        .order_by("pk")
    ]
    candidates = {(pid, key) for _, pid, key in fresh if key not in in_set and _is_eval_prompt(key)}
    seen_before = _keys_rated_by(candidates, watermark)
    rows = [EvalSetRating(rating_id=rid, prompt_id=pid) for rid, pid in _left_out_of_the_set(watermark)]
    for rating_id, prompt_id, key in fresh:
        if key in in_set or (_is_eval_prompt(key) and key not in seen_before):
            in_set.add(key)
            rows.append(EvalSetRating(rating_id=rating_id, prompt_id=prompt_id))
    return rows


def _keys_rated_by(candidates: set, watermark: int) -> set[str]:
    """The keys of `candidates` ((prompt id, key) pairs) with a rating at or below the watermark: a
    prompt trained on, or a twin of one, never joins (some version has seen its text). Two queries,
    each on an index (an OR across the two joined tables scanned every old rating)."""
    old = Rating.objects.filter(pk__lte=watermark)
    by_id = {pid for pid, key in candidates if key.startswith("id:")}
    by_text = {key for _, key in candidates if not key.startswith("id:")}
    return {
        _prompt_key(pid, "")
        for pid in old.filter(comparison__prompt_id__in=by_id)
        .values_list("comparison__prompt_id", flat=True)
        .distinct()
    } | set(
        old.filter(comparison__prompt__question_hash__in=by_text)
        .values_list("comparison__prompt__question_hash", flat=True)
        .distinct()
    )


# Which of the ids a run's snapshot holds, two ways: a containment test of each id against the id lists
# of the runs that could hold it (a few ids), or each list unpacked once and joined (many: the first
# took 55 ms an id with 200 runs of 100k ids).
_TRAINED_FEW_SQL = """
SELECT r.id FROM unnest(%(ids)s::bigint[]) AS r(id)
WHERE EXISTS (
    SELECT 1 FROM labelapp_trainingrun t
    WHERE (t.data_snapshot ->> 'max_rating_id')::bigint >= r.id
      AND t.data_snapshot -> 'rating_ids' @> to_jsonb(r.id)
)
"""
_TRAINED_MANY_SQL = """
SELECT DISTINCT c.id
FROM labelapp_trainingrun t
CROSS JOIN LATERAL jsonb_array_elements_text(t.data_snapshot -> 'rating_ids') AS e(value)
JOIN unnest(%(ids)s::bigint[]) AS c(id) ON c.id = e.value::bigint
WHERE (t.data_snapshot ->> 'max_rating_id')::bigint >= %(lowest)s
"""
_TRAINED_FEW = 20


def _left_out_of_the_set(watermark: int) -> list[tuple[int, int]]:
    """(rating id, prompt id) of usable ratings of texts in the set, at or below the watermark, that are
    not in the set and that no run trained on."""
    older = _usable_ratings().filter(pk__lte=watermark, eval_set_entry__isnull=True)
    found = dict(
        older.filter(comparison__prompt_id__in=EvalSetRating.objects.values("prompt_id")).values_list(
            "pk", "comparison__prompt_id"
        )
    )
    found |= dict(older.filter(same_text_in_eval_set()).values_list("pk", "comparison__prompt_id"))
    if not found:
        return []
    trained = _trained(sorted(found))
    return sorted((rid, pid) for rid, pid in found.items() if rid not in trained)


def _trained(ids: list[int]) -> set[int]:
    """Those of `ids` some run's snapshot holds. A rating that trained stays trained, so the answers are
    remembered in the cache (a twin's ratings that trained before its text joined the set come up at
    every growth, twice a beat); a cache lost costs one look at the runs again."""
    first = TrainingRun.objects.order_by("pk").values_list("pk", "created_at").first()
    if first is None:
        return set()
    key = f"eval-set-trained:{first[0]}:{first[1].timestamp()}"  # this database's runs, not another's
    known = set(cache.get(key) or ())
    unknown = [i for i in ids if i not in known]
    if unknown:
        sql = _TRAINED_FEW_SQL if len(unknown) <= _TRAINED_FEW else _TRAINED_MANY_SQL
        with connection.cursor() as cursor:
            cursor.execute(sql, {"ids": unknown, "lowest": unknown[0]})
            found = {row[0] for row in cursor.fetchall()}
        if found:
            cache.set(key, sorted(known | found), timeout=None)
        known |= found
    return {i for i in ids if i in known}


def eval_set_size() -> int:
    return _usable_ratings().filter(eval_set_entry__isnull=False).count()


def eval_set_pairs():
    """The frozen evaluation set as rewardtrainer pairs (excluded or broken ratings drop out)."""
    ids = list(_usable_ratings().filter(eval_set_entry__isnull=False).values_list("pk", flat=True))
    return training_pairs(ids, evaluation=True)


def training_new_ratings_count() -> int:
    """Ratings that would train (`_trainable_ratings`: consented, not withheld, excluded or a tie, not
    of the evaluation set) newer than the data of the newest reward-model run that ended (succeeded,
    failed or cancelled). Counted from the newest version, a run that failed for good (a bad setting)
    or that staff cancelled was queued again by the next beat, on the same data, for ever; counting
    ties and withheld ratings started runs with nothing new to learn."""
    ended = TrainingRun.objects.filter(kind=TrainingRun.Kind.REWARD_MODEL).exclude(
        status__in=TrainingRun.ACTIVE
    )
    last = ended.order_by("-pk").first()
    since = ((last.data_snapshot or {}).get("max_rating_id", 0) if last else 0) or 0
    # not those the next request's growth moves into the evaluation set (15% of new prompts' ratings
    # were counted, and 50 of them alone queued a run with nothing new to train on)
    joining = [row.rating_id for row in _eval_set_joining()]
    return _trainable_ratings().filter(pk__gt=since).exclude(pk__in=joining).count()


# Why a consented rating up to the snapshot's newest id does not train, in this order: each counts
# under the first that holds, so that the run page's parts add up to the consented ratings.
_LEFT_OUT = (
    ("n_excluded", lambda: Q(pk__in=Rating.objects.excluded().values("pk"))),
    ("n_withheld", lambda: Q(comparison__prompt__withheld=True)),
    # held back until staff review a personal-data flag on their prompt (they train after)
    ("n_awaiting_review", lambda: Q(comparison__prompt_id__in=prompts_awaiting_review())),
    ("n_flagged_broken", lambda: Q(flag_broken=True)),
    ("n_repeats", lambda: Q(comparison__kind="repeat")),
    ("n_ties", lambda: Q(preference=0)),
    ("n_eval_set", in_eval_set),
)


def _snapshot_counts(newest: int) -> dict[str, int]:
    """The consented ratings up to `newest` and, disjoint, why those that do not train are left out
    (`_LEFT_OUT`), with the ratings of simulated raters among those that train: one grouped query, a
    CASE taking the first reason that holds (filtered counts, each excluding every earlier reason,
    evaluated the subqueries some 17 times a row: 10.8 s for a million ratings against 1.7 s)."""
    reason = Case(*(When(test(), then=Value(key)) for key, test in _LEFT_OUT), default=Value(""))
    consented = Rating.objects.filter(comparison__prompt__consent=True, pk__lte=newest)
    groups = (
        consented.annotate(reason=reason, sim=Q(simulated__isnull=False))
        .order_by()
        .values_list("reason", "sim")
        .annotate(n=Count("pk"))
    )
    counts = dict.fromkeys(["n_consented", *(key for key, _ in _LEFT_OUT), "n_simulated"], 0)
    for key, simulated, n in groups:
        counts["n_consented"] += n
        if key:
            counts[key] += n
        elif simulated:
            counts["n_simulated"] += n
    return counts


def training_snapshot() -> dict:
    """Which ratings go into the next run (ids, so a retried run trains on exactly the same data)."""
    # The newest id first, and no rating above it: read after the ids, it also covered a rating that
    # committed in between without being in them (never counted as new, and its text never evaluated).
    newest = Rating.objects.aggregate(m=Max("pk"))["m"] or 0
    usable_ids = list(_trainable_ratings().filter(pk__lte=newest).order_by("pk").values_list("pk", flat=True))
    return {
        "rating_ids": usable_ids,
        "n_usable": len(usable_ids),
        **_snapshot_counts(newest),
        "n_without_consent": Rating.objects.filter(comparison__prompt__consent=False, pk__lte=newest).count(),
        "max_rating_id": newest,
        "taken_at": timezone.now().isoformat(),
        # the pair weights as they stand now: a retried run trains with the same ones
        "trust_weights": _snapshot_weights(),
    }


def _snapshot_weights() -> dict[str, float]:
    from labelapp.selectors import trust_weights

    raters = _trainable_ratings().order_by().values_list("rater_id", flat=True).distinct()
    return {str(rid): w for rid, w in trust_weights(rater_ids=list(raters)).items()}


def _pair_weight(weight) -> float:
    """A rater's trust weight as a pair weight: within [0, TRUST_MAX] (the JSONL loader refuses negative
    weights; a negative one would teach the rejected answer), 1 when it is not a finite number."""
    from labelapp.metrics import TRUST_MAX

    weight = float(weight)
    return min(TRUST_MAX, max(0.0, weight)) if math.isfinite(weight) else 1.0


def training_pairs(rating_ids: list[int], *, weights: dict | None = None, evaluation: bool = False):
    """Ratings -> rewardtrainer PreferencePairs (strength -> margin; the rater's trust -> weight).

    Only those of `rating_ids` still usable now: a rating excluded in review, or whose prompt was
    withheld for personal data or lost its consent after the run was queued, does not train; nor does
    one whose prompt joined the frozen evaluation set meanwhile (the set grows while a request's
    snapshot may not have committed yet, and the set must stay unseen by every version).
    `weights`: trust weights by rater id (as a run's snapshot stores them; the current ones if None).
    `evaluation`: pairs to score on (the frozen set's own), not to train on."""
    from labelapp.selectors import trust_weights
    from rewardtrainer.data import PreferencePair

    margins = settings.TRAINING["MARGINS"]
    ratings = (
        (_usable_ratings() if evaluation else _trainable_ratings())
        .filter(pk__in=rating_ids)
        .select_related("comparison__prompt", "comparison__response_a", "comparison__response_b")
        .order_by("pk")
    )
    current = trust_weights(rater_ids=ratings.order_by().values_list("rater_id", flat=True).distinct())
    weights = {rid: (weights or {}).get(str(rid), w) for rid, w in current.items()}
    pairs = []
    for r in ratings.iterator(chunk_size=500):
        c = r.comparison
        a_won = r.preference < 0
        chosen, rejected = (c.response_a, c.response_b) if a_won else (c.response_b, c.response_a)
        pairs.append(
            PreferencePair(
                prompt=c.prompt.text,
                chosen=chosen.text,
                rejected=rejected.text,
                margin=float(margins[min(abs(r.preference), 3) - 1]),
                weight=_pair_weight(weights[r.rater_id]),
                pair_id=f"rating:{r.pk}",
                prompt_id=f"prompt:{c.prompt_id}",
            )
        )
    return pairs


def training_settings_check() -> None:
    """ValueError for RM_* settings outside TrainConfig that runs would fail or misbehave on:
    RM_MAX_ATTEMPTS=0 created runs that failed at once ("Gave up after 0 attempts"); RM_HEARTBEAT_TIMEOUT=0
    had every scheduled check take live runs from their workers (and their heartbeats write without a
    pause); RM_CHECK_SECONDS=0 made beat run the check without a pause."""
    from rewardtrainer.config import check_numbers

    t = settings.TRAINING
    named = SimpleNamespace(
        RM_MAX_ATTEMPTS=t["MAX_ATTEMPTS"],
        RM_CHECK_SECONDS=t["CHECK_SECONDS"],
        RM_HEARTBEAT_TIMEOUT=t["HEARTBEAT_TIMEOUT_SECONDS"],
        RM_QUEUED_RESEND_SECONDS=t["QUEUED_RESEND_SECONDS"],
        RM_MIN_NEW_RATINGS=t["MIN_NEW_RATINGS"],
        RM_EVAL_SET_MIN_PAIRS=t["EVAL_SET_MIN_PAIRS"],
        RM_EVAL_SET_MIN_GROUP_PAIRS=t["EVAL_SET_MIN_GROUP_PAIRS"],
    )
    check_numbers(
        named,
        whole=(
            "RM_MAX_ATTEMPTS", "RM_CHECK_SECONDS", "RM_HEARTBEAT_TIMEOUT", "RM_QUEUED_RESEND_SECONDS",
            "RM_MIN_NEW_RATINGS",  # 0 retrained on the same ratings at every check
        ),
        counts=("RM_EVAL_SET_MIN_PAIRS", "RM_EVAL_SET_MIN_GROUP_PAIRS"),
    )  # fmt: skip
    percent = t["EVAL_SET_PERCENT"]
    if not (isinstance(percent, int) and 0 <= percent < 100):  # 100 would leave nothing to train on
        raise ValueError(f"RM_EVAL_SET_PERCENT must be a whole number from 0 to 99, got {percent!r}")
    queue_name_check("RM_QUEUE", t["QUEUE"])


def queue_name_check(variable: str, name: str) -> None:
    """ValueError for an empty Celery queue name: runs sent there reach no worker."""
    if not name.strip():
        raise ValueError(f"{variable} must name a Celery queue (the training worker's -Q), got {name!r}")


def training_backbone_missing() -> str | None:
    """The RM_BACKBONE path when it names a local model that is not there (a warning at startup: the
    web server's machine need not hold the model the gpu worker's does), else None."""
    from rewardtrainer.config import missing_local_model

    backbone = settings.TRAINING["BACKBONE"]
    return backbone if missing_local_model(backbone) else None


def train_config_from_settings():
    """TrainConfig from settings.TRAINING (the run stores asdict(config))."""
    from rewardtrainer.config import TrainConfig

    t = settings.TRAINING
    kwargs = {
        "objective": t["OBJECTIVE"],
        "calibrate": t["CALIBRATE"],
        "length_beta_start": t["LENGTH_BETA_START"],
        "calibration_holdout": t["CALIBRATION_HOLDOUT"],
        "augment": t["AUGMENT"],
        "augment_padding": t["AUGMENT_PADDING"],
        "relevance_head": t["RELEVANCE_HEAD"],
        "relevance_gate": t["RELEVANCE_GATE"],
        "relevance_lm": t["RELEVANCE_LM"],
        "relevance_quantile": t["RELEVANCE_QUANTILE"],
        "relevance_weight": t["RELEVANCE_WEIGHT"],
        "ensemble": t["ENSEMBLE"],
        "length_balance": t["LENGTH_BALANCE"],
        "max_length": t["MAX_LENGTH"],
        "batch_size": t["BATCH_SIZE"],
        "max_tokens": t["MAX_TOKENS"],
        "epochs": t["EPOCHS"],
        "max_steps": t["MAX_STEPS"] or 0,
        "lr": t["LEARNING_RATE"],
        "eval_every": t["EVAL_EVERY"],
        "checkpoint_every": t["CHECKPOINT_EVERY"],
        "val_fraction": t["VAL_FRACTION"],
        "device": t["DEVICE"],
        "compile": t["COMPILE"],
        "packing": t["PACKING"],
        "packed_attention": t["PACKED_ATTENTION"],
    }
    if t["BACKBONE"]:
        kwargs["backbone"] = t["BACKBONE"]
    return TrainConfig(**kwargs)


def run_train_config(run: TrainingRun):
    """The run's TrainConfig, rebuilt from what it stored."""
    from rewardtrainer.config import TrainConfig

    return TrainConfig.from_stored(run.config)


def baseline_config(config):
    """The plain Bradley-Terry model trained beside a run for comparison: same data, budget and seed."""
    return dataclasses.replace(
        config,
        objective="plain",
        augment="none",
        augment_padding=0.0,
        relevance_head=False,
        relevance_gate="none",
        calibrate=False,
        ensemble=1,
    )


# --- requesting runs ------------------------------------------------------------------------------


def training_run_request(
    *,
    trigger: str,
    requested_by=None,
    force: bool = False,
    with_baseline: bool | None = None,
    enqueue: bool = True,
) -> TrainingRun | None:
    """Queue a reward model run unless one is active, or (without `force`) too few new ratings came in.

    Returns the new run, or None when nothing was started. The Celery task is sent after commit,
    unless `enqueue` is False (the caller executes the run itself). Raises BrokerUnavailable (and
    creates nothing) when the task would have to be queued while the broker is unreachable, and
    TooFewRatings when fewer ratings would train than any run needs (a "train now" with none queued a
    run that failed at once in the worker).
    NotPermitted when `requested_by` may not start runs (None: the schedule or a command).
    """
    permission_check(requested_by, "training_request")
    if TrainingRun.objects.filter(kind=TrainingRun.Kind.REWARD_MODEL, status__in=TrainingRun.ACTIVE).exists():
        return None
    if not force and training_new_ratings_count() < settings.TRAINING["MIN_NEW_RATINGS"]:
        return None
    if enqueue:
        broker_check()
    baseline = settings.TRAINING["TRAIN_PLAIN_BASELINE"] if with_baseline is None else with_baseline
    try:
        with transaction.atomic():
            eval_set_grow()  # before the snapshot: a new evaluation prompt's ratings never train
            snapshot = training_snapshot()
            _refuse_too_few(snapshot)  # after the grow: ratings that just joined the set do not train
            run = TrainingRun.objects.create(
                kind=TrainingRun.Kind.REWARD_MODEL,
                trigger=trigger,
                requested_by=requested_by,
                max_attempts=settings.TRAINING["MAX_ATTEMPTS"],
                config=dataclasses.asdict(train_config_from_settings()),
                with_baseline=bool(baseline),
                data_snapshot=snapshot,
            )
    except IntegrityError:
        # Another request won the race for the single-flight slot (two beats at the same moment).
        return None
    if enqueue:
        _enqueue(run.pk)
    return run


def _refuse_too_few(snapshot: dict) -> None:
    """TooFewRatings (the transaction, the evaluation set's growth too, rolls back) when fewer ratings
    would train than any run needs."""
    from rewardtrainer.config import MIN_PAIRS

    trainable = snapshot["n_usable"]
    if trainable < MIN_PAIRS:
        raise TooFewRatings(
            f"Only {trainable} rating(s) would train (consented, not excluded, not a tie, not of the frozen "
            f"evaluation set); a run needs at least {MIN_PAIRS}, so none was queued."
        )


def _broker_errors() -> tuple[type[BaseException], ...]:
    from kombu.exceptions import OperationalError as KombuOperationalError

    return (KombuOperationalError, *_transient_errors())


def broker_check(timeout: float = 2.0) -> None:
    """Raise BrokerUnavailable unless the Celery broker answers within `timeout` seconds."""
    from config.celery import app

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    except _broker_errors() as exc:
        raise BrokerUnavailable(
            "The task broker (Redis) is unreachable, so no training run can be queued right now; "
            f"try again when it is back ({type(exc).__name__})."
        ) from exc


def _task_for(kind: str):
    """The Celery task and queue that execute a run of `kind`: every kind of run is re-sent by the same
    recovery, so it must never hand a policy round to the reward-model task (which would fail it)."""
    from labelapp import tasks

    task = tasks.execute_reward_model_run if kind == TrainingRun.Kind.REWARD_MODEL else tasks.ppo_round
    return task, run_queue(kind)


def run_queue(kind: str) -> str:
    """The Celery queue whose worker executes a run of `kind` (RM_QUEUE, POLICY_QUEUE)."""
    return settings.TRAINING["QUEUE"] if kind == TrainingRun.Kind.REWARD_MODEL else settings.POLICY["QUEUE"]


def _send(run_id: int) -> bool:
    """Hand the run's task to the broker; on a broker error the run stays queued (recovery re-sends)."""
    kind = TrainingRun.objects.filter(pk=run_id).values_list("kind", flat=True).first()
    if kind is None:
        return False
    task, queue = _task_for(kind)
    try:
        task.apply_async(args=[run_id], queue=queue, retry=False)
    except _broker_errors() as exc:
        log.warning("could not send run %s to the broker (%s); recovery will re-send it", run_id, exc)
        return False
    # whatever its status: a worker may have claimed it already (then a NULL would read "never sent")
    TrainingRun.objects.filter(pk=run_id).update(sent_at=timezone.now())
    return True


def _enqueue(run_id: int) -> None:
    """Send the run's task once the transaction that created (or requeued) it has committed."""
    transaction.on_commit(lambda: _send(run_id))


def training_resend_queued(*, kinds: tuple[str, ...] | None = None) -> list[int]:
    """Re-send queued runs (of `kinds`; every kind when None) whose message is missing or older than
    QUEUED_RESEND_SECONDS.

    A run queued while Redis was down has no message at all; re-sending a message that is merely
    waiting behind a long run only adds a duplicate, which the claim turns into a no-op. Each kind of
    run goes to its own task (`_task_for`).
    """
    cutoff = timezone.now() - timedelta(seconds=settings.TRAINING["QUEUED_RESEND_SECONDS"])
    stale = TrainingRun.objects.filter(status=TrainingRun.Status.QUEUED, created_at__lt=cutoff).filter(
        Q(sent_at__isnull=True) | Q(sent_at__lt=cutoff)
    )
    if kinds is not None:
        stale = stale.filter(kind__in=kinds)
    return [run_id for run_id in stale.values_list("pk", flat=True) if _send(run_id)]


def training_recover_stale(
    *, worker: str | None = None, kinds: tuple[str, ...] = (TrainingRun.Kind.REWARD_MODEL,), enqueue=None
) -> list[int]:
    """Put runs whose worker died back in the queue (or fail them once out of attempts, or end them as
    cancelled when staff had asked them to stop).

    With `worker`, every run that worker was running is presumed dead (called when that worker starts);
    without, runs whose heartbeat is older than HEARTBEAT_TIMEOUT_SECONDS are. Only runs of `kinds`,
    re-sent with `enqueue` (policy rounds go to their own task: services/policy.py).
    """
    enqueue = enqueue or _enqueue
    running = TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING, kind__in=kinds)
    if worker is not None:
        running = running.filter(worker=worker)
    else:
        # The database's clock on both sides: the beat that recovers and the worker that beats may run on
        # machines whose clocks disagree, and a recovery host a few minutes ahead requeued live runs.
        cutoff = Now() - timedelta(seconds=settings.TRAINING["HEARTBEAT_TIMEOUT_SECONDS"])
        running = running.filter(heartbeat_at__lt=cutoff)
    requeued = []
    for run in running:
        # Every change is conditional on the row as read here (still running, same attempt, no beat
        # since): a concurrent recovery and a worker may have re-queued and claimed it again meanwhile,
        # or its worker was alive after all. Staff's cancel since the read keeps it for the next pass.
        seen = TrainingRun.objects.filter(
            pk=run.pk,
            status=TrainingRun.Status.RUNNING,
            attempts=run.attempts,
            heartbeat_at=run.heartbeat_at,
            cancel_requested=run.cancel_requested,
        )
        status = _end_dead_attempt(
            seen,
            run,
            cancelled="Cancelled; the worker stopped before the run did, so it was not run again.",
            failed=f"The worker stopped during the run {run.attempts} times (killed or crashed); gave up.",
            enqueue=enqueue,
        )
        if status == TrainingRun.Status.QUEUED:
            requeued.append(run.pk)
    return requeued


def _end_dead_attempt(
    rows, run: TrainingRun, *, cancelled: str, failed: str, requeued: str | None = None, enqueue=None
) -> str | None:
    """End the attempt whose fenced row is `rows` (its worker died, or it hung) by the one rule recovery
    and the stall watch share: a run staff asked to stop ends cancelled (running it again would redo
    the work, a whole attempt of a PPO round, only for its first progress write to stop it), one out
    of attempts fails, any other goes back to the queue and is re-sent with `enqueue`. `cancelled`,
    `failed` and `requeued` are the errors to record. Returns the new status, None if `rows` matched
    nothing (the attempt was changed meanwhile)."""
    now = timezone.now()
    if rows.filter(cancel_requested=True).update(
        status=TrainingRun.Status.CANCELLED, finished_at=now, error=cancelled
    ):
        return TrainingRun.Status.CANCELLED
    rows = rows.filter(cancel_requested=False)
    if run.attempts >= run.max_attempts:
        done = rows.update(status=TrainingRun.Status.FAILED, finished_at=now, error=failed)
        return TrainingRun.Status.FAILED if done else None
    if rows.update(status=TrainingRun.Status.QUEUED, worker="", **({"error": requeued} if requeued else {})):
        (enqueue or _enqueue)(run.pk)
        return TrainingRun.Status.QUEUED
    return None


def training_check_and_start() -> TrainingRun | None:
    """The periodic job: recover dead runs, re-send lost messages, start a run if enough new ratings."""
    training_recover_stale()
    training_resend_queued()
    reward_model_decisions_resend()
    try:
        return training_run_request(trigger="beat")
    except BrokerUnavailable as exc:
        log.warning("%s", exc)
        return None
    except TooFewRatings as exc:  # a state, not a fault: with a low RM_MIN_NEW_RATINGS, every beat says it
        log.info("%s", exc)
        return None


def training_run_cancel(*, run: TrainingRun, by=None) -> None:
    """Queued runs stop at once; a running one stops at its next step (its checkpoints are then deleted
    by the training worker, services/artifacts.py: a cancelled run is never resumed).
    NotPermitted when `by` may not cancel runs.

    One statement: with two (queued -> cancelled, else flag the running run) a recovery or a transient
    error re-queuing the run between them left neither to match, and the cancel was lost."""
    permission_check(by, "training_cancel")
    field = TrainingRun._meta.get_field

    def if_queued(name: str, value):
        return Case(
            When(status=TrainingRun.Status.QUEUED, then=Value(value)),
            default=F(name),
            output_field=field(name),
        )

    TrainingRun.objects.filter(pk=run.pk, status__in=TrainingRun.ACTIVE).update(
        cancel_requested=True,
        status=if_queued("status", TrainingRun.Status.CANCELLED),
        finished_at=if_queued("finished_at", timezone.now()),
        error=if_queued("error", "Cancelled before it started."),
    )


# --- executing runs --------------------------------------------------------------------------------


class AttemptSuperseded(Exception):
    """This attempt no longer owns its run: presumed dead, re-queued and perhaps claimed again. It must
    stop and write nothing more. Fencing covers the run's row; this covers the files, because a
    stopped trainer writes a checkpoint (and prunes old ones) in the folder the new attempt uses."""


class _Reporter:
    """Progress callback + cancellation check for rewardtrainer: writes progress and a heartbeat."""

    POLL_SECONDS = 5.0  # should_stop() reads the row itself when no progress write has for this long

    def __init__(self, run: TrainingRun, phase: str, share: tuple[float, float]):
        self.run, self.phase, self.share = run, phase, share
        self._last_write = self._last_check = time.monotonic()
        self._cancel = self._lost = False

    def __call__(self, info: dict) -> None:
        _sign_of_life(self.run)
        info = _scalars(info)
        now = time.monotonic()
        if now - self._last_write < 1.0 and not any(k.startswith("val_") for k in info):
            return
        self._last_write = self._last_check = now
        total = info.get("total_steps") or 1
        lo, hi = self.share
        progress = lo + (hi - lo) * min(1.0, (info.get("step") or 0) / total)
        updated = run_owned(self.run).update(
            progress=progress,
            progress_detail={"phase": self.phase, **info},
            heartbeat_at=Now(),
        )
        if updated:
            self._poll()
        else:
            self._lost = True

    def should_stop(self) -> bool:
        """The trainer's poll, also a sign of life for the heartbeat's stall watch: True once staff
        cancelled (the trainer checkpoints and returns); AttemptSuperseded once this attempt lost the
        run (it must not write a checkpoint). Between progress writes (a generation, a long step) it
        asks the database itself, at most every POLL_SECONDS."""
        _sign_of_life(self.run)
        now = time.monotonic()
        if not (self._cancel or self._lost) and now - self._last_check >= self.POLL_SECONDS:
            self._last_check = now
            self._poll()
        if self._lost:
            raise AttemptSuperseded(f"attempt {self.run.attempts} of run {self.run.pk} no longer owns it")
        return self._cancel

    def _poll(self) -> None:
        """Read the run's row: staff's cancel, or this attempt no longer owning it."""
        flag = run_owned(self.run).values_list("cancel_requested", flat=True).first()
        self._lost, self._cancel = flag is None, bool(flag)


# The trainer's last sign of life per attempt (time.monotonic() of its last progress call or
# cancellation poll through _Reporter), read by the attempt's heartbeat thread in the same process.
# Keyed by (run, attempt): a stale attempt still alive in this process must not feed a newer one's.
_SIGNS_OF_LIFE: dict[tuple[int, int], float] = {}


def _sign_of_life(run: TrainingRun) -> None:
    _SIGNS_OF_LIFE[(run.pk, run.attempts)] = time.monotonic()


class _Heartbeat:
    """Writes the run's heartbeat every `every` seconds from a thread, for the whole attempt: the trainer
    calls no progress while it prepares the data or computes its final metrics (a reward model's
    calibration and gates, a PPO update, a long generation on a CPU), which can outlast the stale-
    heartbeat timeout, and a live run must not be requeued. By default it beats three times per
    timeout (at most every 30 s), so a short RM_HEARTBEAT_TIMEOUT is not outrun by the beat itself.

    It beats only while the trainer shows signs of life: after `stall_after` seconds (STALL_TIMEOUT_SECONDS,
    0 = never) without one, the attempt is presumed hung, ended by `end_stalled_attempt` and its pool
    process restarted; a thread that beat regardless kept a hung run `running` for ever. Once the
    attempt no longer owns its run (it ended: a version is being activated) the watch just stops."""

    def __init__(self, run: TrainingRun, every: float | None = None, stall_after: float | None = None):
        timeout = settings.TRAINING["HEARTBEAT_TIMEOUT_SECONDS"]
        self.run, self.every = run, every if every is not None else min(30.0, timeout / 3)
        self.stall_after = settings.TRAINING["STALL_TIMEOUT_SECONDS"] if stall_after is None else stall_after
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _stalled(self) -> bool:
        key = (self.run.pk, self.run.attempts)
        idle = time.monotonic() - _SIGNS_OF_LIFE.get(key, time.monotonic())
        if self.stall_after <= 0 or idle <= self.stall_after:
            return False
        try:
            if not end_stalled_attempt(self.run, idle, self.stall_after):
                return True  # no longer this attempt's run: nothing left to guard, nothing to kill
        except DatabaseError:  # the beats stop all the same: recovery finds it stale
            log.exception("run %s: the hung attempt could not be ended; recovery will", self.run.pk)
        log.error("run %s: no sign of progress for %.0f s; presumed hung", self.run.pk, idle)
        restart_pool_process()
        return True

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.every):
                if self._stalled():
                    return
                try:
                    run_owned(self.run).update(heartbeat_at=Now())
                except DatabaseError:  # one failed write must not end the beats: the run would look dead
                    log.warning("heartbeat of run %s not written; trying again", self.run.pk, exc_info=True)
                    connection.close()  # a broken connection is reopened by the next query
        finally:
            connection.close()  # this thread's own connection

    def __enter__(self) -> _Heartbeat:
        _sign_of_life(self.run)  # the attempt's start counts as one
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        _SIGNS_OF_LIFE.pop((self.run.pk, self.run.attempts), None)


def end_stalled_attempt(run: TrainingRun, idle: float, limit: float) -> bool:
    """End an attempt that showed no sign of progress for `idle` (> `limit`) seconds as recovery ends a
    dead one: cancelled if staff asked, failed once out of attempts, else back in the queue and re-sent.
    Every write is fenced by the attempt, so a late wake-up of the hung thread lands nothing. False when
    the attempt no longer owns the run (it ended meanwhile), which is then left as it is."""
    why = f"no sign of progress for {idle:.1f} s (RM_STALL_TIMEOUT {limit:g} s)"
    status = _end_dead_attempt(
        run_owned(run),
        run,
        cancelled=f"Cancelled; it had hung: {why}.",
        failed=f"Hung in attempt {run.attempts} of {run.max_attempts}: {why}; gave up.",
        requeued=f"Retrying: attempt {run.attempts} hung ({why}); its worker process was restarted.",
    )
    return status is not None


def restart_pool_process() -> None:
    """End this process when it is a Celery prefork pool child, as a task time limit would: its main
    thread is stuck in the hung step, and the pool's master starts a fresh child (the task's message,
    acks_late, is delivered again and its claim finds the run queued). Anywhere else (a solo pool, a
    management command) only log it: whoever runs the process must restart it."""
    from billiard.process import current_process

    if not current_process().name.startswith("ForkPoolWorker"):
        log.critical("a run hung in this process (%s); restart it to free the thread", current_process().name)
        return
    log.critical("a run hung in this pool process; ending it so that the worker starts a fresh one")
    for handler in logging.getLogger().handlers:
        handler.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def run_owned(run: TrainingRun):
    """The run's row while this attempt still owns it: running, and not claimed again since. A worker
    presumed dead (a stale heartbeat) whose run recovery put back in the queue, and another worker
    claimed, may wake up: its progress, result or failure must not land on the new attempt's run."""
    return TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING, attempts=run.attempts)


def run_still_owned(run: TrainingRun, locked: TrainingRun) -> bool:
    """Whether `locked` (the row re-read under select_for_update) is still this attempt's run."""
    return locked.status == TrainingRun.Status.RUNNING and locked.attempts == run.attempts


def _finish(run: TrainingRun, status: str, **fields) -> None:
    run_owned(run).update(status=status, finished_at=timezone.now(), **fields)


def run_claim(*, run_id: int, worker: str = "", kinds=None, task_id: str = "") -> TrainingRun | None:
    """Claim a queued run (of one of `kinds`, any kind when None) with a conditional UPDATE.

    One row updated means this worker owns the run; None means it was already taken or finished (a
    duplicate message: a re-send, a second beat), which the caller treats as a no-op. Shared by every
    kind of run. A running run whose attempt's process died is taken over (`_orphan_of`).
    """
    runs = TrainingRun.objects.filter(pk=run_id)
    if kinds is not None:
        runs = runs.filter(kind__in=kinds)
    claimable = Q(status=TrainingRun.Status.QUEUED)
    orphan = _orphan_of(runs, task_id=task_id, worker=worker)
    if orphan is not None:
        claimable |= Q(status=TrainingRun.Status.RUNNING, attempts=orphan.attempts, cancel_requested=False)
    claimed = runs.filter(claimable).update(
        status=TrainingRun.Status.RUNNING,
        attempts=F("attempts") + 1,
        started_at=Coalesce(F("started_at"), Now()),
        heartbeat_at=Now(),  # the database's clock, as recovery reads it (training_recover_stale)
        worker=worker,
        task_id=task_id,
        pid=os.getpid(),
    )
    return TrainingRun.objects.get(pk=run_id) if claimed == 1 else None


def _orphan_of(runs, *, task_id: str, worker: str) -> TrainingRun | None:
    """The running run that this message started on this worker, if the process running it is gone.

    The tasks are acks_late with reject_on_worker_lost: when the OOM killer takes the pool process,
    Celery hands the message back, and it was dropped as "already taken" while the run stayed
    `running` with nothing behind it until its heartbeat went stale. A message also comes back while
    its run is alive (a lost broker connection, the visibility timeout), so the takeover asks for the
    same worker and a dead process, not only the same message. A run staff asked to cancel is ended
    instead, as recovery ends a dead attempt's. Fencing (`run_owned`) covers what is left."""
    if not task_id:
        return None
    row = runs.filter(status=TrainingRun.Status.RUNNING, task_id=task_id, worker=worker).first()
    if row is None or _process_alive(row.pid):
        return None
    if row.cancel_requested or row.attempts >= row.max_attempts:
        # cancelled, or out of attempts: ended by recovery's rule (a cancel requested meanwhile wins),
        # where a takeover ran "attempt 4 of 3" and then failed with a bare "Gave up after 3 attempts"
        seen = runs.filter(status=TrainingRun.Status.RUNNING, attempts=row.attempts, task_id=task_id)
        _end_dead_attempt(
            seen,
            row,
            cancelled="Cancelled; its process died and it was not run again.",
            failed=f"The worker stopped during the run {row.attempts} times (killed or crashed); gave up.",
        )
        return None
    return row


def _process_alive(pid: int | None) -> bool:
    """Whether `pid` is a live process on this machine (a zombie is not; this process, which is not
    running the run since it is claiming it, is not either)."""
    if not pid or pid == os.getpid():
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    except (OSError, IndexError):  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return state not in {"Z", "X"}


def run_execute_guarded(
    run: TrainingRun,
    execute,
    *,
    label: str,
    expected_errors: tuple[type[Exception], ...] = (),
    expected_prefix: str = "",
) -> str:
    """Run `execute(run)` under the attempt policy every kind of run shares; return the final status.

    Past `max_attempts` the run fails at once. `expected_errors` (bad data, a bad setting) fail with
    their message; named transient errors put the run back in the queue and raise
    TransientTrainingError so the task retries, until the attempts are used up; anything else is
    deterministic: it fails with its type and message and is never retried. An attempt that finds the
    run is no longer its own (AttemptSuperseded) stops, writes nothing and returns 'superseded'.
    """
    if run.attempts > run.max_attempts:
        _finish(run, TrainingRun.Status.FAILED, error=f"Gave up after {run.max_attempts} attempts.")
        return TrainingRun.Status.FAILED
    try:
        try:
            return execute(run)
        finally:
            _drop_broken_connection()
    except AttemptSuperseded as exc:  # the run is another attempt's now: nothing of this one lands
        log.warning("%s %s: %s; stopped without writing", label, run.pk, exc)
        return "superseded"
    except expected_errors as exc:
        _finish(run, TrainingRun.Status.FAILED, error=f"{expected_prefix}{exc}")
        return TrainingRun.Status.FAILED
    except _transient_errors() as exc:
        # Staff asked it to stop before the error: end it, not a new attempt (which would run until
        # its first progress write saw the request).
        cancelled = run_owned(run).filter(cancel_requested=True)
        reason = f"{type(exc).__name__}: {exc}"
        if cancelled.update(
            status=TrainingRun.Status.CANCELLED,
            finished_at=timezone.now(),
            error=f"Cancelled; it stopped on {reason} and was not run again.",
        ):
            return TrainingRun.Status.CANCELLED
        if run.attempts < run.max_attempts:
            run_owned(run).filter(cancel_requested=False).update(
                status=TrainingRun.Status.QUEUED,
                worker="",
                error=f"Retrying after: {reason}",
            )
            raise TransientTrainingError(str(exc)) from exc
        _finish(run, TrainingRun.Status.FAILED, error=f"{reason} (attempt {run.attempts})")
        return TrainingRun.Status.FAILED
    except Exception as exc:  # noqa: BLE001 (deterministic failures: say why, never loop)
        log.exception("%s %s failed", label, run.pk)
        _finish(run, TrainingRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
        return TrainingRun.Status.FAILED


def _drop_broken_connection() -> None:
    """Close this thread's database connection if an error left it unusable, so that the next query
    (the run's own bookkeeping) opens a new one. Django does not reconnect inside a task: after a
    dropped connection the transient-error handler's first UPDATE failed on the dead one, and the run
    stayed `running` with nothing behind it until the heartbeat went stale."""
    if not connection.in_atomic_block:  # a test's or a caller's transaction is not this to end
        connection.close_if_unusable_or_obsolete()


def training_run_execute(*, run_id: int, worker: str = "", task_id: str = "") -> str:
    """Claim and execute a queued run. Returns the final status, or 'not-claimed' for a no-op."""
    run = run_claim(run_id=run_id, worker=worker, kinds=(TrainingRun.Kind.REWARD_MODEL,), task_id=task_id)
    if run is None:
        log.info("training run %s not claimed (already taken, finished or not a reward model run)", run_id)
        return "not-claimed"
    from rewardtrainer.data import DataError

    return run_execute_guarded(
        run,
        _execute_with_heartbeat,
        label="training run",
        expected_errors=(DataError,),
        expected_prefix="Unusable training data: ",
    )


def _execute_with_heartbeat(run: TrainingRun) -> str:
    with _Heartbeat(run):
        return _execute(run)


def attempt_dir(out_dir: Path, run: TrainingRun) -> Path:
    """Where this attempt writes its finished model: its own folder beside the checkpoints that every
    attempt of the run shares. An attempt presumed dead that finishes anyway (a solo pool, a paused
    VM) then writes files no version points to, never over those of the attempt that recorded one."""
    return out_dir / f"attempt-{run.attempts}"


def _fit(run: TrainingRun, pairs, config, out_dir: Path, reporter: _Reporter):
    """Train in this process, or under torchrun with NPROC processes (DDP) when that is set."""
    nproc = int(settings.TRAINING["NPROC"])
    final_dir = attempt_dir(out_dir, run)
    if nproc > 1:
        return _fit_torchrun(pairs, config, out_dir, final_dir, reporter, nproc)
    from rewardtrainer.train_rm import fit_reward_model

    return fit_reward_model(
        pairs,
        config,
        out_dir,
        progress=reporter,
        should_stop=reporter.should_stop,
        resume=True,
        final_dir=final_dir,
    )


def _fit_torchrun(pairs, config, out_dir: Path, final_dir: Path, reporter: _Reporter, nproc: int):
    """`torchrun --nproc_per_node N -m rewardtrainer.train_rm`: progress comes back through a JSONL file
    (tailed here to update the run row and its heartbeat), cancellation goes out as a stop file.

    This process only supervises, so the stall watch moves here: it keeps the heartbeat's watch fed
    and, after STALL_TIMEOUT_SECONDS without a progress line (a hung collective), kills torchrun's whole
    process group (its own session: killing this process alone left the ranks running on the GPUs)
    and raises TimeoutError, a transient error: the attempt is retried while attempts remain. Any
    error here kills the group too, so no rank trains on beside the next attempt."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = out_dir / "pairs.jsonl"
    data.write_text("".join(json.dumps(dataclasses.asdict(p)) + "\n" for p in pairs))
    config_file = out_dir / "config.json"
    config_file.write_text(json.dumps(dataclasses.asdict(config)))
    progress_file, stop_file = out_dir / "progress.jsonl", out_dir / "STOP"
    progress_file.unlink(missing_ok=True)
    stop_file.unlink(missing_ok=True)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "rewardtrainer.train_rm", "--data", str(data), "--out", str(out_dir),
        "--config-json", str(config_file), "--progress-file", str(progress_file),
        "--stop-file", str(stop_file), "--final-dir", str(final_dir),
    ]  # fmt: skip
    log_file = (out_dir / "torchrun.log").open("ab")
    proc = subprocess.Popen(
        cmd,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=settings.BASE_DIR,
        env=os.environ,
        start_new_session=True,
    )
    try:
        _supervise_torchrun(proc, progress_file, stop_file, reporter)
    except BaseException:  # a hang, or an error here: no rank may go on training on its own
        _kill_group(proc)
        raise
    finally:
        log_file.close()
        # the prompt and answer texts: a consent withdrawal or the retention purge never reaches a copy
        # left here (each attempt writes its own)
        data.unlink(missing_ok=True)
    if proc.returncode != 0:
        tail = (out_dir / "torchrun.log").read_text(errors="replace")[-1500:]
        raise RuntimeError(f"torchrun exited with {proc.returncode}: {tail}")
    metrics_file = final_dir / "metrics.json"
    saved = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
    if stop_file.exists() or not saved:
        return SimpleNamespace(stopped=True)
    return SimpleNamespace(history=saved.pop("history"), **saved)


def _supervise_torchrun(proc, progress_file: Path, stop_file: Path, reporter: _Reporter) -> None:
    """Until torchrun exits: relay its progress lines, pass a cancel on, and end it when it hangs."""
    stall_after = settings.TRAINING["STALL_TIMEOUT_SECONDS"]
    offset, last_line = 0, time.monotonic()
    while proc.poll() is None:
        time.sleep(1.0)
        new_offset = _tail_progress(progress_file, offset, reporter)
        if new_offset != offset:
            offset, last_line = new_offset, time.monotonic()
        if reporter.should_stop():  # also this supervisor's sign of life for the heartbeat's watch
            stop_file.touch()
        idle = time.monotonic() - last_line
        if stall_after > 0 and idle > stall_after:
            raise TimeoutError(
                f"torchrun wrote no progress for {idle:.0f} s (RM_STALL_TIMEOUT {stall_after} s): presumed "
                "hung (a stuck collective?); its processes were killed"
            )
    _tail_progress(progress_file, offset, reporter)


def _kill_group(proc) -> None:
    """SIGKILL torchrun's process group (the launcher and every rank), and reap the launcher."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _tail_progress(path: Path, offset: int, reporter: _Reporter) -> int:
    if not path.exists():
        return offset
    with path.open() as f:
        f.seek(offset)
        for line in f:
            if line.endswith("\n"):
                reporter(json.loads(line))
                offset += len(line.encode())
    return offset


def _execute(run: TrainingRun) -> str:
    from rewardtrainer.data import DataError

    rating_ids = run.data_snapshot.get("rating_ids", [])
    if not rating_ids:
        snap = run.data_snapshot
        raise DataError(
            f"no usable ratings (consented: {snap.get('n_consented', 0)}, ties: {snap.get('n_ties', 0)}, "
            f"flagged broken: {snap.get('n_flagged_broken', 0)}, awaiting a personal-data review: "
            f"{snap.get('n_awaiting_review', 0)}); a tie or no rating teaches nothing."
        )
    pairs = training_pairs(rating_ids, weights=run.data_snapshot.get("trust_weights"))
    dropped = len(rating_ids) - len(pairs)
    if not pairs:
        raise DataError(
            f"all {len(rating_ids)} ratings of this run were excluded in review, withheld for personal "
            "data or lost their prompt's consent after it was queued; nothing is left to train on."
        )
    out_dir = Path(settings.ARTIFACTS_DIR) / f"reward-run-{run.pk}"
    out_dir.mkdir(parents=True, exist_ok=True)
    TrainingRun.objects.filter(pk=run.pk).update(artifact_path=str(out_dir))
    config = run_train_config(run)

    main = _Reporter(run, config.objective, (0.0, 0.5 if run.with_baseline else 1.0))
    result = _fit(run, pairs, config, out_dir / "main", main)
    if result.stopped or main.should_stop():
        _finish(run, TrainingRun.Status.CANCELLED, error="Cancelled; no version was recorded.")
        return TrainingRun.Status.CANCELLED

    baseline = None
    if run.with_baseline:
        side = _Reporter(run, "plain baseline", (0.5, 1.0))
        baseline = _fit(run, pairs, baseline_config(config), out_dir / "baseline", side)
        if baseline.stopped or side.should_stop():
            _finish(run, TrainingRun.Status.CANCELLED, error="Cancelled; no version was recorded.")
            return TrainingRun.Status.CANCELLED

    with transaction.atomic():
        locked = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if not run_still_owned(run, locked):
            return locked.status
        if locked.cancel_requested:  # asked to stop after the last progress write: no version
            _finish(run, TrainingRun.Status.CANCELLED, error="Cancelled; no version was recorded.")
            return TrainingRun.Status.CANCELLED
        run = locked
        version = _record_version(run, result, baseline)
        run.status = TrainingRun.Status.SUCCEEDED
        run.progress = 1.0
        run.finished_at = timezone.now()
        run.metrics = {
            **_scalars(result.metrics),
            "resumed_from_step": result.resumed_from_step or 0,
            "ratings_dropped_since_queued": dropped,
        }
        history = [{**row, "phase": config.objective} for row in result.history or []] + [
            {**row, "phase": "plain baseline"} for row in (baseline.history if baseline else [])
        ]
        run.metrics_history = [_finite(row) for row in history]
        run.error = ""
        run.save(update_fields=["status", "progress", "finished_at", "metrics", "metrics_history", "error"])
    reward_model_decide(version=version, device=config.device or None)
    return TrainingRun.Status.SUCCEEDED


# --- safe activation -------------------------------------------------------------------------------


def activation_decision(
    *, candidate: dict | None, active: dict | None, n_pairs: int, min_pairs: int, min_group: int = 0
) -> tuple[bool, str]:
    """Whether a new version may go live on its own, and why (the reason is shown on its page).

    `candidate` / `active` are metrics on the frozen evaluation set (`active` None when no version is
    active). Rule: the set holds at least `min_pairs` pairs and the candidate's balanced accuracy is
    above chance and at least the active version's. (Above chance: a collapsed model, whose rewards
    are all equal, ties every pair and scores exactly one half, which would replace an active version
    that happens to measure below one half on a small set; PPO against it learns nothing.) Balanced
    accuracy is the mean over the pairs the longer and the shorter answer won, so each of those groups
    needs `min_group` pairs: with none, it is the longer-won accuracy alone, which length scores 100% on.
    """
    if n_pairs < min_pairs:
        return False, (
            f"Not activated: the frozen evaluation set has {n_pairs} pairs, fewer than the {min_pairs} "
            "needed to judge a new version (RM_EVAL_SET_MIN_PAIRS). Activate it by hand if you trust it."
        )
    if n_pairs == 0:  # min_pairs 0: the operator chose not to require a set; nothing could be measured
        replaces = "none is active" if active is None else "it replaces the active version unmeasured"
        return True, f"Activated: no evaluation set is required (RM_EVAL_SET_MIN_PAIRS=0) and {replaces}."
    groups = [(candidate or {}).get(k) for k in ("n_longer_won", "n_shorter_won")]
    if min_group > 0 and None not in groups and min(groups) < min_group:
        return False, (
            f"Not activated: of the {n_pairs} frozen evaluation pairs the longer answer won {groups[0]} "
            f"and the shorter {groups[1]}; balanced accuracy needs at least {min_group} of each "
            "(RM_EVAL_SET_MIN_GROUP_PAIRS). Activate it by hand if you trust it."
        )
    cand = (candidate or {}).get("balanced_accuracy")
    if cand is None:
        return False, "Not activated: its balanced accuracy on the evaluation set could not be measured."
    coin = (
        False,
        f"Not activated: balanced accuracy {100 * cand:.1f}% on {n_pairs} frozen evaluation pairs, no "
        "better than a coin (a reward that ties every pair scores exactly 50%).",
    )
    if active is None:
        if cand <= 0.5 + 1e-9:
            return coin
        return True, f"Activated: balanced accuracy {100 * cand:.1f}% on {n_pairs} frozen evaluation pairs."
    act = active.get("balanced_accuracy")
    if act is None:
        return False, "Not activated: the active version's balanced accuracy could not be measured."
    if cand + 1e-9 < act:
        return False, (
            f"Not activated: balanced accuracy {100 * cand:.1f}% on {n_pairs} frozen evaluation pairs, "
            f"below the active version's {100 * act:.1f}%."
        )
    if cand <= 0.5 + 1e-9:
        return coin
    return True, (
        f"Activated: balanced accuracy {100 * cand:.1f}% on {n_pairs} frozen evaluation pairs, "
        f"at least the active version's {100 * act:.1f}%."
    )


def _eval_set_figures(model_dir: str, pairs, device: str | None) -> dict:
    """The model's figures on the frozen set, a NaN or an infinity as None at any depth: the decision
    read a NaN balanced accuracy as a number ("Activated: balanced accuracy nan%"), and only
    PostgreSQL's refusal of NaN in jsonb kept the broken model from being activated."""
    from rewardtrainer.evaluate import evaluate_model_dir

    return _finite(evaluate_model_dir(model_dir, pairs, device=device))


def reward_model_safe_activate(*, version: RewardModelVersion, device: str | None = None) -> bool:
    """Evaluate `version` and the active one on the frozen set; activate it when `activation_decision`
    allows (and AUTO_ACTIVATE is on). Records figures and the reason on the version either way.

    The version active when its run succeeded (the decision marker's) must still be active: a hand
    activation or roll-back made since stands. The immediate decision read the active version afresh
    after growing the evaluation set, so a roll-back in that window was compared against and replaced;
    only the re-sent decision checked."""
    active = reward_model_active()
    if _active_changed_since_success(version, active):
        return False
    eval_set_grow()
    pairs = eval_set_pairs()
    figures: dict = {"n_pairs": len(pairs)}
    candidate = current = None
    if pairs:
        candidate = _eval_set_figures(version.artifact_path, pairs, device)
        figures["candidate"] = candidate
        if active is not None and active.pk != version.pk:
            try:
                current = _eval_set_figures(active.artifact_path, pairs, device)
            except OSError as exc:  # the active model's files are gone: do not replace it blindly
                current = {"balanced_accuracy": None, "error": str(exc)}
            figures["active"] = current | {"number": active.number}
    min_pairs = settings.TRAINING["EVAL_SET_MIN_PAIRS"]
    replaces = active is not None and active.pk != version.pk
    ok, reason = activation_decision(
        candidate=candidate,
        # another active version, measured (or not: no pairs) is what the candidate would replace
        active=(current or {"balanced_accuracy": None}) if replaces else None,
        n_pairs=len(pairs),
        min_pairs=min_pairs,
        min_group=min(settings.TRAINING["EVAL_SET_MIN_GROUP_PAIRS"], min_pairs // 5),
    )
    if ok and not settings.TRAINING["AUTO_ACTIVATE"]:
        # the rule's verdict, said as what it would have done ("Activated: ..." after "Not activated"
        # read as a contradiction)
        why = reason.removeprefix("Activated: ").rstrip(".")
        ok = False
        reason = (
            "Not activated: automatic activation is off (RM_AUTO_ACTIVATE); the rule would have "
            f"activated it ({why}). Activate it by hand if you agree."
        )
    # The note and the activation in one transaction: an activation that failed (a lock timeout, a lost
    # connection) left "Activated: ..." on a version that was not active, which the error path, writing
    # only over a version still deciding, did not correct.
    with transaction.atomic():
        # every version row first, in the order reward_model_activate takes them: the note's UPDATE
        # locked this row first, and a hand activation meanwhile (holding the lower rows, waiting for
        # this one) deadlocked with it
        list(RewardModelVersion.objects.select_for_update().order_by("pk").values_list("pk", flat=True))
        # Only while the version still waits for this decision: staff may have activated it by hand
        # while it was scored, and their activation (and its line in the note) stands.
        if not RewardModelVersion.objects.filter(pk=version.pk, **_PENDING_VERSIONS).update(
            eval_set_metrics=figures, activation_note=reason
        ):
            log.info(
                "reward model v%s: decided by hand while it was scored; the decision is dropped",
                version.number,
            )
            return False
        if (
            ok
            and reward_model_activate(version=version, only_if_active=active.pk if active else None) is None
        ):
            ok, reason = False, _active_changed_note()
            # not over a hand activation of this very version made since the figures were written
            RewardModelVersion.objects.filter(pk=version.pk, is_active=False).update(activation_note=reason)
    version.refresh_from_db(fields=["eval_set_metrics", "activation_note", "is_active"])
    log.info("reward model v%s: %s", version.number, reason)
    return ok


def _active_changed_note() -> str:
    """Why a decision did not activate its version: the active version changed while it was scored
    (staff activated or rolled back to another one), and which one is active now."""
    now = reward_model_active()
    return (
        f"Not activated: the active version changed while this one was evaluated ({_active_now(now)}); "
        "compare and activate it by hand if it should replace that one."
    )


def _active_now(active: RewardModelVersion | None) -> str:
    """ "v14 is active now, activated by hand" (or "automatically", as its note's newest line says; a
    decision said "by hand" of an automatic activation too), or "none is active now"."""
    if active is None:
        return "none is active now"
    note = active.activation_note or ""
    how = (
        ", activated by hand"
        if note.startswith("Activated by hand")
        else ", activated automatically"
        if note.startswith("Activated: ")
        else ""
    )
    return f"v{active.number} is active now{how}"


def _active_changed_since_success(version: RewardModelVersion, active: RewardModelVersion | None) -> bool:
    """Whether the active version is no longer the one the decision marker recorded; if so the version
    is left undecided for staff, with the reason."""
    marker = version.eval_set_metrics or {}
    if DECISION_PENDING not in marker or (active.pk if active else None) == marker.get("active"):
        return False
    note = (
        "Not activated: the active version changed while this one waited for its decision "
        f"({_active_now(active)}); compare and activate it by hand if it should replace it."
    )
    if RewardModelVersion.objects.filter(pk=version.pk, **_PENDING_VERSIONS).update(
        eval_set_metrics={}, activation_note=note
    ):
        version.eval_set_metrics, version.activation_note = {}, note
    log.info("reward model v%s: %s", version.number, note)
    return True


DECISION_PENDING = "decision_pending_since"
# since when the decision waits, how often it was sent again, how many decisions started (the run's own
# counts as the first) and when the last one did, and which version was active when the run succeeded
_DECISION_MARKER_KEYS = (DECISION_PENDING, "resends", "started", "started_at", "active")
DECIDING_NOTE = "Deciding: to be scored on the frozen evaluation set against the active version."
_PENDING_VERSIONS = dict(
    eval_set_metrics__has_key=DECISION_PENDING, is_active=False, activation_note=DECIDING_NOTE
)


def database_now():
    """The database's clock. The decision marker is written by one machine (the worker) and read by
    another (beat): on their own clocks a skew of minutes would shift the wait by as much, as the
    heartbeats' Now() avoids."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        return cursor.fetchone()[0]


def decision_pending_marker(
    *, active: RewardModelVersion | None, resends: int = 0, started: int = 1, now=None
) -> dict:
    """What a version's eval_set_metrics hold from its run's success until its decision replaces them:
    since when (the database's clock), how often the decision was re-sent, how many decisions started
    (the one the run makes itself included), and which version was active then."""
    when = (now or database_now()).isoformat()
    values = (when, resends, started, when, active.pk if active else None)
    return dict(zip(_DECISION_MARKER_KEYS, values, strict=True))


def _decision_wait_seconds() -> int:
    """How long a decision may take before the check sends it again: the longest a phase may run
    without progress (RM_STALL_TIMEOUT), at least the heartbeat timeout. Shorter, and a slow decision
    (two models scored on a CPU) would be run twice at once."""
    t = settings.TRAINING
    return max(t["HEARTBEAT_TIMEOUT_SECONDS"], t["STALL_TIMEOUT_SECONDS"])


def reward_model_decisions_resend(*, now=None) -> list[int]:
    """Send the activation decision again for versions still waiting for it `_decision_wait_seconds`
    after their run succeeded (or after the last re-send): a worker killed between the run's success
    commit and the decision left the version undecided for ever, and the loop never moved on to it.
    After RM_MAX_ATTEMPTS re-sends (a decision that kills its worker every time, say out of memory) the
    version gets a reason and is left to staff. One conditional UPDATE per version (jsonb equality as a
    compare-and-set), so two beats at once send it once.

    Only decisions that started count toward giving up (RM_MAX_ATTEMPTS of them, the run's own
    included): messages that waited behind a long run on a busy worker, or could not be sent while the
    broker was down, counted as attempts, and a version nothing had tried to decide was given up as if
    its worker had died each time."""
    now = now or database_now()
    cutoff = now - timedelta(seconds=_decision_wait_seconds())
    waiting = RewardModelVersion.objects.filter(**_PENDING_VERSIONS).values_list("pk", "eval_set_metrics")
    return [pk for pk, figures in waiting if _decision_resend(pk, figures, now=now, cutoff=cutoff)]


def _decision_resend(pk: int, figures: dict, *, now, cutoff) -> bool:
    """Re-send one version's decision if `figures` (as read) are still its marker and older than
    `cutoff`; give up past RM_MAX_ATTEMPTS re-sends. Whether it was sent."""
    since = parse_datetime(str(figures.get(DECISION_PENDING)))
    if since is not None and since > cutoff:
        return False
    resends = int(figures.get("resends") or 0)
    started = _decisions_started(figures)
    same = RewardModelVersion.objects.filter(pk=pk, eval_set_metrics=figures)
    if started >= settings.TRAINING["MAX_ATTEMPTS"]:
        same.update(
            eval_set_metrics={},
            activation_note=f"Not activated: the worker deciding it stopped {started} times (killed, "
            "or out of memory loading the models); compare and activate it by hand if it should be.",
        )
        return False
    # "started" written out: a marker from before the count read one more start at each look
    marker = figures | {DECISION_PENDING: now.isoformat(), "resends": resends + 1, "started": started}
    return bool(same.update(eval_set_metrics=marker)) and _send_decision(pk)


def _decisions_started(marker: dict) -> int:
    """How many decisions of a version started; a marker from before this count had only the re-sends
    (each then counted as a start, after the run's own)."""
    started = marker.get("started")
    return int(started) if isinstance(started, int) else int(marker.get("resends") or 0) + 1


def _send_decision(version_id: int) -> bool:
    from labelapp import tasks

    try:
        tasks.decide_reward_model.apply_async(
            args=[version_id],
            queue=run_queue(TrainingRun.Kind.REWARD_MODEL),
            retry=False,
            # as long as the check waits for it before sending it again (a fixed hour killed decisions
            # that RM_STALL_TIMEOUT allowed more, and each kill counted toward giving the version up)
            time_limit=max(_decision_wait_seconds(), tasks.DECISION_LIMIT_S),
        )
    except _broker_errors() as exc:
        log.warning(
            "could not send the decision on version %s (%s); the next check tries again", version_id, exc
        )
        return False
    return True


def reward_model_decide_pending(*, version_id: int) -> bool | None:
    """The re-sent decision (task `decide_reward_model`): None when decided meanwhile (a duplicate
    message) or taken by another copy of the task. The version active when its run succeeded must still
    be active: a hand activation or roll-back made since stands, as it does during a decision."""
    version = RewardModelVersion.objects.filter(pk=version_id, **_PENDING_VERSIONS).first()
    if version is None:
        return None
    marker = version.eval_set_metrics
    now = database_now()
    last = parse_datetime(str(marker.get("started_at") or ""))
    if last is not None and (now - last).total_seconds() < _decision_wait_seconds():
        # another copy of the message (one per re-send while the worker was busy) while a decision
        # that started moments ago may still run: two at once loaded every model twice
        return None
    # the check waits again from now, and this decision counts as one that started
    started = marker | {
        DECISION_PENDING: now.isoformat(),
        "started": _decisions_started(marker) + 1,
        "started_at": now.isoformat(),
    }
    if not RewardModelVersion.objects.filter(pk=version.pk, eval_set_metrics=marker).update(
        eval_set_metrics=started
    ):
        return None
    version.eval_set_metrics = started
    return reward_model_decide(version=version, device=settings.TRAINING.get("DEVICE") or None)


def reward_model_decide(*, version: RewardModelVersion, device: str | None = None) -> bool:
    """`reward_model_safe_activate` for a run that has succeeded: an error there (a model that will not
    load, a lost connection) leaves the version inactive with the reason on its page instead of no
    decision at all, and the run stays succeeded."""
    try:
        return reward_model_safe_activate(version=version, device=device)
    except Exception as exc:  # noqa: BLE001 (any failure: the version must not be left undecided)
        log.exception("reward model v%s: the activation decision failed", version.number)
        note = (
            f"Not activated: the evaluation on the frozen set failed ({type(exc).__name__}: {exc}); "
            "activate it by hand, or the next run decides again."
        )
        with contextlib.suppress(Exception):  # the database may be what failed
            marker = (version.eval_set_metrics or {}).items()
            figures = {k: v for k, v in marker if k not in _DECISION_MARKER_KEYS}
            # not over a hand activation made while it was scored (as on the decision's own path)
            RewardModelVersion.objects.filter(pk=version.pk, **_PENDING_VERSIONS).update(
                activation_note=note[:2000],
                eval_set_metrics=figures | {"error": f"{type(exc).__name__}: {exc}"[:2000]},
            )
        return False


def _scalars(metrics: dict) -> dict:
    """The plain values of a metrics dict, as JSON can hold them (see `_finite`)."""
    return _finite({k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None})


def _finite(value):
    """`value` with every NaN or infinity, at any depth of its dicts and lists, as None: PostgreSQL's
    jsonb refuses them, and the run failed on a JSON syntax error instead of its reason."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _plots(result, baseline) -> dict:
    """The plot arrays rewardtrainer's evaluate() returns: per-answer length and rewards, buckets."""
    plots = {}
    for name, res in (("main", result), ("baseline", baseline)):
        if res is not None:
            plots[name] = res.metrics.get("plots", {})
    return plots


def _record_version(run: TrainingRun, result, baseline) -> RewardModelVersion:
    number = (RewardModelVersion.objects.aggregate(m=Max("number"))["m"] or 0) + 1
    extra = {
        "pairs_train": result.pairs_train,
        "pairs_val": result.pairs_val,
        "seconds": round(result.seconds, 1),
        "pairs_per_second": round(result.pairs_per_second, 2),
        "device": str(result.device),
        "resumed_from_step": result.resumed_from_step or 0,
        "steps": result.global_step,
    }
    return RewardModelVersion.objects.create(
        number=number,
        run=run,
        artifact_path=str(result.model_dir),
        metrics={**_scalars(result.metrics), **extra},
        plots=_plots(result, baseline),
        baseline_metrics=_scalars(baseline.metrics) if baseline is not None else {},
        # Replaced by the decision's figures and reason; left standing if the worker dies before it.
        eval_set_metrics=decision_pending_marker(active=reward_model_active()),
        activation_note=DECIDING_NOTE,
    )


_NOTE_LINES = 6  # the activation history a version's note keeps, newest first


def _note_prepend(note: str, line: str) -> str:
    return "\n".join([line, *[old for old in (note or "").splitlines() if old.strip()]][:_NOTE_LINES])


_ANY = object()


def reward_model_activate(
    *, version: RewardModelVersion, by=None, only_if_active=_ANY
) -> RewardModelVersion | None:
    """Make `version` the active reward model (activating an older one is the roll-back). `by`: the
    staff member who did it by hand (None: the automatic decision, whose reason the note holds
    already). Each version's note gains a line (what happened, when, by whom), so an automatic
    "Activated: ..." no longer stands on a version rolled back since, nor is a hand activation silent.
    NotPermitted when `by` may not activate reward models; AlreadyActive when `by` activates the
    active version (automatically, that changes nothing and returns it). `only_if_active` (a version
    pk, or None for "none is active"): activate only while that is still the active one, else return
    None (the automatic decision compared against it). Every version row is locked first: two activations at
    once apply one after the other (with only the active rows locked, the second missed the first's
    new active version and broke the one-active constraint: a 500)."""
    permission_check(by, "reward_model_activate")
    now = timezone.now()
    when = f"{now:%Y-%m-%d %H:%M} UTC"
    how = f"by hand by {by.username}" if by is not None else "automatically"
    with transaction.atomic():
        list(RewardModelVersion.objects.select_for_update().order_by("pk").values_list("pk", flat=True))
        # the note as it is now, not as the caller read it: an activation that waited for the lock
        # wrote its lines on a stale copy and lost the other's
        version.refresh_from_db(fields=["activation_note", "eval_set_metrics"])
        active_pk = RewardModelVersion.objects.filter(is_active=True).values_list("pk", flat=True).first()
        if only_if_active is not _ANY and active_pk != only_if_active:
            return None
        if active_pk == version.pk:
            # each repeat stamped activated_at anew and pushed a line into the note, whose last lines
            # (the automatic decision's reason among them) then fell off
            if by is not None:
                raise AlreadyActive(f"Reward model v{version.number} is already active; nothing changed.")
            return version
        replaced = list(
            RewardModelVersion.objects.select_for_update()
            .filter(is_active=True)
            .exclude(pk=version.pk)
            .order_by("pk")
        )
        for old in replaced:
            old.is_active = False
            old.activation_note = _note_prepend(
                old.activation_note, f"Deactivated {when}: v{version.number} was activated {how}."
            )
            old.save(update_fields=["is_active", "activation_note"])
        fields = ["is_active", "activated_at", "activation_note"]
        if by is not None:
            # activated by hand before its automatic decision ran: there is nothing left to decide
            if version.activation_note == DECIDING_NOTE:
                version.activation_note, version.eval_set_metrics = "", {}
                fields.append("eval_set_metrics")
            version.activation_note = _note_prepend(version.activation_note, f"Activated {how}, {when}.")
        version.is_active = True
        version.activated_at = now
        version.save(update_fields=fields)
    return version


def reward_model_active() -> RewardModelVersion | None:
    return RewardModelVersion.objects.filter(is_active=True).first()
