"""Evaluation metrics on hand-made rewards, and evaluate() on a tiny model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rewardtrainer.data import PreferencePair
from rewardtrainer.evaluate import (
    _rank,
    evaluate,
    expected_calibration_error,
    length_buckets,
    length_matched_mask,
    metrics_from_rewards,
    pearson_np,
    probe_tests,
    spearman_np,
)
from rewardtrainer.model import RewardModel


def test_ece_is_zero_for_calibrated_and_the_gap_for_overconfident_predictions():
    assert expected_calibration_error(np.full(10, 0.5))[0] == pytest.approx(0.0)
    # every pair right, always 90% sure: off by 0.1 in both orientations
    assert expected_calibration_error(np.full(10, 0.9))[0] == pytest.approx(0.1)
    # 75% sure and right 3 times out of 4: calibrated
    assert expected_calibration_error(np.array([0.75, 0.75, 0.75, 0.25]))[0] == pytest.approx(0.0)
    ece, rows = expected_calibration_error(np.array([0.95, 0.6]))
    assert sum(r["n"] for r in rows) == 4 and 0 < ece < 1


def test_length_matched_means_within_a_ratio_of_1_2():
    mask = length_matched_mask(np.array([100, 100, 120, 0, 10]), np.array([110, 125, 100, 0, 0]))
    assert mask.tolist() == [True, False, True, True, False]


def test_metrics_from_hand_made_rewards():
    len_c, len_r = np.array([100, 300, 50, 80]), np.array([110, 100, 200, 80])
    q_c, q_r = np.array([1.0, 0.0, 2.0, 0.0]), np.array([0.0, 1.0, 1.0, 0.5])
    l_c, l_r = np.array([0.0, 2.0, 0.0, 1.0]), np.zeros(4)
    m = metrics_from_rewards(q_c, q_r, len_c, len_r, l_c, l_r)
    assert m["n_pairs"] == 4 and m["accuracy"] == 0.5 and m["accuracy_sum"] == 1.0
    assert (m["accuracy_length_matched"], m["n_length_matched"]) == (0.5, 2)  # pairs 0 and 3
    assert (m["accuracy_shorter_won"], m["n_shorter_won"]) == (1.0, 2)  # pairs 0 and 2
    lengths, rewards = np.concatenate([len_c, len_r]), np.concatenate([q_c, q_r])
    assert m["pearson_length"] == pytest.approx(np.corrcoef(rewards, lengths)[0, 1])
    assert m["pearson_length_head"] == pytest.approx(np.corrcoef(np.concatenate([l_c, l_r]), lengths)[0, 1])
    diff_sum = (q_c + l_c) - (q_r + l_r)
    assert m["loss"] == pytest.approx(np.mean([math.log1p(math.exp(-d)) for d in diff_sum]))
    assert m["plots"]["length"] == lengths.tolist() and m["plots"]["reward_quality"] == rewards.tolist()
    assert sum(b["n"] for b in m["plots"]["length_buckets"]) == 8
    empty = metrics_from_rewards(q_c[:1], q_r[:1], np.array([10]), np.array([100]))
    assert empty["accuracy_length_matched"] is None and empty["n_length_matched"] == 0  # None, not NaN: JSON


def test_a_tied_pair_counts_one_half():
    # the shared data holds a pair whose two answers are the same text: every model ties it, and counting
    # the tie as wrong put every model's accuracy below what a coin breaking ties would score
    q_c, q_r = np.array([1.0, 0.3, 0.0, 2.0]), np.array([0.0, 0.3, 1.0, 2.0])
    m = metrics_from_rewards(q_c, q_r, np.array([100, 50, 50, 30]), np.array([50, 50, 100, 60]))
    assert m["accuracy"] == pytest.approx((1 + 0.5 + 0 + 0.5) / 4)
    assert m["accuracy_longer_won"] == 1.0 and m["accuracy_shorter_won"] == pytest.approx(0.25)


def test_a_reward_that_is_not_finite_leaves_no_finite_accuracy_or_correlation():
    # a NaN reward counted as a wrongly ranked pair (accuracy 1/3, balanced 0.25: a number safe
    # activation compared), ECE left the pair out, and an infinite reward gave Spearman 0.5
    q_c, q_r = np.array([1.0, np.nan, 2.0]), np.array([0.0, 1.0, 1.0])
    m = metrics_from_rewards(q_c, q_r, np.array([100, 50, 30]), np.array([50, 100, 60]))
    assert math.isnan(m["accuracy"]) and math.isnan(m["balanced_accuracy"])
    assert math.isnan(expected_calibration_error(np.array([0.9, np.nan, 0.6]))[0])
    assert math.isnan(spearman_np(np.array([1.0, np.inf, 2.0]), np.array([1.0, 2.0, 3.0])))
    clean = metrics_from_rewards(q_c[[0, 2]], q_r[[0, 2]], np.array([100, 30]), np.array([50, 60]))
    assert clean["accuracy"] == 1.0 and clean["balanced_accuracy"] == 1.0


def test_spearman_matches_scipy_and_the_numpy_fallback_with_ties():
    from scipy.stats import spearmanr

    x = np.array([3.0, 1.0, 2.0, 2.0, 5.0, 5.0, 0.5])
    y = np.array([1.0, 2.0, 2.0, 3.0, 9.0, 4.0, 0.0])
    expected = spearmanr(x, y).statistic
    assert spearman_np(x, y) == pytest.approx(expected)
    assert pearson_np(_rank(x), _rank(y)) == pytest.approx(expected)
    assert pearson_np(np.ones(3), np.arange(3)) == 0.0 and spearman_np(np.ones(3), np.arange(3)) == 0.0


def test_length_buckets_are_quantiles_with_their_mean_rewards():
    lengths = np.arange(100.0)
    rows = length_buckets(lengths, {"r": lengths * 2}, n_buckets=4)
    assert [r["n"] for r in rows] == [25, 25, 25, 25]
    assert rows[0]["mean_r"] == pytest.approx(24.0) and rows[-1]["mean_r"] == pytest.approx(174.0)


def test_evaluate_scores_every_answer_with_both_heads(tiny_bert, minilm_tokenizer):
    torch.manual_seed(0)
    model = RewardModel.from_backbone(tiny_bert, odin=True)
    pairs = [
        PreferencePair("q one", "a fine answer", "no"),
        PreferencePair("q two " * 50, "long " * 100, "short"),  # truncated
        PreferencePair("q three", "yes", "yes indeed"),
    ]
    m = evaluate(model, pairs, minilm_tokenizer, max_length=64, batch_size=2)
    scores = model.score(
        minilm_tokenizer,
        [p.prompt for p in pairs] * 2,
        [p.chosen for p in pairs] + [p.rejected for p in pairs],
        max_length=64,
    )
    assert np.allclose(m["plots"]["reward_quality"], scores.numpy(), atol=1e-5)
    assert m["n_pairs"] == 3 and len(m["plots"]["reward_length"]) == 6
    assert model.training  # evaluate restores the mode it found


@pytest.mark.parametrize("backbone", ["tiny_bert", "tiny_gpt2", "tiny_llama"])
def test_a_pair_of_the_same_text_is_a_tie_wherever_it_sits_in_a_batch(request, backbone, minilm_tokenizer):
    # the same input scored in two rows of a batch differs by rounding (~1e-7, by its place), and an
    # exact comparison made 37-72% of such pairs a win or a loss: accuracy moved with the batch size
    torch.manual_seed(0)
    model = RewardModel.from_backbone(request.getfixturevalue(backbone), objective="length")
    texts = [" ".join(["word"] * (1 + i % 9) + [str(i)]) for i in range(24)]
    same = [PreferencePair(f"prompt {i % 5}", t, t) for i, t in enumerate(texts)]
    for batch_size in (3, 7, 32):
        m = evaluate(model, same, minilm_tokenizer, max_length=64, batch_size=batch_size)
        assert m["accuracy"] == 0.5 and m["accuracy_full"] == 0.5, (batch_size, m["accuracy"])
    # the off-prompt test: another prompt's answer of the same text is the same input too
    shared = [PreferencePair(f"question {i}", "the same reply", f"other {i} " * (i + 1)) for i in range(6)]
    probes = probe_tests(model, minilm_tokenizer, shared, batch_size=4)
    assert probes["off_prompt_accuracy"] == 0.5
