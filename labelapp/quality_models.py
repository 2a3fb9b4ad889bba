"""Tables of the quality area: precomputed dashboard reports and the simulator's decision log.

Kept out of models.py (imported at its end) so the quality work touches that shared file in one line.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class QualityReport(models.Model):
    """Dashboard figures computed by the quality job (heavy: a pass over every rating).

    One row per scope: all guideline versions (`guideline_version` empty) or one version. The newest
    row of a scope is the one pages show; pages never scan ratings themselves.
    """

    guideline_version = models.ForeignKey(
        "labelapp.GuidelineVersion", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    computed_at = models.DateTimeField(auto_now_add=True)
    seconds = models.FloatField(default=0.0, help_text="How long the computation took.")
    n_ratings = models.PositiveIntegerField(default=0)
    figures = models.JSONField(default=dict, help_text="Pool figures and per-rater rows.")
    charts = models.JSONField(default=dict, help_text="Plotly figure specs, ready for the page.")

    class Meta:
        ordering = ["-computed_at", "-id"]
        indexes = [
            models.Index(fields=["guideline_version", "-computed_at"], name="quality_report_latest"),
        ]

    def __str__(self) -> str:
        scope = f"v{self.guideline_version.number}" if self.guideline_version_id else "all versions"
        return f"Quality report ({scope}) {self.computed_at:%Y-%m-%d %H:%M}"


class SimulatedDecision(models.Model):
    """One judgment of a simulated rater, with the probabilities it was drawn from (the truth the
    quality metrics must recover) and the rater's configured biases."""

    rating = models.OneToOneField("labelapp.Rating", on_delete=models.CASCADE, related_name="simulated")
    rater = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    utility_a = models.FloatField()
    utility_b = models.FloatField()
    length_bias = models.FloatField()
    position_bias = models.FloatField()
    noise = models.FloatField()
    p_longer = models.FloatField(
        help_text="P(picked the longer answer | not a tie); null-free: 0.5 if equal."
    )
    p_left = models.FloatField(help_text="P(picked the left answer | not a tie).")
    p_tie = models.FloatField()
    seed = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"Simulated decision for rating #{self.rating_id}"
