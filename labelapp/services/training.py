"""Reward model retraining: snapshot consented ratings into pairs, run rewardtrainer, record versions.

The translation between the database and `rewardtrainer` (which knows nothing of Django) lives here.
Reliability rules (DESIGN sections 3 and 7), each backed by a test:
- single flight: at most one queued-or-running run (a partial unique index); a second request, or a
  second beat firing at the same moment, gets no new run;
- a worker owns a run only after the conditional UPDATE queued -> running; a redelivered task is a
  no-op;
- a worker killed mid-run leaves the run `running` with a stale heartbeat; the restarted worker (or
  the periodic check) puts it back to `queued`, and the next attempt resumes from the newest complete
  checkpoint in the run's folder;
- retries only on named transient errors, at most `max_attempts` attempts, then `failed` with the
  reason; bad data fails at once with a clear message and is never retried.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, OperationalError, transaction
from django.db.models import F, Max
from django.db.models.functions import Coalesce
from django.utils import timezone

from labelapp.models import Rating, RewardModelVersion, TrainingRun

log = logging.getLogger(__name__)


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
    """Ratings that may train a model: prompt consented, not a tie, not flagged broken."""
    return (
        Rating.objects.not_excluded()
        .filter(comparison__prompt__consent=True, flag_broken=False)
        .exclude(preference=0)
    )


def training_new_ratings_count() -> int:
    """Consented ratings newer than the data of the newest reward model version."""
    last = RewardModelVersion.objects.order_by("-number").select_related("run").first()
    since = (last.run.data_snapshot.get("max_rating_id", 0) if last else 0) or 0
    return Rating.objects.filter(comparison__prompt__consent=True, pk__gt=since).count()


def training_snapshot() -> dict:
    """Which ratings go into the next run (ids, so a retried run trains on exactly the same data)."""
    consented = Rating.objects.filter(comparison__prompt__consent=True)
    usable_ids = list(_usable_ratings().order_by("pk").values_list("pk", flat=True))
    return {
        "rating_ids": usable_ids,
        "n_usable": len(usable_ids),
        "n_consented": consented.count(),
        "n_ties": consented.filter(preference=0).count(),
        "n_flagged_broken": consented.filter(flag_broken=True).count(),
        "n_without_consent": Rating.objects.filter(comparison__prompt__consent=False).count(),
        "max_rating_id": Rating.objects.aggregate(m=Max("pk"))["m"] or 0,
        "taken_at": timezone.now().isoformat(),
    }


def training_pairs(rating_ids: list[int]):
    """Ratings -> rewardtrainer PreferencePairs (strength -> margin; weight 1 until rater trust exists)."""
    from rewardtrainer.data import PreferencePair

    margins = settings.TRAINING["MARGINS"]
    ratings = (
        Rating.objects.filter(pk__in=rating_ids)
        .select_related("comparison__prompt", "comparison__response_a", "comparison__response_b")
        .order_by("pk")
    )
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
                weight=1.0,
                pair_id=f"rating:{r.pk}",
                prompt_id=f"prompt:{c.prompt_id}",
            )
        )
    return pairs


def _train_config(run: TrainingRun, *, odin: bool):
    from rewardtrainer.train_rm import TrainConfig

    t = run.config
    kwargs = {
        "max_length": t["max_length"],
        "batch_size": t["batch_size"],
        "epochs": max(1, int(t["epochs"])),
        "lr": t["learning_rate"],
        "eval_every": t["eval_every"],
        "checkpoint_every": t["checkpoint_every"],
        "odin": odin,
        "val_fraction": t["val_fraction"],
        "seed": t.get("seed", 0),
    }
    if t.get("backbone"):
        kwargs["backbone"] = t["backbone"]
    if t.get("max_steps"):
        kwargs["max_steps"] = t["max_steps"]
    if t.get("device"):
        kwargs["device"] = t["device"]
    return TrainConfig(**kwargs)


# --- requesting runs ------------------------------------------------------------------------------


def _config_from_settings(*, with_baseline: bool | None) -> dict:
    t = settings.TRAINING
    return {
        "backbone": t["BACKBONE"],
        "max_length": t["MAX_LENGTH"],
        "batch_size": t["BATCH_SIZE"],
        "epochs": t["EPOCHS"],
        "max_steps": t["MAX_STEPS"],
        "learning_rate": t["LEARNING_RATE"],
        "eval_every": t["EVAL_EVERY"],
        "checkpoint_every": t["CHECKPOINT_EVERY"],
        "odin": t["ODIN"],
        "train_plain_baseline": t["TRAIN_PLAIN_BASELINE"] if with_baseline is None else with_baseline,
        "device": t["DEVICE"],
        "val_fraction": t["VAL_FRACTION"],
        "seed": 0,
    }


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
    unless `enqueue` is False (the caller executes the run itself).
    """
    if TrainingRun.objects.filter(kind=TrainingRun.Kind.REWARD_MODEL, status__in=TrainingRun.ACTIVE).exists():
        return None
    if not force and training_new_ratings_count() < settings.TRAINING["MIN_NEW_RATINGS"]:
        return None
    try:
        with transaction.atomic():
            run = TrainingRun.objects.create(
                kind=TrainingRun.Kind.REWARD_MODEL,
                trigger=trigger,
                requested_by=requested_by,
                max_attempts=settings.TRAINING["MAX_ATTEMPTS"],
                config=_config_from_settings(with_baseline=with_baseline),
                data_snapshot=training_snapshot(),
            )
    except IntegrityError:
        # Another request won the race for the single-flight slot (two beats at the same moment).
        return None
    if enqueue:
        _enqueue(run.pk)
    return run


def _enqueue(run_id: int) -> None:
    from labelapp.tasks import train_reward_model

    queue = settings.TRAINING["QUEUE"]
    transaction.on_commit(lambda: train_reward_model.apply_async(args=[run_id], queue=queue))


def training_recover_stale(
    *, worker: str | None = None, kinds: tuple[str, ...] = (TrainingRun.Kind.REWARD_MODEL,), enqueue=None
) -> list[int]:
    """Put runs whose worker died back in the queue (or fail them once out of attempts).

    With `worker`, every run that worker was running is presumed dead (called when that worker starts);
    without, runs whose heartbeat is older than HEARTBEAT_TIMEOUT_SECONDS are. Only runs of `kinds`,
    re-sent with `enqueue` (policy rounds go to their own task: services/policy.py).
    """
    enqueue = enqueue or _enqueue
    running = TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING, kind__in=kinds)
    if worker is not None:
        running = running.filter(worker=worker)
    else:
        cutoff = timezone.now() - timedelta(seconds=settings.TRAINING["HEARTBEAT_TIMEOUT_SECONDS"])
        running = running.filter(heartbeat_at__lt=cutoff)
    requeued = []
    for run in running:
        if run.attempts >= run.max_attempts:
            TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
                status=TrainingRun.Status.FAILED,
                finished_at=timezone.now(),
                error=f"The worker stopped during the run {run.attempts} times (killed or crashed); gave up.",
            )
            continue
        # Conditional: if the run is alive after all and finishes meanwhile, this changes nothing.
        if TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(
            status=TrainingRun.Status.QUEUED, worker=""
        ):
            requeued.append(run.pk)
            enqueue(run.pk)
    return requeued


def training_check_and_start() -> TrainingRun | None:
    """The periodic job: recover dead runs, then start one if enough new ratings arrived."""
    training_recover_stale()
    return training_run_request(trigger="beat")


def training_run_cancel(*, run: TrainingRun) -> None:
    """Queued runs stop at once; a running one stops at its next step and keeps its checkpoints."""
    if TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.CANCELLED, finished_at=timezone.now(), error="Cancelled before it started."
    ):
        return
    TrainingRun.objects.filter(pk=run.pk, status=TrainingRun.Status.RUNNING).update(cancel_requested=True)


# --- executing runs --------------------------------------------------------------------------------


class _Reporter:
    """Progress callback + cancellation check for rewardtrainer: writes progress and a heartbeat."""

    def __init__(self, run_id: int, phase: str, share: tuple[float, float]):
        self.run_id, self.phase, self.share = run_id, phase, share
        self._last_write = 0.0
        self._cancel = False

    def __call__(self, info: dict) -> None:
        info = {k: v for k, v in info.items() if isinstance(v, (int, float, str, bool)) or v is None}
        now = time.monotonic()
        if now - self._last_write < 1.0 and not any(k.startswith("val_") for k in info):
            return
        self._last_write = now
        total = info.get("total_steps") or 1
        lo, hi = self.share
        progress = lo + (hi - lo) * min(1.0, (info.get("step") or 0) / total)
        updated = TrainingRun.objects.filter(pk=self.run_id, status=TrainingRun.Status.RUNNING).update(
            progress=progress,
            progress_detail={"phase": self.phase, **info},
            heartbeat_at=timezone.now(),
        )
        self._cancel = (
            not updated or TrainingRun.objects.filter(pk=self.run_id, cancel_requested=True).exists()
        )

    def should_stop(self) -> bool:
        return self._cancel


def _finish(run_id: int, status: str, **fields) -> None:
    TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.RUNNING).update(
        status=status, finished_at=timezone.now(), **fields
    )


def training_run_execute(*, run_id: int, worker: str = "") -> str:
    """Claim and execute a queued run. Returns the final status, or 'not-claimed' for a no-op."""
    now = timezone.now()
    claimed = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).update(
        status=TrainingRun.Status.RUNNING,
        attempts=F("attempts") + 1,
        started_at=Coalesce(F("started_at"), now),
        heartbeat_at=now,
        worker=worker,
    )
    if claimed != 1:
        log.info("training run %s not claimed (already taken or finished)", run_id)
        return "not-claimed"
    run = TrainingRun.objects.get(pk=run_id)
    if run.attempts > run.max_attempts:
        _finish(run_id, TrainingRun.Status.FAILED, error=f"Gave up after {run.max_attempts} attempts.")
        return TrainingRun.Status.FAILED

    from rewardtrainer.data import DataError

    try:
        return _execute(run)
    except DataError as exc:
        _finish(run_id, TrainingRun.Status.FAILED, error=f"Unusable training data: {exc}")
        return TrainingRun.Status.FAILED
    except _transient_errors() as exc:
        if run.attempts < run.max_attempts:
            TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.RUNNING).update(
                status=TrainingRun.Status.QUEUED,
                worker="",
                error=f"Retrying after: {type(exc).__name__}: {exc}",
            )
            raise TransientTrainingError(str(exc)) from exc
        _finish(
            run_id, TrainingRun.Status.FAILED, error=f"{type(exc).__name__}: {exc} (attempt {run.attempts})"
        )
        return TrainingRun.Status.FAILED
    except Exception as exc:  # noqa: BLE001 (deterministic failures: say why, never loop)
        log.exception("training run %s failed", run_id)
        _finish(run_id, TrainingRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}")
        return TrainingRun.Status.FAILED


def _execute(run: TrainingRun) -> str:
    from rewardtrainer.data import DataError
    from rewardtrainer.train_rm import train_reward_model

    rating_ids = run.data_snapshot.get("rating_ids", [])
    if not rating_ids:
        snap = run.data_snapshot
        raise DataError(
            f"no usable ratings (consented: {snap.get('n_consented', 0)}, ties: {snap.get('n_ties', 0)}, "
            f"flagged broken: {snap.get('n_flagged_broken', 0)}); a tie or no rating teaches nothing."
        )
    pairs = training_pairs(rating_ids)
    out_dir = Path(settings.ARTIFACTS_DIR) / f"reward-run-{run.pk}"
    out_dir.mkdir(parents=True, exist_ok=True)
    TrainingRun.objects.filter(pk=run.pk).update(artifact_path=str(out_dir))
    with_baseline = bool(run.config.get("train_plain_baseline"))

    main = _Reporter(run.pk, "odin" if run.config["odin"] else "plain", (0.0, 0.5 if with_baseline else 1.0))
    result = train_reward_model(
        pairs,
        _train_config(run, odin=run.config["odin"]),
        out_dir / "main",
        progress=main,
        should_stop=main.should_stop,
        resume=True,
    )
    if result.stopped or main.should_stop():
        _finish(run.pk, TrainingRun.Status.CANCELLED, error="Cancelled; checkpoints kept.")
        return TrainingRun.Status.CANCELLED

    baseline = None
    if with_baseline:
        side = _Reporter(run.pk, "plain baseline", (0.5, 1.0))
        baseline = train_reward_model(
            pairs,
            _train_config(run, odin=False),
            out_dir / "baseline",
            progress=side,
            should_stop=side.should_stop,
            resume=True,
        )
        if baseline.stopped or side.should_stop():
            _finish(run.pk, TrainingRun.Status.CANCELLED, error="Cancelled; checkpoints kept.")
            return TrainingRun.Status.CANCELLED

    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(pk=run.pk)
        if run.status != TrainingRun.Status.RUNNING:
            return run.status
        version = _record_version(run, result, baseline)
        run.status = TrainingRun.Status.SUCCEEDED
        run.progress = 1.0
        run.finished_at = timezone.now()
        run.metrics = {**_scalars(result.metrics), "resumed_from_step": result.resumed_from_step or 0}
        main_phase = "odin" if run.config["odin"] else "plain"
        run.metrics_history = [{**row, "phase": main_phase} for row in result.history or []] + [
            {**row, "phase": "plain baseline"} for row in (baseline.history if baseline else [])
        ]
        run.error = ""
        run.save(update_fields=["status", "progress", "finished_at", "metrics", "metrics_history", "error"])
    if settings.TRAINING["AUTO_ACTIVATE"]:
        reward_model_activate(version=version)
    return TrainingRun.Status.SUCCEEDED


def _scalars(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}


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
    )


def reward_model_activate(*, version: RewardModelVersion) -> RewardModelVersion:
    """Make `version` the active reward model (activating an older one is the roll-back)."""
    with transaction.atomic():
        RewardModelVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
        version.is_active = True
        version.activated_at = timezone.now()
        version.save(update_fields=["is_active", "activated_at"])
    return version


def reward_model_active() -> RewardModelVersion | None:
    return RewardModelVersion.objects.filter(is_active=True).first()
