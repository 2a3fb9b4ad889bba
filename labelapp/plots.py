"""Small server-side SVG charts for the training pages (no third-party JavaScript).

Every label goes through html.escape; the numbers are floats formatted by us. The output is marked
safe by the template only because it is built here from numbers and escaped strings.
"""

from __future__ import annotations

import math
from html import escape

W, H, PAD_L, PAD_R, PAD_T, PAD_B = 560, 260, 56, 16, 24, 40
COLORS = ["#2454c5", "#d9480f", "#2f9e44", "#7048e8", "#868e96"]


def _finite(values):
    return [v for v in values if v is not None and isinstance(v, (int, float)) and math.isfinite(v)]


def _scale(lo: float, hi: float, a: float, b: float):
    if hi <= lo:
        hi = lo + 1.0
    return lambda v: a + (v - lo) / (hi - lo) * (b - a)


def _axes(x_lo, x_hi, y_lo, y_hi, x_label: str, y_label: str) -> list[str]:
    parts = [
        f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}" stroke="#999"/>',
        f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}" stroke="#999"/>',
        f'<text x="{(W + PAD_L) / 2:.0f}" y="{H - 6}" text-anchor="middle" font-size="12">'
        f"{escape(x_label)}</text>",
        f'<text x="12" y="{(H - PAD_B + PAD_T) / 2:.0f}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 12 {(H - PAD_B + PAD_T) / 2:.0f})">{escape(y_label)}</text>',
    ]
    for frac in (0.0, 0.5, 1.0):
        xv, yv = x_lo + frac * (x_hi - x_lo), y_lo + frac * (y_hi - y_lo)
        x = PAD_L + frac * (W - PAD_L - PAD_R)
        y = H - PAD_B - frac * (H - PAD_B - PAD_T)
        parts.append(
            f'<text x="{x:.0f}" y="{H - PAD_B + 14}" font-size="10" text-anchor="middle">{xv:.4g}</text>'
        )
        parts.append(
            f'<text x="{PAD_L - 4}" y="{y + 3:.0f}" font-size="10" text-anchor="end">{yv:.3g}</text>'
        )
    return parts


def _svg(title: str, body: list[str], legend: list[tuple[str, str]]) -> str:
    items = [
        f'<text x="{PAD_L + 8 + 130 * i}" y="14" font-size="11" fill="{color}">■ {escape(name)}</text>'
        for i, (name, color) in enumerate(legend)
    ]
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" class="chart">'
        f"<title>{escape(title)}</title>{''.join(body)}{''.join(items)}</svg>"
    )


def _chart(title, series, x_label, y_label, draw, max_points: int | None = None) -> str:
    """Common frame: drop non-finite points, scale to the data, axes, legend; `draw` adds each series."""
    points = {
        name: [(x, y) for x, y in pts if _finite([x, y]) == [x, y]][:max_points]
        for name, pts in series.items()
    }
    xs = [x for pts in points.values() for x, _ in pts]
    ys = [y for pts in points.values() for _, y in pts]
    if not xs:
        return ""
    x_lo, x_hi, y_lo, y_hi = min(xs), max(xs), min(ys), max(ys)
    sx, sy = _scale(x_lo, x_hi, PAD_L, W - PAD_R), _scale(y_lo, y_hi, H - PAD_B, PAD_T)
    body = _axes(x_lo, x_hi, y_lo, y_hi, x_label, y_label)
    legend = []
    for i, (name, pts) in enumerate(points.items()):
        color = COLORS[i % len(COLORS)]
        legend.append((name, color))
        body.extend(draw([(sx(x), sy(y)) for x, y in pts], color))
    return _svg(title, body, legend)


def _polyline(pts, color):
    if pts:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in sorted(pts))
        yield f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{path}"/>'


def _dots(pts, color):
    for x, y in pts:
        yield f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="{color}" fill-opacity="0.45"/>'


def line_chart(title: str, series: dict[str, list[tuple[float, float]]], x_label: str, y_label: str) -> str:
    return _chart(title, series, x_label, y_label, _polyline)


def scatter(
    title: str,
    series: dict[str, list[tuple[float, float]]],
    x_label: str,
    y_label: str,
    max_points: int = 1500,
) -> str:
    return _chart(title, series, x_label, y_label, _dots, max_points)
