"""Rater-quality statistics: pure functions over numpy arrays (no ORM, no Django).

Every estimate comes with a 95% interval: Wilson for proportions, the Fisher-information standard
error for logistic fits, the asymptotic standard error for Cohen's kappa, a bootstrap over units for
Krippendorff's alpha, order statistics for a median. services/quality.py turns database rows
into these arrays.

Conventions (the pages and the README repeat them):
- A preference is A/B-relative on the 7-point scale -3..3 (negative: A better). Its *sign* is the
  choice: -1 chose A, +1 chose B, 0 tie.
- "Longer" compares word counts (what the rating page shows). Ties (preference 0) and pairs of equal
  length are left out of P(chose longer); ties are left out of P(chose left) and of the logistic fits.
- Percent agreement on the sign: a tie is a category of its own, so a tie agrees only with a tie.
- Gold accuracy: the sign equals the gold sign (a tie on a gold pair with a winner counts as wrong).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import expit  # the logistic without overflow warnings at large logits
from scipy.stats import t as student_t

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its 95% interval and the number of observations behind it."""

    value: float | None
    lo: float | None
    hi: float | None
    n: int

    def as_dict(self) -> dict:
        return {k: (None if v is None else round(v, 6) if isinstance(v, float) else v)
                for k, v in asdict(self).items()}  # fmt: skip


EMPTY = Estimate(None, None, None, 0)


def wilson(successes: float, n: int, z: float = Z95) -> Estimate:
    """Wilson score interval for a binomial proportion (good at small n and near 0 or 1); `successes`
    may be fractional (ties counted half)."""
    if n <= 0:
        return EMPTY
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n)


def proportion(flags) -> Estimate:
    flags = np.asarray(flags, dtype=bool)
    return wilson(int(flags.sum()), int(flags.size))


# --- choices relative to length and position ------------------------------------------------------


def chose_longer(preference, words_a, words_b) -> tuple[np.ndarray, np.ndarray]:
    """(mask of usable ratings, chose-longer flag): usable = not a tie and the answers differ in length."""
    pref = np.sign(np.asarray(preference))
    wa, wb = np.asarray(words_a, dtype=float), np.asarray(words_b, dtype=float)
    usable = (pref != 0) & (wa != wb)
    longer_is_b = wb > wa
    chose_b = pref > 0
    return usable, chose_b == longer_is_b


def log_length_ratio(words_a, words_b) -> np.ndarray:
    """log(words_B / words_A), words floored at 1."""
    wa = np.maximum(np.asarray(words_a, dtype=float), 1.0)
    wb = np.maximum(np.asarray(words_b, dtype=float), 1.0)
    return np.log(wb / wa)


def p_longer(preference, words_a, words_b, *, min_ratio: float = 1.2) -> Estimate:
    """P(chose the longer answer | longer/shorter >= min_ratio), ties left out."""
    usable, longer = chose_longer(preference, words_a, words_b)
    ratio = np.abs(log_length_ratio(words_a, words_b))
    keep = usable & (ratio >= math.log(min_ratio))
    return proportion(longer[keep])


def a_won(preference) -> np.ndarray:
    """Answer A's score in each judgment: 1 if A won, 0.5 on a tie, 0 if B won."""
    return (1.0 - np.sign(np.asarray(preference, dtype=float))) / 2.0


def chose_left(preference, a_left) -> tuple[np.ndarray, np.ndarray]:
    """(mask of non-tie ratings, chose-left flag). `a_left`: answer A was shown on the left."""
    pref = np.sign(np.asarray(preference))
    a_left = np.asarray(a_left, dtype=bool)
    return pref != 0, (pref < 0) == a_left


def p_left(preference, a_left) -> Estimate:
    """Position bias: P(chose the left answer), ties left out (0.5 = no bias)."""
    usable, left = chose_left(preference, a_left)
    return proportion(left[usable])


# --- logistic fits ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogisticFit:
    coef: np.ndarray  # (k,)
    se: np.ndarray  # (k,)
    n: int

    def estimate(self, i: int) -> Estimate:
        c, s = float(self.coef[i]), float(self.se[i])
        return Estimate(c, c - Z95 * s, c + Z95 * s, self.n)


def logistic_fit(X, y, *, ridge: float = 1e-3, iters: int = 50) -> LogisticFit | None:
    """Maximum-likelihood logistic regression by Newton's method; standard errors from the Fisher
    information. A tiny ridge keeps a perfectly separated rater finite (the SE then says how little
    that fit means). None when there is nothing to fit."""
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    n, k = X.shape
    if n < k + 1:
        return None
    w, _ = _newton_ascent(X, y, np.zeros(n), np.zeros(k), ridge=ridge, iters=iters, tol=1e-8)
    p = expit(X @ w)
    info = (X * (p * (1 - p))[:, None]).T @ X + ridge * np.eye(k)
    se = np.sqrt(np.diag(np.linalg.inv(info)))
    return LogisticFit(coef=w, se=se, n=n)


def _newton_ascent(X, y, offset, w, *, ridge: float, iters: int, tol: float) -> tuple[np.ndarray, float]:
    """Maximise the ridge-penalised log-likelihood of P(y = 1) = sigmoid(X @ w + offset) over `w`;
    returns (w, the penalised log-likelihood). Newton's method with the step halved until the
    likelihood rises: a full step overshoots where the data are few or all one way (a refit for a
    profile bound jumped to a coefficient of 2,000, read a log-likelihood of -4,000 where the best was
    -0.9, and the bound stopped far short: a rater with three judgments was flagged as length-biased)."""

    def value(w: np.ndarray) -> float:
        z = X @ w + offset
        return float(y @ z - np.logaddexp(0.0, z).sum() - ridge * (w @ w) / 2)

    current = value(w)
    for _ in range(iters):
        p = expit(X @ w + offset)
        grad = X.T @ (y - p) - ridge * w
        hess = (X * (p * (1 - p))[:, None]).T @ X + ridge * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        for _ in range(40):
            trial = w + step
            reached = value(trial)
            if reached >= current:
                break
            step = step / 2
        else:
            break  # no step raises it: at the maximum, to rounding
        w, current = trial, reached
        if np.max(np.abs(step), initial=0.0) < tol:
            break
    return w, current


def bias_fit(preference, words_a, words_b, a_left) -> dict[str, Estimate]:
    """Length and position bias in one logistic model, ties left out:

        P(chose B) = sigmoid(length_slope * log(words_B / words_A) + position * (+1 if B left else -1))

    No intercept: A and B are interchangeable, so with equal lengths and no position pull the
    choice is a coin. `length_slope` > 0 means the rater leans toward the longer answer (in logit
    units per unit of log length ratio): the rater's length bias. Intervals are profile-likelihood
    ones (`_profile_interval`): a rater who always took the longer answer has a lower bound well above
    0, where the Fisher interval reached below it and the rater went unflagged.
    """
    pref = np.sign(np.asarray(preference))
    keep = pref != 0
    x_len = log_length_ratio(words_a, words_b)[keep]
    x_pos = np.where(np.asarray(a_left, dtype=bool)[keep], -1.0, 1.0)
    X, y = np.column_stack([x_len, x_pos]), (pref[keep] > 0).astype(float)
    fit = logistic_fit(X, y)
    if fit is None:
        return {"length_slope": EMPTY, "position": EMPTY}
    return {"length_slope": _profile_interval(X, y, 0, fit), "position": _profile_interval(X, y, 1, fit)}


def longer_curve(
    preference, words_a, words_b, *, bins=(0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, math.inf)
) -> dict:
    """P(chose longer) per bin of |log length ratio| (Wilson intervals) and the fitted curve
    P = sigmoid(slope * x), a logistic fit of "chose longer" on |log length ratio| alone (no position
    term, so its slope differs a little from `bias_fit`'s length slope), for the charts."""
    usable, longer = chose_longer(preference, words_a, words_b)
    x = np.abs(log_length_ratio(words_a, words_b))
    rows = []
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        sel = usable & (x > lo) & (x <= hi)
        est = proportion(longer[sel])
        if est.n:
            rows.append(
                {"x": float(np.mean(x[sel])), "ratio": float(np.exp(np.mean(x[sel]))), **est.as_dict()}
            )
    fit = logistic_fit(x[usable], longer[usable].astype(float))
    slope = float(fit.coef[0]) if fit is not None else None
    return {"bins": rows, "slope": slope}


def _sigmoid(v: float | None) -> float | None:
    return None if v is None else 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, v))))


def length_controlled_win_rate(won, log_ratio, same_won=(), same_log_ratio=()) -> dict[str, Estimate]:
    """The win rate of a new policy against its parent with the raters' length pull taken out
    (length-controlled, as LC-AlpacaEval, arXiv 2404.04475). One logistic model over two kinds of
    judgment:

        new vs parent:         P(new won) = sigmoid(theta + slope * log(words_new / words_parent))
        same policy on both:   P(A won)   = sigmoid(        slope * log(words_A / words_B))

    The same-policy pairs have no quality gap on average, so they pin `slope`, the raters' length
    pull on this very kind of answer; `theta` is what is left of the new policy's edge. The
    length-controlled win rate is sigmoid(theta): P(new wins) when both answers have the same length.
    `won` is 1, 0.5 (tie) or 0. Returns `win_rate` (with the interval of theta mapped through the
    sigmoid) and `length_slope`; EMPTY estimates with fewer than two new-vs-parent judgments.
    """
    won = np.asarray(won, dtype=float)
    same_won = np.asarray(same_won, dtype=float)
    if won.size < 2:
        return {"win_rate": EMPTY, "length_slope": EMPTY}
    X = np.vstack(
        [
            np.column_stack([np.asarray(log_ratio, dtype=float), np.ones(won.size)]),
            np.column_stack([np.asarray(same_log_ratio, dtype=float), np.zeros(same_won.size)]),
        ]
    )
    y = np.concatenate([won, same_won])
    fit = logistic_fit(X, y)
    if fit is None:
        return {"win_rate": EMPTY, "length_slope": EMPTY}
    theta = _profile_interval(X, y, 1, fit)
    return {
        "win_rate": Estimate(_sigmoid(theta.value), _sigmoid(theta.lo), _sigmoid(theta.hi), int(won.size)),
        "length_slope": fit.estimate(0),
    }


_CHI2_1_95 = Z95**2  # the likelihood-ratio test's 95% cut for one parameter


_PROFILE_NEWTON_STEPS = 30
_PROFILE_TOLERANCE = 1e-4  # logits


def _profile_interval(
    X, y, j: int, fit: LogisticFit, *, ridge: float = 1e-3, reach: float = 30.0
) -> Estimate:
    """95% profile-likelihood interval of coefficient `j` of `logistic_fit`'s model: the values whose
    likelihood, with the other coefficients refitted, is within the chi-square cut of the best.

    The Fisher (Wald) interval breaks down exactly on the clearest cases: when every judgment went the
    same way (a new policy that lost every comparison, a rater who always took the longer answer),
    separation makes the standard error explode and the interval covered everything, so the watch
    never rejected the worst version and the most length-biased rater was never flagged. The profile
    stays finite on the side the data speak for; the other side ends at `reach` logits from the
    estimate (about 0 or 1 as a rate). Where the likelihood is close to quadratic (most fits, and every
    large one) the Fisher bound already sits at the cut, and is kept after one check."""
    coef_hat = fit.coef
    others = [i for i in range(X.shape[1]) if i != j]
    X_rest, x_j = X[:, others], X[:, j]
    start = np.asarray(coef_hat, dtype=float)[others]

    def profile(value: float) -> float:
        # the other coefficients refitted, coefficient j fixed as an offset
        _, reached = _newton_ascent(
            X_rest, y, value * x_j, start.copy(), ridge=ridge, iters=_PROFILE_NEWTON_STEPS, tol=1e-10
        )
        return reached - ridge * value**2 / 2

    best_value = float(coef_hat[j])
    best = profile(best_value)

    def outside(value: float) -> bool:
        return 2 * (best - profile(value)) > _CHI2_1_95

    def bound(direction: float) -> float:
        wald = best_value + direction * Z95 * float(fit.se[j])
        within_reach = abs(wald - best_value) <= reach
        if within_reach and abs(2 * (best - profile(wald)) - _CHI2_1_95) < 0.05 * _CHI2_1_95:
            return wald
        far = best_value + direction * reach
        if not outside(far):
            return far
        near = best_value
        # bisection between a value inside and one outside, to _PROFILE_TOLERANCE logits: the pages
        # show two decimals (30 halvings of `reach` cost a rater with a handful of judgments ~50 ms
        # a scope, and a refresh over thousands of light raters minutes)
        while abs(far - near) > _PROFILE_TOLERANCE:
            mid = (near + far) / 2
            near, far = (near, mid) if outside(mid) else (mid, far)
        return (near + far) / 2

    return Estimate(best_value, bound(-1.0), bound(1.0), fit.n)


# --- gold, agreement ---------------------------------------------------------------------------------


def gold_accuracy(preference, gold_sign) -> Estimate:
    """Share of gold judgments whose sign equals the gold sign (a tie is right only on a tie gold)."""
    return proportion(np.sign(np.asarray(preference)) == np.sign(np.asarray(gold_sign)))


def rater_pairs(unit, rater, value) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of judgments of the same unit by two different raters, vectorised (a million
    ratings make about a million pairs): (rater_1, rater_2, value_1, value_2) with rater_1 < rater_2."""
    unit, rater, value = np.asarray(unit), np.asarray(rater), np.asarray(value)
    order = np.lexsort((rater, unit))
    u, r, v = unit[order], rater[order], value[order]
    r1, r2, v1, v2 = [], [], [], []
    for offset in range(1, u.size):
        same = u[offset:] == u[:-offset]
        if not same.any():
            break  # sorted by unit: no group is longer than this offset
        keep = same & (r[offset:] != r[:-offset])
        r1.append(r[:-offset][keep])
        r2.append(r[offset:][keep])
        v1.append(v[:-offset][keep])
        v2.append(v[offset:][keep])
    if not r1:
        empty = np.array([], dtype=int)
        return empty, empty, empty, empty
    return np.concatenate(r1), np.concatenate(r2), np.concatenate(v1), np.concatenate(v2)


def pairwise_sign_agreement(unit, rater, preference) -> dict:
    """Percent agreement on the sign over every pair of raters who judged the same unit.

    Returns {"pool": Estimate, "per_rater": {rater: Estimate}, "agree": {rater: (agreeing, pairs)},
    "agree_units": {rater: (agreement summed over units, units shared with anyone)}}. A tie agrees only
    with a tie. The Wilson interval treats pairs as independent, which they are not quite (pairs share
    units), so it is somewhat too narrow. "agree_units" counts each shared unit once (the share of the
    other raters on it who agree), so evidence is counted in judgments however many raters share them.
    """
    r1, r2, v1, v2 = rater_pairs(unit, rater, np.sign(np.asarray(preference)))
    same = (v1 == v2).astype(int)
    both = np.concatenate([r1, r2])
    same2 = np.concatenate([same, same])
    raters, inverse = np.unique(both, return_inverse=True)
    totals = np.bincount(inverse, minlength=raters.size)
    agrees = np.bincount(inverse, weights=same2, minlength=raters.size).astype(int)
    counts = {r: (int(a), int(t)) for r, a, t in zip(raters.tolist(), agrees, totals, strict=True)}
    return {
        "pool": wilson(int(same.sum()), int(same.size)),
        "per_rater": {r: wilson(a, t) for r, (a, t) in counts.items()},
        "agree": counts,
        "agree_units": unit_agreement(unit, rater, preference),
    }


def unit_agreement(unit, rater, preference) -> dict:
    """{rater: (sum over the units they share with others of the share of those others who gave the
    same sign, number of such units)}; one judgment per rater and unit."""
    sign = np.sign(np.asarray(preference)).astype(int)
    rater = np.asarray(rater)
    _, unit_index, unit_size = np.unique(np.asarray(unit), return_inverse=True, return_counts=True)
    _, group, group_size = np.unique(unit_index * 3 + sign + 1, return_inverse=True, return_counts=True)
    partners = unit_size[unit_index] - 1
    shared = partners > 0
    share = (group_size[group][shared] - 1) / partners[shared]
    raters, inverse = np.unique(rater[shared], return_inverse=True)
    sums = np.bincount(inverse, weights=share, minlength=raters.size)
    units = np.bincount(inverse, minlength=raters.size)
    return {r: (float(a), int(n)) for r, a, n in zip(raters.tolist(), sums, units, strict=True)}


def kappa_from_confusion(confusion) -> tuple[float | None, float | None, float | None, int]:
    """Cohen's kappa, its 95% interval (large-sample SE sqrt(po (1 - po) / (n (1 - pe)^2)); where the
    observed agreement po is 0 or 1, the Wilson interval of po mapped onto kappa) and n from a square
    confusion matrix of two raters' labels."""
    c = np.asarray(confusion, dtype=float)
    n = c.sum()
    if n == 0:
        return None, None, None, 0
    po = np.trace(c) / n
    pe = float((c.sum(axis=1) / n) @ (c.sum(axis=0) / n))
    if pe >= 1.0:  # both raters gave one and the same label every time: kappa is 0/0 (sklearn: nan)
        return None, None, None, int(n)
    kappa = (po - pe) / (1 - pe)
    if 0.0 < po < 1.0:
        se = math.sqrt(po * (1 - po) / (n * (1 - pe) ** 2))
        # kappa lies in [-pe / (1 - pe), 1] (po in [0, 1]); the normal interval ran past both ends at
        # the overlaps kappa is computed on (10 shared comparisons: 0.8 [0.43, 1.17])
        low = -pe / (1 - pe)
        return float(kappa), max(low, kappa - Z95 * se), min(1.0, kappa + Z95 * se), int(n)
    # Perfect (or no) observed agreement makes that SE 0, an interval of one point at any n: map the
    # Wilson interval of the observed agreement through kappa = (po - pe) / (1 - pe) instead.
    po_ci = wilson(int(round(po * n)), int(n))
    return float(kappa), (po_ci.lo - pe) / (1 - pe), (po_ci.hi - pe) / (1 - pe), int(n)


def cohen_kappa_pairs(unit, rater, preference, *, min_overlap: int = 10) -> list[dict]:
    """Cohen's kappa on the sign (A / tie / B) for each pair of raters sharing >= min_overlap units
    (one 3x3 confusion matrix per pair, built in one vectorised pass)."""
    r1, r2, v1, v2 = rater_pairs(unit, rater, np.sign(np.asarray(preference)).astype(int))
    if r1.size == 0:
        return []
    pairs, inverse = np.unique(np.column_stack([r1, r2]), axis=0, return_inverse=True)
    inverse = inverse.ravel()
    confusion = np.zeros((pairs.shape[0], 3, 3))
    np.add.at(confusion, (inverse, v1 + 1, v2 + 1), 1)
    out = []
    for (a, b), conf in zip(pairs.tolist(), confusion, strict=True):
        if conf.sum() < min_overlap:
            continue
        kappa, lo, hi, n = kappa_from_confusion(conf)
        out.append({"raters": [a, b], **Estimate(kappa, lo, hi, n).as_dict()})
    return out


SCALE = np.arange(-3, 4)


def krippendorff_alpha(
    unit, preference, *, bootstrap: int = 200, seed: int = 0, max_units: int = 20_000
) -> Estimate:
    """Krippendorff's alpha, ordinal, on the 7-point scale (the `krippendorff` package), with a
    bootstrap over units. Works from the units x values count matrix, so a million ratings need a
    (units x 7) array, not a raters x units one.

    Up to `max_units` units: a percentile bootstrap. Beyond that, each resample draws `max_units`
    units (an m-out-of-n bootstrap: one package call costs ~0.4 s at 300k units) and the interval is
    alpha -/+ 1.96 * sd(resampled alphas) * sqrt(m / n), the spread scaled back to the full n."""
    import krippendorff

    unit = np.asarray(unit)
    pref = np.asarray(preference, dtype=int)
    _, inverse = np.unique(unit, return_inverse=True)
    counts = np.zeros((inverse.max() + 1 if inverse.size else 0, SCALE.size))
    np.add.at(counts, (inverse, pref + 3), 1)
    counts = counts[counts.sum(axis=1) >= 2]  # a unit judged once carries no agreement information
    n = int(counts.shape[0])
    if n < 2 or np.count_nonzero(counts.sum(axis=0)) < 2:
        return Estimate(None, None, None, n)

    def alpha(c) -> float:
        return float(
            krippendorff.alpha(value_counts=c, value_domain=SCALE.tolist(), level_of_measurement="ordinal")
        )

    value = alpha(counts)
    m = min(n, max_units)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(bootstrap):
        sample = counts[rng.integers(0, n, m)]
        if np.count_nonzero(sample.sum(axis=0)) >= 2:
            draws.append(alpha(sample))
    if len(draws) < 2:
        return Estimate(value, None, None, n)
    if m == n:
        lo, hi = np.percentile(draws, [2.5, 97.5]).tolist()
    else:
        half = Z95 * float(np.std(draws, ddof=1)) * math.sqrt(m / n)
        lo, hi = value - half, min(1.0, value + half)  # alpha is at most 1
    return Estimate(value, lo, hi, n)


# --- repeats, speed -----------------------------------------------------------------------------------


def test_retest(first, second) -> dict[str, Estimate]:
    """Consistency of a rater with themself on repeats: paired A/B-relative preferences
    (the caller flips the sign when the repeat swapped A and B).

    sign agreement (Wilson) and the mean absolute difference on the 7-point scale (normal interval)."""
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    n = int(a.size)
    if n == 0:
        return {"sign_agreement": EMPTY, "mean_abs_diff": EMPTY}
    diff = np.abs(a - b)
    m = float(diff.mean())
    mad = Estimate(m, *_mean_interval_0_6(diff), n) if n > 1 else Estimate(m, None, None, n)
    return {"sign_agreement": proportion(np.sign(a) == np.sign(b)), "mean_abs_diff": mad}


def _mean_interval_0_6(x: np.ndarray) -> tuple[float, float]:
    """95% interval of the mean of values in [0, 6]: Student's t (a normal z was too narrow at a few
    repeats); when every value is the same (sd 0: the interval was one point at any n) Hoeffding's
    bound, which holds for any distribution on [0, 6]. Clipped to [0, 6]."""
    n, m = x.size, float(x.mean())
    half_t = float(student_t.ppf(0.975, n - 1)) * float(x.std(ddof=1)) / math.sqrt(n)
    half_hoeffding = 6.0 * math.sqrt(math.log(2 / 0.05) / (2 * n))
    half = half_t if half_t > 0 else half_hoeffding
    return max(0.0, m - half), min(6.0, m + half)


_MEDIAN_MIN_N = 6  # the fewest values whose order statistics bracket the median with 95%


def median_interval(values) -> Estimate:
    """The median with its distribution-free 95% interval from order statistics (the ranks
    n/2 -/+ 1.96 sqrt(n)/2 of the sorted sample): no bootstrap, so cheap on a million values."""
    v = np.sort(np.asarray(values, dtype=float))
    n = int(v.size)
    if n == 0:
        return EMPTY
    if n < _MEDIAN_MIN_N:
        # even [smallest, largest] holds the median with less than 95% (1 - 2 / 2**n: 94% of 5,
        # 75% of 3), and one value gave [v, v]: no interval rather than one that claims 95%
        return Estimate(float(np.median(v)), None, None, n)
    half = Z95 * math.sqrt(n) / 2
    lo_rank = max(0, int(math.floor(n / 2 - half)))
    hi_rank = min(n - 1, int(math.ceil(n / 2 + half)))
    return Estimate(float(np.median(v)), float(v[lo_rank]), float(v[hi_rank]), n)


def reading_speed(chars, time_ms, *, fast_chars_per_s: float = 60.0) -> dict:
    """Characters read per second (both answers and the prompt over time on task): the median with
    its order-statistic interval, and the share of implausibly fast judgments (faster than
    `fast_chars_per_s`, or no time recorded) with a Wilson interval."""
    chars = np.asarray(chars, dtype=float)
    secs = np.asarray(time_ms, dtype=float) / 1000.0
    speed = np.where(secs > 0, chars / np.maximum(secs, 1e-3), np.inf)
    fast = speed > fast_chars_per_s
    return {
        "median_chars_per_s": median_interval(speed[np.isfinite(speed)]),
        "fast": proportion(fast),
        "n_fast": int(fast.sum()),
    }


# --- trust ------------------------------------------------------------------------------------------

GOLD_PRIOR, AGREE_PRIOR, PRIOR_WEIGHT = 0.8, 0.7, 10.0
GOLD_SHARE = 0.7
TRUST_MIN, TRUST_MAX = 0.05, 1.5


def _skill(successes: float, n: int, prior: float) -> float:
    """Shrunk proportion turned into skill over a coin: 0 at 50%, 1 at 100%."""
    shrunk = (successes + PRIOR_WEIGHT * prior) / (n + PRIOR_WEIGHT)
    return (shrunk - 0.5) / 0.5


def trust_weight(*, gold_correct: int, gold_n: int, agree: float, agree_n: int) -> float:
    """Trust weight of a rater (the pair weight in reward-model training).

    Gold accuracy and agreement with other raters are each shrunk toward a prior (0.8 and 0.7, worth
    10 judgments) so a few lucky or unlucky judgments move little, and read as skill above a coin:
    s = (p - 0.5) / 0.5. Then

        trust = clip((0.7 * s_gold + 0.3 * s_agree) / s_prior, 0.05, 1.5)

    where s_prior is the same expression at the priors, so a rater without any data weighs 1.0,
    like a rater without a profile; a rater at coin level on both goes toward 0.05 as their judgments
    grow (0.09 on 100 of each: the priors still pull).
    """
    s = GOLD_SHARE * _skill(gold_correct, gold_n, GOLD_PRIOR) + (1 - GOLD_SHARE) * _skill(
        agree, agree_n, AGREE_PRIOR
    )
    s_prior = GOLD_SHARE * (GOLD_PRIOR - 0.5) / 0.5 + (1 - GOLD_SHARE) * (AGREE_PRIOR - 0.5) / 0.5
    return float(min(TRUST_MAX, max(TRUST_MIN, s / s_prior)))
