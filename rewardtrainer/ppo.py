"""PPO for a causal language model against a reward function (the reward model's deployed head).

Run one round from the command line:

    python -m rewardtrainer.ppo --prompts prompts.txt --reward-model runs/rm1/model --out runs/ppo1
    python -m rewardtrainer.ppo --prompts prompts.txt --reward-model runs/rm1/model --out runs/ppo1 --lora

or from Python (what the Celery `gpu` task calls):

    result = train_ppo(prompts, RewardScorer.from_pretrained("runs/rm1/model"), PPOConfig(), "runs/ppo1")
    result.policy_dir, result.history[-1]["reward_raw"], result.history[-1]["kl"]

Follows InstructGPT (Ouyang et al. 2022), Ziegler et al. 2019 (adaptive KL controller) and "The N
Implementation Details of RLHF with PPO" (Huang et al. 2023), item by item:
- a frozen reference policy (the instruct model as shipped, unless told otherwise); with LoRA the
  reference is the same network with its adapters switched off, so it costs no memory;
- per-token reward = -beta * (logp - logp_ref); the reward model's score is added at the last token;
- beta from an adaptive KL controller (target KL, horizon) or fixed;
- the score is normalized with the mean and std of scores of reference-policy samples, taken once at
  the start of a round (N details: "reward normalization");
- answers that never emit EOS get `missing_eos_penalty` subtracted from their score;
- a zero-initialised scalar value head, on the policy's own trunk (`value_model='shared'`, as TRL's
  original AutoModelForCausalLMWithValueHead: one forward and one backward serve both losses) or on a
  separate copy of the trunk (`'separate'`);
- the old log-probs are those recorded while sampling (`rollout_logprobs`, same temperature, fp32:
  equal to a recomputation within ~1e-5) or those of a second no-grad forward, always the latter under
  bf16 autocast (the cached decode and the full forward round bf16 logits differently: up to 0.19 nats
  apart on SmolLM2, which put the first minibatch's ratio outside the clip range);
- GAE with gamma = 1, lambda = 0.95; advantages whitened over real tokens;
- clipped policy loss and clipped value loss; `ppo_epochs` passes over shuffled minibatches;
- temperature applied to the logits when sampling and in every log-prob computed for training;
- dropout off everywhere (the ratio is exactly 1 on the first minibatch).
Logs per update: reward (raw and normalized), KL, entropy, clipfrac, approx_kl, policy and value loss,
explained variance, response length, the share without EOS, beta, and seconds and tokens per phase.

Checkpoints: after every `checkpoint_every` updates, policy + value weights, optimizer, scheduler, KL
controller, reward normalization and history go to `out/checkpoints/ckpt-NNNNNN` (temp folder, rename);
a killed round resumes from its last complete update. Prompts, samples and minibatch order of update u
are pure functions of (seed, u), so a resumed round ends where an uninterrupted one does (on the same
device). Checkpoints of other settings are deleted when the round starts over.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .checkpoint import (
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
    validate_checkpoint,
)
from .data import DataError, jsonl_lines
from .devices import enable_checkpointing, pick_device
from .ppo_config import VALUE_MODELS, PPOConfig  # noqa: F401  (VALUE_MODELS: the benches import it here)
from .sampling import (
    GenerationStopped,
    Generator,
    HFGenerator,
    RewardFn,
    Sample,
    causal_padding_mask,
    disable_dropout,
    left_pad,
    load_policy,
    require_finite_scores,
)

log = logging.getLogger(__name__)

# --- rollouts ---------------------------------------------------------------------------------------


@dataclass
class Rollout:
    """A batch of answers as tensors: left-padded queries, right-padded responses."""

    query_ids: torch.Tensor  # (B, Tq) left padded
    query_mask: torch.Tensor  # (B, Tq)
    response_ids: torch.Tensor  # (B, R) right padded with pad_id
    response_mask: torch.Tensor  # (B, R) 1 on real tokens (EOS included)
    finished: torch.Tensor  # (B,) bool: the answer emitted EOS
    prompts: list[str]
    texts: list[str]
    logprobs: torch.Tensor | None = None  # (B, R) recorded while sampling, 0 past each answer's end

    def to(self, device) -> Rollout:
        return Rollout(
            *(t.to(device) for t in (self.query_ids, self.query_mask, self.response_ids, self.response_mask)),
            self.finished.to(device),
            self.prompts,
            self.texts,
            None if self.logprobs is None else self.logprobs.to(device),
        )

    def select(self, idx: torch.Tensor) -> Rollout:
        i = idx.tolist()
        return Rollout(
            self.query_ids[idx],
            self.query_mask[idx],
            self.response_ids[idx],
            self.response_mask[idx],
            self.finished[idx],
            [self.prompts[k] for k in i],
            [self.texts[k] for k in i],
            None if self.logprobs is None else self.logprobs[idx],
        )

    @property
    def lengths(self) -> torch.Tensor:
        return self.response_mask.sum(dim=1)  # (B,)


def build_rollout(samples: Sequence[Sample], pad_id: int) -> Rollout:
    """Samples from any `Generator` -> padded tensors (log-probs too, when every token has one).

    Every answer needs at least one token (an immediate end of turn is its EOS token): an answer with
    none has no token to carry its reward, which GAE would then drop, so the policy could never learn
    that the empty answer was good or bad. A generator that returns one is refused with a ValueError."""
    empty = [k for k, s in enumerate(samples) if s.num_tokens == 0]
    if empty:
        raise ValueError(
            f"the generator returned {len(empty)} answer(s) without any token (first: sample {empty[0]}); "
            "an answer that ends at once must hold its EOS token"
        )
    q_ids, q_mask = left_pad([s.prompt_ids for s in samples], pad_id)
    R = max(s.num_tokens for s in samples)
    r_ids = torch.full((len(samples), R), pad_id, dtype=torch.long)
    r_mask = torch.zeros((len(samples), R), dtype=torch.long)
    has_logprobs = all(len(s.logprobs) == s.num_tokens for s in samples)
    r_logp = torch.zeros((len(samples), R), dtype=torch.float32)
    for i, s in enumerate(samples):
        r_ids[i, : s.num_tokens] = torch.tensor(s.token_ids, dtype=torch.long)
        r_mask[i, : s.num_tokens] = 1
        if has_logprobs:
            r_logp[i, : s.num_tokens] = torch.tensor(s.logprobs, dtype=torch.float32)
    return Rollout(
        q_ids,
        q_mask,
        r_ids,
        r_mask,
        torch.tensor([s.finished for s in samples]),
        [s.prompt for s in samples],
        [s.text for s in samples],
        r_logp if has_logprobs else None,
    )


def sequence_inputs(rollout: Rollout, model) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, attention mask for `model`, positions) of prompt + response; see causal_padding_mask."""
    ids = torch.cat([rollout.query_ids, rollout.response_ids], dim=1)  # (B, Tq + R)
    mask = torch.cat([rollout.query_mask, rollout.response_mask], dim=1)  # (B, Tq + R)
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)  # left padding shifts positions
    return ids, causal_padding_mask(model, mask), positions


def forward_logprobs(
    model, rollout: Rollout, temperature: float, autocast_dtype=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-prob and entropy of every response token under `model` at `temperature`, each (B, R).

    Only the last R + 1 positions go through the LM head (`logits_to_keep`): the vocabulary projection
    of the prompt positions is never needed.
    """
    ids, mask, positions = sequence_inputs(rollout, model)
    R = rollout.response_ids.shape[1]
    device = ids.device
    with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        out = model(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False, logits_to_keep=R + 1
        )
    return _token_logprobs(out.logits[:, :-1, :], rollout.response_ids, temperature)


# Logits values per chunk in _token_logprobs (64 MB in fp32): the bound on its temporaries.
_LOGPROB_CHUNK_VALUES = 1 << 24


def _token_logprobs(
    logits: torch.Tensor, token_ids: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-prob of each token, entropy), each (B, R), from logits (B, R, V) where t predicts token t.

    A few hundred positions at a time, as z[token] - logsumexp(z) with z the fp32 logits over the
    temperature: the full log-softmax (B, R, V) and its exp were several copies of the logits at once
    (1.2 GB beside 0.3 GB of logits for 16 answers of 97 tokens over SmolLM2's 49,152 tokens; now 0.6
    GB with a backward, which keeps one fp32 copy of the logits, and 0.2 GB without). The entropy is
    only logged: no graph.
    """
    B, R, V = logits.shape
    flat, ids = logits.reshape(B * R, V), token_ids.reshape(B * R, 1)
    rows = max(1, _LOGPROB_CHUNK_VALUES // V)
    logprobs, entropy = [], []
    # split, not slices: backward joins the chunks' gradients once, where each slice's would be a
    # zero-filled tensor the size of all the logits
    for chunk, chunk_ids in zip(flat.split(rows), ids.split(rows), strict=True):
        z = chunk.float() / temperature
        lse = z.logsumexp(dim=-1)
        logprobs.append(z.gather(-1, chunk_ids).squeeze(-1) - lse)
        with torch.no_grad():  # H = logsumexp(z) - sum(softmax(z) * z)
            entropy.append(lse.detach() - (z.softmax(dim=-1) * z).sum(dim=-1))
    return torch.cat(logprobs).view(B, R), torch.cat(entropy).view(B, R)


class ValueHead(nn.Module):
    """A scalar head on the policy's own hidden states (`value_model='shared'`)."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.head.weight)  # N details: value head starts at 0 (std 0)
        nn.init.zeros_(self.head.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head(hidden.float()).squeeze(-1)  # (B, R, H) -> (B, R)


def _trunk_and_lm_head(model) -> tuple[nn.Module, nn.Module]:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft: the LoRA'd model
    return base.get_decoder(), base.get_output_embeddings()


def shared_forward(
    model, head: ValueHead, rollout: Rollout, temperature: float, autocast_dtype=None, with_logprobs=True
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """(log-probs, entropy, values), each (B, R), from one pass of the policy's trunk.

    The last hidden states at the R positions before each response token feed the value head and the
    LM head (only those positions, as `logits_to_keep`); `with_logprobs=False` skips the LM head.
    """
    trunk, lm_head = _trunk_and_lm_head(model)
    ids, mask, positions = sequence_inputs(rollout, trunk)
    Tq, R = rollout.query_ids.shape[1], rollout.response_ids.shape[1]
    with torch.autocast(ids.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        hidden = trunk(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False
        ).last_hidden_state[:, Tq - 1 : Tq + R - 1]  # (B, R, H): the state before each response token
        logits = lm_head(hidden) if with_logprobs else None
    values = head(hidden)
    if logits is None:
        return None, None, values
    return (*_token_logprobs(logits, rollout.response_ids, temperature), values)


class ValueModel(nn.Module):
    """The policy's transformer trunk + a scalar head: the value of the state before each response token."""

    def __init__(self, trunk: nn.Module, hidden_size: int):
        super().__init__()
        self.trunk = trunk
        self.head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.head.weight)  # N details: value head starts at 0 (std 0)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def from_policy(cls, policy) -> ValueModel:
        trunk = copy.deepcopy(policy.base_model)  # e.g. LlamaModel inside LlamaForCausalLM
        return cls(trunk, int(policy.config.get_text_config().hidden_size))

    def forward(self, rollout: Rollout, autocast_dtype=None) -> torch.Tensor:
        ids, mask, positions = sequence_inputs(rollout, self.trunk)
        Tq, R = rollout.query_ids.shape[1], rollout.response_ids.shape[1]
        with torch.autocast(ids.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
            hidden = self.trunk(
                input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=False
            ).last_hidden_state
        hidden = hidden[:, Tq - 1 : Tq + R - 1].float()  # (B, R, H): the state before each response token
        return self.head(hidden).squeeze(-1)  # (B, R)


# --- the math -----------------------------------------------------------------------------------------


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = masked_mean(x, mask)
    return masked_mean((x - mean) ** 2, mask)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    return out + mean if not shift_mean else out


def compute_rewards(
    score: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor, beta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards (B, R): -beta * KL estimate on every token, plus the score at the last real token.

    Returns (rewards, kl) with kl = logp - logp_ref per token (zero on padding).
    """
    kl = (logprobs - ref_logprobs) * mask  # (B, R)
    rewards = -beta * kl
    last = (mask.sum(dim=1) - 1).clamp(min=0).long()  # (B,) index of the last real token
    rewards[torch.arange(rewards.shape[0], device=rewards.device), last] += score
    return rewards, kl


def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation over the response; (advantages, returns), each (B, R).

    Values and rewards are zero past the last real token, so the episode ends there.
    """
    values, rewards = values * mask, rewards * mask
    R = rewards.shape[1]
    last_gae = torch.zeros_like(rewards[:, 0])
    advantages = torch.zeros_like(rewards)
    for t in reversed(range(R)):
        next_value = values[:, t + 1] if t + 1 < R else torch.zeros_like(values[:, 0])
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last_gae = delta + gamma * lam * last_gae
        advantages[:, t] = last_gae
    returns = advantages + values
    return advantages, returns


def ppo_losses(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    vpred: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
    cliprange_value: float,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """Clipped policy loss and clipped value loss over real tokens; all inputs (b, R)."""
    ratio = torch.exp(logprobs - old_logprobs)
    pg_losses = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    pg_loss = masked_mean(torch.max(pg_losses, pg_losses2), mask)
    vpred_clipped = old_values + torch.clamp(vpred - old_values, -cliprange_value, cliprange_value)
    vf_losses = torch.max((vpred - returns) ** 2, (vpred_clipped - returns) ** 2)
    v_loss = 0.5 * masked_mean(vf_losses, mask)
    with torch.no_grad():
        stats = {
            "clipfrac": float(masked_mean((pg_losses2 > pg_losses).float(), mask)),
            "approx_kl": float(0.5 * masked_mean((logprobs - old_logprobs) ** 2, mask)),
            "vf_clipfrac": float(
                masked_mean(((vpred - returns) ** 2 < (vpred_clipped - returns) ** 2).float(), mask)
            ),
            "ratio": float(masked_mean(ratio, mask)),
        }
    return pg_loss, v_loss, stats


class AdaptiveKLController:
    """Ziegler et al. 2019: beta *= 1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon."""

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = max(-0.2, min(0.2, current_kl / self.target - 1.0))
        self.value *= 1.0 + error * n_steps / self.horizon


class FixedKLController:
    def __init__(self, init_kl_coef: float):
        self.value = init_kl_coef

    def update(self, current_kl: float, n_steps: int) -> None:
        pass


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float | None:
    """1 - Var(returns - values) / Var(returns); None when the returns do not vary (undefined there).
    Not NaN: the row goes into JSON, and PostgreSQL's jsonb refuses NaN (the round's progress write
    failed, and with it the round)."""
    var_r = masked_var(returns, mask)
    return float(1.0 - masked_var(returns - values, mask) / var_r) if var_r > 0 else None


# --- state ------------------------------------------------------------------------------------------


class Trainable(nn.Module):
    """Policy + value model (or head) under one module: one optimizer, one checkpoint file."""

    def __init__(self, policy: nn.Module, value: ValueModel | ValueHead):
        super().__init__()
        self.policy, self.value = policy, value


@dataclass
class PPOState:
    """Everything a round keeps between updates."""

    config: PPOConfig
    policy: Any
    tokenizer: Any
    value: ValueModel | ValueHead  # a separate model, or a head on the policy's trunk ('shared')
    reference: Any  # a frozen model, or None: the policy with its LoRA adapters switched off
    optimizer: torch.optim.Optimizer
    scheduler: Any
    kl_ctl: AdaptiveKLController | FixedKLController
    generator: Generator
    device: torch.device
    autocast_dtype: torch.dtype | None
    reward_mean: float = 0.0
    reward_std: float = 1.0
    update: int = 0
    history: list[dict] = field(default_factory=list)

    @property
    def trainable(self) -> Trainable:
        return Trainable(self.policy, self.value)


def _apply_lora(model, config: PPOConfig):
    from peft import LoraConfig, get_peft_model

    targets = config.lora_target_modules
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=0.0,  # dropout off, here too
        target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",")],
    )
    return get_peft_model(model, lora)


def _value_model(config: PPOConfig, policy) -> ValueModel | ValueHead:
    """The value head on the policy's trunk ('shared'), or a copy of the trunk with its own head."""
    text_config = policy.config.get_text_config()
    if config.value_model == "separate":
        return ValueModel.from_policy(policy)  # before LoRA wraps the policy
    # the shared forward applies lm_head to the trunk's states itself: whatever a model's own forward does
    # to the logits after that (Gemma 2's soft-capping, Granite's logits_scaling, Cohere's logit_scale)
    # would be missing, and training log-probs would not be the sampler's
    rescaled = [
        name
        for name, neutral in (
            ("final_logit_softcapping", None),
            ("logits_scaling", 1.0),
            ("logit_scale", 1.0),
        )
        if getattr(text_config, name, None) not in (None, neutral)
    ]
    if rescaled:
        raise ValueError(
            f"value_model='shared' calls the LM head by hand, without this model's {', '.join(rescaled)}; "
            "use value_model='separate'"
        )
    return ValueHead(int(text_config.hidden_size))


def _optimizer(config: PPOConfig, policy, value: nn.Module, total_updates: int | None):
    params_policy = [p for p in policy.parameters() if p.requires_grad]
    params_value = [p for p in value.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": params_policy, "lr": config.lr},
            {"params": params_value, "lr": config.lr * config.value_lr_mult},
        ],
        lr=config.lr,
        eps=1e-5,
        weight_decay=config.weight_decay,  # torch's default is 0.01
    )
    steps = max(1, total_updates or config.updates)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda u: max(0.0, 1.0 - u / steps))
    return optimizer, scheduler


def make_state(
    config: PPOConfig, policy=None, tokenizer=None, reference=None, total_updates: int | None = None
) -> PPOState:
    """Load (or take) the policy, build reference, value model, optimizer and scheduler on the device."""
    device, autocast_dtype = pick_device(config.device)
    autocast_dtype = autocast_dtype if config.bf16 else None
    torch.manual_seed(config.seed)
    if policy is None:
        policy, tokenizer = load_policy(config.policy)
    disable_dropout(policy)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if reference is None and config.reference and config.reference != config.policy:
        reference, _ = load_policy(config.reference)
    value = _value_model(config, policy)
    separate = isinstance(value, ValueModel)
    if config.lora:
        policy = _apply_lora(policy, config)  # a shared value head trains alongside the adapters
        if separate:
            value.trunk = _apply_lora(value.trunk, config)
    elif reference is None:
        reference = copy.deepcopy(policy)
    if reference is not None:
        reference.requires_grad_(False)
        reference.eval()
        reference.to(device)
    if config.gradient_checkpointing:
        for m in [policy, value.trunk] if separate else [policy]:
            enable_checkpointing(m)
    # Dropout is off, so train and eval mode compute the same; transformers only checkpoints activations
    # in train mode, so that is the mode when gradient checkpointing is on.
    policy.to(device).train(config.gradient_checkpointing)
    value.to(device).train(config.gradient_checkpointing)
    optimizer, scheduler = _optimizer(config, policy, value, total_updates)
    kl_ctl = (
        AdaptiveKLController(config.init_kl_coef, config.target_kl, config.kl_horizon)
        if config.adaptive_kl
        else FixedKLController(config.init_kl_coef)
    )
    generator = HFGenerator(
        policy, tokenizer, batch_size=config.generation_batch_size, autocast_dtype=autocast_dtype
    )
    return PPOState(
        config,
        policy,
        tokenizer,
        value,
        reference,
        optimizer,
        scheduler,
        kl_ctl,
        generator,
        device,
        autocast_dtype,
    )


def reference_logprobs(state: PPOState, rollout: Rollout) -> torch.Tensor:
    """Log-probs of the response under the frozen reference, (B, R)."""
    t = state.config.temperature
    if state.reference is not None:
        return forward_logprobs(state.reference, rollout, t, state.autocast_dtype)[0]
    with state.policy.disable_adapter():  # LoRA: the base weights are the reference
        return forward_logprobs(state.policy, rollout, t, state.autocast_dtype)[0]


def _update_seed(seed: int, update: int, salt: int) -> int:
    return (seed * 1_000_003 + update * 7_919 + salt) % (2**31 - 1)


def choose_prompts(prompts: Sequence[str], batch_size: int, seed: int, update: int) -> list[str]:
    """The prompts of update `update`: a seeded draw without replacement (with, if too few prompts)."""
    g = torch.Generator().manual_seed(_update_seed(seed, update, 1))
    if len(prompts) >= batch_size:
        idx = torch.randperm(len(prompts), generator=g)[:batch_size]
    else:
        idx = torch.randint(0, len(prompts), (batch_size,), generator=g)
    return [prompts[i] for i in idx.tolist()]


def normalize_rewards_from_reference(
    state: PPOState,
    prompts: Sequence[str],
    reward_fn: RewardFn,
    should_stop: Callable[[], bool] | None = None,
) -> None:
    """Score reference-policy samples once; later scores become (score - mean) / std."""
    c = state.config
    if not c.normalize_reward:
        return
    chosen = choose_prompts(prompts, c.reward_norm_samples, c.seed, -1)
    ref_model = state.reference if state.reference is not None else state.policy
    gen = HFGenerator(
        ref_model,
        state.tokenizer,
        batch_size=c.generation_batch_size,
        autocast_dtype=state.autocast_dtype,
        should_stop=should_stop,
    )
    if state.reference is None:
        with state.policy.disable_adapter():
            samples = gen.generate(chosen, c.sampling(), seed=_update_seed(c.seed, -1, 2))
    else:
        samples = gen.generate(chosen, c.sampling(), seed=_update_seed(c.seed, -1, 2))
    scores = require_finite_scores(
        reward_fn(chosen, [s.text for s in samples]).float(), [s.text for s in samples]
    )
    state.reward_mean = float(scores.mean())
    state.reward_std = float(scores.std()) if scores.numel() > 1 and float(scores.std()) > 1e-6 else 1.0
    log.info(
        "reward normalization from %d reference samples: mean %.4f std %.4f",
        len(chosen),
        state.reward_mean,
        state.reward_std,
    )


def evaluate(
    state: PPOState, rollout: Rollout, with_logprobs: bool = True
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor]:
    """(log-probs, entropy, values), each (B, R), under the current policy and value model."""
    c = state.config
    if isinstance(state.value, ValueHead):
        return shared_forward(
            state.policy, state.value, rollout, c.temperature, state.autocast_dtype, with_logprobs
        )
    logprobs, entropy = (
        forward_logprobs(state.policy, rollout, c.temperature, state.autocast_dtype)
        if with_logprobs
        else (None, None)
    )
    return logprobs, entropy, state.value(rollout, state.autocast_dtype)


def _old_logprobs_and_values(state: PPOState, rollout: Rollout, timed) -> tuple[torch.Tensor, torch.Tensor]:
    """The rollout's log-probs and values before the update (no grad), each (B, R)."""
    c = state.config
    # Recorded log-probs equal the training forward's only in fp32: under autocast the cached decode and
    # the full-sequence forward round the bf16 logits differently, and the first ratio would not be 1.
    # And only our own sampler's: an outside engine may report them before temperature, or from weights
    # a step behind, which would skew the ratio and the KL penalty from the first minibatch on.
    own = isinstance(state.generator, HFGenerator)
    recorded = rollout.logprobs if c.rollout_logprobs and own and state.autocast_dtype is None else None
    if isinstance(state.value, ValueHead):  # one trunk pass: values, and the log-probs if not recorded
        logprobs, _, values = timed("values", lambda: evaluate(state, rollout, recorded is None))
        return (recorded if recorded is not None else logprobs), values
    # separate: the policy forward only when nothing was recorded, the value model's once
    logprobs = recorded
    if logprobs is None:
        logprobs = timed(
            "policy_logprobs",
            lambda: forward_logprobs(state.policy, rollout, c.temperature, state.autocast_dtype)[0],
        )
    return logprobs, timed("values", lambda: state.value(rollout, state.autocast_dtype))


def _minibatch_step(state: PPOState, mb: Rollout, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """One gradient step on a minibatch; `batch` holds its old log-probs, advantages, values, returns."""
    c = state.config
    logprobs, entropy, vpred = evaluate(state, mb)
    pg_loss, v_loss, stats = ppo_losses(
        logprobs,
        batch["old_logprobs"],
        batch["advantages"],
        vpred,
        batch["old_values"],
        batch["returns"],
        batch["mask"],
        c.cliprange,
        c.cliprange_value,
    )
    loss = pg_loss + c.vf_coef * v_loss  # shared: one backward serves both losses
    state.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for grp in state.optimizer.param_groups for p in grp["params"]]
    # A NaN gradient (an overflow) would be written into every weight by the step, and then saved: the
    # round stops instead, and a resume starts from the last checkpoint, written before this update.
    norm = torch.nn.utils.clip_grad_norm_(params, c.max_grad_norm if c.max_grad_norm > 0 else float("inf"))
    if not torch.isfinite(norm):
        raise FloatingPointError(
            f"update {state.update + 1}: the gradient is not finite (loss {float(loss.detach())}); "
            "the weights were not changed by it, and the last checkpoint holds the update before"
        )
    state.optimizer.step()
    return stats | {
        "pg_loss": float(pg_loss.detach()),
        "vf_loss": float(v_loss.detach()),
        "entropy": float(masked_mean(entropy.detach(), batch["mask"])),
    }


def _optimize(state: PPOState, rollout: Rollout, batch: dict[str, torch.Tensor]) -> dict[str, float]:
    """`ppo_epochs` passes over shuffled minibatches (order seeded by (seed, update)); mean stats."""
    c = state.config
    B = rollout.response_ids.shape[0]
    g = torch.Generator().manual_seed(_update_seed(c.seed, state.update, 3))
    agg: dict[str, list[float]] = {}
    for _epoch in range(c.ppo_epochs):
        order = torch.randperm(B, generator=g)
        for start in range(0, B, c.mini_batch_size):
            idx = order[start : start + c.mini_batch_size].to(state.device)
            stats = _minibatch_step(state, rollout.select(idx), {k: v[idx] for k, v in batch.items()})
            for k, v in stats.items():
                agg.setdefault(k, []).append(v)
    return {k: sum(v) / len(v) for k, v in agg.items()}


def ppo_update(state: PPOState, prompts: Sequence[str], reward_fn: RewardFn) -> dict[str, float]:
    """One PPO iteration: sample, score, reference log-probs, values, GAE, `ppo_epochs` of minibatches."""
    c = state.config
    times: dict[str, float] = {"policy_logprobs": 0.0}  # 0: recorded, or (shared) timed as "values"

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        times[name] = times.get(name, 0.0) + time.perf_counter() - t0
        return out

    batch_prompts = choose_prompts(prompts, c.batch_size, c.seed, state.update)
    samples = timed(
        "generation",
        lambda: state.generator.generate(
            batch_prompts, c.sampling(), seed=_update_seed(c.seed, state.update, 2)
        ),
    )
    rollout = build_rollout(samples, int(state.tokenizer.pad_token_id)).to(state.device)
    mask = rollout.response_mask.float()  # (B, R)
    raw = timed("reward", lambda: reward_fn(rollout.prompts, rollout.texts).float().to(state.device))  # (B,)
    require_finite_scores(raw, rollout.texts)
    with torch.no_grad():
        old_logprobs, old_values = _old_logprobs_and_values(state, rollout, timed)
        ref_logprobs = timed("reference_logprobs", lambda: reference_logprobs(state, rollout))
        old_values = old_values * mask
        score = (raw - state.reward_mean) / state.reward_std if c.normalize_reward else raw.clone()
        score = score - c.missing_eos_penalty * (~rollout.finished).float()
        rewards, kl = compute_rewards(score, old_logprobs, ref_logprobs, mask, state.kl_ctl.value)
        advantages, returns = compute_gae(rewards, old_values, mask, c.gamma, c.lam)
        advantages = whiten(advantages, mask) * mask
    batch = {"old_logprobs": old_logprobs, "advantages": advantages, "old_values": old_values}
    batch |= {"returns": returns, "mask": mask}
    stats = timed("update", lambda: _optimize(state, rollout, batch))
    lr = state.scheduler.get_last_lr()[0]  # the rate this update used (step() moves it to the next one's)
    state.scheduler.step()
    beta = state.kl_ctl.value
    row = _log_row(state, rollout, raw, score, kl, beta, stats, batch, times) | {"lr": lr}
    state.kl_ctl.update(row["kl"], rollout.response_ids.shape[0])  # the per-answer KL the row reports
    state.update += 1
    state.history.append(row)
    return row


def _log_row(state: PPOState, rollout: Rollout, raw, score, kl, beta, stats, batch, times) -> dict:
    mask = batch["mask"]
    B, Tq, R = rollout.response_ids.shape[0], rollout.query_ids.shape[1], rollout.response_ids.shape[1]
    return {
        "update": state.update + 1,
        "reward_raw": float(raw.mean()),
        "reward_normalized": float(score.mean()),
        "kl": float(kl.sum(dim=1).mean()),
        "beta": beta,
        "non_score_reward": float((-beta * kl).sum(dim=1).mean()),
        **stats,
        "explained_variance": explained_variance(batch["old_values"], batch["returns"], mask),
        "response_length": float(rollout.lengths.float().mean()),
        "no_eos_share": float((~rollout.finished).float().mean()),
        "tokens": int(mask.sum()),
        "query_tokens": int(rollout.query_mask.sum()),
        "padded_sequence_tokens": int(B * (Tq + R)),
        **{f"seconds_{k}": round(v, 4) for k, v in times.items()},
    }


# --- a round ------------------------------------------------------------------------------------------


@dataclass
class PPOResult:
    """What a round produced."""

    history: list[dict]
    metrics: dict
    policy_dir: str | None
    updates: int
    stopped: bool = False
    resumed_from_update: int | None = None
    seconds: float = 0.0
    reward_mean: float = 0.0
    reward_std: float = 1.0
    kl_coef: float = 0.0
    """beta after the round's last update (the controller's value; a next round can start there)"""
    device: str = "cpu"
    policy: Any = field(default=None, repr=False)
    """the trained model in memory, for evaluating right after the round"""
    tokenizer: Any = field(default=None, repr=False)
    reference: Any = field(default=None, repr=False)


def save_policy(policy, tokenizer, directory: str | Path) -> Path:
    """Save as a plain transformers folder (safetensors), LoRA merged in; temp folder, then rename."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model = policy
    if hasattr(model, "merge_and_unload"):
        model = copy.deepcopy(model).merge_and_unload()
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    return directory


def _state_json(state: PPOState) -> dict:
    return {
        "update": state.update,
        "kl_coef": state.kl_ctl.value,
        "reward_mean": state.reward_mean,
        "reward_std": state.reward_std,
        "history": state.history,
        "config": asdict(state.config),
    }


def _checkpoint(state: PPOState, ckpt_dir: Path) -> None:
    save_checkpoint(
        ckpt_dir,
        state.update,
        state.trainable,  # policy + value model (or the shared value head)
        state.optimizer,
        state.scheduler,
        _state_json(state),
        keep=state.config.keep_checkpoints,
    )


# Not generation_batch_size: the chunks share one random generator, so other chunk sizes draw other samples.
# The device may change (a round begun on a GPU worker can end on another, or on the CPU); the round then
# goes on from its last update, but does not end bit for bit where an uninterrupted one would (other
# numerics, bf16 autocast on CUDA only, another random stream).
RESUMABLE_CHANGES = ("checkpoint_every", "keep_checkpoints", "device")


def _changed_settings(saved: dict, current: dict) -> list[str]:
    """The settings a checkpoint was written with that differ from this run's (those that only say
    where and how often to write, or on which device, may differ)."""
    return sorted(
        k
        for k in saved.keys() | current.keys()
        if k not in RESUMABLE_CHANGES and saved.get(k) != current.get(k)
    )


def _start_over(ckpt_dir: Path) -> None:
    """Delete checkpoints no resume can use. Left beside the new round's, they outnumbered them: the
    pruning keeps the highest update numbers, so each new checkpoint was deleted as it was written and
    every kill started the round over again."""
    shutil.rmtree(ckpt_dir, ignore_errors=True)


def _resume(state: PPOState, ckpt_dir: Path) -> int | None:
    """Restore the newest readable checkpoint into `state`; the update it resumes from, or None."""
    ckpt = latest_checkpoint(ckpt_dir)
    if ckpt is None:
        return None
    # this run's settings as the checkpoint's JSON holds them (tuples become lists)
    current = json.loads(json.dumps(asdict(state.config)))
    changed = _changed_settings(validate_checkpoint(ckpt).get("config") or {}, current)
    if changed:  # another round's recipe: continuing it would mix two rounds
        log.warning(
            "checkpoints in %s are from other settings (%s): starting the round over (deleting them)",
            ckpt_dir,
            ", ".join(changed),
        )
        return _start_over(ckpt_dir)
    try:
        saved = load_checkpoint(
            ckpt, state.trainable, state.optimizer, state.scheduler, map_location=state.device
        )
    except CheckpointError as e:  # e.g. written with the other value_model: its weights do not fit
        log.warning("cannot resume (%s): starting the round over (deleting the checkpoints)", e)
        return _start_over(ckpt_dir)
    state.update = saved["update"]
    state.kl_ctl.value = saved["kl_coef"]
    state.reward_mean, state.reward_std = saved["reward_mean"], saved["reward_std"]
    state.history = saved["history"]
    log.info("resumed PPO round from update %d", state.update)
    return state.update


def train_ppo(
    prompts: Sequence[str],
    reward_fn: RewardFn,
    config: PPOConfig | None = None,
    out_dir: str | Path = "runs/ppo",
    *,
    progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = True,
    policy=None,
    tokenizer=None,
    reference=None,
    max_updates: int | None = None,
    generator: Generator | None = None,
    final_dir: str | Path | None = None,
) -> PPOResult:
    """Run `config.updates` PPO updates, checkpointing to `out_dir/checkpoints`; save the policy and
    `metrics.json` to `final_dir` (default `out_dir`): `policy/`.

    `progress(row)` gets each update's log row (with `step` / `total_steps`); `should_stop()` is polled
    after each update: when True a checkpoint is written and the round returns `stopped=True`; calling
    again resumes. `max_updates` stops early after that many updates in this call (tests use it to
    simulate a kill). `policy` / `tokenizer` / `reference` may be passed in instead of loaded.
    `generator` replaces the built-in `HFGenerator` for sampling (an inference engine such as vLLM);
    it must sample from the current policy weights, which it is the caller's job to keep in sync.
    Attempts that share `out_dir` to resume each take their own `final_dir`, so that one presumed dead
    that finishes anyway cannot overwrite the policy of the attempt that recorded the round.
    """
    config = config or PPOConfig()
    prompts = [p for p in prompts if p and p.strip()]
    if not prompts:
        raise ValueError("PPO needs at least one prompt")
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    out_dir.mkdir(parents=True, exist_ok=True)
    state = make_state(config, policy, tokenizer, reference)
    if generator is not None:
        state.generator = generator
    if isinstance(state.generator, HFGenerator):
        state.generator.should_stop = should_stop  # a cancel also ends a long sampling, not only an update
    resumed_from = _resume(state, ckpt_dir) if resume else None
    try:
        if resumed_from is None:
            normalize_rewards_from_reference(state, prompts, reward_fn, should_stop)
        stopped = _run_updates(state, prompts, reward_fn, ckpt_dir, progress, should_stop, max_updates)
    except GenerationStopped:
        # Stopped while sampling: the update under way had changed nothing yet, so the last finished
        # update is where a resume starts (saved now if the schedule had not saved it).
        if state.update:
            _checkpoint_unless_saved(state, ckpt_dir)
        stopped = True
    final = Path(final_dir) if final_dir is not None else out_dir
    return _result(state, final, stopped, resumed_from, time.perf_counter() - t_start)


def _run_updates(state, prompts, reward_fn, ckpt_dir, progress, should_stop, max_updates) -> bool:
    """The round's remaining updates, checkpointed on schedule; True when it stopped before the last."""
    config = state.config
    done_this_call = 0
    while state.update < config.updates:
        row = ppo_update(state, prompts, reward_fn)
        done_this_call += 1
        # 4 significant digits, not 4 decimals: a learning rate of 1e-5 would print as 0.0
        shown = {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in row.items()}
        log.info("ppo %s", json.dumps(shown))
        last = state.update >= config.updates
        if config.checkpoint_every and (state.update % config.checkpoint_every == 0 or last):
            _checkpoint(state, ckpt_dir)
        if progress is not None:
            progress({**row, "step": state.update, "total_steps": config.updates})
        if not last and (
            (should_stop is not None and should_stop()) or (max_updates and done_this_call >= max_updates)
        ):
            _checkpoint_unless_saved(state, ckpt_dir)
            return True
    return False


def _checkpoint_unless_saved(state: PPOState, ckpt_dir: Path) -> None:
    """A checkpoint of the last finished update, unless the schedule (checkpoint_every) wrote it."""
    every = state.config.checkpoint_every
    if not every or state.update % every:
        _checkpoint(state, ckpt_dir)


def _result(
    state: PPOState, final_dir: Path, stopped: bool, resumed_from: int | None, seconds: float
) -> PPOResult:
    """The round's result; a finished round also saves the policy and `metrics.json` in `final_dir`."""
    metrics = dict(state.history[-1]) if state.history else {}
    result = PPOResult(
        history=state.history,
        metrics=metrics,
        policy_dir=None,
        updates=state.update,
        stopped=stopped,
        resumed_from_update=resumed_from,
        seconds=seconds,
        reward_mean=state.reward_mean,
        reward_std=state.reward_std,
        kl_coef=float(state.kl_ctl.value),
        device=str(state.device),
        policy=state.policy,
        tokenizer=state.tokenizer,
        reference=state.reference,
    )
    if not stopped:
        final_dir.mkdir(parents=True, exist_ok=True)
        result.policy_dir = str(save_policy(state.policy, state.tokenizer, final_dir / "policy"))
        (final_dir / "metrics.json").write_text(
            json.dumps({"metrics": metrics, "history": state.history}, indent=2, default=float)
        )
    return result


# --- evaluation (the over-optimization watch) --------------------------------------------------------------


@torch.no_grad()
def sequence_kl(
    policy,
    reference,
    samples: Sequence[Sample],
    pad_id: int,
    temperature: float,
    autocast_dtype=None,
    batch_size: int = 16,
) -> list[float]:
    """Per answer: sum over its tokens of log pi(token) - log pi_ref(token) (a Monte-Carlo KL estimate)."""
    out: list[float] = []
    for start in range(0, len(samples), batch_size):
        rollout = build_rollout(samples[start : start + batch_size], pad_id).to(
            next(policy.parameters()).device
        )
        lp, _ = forward_logprobs(policy, rollout, temperature, autocast_dtype)
        if reference is None:
            with policy.disable_adapter():
                ref, _ = forward_logprobs(policy, rollout, temperature, autocast_dtype)
        else:
            ref, _ = forward_logprobs(reference, rollout, temperature, autocast_dtype)
        out.extend(((lp - ref) * rollout.response_mask).sum(dim=1).tolist())
    return out


def watch_metrics(
    samples: Sequence[Sample], scores: Sequence[float], kls: Sequence[float] | None
) -> dict[str, float]:
    """Per-round over-optimization figures: RM score, KL, mean length (tokens), share without EOS."""
    n = max(len(samples), 1)
    out = {
        "rm_score": sum(scores) / n,
        "mean_length": sum(s.num_tokens for s in samples) / n,
        "no_eos_share": sum(not s.finished for s in samples) / n,
        "n_samples": len(samples),
    }
    if kls is not None:
        out["kl"] = sum(kls) / n
    return out


# --- CLI ----------------------------------------------------------------------------------------------------


def read_prompts(path: str) -> list[str]:
    """The prompts of a file: JSONL with a "prompt" field (the app's export, a TRL dataset) when the
    name ends in .jsonl, else one prompt a line. Lines end at CR or LF only: the export writes U+2028
    unescaped inside strings, where str.splitlines() cut a valid line in two."""
    lines = [(n, line) for n, line in enumerate(jsonl_lines(Path(path).read_text(encoding="utf-8")), 1)]
    lines = [(n, line) for n, line in lines if line.strip()]
    if not path.endswith(".jsonl"):
        return [line for _, line in lines]
    prompts = []
    for n, line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: line {n}: invalid JSON ({e.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise DataError(f"{path}: line {n}: no text field 'prompt'")
        prompts.append(row["prompt"])
    return prompts


def main(argv: Sequence[str] | None = None) -> int:
    from .sampling import RewardScorer

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], allow_abbrev=False
    )  # "--max-len 16" set max_length without a word
    parser.add_argument("--prompts", required=True, help="one prompt a line, or JSONL with a 'prompt' field")
    parser.add_argument("--reward-model", required=True, help="folder written by rewardtrainer.train_rm")
    parser.add_argument("--out", required=True)
    parser.add_argument("--policy", default="")
    parser.add_argument("--updates", type=int, default=PPOConfig.updates)
    parser.add_argument("--batch-size", type=int, default=PPOConfig.batch_size)
    parser.add_argument("--max-new-tokens", type=int, default=PPOConfig.max_new_tokens)
    parser.add_argument("--lr", type=float, default=PPOConfig.lr)
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        config = PPOConfig(
            policy=args.policy,
            updates=args.updates,
            batch_size=args.batch_size,
            # a batch below the default minibatch is one minibatch (as before minibatches were checked)
            mini_batch_size=min(PPOConfig.mini_batch_size, args.batch_size),
            max_new_tokens=args.max_new_tokens,
            lr=args.lr,
            lora=args.lora,
            device=args.device,
        )
        prompts = read_prompts(args.prompts)
    except (ValueError, OSError, UnicodeDecodeError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    scorer = RewardScorer.from_pretrained(args.reward_model)
    result = train_ppo(prompts, scorer, config, args.out, progress=lambda r: None)
    print(json.dumps(result.metrics, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
