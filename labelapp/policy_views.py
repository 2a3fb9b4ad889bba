"""Staff pages for the policy loop: versions with round curves and warnings, a version's PPO curves,
the sample viewer (previous and new answer side by side), and the buttons that start a round."""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from labelapp import charts as plotly_charts
from labelapp.access import staff_required
from labelapp.models import PolicyVersion, TrainingRun
from labelapp.services.policy import (
    POLICY_KINDS,
    PolicyError,
    policy_figure,
    policy_next_parent,
    policy_reinstate,
    policy_reject,
    policy_round_request,
    policy_sample_pairs,
    policy_version_get,
    policy_versions_overview,
    policy_warnings,
    policy_weights_version,
    policy_win_rate,
)
from labelapp.services.roles import NotPermitted
from labelapp.services.training import BrokerUnavailable


@staff_required
def policy_home(request: HttpRequest) -> HttpResponse:
    rows = policy_versions_overview()
    runs = TrainingRun.objects.filter(kind__in=POLICY_KINDS).select_related("policy_version")[:20]
    any_active = any(r.status in TrainingRun.ACTIVE for r in runs)
    response = render(
        request,
        "labelapp/policy/home.html",
        {
            "rows": rows,
            "versions_total": PolicyVersion.objects.count(),
            "runs": runs,
            "any_active": any_active,
            "next_parent": policy_next_parent(),
            "charts": _round_charts(rows),
        },
    )
    if request.htmx and request.htmx.target == "policy-runs" and not any_active:
        # the poll of the rounds table that finds none running: the versions and curves changed too
        response["HX-Refresh"] = "true"
    return response


@staff_required
@require_POST
def policy_round_start(request: HttpRequest) -> HttpResponse:
    kind = request.POST.get("kind", "")
    try:
        run = policy_round_request(kind=kind, trigger="manual", requested_by=request.user)
    except (PolicyError, BrokerUnavailable) as exc:
        messages.error(request, str(exc))
        return redirect("policy_home")
    if run is None:
        messages.error(request, "A policy round is already queued or running: one at a time.")
    else:
        messages.success(request, f"Round #{run.pk} ({run.get_kind_display()}) queued.")
    return redirect("policy_home")


def _version_or_404(number: int) -> PolicyVersion:
    version = policy_version_get(number)
    if version is None:
        raise Http404("No such policy version.")
    return version


def _render_version(
    request, version: PolicyVersion, *, reject_error: str = "", reinstate_error: str = "", status: int = 200
):
    win = policy_win_rate(version=version)
    return render(
        request,
        "labelapp/policy/version.html",
        {
            "version": version,
            "win": win,
            "warnings": policy_warnings(version=version, win=win),
            "charts": _update_charts(version.history),
            "weights_version": policy_weights_version(version),
            "decisions": list(version.decisions.select_related("by")),
            "reject_error": reject_error,
            "reinstate_error": reinstate_error,
            "typed_reason": request.POST.get("reason", "") if request.method == "POST" else "",
        },
        status=status,
    )


@staff_required
def policy_version(request: HttpRequest, number: int) -> HttpResponse:
    return _render_version(request, _version_or_404(number))


def _decide(request, number: int, decide, error_field: str, done: str) -> HttpResponse:
    """Call a decision service with the typed reason; on PolicyError the page comes back (400) with the
    error under the form `error_field` names and the text kept; otherwise a message and a redirect."""
    version = _version_or_404(number)
    try:
        decide(version=version, reason=request.POST.get("reason", ""), by=request.user)
    except PolicyError as exc:
        return _render_version(request, version, **{error_field: str(exc)}, status=400)
    except NotPermitted as exc:  # the page again with the typed reason, not a bare 403 page
        return _render_version(request, version, **{error_field: str(exc)}, status=403)
    messages.success(request, f"v{number} {done} v{policy_next_parent().number}.")
    return redirect("policy_version", number=number)


@staff_required
@require_POST
def policy_version_reject(request: HttpRequest, number: int) -> HttpResponse:
    """Reject a version with a reason."""
    return _decide(request, number, policy_reject, "reject_error", "rejected: later rounds start from")


@staff_required
@require_POST
def policy_version_reinstate(request: HttpRequest, number: int) -> HttpResponse:
    """Lift a rejection with a reason."""
    return _decide(
        request, number, policy_reinstate, "reinstate_error", "reinstated: the next round starts from"
    )


@staff_required
def policy_samples(request: HttpRequest, number: int) -> HttpResponse:
    version = _version_or_404(number)
    page = Paginator(policy_sample_pairs(version=version), 20).get_page(request.GET.get("page"))
    return render(request, "labelapp/policy/samples.html", {"version": version, "page": page})


# --- charts ----------------------------------------------------------------------------------------------


def _round_charts(rows) -> dict[str, dict]:
    """One point per policy version (x = version number): the over-optimization watch over rounds."""
    ordered = sorted(rows, key=lambda r: r.version.number)

    def series(key):
        # a figure a round did not store (or stored as null, as older rounds did) is a gap, not a 500
        return [
            (float(r.version.number), value)
            for r in ordered
            if (value := policy_figure(r.version.metrics.get(key))) is not None
        ]

    win = [(float(r.version.number), r.win["win_rate"]) for r in ordered if r.win]
    lc_win = [
        (float(r.version.number), r.win["lc_win_rate"])
        for r in ordered
        if r.win and r.win["lc_win_rate"] is not None
    ]
    charts = {
        "reward": plotly_charts.line_chart(
            "Reward model score", {"eval answers": series("rm_score")}, "version", "score"
        ),
        "kl": plotly_charts.line_chart(
            "KL to the reference", {"KL": series("kl")}, "version", "nats per answer"
        ),
        "length": plotly_charts.line_chart(
            "Mean answer length", {"tokens": series("mean_length")}, "version", "tokens"
        ),
        "entropy": plotly_charts.line_chart(
            "Entropy (last PPO update)", {"entropy": series("entropy")}, "version", "nats"
        ),
        "win": plotly_charts.line_chart(
            "Win rate vs previous",
            {"win rate": win, "length-controlled": lc_win},
            "version",
            "share",
        )
        if win
        else {},
    }
    return {k: plotly_charts.whole_number_x(v) for k, v in charts.items() if v}


def _update_charts(history: list[dict]) -> dict[str, dict]:
    """Per-update PPO curves of one round."""

    def series(key):
        # a figure an update did not store (null, NaN, a string in a hand-edited row) is a gap
        points = ((policy_figure(r.get("update")), policy_figure(r.get(key))) for r in history or [])
        return [(x, y) for x, y in points if x is not None and y is not None]

    charts = {
        "reward": plotly_charts.line_chart(
            "Reward",
            {"raw": series("reward_raw"), "normalized": series("reward_normalized")},
            "update",
            "reward",
        ),
        "kl": plotly_charts.with_right_axis(
            plotly_charts.line_chart("KL and beta", {"KL": series("kl")}, "update", "nats per answer"),
            "beta",
            series("beta"),
        ),
        "length": plotly_charts.line_chart(
            "Response length", {"tokens": series("response_length")}, "update", "tokens"
        ),
        "entropy": plotly_charts.line_chart(
            "Entropy", {"entropy": series("entropy")}, "update", "nats per token"
        ),
        "ppo": plotly_charts.line_chart(
            "PPO diagnostics",
            {
                "clipfrac": series("clipfrac"),
                "approx_kl": series("approx_kl"),
                "expl. var.": series("explained_variance"),
            },
            "update",
            "",
        ),
    }
    return {k: plotly_charts.whole_number_x(v) for k, v in charts.items() if v}
