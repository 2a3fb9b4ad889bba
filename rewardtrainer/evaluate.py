"""Validation metrics for a reward model, with the length-bias figures the product reports.

    metrics = evaluate(model, val_pairs, tokenizer, max_length=256)
    metrics["accuracy"], metrics["balanced_accuracy"], metrics["pearson_length"], metrics["ece"]
    probes = probe_tests(model, tokenizer, val_pairs, neighbours=...)   # padding and off-prompt tests

Every figure is of the DEPLOYED reward (quality head minus the length calibration, what PPO and
best-of-n see) unless its key ends in `_raw` (the quality head before calibration) or is
`accuracy_full` (the whole trained model: reward plus ODIN's length head or the length covariate term).
Balanced accuracy is the mean of the accuracy on pairs the longer answer won and on pairs the shorter
answer won: the human data is about 70% "longer wins", so plain accuracy rewards a length detector.

Besides accuracy (Bradley-Terry / TRL), it measures what ODIN (Chen et al. 2024) and Singhal et al.
(2023, "A Long Way to Go: Investigating Length Correlations in RLHF") look at: accuracy on pairs of about
equal length and on pairs where the shorter answer won, and the correlation of the reward with answer
length. Calibration is the expected calibration error (Guo et al. 2017) of sigmoid(r_chosen - r_rejected).
Answer length is counted in characters. The metric helpers work on plain numpy arrays so they can be
tested on hand-made rewards.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .augment import PAD_KINDS, pad_answer
from .data import (
    EncodedPairs,
    PreferencePair,
    collate,
    encode_pairs,
    prompt_groups,
    token_budget_batches,
    width_multiple,
)
from .model import RewardModel

LENGTH_MATCH_RATIO = 1.2


def pearson_np(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation; 0.0 when either side is constant, NaN when a value is not finite (a NaN
    reward read as 0.0, the best length figure there is, while every other metric broke)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return float("nan")
    xc, yc = x - x.mean(), y - y.mean()
    denom = np.sqrt((xc * xc).sum() * (yc * yc).sum())
    return float((xc * yc).sum() / denom) if denom > 0 else 0.0


def _rank(x: np.ndarray) -> np.ndarray:
    """Average ranks (ties share the mean rank), like scipy.stats.rankdata."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0
        i = j + 1
    return ranks


def spearman_np(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (scipy when installed, else Pearson of average ranks); NaN when a value
    is not finite, as `pearson_np` (an infinite reward ranked first and read as a correlation of 0.5)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        return float("nan")
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return 0.0
    try:
        from scipy.stats import spearmanr
    except ImportError:
        return pearson_np(_rank(x), _rank(y))
    return float(spearmanr(x, y).statistic)


def expected_calibration_error(p_chosen: np.ndarray, n_bins: int = 10) -> tuple[float, list[dict]]:
    """ECE of p = sigmoid(r_chosen - r_rejected) with 10 equal-width bins over [0, 1].

    Every pair counts in both orientations, (p, label 1) and (1 - p, label 0), so the score does not
    depend on which answer is listed first. ECE = sum over bins of (n_bin / n) * |mean p - mean label|.
    Returns (ece, reliability rows for a plot).
    """
    p = np.asarray(p_chosen, dtype=np.float64)
    if len(p) == 0:
        return 0.0, []
    if not np.isfinite(p).all():  # left out of every bin, a NaN pair made the error look smaller
        return float("nan"), []
    probs = np.concatenate([p, 1.0 - p])
    labels = np.concatenate([np.ones_like(p), np.zeros_like(p)])
    bins = np.minimum((probs * n_bins).astype(int), n_bins - 1)
    ece, rows = 0.0, []
    for b in range(n_bins):
        sel = bins == b
        if not sel.any():
            continue
        conf, acc = probs[sel].mean(), labels[sel].mean()
        ece += sel.sum() / len(probs) * abs(conf - acc)
        rows.append(
            {"lo": b / n_bins, "hi": (b + 1) / n_bins, "n": int(sel.sum()), "mean_p": conf, "frac": acc}
        )
    return float(ece), rows


def length_matched_mask(len_chosen: np.ndarray, len_rejected: np.ndarray, ratio: float = LENGTH_MATCH_RATIO):
    """Pairs whose longer answer is at most `ratio` times the shorter one (in characters)."""
    lc, lr = np.asarray(len_chosen, dtype=np.float64), np.asarray(len_rejected, dtype=np.float64)
    return np.maximum(lc, lr) <= ratio * np.maximum(np.minimum(lc, lr), 1e-9)


def length_buckets(lengths: np.ndarray, rewards: dict[str, np.ndarray], n_buckets: int = 5) -> list[dict]:
    """Mean of each reward by answer-length quantile bucket (for the 'reward vs length' plot)."""
    lengths = np.asarray(lengths, dtype=np.float64)
    if len(lengths) == 0:
        return []
    edges = np.unique(np.quantile(lengths, np.linspace(0, 1, n_buckets + 1)))
    which = np.clip(np.searchsorted(edges, lengths, side="right") - 1, 0, max(len(edges) - 2, 0))
    rows = []
    for b in range(max(len(edges) - 1, 1)):
        sel = which == b
        if not sel.any():
            continue
        row = {"lo": float(edges[b]), "hi": float(edges[min(b + 1, len(edges) - 1)]), "n": int(sel.sum())}
        row |= {f"mean_{k}": float(v[sel].mean()) for k, v in rewards.items()}
        rows.append(row)
    return rows


def _acc(diff: np.ndarray, mask: np.ndarray | None = None) -> float | None:
    """Share of pairs the reward ranks right; a tie (the same reward for both, as any model gives a pair
    whose two answers are the same text) counts one half, what a coin breaking it would score. NaN when
    a difference is not finite: a NaN reward counted as a wrongly ranked pair, so a model that breaks on
    some answers still had a finite (balanced) accuracy, which safe activation compared."""
    d = diff if mask is None else diff[mask]
    if not len(d):
        return None
    if not np.isfinite(d).all():
        return float("nan")
    return float(((d > 0) + 0.5 * (d == 0)).mean())


def _logsigmoid_loss(diff: np.ndarray, weight: np.ndarray) -> float:
    return float((weight * np.logaddexp(0.0, -diff)).mean()) if len(diff) else 0.0


def metrics_from_rewards(
    q_chosen: np.ndarray,
    q_rejected: np.ndarray,
    len_chosen: np.ndarray,
    len_rejected: np.ndarray,
    l_chosen: np.ndarray | None = None,
    l_rejected: np.ndarray | None = None,
    margin: np.ndarray | None = None,
    weight: np.ndarray | None = None,
) -> dict:
    """All evaluation metrics from per-pair rewards (reward q, length term l) and answer lengths.
    `accuracy_sum` / `accuracy_full` rank by q + l (the whole trained model)."""
    q_c, q_r = np.asarray(q_chosen, np.float64), np.asarray(q_rejected, np.float64)
    n = len(q_c)
    l_c = np.zeros(n) if l_chosen is None else np.asarray(l_chosen, np.float64)
    l_r = np.zeros(n) if l_rejected is None else np.asarray(l_rejected, np.float64)
    margin = np.zeros(n) if margin is None else np.asarray(margin, np.float64)
    weight = np.ones(n) if weight is None else np.asarray(weight, np.float64)
    len_c, len_r = np.asarray(len_chosen, np.float64), np.asarray(len_rejected, np.float64)
    diff_q, diff_sum = q_c - q_r, (q_c + l_c) - (q_r + l_r)
    matched = length_matched_mask(len_c, len_r)
    shorter_won = len_c < len_r
    longer_won = len_c > len_r
    acc_longer, acc_shorter = _acc(diff_q, longer_won), _acc(diff_q, shorter_won)
    present = [a for a in (acc_longer, acc_shorter) if a is not None]
    lengths = np.concatenate([len_c, len_r])  # (2N,)
    reward_q = np.concatenate([q_c, q_r])  # (2N,)
    reward_l = np.concatenate([l_c, l_r])  # (2N,)
    ece, reliability = expected_calibration_error(1.0 / (1.0 + np.exp(-diff_q)))
    return {
        "n_pairs": n,
        "loss": _logsigmoid_loss(diff_sum - margin, weight),
        "loss_quality": _logsigmoid_loss(diff_q - margin, weight),
        "accuracy": _acc(diff_q),
        "accuracy_sum": _acc(diff_sum),
        "accuracy_full": _acc(diff_sum),
        # with one group empty, that group's accuracy (n_longer_won / n_shorter_won say so); safe
        # activation asks for RM_EVAL_SET_MIN_GROUP_PAIRS of each before it compares versions on it
        "balanced_accuracy": float(np.mean(present)) if present else None,
        "accuracy_longer_won": acc_longer,
        "n_longer_won": int(longer_won.sum()),
        "accuracy_length_matched": _acc(diff_q, matched),
        "n_length_matched": int(matched.sum()),
        "accuracy_shorter_won": acc_shorter,
        "n_shorter_won": int(shorter_won.sum()),
        "pearson_length": pearson_np(reward_q, lengths),
        "spearman_length": spearman_np(reward_q, lengths),
        "pearson_length_head": pearson_np(reward_l, lengths),
        "ece": ece,
        "margin": float(diff_q.mean()) if n else 0.0,
        "reward_mean": float(reward_q.mean()) if n else 0.0,
        "reward_std": float(reward_q.std()) if n else 0.0,
        "plots": {
            "length": lengths.tolist(),
            "reward_quality": reward_q.tolist(),
            "reward_length": reward_l.tolist(),
            "length_buckets": length_buckets(
                lengths, {"reward_quality": reward_q, "reward_length": reward_l}
            ),
            "reliability": reliability,
        },
    }


def scalar_metrics(metrics: dict) -> dict:
    """The metrics without the plot arrays (for history rows and log lines)."""
    return {k: v for k, v in metrics.items() if k != "plots"}


@torch.inference_mode()
def score_pairs(
    model: RewardModel,
    enc: EncodedPairs,
    *,
    batch_size: int = 32,
    max_length: int = 256,
    device: torch.device | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw (quality head, second head) rewards of every encoded pair: two (2, N) arrays, chosen row first."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    n = len(enc)
    q = np.zeros((2, n), dtype=np.float64)  # chosen, rejected
    ln = np.zeros((2, n), dtype=np.float64)
    for idx in token_budget_batches(enc.lengths, batch_size, max_tokens=2 * batch_size * max_length):
        batch = collate(enc, idx, width_multiple(device.type), max_length)
        inputs = {
            k: batch[k].to(device) for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch
        }
        with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            r_q, r_l = model(**inputs)  # (2B,)
        q[:, idx] = r_q.float().cpu().numpy().reshape(2, -1)
        ln[:, idx] = r_l.float().cpu().numpy().reshape(2, -1)
    model.train(was_training)
    # The same input is the same reward: a pair whose two answers read as the same tokens is a tie.
    # Scored in two rows of a batch they differ by rounding (about 1e-7, by their place in the batch),
    # which made 37-72% of such pairs a win or a loss instead of the half a tie counts.
    same = _same_rows(enc)
    q[1, same], ln[1, same] = q[0, same], ln[0, same]
    return q, ln


def _same_rows(enc: EncodedPairs) -> np.ndarray:
    """(N,) bool: the pair's chosen and rejected rows are the same input (ids, and token types if any)."""
    same = [c == r for c, r in zip(enc.chosen_ids, enc.rejected_ids, strict=True)]
    if enc.chosen_types:
        same = [s and c == r for s, c, r in zip(same, enc.chosen_types, enc.rejected_types, strict=True)]
    return np.array(same, dtype=bool)


@torch.inference_mode()
def evaluate(
    model: RewardModel,
    pairs: Sequence[PreferencePair],
    tokenizer,
    *,
    max_length: int | None = None,
    batch_size: int = 32,
    device: torch.device | str | None = None,
    autocast_dtype: torch.dtype | None = None,
    encoded: EncodedPairs | None = None,
) -> dict:
    """Score every pair and compute `metrics_from_rewards` for the deployed reward, plus `_raw` figures.

    Batches are formed longest-first under a token budget so evaluation wastes little on padding.
    Pass `encoded` (from `encode_pairs`) to skip tokenization when evaluating the same pairs repeatedly.
    """
    max_length = max_length or model.max_length or 256
    enc = (
        encoded
        if encoded is not None
        else encode_pairs(pairs, tokenizer, max_length, with_types=model.uses_token_types)
    )
    device = torch.device(device) if device is not None else next(model.parameters()).device
    q, ln = score_pairs(
        model, enc, batch_size=batch_size, max_length=max_length, device=device, autocast_dtype=autocast_dtype
    )
    chars = np.stack([enc.chosen_chars, enc.rejected_chars]).astype(np.float64)  # (2, N)
    if model.length_beta is not None:  # the covariate term of the full model
        ln = model.length_term(chars.ravel()).numpy().astype(np.float64).reshape(2, -1)
    offset = model.length_offset(chars.ravel()).reshape(2, -1)  # zeros without calibration
    gate = model.pair_relevance_terms(pairs)  # (2, N), zeros without a gate
    deployed = q - offset + gate
    # The full model ranks by raw reward + length term; pass it as "l" relative to the deployed reward.
    full_l = ln + offset - gate
    metrics = metrics_from_rewards(
        deployed[0],
        deployed[1],
        enc.chosen_chars,
        enc.rejected_chars,
        full_l[0],
        full_l[1],
        enc.margin,
        enc.weight,
    )
    raw = metrics_from_rewards(q[0], q[1], enc.chosen_chars, enc.rejected_chars)
    for key in ("accuracy", "balanced_accuracy", "accuracy_shorter_won", "accuracy_longer_won",
                "pearson_length", "spearman_length"):  # fmt: skip
        metrics[f"{key}_raw"] = raw[key]
    if model.objective == "plain":  # one head, no length term: the full model is the reward
        metrics["accuracy_sum"] = metrics["accuracy_full"] = raw["accuracy"]
    if model.odin:
        metrics["plots"]["reward_length"] = np.concatenate([ln[0], ln[1]]).tolist()
    if model.length_beta is not None:
        metrics["length_beta"] = float(model.length_beta.detach())
    return metrics


def _sample(n: int, k: int, seed: int) -> list[int]:
    if n <= k:
        return list(range(n))
    return sorted(np.random.default_rng([seed, 7]).choice(n, k, replace=False).tolist())


def _won(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """1 where `first` scored higher, one half on a tie, 0 where lower."""
    return (first > second) + 0.5 * (first == second)


def _same_input(model: RewardModel, tokenizer, prompts, originals, padded) -> np.ndarray:
    """(N,) bool: the model reads the padded copy as exactly the original (same ids after truncation)."""
    from .data import encode_texts

    max_length = model.max_length or 256
    a, _, _ = encode_texts(tokenizer, prompts, originals, max_length)
    b, _, _ = encode_texts(tokenizer, prompts, padded, max_length)
    return np.array([x == y for x, y in zip(a, b, strict=True)], dtype=bool)


def probe_tests(
    model: RewardModel,
    tokenizer,
    pairs: Sequence[PreferencePair],
    *,
    neighbours: dict[str, str] | None = None,
    max_answers: int = 200,
    seed: int = 0,
    batch_size: int = 32,
) -> dict:
    """The padding test and the off-prompt test on (a seeded sample of) validation pairs.

    Padding: every sampled answer (chosen and rejected) against a copy padded with filler, a
    restatement of the question, or itself repeated (the kinds take turns); the original must score
    higher. Off-prompt: each sampled pair's chosen answer against the chosen answer of a pair of the
    neighbouring prompt (`neighbours`, prompt key -> key; a seeded random other prompt without it),
    both scored under this pair's prompt; the on-prompt answer must score higher.
    Uses `model.score`, i.e. the deployed reward. A tie counts one half, as in the accuracies. A padded
    copy the model reads exactly as the original (the padding fell in the part truncation cuts, as a
    repetition of an answer longer than the budget does) is left out of the padding test and counted
    in `n_padding_unread`: the raw reward ties there, and the calibration's length term alone would
    decide the case.
    """
    idx = _sample(len(pairs), max(1, max_answers // 2), seed)
    prompts, originals, padded, kinds = [], [], [], []
    for j, i in enumerate(idx):
        for side, answer in enumerate((pairs[i].chosen, pairs[i].rejected)):
            kind = PAD_KINDS[(2 * j + side) % len(PAD_KINDS)]
            prompts.append(pairs[i].prompt)
            originals.append(answer)
            padded.append(pad_answer(answer, pairs[i].prompt, kind))
            kinds.append(kind)
    read = ~_same_input(model, tokenizer, prompts, originals, padded)
    scores = model.score(tokenizer, prompts + prompts, originals + padded, batch_size=batch_size).numpy()
    wins = _won(scores[: len(prompts)], scores[len(prompts) :])[read]
    kinds = [k for k, r in zip(kinds, read, strict=True) if r]
    out: dict = {
        "padding_accuracy": float(wins.mean()) if len(wins) else None,
        "n_padding": len(wins),
        "n_padding_unread": int((~read).sum()),
    }
    for kind in PAD_KINDS:
        sel = np.array([k == kind for k in kinds], dtype=bool)
        out[f"padding_accuracy_{kind}"] = float(wins[sel].mean()) if sel.any() else None

    by_key, key_of = prompt_groups(pairs)
    keys = list(by_key)
    rng = np.random.default_rng([seed, 11])
    on, off, q_prompts = [], [], []
    if len(keys) >= 2:
        for i in idx:
            key = key_of[i]
            other = (neighbours or {}).get(key)
            if other is None or other not in by_key or other == key:
                other = key
                while other == key:
                    other = keys[int(rng.integers(len(keys)))]
            foreign = pairs[by_key[other][int(rng.integers(len(by_key[other])))]]
            q_prompts.append(pairs[i].prompt)
            on.append(pairs[i].chosen)
            off.append(foreign.chosen)
    if on:
        s = model.score(tokenizer, q_prompts + q_prompts, on + off, batch_size=batch_size).numpy()
        wins = _won(s[: len(on)], s[len(on) :])
        wins[[a == b for a, b in zip(on, off, strict=True)]] = 0.5  # the same text: a tie (see score_pairs)
        out["off_prompt_accuracy"] = float(wins.mean())
    else:
        out["off_prompt_accuracy"] = None
    out["n_off_prompt"] = len(on)
    return out


def evaluate_model_dir(
    model_dir: str, pairs: Sequence[PreferencePair], *, device: str | None = None, batch_size: int = 32
) -> dict:
    """Load a saved reward model and return `evaluate`'s scalar metrics on `pairs` (safe activation)."""
    from pathlib import Path

    from transformers import AutoTokenizer

    from .devices import pick_device

    if not (Path(model_dir) / "reward_config.json").is_file():
        raise FileNotFoundError(f"no reward model in {model_dir}")
    dev, dtype = pick_device(device)
    model = RewardModel.from_pretrained(model_dir, device=dev)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return scalar_metrics(
        evaluate(model, pairs, tokenizer, batch_size=batch_size, device=dev, autocast_dtype=dtype)
    )
