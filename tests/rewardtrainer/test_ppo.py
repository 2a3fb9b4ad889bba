"""PPO on a tiny Llama with known rewards: it learns, KL stays bounded, beta adapts, resume is exact.

The round-level tests run for the defaults (value head on the policy's trunk, old log-probs recorded
while sampling) and for the other mode (a separate value model, old log-probs recomputed).
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import transformers
from safetensors.torch import load_file

from rewardtrainer import ppo
from rewardtrainer.ppo import (
    AdaptiveKLController,
    PPOConfig,
    ValueHead,
    build_rollout,
    compute_gae,
    compute_rewards,
    forward_logprobs,
    ppo_losses,
    shared_forward,
    train_ppo,
    whiten,
)
from rewardtrainer.sampling import HFGenerator, SamplingParams
from tests.rewardtrainer.tiny_policy import prompts, tiny_llama, tiny_tokenizer

DEFAULTS = {}
OTHER_MODE = {"value_model": "separate", "rollout_logprobs": False}
MODES = pytest.mark.parametrize("mode", [DEFAULTS, OTHER_MODE], ids=["shared-sampled", "separate-recomputed"])


@pytest.fixture(autouse=True)
def one_thread():
    # Same thread count in both halves of the resume test: float sums then add up in the same order.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def good_word_reward(ps, answers) -> torch.Tensor:
    """Share of the answer's words that are 'good': a reward with a known optimum."""
    return torch.tensor([sum(w == "good" for w in a.split()) / max(1, len(a.split())) for a in answers])


def good_word_round(cfg: PPOConfig, out, **kwargs):
    """A round of `cfg` on 8 prompts for `good_word_reward`, a fresh tiny policy, written to `out`."""
    tok = tiny_tokenizer()
    return train_ppo(prompts(8), good_word_reward, cfg, out, policy=tiny_llama(tok), tokenizer=tok, **kwargs)


def config(**kwargs) -> PPOConfig:
    base = dict(
        updates=8,
        batch_size=16,
        mini_batch_size=8,
        ppo_epochs=2,
        lr=1e-2,
        temperature=1.0,
        max_new_tokens=6,
        init_kl_coef=0.05,
        target_kl=1.0,
        kl_horizon=100,
        reward_norm_samples=16,
        missing_eos_penalty=0.0,
        device="cpu",
    )
    return PPOConfig(**(base | kwargs))


@MODES
def test_ppo_raises_a_known_reward_within_eight_updates_with_bounded_kl(tmp_path, mode):
    result = good_word_round(config(**mode), tmp_path)
    h = result.history
    assert len(h) == 8 and result.updates == 8 and not result.stopped
    first, last = sum(r["reward_raw"] for r in h[:2]) / 2, sum(r["reward_raw"] for r in h[-2:]) / 2
    assert first < 0.12  # 1 word in 20: the untrained policy says 'good' rarely
    assert last > 0.25 and last > 3 * first
    assert all(r["kl"] < 10.0 for r in h)  # nats per answer of <= 6 tokens
    # KL ran above the 1-nat target, so the adaptive controller raised beta.
    assert h[-1]["kl"] > 1.0 and h[-1]["beta"] > h[-3]["beta"]
    for key in (
        "reward_normalized",
        "entropy",
        "clipfrac",
        "approx_kl",
        "vf_loss",
        "pg_loss",
        "explained_variance",
        "response_length",
        "no_eos_share",
        "seconds_generation",
    ):
        assert key in h[-1]
    # Saved as a plain transformers folder (safetensors) that loads on its own.
    loaded = transformers.AutoModelForCausalLM.from_pretrained(result.policy_dir)
    assert (tmp_path / "policy" / "model.safetensors").is_file()
    torch.testing.assert_close(
        loaded.state_dict()["model.embed_tokens.weight"],
        result.policy.state_dict()["model.embed_tokens.weight"],
    )
    assert json.loads((tmp_path / "metrics.json").read_text())["history"][-1]["update"] == 8


def test_adaptive_kl_controller_moves_beta_toward_the_target():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=1000)
    ctl.update(12.0, 100)  # above target: more penalty, by at most 20% * n / horizon
    assert ctl.value == pytest.approx(0.1 * (1 + 0.2 * 0.1))
    up = ctl.value
    ctl.update(5.4, 100)  # 10% below target: less penalty
    down = up * (1 - 0.1 * 0.1)
    assert ctl.value == pytest.approx(down)
    ctl.update(6.0, 100)  # on target: unchanged
    assert ctl.value == pytest.approx(down)
    ctl.update(0.0, 100)  # far below: the step is clipped at 20%
    assert ctl.value == pytest.approx(down * (1 - 0.2 * 0.1))


@MODES
def test_beta_falls_when_kl_stays_below_a_high_target(tmp_path, mode):
    tok = tiny_tokenizer()
    result = train_ppo(
        prompts(4),
        good_word_reward,
        config(updates=2, lr=1e-4, target_kl=50.0, **mode),
        tmp_path,
        policy=tiny_llama(tok),
        tokenizer=tok,
    )
    assert result.history[-1]["beta"] < result.history[0]["beta"] == 0.05


@MODES
def test_a_resumed_round_ends_where_an_uninterrupted_one_does(tmp_path, mode):
    cfg = config(updates=4, **mode)
    straight = good_word_round(cfg, tmp_path / "a")

    killed = good_word_round(cfg, tmp_path / "b", max_updates=2)
    assert killed.stopped and killed.updates == 2 and killed.policy_dir is None
    (tmp_path / "b" / "checkpoints" / "ckpt-000003.tmp").mkdir()  # a torn write from the kill: ignored
    resumed = good_word_round(cfg, tmp_path / "b")
    assert resumed.resumed_from_update == 2 and resumed.updates == 4
    assert [r["update"] for r in resumed.history] == [1, 2, 3, 4]
    for a, b in zip(straight.history, resumed.history, strict=True):
        for key in ("reward_raw", "kl", "beta", "pg_loss", "response_length"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
    sa, sb = straight.policy.state_dict(), resumed.policy.state_dict()
    for name in sa:
        torch.testing.assert_close(sa[name], sb[name], atol=1e-5, rtol=1e-4)
    # The value weights (a head, or a trunk and a head) were checkpointed and resumed too.
    va, vb = (
        load_file(d / "checkpoints" / "ckpt-000004" / "model.safetensors")
        for d in (tmp_path / "a", tmp_path / "b")
    )
    value_keys = [k for k in va if k.startswith("value.")]
    assert "value.head.weight" in value_keys and float(va["value.head.weight"].abs().sum()) > 0
    assert any(".trunk." in k for k in value_keys) == (mode.get("value_model") == "separate")
    for name in value_keys:
        torch.testing.assert_close(va[name], vb[name], atol=1e-5, rtol=1e-4)


@MODES
def test_lora_trains_adapters_against_the_frozen_base_and_saves_a_merged_model(tmp_path, mode):
    tok = tiny_tokenizer()
    base = tiny_llama(tok)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    result = train_ppo(
        prompts(4),
        good_word_reward,
        config(updates=2, lora=True, lora_r=4, lora_alpha=8, **mode),
        tmp_path,
        policy=base,
        tokenizer=tok,
    )
    assert result.reference is None  # the reference is the base with adapters off: no second copy
    merged = transformers.AutoModelForCausalLM.from_pretrained(result.policy_dir).state_dict()
    assert not any("lora" in k for k in merged)
    assert set(merged) <= set(before) | {"lm_head.weight"}
    changed = [k for k in before if k in merged and not torch.allclose(before[k], merged[k])]
    assert any("proj" in k for k in changed)  # adapters merged into the linear layers
    assert torch.equal(merged["model.embed_tokens.weight"], before["model.embed_tokens.weight"])
    # The value head trained alongside the adapters (it starts at zero); no full trunk weights trained.
    ckpt = load_file(tmp_path / "checkpoints" / "ckpt-000002" / "model.safetensors")
    assert float(ckpt["value.head.weight"].abs().sum()) > 0


def test_score_lands_on_the_last_real_token_and_kl_on_every_token():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.float)
    logp = torch.tensor([[-1.0, -1.0, -1.0, -9.0], [-2.0, -9.0, -9.0, -9.0]])
    ref = torch.tensor([[-1.5, -1.0, -2.0, -1.0], [-1.0, -1.0, -1.0, -1.0]])
    rewards, kl = compute_rewards(torch.tensor([3.0, 5.0]), logp, ref, mask, beta=0.1)
    torch.testing.assert_close(kl, torch.tensor([[0.5, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0]]))
    torch.testing.assert_close(rewards, torch.tensor([[-0.05, 0.0, 2.9, 0.0], [5.1, 0.0, 0.0, 0.0]]))


def test_gae_with_lambda_one_is_reward_to_go_minus_value():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.2, 0.4, 0.6, 9.0]])  # the 9 is padding: ignored
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    adv, ret = compute_gae(rewards, values, mask, gamma=1.0, lam=1.0)
    torch.testing.assert_close(adv, torch.tensor([[0.8, 0.6, 0.4, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[1.0, 1.0, 1.0, 0.0]]))
    adv95, _ = compute_gae(rewards, values, mask, gamma=1.0, lam=0.95)
    # delta = [0.2, 0.2, 0.4]; A_2 = 0.4, A_1 = 0.2 + 0.95 * 0.4, A_0 = 0.2 + 0.95 * A_1
    torch.testing.assert_close(adv95[0, :3], torch.tensor([0.2 + 0.95 * 0.58, 0.58, 0.4]))
    w = whiten(adv95, mask)
    assert abs(float((w * mask).sum() / mask.sum())) < 1e-6


def test_policy_loss_is_clipped():
    mask = torch.ones(1, 2)
    old = torch.zeros(1, 2)
    new = torch.log(torch.tensor([[2.0, 0.5]]))  # ratios 2 and 0.5, both outside [0.8, 1.2]
    adv = torch.tensor([[1.0, -1.0]])
    zeros = torch.zeros(1, 2)
    pg_loss, _, stats = ppo_losses(new, old, adv, zeros, zeros, zeros, mask, 0.2, 0.2)
    # max(-A r, -A clip(r)): token 1 -> max(-2, -1.2) = -1.2; token 2 -> max(0.5, 0.8) = 0.8
    assert float(pg_loss) == pytest.approx((-1.2 + 0.8) / 2)
    assert stats["clipfrac"] == pytest.approx(1.0)


@MODES
def test_gradient_checkpointing_changes_memory_not_results(tmp_path, mode):
    tok = tiny_tokenizer()
    runs = [
        train_ppo(
            prompts(4),
            good_word_reward,
            config(updates=1, gradient_checkpointing=gc, **mode),
            tmp_path / str(gc),
            policy=tiny_llama(tok),
            tokenizer=tok,
        )
        for gc in (False, True)
    ]
    assert runs[1].policy.model.gradient_checkpointing  # it was on, and active (train mode)
    assert runs[1].policy.training
    for key in ("reward_raw", "pg_loss", "vf_loss"):
        assert runs[0].history[0][key] == pytest.approx(runs[1].history[0][key], rel=1e-4, abs=1e-6)
    a, b = runs[0].policy.state_dict(), runs[1].policy.state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=1e-4)


def sampled_rollout(tok, model, temperature=0.8):
    """Prompts of different lengths (left padding), answers of different lengths (EOS, then padding)."""
    gen = HFGenerator(model, tok, batch_size=8)
    ps = ["the cat", "a dog runs fast over the blue road", "sky", "red car", "green tree by the river"] * 2
    samples = gen.generate(ps, SamplingParams(temperature=temperature, max_new_tokens=10), seed=4)
    assert len({len(s.prompt_ids) for s in samples}) > 1
    assert len({s.num_tokens for s in samples}) > 1 and any(s.finished for s in samples)
    return build_rollout(samples, gen.pad_id)


def test_sampled_logprobs_match_a_recomputation_so_rollout_logprobs_is_honest():
    tok = tiny_tokenizer()
    model = tiny_llama(tok)
    rollout = sampled_rollout(tok, model)
    mask = rollout.response_mask.float()
    assert rollout.logprobs is not None
    assert torch.equal(rollout.logprobs * (1 - mask), torch.zeros_like(mask))  # 0 after EOS / padding
    with torch.no_grad():
        recomputed, _ = forward_logprobs(model, rollout, 0.8)  # fp32, one forward, no KV cache
        shared, _, values = shared_forward(model, ValueHead(32), rollout, 0.8)
    torch.testing.assert_close(rollout.logprobs * mask, recomputed * mask, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared * mask, recomputed * mask, atol=1e-5, rtol=1e-5)
    assert torch.equal(values, torch.zeros_like(values))  # the value head starts at 0
    # Another rollout shape: selecting rows keeps the recorded log-probs with their rows.
    idx = torch.tensor([3, 0])
    torch.testing.assert_close(rollout.select(idx).logprobs, rollout.logprobs[idx])


def test_token_logprobs_in_chunks_equal_the_full_log_softmax_with_gradients(monkeypatch):
    # The chunks (three here, with a short last one) give what the one-piece log-softmax gave, and the
    # same gradient; the entropy, only logged, carries no graph.
    monkeypatch.setattr(ppo, "_LOGPROB_CHUNK_VALUES", 3 * 11)
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 11, requires_grad=True)
    ids = torch.randint(0, 11, (2, 4))
    logprobs, entropy = ppo._token_logprobs(logits, ids, 0.7)
    (grad,) = torch.autograd.grad(logprobs.sum(), logits)
    full = (logits / 0.7).log_softmax(-1)
    expected = full.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(logprobs, expected)
    torch.testing.assert_close(grad, torch.autograd.grad(expected.sum(), logits)[0])
    torch.testing.assert_close(entropy, -(full.exp() * full).sum(-1).detach())
    assert not entropy.requires_grad


def test_shared_forward_skips_the_lm_head_for_values_only():
    tok = tiny_tokenizer()
    model = tiny_llama(tok)
    rollout = sampled_rollout(tok, model)
    head = ValueHead(32)
    torch.nn.init.normal_(head.head.weight)
    calls = []
    model.lm_head.register_forward_hook(lambda *a: calls.append(1))
    with torch.no_grad():
        lp, ent, values = shared_forward(model, head, rollout, 0.8, with_logprobs=False)
        assert lp is None and ent is None and not calls
        _, _, values2 = shared_forward(model, head, rollout, 0.8)
    assert calls and values.shape == rollout.response_ids.shape
    torch.testing.assert_close(values, values2)


def test_value_model_must_be_known():
    with pytest.raises(ValueError):
        PPOConfig(value_model="tied")


def test_a_checkpoint_of_the_other_value_model_starts_the_round_over_from_the_untouched_policy(tmp_path):
    # the checkpoint's policy weights fit, its value weights do not: nothing of it may stay behind
    run = tmp_path / "run"
    good_word_round(config(updates=3, **OTHER_MODE), run, max_updates=2)
    fresh = good_word_round(config(updates=1), tmp_path / "fresh")
    over = good_word_round(config(updates=1), run)
    assert over.resumed_from_update is None
    for key in ("reward_raw", "kl", "pg_loss", "response_length"):
        assert over.history[0][key] == pytest.approx(fresh.history[0][key], rel=1e-4, abs=1e-5), key


def test_each_update_logs_the_learning_rate_it_used(tmp_path):
    result = good_word_round(config(updates=2), tmp_path)
    assert result.history[0]["lr"] == pytest.approx(1e-2)
    assert 0 < result.history[1]["lr"] <= 1e-2


def test_under_bf16_autocast_the_old_logprobs_are_the_training_forwards(tmp_path, monkeypatch):
    # Recorded while sampling (a KV-cached decode), bf16 logits round differently from the full
    # forward's; with them the first minibatch's ratio would not be 1
    import rewardtrainer.ppo as ppo

    monkeypatch.setattr(ppo, "pick_device", lambda device: (torch.device("cpu"), torch.bfloat16))
    tok = tiny_tokenizer()
    ps = ["the cat", "a dog runs fast over the blue road", "sky", "red car", "green tree by the river"] * 2
    cfg = config(updates=1, ppo_epochs=1, mini_batch_size=16, rollout_logprobs=True, max_new_tokens=10)
    policy = tiny_llama(tok, hidden=128)  # left padding and a wider model: the two roundings part (~0.007)
    row = train_ppo(ps, good_word_reward, cfg, tmp_path, policy=policy, tokenizer=tok).history[0]
    assert row["approx_kl"] == 0.0 and row["clipfrac"] == 0.0


def test_checkpoints_of_another_recipe_are_not_resumed(tmp_path, caplog):
    run = tmp_path / "run"
    good_word_round(config(updates=3), run, max_updates=2)
    other = good_word_round(config(updates=3, lr=5e-3), run)
    assert other.resumed_from_update is None and "other settings (lr)" in caplog.text
    # where to write checkpoints, and how often, may change between the two calls
    good_word_round(config(updates=4), tmp_path / "b", max_updates=2)
    same = good_word_round(config(updates=4, keep_checkpoints=5), tmp_path / "b")
    assert same.resumed_from_update == 2


def test_a_round_started_over_beside_another_recipes_checkpoints_resumes_from_its_own(tmp_path):
    # the other recipe's checkpoints (updates 3 and 4) outnumbered the new round's: pruning keeps the
    # highest numbers, so the new round's update-2 checkpoint was deleted as soon as it was written
    run = tmp_path / "run"
    good_word_round(config(updates=4), run)
    good_word_round(config(updates=4, lr=5e-3), run, max_updates=2)
    again = good_word_round(config(updates=4, lr=5e-3), run)
    assert again.resumed_from_update == 2


def test_a_changed_generation_batch_size_is_another_recipe():
    # the generation chunks share one random generator: other chunk sizes draw other samples, and a
    # resumed round would no longer end where an uninterrupted one does
    saved = {"generation_batch_size": 32, "checkpoint_every": 1, "device": "cpu"}
    assert ppo._changed_settings(saved, saved | {"generation_batch_size": 8}) == ["generation_batch_size"]
    assert ppo._changed_settings(saved, saved | {"checkpoint_every": 4, "device": "cuda"}) == []


class _OffByOneNat:
    """An outside engine whose log-probs are one nat off (as an engine reporting them before
    temperature would be); its samples are the built-in sampler's."""

    def __init__(self, inner):
        self.inner = inner

    def generate(self, prompts, params, *, seed=None):
        samples = self.inner.generate(prompts, params, seed=seed)
        return [dataclasses.replace(s, logprobs=[lp - 1.0 for lp in s.logprobs]) for s in samples]


def test_an_outside_generators_log_probs_are_recomputed_not_trusted(tmp_path):
    # one update, one minibatch, one epoch: with the old log-probs recomputed the ratio is exactly 1
    # (approx_kl 0); trusting the engine's would start from half a nat
    tok = tiny_tokenizer()
    policy = tiny_llama(tok)
    engine = _OffByOneNat(HFGenerator(policy, tok, batch_size=16))
    c = config(updates=1, ppo_epochs=1, batch_size=16, mini_batch_size=16)
    result = train_ppo(
        prompts(8), good_word_reward, c, tmp_path, policy=policy, tokenizer=tok, generator=engine
    )
    assert result.history[0]["approx_kl"] == pytest.approx(0.0, abs=1e-9)
    assert result.history[0]["clipfrac"] == 0.0


@pytest.mark.parametrize(
    ("field", "value"), [("final_logit_softcapping", 30.0), ("logits_scaling", 8.0), ("logit_scale", 0.0625)]
)
def test_a_shared_value_head_refuses_models_that_rescale_their_logits(field, value):
    # the shared forward calls lm_head itself: a model whose own forward changes the logits after it
    # would train on log-probs that are not the sampler's
    from types import SimpleNamespace

    text = SimpleNamespace(hidden_size=8, **{field: value})
    policy = SimpleNamespace(config=SimpleNamespace(get_text_config=lambda: text))
    with pytest.raises(ValueError, match=field):
        ppo._value_model(PPOConfig(), policy)
    neutral = SimpleNamespace(hidden_size=8, logits_scaling=1.0, logit_scale=None)
    policy = SimpleNamespace(config=SimpleNamespace(get_text_config=lambda: neutral))
    assert isinstance(ppo._value_model(PPOConfig(), policy), ValueHead)


def test_the_optimizer_decays_no_weights_unless_told():
    # torch's AdamW decays every weight toward zero (0.01) by default; the references use none
    policy, value = torch.nn.Linear(2, 2), torch.nn.Linear(2, 1)
    optimizer, _ = ppo._optimizer(PPOConfig(), policy, value, 4)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.0, 0.0]
    optimizer, _ = ppo._optimizer(PPOConfig(weight_decay=0.1), policy, value, 4)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.1]


def test_an_answer_without_any_token_is_refused_not_trained_on_silently():
    """An outside generator's empty answer had no token to carry its reward (GAE masked it out), so
    the policy could never learn from it; the rollout now refuses it with a message."""
    from rewardtrainer.sampling import Sample

    ok = Sample(prompt="q", prompt_ids=[5, 6], token_ids=[7, 2], logprobs=[-1.0, -0.5], finished=True)
    empty = Sample(prompt="q", prompt_ids=[5, 6], token_ids=[], logprobs=[], finished=True)
    assert build_rollout([ok], pad_id=0).response_mask.tolist() == [[1, 1]]
    with pytest.raises(ValueError, match="without any token"):
        build_rollout([ok, empty], pad_id=0)


def test_every_logged_figure_is_strict_json_when_the_returns_do_not_vary(tmp_path):
    """A reward that does not vary, with the old log-probs recomputed (the policy equals its reference
    at the first update: KL exactly 0), gives returns that do not vary: explained variance was NaN,
    which PostgreSQL's jsonb refuses, so the round's progress write failed the round."""
    tok = tiny_tokenizer()
    c = config(updates=1, batch_size=8, mini_batch_size=8, ppo_epochs=1, **OTHER_MODE)
    result = train_ppo(
        prompts(8),
        lambda ps, answers: torch.zeros(len(answers)),
        c,
        tmp_path,
        policy=tiny_llama(tok),
        tokenizer=tok,
    )
    row = result.history[0]
    assert row["kl"] == 0.0 and row["explained_variance"] is None
    json.dumps(result.history, allow_nan=False)  # ValueError on NaN or inf


def test_a_round_cancelled_while_it_samples_stops_and_resumes_from_its_last_update(tmp_path):
    # should_stop was polled only between updates: a cancel waited for a whole update's sampling.
    cfg = config(updates=4, checkpoint_every=3)
    straight = good_word_round(cfg, tmp_path / "a")
    finished, asked = [], []

    def cancelled_after_update_2_while_update_3_samples() -> bool:
        if len(finished) < 2:
            return False
        asked.append(1)
        return len(asked) > 1  # the check right after update 2 says no; the sampling's first poll, yes

    stopped = good_word_round(
        cfg,
        tmp_path / "b",
        progress=finished.append,
        should_stop=cancelled_after_update_2_while_update_3_samples,
    )
    assert stopped.stopped and stopped.updates == 2 and stopped.policy_dir is None
    assert (tmp_path / "b" / "checkpoints" / "ckpt-000002").is_dir()  # not on the every-3 schedule
    resumed = good_word_round(cfg, tmp_path / "b")
    assert resumed.resumed_from_update == 2 and resumed.updates == 4
    for a, b in zip(straight.history, resumed.history, strict=True):
        assert a["reward_raw"] == pytest.approx(b["reward_raw"], rel=1e-4, abs=1e-5)


def test_the_prompt_reader_takes_the_apps_export_with_line_separators_inside_strings(tmp_path):
    # The app's JSONL export writes U+2028 unescaped (ensure_ascii=False); str.splitlines() cut
    # such a line in two and the command failed with "Unterminated string".
    rows = [{"prompt": "first\u2028line", "chosen": "a", "rejected": "b"}, {"prompt": "second\u0085"}]
    path = tmp_path / "export.jsonl"
    path.write_text("\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    assert ppo.read_prompts(str(path)) == ["first\u2028line", "second\u0085"]
    text = tmp_path / "prompts.txt"
    text.write_text("one\u2028still one\n\ntwo\n", encoding="utf-8")
    assert ppo.read_prompts(str(text)) == ["one\u2028still one", "two"]


def test_the_ppo_command_names_a_bad_prompt_line_instead_of_a_traceback(tmp_path, capsys):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "ok"}\n{"text": "no prompt"}\n', encoding="utf-8")
    argv = ["--prompts", str(path), "--reward-model", str(tmp_path), "--out", str(tmp_path / "o")]
    assert ppo.main(argv) == 2
    assert "line 2: no text field 'prompt'" in capsys.readouterr().err


def test_a_nan_reward_stops_the_round_instead_of_saving_a_policy_of_nan(tmp_path):
    # One NaN score made the whitening's mean NaN, then every advantage, gradient and weight: the round
    # saved a NaN policy with no error (or crashed at the next sampling, and every resume again).
    from rewardtrainer.sampling import NonFiniteRewardError

    calls = {"n": 0}

    def reward(ps, answers):
        calls["n"] += 1  # call 1: the reference samples for the normalization; call 2: update 1
        scores = good_word_reward(ps, answers)
        if calls["n"] == 2:
            scores[0] = float("nan")
        return scores

    tok = tiny_tokenizer()
    with pytest.raises(NonFiniteRewardError, match="1 of 16 answers a non-finite score"):
        train_ppo(prompts(8), reward, config(updates=1), tmp_path, policy=tiny_llama(tok), tokenizer=tok)
    assert not (tmp_path / "policy").exists()


def test_a_non_finite_gradient_is_never_stepped_into_the_weights(tmp_path, monkeypatch):
    tok = tiny_tokenizer()
    policy = tiny_llama(tok)
    before = {k: v.clone() for k, v in policy.state_dict().items()}

    def nan_losses(*args, **kwargs):
        pg, v, stats = ppo_losses(*args, **kwargs)
        return pg * float("nan"), v, stats

    monkeypatch.setattr(ppo, "ppo_losses", nan_losses)
    with pytest.raises(FloatingPointError, match="update 1: the gradient is not finite"):
        train_ppo(prompts(8), good_word_reward, config(updates=1), tmp_path, policy=policy, tokenizer=tok)
    for k, v in policy.state_dict().items():
        torch.testing.assert_close(v, before[k])
