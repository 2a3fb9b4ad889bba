"""Staff pages for reward model training: runs with live progress, versions with metrics and plots."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from labelapp import charts
from labelapp.access import staff_required
from labelapp.models import RewardModelVersion, TrainingRun
from labelapp.services.training import (
    DECISION_PENDING,
    METRIC_LABELS,
    AlreadyActive,
    BrokerUnavailable,
    TooFewRatings,
    eval_set_size,
    metric_rows,
    reward_model_activate,
    training_new_ratings_count,
    training_run_cancel,
    training_run_request,
)


def _runs_context() -> dict:
    runs = list(TrainingRun.objects.select_related("requested_by")[:30])
    return {"runs": runs, "any_active": any(r.status in TrainingRun.ACTIVE for r in runs)}


@staff_required
def training_home(request: HttpRequest) -> HttpResponse:
    context = _runs_context()
    context.update(
        versions=RewardModelVersion.objects.select_related("run")[:30],
        new_ratings=training_new_ratings_count(),
        # the button's checkbox starts as the scheduled runs do
        with_baseline_default=settings.TRAINING["TRAIN_PLAIN_BASELINE"],
    )
    return render(request, "labelapp/training/home.html", context)


@staff_required
def training_runs_table(request: HttpRequest) -> HttpResponse:
    """The runs table alone: htmx polls it while a run is active. The poll that finds none active any
    more reloads the whole page, whose versions table (and activation) the finished run changed."""
    context = _runs_context()
    response = render(request, "labelapp/training/_runs_table.html", context)
    if request.htmx and not context["any_active"]:
        response["HX-Refresh"] = "true"
    return response


@staff_required
@require_POST
def training_start(request: HttpRequest) -> HttpResponse:
    try:
        run = training_run_request(
            trigger="manual",
            requested_by=request.user,
            force=True,
            # a checkbox: "on" when ticked; "false" or "0" from a script means no (bool() read it as yes)
            with_baseline=forms.BooleanField(required=False).clean(request.POST.get("with_baseline")),
        )
    except (BrokerUnavailable, TooFewRatings) as exc:
        messages.error(request, str(exc))
        return redirect("training_home")
    if run is None:
        messages.error(request, "A run is already queued or running: one at a time.")
        return redirect("training_home")
    messages.success(request, f"Run #{run.pk} queued on {run.data_snapshot['n_usable']} usable ratings.")
    return redirect("training_run", run_id=run.pk)


@staff_required
def training_run(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(TrainingRun, pk=run_id)
    template = "labelapp/training/_run_status.html" if request.htmx else "labelapp/training/run.html"
    context = {
        "run": run,
        "loss_chart": _loss_chart(run.metrics_history),
        "metric_rows": metric_rows(run.metrics),
        "progress_rows": metric_rows(
            {k[4:]: v for k, v in (run.progress_detail or {}).items() if k.startswith("val_")}
        ),
    }
    return render(request, template, context)


@staff_required
@require_POST
def training_run_cancel_view(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(TrainingRun, pk=run_id)
    if run.status not in TrainingRun.ACTIVE:
        messages.error(request, f"Run #{run.pk} is {run.status}; nothing to cancel.")
    else:
        training_run_cancel(run=run, by=request.user)
        messages.info(request, f"Cancelling run #{run.pk}.")
    return redirect("training_run", run_id=run.pk)


@staff_required
def reward_model_version(request: HttpRequest, number: int) -> HttpResponse:
    version = get_object_or_404(RewardModelVersion.objects.select_related("run"), number=number)
    return render(request, "labelapp/training/version.html", _version_context(version))


def _version_context(version: RewardModelVersion) -> dict:
    """Labelled, rounded figures: validation split (with the plain model beside it), frozen eval set."""
    base = version.baseline_metrics or {}
    keys = [k for k in METRIC_LABELS if k in version.metrics]
    rows = []
    for (label, value), key in zip(metric_rows(version.metrics, keys), keys, strict=True):
        plain = metric_rows(base, [key])
        rows.append((label, value, plain[0][1] if plain else ""))
    ev = version.eval_set_metrics or {}
    if DECISION_PENDING in ev:  # the decision's marker, not its figures ("active" is a pk there)
        ev = {}
    eval_keys = [
        "balanced_accuracy",
        "accuracy",
        "accuracy_longer_won",
        "accuracy_shorter_won",
        "pearson_length",
    ]
    eval_rows = []
    for key in eval_keys:
        cand = metric_rows(ev.get("candidate") or {}, [key])
        act = metric_rows(ev.get("active") or {}, [key])
        if cand or act:
            label = METRIC_LABELS[key]
            eval_rows.append((label, cand[0][1] if cand else "", act[0][1] if act else ""))
    return {
        "version": version,
        "charts": _version_charts(version),
        "metric_rows": rows,
        "has_baseline": bool(base),
        "eval_rows": eval_rows,
        "eval_n_pairs": ev.get("n_pairs"),
        "eval_active_number": (ev.get("active") or {}).get("number"),
        "eval_set_now": eval_set_size(),
    }


@staff_required
@require_POST
def reward_model_activate_view(request: HttpRequest, number: int) -> HttpResponse:
    version = get_object_or_404(RewardModelVersion, number=number)
    try:
        reward_model_activate(version=version, by=request.user)
    except AlreadyActive as e:
        messages.info(request, str(e))
    else:
        messages.success(request, f"Reward model v{version.number} is now active.")
    return redirect("reward_model_version", number=version.number)


# --- charts ---------------------------------------------------------------------------------------


def _loss_chart(history: list[dict]) -> dict:
    """Train and validation loss per step (Plotly spec). History rows come from evaluations, so a short
    run has a single row: drawn with markers, it still shows (an SVG polyline of one point did not)."""
    series: dict[str, list[tuple[float, float]]] = {}
    for row in history or []:
        step = row.get("step")
        if step is None:
            continue
        phase = row.get("phase", "")
        for key in ("train_loss", "val_loss"):
            if row.get(key) is not None:
                name = f"{key.replace('_', ' ')}{' (' + phase + ')' if phase else ''}"
                series.setdefault(name, []).append((float(step), float(row[key])))
    return charts.line_chart("Loss", series, "step", "loss") if series else {}


def _bucket_series(buckets, key: str) -> list[tuple[float, float]]:
    """(bucket middle, mean reward) from evaluate()'s length buckets."""
    return [((b["lo"] + b["hi"]) / 2, b[key]) for b in buckets or [] if b.get(key) is not None]


def _version_charts(version: RewardModelVersion) -> dict[str, dict]:
    """Loss curves, mean reward by length bucket, reward vs length: this model and the plain one beside it."""
    p = version.plots or {}
    odin = version.run.config.get("objective") == "odin" or bool(version.run.config.get("odin"))
    by_bucket: dict[str, list] = {}
    points: dict[str, list] = {}
    for key, label in (
        ("main", "quality head" if odin else "reward (before calibration)"),
        ("baseline", "plain model"),
    ):
        data = p.get(key) or {}
        if data.get("length_buckets"):
            by_bucket[label] = _bucket_series(data["length_buckets"], "mean_reward_quality")
            if key == "main" and odin:
                by_bucket["length head"] = _bucket_series(data["length_buckets"], "mean_reward_length")
        if data.get("length") and data.get("reward_quality"):
            points[label] = list(zip(data["length"], data["reward_quality"], strict=False))
    x_label = "answer length (characters)"
    return {
        "loss": _loss_chart(version.run.metrics_history),
        "buckets": charts.line_chart("Mean reward by answer length", by_bucket, x_label, "reward")
        if by_bucket
        else {},
        "scatter": charts.scatter("Reward vs answer length", points, x_label, "reward") if points else {},
    }
