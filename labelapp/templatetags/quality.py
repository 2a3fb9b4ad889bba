"""`{{ estimate|est:2 }}`: a metrics.Estimate dict as "value [lo, hi] n=N" (numbers only, so nothing to
escape; no template include per cell: a dashboard with hundreds of raters renders thousands)."""

from django import template
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


def est_html(value: dict | None, digits: int = 2) -> str:
    """The cell HTML for an estimate. Every interpolated value is a number formatted here."""
    if not value or value.get("value") is None:
        return '<span class="muted">–</span>'
    d = int(digits)
    n = int(value.get("n") or 0)
    if value.get("lo") is None:
        return f'{float(value["value"]):.{d}f} <span class="n">n={n}</span>'
    return (
        f'{float(value["value"]):.{d}f} <span class="ci">[{float(value["lo"]):.{d}f}, '
        f'{float(value["hi"]):.{d}f}]</span> <span class="n">n={n}</span>'
    )


@register.filter
def est(value: dict | None, digits: int = 2) -> SafeString:
    return mark_safe(est_html(value, digits))  # numbers and constant markup only
