"""Reads for the quality pages: the newest precomputed report of a scope, a rater's own figures.

Pages never scan ratings: the quality job (services/quality.py) stores reports; these reads are one
indexed row each, cached for QUALITY["CACHE_SECONDS"] (the job clears the cache when it writes).
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache

from labelapp.models import GuidelineVersion, QualityReport, RaterProfile
from labelapp.services.quality import cache_key

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


def quality_report(*, version: GuidelineVersion | None) -> dict | None:
    """The newest report for all versions (version None) or one version, as a dict; None before the
    quality job first ran."""
    version_id = version.pk if version else None
    key = cache_key(version_id)
    found = cache.get(key)
    if found is not None:
        return found or None
    row = (
        QualityReport.objects.filter(guideline_version_id=version_id)
        .order_by("-computed_at", "-id")
        .values("id", "computed_at", "seconds", "n_ratings", "figures", "charts")
        .first()
    )
    cache.set(key, row or {}, settings.QUALITY["CACHE_SECONDS"])
    return row


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
