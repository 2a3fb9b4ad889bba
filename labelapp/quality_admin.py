"""Admin for the quality area's tables (imported at the end of admin.py). Both are written by jobs:
read-only here."""

from django.contrib import admin

from labelapp.admin_base import ReadOnlyAdmin
from labelapp.quality_models import QualityReport, SimulatedDecision


@admin.register(QualityReport)
class QualityReportAdmin(ReadOnlyAdmin):
    list_display = ("id", "guideline_version", "computed_at", "n_ratings", "seconds")
    list_filter = ("guideline_version",)
    search_fields = ("id",)
    exclude = ("charts",)


@admin.register(SimulatedDecision)
class SimulatedDecisionAdmin(ReadOnlyAdmin):
    list_display = (
        "rating",
        "rater",
        "utility_a",
        "utility_b",
        "length_bias",
        "position_bias",
        "p_longer",
        "p_left",
    )
    list_filter = ("length_bias", "position_bias")
    search_fields = ("rater__username",)
    list_select_related = ("rater",)
    raw_id_fields = ("rating", "rater")
