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
        cfg = tiny_config(tiny_bert, objective="length", calibrate=True, epochs=3,
                          relevance_gate="cosine" if gate else "none",
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


# --- the PMI gate ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_lm_dir(tmp_path_factory) -> str:
    """A tiny Llama with a word-level ChatML tokenizer, saved like any causal LM folder."""
    from .tiny_policy import tiny_llama, tiny_tokenizer

    out = tmp_path_factory.mktemp("tiny-lm")
    tok = tiny_tokenizer()
    tiny_llama(tok, seed=3).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)


def test_batched_answer_log_probs_match_one_row_at_a_time_and_are_remembered(tiny_lm_dir):
    import torch

    from rewardtrainer.relevance import AnswerLikelihood
    from rewardtrainer.sampling import prompt_ids

    lik = AnswerLikelihood(tiny_lm_dir, max_answer_tokens=6, batch_tokens=64)
    prompts = ["the cat runs", "a blue sky over the river", "", "red car"]
    answers = ["the cat runs fast", "blue", "green tree house light road sky stone good", "red red car"]
    got = lik.mean_logprobs(prompts, answers)
    for k, (p, a) in enumerate(zip(prompts, answers, strict=True)):
        p_ids = prompt_ids(lik.tokenizer, p)
        a_ids = lik.tokenizer(a, add_special_tokens=False)["input_ids"][:6]  # answers cut to 6 tokens
        with torch.no_grad():
            logits = lik.model(torch.tensor([p_ids + a_ids])).logits[0, len(p_ids) - 1 : -1]
        want = logits.log_softmax(-1).gather(1, torch.tensor(a_ids)[:, None]).mean()
        assert got[k] == pytest.approx(float(want), abs=1e-4)  # padding and batching change nothing

    calls = []
    forward = lik._forward
    lik._forward = lambda rows: calls.append(len(rows)) or forward(rows)
    again = lik.mean_logprobs(prompts[::-1], answers[::-1])
    assert calls == [] and again.tolist() == got[::-1].tolist()  # remembered, in the order asked
    pmi = lik.pmi(prompts[:2], answers[:2])
    assert calls == [2]  # only the two empty-prompt rows were new
    assert pmi.tolist() == pytest.approx((got[:2] - lik.mean_logprobs(["", ""], answers[:2])).tolist())


def test_the_pmi_gate_is_a_hinge_fitted_at_a_quantile_of_own_answers():
    from rewardtrainer.data import PreferencePair
    from rewardtrainer.relevance import PmiGate, RelevanceGate, fit_pmi_gate, gate_from_dict

    values = {f"a{i}": i / 100 for i in range(100)}  # answer -> its PMI, 0.00 .. 0.99

    class FakeLikelihood:
        max_prompt, max_answer = 32, 16

        def pmi(self, prompts, answers):
            return np.array([values[a] for a in answers])

    pairs = [PreferencePair(prompt=f"q{i}", chosen=f"a{i}", rejected=f"a{i + 50}") for i in range(50)]
    gate = fit_pmi_gate(pairs, FakeLikelihood(), weight=3.0, quantile=0.1, model="some/lm")
    assert gate.threshold == pytest.approx(0.099) and gate.touched == pytest.approx(0.10)
    assert (gate.model, gate.max_prompt_tokens, gate.max_answer_tokens) == ("some/lm", 32, 16)
    terms = gate(np.array([0.5, gate.threshold, gate.threshold - 0.2, -1.0]))
    assert terms[:2].tolist() == [0.0, 0.0]  # above the threshold: untouched (a hinge, not a linear term)
    assert terms[2] == pytest.approx(-0.6) and terms[3] == pytest.approx(-3.0 * (1.099))
    assert gate_from_dict(gate.to_dict()) == gate and gate_from_dict(None) is None
    cosine = RelevanceGate(a=2.0, b=-1.0, weight=1.0)
    assert gate_from_dict(cosine.to_dict()) == cosine  # both kinds read back from reward_config.json
    assert isinstance(gate_from_dict(gate.to_dict()), PmiGate)
    with pytest.raises(ValueError):
        fit_pmi_gate([], FakeLikelihood(), weight=1.0, quantile=0.1)


def test_a_run_with_the_pmi_gate_stores_it_and_scores_with_it(tmp_path, tiny_bert, tiny_lm_dir):
    from transformers import AutoTokenizer

    pairs = topic_pairs(120, seed=2, n_prompts=12)
    runs = {}
    for gate in ("none", "pmi"):
        cfg = tiny_config(tiny_bert, objective="length", calibrate=True, epochs=1, eval_probe_answers=20,
                          relevance_gate=gate, relevance_lm=tiny_lm_dir, relevance_quantile=0.25)  # fmt: skip
        runs[gate] = fit_reward_model(pairs, cfg, tmp_path / gate).metrics
    assert runs["pmi"]["relevance_gate_touched"] == pytest.approx(0.25, abs=0.05)
    assert runs["pmi"]["off_prompt_accuracy_raw"] == runs["none"]["off_prompt_accuracy_raw"]  # same training
    model = RewardModel.from_pretrained(tmp_path / "pmi" / "model")
    stored = model.relevance_gate
    assert stored["method"] == "lm-pmi-hinge" and stored["model"] == tiny_lm_dir and stored["weight"] > 0
    tok = AutoTokenizer.from_pretrained(tmp_path / "pmi" / "model")
    prompts, answers = [p.prompt for p in pairs[:30]], [p.rejected for p in pairs[:30]]
    gated = model.score(tok, prompts, answers).numpy()
    terms = model.relevance_term(prompts, answers)
    assert (terms <= 0).all() and (terms < 0).any()
    model.relevance_gate = None
    assert gated == pytest.approx(model.score(tok, prompts, answers).numpy() + terms, abs=1e-4)


def test_stored_configs_from_before_the_pmi_gate_read_back():
    from rewardtrainer.config import TrainConfig

    assert TrainConfig.from_stored({"relevance_gate": True}).relevance_gate == "cosine"
    assert TrainConfig.from_stored({"relevance_gate": False}).relevance_gate == "none"
    with pytest.raises(ValueError, match="relevance_gate"):
        TrainConfig(relevance_gate="bm25")
