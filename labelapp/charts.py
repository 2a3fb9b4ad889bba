"""Chart specs for Plotly: plotly.min.js, shipped in Plotly's Python package, draws them in the page.

Functions return plain JSON-ready figure dicts ({"data": [...], "layout": {...}}) in Plotly's schema.
They are built as dicts, not through plotly.graph_objects, because the graph objects' property
validation costs 30-100 ms a figure and the quality job draws one per rater; `validate()` runs each
spec through plotly.graph_objects (tests do, for every kind of chart), so a typo still fails loudly.
Templates put a spec in a `json_script` element and static/labelapp/charts.js calls Plotly.react:
no inline script, no CDN. Plotly reads a few tags in chart text (<b>, <a href>, <br>) as markup, so
every name that comes from data (rater names, series names) goes through `_text`: a rater named
"r<b>x</b>" showed as a bold "rx", and an <a> as a link.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import expit  # the logistic without overflow warnings at large logits

from labelapp import metrics

COLORS = ["#2454c5", "#d9480f", "#2f9e44", "#7048e8", "#868e96", "#e8590c", "#1098ad", "#c2255c"]


def _text(value) -> str:
    """A name as Plotly shows it literally: its pseudo-HTML decodes these entities back."""
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _layout(*, legend_right: bool = False, **kw) -> dict:
    """Common layout. The legend never covers data or axis titles: below the plot, under the x title
    (bottom margin reserved for it), or, for charts with many series, in a column on the right."""
    axis = {"gridcolor": "#eee", "zerolinecolor": "#ccc", "automargin": True}
    if legend_right:
        legend = {"orientation": "v", "yanchor": "top", "y": 1, "xanchor": "left", "x": 1.02}
        margin = {"l": 60, "r": 10, "t": 40, "b": 60}
    else:
        legend = {"orientation": "h", "yanchor": "top", "y": -0.32, "xanchor": "left", "x": 0}
        margin = {"l": 60, "r": 20, "t": 40, "b": 110}
    layout = {
        "margin": margin,
        "height": 380,
        "plot_bgcolor": "#fff",
        "legend": legend,
        "xaxis": dict(axis),
        "yaxis": dict(axis),
    }
    for key, value in kw.items():
        if key in ("xaxis", "yaxis"):
            layout[key].update(value)
        elif key == "title":
            layout["title"] = {"text": value}
        else:
            layout[key] = value
    return layout


def _hline(y: float) -> dict:
    return {
        "type": "line",
        "xref": "paper",
        "x0": 0,
        "x1": 1,
        "yref": "y",
        "y0": y,
        "y1": y,
        "line": {"dash": "dot", "color": "#999"},
    }


def _vline(x: float) -> dict:
    return {
        "type": "line",
        "yref": "paper",
        "y0": 0,
        "y1": 1,
        "xref": "x",
        "x0": x,
        "x1": x,
        "line": {"dash": "dash", "color": "#d9480f"},
    }


def chart_html(chart_id: str, spec: dict, *, wide: bool = False) -> str:
    """The same markup as templates/labelapp/_chart.html, built once so a cached page skips the JSON
    encoding of large specs. json_script escapes <, > and & inside the JSON."""
    from django.utils.html import format_html, json_script

    if not spec:
        return ""
    return format_html(
        '<div class="chart-box plotly-chart{}" id="{}" data-spec="{}" role="img" aria-label="Chart: {}">'
        "</div>{}",
        " wide" if wide else "",
        chart_id,
        f"{chart_id}-spec",
        chart_title(spec),
        json_script(spec, f"{chart_id}-spec"),
    )


def chart_title(spec: dict) -> str:
    """What a screen reader says for a chart (its title; the figures are in the page's tables)."""
    title = (spec.get("layout") or {}).get("title") or {}
    return (title.get("text") if isinstance(title, dict) else str(title)) or "figures above"


def validate(spec: dict) -> dict:
    """Run a spec through plotly.graph_objects (raises on an unknown or malformed property)."""
    import plotly.graph_objects as go

    return go.Figure(spec).to_plotly_json()


def _finite(points):
    return [
        (float(x), float(y))
        for x, y in points
        if isinstance(x, (int, float))
        and isinstance(y, (int, float))
        and math.isfinite(x)
        and math.isfinite(y)
    ]


def _xy_figure(title: str, data: list[dict], x_label: str, y_label: str) -> dict:
    """A figure of traces on two titled axes; {} when there is no trace (the template draws nothing)."""
    if not data:
        return {}
    return {
        "data": data,
        "layout": _layout(
            title=title, xaxis={"title": {"text": x_label}}, yaxis={"title": {"text": y_label}}
        ),
    }


def whole_number_x(spec: dict) -> dict:
    """Ticks on whole numbers only, for an x axis of counts (policy versions, PPO updates): Plotly's own
    ticks put "version 1.2, 1.4, ..." between two versions. About ten ticks at most."""
    xs = [x for trace in spec.get("data", []) for x in trace.get("x", [])]
    if xs:
        step = max(1, math.ceil((max(xs) - min(xs)) / 10))
        spec["layout"]["xaxis"].update(tickmode="linear", tick0=0, dtick=step, tickformat="d")
    return spec


def with_right_axis(spec: dict, name: str, points: list[tuple[float, float]]) -> dict:
    """`spec` with one more line on its own axis at the right, for a quantity on another scale (the
    KL coefficient beside the KL it controls: on the KL's axis it lay flat near zero)."""
    pts = sorted(_finite(points))
    if not spec or not pts:
        return spec
    trace = _line_trace(f"{name} (right axis)", pts, COLORS[len(spec["data"]) % len(COLORS)])
    trace["line"]["dash"] = "dot"
    spec["data"].append(trace | {"yaxis": "y2"})
    right = {"title": {"text": _text(name)}, "overlaying": "y", "side": "right", "showgrid": False}
    spec["layout"]["yaxis2"] = right
    spec["layout"]["margin"]["r"] = 60
    return spec


def line_chart(title: str, series: dict[str, list[tuple[float, float]]], x_label: str, y_label: str) -> dict:
    """Lines with markers (a run with one evaluation still shows its point). {} when there is nothing."""
    data = []
    for i, (name, points) in enumerate(series.items()):
        pts = sorted(_finite(points))
        if not pts:
            continue
        data.append(_line_trace(name, pts, COLORS[i % len(COLORS)]))
    return _xy_figure(title, data, x_label, y_label)


def _line_trace(name: str, pts: list[tuple[float, float]], color: str) -> dict:
    """One line with markers through sorted, finite points."""
    return {
        "type": "scatter",
        "mode": "lines+markers",
        "name": _text(name),
        "x": [p[0] for p in pts],
        "y": [p[1] for p in pts],
        "marker": {"size": 5 if len(pts) > 30 else 7, "color": color},
        "line": {"color": color},
    }


def scatter(
    title: str,
    series: dict[str, list[tuple[float, float]]],
    x_label: str,
    y_label: str,
    max_points: int = 1500,
) -> dict:
    data = []
    for i, (name, points) in enumerate(series.items()):
        pts = _finite(points)[:max_points]
        if not pts:
            continue
        data.append(
            {
                "type": "scattergl",
                "mode": "markers",
                "name": _text(name),
                "x": [p[0] for p in pts],
                "y": [p[1] for p in pts],
                "marker": {"size": 4, "opacity": 0.5, "color": COLORS[i % len(COLORS)]},
            }
        )
    return _xy_figure(title, data, x_label, y_label)


# --- quality dashboard ------------------------------------------------------------------------------


def _err(rows: list[dict]) -> dict:
    return {
        "type": "data",
        "symmetric": False,
        "array": [(r["hi"] - r["value"]) if r["hi"] is not None else 0 for r in rows],
        "arrayminus": [(r["value"] - r["lo"]) if r["lo"] is not None else 0 for r in rows],
    }


def longer_chart(
    curves: dict[str, dict], title: str = "P(chose the longer answer) by length ratio", *, counts: bool = True
) -> dict:
    """Binned P(chose longer) with Wilson intervals and the fitted logistic curve, per series; without
    `counts`, no judgment counts in legend or hover and no error bars (see rater_longer_chart)."""
    data = []
    for i, (name, curve) in enumerate(curves.items()):
        bins = [b for b in curve["bins"] if b["value"] is not None]
        if not bins:
            continue
        color = COLORS[i % len(COLORS)]
        visible = True if i < 1 else "legendonly"  # the first series; others on demand from the legend
        markers = {
            "type": "scatter",
            "mode": "markers",
            "name": _text(name),
            "legendgroup": name,
            "visible": visible,
            "x": [b["ratio"] for b in bins],
            "y": [b["value"] for b in bins],
            "marker": {"color": color, "size": 8},
            "hovertemplate": "ratio %{x:.2f}: %{y:.2f}",
        }
        if counts:  # without counts, no error bars either: a Wilson interval gives its count back
            markers["error_y"] = _err(bins)
            markers["name"] = f"{_text(name)} (n={sum(b['n'] for b in bins)})"
            markers["customdata"] = [b["n"] for b in bins]
            markers["hovertemplate"] += " (n=%{customdata})"
        data.append(markers)
        if curve.get("slope") is not None:
            xs = np.linspace(0, math.log(max(b["ratio"] for b in bins) * 1.1), 40)
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    # This curve fits length alone; the tables' "length slope" fits length and position
                    # together, so the two numbers differ where a rater also leans to one side.
                    "name": f"{_text(name)}: fit on length alone, slope {curve['slope']:.2f}",
                    "legendgroup": name,
                    "visible": visible,
                    "x": np.exp(xs).round(4).tolist(),
                    "y": expit(curve["slope"] * xs).round(4).tolist(),
                    "line": {"color": color},
                    "hoverinfo": "skip",
                }
            )
    if not data:
        return {}
    layout = _layout(
        title=title,
        legend_right=len(data) > 4,
        shapes=[_hline(0.5)],
        xaxis={"title": {"text": "length ratio (longer / shorter, words)"}, "type": "log"},
        yaxis={"title": {"text": "P(chose longer)"}, "range": [0, 1]},
    )
    return {"data": data, "layout": layout}


def position_chart(raters: list[dict]) -> dict:
    """P(chose left) per rater with Wilson intervals, sorted."""
    rows = sorted((r for r in raters if r["p_left"]["value"] is not None), key=lambda r: r["p_left"]["value"])
    if not rows:
        return {}
    est = [r["p_left"] for r in rows]
    colors = ["#d9480f" if "position" in r["flags"] else "#2454c5" for r in rows]
    data = [
        {
            "type": "scatter",
            "mode": "markers",
            "name": "P(left)",
            "x": [_text(r["rater"]) for r in rows],
            "y": [e["value"] for e in est],
            "error_y": _err(est),
            "marker": {"color": colors, "size": 8},
            "customdata": [e["n"] for e in est],
            "hovertemplate": "%{x}: %{y:.2f} (n=%{customdata})<extra></extra>",
        }
    ]
    layout = _layout(
        title="Position bias: P(chose the left answer) per rater (95% interval; orange = flagged)",
        shapes=[_hline(0.5)],
        showlegend=False,
        xaxis={"type": "category"},
        yaxis={"title": {"text": "P(chose left)"}, "range": [0, 1]},
    )
    return {"data": data, "layout": layout}


def by_version_chart(by_version: list[dict]) -> dict:
    """Agreement, Krippendorff's alpha and P(chose longer) per guideline version, with intervals."""
    rows = [v for v in by_version if v.get("version") is not None]
    if not rows:
        return {}
    x = [f"v{v['version']}" for v in rows]
    data = []
    series = (
        ("agreement", "agreement on sign"),
        ("alpha", "Krippendorff's alpha (ordinal)"),
        ("p_longer", "P(longer)"),
    )
    for i, (key, label) in enumerate(series):
        est = [
            v[key] if v[key]["value"] is not None else {"value": None, "lo": None, "hi": None} for v in rows
        ]
        data.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": label,
                "x": x,
                "y": [e["value"] for e in est],
                "error_y": _err(
                    [e if e["value"] is not None else {"value": 0, "lo": None, "hi": None} for e in est]
                ),
                "marker": {"color": COLORS[i], "size": 9},
                "line": {"color": COLORS[i]},
            }
        )
    layout = _layout(
        title="By guideline version",
        xaxis={"title": {"text": "guideline version"}, "type": "category"},
        yaxis={"range": [-0.2, 1]},
    )
    return {"data": data, "layout": layout}


def speed_chart(chars, time_ms, *, cap: float, fast: float) -> dict:
    """Histogram of reading speed (characters per second) per judgment; the fast threshold marked."""
    chars = np.asarray(chars, dtype=float)
    secs = np.asarray(time_ms, dtype=float) / 1000.0
    speed = np.where(secs > 0, chars / np.maximum(secs, 1e-3), cap)
    counts, edges = np.histogram(np.minimum(speed, cap), bins=40, range=(0, cap))
    if not counts.sum():
        return {}
    data = [
        {
            "type": "bar",
            "name": "judgments",
            "x": ((edges[:-1] + edges[1:]) / 2).round(3).tolist(),
            "y": counts.tolist(),
            "marker": {"color": "#2454c5"},
        }
    ]
    layout = _layout(
        title=f"Reading speed per judgment (last bar: {cap:.0f}+ or no time; dashed: implausibly fast)",
        shapes=[_vline(fast)],
        showlegend=False,
        bargap=0.05,
        xaxis={"title": {"text": "characters per second"}},
        yaxis={"title": {"text": "judgments"}},
    )
    return {"data": data, "layout": layout}


def quality_charts(figures: dict, rows, *, speed_cap: float, max_rater_curves: int = 12) -> dict:
    """Every chart of a quality report, built once by the quality job."""
    from django.conf import settings

    from labelapp.services.quality import ordinary

    bias = ordinary(rows)  # the figures' own rule: no gold pairs, no repeats
    # "all raters" has a space, which no username has: a rater named "pool" replaced the pool's curve.
    curves = {"all raters": metrics.longer_curve(bias.preference, bias.words_a, bias.words_b)}
    busiest = sorted(figures["raters"], key=lambda r: -r["n"])[:max_rater_curves]
    for r in busiest:
        sel = bias.rater == r["rater_id"]
        curves[r["rater"]] = metrics.longer_curve(bias.preference[sel], bias.words_a[sel], bias.words_b[sel])
    return {
        "longer": longer_chart(curves),
        "position": position_chart(figures["raters"]),
        "by_version": by_version_chart(figures.get("by_version", [])),
        "speed": speed_chart(
            rows.chars, rows.time_ms, cap=speed_cap, fast=settings.QUALITY["FAST_CHARS_PER_S"]
        ),
    }


def rater_longer_chart(curve: dict, *, counts: bool = True) -> dict:
    """One rater's P(chose longer) curve, worded for both the rater's own page and staff. The curve
    leaves gold pairs out, so its count next to the rater's own tally of judgments counts their gold
    pairs: the rater's own page draws it without counts (quality.figures_for_rater)."""
    return longer_chart(
        {"judgments": curve}, title="How often the longer answer was chosen, by length ratio", counts=counts
    )
