"""The length-debiasing pieces: config round trip and CLI, length covariate, calibration, mismatch pairs,
probes, and the resume step on its own."""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pytest
import torch

from rewardtrainer.augment import (
    FILLER,
    mismatch_pairs,
    pad_answer,
    padded_pairs,
    prompt_neighbours,
)
from rewardtrainer.calibrate import LengthCalibration, _lowess_at, fit_length_beta
from rewardtrainer.config import TrainConfig, add_config_args, config_from_namespace, field_docs
from rewardtrainer.data import PreferencePair, budget_batches, length_balance_factors, prompt_key
from rewardtrainer.evaluate import metrics_from_rewards, pearson_np
from rewardtrainer.model import RewardModel, reward_loss
from rewardtrainer.train_rm import (
    LENGTH_BETA_START_PRIOR_SD,
    RunState,
    _fit_sample,
    build,
    fit_reward_model,
    prepare,
    resume,
)

from .synthetic import keyword_pairs
from .test_train import tiny_config


def test_a_config_survives_asdict_and_every_field_is_a_documented_cli_option():
    config = TrainConfig(objective="odin", augment="random", max_steps=7, calibrate=False)
    assert TrainConfig(**dataclasses.asdict(config)) == config
    parser = argparse.ArgumentParser()
    add_config_args(parser)
    docs = field_docs()
    for f in dataclasses.fields(TrainConfig):
        assert docs.get(f.name), f"{f.name} has no docstring line"
    args = parser.parse_args(
        ["--objective", "plain", "--no-calibrate", "--max-tokens", "4096", "--lr", "1e-4"]
    )
    got = config_from_namespace(args)
    assert (got.objective, got.calibrate, got.max_tokens, got.lr) == ("plain", False, 4096, 1e-4)
    assert got.augment == TrainConfig().augment  # not given: the default
    with pytest.raises(ValueError, match="objective must be one of"):
        TrainConfig(objective="longer-is-better")


def test_options_over_a_config_file_are_checked_once_merged(tmp_path):
    # the options alone were built into a TrainConfig first: --relevance-head over a file that set
    # augment was refused ("relevance_head needs prompt-mismatch pairs") as if the file were not there
    from rewardtrainer.train_rm import config_from_args, parse_args

    path = tmp_path / "config.json"
    path.write_text('{"augment": "random", "max_steps": 3}')
    args = parse_args(["--data", "x.jsonl", "--out", "o", "--config-json", str(path), "--relevance-head"])
    got = config_from_args(args)
    assert (got.augment, got.relevance_head, got.max_steps) == ("random", True, 3)


def test_the_length_covariate_enters_the_loss_and_is_dropped_at_use():
    r_q = torch.tensor([0.0, 0.0, 0.0, 0.0])  # (2B,), B = 2
    length = torch.tensor([400.0, 100.0, 100.0, 400.0])
    margin, weight = torch.zeros(2), torch.ones(2)
    beta = torch.tensor(1.0, requires_grad=True)
    loss, stats = reward_loss(r_q, torch.zeros(4), length, margin, weight, None, length_beta=beta)
    logit = np.log(4.0)  # beta * (log 400 - log 100) for pair 0, minus that for pair 1
    expected = (np.logaddexp(0, -logit) + np.logaddexp(0, logit)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert beta.grad is not None and stats["accuracy"].item() == 0.5  # the quality reward alone ties: a half


def test_augmented_pairs_leave_the_length_term_out_of_their_logit():
    """A padded copy is always longer and always loses: with the length term in their logit, padding
    pairs taught it "shorter wins" and pulled beta far below the raters' own length preference."""
    r_q = torch.zeros(4)  # (2B,), B = 2: pair 0 from a rater, pair 1 a padding pair
    length = torch.tensor([400.0, 100.0, 100.0, 400.0])
    margin, weight = torch.zeros(2), torch.ones(2)
    beta = torch.tensor(1.0, requires_grad=True)
    synthetic = torch.tensor([False, True])
    loss, _ = reward_loss(
        r_q, torch.zeros(4), length, margin, weight, None, length_beta=beta, synthetic=synthetic
    )
    expected = (np.logaddexp(0, -np.log(4.0)) + np.log(2.0)) / 2  # the padding pair's logit is 0
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert beta.grad.item() < 0  # only the rater's pair, where the longer answer won, moves beta: up


def test_prepare_marks_the_augmented_pairs(tmp_path, tiny_bert):
    pairs = keyword_pairs(40, n_prompts=8)
    prep = prepare(pairs, tiny_config(tiny_bert, augment_padding=0.5), tmp_path)
    n_human = int((~prep.enc_train.synthetic).sum())
    assert prep.enc_train.synthetic[n_human:].all() and not prep.enc_train.synthetic[:n_human].any()
    assert 0 < n_human < len(prep.enc_train)


def test_beta_starts_at_the_raters_length_pull_in_the_human_pairs(tmp_path, tiny_bert):
    """From 0, at its small learning rate, beta ended a short run far below the raters' pull (0.09 after
    26 steps where the pairs said 5.0): the reward learned the rest of the length taste, and the length
    calibration then took it out again with much of the quality signal."""
    pairs = keyword_pairs(60, n_prompts=12, longer_chosen=0.85)
    cfg = tiny_config(tiny_bert, objective="length", augment_padding=0.5)
    prep = prepare(pairs, cfg, tmp_path / "a")
    human = prep.train_pairs
    chars = np.array([len(p.chosen) for p in human] + [len(p.rejected) for p in human], dtype=float)
    expected = fit_length_beta(np.zeros(len(chars)), chars, prior_sd=LENGTH_BETA_START_PRIOR_SD)
    assert expected > 1 and prep.length_beta_start == pytest.approx(expected)
    # the padding pairs (a longer copy always loses) are not the raters' taste: left out of the fit
    assert prep.n_augmented > 0
    assert float(build(prep).model.length_beta) == pytest.approx(expected, rel=1e-5)
    zero = prepare(pairs, cfg.replace(length_beta_start="zero"), tmp_path / "b")
    assert float(build(zero).model.length_beta) == 0.0
    plain = prepare(pairs, cfg.replace(objective="plain"), tmp_path / "c")
    assert plain.length_beta_start == 0.0 and build(plain).model.length_beta is None
    with pytest.raises(ValueError, match="length_beta_start"):
        cfg.replace(length_beta_start="half")


def test_beta_starts_finite_where_the_longer_answer_always_won(tmp_path, tiny_bert):
    """Pairs that length alone separates have no finite fit: beta started at the search bound (10), the
    length term saturated the logit (4 at a length ratio of 1.5) and the reward learned almost nothing.
    A weak prior keeps it finite; with no prior the fit is the bound, as before."""
    pairs = keyword_pairs(12, n_prompts=4, longer_chosen=1.0)
    cfg = tiny_config(tiny_bert, objective="length", augment_padding=0.0)
    human = prepare(pairs, cfg, tmp_path).train_pairs
    assert all(len(p.chosen) > len(p.rejected) for p in human)
    chars = np.array([len(p.chosen) for p in human] + [len(p.rejected) for p in human], dtype=float)
    assert fit_length_beta(np.zeros(len(chars)), chars) == 10.0
    assert 0.5 < prepare(pairs, cfg, tmp_path / "b").length_beta_start < 5.0
    one = fit_length_beta(np.zeros(2), np.array([300.0, 200.0]), prior_sd=2.0)
    assert 0 < one < 2


def test_calibration_flattens_a_length_trend_and_keeps_equal_length_rankings():
    rng = np.random.default_rng(0)
    lengths = rng.lognormal(5, 1, 800)
    rewards = 0.6 * np.log(lengths) + rng.normal(0, 0.5, 800)
    cal = LengthCalibration.fit(rewards, lengths)
    assert abs(pearson_np(rewards, lengths)) > 0.3
    assert abs(pearson_np(rewards - cal(lengths), lengths)) < 0.05
    same = np.array([200.0, 200.0])
    assert np.diff(np.array([1.0, 2.0]) - cal(same))[0] == pytest.approx(1.0)
    assert LengthCalibration.from_dict(cal.to_dict()) == cal


def test_balanced_accuracy_does_not_reward_a_length_detector():
    len_c = np.array([300, 300, 300, 100, 100.0])  # longer won 3 times, shorter twice
    len_r = np.array([100, 100, 100, 300, 300.0])
    length_reward_c, length_reward_r = np.log(len_c), np.log(len_r)
    m = metrics_from_rewards(length_reward_c, length_reward_r, len_c, len_r)
    assert m["accuracy"] == pytest.approx(0.6)
    assert (m["accuracy_longer_won"], m["accuracy_shorter_won"], m["balanced_accuracy"]) == (1.0, 0.0, 0.5)


def test_mismatch_pairs_pit_an_answer_against_one_to_another_prompt():
    pairs = keyword_pairs(40, n_prompts=8)
    neighbours = prompt_neighbours(pairs, embed=lambda texts: np.eye(len(texts))[[1, 0, 3, 2, 5, 4, 7, 6]])
    assert neighbours[prompt_key(pairs[0])] == prompt_key(pairs[1])
    extra = mismatch_pairs(pairs, ratio=0.5, seed=0, neighbours=neighbours)
    assert len(extra) == 20
    answers_of: dict[str, set[str]] = {}
    for p in pairs:
        answers_of.setdefault(prompt_key(p), set()).update((p.chosen, p.rejected))
    for e in extra:
        key = e.prompt_id
        assert e.chosen in answers_of[key] and e.rejected not in answers_of[key]
        assert e.rejected in answers_of[neighbours[key]]
    assert mismatch_pairs(pairs, ratio=0.0, seed=0) == []
    assert {k: pad_answer("Yes.", "Q?", k) for k in ("filler", "restate", "repeat")}[
        "repeat"
    ] == "Yes.\n\nYes."


def test_padding_pairs_prefer_the_plain_answer_and_never_use_the_tests_wording():
    pairs = keyword_pairs(40, n_prompts=8)
    extra = padded_pairs(pairs, ratio=0.5, seed=3)
    assert len(extra) == 20 and padded_pairs(pairs, ratio=0.5, seed=3) == extra
    answers = {a for p in pairs for a in (p.chosen, p.rejected)}
    for e in extra:
        assert e.chosen in answers and e.chosen in e.rejected and len(e.rejected) > len(e.chosen)
        assert e.margin == 0.0
        # the padding test's own forms stay unseen: its filler, its restatement, a whole repetition
        assert FILLER.strip() not in e.rejected and "You asked:" not in e.rejected
        assert e.rejected != f"{e.chosen}\n\n{e.chosen}"
    assert padded_pairs(pairs, ratio=0.0, seed=0) == []
    with pytest.raises(ValueError, match="augment_padding"):
        TrainConfig(augment_padding=-1.0)


def test_token_budget_batches_hold_the_budget_and_every_pair_once():
    lengths = np.random.default_rng(0).integers(5, 200, 500)
    batches = budget_batches(lengths, max_tokens=2000, seed=[0, 0])
    assert sorted(i for b in batches for i in b) == list(range(500))
    assert all(2 * len(b) * lengths[b].max() <= 2000 or len(b) == 1 for b in batches)
    assert budget_batches(lengths, 2000, seed=[0, 0]) == batches  # deterministic: resume relies on it


def test_the_length_model_learns_beta_calibrates_and_passes_the_probes(tmp_path, tiny_bert):
    pairs = keyword_pairs(240, seed=3, longer_chosen=0.85)
    cfg = tiny_config(
        tiny_bert, objective="length", calibrate=True, augment="random", augment_padding=0.0, epochs=3,
        eval_probe_answers=40, length_beta_start="zero",  # from 0, so that beta > 0 is learned
    )  # fmt: skip
    res = fit_reward_model(pairs, cfg, tmp_path / "run")
    m = res.metrics
    assert m["length_beta"] > 0  # the covariate took up the raters' taste for length
    assert abs(m["pearson_length"]) < 0.15 and m["augmented_pairs"] == round(0.5 * res.pairs_train)
    assert m["accuracy_full"] >= 0.75 and m["balanced_accuracy"] >= 0.7
    assert {"padding_accuracy", "off_prompt_accuracy", "padding_accuracy_raw"} <= set(m)
    model = RewardModel.from_pretrained(res.model_dir)
    assert model.calibration and model.objective == "length"
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(res.model_dir)
    deployed = model.score(tok, ["question 1: x"], ["the red car excellent"])
    fit = model.calibration
    with pytest.raises(RuntimeError), model.raw():  # raw(): the head's own reward, the fits back after
        raw = model.score(tok, ["question 1: x"], ["the red car excellent"])
        assert model.calibration is None
        raise RuntimeError("the fits come back after an error too")
    assert model.calibration == fit
    assert model.score(tok, ["question 1: x"], ["the red car excellent"]) == deployed
    assert deployed.item() != pytest.approx(raw.item())  # score() subtracts the length fit


def test_the_length_fit_is_measured_on_prompts_held_out_of_training(tmp_path, tiny_bert):
    pairs = keyword_pairs(200, seed=4)
    prep = prepare(pairs, tiny_config(tiny_bert, calibrate=True, calibration_holdout=0.2), tmp_path / "a")
    parts = (prep.train_pairs, prep.val_pairs, prep.calib_pairs)
    train, val, calib = ({p.prompt_id for p in part} for part in parts)
    assert calib and not (calib & train) and not (calib & val)
    assert len(prep.train_pairs) + len(prep.val_pairs) + len(prep.calib_pairs) == 200
    assert abs(len(prep.calib_pairs) - 0.2 * 160) <= 10  # a share of the training pairs
    sample, sample_pairs = _fit_sample(prep)  # what finalize fits the calibration on: the held-out answers
    assert sample_pairs == prep.calib_pairs
    chars = {len(p.chosen) for p in prep.calib_pairs}
    assert set(sample.chosen_chars.tolist()) <= chars and len(sample.chosen_chars) == len(prep.calib_pairs)
    for off in (dict(calibration_holdout=0.0), dict(calibrate=False)):  # no fit wanted or asked: all train
        prep = prepare(pairs, tiny_config(tiny_bert, **off), tmp_path / "b")
        assert not prep.calib_pairs and len(prep.train_pairs) + len(prep.val_pairs) == 200


def test_the_calibration_holdout_is_checked():
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="calibration_holdout"):
            TrainConfig.from_stored({"calibration_holdout": bad})


def test_only_the_mismatch_pairs_are_flagged_for_the_relevance_head(tmp_path, tiny_bert):
    pairs = keyword_pairs(100, seed=5)
    cfg = tiny_config(
        tiny_bert, augment="random", augment_ratio=0.5, augment_padding=0.5, relevance_head=True
    )
    prep = prepare(pairs, cfg, tmp_path / "p")
    n = len(prep.train_pairs)
    flags = prep.enc_train.mismatch
    assert flags is not None and len(flags) == len(prep.enc_train) == n + prep.n_augmented
    assert not flags[:n].any() and flags.sum() == round(0.5 * n)  # human pairs first, then mismatch
    assert not flags[n + round(0.5 * n) :].any()  # the padding pairs rank as usual
    assert prepare(pairs, cfg.replace(relevance_head=False), tmp_path / "q").enc_train.mismatch is None
    with pytest.raises(ValueError, match="relevance_head"):
        TrainConfig(relevance_head=True, augment="none")
    res = fit_reward_model(pairs, cfg.replace(epochs=1, eval_probe_answers=20), tmp_path / "run")
    assert RewardModel.from_pretrained(res.model_dir).relevance_head is not None


def test_padding_pairs_teach_the_padding_test(tmp_path, tiny_bert):
    pairs = keyword_pairs(240, seed=3, longer_chosen=0.85)
    scores = {}
    for start in ("zero", "fit"):
        for ratio in (0.0, 1.0):
            cfg = tiny_config(
                tiny_bert, objective="length", augment_padding=ratio, epochs=3, eval_probe_answers=60,
                length_beta_start=start,
            )  # fmt: skip
            res = fit_reward_model(pairs, cfg, tmp_path / f"run{ratio}-{start}")
            assert res.metrics["augmented_pairs"] == round(ratio * res.pairs_train)
            scores[start, ratio] = res.metrics["padding_accuracy"]
    # measured: zero 0.33 -> 0.88, fit 0.62 -> 0.90
    assert scores["zero", 1.0] >= 0.8 and scores["zero", 1.0] > scores["zero", 0.0] + 0.3, scores
    assert scores["fit", 1.0] >= 0.8 and scores["fit", 1.0] > scores["fit", 0.0] + 0.15, scores
    # with beta at the raters' pull from the start, the reward itself learns less "longer is better"
    assert scores["fit", 0.0] > scores["zero", 0.0] + 0.15, scores


def test_resume_restores_the_run_state_on_its_own(tmp_path, tiny_bert):
    pairs = keyword_pairs(80)
    cfg = tiny_config(tiny_bert, epochs=3, checkpoint_every=2)
    calls = iter(range(1000))
    stopped = fit_reward_model(pairs, cfg, tmp_path / "run", should_stop=lambda: next(calls) == 4)
    assert stopped.stopped and stopped.global_step == 5
    prep = prepare(pairs, cfg, tmp_path / "run")
    parts = build(prep)
    fresh = RunState(fingerprint="someone else's")
    _, state, step = resume(prep, parts, tmp_path / "run" / "checkpoints", fresh, enabled=True)
    assert step is None and state is fresh  # another run's checkpoints are not taken
    prep = prepare(pairs, cfg, tmp_path / "run2")
    fit_reward_model(pairs, cfg, tmp_path / "run2", should_stop=lambda: True)
    parts = build(prep)
    from rewardtrainer.train_rm import fingerprint

    mine = RunState(fingerprint=fingerprint(prep))
    _, state, step = resume(prep, parts, tmp_path / "run2" / "checkpoints", mine, enabled=True)
    assert step == 1 and state.global_step == 1 and state.fingerprint == mine.fingerprint


def test_length_balance_gives_longer_won_and_shorter_won_pairs_equal_weight():
    def pair(chosen: str, rejected: str, weight: float = 1.0) -> PreferencePair:
        return PreferencePair("q", chosen, rejected, weight=weight)

    pairs = [pair("long answer", "short"), pair("long answer", "short", 2.0), pair("tiny", "much longer"),
             pair("same", "size")]  # fmt: skip
    # longer won: weights 1 + 2 = 3; shorter won: 1; each group gets half of 4, the tie keeps 1
    factors = length_balance_factors(pairs)
    assert factors.tolist() == pytest.approx([2 / 3, 2 / 3, 2.0, 1.0])
    weighted = factors * np.array([p.weight for p in pairs])
    assert weighted[:2].sum() == pytest.approx(weighted[2]) and weighted.sum() == pytest.approx(5.0)
    assert length_balance_factors(pairs[:2]).tolist() == [1.0, 1.0]  # nothing to balance against


def test_the_length_term_is_refitted_with_the_rewards_held_fixed():
    rng = np.random.default_rng(0)
    n = 4000
    chars = rng.lognormal(5, 0.8, (2, n))  # (2, N): answer lengths of the two sides
    quality = rng.normal(0, 1, (2, n))
    logit = quality[0] - quality[1] + 0.7 * (np.log(chars[0]) - np.log(chars[1]))
    first_wins = rng.random(n) < 1 / (1 + np.exp(-logit))
    chosen = np.where(first_wins, 0, 1)  # which side the simulated raters chose
    idx = np.arange(n)
    rewards = np.concatenate([quality[chosen, idx], quality[1 - chosen, idx]])  # chosen, then rejected
    lengths = np.concatenate([chars[chosen, idx], chars[1 - chosen, idx]])
    assert fit_length_beta(rewards, lengths) == pytest.approx(0.7, abs=0.08)
    # pairs that length alone separates have no finite maximum: bounded, not an overflow
    separable = fit_length_beta(np.zeros(4), np.array([400.0, 300.0, 100.0, 100.0]))
    assert separable == 10.0
    # pairs of equal lengths, or only weightless ones, say nothing about length: 0, not the bound
    r = np.random.default_rng(0).normal(0, 1, 200)
    assert fit_length_beta(r, np.full(200, 300.0)) == 0.0
    assert fit_length_beta(r, np.arange(200.0) + 1, np.zeros(100)) == 0.0
    # large reward gaps: a full Newton step from 0 overshot to the bound with the wrong sign (-10)
    d = np.array([-3.0, 4, -3, -6, 4, 6])
    x = np.array([1, 0.5, 1, -1, -1, -0.5])
    lengths = np.concatenate([100 * np.exp(x), np.full(6, 100.0)])
    assert fit_length_beta(np.concatenate([d, 0 * d]), lengths) == pytest.approx(2.60, abs=0.01)
    with_nan = np.concatenate([np.r_[d, np.nan], np.zeros(7)])
    assert fit_length_beta(with_nan, np.r_[lengths[:6], 100, lengths[6:], 100]) == pytest.approx(
        2.60, abs=0.01
    )


def test_length_balanced_training_weighs_the_groups_equally_and_refits_beta(tmp_path, tiny_bert):
    # the keyword decides half the pairs, whatever the lengths; in the other half only length differs,
    # and the raters took the longer answer: a taste for length that no reward of the content explains
    pairs = keyword_pairs(120, seed=5, longer_chosen=0.5)
    taste = [
        dataclasses.replace(p, chosen=p.rejected + " " + p.rejected, rejected=p.rejected, pair_id=f"t{i}")
        for i, p in enumerate(keyword_pairs(120, seed=6))
    ]
    pairs = [p for two in zip(pairs, taste, strict=True) for p in two]
    cfg = tiny_config(tiny_bert, objective="length", length_balance=True, augment_padding=0.5, epochs=2)
    prep = prepare(pairs, cfg, tmp_path / "prep")
    n = len(prep.train_pairs)
    w = prep.enc_train.weight[:n]
    longer = np.array([len(p.chosen) > len(p.rejected) for p in prep.train_pairs])
    assert w[longer].sum() == pytest.approx(w[~longer].sum(), rel=1e-5)
    assert (prep.enc_train.weight[n:] == 1.0).all()  # padding pairs are not about taste
    res = fit_reward_model(pairs, cfg, tmp_path / "run")
    m = res.metrics
    assert "length_beta_trained" in m and m["length_beta"] != m["length_beta_trained"]
    assert m["length_beta"] > 0.5  # on the natural, unweighted pairs length wins the second half
    assert RewardModel.from_pretrained(res.model_dir).length_beta.item() == pytest.approx(m["length_beta"])


def test_the_length_balance_refit_stays_finite_where_length_alone_separates_the_pairs(tmp_path, tiny_bert):
    # every chosen answer is the rejected one said twice, and the reward barely moved (lr 1e-12): the
    # unweighted refit has no finite maximum and beta went to the search bound, 10, where the length
    # term alone decides every pair the model scores
    pairs = [
        dataclasses.replace(p, chosen=p.rejected + " " + p.rejected, rejected=p.rejected, pair_id=f"t{i}")
        for i, p in enumerate(keyword_pairs(60, seed=6))
    ]
    cfg = tiny_config(tiny_bert, objective="length", length_balance=True, lr=1e-12, epochs=1)
    m = fit_reward_model(pairs, cfg, tmp_path / "run").metrics
    assert 0.5 < m["length_beta"] < 5.0


def test_the_local_fit_stays_local_when_every_neighbour_sits_at_the_window_edge():
    # x0 = 1 between two tied pairs at 0 and 2: the 4 nearest all lie at distance h = 1, where the
    # tricube weight is 0; the far point at 100 must not pull the fit
    x = np.array([0.0, 0.0, 2.0, 2.0, 100.0])
    y = np.array([0.4, 0.6, 0.4, 0.6, 50.0])
    assert _lowess_at(x, y, 1.0, span=0.8) == pytest.approx(0.5)


def test_the_padding_test_leaves_out_copies_the_model_reads_as_the_original(tiny_bert):
    """An answer longer than the model's budget, repeated, truncates (head and tail) to exactly the
    original's tokens: the raw reward ties, and only the calibration's length term decided the case."""
    from transformers import AutoTokenizer

    from rewardtrainer.evaluate import probe_tests

    tok = AutoTokenizer.from_pretrained(tiny_bert)
    model = RewardModel.from_backbone(tiny_bert)
    model.max_length = 32
    long = " ".join(f"word{i}" for i in range(80))  # far past 32 tokens
    pairs = [
        PreferencePair(
            prompt=f"question {i}", chosen=long if i == 1 else f"short answer {i}", rejected=f"no {i}"
        )
        for i in range(3)
    ]  # pair 1's chosen answer is repeated (the kinds take turns: filler, restate, repeat, ...)
    out = probe_tests(model, tok, pairs, max_answers=6)
    assert out["n_padding_unread"] == 1 and out["n_padding"] == 5
    # a model that scores everything the same ties every case: one half, not zero
    torch.nn.init.zeros_(model.quality_head.weight)
    torch.nn.init.zeros_(model.quality_head.bias)
    tied = probe_tests(model, tok, pairs, max_answers=6)
    assert tied["padding_accuracy"] == 0.5 and tied["off_prompt_accuracy"] == 0.5


def test_a_prompt_written_twice_with_other_case_or_spacing_stays_on_one_side_of_the_split():
    from rewardtrainer.data import split_by_prompt

    twins = ["Write me an Instagram post on fun things for kids on \nholidays",
             "write me an instagram post on fun things for kids on holidays"]  # fmt: skip
    pairs = [PreferencePair(prompt=twins[i % 2], chosen=f"a{i}", rejected=f"b{i}") for i in range(4)]
    pairs += [PreferencePair(prompt=f"other {i}", chosen=f"c{i}", rejected=f"d{i}") for i in range(20)]
    for seed in range(10):
        train, val = split_by_prompt(pairs, 0.2, seed)
        sides = {p.prompt in {q.prompt for q in val} for p in pairs if p.prompt in twins}
        assert len(sides) == 1, seed


def test_one_question_under_two_prompt_ids_is_one_prompt_for_the_split_and_the_augmentation():
    # the app stores a question twice as two prompts: the split put it on both sides, and the mismatch
    # augmentation took an answer to the very same question as the "foreign" (worse) one
    from rewardtrainer.data import PreferencePair, prompt_groups, split_by_prompt

    def pair(prompt, pid, chosen, rejected):
        return PreferencePair(prompt=prompt, chosen=chosen, rejected=rejected, prompt_id=pid)

    pairs = [pair("How do eggs boil?", f"prompt:{i}", f"egg good {i}", f"egg bad {i}") for i in range(2)]
    pairs += [pair("how do  EGGS boil?", "prompt:9", "egg good 9", "egg bad 9")]
    pairs += [pair(f"What is {w}?", f"prompt:{w}", f"{w} good", f"{w} bad") for w in ("tea", "rain")]
    groups, _ = prompt_groups(pairs)
    assert list(groups.values()) == [[0, 1, 2], [3], [4]]

    def question(p):
        return " ".join(p.prompt.casefold().split())

    for seed in range(10):
        train, val = split_by_prompt(pairs, 0.3, seed=seed)
        assert not {question(p) for p in train} & {question(p) for p in val}
    for neighbours in (None, prompt_neighbours(pairs, embed=lambda texts: np.eye(len(texts)))):
        for extra in mismatch_pairs(pairs, ratio=3.0, seed=1, neighbours=neighbours):
            assert not ("egg" in extra.chosen and "egg" in extra.rejected), extra


def test_a_reworded_question_is_never_the_neighbour():
    # "Are there some methods..." / "Is there some method...": nearest by cosine, and an answer to it
    # answers the question, so it must not be the foreign answer
    pairs = keyword_pairs(12, n_prompts=3)
    vectors = np.array([[1.0, 0.0], [0.999, 0.045], [0.6, 0.8]])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    neighbours = prompt_neighbours(pairs, embed=lambda texts: vectors)
    keys = list(dict.fromkeys(prompt_key(p) for p in pairs))  # no duplicates: the groups' keys
    assert neighbours[keys[0]] == keys[2] and neighbours[keys[1]] == keys[2]


def test_a_nan_reward_is_no_length_free_reward():
    # pearson_np answered 0.0 (perfectly length-free) for a NaN reward
    from rewardtrainer.evaluate import pearson_np

    assert np.isnan(pearson_np(np.array([1.0, np.nan, 2.0]), np.array([3.0, 4.0, 5.0])))
    assert pearson_np(np.array([1.0, 1.0, 1.0]), np.array([3.0, 4.0, 5.0])) == 0.0


def test_prompt_groups_join_through_ids_and_texts_alike():
    # grouped by the first pair's text only, id 2 ("Define Y" and "what is x?") landed in two groups
    from rewardtrainer.data import PreferencePair, prompt_groups, split_by_prompt

    pairs = [
        PreferencePair(prompt="What is X?", chosen="a", rejected="b", prompt_id="1"),
        PreferencePair(prompt="Define Y", chosen="c", rejected="d", prompt_id="2"),
        PreferencePair(prompt="what is  x?", chosen="e", rejected="f", prompt_id="2"),
        PreferencePair(prompt="Other", chosen="g", rejected="h", prompt_id="3"),
    ]
    groups, keys = prompt_groups(pairs)
    assert groups == {"1": [0, 1, 2], "3": [3]} and keys == ["1", "1", "1", "3"]
    for seed in range(5):
        train, val = split_by_prompt(pairs, 0.25, seed=seed)
        assert not {p.prompt_id for p in train} & {p.prompt_id for p in val}
