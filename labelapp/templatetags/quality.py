"""`{{ estimate|est:2 }}`: a metrics.Estimate dict as "value [lo, hi] n=N" (escaped, no template include
per cell: a dashboard with hundreds of raters renders thousands of them)."""

from django import template
from django.utils.html import format_html
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def est(value: dict | None, digits: int = 2):
    if not value or value.get("value") is None:
        return mark_safe('<span class="muted">–</span>')  # a constant
    fmt = f"{{:.{int(digits)}f}}"
    if value.get("lo") is None:
        return format_html('{} <span class="n">n={}</span>', fmt.format(value["value"]), value["n"])
    return format_html(
        '{} <span class="ci">[{}, {}]</span> <span class="n">n={}</span>',
        fmt.format(value["value"]),
        fmt.format(value["lo"]),
        fmt.format(value["hi"]),
        value["n"],
    )
