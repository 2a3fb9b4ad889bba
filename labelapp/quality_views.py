"""Quality pages: the staff dashboard (per-rater table, CSV, charts, by guideline version), one
rater's figures for staff, and a rater's own figures (never anyone else's)."""

from __future__ import annotations

import csv

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from labelapp.access import staff_required
from labelapp.models import GuidelineVersion, RaterProfile
from labelapp.quality_selectors import (
    SORTABLE,
    guideline_versions,
    own_profile,
    quality_job_ran,
    quality_report,
    sorted_raters,
)
from labelapp.services.quality import figures_for_rater, quality_refresh_request

CSV_COLUMNS = ["p_longer", "p_left", "length_slope", "position", "gold_accuracy", "agreement",
               "retest_agreement", "speed", "fast"]  # fmt: skip


COLUMNS = [
    ("rater", "rater"),
    ("n", "ratings"),
    ("p_longer", "P(longer)"),
    ("length_slope", "length slope"),
    ("p_left", "P(left)"),
    ("gold_accuracy", "gold accuracy"),
    ("agreement", "agreement"),
    ("retest_agreement", "test-retest"),
    ("speed", "chars/s"),
    ("fast", "too fast"),
    ("trust", "trust"),
    ("flags", "flags"),
]


def _columns(version: GuidelineVersion | None) -> list[tuple[str, str]]:
    """The table's columns. Filtered by a version, the trust column is that version's figure: the
    stored weight training uses counts every version (the rater's own page shows it)."""
    if version is None:
        return COLUMNS
    return [(col, f"trust (v{version.number} only)" if col == "trust" else label) for col, label in COLUMNS]


def _version(request: HttpRequest) -> GuidelineVersion | None:
    """The ?version=N filter; a bad or unknown value is a 404, not a 500."""
    raw = request.GET.get("version", "")
    if not raw:
        return None
    # int() itself decides: str.isdigit() also passes "²" and 5000-digit strings, which int() refuses.
    try:
        number = int(raw)
    except ValueError:
        raise Http404("Unknown guideline version.") from None
    return get_object_or_404(GuidelineVersion, number=number, published_at__isnull=False)


@staff_required
def quality_dashboard(request: HttpRequest) -> HttpResponse:
    version = _version(request)
    report = quality_report(version=version)
    sort = request.GET.get("sort", "rater")
    sort = sort if sort in SORTABLE else "rater"
    descending = request.GET.get("dir") == "desc"
    raters = sorted_raters(report["figures"]["raters"], sort=sort, descending=descending) if report else []
    rows = [mark_safe(r["row_html"]) for r in raters]  # built once per report (quality_selectors)
    return render(
        request,
        "labelapp/quality/dashboard.html",
        {
            "report": report,
            "pool": report["figures"]["pool"] if report else None,
            "rows": rows,
            "version": version,
            "versions": guideline_versions(),
            "sort": sort,
            "descending": descending,
            "charts": report["charts_html"] if report else {},
            "columns": _columns(version),
            "min_ratio": settings.QUALITY["MIN_LENGTH_RATIO"],
            # a version published since the last refresh has no figures yet, though the job ran
            "any_report": report is not None or quality_job_ran(),
        },
    )


def _cell(est: dict) -> str:
    return "" if est["value"] is None else f"{est['value']:.4f}"


@staff_required
def quality_raters_csv(request: HttpRequest) -> HttpResponse:
    version = _version(request)
    report = quality_report(version=version)
    response = HttpResponse(content_type="text/csv")
    scope = f"v{version.number}" if version else "all"
    response["Content-Disposition"] = f'attachment; filename="rater-quality-{scope}.csv"'
    writer = csv.writer(response)
    head = ["rater", "n", *[c for col in CSV_COLUMNS for c in (col, f"{col}_lo", f"{col}_hi", f"{col}_n")]]
    writer.writerow([*head, "trust", "flags"])
    for r in report["figures"]["raters"] if report else []:
        cells = []
        for col in CSV_COLUMNS:
            est = r[col]
            cells += [_cell(est), "" if est["lo"] is None else f"{est['lo']:.4f}",
                      "" if est["hi"] is None else f"{est['hi']:.4f}", est["n"]]  # fmt: skip
        # A username starting with = + - @ would be a formula in a spreadsheet: quote it as text.
        name = r["rater"]
        if name[:1] in ("=", "+", "-", "@"):
            name = "'" + name
        writer.writerow([name, r["n"], *cells, f"{r['trust']:.4f}", " ".join(r["flags"])])
    return response


@staff_required
def quality_rater(request: HttpRequest, rater_id: int) -> HttpResponse:
    """One rater's figures, for staff."""
    user = get_object_or_404(get_user_model(), pk=rater_id)
    profile = RaterProfile.objects.filter(rater=user).first()
    return _figures_page(request, subject=user, profile=profile, own=False)


@login_required
def quality_me(request: HttpRequest) -> HttpResponse:
    """The requesting rater's own figures; there is no parameter that could name someone else."""
    return _figures_page(request, subject=request.user, profile=own_profile(rater=request.user), own=True)


def _figures_page(request: HttpRequest, *, subject, profile: RaterProfile | None, own: bool) -> HttpResponse:
    figures = profile.figures if profile and profile.figures else None
    if own and figures:
        figures = figures_for_rater(figures)
    chart = (figures or {}).get("chart") or {}  # built by the quality job: no plotting work here
    return render(
        request,
        "labelapp/quality/rater.html",
        {
            "subject": subject,
            "profile": profile,
            "f": figures,
            "chart": chart,
            "own": own,
            "min_ratio": settings.QUALITY["MIN_LENGTH_RATIO"],
            # a rater's own page with gold feedback off shows values only (figures_for_rater)
            "intervals": not own or settings.LABEL["GOLD_FEEDBACK"],
        },
    )


@staff_required
@require_POST
def quality_refresh_now(request: HttpRequest) -> HttpResponse:
    quality_refresh_request(by=request.user)
    messages.info(request, "Recomputing the quality figures in the background; reload in a minute.")
    return redirect("quality_dashboard")
