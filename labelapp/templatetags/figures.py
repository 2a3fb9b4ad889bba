"""Template filters for training figures: one format for a metric wherever a page shows it."""

from __future__ import annotations

from django import template

from labelapp.services.training import format_metric

register = template.Library()


@register.filter
def metric(metrics: dict | None, key: str) -> str:
    """`metrics[key]` as the reward model version page writes it (accuracies as percentages, other
    figures to three decimals); empty when the metric is missing."""
    if not metrics or key not in metrics:
        return ""
    return format_metric(key, metrics[key])
