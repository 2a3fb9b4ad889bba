"""Reads for the quality pages: the newest precomputed report of a scope, a rater's own figures.

Pages never scan ratings: the quality job (services/quality.py) stores reports; these reads are one
indexed row each, the report's JSON cached for QUALITY["CACHE_SECONDS"] under its id.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.urls import reverse

from labelapp.charts import chart_html
from labelapp.models import GuidelineVersion, QualityReport, RaterProfile
from labelapp.services.quality import cache_key
from labelapp.templatetags.quality import rater_row_html

WIDE_CHARTS = {"longer", "position"}  # many series or many raters: full width

SORTABLE = {
    "rater": lambda r: r["rater"].lower(),
    "n": lambda r: r["n"],
    "trust": lambda r: r["trust"],
    "flags": lambda r: len(r["flags"]),
}
ESTIMATES = (
    "p_longer",
    "p_left",
    "length_slope",
    "position",
    "gold_accuracy",
    "agreement",
    "retest_agreement",
)
for _key in (*ESTIMATES, "speed", "fast"):
    SORTABLE[_key] = lambda r, k=_key: r[k]["value"]


def quality_job_ran() -> bool:
    """Whether the quality job ever stored a report (for any scope)."""
    return QualityReport.objects.exists()


def quality_report(*, version: GuidelineVersion | None) -> dict | None:
    """The newest report for all versions (version None) or one version, as a dict; None before the
    quality job first ran.

    The newest report's id comes from PostgreSQL (one index lookup), the report itself from the cache
    under that id: a job in another process writing a new report is seen at once, without the job
    having to reach every web process's cache."""
    version_id = version.pk if version else None
    latest = (
        QualityReport.objects.filter(guideline_version_id=version_id)
        .order_by("-computed_at", "-id")
        .values_list("id", flat=True)
        .first()
    )
    if latest is None:
        return None
    key = f"{cache_key(version_id)}:{latest}"
    found = cache.get(key)
    if found is None:
        found = (
            QualityReport.objects.filter(pk=latest)
            .values("id", "computed_at", "seconds", "n_ratings", "figures", "charts")
            .first()
        )
        # The rows' and charts' HTML is built once per report, not per request.
        for r in found["figures"]["raters"]:
            r["row_html"] = rater_row_html(r, reverse("quality_rater", args=[int(r["rater_id"])]))
        found["charts_html"] = {
            name: chart_html(f"chart-{name.replace('_', '-')}", spec, wide=name in WIDE_CHARTS)
            for name, spec in (found.pop("charts") or {}).items()
        }
        cache.set(key, found, settings.QUALITY["CACHE_SECONDS"])
    return found


def sorted_raters(raters: list[dict], *, sort: str, descending: bool) -> list[dict]:
    """Rater rows sorted by a column; rows without a value go last either way."""
    key = SORTABLE.get(sort, SORTABLE["rater"])
    present = [r for r in raters if key(r) is not None]
    missing = [r for r in raters if key(r) is None]
    return sorted(present, key=key, reverse=descending) + missing


def guideline_versions() -> list[GuidelineVersion]:
    return list(GuidelineVersion.objects.filter(published_at__isnull=False).order_by("-number"))


def own_profile(*, rater) -> RaterProfile | None:
    """Only ever the requesting rater's own profile (the view passes request.user)."""
    return RaterProfile.objects.filter(rater=rater).first()
