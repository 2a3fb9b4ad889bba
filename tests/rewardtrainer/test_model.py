"""RewardModel: loss, ODIN terms, pooling, save/load, the real MiniLM backbone."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from rewardtrainer.data import PreferencePair, collate, collate_packed, encode_pairs
from rewardtrainer.model import (
    LossWeights,
    RewardModel,
    bradley_terry_loss,
    pearson,
    relevance_loss,
    resolve_pooling,
    reward_loss,
)


def test_bradley_terry_loss_matches_a_hand_computation():
    r_c, r_r = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([1.0, 1.0, 1.0])
    margin, weight = torch.tensor([0.0, 0.25, 1.0]), torch.tensor([1.0, 2.0, 0.5])
    expected = (
        sum(
            w * -math.log(1.0 / (1.0 + math.exp(-(c - r - m))))
            for c, r, m, w in zip(r_c.tolist(), r_r.tolist(), margin.tolist(), weight.tolist(), strict=True)
        )
        / 3
    )
    assert bradley_terry_loss(r_c, r_r, margin, weight).item() == pytest.approx(expected, rel=1e-6)
    plain = -torch.nn.functional.logsigmoid(r_c - r_r).mean()
    assert torch.allclose(bradley_terry_loss(r_c, r_r), plain)


def test_plain_reward_loss_is_bradley_terry_on_the_quality_head():
    r_q = torch.tensor([1.0, 3.0, 0.0, 2.5])  # (2B,): chosen 1.0, 3.0; rejected 0.0, 2.5
    loss, stats = reward_loss(
        r_q, torch.zeros(4), torch.tensor([5.0, 9, 3, 4]), torch.zeros(2), torch.ones(2), LossWeights()
    )
    expected = -torch.nn.functional.logsigmoid(torch.tensor([1.0, 0.5])).mean()
    assert torch.allclose(loss, expected)
    assert stats["accuracy"].item() == 1.0 and stats["margin"].item() == pytest.approx(0.75)


@pytest.mark.parametrize("objective", ["plain", "length"])
def test_reward_corr_weight_trains_the_reward_flat_in_length(objective):
    """With reward_corr > 0 the plain and length objectives pay |corr(r, len)|: gradient steps on that
    term alone (pair weights 0) flatten a reward that rose with length; at 0 the loss has no such term."""
    g = torch.Generator().manual_seed(0)
    length = torch.randint(10, 500, (32,), generator=g).float()  # (2B,)
    r_q = (length / 100 + 0.3 * torch.randn(32, generator=g)).requires_grad_()
    beta = torch.zeros((), requires_grad=True) if objective == "length" else None
    length_mean = float(length.mean())

    def loss_of(weights):
        args = (r_q, torch.zeros(32), length, torch.zeros(16), torch.zeros(16), weights)
        return reward_loss(*args, None, None, length_mean, beta)

    off, _ = loss_of(LossWeights(reward_corr=0.0))
    assert off.item() == 0.0  # zero pair weights, no correlation term
    before = pearson(r_q, length).abs().item()
    opt = torch.optim.Adam([r_q], lr=0.05)
    for _ in range(100):
        loss, stats = loss_of(LossWeights(reward_corr=1.0))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert "corr_quality" in stats
    assert pearson(r_q, length).abs().item() < 0.5 * before


@pytest.mark.parametrize("corr_mode", ["batch", "global"])
def test_odin_terms_decorrelate_quality_and_correlate_the_length_head(corr_mode):
    """Gradient steps on the ODIN terms alone: |corr(r_q, len)| falls, corr(r_l, len) rises,
    |w_q . w_l| falls."""
    g = torch.Generator().manual_seed(0)
    length = torch.randint(10, 500, (32,), generator=g).float()  # (2B,)
    r_q = (length / 100 + 0.3 * torch.randn(32, generator=g)).requires_grad_()  # correlated with length
    r_l = torch.randn(32, generator=g).requires_grad_()  # uncorrelated
    w_q, w_l = torch.randn(1, 8, generator=g), torch.randn(1, 8, generator=g)
    w_l = (w_q + 0.1 * w_l).requires_grad_()  # nearly parallel heads
    w_q.requires_grad_()
    weights = LossWeights(corr_mode=corr_mode)
    length_mean = float(length.mean())
    before = (pearson(r_q, length).abs().item(), pearson(r_l, length).item(), (w_q * w_l).sum().abs().item())
    opt = torch.optim.Adam([r_q, r_l, w_q, w_l], lr=0.05)
    for _ in range(100):
        # pair weights 0: the Bradley-Terry term has no gradient, only ODIN's terms do
        loss, _ = reward_loss(
            r_q, r_l, length, torch.zeros(16), torch.zeros(16), weights, w_q, w_l, length_mean
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = (pearson(r_q, length).abs().item(), pearson(r_l, length).item(), (w_q * w_l).sum().abs().item())
    assert after[0] < 0.5 * before[0]
    assert after[1] > before[1] + 0.3
    assert after[2] < 0.5 * before[2]


def test_pooling_is_mean_for_encoders_and_last_token_for_decoders(tiny_bert, tiny_gpt2):
    from transformers import AutoConfig

    assert resolve_pooling(AutoConfig.from_pretrained(tiny_bert)) == "mean"
    assert resolve_pooling(AutoConfig.from_pretrained(tiny_gpt2)) == "last"
    assert resolve_pooling(AutoConfig.from_pretrained(tiny_gpt2), "mean") == "mean"
    with pytest.raises(ValueError):
        resolve_pooling(AutoConfig.from_pretrained(tiny_bert), "max")


@pytest.mark.parametrize("backbone", ["tiny_bert", "tiny_gpt2"])
def test_rewards_do_not_depend_on_padding(request, backbone, minilm_tokenizer):
    path = request.getfixturevalue(backbone)
    model = RewardModel.from_backbone(path, odin=True).eval()
    pairs = [
        PreferencePair("a short prompt", "ok", "no"),
        PreferencePair("p " * 30, "long answer " * 10, "x"),
    ]
    enc = encode_pairs(pairs, minilm_tokenizer, 128, with_types=model.uses_token_types)
    keys = ("input_ids", "attention_mask", "token_type_ids")
    with torch.no_grad():
        together = model(**{k: v for k, v in collate(enc, [0, 1]).items() if k in keys})
        alone = model(**{k: v for k, v in collate(enc, [0]).items() if k in keys})
        rounded = model(**{k: v for k, v in collate(enc, [0, 1], multiple=16, cap=128).items() if k in keys})
    # row order in a batch: chosen 0, chosen 1, rejected 0, rejected 1; pair 0 alone: chosen, rejected
    for head in (0, 1):
        assert torch.allclose(together[head][[0, 2]], alone[head], atol=1e-5)
        assert torch.allclose(together[head], rounded[head], atol=1e-5)  # the GPU's width multiple


@pytest.mark.parametrize("backbone", ["tiny_llama", "tiny_gpt2"])
def test_packed_rows_give_the_loss_and_gradients_of_padded_rows(request, backbone, minilm_tokenizer):
    # packing (data.collate_packed): every row end to end, positions restarting; transformers keeps each
    # row attending to itself, so the loss and every gradient match the padded batch
    model = RewardModel.from_backbone(request.getfixturevalue(backbone), objective="length")
    pairs = [PreferencePair(f"prompt {i} " * (1 + i), "ok " * (2 + 3 * i), "no " * (7 - i)) for i in range(5)]
    enc = encode_pairs(pairs, minilm_tokenizer, 64)
    results = []
    for batch in (collate(enc, range(5)), collate_packed(enc, range(5), multiple=64)):
        model.zero_grad()
        loss, _ = model.compute_loss(batch)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (padded_loss, padded_grads), (packed_loss, packed_grads) = results
    assert torch.allclose(padded_loss, packed_loss, atol=1e-6)
    assert len(padded_grads) == len(packed_grads)
    for a, b in zip(padded_grads, packed_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


def test_packed_rows_are_refused_for_an_encoder(tiny_bert, minilm_tokenizer):
    # a BERT's rows would attend to each other: rewards would silently depend on their neighbours
    model = RewardModel.from_backbone(tiny_bert).eval()
    enc = encode_pairs([PreferencePair("p", "a b", "c")], minilm_tokenizer, 32)
    with pytest.raises(ValueError, match="causal decoder"):
        model.compute_loss(collate_packed(enc, [0]))


@pytest.mark.parametrize("odin", [True, False])
def test_save_and_load_give_identical_rewards(tmp_path, tiny_bert, minilm_tokenizer, odin):
    torch.manual_seed(1)
    model = RewardModel.from_backbone(tiny_bert, odin=odin)
    model.max_length = 64
    with torch.no_grad():
        model.quality_head.bias.fill_(0.3)
    prompts, answers = ["what is 2+2?", "name a colour"], ["four", "blue, or maybe green"]
    before = model.score(minilm_tokenizer, prompts, answers)
    model.save_pretrained(tmp_path / "rm", tokenizer=minilm_tokenizer)
    config = json.loads((tmp_path / "rm" / "reward_config.json").read_text())
    assert config["odin"] is odin and config["pooling"] == "mean" and config["max_length"] == 64
    assert config["backbone_source"] == tiny_bert and config["hidden_size"] == 32
    assert (tmp_path / "rm" / "model.safetensors").is_file()
    loaded = RewardModel.from_pretrained(tmp_path / "rm")
    assert (loaded.length_head is not None) is odin and loaded.max_length == 64
    from transformers import AutoTokenizer

    after = loaded.score(AutoTokenizer.from_pretrained(tmp_path / "rm"), prompts, answers)
    assert torch.equal(before, after)


def test_the_real_minilm_backbone_loads_and_scores(minilm_dir, minilm_tokenizer):
    model = RewardModel.from_backbone(minilm_dir, odin=True)
    assert model.pooling == "mean" and model.hidden_size == 384
    enc = encode_pairs(
        [
            PreferencePair("How do I boil an egg?", "Simmer it for 9 minutes.", "Eggs."),
            PreferencePair("Hi", "Hello!", "?"),
        ],
        minilm_tokenizer,
        256,
        with_types=True,
    )
    batch = collate(enc, [0, 1])
    with torch.inference_mode():
        r_q, r_l = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    assert r_q.shape == r_l.shape == (4,) and torch.isfinite(r_q).all() and torch.isfinite(r_l).all()
    assert torch.equal(
        model.reward(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]), r_q
    )


def test_decorrelating_the_heads_zeroes_the_length_covariance_and_keeps_the_sum(tiny_bert, minilm_tokenizer):
    torch.manual_seed(0)
    model = RewardModel.from_backbone(tiny_bert, odin=True).eval()
    answers = [" ".join(["word"] * n) for n in range(1, 40, 3)]
    enc = encode_pairs([PreferencePair("p", a, a[:3]) for a in answers], minilm_tokenizer, 64)
    batch = collate(enc, list(range(len(answers))))
    x = (batch["input_ids"], batch["attention_mask"])
    length = batch["length"].double()
    with torch.no_grad():
        r_q, r_l = model(*x)  # random heads: whatever correlation with length they happen to have
    c = model.decorrelate_heads(r_q.numpy(), r_l.numpy(), length.numpy(), min_length_corr=-1.0)
    with torch.no_grad():
        q2, l2 = model(*x)
    assert c != 0.0
    assert torch.allclose(q2 + l2, r_q + r_l, atol=1e-5)  # rankings and the Bradley-Terry loss unchanged
    assert abs(pearson(q2.double(), length).item()) < 1e-4
    assert (
        model.decorrelate_heads(r_q.numpy(), np.zeros(len(r_q)), length.numpy()) == 0.0
    )  # no length head signal


def test_relevance_loss_is_class_balanced_cross_entropy_with_only_the_foreign_answer_negative():
    mismatch = torch.tensor([True, False, False])  # pair 0's rejected answer was written for another prompt
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 3.0, 0.5])  # chosen 0..2, rejected 0..2
    loss, accuracy = relevance_loss(logits, mismatch)

    def ce(x, y):
        p = 1.0 / (1.0 + math.exp(-x))
        return -math.log(p if y else 1.0 - p)

    positives = [ce(x, 1) for x in (2.0, 1.0, 0.0, 3.0, 0.5)]
    expected = 0.5 * (sum(positives) / 5 + ce(-1.0, 0))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert accuracy.item() == pytest.approx(5 / 6)  # logit 0.0 counts as "not relevant"
    only_positive, _ = relevance_loss(logits, torch.zeros(3, dtype=torch.bool))
    assert only_positive.item() == pytest.approx(sum(ce(x, 1) for x in logits.tolist()) / 6, rel=1e-5)


def test_mismatch_pairs_leave_the_ranking_loss_when_a_relevance_head_takes_them():
    r_q = torch.tensor([1.0, -3.0, 0.0, 3.0], requires_grad=True)  # pair 1 (mismatch) ranked badly
    relevance = torch.zeros(4, requires_grad=True)
    margin, weight, length = torch.zeros(2), torch.ones(2), torch.full((4,), 10.0)
    mismatch = torch.tensor([False, True])
    loss, stats = reward_loss(
        r_q, torch.zeros(4), length, margin, weight, LossWeights(), relevance=relevance, mismatch=mismatch
    )
    loss.backward()
    assert r_q.grad[1] == 0 and r_q.grad[3] == 0 and r_q.grad[0] != 0  # no ranking signal from pair 1
    # the mean over the ranked pairs: the mismatch pair is not in the denominator either
    assert stats["bt_loss"].item() == pytest.approx(-math.log(1 / (1 + math.exp(-1.0))), rel=1e-5)
    assert relevance.grad[3] > 0 and relevance.grad[0] < 0  # foreign answer pushed down, others up
    assert {"relevance_loss", "relevance_accuracy"} <= set(stats)


def test_a_relevance_head_is_deployed_as_log_sigmoid_and_survives_save_and_load(
    tmp_path, tiny_bert, minilm_tokenizer
):
    torch.manual_seed(2)
    model = RewardModel.from_backbone(tiny_bert, relevance=True)
    model.max_length = 64
    with torch.no_grad():
        model.relevance_head.bias.fill_(-1.5)
    enc = encode_pairs([PreferencePair("what is 2+2?", "four", "blue")], minilm_tokenizer, 64)
    batch = collate(enc, [0])
    r_q, _, quality, relevance = model(batch["input_ids"], batch["attention_mask"], return_relevance=True)
    assert torch.allclose(r_q, quality + torch.nn.functional.logsigmoid(relevance))
    prompts, answers = ["what is 2+2?", "name a colour"], ["four", "blue, or maybe green"]
    before = model.score(minilm_tokenizer, prompts, answers)
    model.save_pretrained(tmp_path / "rm", tokenizer=minilm_tokenizer)
    config = json.loads((tmp_path / "rm" / "reward_config.json").read_text())
    assert config["relevance"] is True and "relevance" in config["heads"]
    loaded = RewardModel.from_pretrained(tmp_path / "rm")
    assert loaded.relevance_head is not None
    assert torch.equal(before, loaded.score(minilm_tokenizer, prompts, answers))


def test_a_decoder_backbone_builds_no_kv_cache_in_training(tiny_gpt2):
    # GPT-2 and Llama build a DynamicCache whenever config.use_cache is on, training included
    model = RewardModel.from_backbone(tiny_gpt2).train()
    caches = []
    model.backbone.register_forward_hook(lambda module, args, output: caches.append(output.past_key_values))
    ids = torch.randint(5, 100, (2, 7))
    model(ids, torch.ones_like(ids))
    assert caches == [None]


@pytest.mark.parametrize("objective", ["length", "odin_heads"])
def test_the_heads_and_the_length_term_stay_fp32_under_bf16_autocast(tiny_bert, minilm_tokenizer, objective):
    # autocast cast the heads' Linear back to bf16: rewards came out bf16, and beta * log(length) beside
    # them (steps of 0.125 near 17) rounded a 3% length difference's logit to 0
    kwargs = {"objective": "length"} if objective == "length" else {"odin": True}
    model = RewardModel.from_backbone(tiny_bert, **kwargs).eval()
    pairs = [PreferencePair("a prompt", "an answer", "another"), PreferencePair("q", "yes", "no")]
    enc = encode_pairs(pairs, minilm_tokenizer, 64, with_types=model.uses_token_types)
    batch = collate(enc, [0, 1])
    keys = ("input_ids", "attention_mask", "token_type_ids")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        r_q, r_l = model(**{k: v for k, v in batch.items() if k in keys})
    assert r_q.dtype == torch.float32 and r_l.dtype == torch.float32
    if objective == "length":  # the loss too, whatever dtype the rewards come in
        beta = torch.tensor(3.09)
        length = torch.tensor([310.0, 1200.0, 300.0, 1150.0])  # chosen rows, then rejected
        r = torch.tensor([0.5, -0.25, 0.5, -0.25])  # equal rewards: only the length term separates
        args = (torch.zeros(4), length, torch.zeros(2), torch.ones(2), None)
        bf16, _ = reward_loss(r.bfloat16(), *args, length_beta=beta)
        fp32, _ = reward_loss(r, *args, length_beta=beta)
        gaps = 3.09 * torch.log(length[:2] / length[2:])
        assert torch.isclose(fp32, torch.nn.functional.softplus(-gaps).mean())
        assert bf16.dtype == torch.float32 and torch.isclose(bf16, fp32)


def test_dropout_is_off_in_train_mode_for_attention_that_copied_its_rate_from_the_config():
    # Llama-style attention keeps its own copy of config.attention_dropout: zeroing the config left
    # it on, so with gradient checkpointing (train mode) PPO's first ratio was not 1
    import transformers

    from rewardtrainer.model import disable_dropout

    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, attention_dropout=0.5, attn_implementation="eager",
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.LlamaModel(config)
    disable_dropout(model)
    model.train()
    ids = torch.randint(0, 64, (2, 12))
    first, second = model(ids).last_hidden_state, model(ids).last_hidden_state
    assert torch.equal(first, second)
    assert all(getattr(m, "attention_dropout", 0.0) == 0.0 for m in model.modules())
