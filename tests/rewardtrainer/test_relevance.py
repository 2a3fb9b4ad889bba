"""The relevance gate: the logistic fit on cosines, the cosine helper, and the gate end to end."""

from __future__ import annotations

import numpy as np
import pytest

from rewardtrainer.model import RewardModel
from rewardtrainer.relevance import RelevanceGate, cosines
from rewardtrainer.train_rm import fit_reward_model

from .synthetic import topic_pairs
from .test_train import tiny_config


def test_the_gate_separates_two_cosine_populations_and_costs_relevant_answers_little():
    rng = np.random.default_rng(0)
    relevant, foreign = rng.normal(0.6, 0.1, 400), rng.normal(0.2, 0.1, 100)  # unbalanced on purpose
    gate = RelevanceGate.fit(relevant, foreign, weight=2.0)
    assert gate.a > 0 and 0.95 <= gate.accuracy <= 1.0
    boundary = -gate.b / gate.a  # class-balanced: the midpoint, not pulled towards the larger class
    assert boundary == pytest.approx(0.4, abs=0.03)
    terms = gate(np.array([0.9, 0.4, 0.0]))
    assert terms[0] > -0.05 and terms[1] == pytest.approx(2.0 * np.log(0.5), abs=0.1) and terms[2] < -4.0
    assert RelevanceGate.from_dict(gate.to_dict()) == gate and RelevanceGate.from_dict(None) is None
    with pytest.raises(ValueError):
        RelevanceGate.fit([0.5], [], weight=1.0)


def test_cosines_embed_each_text_once():
    seen = []

    def embed(texts):
        seen.append(list(texts))
        return np.array([[1.0, 0.0] if t.startswith("x") else [0.0, 1.0] for t in texts])

    got = cosines(embed, ["x q", "x q", "y q"], ["x a", "y a", "x a"])
    assert got.tolist() == [1.0, 0.0, 0.0] and len(seen) == 1 and len(seen[0]) == 4


def test_the_gate_sinks_answers_written_for_another_prompt(tmp_path, tiny_bert):
    # One prompt per topic: the off-prompt test's neighbour answers are about another topic.
    pairs = topic_pairs(240, seed=1, n_prompts=10)
    figures = {}
    for gate in (False, True):
        cfg = tiny_config(tiny_bert, objective="length", calibrate=True, relevance_gate=gate, epochs=3,
                          eval_probe_answers=80)  # fmt: skip
        res = fit_reward_model(pairs, cfg, tmp_path / f"run{gate}")
        figures[gate] = res.metrics
    assert figures[False]["off_prompt_accuracy"] < 0.7 and figures[True]["off_prompt_accuracy"] >= 0.9
    assert figures[True]["off_prompt_accuracy_raw"] == figures[False]["off_prompt_accuracy_raw"]
    assert figures[True]["accuracy"] >= 0.9 and figures[True]["relevance_gate_accuracy"] >= 0.85
    model = RewardModel.from_pretrained(tmp_path / "runTrue" / "model")
    assert model.relevance_gate and model.relevance_gate["weight"] > 0
    ungated = RewardModel.from_pretrained(tmp_path / "runFalse" / "model")  # the same training (seeded)
    assert model.calibration != ungated.calibration  # the length fit is of the gated reward
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tmp_path / "runTrue" / "model")
    prompt = pairs[0].prompt  # about the cat
    on, off = model.score(
        tok, [prompt, prompt], ["the cat runs fast excellent", "the river runs fast excellent"]
    )
    assert on > off
    gated = model.score(tok, [prompt], ["the river runs fast excellent"])
    model.relevance_gate = None
    assert model.score(tok, [prompt], ["the river runs fast excellent"]) > gated  # score() adds the gate
