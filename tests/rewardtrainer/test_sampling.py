"""Sampling and best-of-n on a tiny Llama: log-probs, EOS, left padding, top-p, best-of-n's guarantee."""

from __future__ import annotations

import math

import pytest
import torch

from rewardtrainer.ppo import build_rollout, forward_logprobs
from rewardtrainer.sampling import (
    HFGenerator,
    SamplingParams,
    best_of_n,
    kl_best_of_n,
    prompt_ids,
    top_p_filter,
)
from tests.rewardtrainer.tiny_policy import prompts, tiny_llama, tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def gen(tok):
    torch.set_num_threads(1)
    return HFGenerator(tiny_llama(tok), tok, batch_size=8)


def test_recorded_logprobs_are_those_of_a_full_forward_with_left_padding(gen, tok):
    # Prompts of different lengths: the left-padded, KV-cached loop must match one plain forward.
    ps = ["the cat", "a dog runs fast over the blue road", "sky"]
    params = SamplingParams(temperature=0.8, max_new_tokens=12)
    samples = gen.generate(ps, params, seed=1)
    rollout = build_rollout(samples, gen.pad_id)
    logprobs, _ = forward_logprobs(gen.model, rollout, params.temperature)
    for i, s in enumerate(samples):
        assert s.prompt_ids == prompt_ids(tok, ps[i])
        assert len(s.logprobs) == s.num_tokens >= 1
        torch.testing.assert_close(
            logprobs[i, : s.num_tokens], torch.tensor(s.logprobs), atol=1e-4, rtol=1e-4
        )


def test_each_answer_stops_at_eos_or_the_token_cap(gen, tok):
    samples = gen.generate(prompts(8) * 4, SamplingParams(temperature=1.0, max_new_tokens=6), seed=0)
    eos = tok.eos_token_id
    assert any(s.finished for s in samples) and any(not s.finished for s in samples)
    for s in samples:
        assert s.num_tokens <= 6
        if s.finished:
            assert s.token_ids[-1] == eos and eos not in s.token_ids[:-1]
        else:
            assert s.num_tokens == 6 and eos not in s.token_ids
        assert "<|im_end|>" not in s.text and "<|im_start|>" not in s.text


def test_same_seed_gives_the_same_answers(gen, tok):
    params = SamplingParams(max_new_tokens=8)
    a = gen.generate(prompts(6), params, seed=3)
    b = gen.generate(prompts(6), params, seed=3)
    assert [s.token_ids for s in a] == [s.token_ids for s in b]


def test_top_p_keeps_the_smallest_nucleus():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(top_p_filter(logits, 0.7))
    assert kept.tolist() == [[True, True, False, False]]
    assert torch.isfinite(top_p_filter(logits, 1.0)).all()
    # Shuffled order: the filter works on values, not positions.
    kept = torch.isfinite(top_p_filter(logits[:, [3, 1, 0, 2]], 0.5))
    assert kept.tolist() == [[False, False, True, False]]


def test_it_rejects_bad_sampling_params():
    for kwargs in ({"temperature": 0}, {"top_p": 0}, {"top_p": 1.5}, {"max_new_tokens": 0}):
        with pytest.raises(ValueError):
            SamplingParams(**kwargs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_of_n_never_returns_an_answer_scored_below_the_first_sample(gen, seed):
    g = torch.Generator().manual_seed(seed)

    def noisy_reward(ps, answers):  # an arbitrary scorer: best-of-n must hold for any
        return torch.randn(len(answers), generator=g)

    result = best_of_n(gen, noisy_reward, prompts(5), n=4, params=SamplingParams(max_new_tokens=6), seed=seed)
    assert len(result.best) == 5
    for best, first, scores in zip(result.best_scores, result.first_scores, result.all_scores, strict=True):
        assert best >= first
        assert best == max(scores)
    assert result.reward_gain >= 0
    assert result.kl_bon == pytest.approx(math.log(4) - 3 / 4)


def test_best_of_n_ranks_a_nan_score_last(gen):
    # argmax takes NaN for the maximum: a reward model's NaN must not win over real scores
    scores = torch.tensor([1.0, float("nan"), 3.0, 0.5])
    result = best_of_n(
        gen, lambda ps, answers: scores, prompts(1), n=4, params=SamplingParams(max_new_tokens=4)
    )
    assert result.best_scores == [3.0] and result.best_scores[0] >= result.first_scores[0]


def test_best_of_n_picks_the_answer_the_reward_prefers(gen):
    def length_reward(ps, answers):
        return torch.tensor([float(len(a.split())) for a in answers])

    result = best_of_n(gen, length_reward, prompts(4), n=6, params=SamplingParams(max_new_tokens=8), seed=0)
    for sample, scores in zip(result.best, result.all_scores, strict=True):
        assert len(sample.text.split()) == max(scores)
    assert kl_best_of_n(1) == 0.0


def _nan_on_unattended_rows(
    query, key, value, attn_mask=None, is_causal=False, scale=None, enable_gqa=False, **kw
):
    """SDPA as some fused CUDA kernels behave: a query row that may see no key comes out NaN."""
    if enable_gqa:
        rep = query.shape[1] // key.shape[1]
        key, value = key.repeat_interleave(rep, dim=1), value.repeat_interleave(rep, dim=1)
    scores = query @ key.transpose(-1, -2) * (scale or query.shape[-1] ** -0.5)
    if is_causal:
        attn_mask = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
    if attn_mask is not None:
        scores = (
            scores.masked_fill(~attn_mask, float("-inf"))
            if attn_mask.dtype == torch.bool
            else scores + attn_mask
        )
    return scores.softmax(dim=-1) @ value  # softmax of an all -inf row is NaN


def test_left_padding_never_feeds_nan_into_sampling_or_log_probs(gen, tok, monkeypatch):
    """The first PPO round in bf16 on an H200 sampled from NaN probabilities: padding positions see no
    key, the kernel wrote NaN there, and the next layer spread it to the real tokens (0 x NaN)."""
    ps = ["the cat", "a dog runs fast over the blue road", "sky"]
    params = SamplingParams(temperature=0.8, max_new_tokens=8)
    rollout = build_rollout(gen.generate(ps, params, seed=1), gen.pad_id)
    reference, _ = forward_logprobs(gen.model, rollout, params.temperature)
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", _nan_on_unattended_rows)
    ids, mask = rollout.query_ids, rollout.query_mask
    with torch.no_grad():  # the emulated kernel does what the real one did with a plain padding mask
        assert gen.model(input_ids=ids, attention_mask=mask).logits.isnan().any()
    samples = gen.generate(ps, params, seed=1)  # multinomial raised on NaN probabilities before
    assert all(math.isfinite(lp) for s in samples for lp in s.logprobs)
    logprobs, _ = forward_logprobs(gen.model, rollout, params.temperature)
    real = rollout.response_mask.bool()
    torch.testing.assert_close(logprobs[real], reference[real], atol=1e-5, rtol=1e-5)


def test_the_eager_attention_path_takes_the_same_mask(gen, tok):
    """causal_padding_mask hands eager attention an additive float mask: same log-probs as SDPA's."""
    ps = ["the cat", "a dog runs fast over the blue road", "sky"]
    params = SamplingParams(temperature=0.8, max_new_tokens=8)
    rollout = build_rollout(gen.generate(ps, params, seed=2), gen.pad_id)
    sdpa, _ = forward_logprobs(gen.model, rollout, params.temperature)
    eager_model = tiny_llama(tok)
    eager_model.config._attn_implementation = "eager"
    eager, _ = forward_logprobs(eager_model, rollout, params.temperature)
    real = rollout.response_mask.bool()
    torch.testing.assert_close(eager[real], sdpa[real], atol=1e-5, rtol=1e-5)


def test_a_generation_stops_when_asked_mid_answer_and_leaves_the_model_as_it_was(tok):
    # A cancelled best-of-n round waited for all of its generation (minutes to hours on a CPU).
    from rewardtrainer.sampling import STOP_POLL_TOKENS, GenerationStopped

    model = tiny_llama(tok).train()
    asked = []

    def should_stop():
        asked.append(len(asked))
        return len(asked) > 1  # no at the start of the batch, yes at the first poll inside it

    gen = HFGenerator(model, tok, stop_ids=[-1], should_stop=should_stop)  # never an EOS: runs to the end
    with pytest.raises(GenerationStopped):
        gen.generate(["the cat"], SamplingParams(max_new_tokens=4 * STOP_POLL_TOKENS), seed=0)
    assert len(asked) == 2 and model.training
    gen.should_stop = None
    assert gen.generate(["the cat"], SamplingParams(max_new_tokens=4), seed=0)[0].num_tokens == 4


def test_sampling_records_no_autograd_graph(gen, tok):
    # Sampling ran with gradients on once (a decorator slipped onto a helper): every step's graph was
    # kept through the KV cache, and 60 answers of 96 tokens took 16 GB and more on the CPU.
    seen = []
    hook = gen.model.register_forward_hook(lambda *_: seen.append(torch.is_inference_mode_enabled()))
    try:
        gen.generate(["the cat"], SamplingParams(max_new_tokens=3), seed=0)
    finally:
        hook.remove()
    assert seen and all(seen)


def test_best_of_n_figures_leave_a_nan_score_out_of_their_means(gen):
    # the round's metrics held NaN (reward_first, reward_gain), which the app's jsonb refuses
    scores = torch.tensor([float("nan"), 1.0, 0.5, 2.0])
    result = best_of_n(
        gen, lambda ps, answers: scores, prompts(1), n=4, params=SamplingParams(max_new_tokens=4)
    )
    summary = result.summary()
    assert summary["reward_best"] == 2.0 and summary["reward_first"] is None
    assert summary["reward_gain"] == pytest.approx(2.0 - 3.5 / 3) and summary["non_finite_scores"] == 1


def test_the_reward_scorer_refuses_a_non_finite_score():
    from rewardtrainer.sampling import NonFiniteRewardError, RewardScorer

    class Broken:
        def score(self, tokenizer, prompts, answers, **kwargs):
            return torch.tensor([0.5, float("inf")])

    # the message quoted the answer: stored as the run's error, out of an erasure's reach
    with pytest.raises(NonFiniteRewardError, match=r"1 of 2 answers .*inf for answer 2 of the batch") as err:
        RewardScorer(Broken(), None)(["p", "p"], ["a", "Quorrin Vale lives here"])
    assert "Quorrin" not in str(err.value) and "23 characters" in str(err.value)


def test_a_prompt_longer_than_the_context_keeps_its_end_and_the_answer_fits(tok):
    # nothing checked the length: a model with learned positions raised IndexError mid-round, and a
    # rotary one ran past its trained positions without a word
    import transformers

    config = transformers.GPT2Config(
        vocab_size=len(tok), n_positions=32, n_embd=32, n_layer=1, n_head=2,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    long_prompt = " ".join(["house"] * 60 + ["the", "cat", "runs"])
    params = SamplingParams(temperature=1.0, max_new_tokens=8)
    samples = HFGenerator(model, tok, stop_ids=[-1]).generate([long_prompt, "sky"], params, seed=0)
    kept = samples[0].prompt_ids
    assert len(kept) + params.max_new_tokens <= 32 and samples[0].num_tokens == 8
    assert kept == prompt_ids(tok, long_prompt, 24) and kept[:2] == prompt_ids(tok, "sky")[:2]  # turn start
    assert "the cat runs" in tok.decode(kept) and kept[-2:] == prompt_ids(tok, "sky")[-2:]  # turn end
    assert samples[1].prompt_ids == prompt_ids(tok, "sky")  # a short one is untouched
    rollout = build_rollout(samples, tok.pad_token_id)
    logprobs, _ = forward_logprobs(model, rollout, params.temperature)  # the training forward fits too
    torch.testing.assert_close(logprobs[0, :8], torch.tensor(samples[0].logprobs), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="no room for a prompt"):
        HFGenerator(model, tok).generate(["sky"], SamplingParams(max_new_tokens=32), seed=0)


@pytest.mark.parametrize("family", ["mistral", "gemma2"])
def test_sliding_window_models_sample_and_train_on_the_same_log_probs(tok, family):
    # the (B, 1, T, T) mask handed to the prefill and every training forward dropped the window: the
    # sampled, recomputed and true log-probs of a sliding-window model disagreed by up to 0.15
    import transformers

    common = dict(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=128, sliding_window=4,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None,
        tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(0)
    if family == "mistral":
        model = transformers.MistralForCausalLM(transformers.MistralConfig(**common))
    else:
        config = transformers.Gemma2Config(
            **common, head_dim=16, layer_types=["sliding_attention", "full_attention"]
        )
        model = transformers.Gemma2ForCausalLM(config)
    model.eval()
    ps = ["the cat runs fast slow blue red green house tree car road", "dog"]
    params = SamplingParams(temperature=1.0, max_new_tokens=6)
    samples = HFGenerator(model, tok, stop_ids=[-1]).generate(ps, params, seed=0)
    logprobs, _ = forward_logprobs(model, build_rollout(samples, tok.pad_token_id), params.temperature)
    with torch.no_grad():
        for i, s in enumerate(samples):
            alone = model(input_ids=torch.tensor([s.prompt_ids + s.token_ids])).logits[0].float()
            start = len(s.prompt_ids) - 1
            true = alone[start : start + s.num_tokens].log_softmax(-1)
            true = true.gather(1, torch.tensor(s.token_ids)[:, None]).squeeze(1)
            torch.testing.assert_close(torch.tensor(s.logprobs), true, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(logprobs[i, : s.num_tokens], true, atol=1e-4, rtol=1e-4)
