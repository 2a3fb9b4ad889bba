"""PPOConfig: everything that decides a PPO round (torch-free, so the web app's startup checks can
build one from its settings without importing torch; `rewardtrainer.ppo` runs it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .config import check_numbers

if TYPE_CHECKING:
    from .sampling import SamplingParams

VALUE_MODELS = ("shared", "separate")


@dataclass
class PPOConfig:
    """Everything that decides a PPO round. Defaults suit SmolLM2-135M on a small CPU box or a GPU."""

    policy: str = ""
    """causal LM to start from: a folder, a hub name, a .gguf path; '' = SmolLM2-135M-Instruct (GGUF)"""
    reference: str = ""
    """frozen KL reference; '' = the starting policy (the service passes policy v0, as InstructGPT)"""
    updates: int = 8
    """PPO iterations in this round (each: sample a batch, score it, optimize on it)"""
    batch_size: int = 16
    """prompts (= answers) sampled per update"""
    mini_batch_size: int = 4
    """answers per gradient step"""
    ppo_epochs: int = 4
    """passes over each batch"""
    lr: float = 3e-6
    """AdamW learning rate of policy and value model, linearly annealed to 0 over the round"""
    value_lr_mult: float = 1.0
    """the value model learns this many times faster than the policy"""
    weight_decay: float = 0.0
    """AdamW weight decay (toward zero, not toward the reference; TRL and OpenRLHF use none)"""
    temperature: float = 0.7
    """sampling temperature, also applied to the logits in every training log-prob"""
    max_new_tokens: int = 64
    """answer length cap; answers that hit it without EOS are penalized"""
    init_kl_coef: float = 0.05
    """beta at the start of the round"""
    adaptive_kl: bool = True
    """adapt beta toward target_kl (Ziegler et al. 2019); False = fixed beta"""
    target_kl: float = 6.0
    """per-answer KL (nats, summed over tokens) the adaptive controller aims at"""
    kl_horizon: int = 10000
    """the controller's horizon in answers: larger = slower changes of beta"""
    cliprange: float = 0.2
    """PPO ratio clip"""
    cliprange_value: float = 0.2
    """value prediction clip around the rollout's values"""
    vf_coef: float = 0.1
    """weight of the value loss"""
    gamma: float = 1.0
    """discount (1: a bandit-like episode, every token counts)"""
    lam: float = 0.95
    """GAE lambda"""
    normalize_reward: bool = True
    """normalize scores with the mean / std of scores on reference-policy samples"""
    reward_norm_samples: int = 32
    """reference samples scored for that normalization at the start of the round"""
    missing_eos_penalty: float = 1.0
    """subtracted from the (normalized) score of an answer that never emitted EOS"""
    max_grad_norm: float = 1.0
    """gradient clipping of policy and value (0 = off)"""
    lora: bool = False
    """train LoRA adapters instead of all weights (peft); for policies that do not fit full training"""
    lora_r: int = 16
    """LoRA rank"""
    lora_alpha: int = 32
    """LoRA scaling numerator"""
    lora_target_modules: str = "all-linear"
    """peft target_modules ('all-linear' or comma-separated module names)"""
    gradient_checkpointing: bool = False
    """recompute activations in backward: less memory for long answers / big models"""
    checkpoint_every: int = 1
    """write a resumable checkpoint every this many updates (0 = never)"""
    keep_checkpoints: int = 2
    """complete checkpoints kept on disk"""
    seed: int = 0
    """seeds prompt choice, sampling and minibatch order (per update)"""
    device: str | None = None
    """'cuda', 'mps', 'cpu' or None = the best available"""
    bf16: bool = True
    """bf16 autocast where the device supports it (CUDA); CPU runs fp32"""
    generation_batch_size: int = 32
    """rows per generation batch"""
    rollout_logprobs: bool = True
    """old log-probs = those recorded while sampling instead of a second no-grad policy forward (fp32 and
    the built-in sampler only: under bf16 autocast the two differ by up to 0.19 nats, and an outside
    generator's log-probs are not trusted; the forward runs then)"""
    value_model: str = "shared"
    """'shared': value head on the policy's trunk (one forward + backward); 'separate': own trunk copy"""

    def __post_init__(self) -> None:
        if self.value_model not in VALUE_MODELS:
            raise ValueError(f"value_model must be one of {VALUE_MODELS}, got {self.value_model!r}")
        check_numbers(
            self,
            whole=(
                "updates",
                "batch_size",
                "mini_batch_size",
                "ppo_epochs",
                "max_new_tokens",
                "kl_horizon",
                "reward_norm_samples",
                "lora_r",
                "lora_alpha",
                "keep_checkpoints",
                "generation_batch_size",
            ),
            counts=("checkpoint_every",),
            non_negative=("weight_decay", "init_kl_coef", "missing_eos_penalty", "max_grad_norm", "vf_coef"),
            positive=("lr", "value_lr_mult", "temperature", "target_kl", "cliprange", "cliprange_value"),
            fractions=("gamma", "lam"),
        )
        if self.mini_batch_size > self.batch_size:
            raise ValueError(
                f"mini_batch_size ({self.mini_batch_size}) must be at most batch_size ({self.batch_size})"
            )

    def sampling(self) -> SamplingParams:
        from .sampling import SamplingParams

        # top_p stays 1: PPO's log-probs must be those of the distribution the answers came from.
        return SamplingParams(temperature=self.temperature, top_p=1.0, max_new_tokens=self.max_new_tokens)
