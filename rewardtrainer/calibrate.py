"""Post-hoc reward calibration against answer length (Huang et al. 2024, arXiv 2409.17407).

The reward a model learned from human pairs rises with answer length. We estimate that trend with a
locally weighted linear regression (LOWESS, tricube kernel) of reward on log answer length, measured on
training answers, and subtract it at use: the deployed reward is `r - f(log len)`, flat in length on
average, while the ranking of two answers of equal length is unchanged. The fit is stored as a few
knots (log length, value) and read back by linear interpolation, constant beyond the ends, so it is a
small JSON object in `reward_config.json` and costs nothing at scoring time.

    cal = LengthCalibration.fit(rewards, lengths)
    deployed = rewards - cal(lengths)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _lowess_at(x: np.ndarray, y: np.ndarray, x0: float, span: float) -> float:
    """Weighted least-squares line through the `span` share of points nearest x0, evaluated at x0."""
    d = np.abs(x - x0)
    k = max(3, int(np.ceil(span * len(x))))
    h = np.partition(d, min(k, len(d)) - 1)[min(k, len(d)) - 1]
    if h <= 0:
        return float(y[d == 0].mean())
    w = np.clip(1.0 - (d / h) ** 3, 0.0, None) ** 3  # tricube
    sw = w.sum()
    if sw <= 0:  # every neighbour exactly at distance h: their plain mean, not the far points'
        return float(y[d <= h].mean())
    mx, my = (w * x).sum() / sw, (w * y).sum() / sw
    vx = (w * (x - mx) ** 2).sum()
    slope = (w * (x - mx) * (y - my)).sum() / vx if vx > 1e-12 else 0.0
    return float(my + slope * (x0 - mx))


@dataclass
class LengthCalibration:
    """A smooth function of log(1 + characters), as knots; `__call__` interpolates."""

    knots_x: list[float]
    knots_y: list[float]

    @classmethod
    def fit(
        cls, rewards: Sequence[float], lengths: Sequence[float], *, n_knots: int = 16, span: float = 0.3
    ) -> LengthCalibration:
        x = np.log1p(np.asarray(lengths, dtype=np.float64))
        y = np.asarray(rewards, dtype=np.float64)
        if len(x) < 4 or np.ptp(x) == 0:
            return cls([float(x.mean()) if len(x) else 0.0], [float(y.mean()) if len(y) else 0.0])
        grid = np.unique(np.quantile(x, np.linspace(0.0, 1.0, n_knots)))
        values = [_lowess_at(x, y, float(g), span) for g in grid]
        return cls([float(g) for g in grid], values)

    def __call__(self, lengths: Sequence[float] | np.ndarray) -> np.ndarray:
        x = np.log1p(np.asarray(lengths, dtype=np.float64))
        return np.interp(x, self.knots_x, self.knots_y)

    def to_dict(self) -> dict:
        return {"method": "lowess-log-length", "knots_x": self.knots_x, "knots_y": self.knots_y}

    @classmethod
    def from_dict(cls, data: dict | None) -> LengthCalibration | None:
        if not data:
            return None
        return cls(list(data["knots_x"]), list(data["knots_y"]))


def fit_length_beta(
    rewards: Sequence[float],
    lengths: Sequence[float],
    weights: Sequence[float] | None = None,
    *,
    bound: float = 10.0,
    tol: float = 1e-6,
    prior_sd: float | None = None,
) -> float:
    """The length coefficient beta of the full model P(chosen) = sigmoid(r_c - r_r + beta * log(len_c /
    len_r)) with the rewards held fixed: a one-parameter weighted logistic regression.

    `rewards` and `lengths` hold the N chosen answers, then the N rejected ones, (2N,), as the scoring
    code returns them; lengths in characters, as the model's own length term uses them. The
    log-likelihood is concave in beta, so its slope falls as beta grows and the maximum is where the
    slope crosses zero: found by bisection on [-bound, bound], which cannot overshoot as Newton's
    method can (pairs that length alone separates have no finite maximum: the bound). Pairs with a
    non-finite score are left out; with none left, or none whose length differs (or whose weight is
    above 0), the likelihood is flat in beta: 0. With `prior_sd`, a Gaussian prior N(0, prior_sd^2) on
    beta (the maximum a posteriori): a few pairs that length alone separates then give a finite beta.
    """
    r = np.asarray(rewards, dtype=np.float64).reshape(2, -1)
    x_len = np.log(np.clip(np.asarray(lengths, dtype=np.float64), 1.0, None)).reshape(2, -1)
    d, x = r[0] - r[1], x_len[0] - x_len[1]  # (N,)
    w = np.ones_like(d) if weights is None else np.asarray(weights, dtype=np.float64)
    ok = np.isfinite(d) & np.isfinite(x) & np.isfinite(w)
    d, x, w = d[ok], x[ok], w[ok]
    if not np.any((x != 0) & (w > 0)):  # nothing here says anything about length
        return 0.0

    precision = 0.0 if prior_sd is None else 1.0 / prior_sd**2

    def slope(beta: float) -> float:  # d/d beta of sum w * log sigmoid(d + beta * x), less the prior's
        return float((w * x * (1.0 - 1.0 / (1.0 + np.exp(-(d + beta * x))))).sum()) - precision * beta

    lo, hi = -bound, bound
    if slope(lo) <= 0:
        return lo
    if slope(hi) >= 0:
        return hi
    while hi - lo > tol:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if slope(mid) > 0 else (lo, mid)
    return (lo + hi) / 2
