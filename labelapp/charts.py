"""Chart specs for Plotly (the Python package builds them; its bundled plotly.min.js draws them).

Functions return plain JSON-ready dicts ({"data": [...], "layout": {...}}). Templates put them in a
`json_script` element and static/labelapp/charts.js calls Plotly.newPlot: no inline script, no CDN.
Text in a chart (rater names, series names) is data, which Plotly renders as text, never as HTML.
"""

from __future__ import annotations

import json
import math

import numpy as np
import plotly.graph_objects as go

from labelapp import metrics

COLORS = ["#2454c5", "#d9480f", "#2f9e44", "#7048e8", "#868e96", "#e8590c", "#1098ad", "#c2255c"]
_BASE_LAYOUT = {
    "margin": {"l": 60, "r": 20, "t": 40, "b": 60},
    "height": 340,
    # No template: Plotly would otherwise inline its whole default theme (~8 KB) into every spec.
    "template": "none",
    "plot_bgcolor": "#fff",
    "xaxis": {"gridcolor": "#eee", "zerolinecolor": "#ccc", "automargin": True},
    "yaxis": {"gridcolor": "#eee", "zerolinecolor": "#ccc", "automargin": True},
    # The legend sits under the plot, horizontally: it never covers the data.
    "legend": {"orientation": "h", "yanchor": "top", "y": -0.22, "xanchor": "left", "x": 0},
}


def _spec(fig: go.Figure) -> dict:
    return json.loads(fig.to_json())


def _finite(points):
    return [
        (x, y)
        for x, y in points
        if isinstance(x, (int, float))
        and isinstance(y, (int, float))
        and math.isfinite(x)
        and math.isfinite(y)
    ]


def line_chart(title: str, series: dict[str, list[tuple[float, float]]], x_label: str, y_label: str) -> dict:
    """Lines with markers (a run with one evaluation still shows its point). {} when there is nothing."""
    fig = go.Figure()
    for i, (name, points) in enumerate(series.items()):
        pts = sorted(_finite(points))
        if not pts:
            continue
        xs, ys = zip(*pts, strict=True)
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=ys,
                name=name,
                mode="lines+markers",
                marker={"size": 5 if len(pts) > 30 else 7, "color": COLORS[i % len(COLORS)]},
                line={"color": COLORS[i % len(COLORS)]},
            )
        )
    if not fig.data:
        return {}
    fig.update_layout(**_BASE_LAYOUT)
    fig.update_layout(title=title, xaxis_title=x_label, yaxis_title=y_label)
    return _spec(fig)


def scatter(
    title: str,
    series: dict[str, list[tuple[float, float]]],
    x_label: str,
    y_label: str,
    max_points: int = 1500,
) -> dict:
    fig = go.Figure()
    for i, (name, points) in enumerate(series.items()):
        pts = _finite(points)[:max_points]
        if not pts:
            continue
        xs, ys = zip(*pts, strict=True)
        fig.add_trace(
            go.Scattergl(
                x=xs, y=ys, name=name, mode="markers",
                marker={"size": 4, "opacity": 0.5, "color": COLORS[i % len(COLORS)]},
            )
        )  # fmt: skip
    if not fig.data:
        return {}
    fig.update_layout(**_BASE_LAYOUT)
    fig.update_layout(title=title, xaxis_title=x_label, yaxis_title=y_label)
    return _spec(fig)


# --- quality dashboard ------------------------------------------------------------------------------


def _err(rows: list[dict]) -> dict:
    return {
        "type": "data",
        "symmetric": False,
        "array": [(r["hi"] - r["value"]) if r["hi"] is not None else 0 for r in rows],
        "arrayminus": [(r["value"] - r["lo"]) if r["lo"] is not None else 0 for r in rows],
    }


def longer_chart(curves: dict[str, dict], title: str = "P(chose the longer answer) by length ratio") -> dict:
    """Binned P(chose longer) with Wilson intervals and the fitted logistic curve, per series."""
    fig = go.Figure()
    for i, (name, curve) in enumerate(curves.items()):
        bins = [b for b in curve["bins"] if b["value"] is not None]
        if not bins:
            continue
        color = COLORS[i % len(COLORS)]
        visible = True if i < 1 else "legendonly"  # the pool; raters on demand from the legend
        fig.add_trace(
            go.Scatter(
                x=[b["ratio"] for b in bins], y=[b["value"] for b in bins], error_y=_err(bins),
                mode="markers", name=f"{name} (n={sum(b['n'] for b in bins)})", legendgroup=name,
                marker={"color": color, "size": 8}, visible=visible,
                customdata=[b["n"] for b in bins], hovertemplate="ratio %{x:.2f}: %{y:.2f} (n=%{customdata})",
            )
        )  # fmt: skip
        if curve.get("slope") is not None:
            xs = np.linspace(0, math.log(max(b["ratio"] for b in bins) * 1.1), 40)
            fig.add_trace(
                go.Scatter(
                    x=np.exp(xs).tolist(), y=(1 / (1 + np.exp(-curve["slope"] * xs))).tolist(),
                    mode="lines", name=f"{name}: fit, slope {curve['slope']:.2f}", legendgroup=name,
                    line={"color": color}, visible=visible, hoverinfo="skip",
                )
            )  # fmt: skip
    if not fig.data:
        return {}
    fig.add_hline(y=0.5, line={"dash": "dot", "color": "#999"})
    fig.update_layout(**_BASE_LAYOUT)
    fig.update_layout(
        title=title, xaxis_title="length ratio (longer / shorter, words)", yaxis_title="P(chose longer)",
        xaxis_type="log", yaxis_range=[0, 1],
    )  # fmt: skip
    return _spec(fig)


def position_chart(raters: list[dict]) -> dict:
    """P(chose left) per rater with Wilson intervals, sorted."""
    rows = sorted((r for r in raters if r["p_left"]["value"] is not None), key=lambda r: r["p_left"]["value"])
    if not rows:
        return {}
    est = [r["p_left"] for r in rows]
    colors = ["#d9480f" if "position" in r["flags"] else "#2454c5" for r in rows]
    fig = go.Figure(
        go.Scatter(
            x=[r["rater"] for r in rows], y=[e["value"] for e in est], error_y=_err(est), mode="markers",
            marker={"color": colors, "size": 8}, customdata=[e["n"] for e in est],
            hovertemplate="%{x}: %{y:.2f} (n=%{customdata})<extra></extra>", name="P(left)",
        )
    )  # fmt: skip
    fig.add_hline(y=0.5, line={"dash": "dot", "color": "#999"})
    fig.update_layout(**_BASE_LAYOUT)
    fig.update_layout(
        title="Position bias: P(chose the left answer) per rater (95% interval; orange = flagged)",
        yaxis_title="P(chose left)", yaxis_range=[0, 1], showlegend=False,
    )  # fmt: skip
    return _spec(fig)


def by_version_chart(by_version: list[dict]) -> dict:
    """Agreement, Krippendorff's alpha and P(chose longer) per guideline version, with intervals."""
    rows = [v for v in by_version if v.get("version") is not None]
    if not rows:
        return {}
    fig = go.Figure()
    x = [f"v{v['version']}" for v in rows]
    for i, (key, label) in enumerate(
        (
            ("agreement", "agreement on sign"),
            ("alpha", "Krippendorff's alpha (ordinal)"),
            ("p_longer", "P(longer)"),
        )
    ):
        est = [v[key] for v in rows]
        fig.add_trace(
            go.Scatter(
                x=x, y=[e["value"] for e in est], error_y=_err([e if e["value"] is not None else
                {"value": 0, "lo": None, "hi": None} for e in est]), mode="lines+markers", name=label,
                marker={"color": COLORS[i], "size": 9}, line={"color": COLORS[i]},
            )
        )  # fmt: skip
    fig.update_layout(**_BASE_LAYOUT)
    fig.update_layout(title="By guideline version", xaxis_title="guideline version", yaxis_range=[-0.2, 1])
    return _spec(fig)


def speed_chart(chars, time_ms, *, cap: float, fast: float) -> dict:
    """Histogram of reading speed (characters per second) per judgment; the fast threshold marked."""
    chars = np.asarray(chars, dtype=float)
    secs = np.asarray(time_ms, dtype=float) / 1000.0
    speed = np.where(secs > 0, chars / np.maximum(secs, 1e-3), cap)
    counts, edges = np.histogram(np.minimum(speed, cap), bins=40, range=(0, cap))
    if not counts.sum():
        return {}
    fig = go.Figure(
        go.Bar(
            x=((edges[:-1] + edges[1:]) / 2).tolist(),
            y=counts.tolist(),
            marker={"color": "#2454c5"},
            name="judgments",
        )  # fmt: skip
    )
    fig.add_vline(x=fast, line={"dash": "dash", "color": "#d9480f"})
    fig.update_layout(**_BASE_LAYOUT)
    fig.update_layout(
        title=f"Reading speed per judgment (the last bar: {cap:.0f}+ or no time; dashed: implausibly fast)",
        xaxis_title="characters per second", yaxis_title="judgments", showlegend=False, bargap=0.05,
    )  # fmt: skip
    return _spec(fig)


def quality_charts(figures: dict, rows, *, speed_cap: float, max_rater_curves: int = 12) -> dict:
    """Every chart of a quality report, built once by the quality job."""
    from django.conf import settings

    curves = {"pool": metrics.longer_curve(rows.preference, rows.words_a, rows.words_b)}
    busiest = sorted(figures["raters"], key=lambda r: -r["n"])[:max_rater_curves]
    for r in busiest:
        sel = rows.rater == r["rater_id"]
        curves[r["rater"]] = metrics.longer_curve(rows.preference[sel], rows.words_a[sel], rows.words_b[sel])
    return {
        "longer": longer_chart(curves),
        "position": position_chart(figures["raters"]),
        "by_version": by_version_chart(figures.get("by_version", [])),
        "speed": speed_chart(
            rows.chars, rows.time_ms, cap=speed_cap, fast=settings.QUALITY["FAST_CHARS_PER_S"]
        ),
    }


def rater_longer_chart(curve: dict, pool_curve: dict | None = None) -> dict:
    """One rater's P(chose longer) curve (beside the pool's when given)."""
    curves = {"you": curve}
    if pool_curve:
        curves["pool"] = pool_curve
    return longer_chart(curves, title="How often you chose the longer answer, by length ratio")
