"""`{{ estimate|est:2 }}`: a metrics.Estimate dict as "value [lo, hi] n=N" (numbers only, so nothing to
escape; no template include per cell: a dashboard with hundreds of raters renders thousands)."""

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()


def est_html(value: dict | None, digits: int = 2) -> str:
    """The cell HTML for an estimate. Every interpolated value is a number formatted here."""
    if not value or value.get("value") is None:
        return '<span class="muted">–</span>'
    d = int(digits)
    # n None: a count withheld (a rater's own gold-free figures), not zero judgments
    count = "" if value.get("n") is None else f' <span class="n">n={int(value["n"])}</span>'
    if value.get("lo") is None:
        return f"{float(value['value']):.{d}f}{count}"
    return (
        f'{float(value["value"]):.{d}f} <span class="ci">[{float(value["lo"]):.{d}f}, '
        f"{float(value['hi']):.{d}f}]</span>{count}"
    )


@register.filter
def est(value: dict | None, digits: int = 2) -> SafeString:
    return mark_safe(est_html(value, digits))  # numbers and constant markup only


# (column, digits) of the estimate cells of the dashboard's rater table, after rater and n.
ROW_CELLS = [("p_longer", 2), ("length_slope", 2), ("p_left", 2), ("gold_accuracy", 2), ("agreement", 2),
             ("retest_agreement", 2), ("speed", 0), ("fast", 2)]  # fmt: skip


def rater_row_html(r: dict, url: str) -> str:
    """One row of the dashboard's rater table. Hundreds of rows through template filters cost ~100 ms
    a page, so each report's rows are formatted once (quality_selectors caches them). The username
    and flags are escaped; everything else is a number formatted here."""
    cells = "".join(f"<td>{est_html(r[col], digits)}</td>" for col, digits in ROW_CELLS)
    flags = " ".join(f'<span class="flag">{escape(f)}</span>' for f in r["flags"])
    flagged = ' class="flagged"' if r["flags"] else ""
    return (
        f'<tr{flagged}><td class="text"><a href="{escape(url)}">{escape(r["rater"])}</a></td>'
        f"<td>{int(r['n'])}</td>{cells}"
        f"<td>{float(r['trust']):.2f}</td><td>{flags}</td></tr>"
    )
