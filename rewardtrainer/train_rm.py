"""Train a length-debiased reward model on preference pairs.

Run:

    python -m rewardtrainer.train_rm --data prefs.jsonl --out runs/rm1              # the default recipe
    python -m rewardtrainer.train_rm --data prefs.jsonl --out runs/rm1 --objective plain --augment none
    python -m rewardtrainer.train_rm --data a.jsonl b.jsonl --out runs/rm2 --backbone path/or/hub-name
    torchrun --nproc_per_node 4 -m rewardtrainer.train_rm --data prefs.jsonl --out runs/rm3   # DDP

Every TrainConfig field is an option (`--help` lists them with their docs). From Python (this is what
the Celery `gpu` task calls):

    result = fit_reward_model(pairs, TrainConfig(epochs=2), "runs/rm1", progress=print)
    result.metrics["balanced_accuracy"], result.model_dir   # runs/rm1/model (RewardModel.from_pretrained)

The run is a sequence of named steps, each a function: `prepare` (split, augment, tokenize, count
steps), `build` (model, optimizer, schedule), `resume` (the newest complete checkpoint into a
`RunState`), `train_step` (one optimizer step over a group of micro-batches), `validate` (the single
evaluation call), `finalize` (decorrelate / calibrate against length, probe tests, save). With
`ensemble > 1` the members train one after another and their weights are averaged (WARM).

Follows: Bradley-Terry reward modelling as in InstructGPT (Ouyang et al. 2022) and TRL's RewardTrainer;
a learned length covariate dropped at use (R-DPO arXiv 2403.19159, LC-AlpacaEval arXiv 2404.04475);
post-hoc length calibration (arXiv 2409.17407); prompt-mismatch augmentation (RRM, arXiv 2409.13156);
weight averaging (WARM, arXiv 2401.12187); ODIN (Chen et al. 2024) as an option; AdamW with linear
warmup and linear/cosine decay. Killed runs resume from the newest complete checkpoint in
`out_dir/checkpoints` and end with the same weights as an uninterrupted run (the batch order is a pure
function of seed and epoch, RNG states are restored).

Speed: dropout off, one forward for chosen+rejected (2B, T), token-budget batches of similar-length
pairs (`max_tokens`), SDPA attention, fused AdamW and bf16 autocast on CUDA, running statistics kept on
the device (the host reads them only every `log_every` steps), optional torch.compile, gradient
checkpointing switched on when the estimated memory would not fit the GPU; optionally (`packing`) every
row of a micro-batch end to end in one sequence, FlexAttention with a document mask on CUDA.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import distributed, varlen
from .augment import minilm_embedder, mismatch_pairs, padded_pairs, prompt_neighbours
from .calibrate import LengthCalibration, fit_length_beta
from .checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    rank_rng_state,
    save_checkpoint,
    save_final_model,
    validate_checkpoint,
)
from .config import (
    MIN_PAIRS,
    TrainConfig,
    add_config_args,
    config_from_namespace,
    default_backbone,
    missing_local_model,
)
from .data import (
    DataError,
    EncodedPairs,
    PreferencePair,
    bucketed_batches,
    budget_batches,
    collate,
    collate_packed,
    encode_pairs,
    length_balance_factors,
    load_jsonl,
    packed_batches,
    packed_multiple,
    pair_from_dict,
    pair_tokens,
    round_up,
    split_by_prompt,
    width_multiple,
)
from .devices import enable_checkpointing, pick_device
from .evaluate import evaluate, probe_tests, scalar_metrics, score_pairs
from .model import RewardModel, context_length, is_causal_decoder, resolve_pooling
from .packing import document_block_mask

log = logging.getLogger(__name__)

__all__ = ["MIN_PAIRS", "TrainConfig", "TrainResult", "default_backbone", "fit_reward_model", "main"]


@dataclass
class TrainResult:
    """What a run produced; `metrics` are the final validation metrics (see evaluate.evaluate)."""

    metrics: dict
    history: list[dict]
    model_dir: str | None
    pairs_train: int
    pairs_val: int
    seconds: float
    pairs_per_second: float
    device: str
    global_step: int = 0
    total_steps: int = 0
    stopped: bool = False
    early_stopped: bool = False
    resumed_from_step: int | None = None
    train_seconds: float = 0.0
    members: int = 1
    pairs_calibration: int = 0  # held out from training for the length fits


@dataclass
class RunState:
    """What a checkpoint restores besides weights and optimizer: where the run is and what it has seen."""

    global_step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    data_seed: int = 0
    best_val_loss: float | None = None
    bad_evals: int = 0
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0
    pairs_seen: int = 0
    fingerprint: str = ""
    # the running training statistics since the last log row, summed over ranks (RunningStats): without
    # them the first row after a resume averaged only the steps since the resume
    running_sums: dict[str, float] = field(default_factory=dict)
    running_pairs: float = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass
class Prepared:
    """Everything `prepare` builds once per run (shared by the ensemble members)."""

    config: TrainConfig
    out_dir: Path
    device: torch.device
    autocast_dtype: torch.dtype | None
    dist: distributed.Dist
    tokenizer: Any
    train_pairs: list[PreferencePair]  # the human pairs
    val_pairs: list[PreferencePair]
    n_augmented: int
    enc_train: EncodedPairs  # human + mismatch pairs
    enc_val: EncodedPairs
    steps_per_epoch: int
    total_steps: int
    length_mean: float
    length_beta_start: float  # where the length objective's beta starts (config.length_beta_start)
    val_neighbours: dict[str, str]
    gradient_checkpointing: bool
    packing: bool = False  # config.packing, checked against the backbone
    model_type: str = ""  # the backbone's family (its config's model_type): which packed kernels apply
    compiled: bool = False  # config.compile resolved (by build)
    calib_pairs: list[PreferencePair] = field(default_factory=list)  # held out for the length fits
    enc_calib: EncodedPairs | None = None

    @property
    def pad_multiple(self) -> int:
        """config.pad_to_multiple resolved for the device."""
        return width_multiple(self.device.type, self.config.pad_to_multiple)


@dataclass
class Parts:
    """The trainable objects of one member: the model, what runs its forward, optimizer and schedule."""

    model: RewardModel
    forward: Callable
    optimizer: torch.optim.Optimizer
    scheduler: Any


# ---------------------------------------------------------------------------------------------------------
# prepare


def check_pairs(pairs: Sequence[PreferencePair | dict]) -> list[PreferencePair]:
    """Convert dict rows, and raise DataError for data nothing can be learned from."""
    out = [p if isinstance(p, PreferencePair) else pair_from_dict(p, i + 1) for i, p in enumerate(pairs)]
    if not out:
        raise DataError("no preference pairs to train on")
    if len(out) < MIN_PAIRS:
        raise DataError(
            f"too few pairs ({len(out)}): need at least {MIN_PAIRS} to hold some out for validation"
        )
    if all(p.chosen == p.rejected for p in out):
        raise DataError("every pair has chosen == rejected: there is no preference to learn")
    if not any(p.weight > 0 for p in out):  # the weighted loss is 0: it "trained" and wrote a model
        raise DataError("every pair has weight 0: there is nothing to learn from")
    same = sum(p.chosen == p.rejected for p in out)
    if same:
        log.warning("%d of %d pairs have chosen == rejected: they teach nothing", same, len(out))
    return out


def _set_threads(device: torch.device, num_threads: int) -> None:
    if device.type != "cpu" and not num_threads:
        return
    if not num_threads:
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        num_threads = min(torch.get_num_threads(), available)  # torch's default: physical cores
    if torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)
    log.info("torch CPU threads: %d", torch.get_num_threads())


def _seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _neighbours(pairs: Sequence[PreferencePair], config: TrainConfig, what: str) -> dict[str, str]:
    """Nearest other prompt by MiniLM similarity; {} (random partners) where MiniLM is not installed."""
    try:
        embed = minilm_embedder()
    except (OSError, ValueError) as e:
        log.warning("no MiniLM embedder (%s): %s use random other prompts", e, what)
        return {}
    return prompt_neighbours(pairs, embed)


COMPILE_MIN_PARAMS = 100_000_000


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def compile_enabled(config: TrainConfig, device: torch.device, n_params: int) -> bool:
    """config.compile resolved for the device and model size ('auto': on CUDA for backbones of at least
    100M parameters; a smaller one, MiniLM's 22M, trains in seconds where compiling takes tens of them)."""
    if config.compile != "auto":
        return config.compile == "on"
    return device.type == "cuda" and n_params >= COMPILE_MIN_PARAMS


def token_budget(config: TrainConfig) -> int:
    """Tokens of a micro-batch: `max_tokens`, or what batch_size pairs of max_length rows pad to."""
    return config.max_tokens or 2 * config.batch_size * config.max_length


def packing_enabled(config: TrainConfig, backbone_config) -> bool:
    """config.packing, checked: only a causal decoder read at its last token can pack (an encoder's rows
    would see each other, a mean would need each row's span)."""
    if not config.packing:
        return False
    last_token = resolve_pooling(backbone_config, config.pooling) == "last"
    if not (is_causal_decoder(backbone_config) and last_token):
        raise ValueError(
            f"packing needs a causal decoder with last-token pooling; {config.backbone} with pooling "
            f"{config.pooling!r} is not one"
        )
    return True


def estimate_training_bytes(model: RewardModel, config: TrainConfig, compiled: bool = False) -> float:
    """Rough peak memory of a training step without activation checkpointing.

    Weights, gradients and AdamW's two moments in fp32 (16 bytes a parameter) plus activations kept
    for backward: Korthikanti et al. (2022) count 34 * hidden bytes per token and layer in 16-bit with
    a fused attention kernel (no T x T term); under bf16 autocast the residual stream and the norms stay
    in fp32: on a 0.35B Llama decoder (H200, 32k tokens) a bare loop measured 44 and this trainer's step
    55 (padding buckets, pooling and the loss in fp32), so 56 here; twice 34 in fp32. (Until 2026-11-26
    this doubled the 16-bit figure: checkpointing switched itself on at half the batch that fits, which
    cost that batch a quarter of its throughput.)
    """
    n_params = _n_params(model)
    cfg = model.backbone.config.get_text_config()
    layers = int(getattr(cfg, "num_hidden_layers", 12))
    tokens = token_budget(config)
    per_token_layer_hidden = 56.0 if config.bf16 else 68.0
    if compiled and config.bf16:  # fused elementwise kernels keep less: 31 measured (H100, 0.35B)
        per_token_layer_hidden = 34.0
    return 16.0 * n_params + per_token_layer_hidden * tokens * layers * model.hidden_size


def _wants_checkpointing(
    model: RewardModel, config: TrainConfig, device: torch.device, compiled: bool
) -> bool:
    if config.gradient_checkpointing != "auto":
        return config.gradient_checkpointing == "on"
    if device.type != "cuda":
        return False
    total = torch.cuda.get_device_properties(device).total_memory
    # A process capped with torch.cuda.set_per_process_memory_fraction (a shared GPU) gets its share only.
    get_fraction = getattr(torch.cuda, "get_per_process_memory_fraction", None)
    index = device.index if device.index is not None else torch.cuda.current_device()
    total *= get_fraction(index) if get_fraction is not None else 1.0
    need = estimate_training_bytes(model, config, compiled)
    if need > 0.8 * total:
        log.info("gradient checkpointing on: ~%.1f GB needed, %.1f GB on the GPU", need / 1e9, total / 1e9)
        return True
    return False


def _batches(enc: EncodedPairs, config: TrainConfig, seed: list[int], packing: bool) -> list[list[int]]:
    if packing:
        return packed_batches(pair_tokens(enc), token_budget(config), seed)
    lengths = enc.lengths
    if config.max_tokens:
        return budget_batches(lengths, config.max_tokens, seed, max_pairs=max(config.batch_size, 4096))
    return bucketed_batches(lengths, config.batch_size, seed=seed, chunk_batches=config.bucket_chunk_batches)


def _epoch_steps(enc: EncodedPairs, config: TrainConfig, packing: bool) -> list[int]:
    """Optimizer steps in each of the configured epochs for data seed config.seed (ensemble members
    train on other seeds and share this count: theirs may end a step or two off their last epoch).
    Token-budget batches (max_tokens, packing) make a different number of batches in each epoch's
    order, so `epochs` times the first epoch's count ended a step or two before or after the last
    epoch's end."""

    def steps(epoch: int) -> int:
        return math.ceil(len(_batches(enc, config, [config.seed, epoch], packing)) / config.grad_accum)

    if config.max_steps or not (packing or config.max_tokens):  # fixed-size batches: every epoch alike
        return [steps(0)] * config.epochs
    return [steps(epoch) for epoch in range(config.epochs)]


# Families whose position ids start after the padding index (RoBERTa: 514 positions, 512 usable).
_OFFSET_POSITIONS = frozenset(
    {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text", "ibert"}
)


def _require_positions(backbone_config, max_length: int) -> None:
    """A max_length beyond the backbone's positions fails now, not at the first long row (a MiniLM with
    max_length 600 ran until a 513-token answer came, then stopped on a tensor-size error)."""
    positions = context_length(backbone_config)
    text_config = backbone_config.get_text_config()
    if positions is not None and getattr(text_config, "model_type", "") in _OFFSET_POSITIONS:
        positions -= (getattr(text_config, "pad_token_id", None) or 1) + 1  # 514 -> 512 usable
    if positions is not None and positions < max_length:
        raise ValueError(
            f"max_length ({max_length}) is longer than the backbone's {positions} positions (RM_MAX_LENGTH)"
        )


def prepare(
    pairs: Sequence[PreferencePair | dict],
    config: TrainConfig,
    out_dir: Path,
    val_pairs: Sequence[PreferencePair | dict] | None = None,
) -> Prepared:
    """Split by prompt, add mismatch pairs, tokenize once, count the steps, pick the device."""
    from transformers import AutoConfig, AutoTokenizer

    train_pairs, val = _split(check_pairs(pairs), val_pairs, config)
    train_pairs, calib_pairs = _hold_out_for_calibration(train_pairs, config)
    device, autocast_dtype = pick_device(config.device or None)
    dist = distributed.init(device.type)
    device = distributed.device_for(dist, device)
    autocast_dtype = autocast_dtype if config.bf16 else None
    _set_threads(device, config.num_threads)
    if missing_local_model(config.backbone):  # transformers' own message names no file
        raise FileNotFoundError(f"the backbone {config.backbone} does not exist (a model folder)")
    tokenizer = AutoTokenizer.from_pretrained(config.backbone)
    backbone_config = AutoConfig.from_pretrained(config.backbone)  # read once: positions, types, packing
    _require_positions(backbone_config, config.max_length)

    extra, n_mismatch = _augmentation(train_pairs, config)
    val_neighbours = _neighbours(val, config, "the off-prompt test will") if config.eval_probe_answers else {}

    with_types = _uses_token_types(backbone_config)
    enc_train = encode_pairs(list(train_pairs) + extra, tokenizer, config.max_length, with_types=with_types)
    if config.length_balance:  # the human pairs only: padding and mismatch pairs are not about taste
        factors = length_balance_factors(train_pairs)
        enc_train.weight[: len(train_pairs)] *= factors.astype(enc_train.weight.dtype)
    if extra:  # made by augmentation, not by raters: no length term in their logit (model.reward_loss)
        enc_train.synthetic = np.zeros(len(enc_train), dtype=bool)
        enc_train.synthetic[len(train_pairs) :] = True
    if config.relevance_head:  # the loss routes these pairs to the relevance head
        enc_train.mismatch = np.zeros(len(enc_train), dtype=bool)
        enc_train.mismatch[len(train_pairs) : len(train_pairs) + n_mismatch] = True
    enc_val = encode_pairs(val, tokenizer, config.max_length, with_types=with_types)
    enc_calib = None
    if calib_pairs:
        enc_calib = encode_pairs(calib_pairs, tokenizer, config.max_length, with_types=with_types)
    packing = packing_enabled(config, backbone_config)
    epoch_steps = _epoch_steps(enc_train, config, packing)
    steps_per_epoch = epoch_steps[0]
    total_steps = config.max_steps or sum(epoch_steps)
    n_human = len(train_pairs)
    human_chars = np.concatenate([enc_train.chosen_chars[:n_human], enc_train.rejected_chars[:n_human]])
    return Prepared(
        config=config,
        out_dir=out_dir,
        device=device,
        autocast_dtype=autocast_dtype,
        dist=dist,
        tokenizer=tokenizer,
        train_pairs=list(train_pairs),
        val_pairs=val,
        n_augmented=len(extra),
        enc_train=enc_train,
        enc_val=enc_val,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        length_mean=float(human_chars.mean()),
        length_beta_start=_length_beta_start(config, human_chars, enc_train.weight[:n_human]),
        val_neighbours=val_neighbours,
        gradient_checkpointing=False,
        packing=packing,
        model_type=getattr(backbone_config, "model_type", "") or "",
        calib_pairs=calib_pairs,
        enc_calib=enc_calib,
    )


# The start fit's prior on beta: a few pairs that length alone separates (the longer answer always
# won) have no finite fit; without a prior beta started at the search bound (10), where the length term
# saturates the logit and the reward learned almost nothing from those pairs.
LENGTH_BETA_START_PRIOR_SD = 2.0


def _length_beta_start(config: TrainConfig, human_chars: np.ndarray, weights: np.ndarray) -> float:
    """config.length_beta_start resolved: the raters' pull toward length in the human training pairs
    alone (a length-only Bradley-Terry fit, weighted as training weighs them, under a weak prior), or 0."""
    if config.objective != "length" or config.length_beta_start == "zero":
        return 0.0
    return fit_length_beta(
        np.zeros(len(human_chars)), human_chars, weights, prior_sd=LENGTH_BETA_START_PRIOR_SD
    )


def _split(
    pairs: list[PreferencePair], val_pairs: Sequence[PreferencePair | dict] | None, config: TrainConfig
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(train, validation): split by prompt, or all of `pairs` against the given `val_pairs`."""
    if val_pairs is None:
        return split_by_prompt(pairs, config.val_fraction, config.seed)
    val = [p if isinstance(p, PreferencePair) else pair_from_dict(p, i + 1) for i, p in enumerate(val_pairs)]
    if not val:
        raise DataError("val_pairs is empty: validation needs at least one pair")
    return pairs, val


def _augmentation(train_pairs: list[PreferencePair], config: TrainConfig) -> tuple[list[PreferencePair], int]:
    """The pairs added to the human ones: prompt-mismatch pairs (config.augment) first, then padding
    pairs; and how many of them are mismatch pairs."""
    extra: list[PreferencePair] = []
    if config.augment != "none":
        neighbours = (
            _neighbours(train_pairs, config, "augmentation will") if config.augment == "neighbour" else None
        )
        extra = mismatch_pairs(
            train_pairs, ratio=config.augment_ratio, seed=config.seed, neighbours=neighbours
        )
    n_mismatch = len(extra)
    extra += padded_pairs(train_pairs, ratio=config.augment_padding, seed=config.seed + 1)
    return extra, n_mismatch


def _hold_out_for_calibration(
    train_pairs: list[PreferencePair], config: TrainConfig
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Whole prompts kept out of training for the length fits (`calibration_holdout`), when a fit is
    wanted and enough prompts remain to train on; otherwise nothing is held out."""
    if not config.fits_after_training or not config.calibration_holdout:
        return train_pairs, []
    try:
        kept, held = split_by_prompt(train_pairs, config.calibration_holdout, config.seed + 7)
    except DataError:  # a single prompt: nothing to hold out
        return train_pairs, []
    if len(kept) < MIN_PAIRS or len(held) < MIN_PAIRS:
        return train_pairs, []
    return kept, held


def _uses_token_types(backbone_config) -> bool:
    return int(getattr(backbone_config, "type_vocab_size", 0) or 0) > 1


_SCHEDULE_KEYS = (
    "bucket_chunk_batches", "lr", "head_lr_mult", "length_beta_lr", "length_beta_start", "weight_decay",
    "epochs", "max_steps", "warmup_ratio", "lr_schedule",
    # and the loss and its clipping: a resume with another correlation penalty or clip norm went on
    # from the checkpoint's step under a loss its first steps did not have
    "max_grad_norm", "reward_corr_weight", "corr_mode", "corr_quality_weight", "corr_length_weight",
    "ortho_weight",
)  # fmt: skip
_DEFAULTS = TrainConfig(backbone="")


def fingerprint(prep: Prepared) -> str:
    """What a checkpoint must match to be resumed: the data, the split and the model/batching settings."""
    h = hashlib.sha256()
    for part in (prep.train_pairs, prep.val_pairs):
        for p in part:
            h.update(json.dumps([p.prompt, p.chosen, p.rejected, p.margin, p.weight]).encode())
        h.update(b"|")
    keys = (
        "backbone", "objective", "pooling", "max_length", "batch_size", "max_tokens", "grad_accum", "seed",
        "dropout", "augment", "augment_ratio",
    )  # fmt: skip
    settings = {k: getattr(prep.config, k) for k in keys}
    # only when on, so that older checkpoints keep their fingerprint
    for key in ("augment_padding", "relevance_head", "length_balance"):
        if getattr(prep.config, key):
            settings[key] = getattr(prep.config, key)
    # the batch order and the learning-rate schedule: a resume with another value went on silently with
    # another order or schedule from the checkpoint's step (only when not the default, as above)
    for key in _SCHEDULE_KEYS:
        if getattr(prep.config, key) != getattr(_DEFAULTS, key):
            settings[key] = getattr(prep.config, key)
    if prep.packing:  # the batch order differs: a packed run resumes only packed
        settings["packing"] = True
    h.update(json.dumps(settings, sort_keys=True).encode())
    h.update(f"world={prep.dist.world_size}".encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------
# build and resume


def build_optimizer(model: RewardModel, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW: backbone matrices with weight decay, backbone biases/norms without, heads at a higher lr.
    Fused (one kernel for all parameters) on CUDA."""
    head_ids = {id(p) for p in model.head_parameters()}
    decay, no_decay = [], []
    for p in model.backbone.parameters():
        if p.requires_grad and id(p) not in head_ids:
            (decay if p.ndim >= 2 else no_decay).append(p)
    beta = [model.length_beta] if model.length_beta is not None else []
    heads = [p for p in model.head_parameters() if all(p is not b for b in beta)]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay, "lr": config.lr},
        {"params": no_decay, "weight_decay": 0.0, "lr": config.lr},
        {"params": heads, "weight_decay": 0.0, "lr": config.lr * config.head_lr_mult},
        {"params": beta, "weight_decay": 0.0, "lr": config.length_beta_lr},
    ]
    fused = next(model.parameters()).device.type == "cuda"
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr, fused=fused or None)


def build_scheduler(optimizer, config: TrainConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = int(config.warmup_ratio * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if config.lr_schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total_steps - warmup)
        if config.lr_schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return max(0.0, 1.0 - progress)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build(prep: Prepared) -> Parts:
    """A fresh model (seeded heads), its forward (DDP / compiled), optimizer and schedule."""
    config = prep.config
    _seed_everything(config.seed)
    model = RewardModel.from_backbone(
        config.backbone,
        objective=config.objective,
        pooling=config.pooling,
        dropout=config.dropout,
        relevance=config.relevance_head,
        attn_implementation=_attention(prep),
    )
    model.max_length = config.max_length
    if model.length_beta is not None:
        model.length_beta.data.fill_(prep.length_beta_start)
    compiled = prep.compiled = compile_enabled(config, prep.device, _n_params(model))
    prep.gradient_checkpointing = _wants_checkpointing(model, config, prep.device, compiled)
    if prep.gradient_checkpointing:
        enable_checkpointing(model.backbone)
    model.to(prep.device)
    forward: Callable = distributed.wrap(model, prep.dist, prep.device)
    # Packed batches have one shape (_micro_batch): compiled for it, FlexAttention runs its fast kernels
    # (under symbolic lengths it measured slower than padding; README). Other forwards run eager (_scoring).
    dynamic = not prep.packing
    if compiled and not compile_blocks(model.backbone, dynamic=dynamic):
        forward = torch.compile(forward, dynamic=dynamic)
    optimizer = build_optimizer(model, config)
    return Parts(model, forward, optimizer, build_scheduler(optimizer, config, prep.total_steps))


def _attention(prep: Prepared) -> str | None:
    """The backbone's attention kernel. Packed rows on CUDA: the flash kernel's variable-length form
    (varlen.py) or FlexAttention with a document mask (`packed_attention`); both skip the blocks between
    answers, where SDPA would take a dense (L, L) mask. Else config's."""
    if not (prep.packing and prep.device.type == "cuda"):
        return prep.config.attn_implementation or None
    choice, family = prep.config.packed_attention, prep.model_type
    if choice == "varlen" and not varlen.available():
        raise ValueError("packed_attention 'varlen' needs torch 2.10+ (torch.nn.attention.varlen)")
    if choice == "varlen" and not varlen.supports(family):
        raise ValueError(
            f"packed_attention 'varlen' is checked on the decoder families {sorted(varlen.MODEL_TYPES)}; "
            f"{family!r} is not one of them: use 'flex'"
        )
    if choice == "varlen" or (choice == "auto" and varlen.available() and varlen.supports(family)):
        return varlen.register()  # auto: the faster of the two where it applies (config)
    return "flex_attention"


def compile_blocks(backbone: torch.nn.Module, dynamic: bool = True) -> int:
    """torch.compile each repeated block of a transformers model in place (the classes its `_no_split_modules`
    names: decoder layers, embeddings) and return how many. Regional compilation: identical blocks share
    one compiled graph, so compiling a 24-layer model costs about one layer's compile, where compiling the
    whole forward with dynamic shapes did not finish in 150 s on a 0.35B decoder (README). Dynamic shapes,
    because length bucketing and token budgets change the batch shape from step to step."""
    names = set(getattr(backbone, "_no_split_modules", None) or ())
    blocks = [m for m in backbone.modules() if type(m).__name__ in names]
    for block in blocks:
        block.compile(dynamic=dynamic)
    return len(blocks)


def resume(
    prep: Prepared, parts: Parts, ckpt_dir: Path, state: RunState, enabled: bool
) -> tuple[Parts, RunState, int | None]:
    """Load the newest complete checkpoint that matches this run; fall back to older ones, or start fresh.

    Returns (parts, state, the step resumed from or None). A half-loaded checkpoint never leaks into
    the run: after a failed load the model is rebuilt.
    """
    if not enabled:
        if prep.dist.is_main and ckpt_dir.exists():
            shutil.rmtree(ckpt_dir, ignore_errors=True)
        return parts, state, None
    for path in list_checkpoints(ckpt_dir):
        try:
            if validate_checkpoint(path).get("fingerprint") != state.fingerprint:
                log.warning("checkpoints in %s are from other data or settings: starting fresh", ckpt_dir)
                distributed.barrier(prep.dist)  # every rank has looked before rank 0 deletes
                if prep.dist.is_main:
                    shutil.rmtree(ckpt_dir, ignore_errors=True)
                return parts, state, None
            loaded = load_checkpoint(
                path, parts.model, parts.optimizer, parts.scheduler, map_location=prep.device,
                rank=prep.dist.rank,
            )  # fmt: skip
            restored = RunState.from_dict(loaded)
            log.info("resumed from %s (step %d)", path.name, restored.global_step)
            return parts, restored, restored.global_step
        except CheckpointError as e:
            log.warning("cannot resume from checkpoint: %s; trying an older one", e)
            parts = build(prep)
    return parts, state, None


# ---------------------------------------------------------------------------------------------------------
# train step and validation


class RunningStats:
    """Sums of the per-step training statistics, each micro-batch's weighted by its pairs, kept as
    device tensors: reading them (a host sync) happens only when a log line or a validation row is
    written. The means are over pairs, across ranks: under DDP a rank's shard can be a pair short of
    another's, or a stand-in pair with no loss (fewer pairs than ranks), and a mean of the ranks' means
    counted those as much as full shards (the logged loss then differed from one process's)."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.pairs = 0

    def add(self, stats: dict[str, torch.Tensor], pairs: int) -> None:
        for k, v in stats.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * pairs
        self.pairs += pairs

    def means(self, dist: distributed.Dist) -> dict[str, float]:
        if not self.sums:  # no step since the reset, on every rank alike: no collective to run
            return {}
        totals = distributed.sum_over_ranks({**self.sums, PAIRS_KEY: float(self.pairs)}, dist)
        pairs = max(float(totals.pop(PAIRS_KEY)), 1.0)
        return {k: float(v) / pairs for k, v in totals.items()}

    def reset(self) -> None:
        self.sums, self.pairs = {}, 0

    def totals(self, dist: distributed.Dist) -> tuple[dict[str, float], float]:
        """The sums and the pair count over every rank, as numbers (for a checkpoint: a host sync)."""
        if not self.sums:
            return {}, 0.0
        totals = distributed.sum_over_ranks({**self.sums, PAIRS_KEY: float(self.pairs)}, dist)
        pairs = float(totals.pop(PAIRS_KEY))
        return {k: float(v) for k, v in totals.items()}, pairs

    def restore(self, sums: dict[str, float], pairs: float, device: torch.device) -> None:
        self.sums = {k: torch.tensor(v, device=device) for k, v in sums.items()}
        self.pairs = pairs


PAIRS_KEY = "\0pairs"  # RunningStats' pair count beside the stats it sums (no stat has this name)


def train_step(prep: Prepared, parts: Parts, group: Sequence[Sequence[int]], running: RunningStats) -> int:
    """One optimizer step over `group` (grad_accum micro-batches of pair indices); returns pairs seen.

    Under DDP each rank takes its share of every micro-batch; the loss is scaled so that the averaged
    gradient is the gradient of the global batch mean. Each micro-batch counts by its pairs: with token-
    budget batches (RM_MAX_TOKENS) a micro-batch of 5 long pairs counted as much as one of 170 short
    ones (1 / grad_accum each), so a long pair weighed about 7 times a short one. Nothing here waits for
    the device.
    """
    config = prep.config
    weights = config_loss_weights(config)
    parts.optimizer.zero_grad(set_to_none=True)
    pin = prep.device.type == "cuda"
    attention = parts.model.backbone.config._attn_implementation  # what the backbone runs (build chose it)
    step_pairs = sum(len(idx) for idx in group)
    for idx in group:
        local = distributed.shard(list(idx), prep.dist)
        scale = distributed.loss_scale(len(local), len(idx), prep.dist) * len(idx) / step_pairs
        real = len(local)
        if not local:  # fewer pairs than ranks: take part in the gradient sync with a zero loss
            local, scale = list(idx[:1]), 0.0
        batch = _micro_batch(prep, local)
        flex_mask = _flex_mask(prep, batch, attention)
        with _packed_rows(
            prep, batch, attention
        ):  # forward and backward: checkpointing runs the forward again
            if pin:
                batch = {k: v.pin_memory() for k, v in batch.items()}
            batch = {k: v.to(prep.device, non_blocking=True) for k, v in batch.items()}
            if flex_mask is not None:
                batch["attention_mask"] = flex_mask
            loss, stats = parts.model.compute_loss(
                batch, weights, prep.autocast_dtype, prep.length_mean, forward=parts.forward
            )
            (loss * scale).backward()
        running.add(stats, real)
    if config.max_grad_norm:
        torch.nn.utils.clip_grad_norm_(parts.model.parameters(), config.max_grad_norm)
    parts.optimizer.step()
    parts.scheduler.step()
    return sum(len(idx) for idx in group)


def _micro_batch(prep: Prepared, indices: Sequence[int]) -> dict[str, torch.Tensor]:
    """The training batch of these pairs: padded (collate), or packed (collate_packed) into one row that
    is, when compiled, always the budget's length (rounded up on CUDA): one shape for the whole run."""
    if prep.packing:
        multiple = packed_multiple(prep.device.type)
        width = round_up(token_budget(prep.config), multiple) if prep.compiled else 0
        return collate_packed(prep.enc_train, indices, multiple, width)
    return collate(prep.enc_train, indices, prep.pad_multiple, prep.config.max_length)


@contextlib.contextmanager
def _scoring(prep: Prepared, model: RewardModel):
    """Around forwards outside training (validation, the final fits, the probes): padded batches. A
    packed run's attention goes through SDPA here (the varlen kernel takes packed rows only;
    FlexAttention is slow uncompiled), and its blocks, compiled for its one training shape, which would
    compile again for each of these batches' shapes, run eager."""
    if not prep.packing:
        yield
        return
    backbone = model.backbone
    attention = backbone.config._attn_implementation
    switch = attention != "sdpa" and hasattr(backbone, "set_attn_implementation")
    if switch:
        backbone.set_attn_implementation("sdpa")
    try:
        stance = torch.compiler.set_stance("force_eager") if prep.compiled else contextlib.nullcontext()
        with stance:
            yield
    finally:
        if switch:
            backbone.set_attn_implementation(attention)


def _row_lengths(batch: dict[str, torch.Tensor]) -> np.ndarray:
    """A packed (host) batch's row lengths, from its row ends."""
    return np.diff(batch["ends"].numpy(), prepend=-1)


def _packed_rows(prep: Prepared, batch: dict[str, torch.Tensor], attention: str | None):
    """The row offsets the varlen attention reads (varlen.rows) for a packed (host) batch; a null
    context for any other batch or attention."""
    if not prep.packing or attention != varlen.NAME:
        return contextlib.nullcontext()
    fixed_max = prep.config.max_length if prep.compiled else 0  # one compiled shape: see varlen.rows
    return varlen.rows(_row_lengths(batch), batch["input_ids"].shape[1], prep.device, fixed_max)


def _flex_mask(prep: Prepared, batch: dict[str, torch.Tensor], attention: str | None):
    """A packed (host) batch's FlexAttention BlockMask on the device, built from its row ends: no device
    round trip (transformers' own packed mask waits for the device every forward). None unpacked, or
    where the attention is not FlexAttention (transformers then derives the mask from the positions)."""
    if not prep.packing or attention != "flex_attention":
        return None
    return document_block_mask(_row_lengths(batch), batch["input_ids"].shape[1], prep.device)


def config_loss_weights(config: TrainConfig):
    from .model import LossWeights

    return LossWeights(
        config.corr_quality_weight,
        config.corr_length_weight,
        config.ortho_weight,
        config.corr_mode,
        reward_corr=config.reward_corr_weight,
    )


def validate(prep: Prepared, model: RewardModel) -> dict:
    """The one evaluation call: the validation split, with the deployed-reward metrics."""
    with _scoring(prep, model):
        return evaluate(
            model,
            prep.val_pairs,
            prep.tokenizer,
            max_length=prep.config.max_length,
            batch_size=prep.config.eval_batch_size,
            device=prep.device,
            autocast_dtype=prep.autocast_dtype,
            encoded=prep.enc_val,
        )


# ---------------------------------------------------------------------------------------------------------
# one member's training loop


@dataclass
class MemberOutcome:
    parts: Parts
    state: RunState
    resumed_from: int | None
    last_eval: dict | None
    last_eval_step: int
    stopped: bool
    early_stopped: bool
    run_seconds: float
    run_pairs: int


class _Reporter:
    """Builds the progress dict rewardtrainer's caller sees (and the tqdm bar on a terminal)."""

    def __init__(self, prep: Prepared, progress: Callable[[dict], None] | None, member: int):
        self.prep, self.progress, self.member = prep, progress, member
        self.bar = None
        if sys.stderr.isatty() and prep.dist.is_main:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=prep.total_steps, desc="reward model", unit="step", dynamic_ncols=True)

    def __call__(
        self, event: str, state: RunState, parts: Parts, running: RunningStats, speed, extra=None
    ) -> dict:
        train = running.means(self.prep.dist)
        info = {
            "event": event,
            "step": state.global_step,
            "total_steps": self.prep.total_steps,
            "epoch": state.epoch
            + state.batch_in_epoch / max(self.prep.steps_per_epoch * self.prep.config.grad_accum, 1),
            "train_loss": train.get("loss"),
            "lr": parts.scheduler.get_last_lr()[0],
            "pairs_per_second": speed,
        }
        if self.prep.config.ensemble > 1:
            info["member"] = self.member
        info |= {f"train_{k}": v for k, v in train.items() if k != "loss"}
        info |= extra or {}
        _check_losses(info)
        if self.progress is not None and self.prep.dist.is_main:
            self.progress(info)
        if self.bar is not None and event == "log":
            self.bar.n = state.global_step
            self.bar.set_postfix(loss=f"{info['train_loss']:.4f}")
        return info

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _check_losses(info: dict) -> None:
    """FloatingPointError when a loss in a progress row is NaN or infinite: the training diverged, and
    every later step and the model it would save are worthless. The run failed later on a JSON syntax
    error (PostgreSQL's jsonb refuses NaN) that did not say why."""
    for key, value in info.items():
        if key.endswith("loss") and isinstance(value, float) and not math.isfinite(value):
            raise FloatingPointError(
                f"training diverged: {key} is {value} at step {info.get('step')} "
                f"(learning rate {info.get('lr')}; a lower one, RM_LEARNING_RATE, usually helps)"
            )


def train_member(
    prep: Prepared,
    member: int,
    *,
    progress: Callable[[dict], None] | None,
    should_stop: Callable[[], bool] | None,
    resume_enabled: bool,
) -> MemberOutcome:
    """Train one model (ensemble member `member`, data seed config.seed + member) to total_steps."""
    config = prep.config
    ckpt_dir = prep.out_dir / ("checkpoints" if member == 0 else f"checkpoints-member-{member}")
    parts = build(prep)
    state = RunState(
        data_seed=config.seed + member, fingerprint=fingerprint(prep) + f"-m{member}" * (member > 0)
    )
    parts, state, resumed_from = resume(prep, parts, ckpt_dir, state, resume_enabled)
    report = _Reporter(prep, progress, member)
    running = RunningStats()
    if resumed_from is not None and prep.dist.is_main:  # the totals of every rank, kept by one
        running.restore(state.running_sums, state.running_pairs, prep.device)
    last_eval: dict | None = None
    last_eval_step, last_ckpt_step = -1, resumed_from if resumed_from is not None else -1
    stopped, early_stopped = False, _early_stop_reached(state, config)
    run_seconds, run_pairs = 0.0, 0
    if early_stopped:
        # resumed from the checkpoint of the step where it stopped early (killed in the final fits, or
        # asked to stop right then): it trained on, and shipped other weights than the run it retried
        last_eval, last_eval_step = validate(prep, parts.model), state.global_step

    def checkpoint() -> None:
        nonlocal last_ckpt_step
        state.running_sums, state.running_pairs = running.totals(prep.dist)
        ranks = distributed.gather_objects(rank_rng_state(), prep.dist)  # every rank's dropout stream
        if prep.dist.is_main:
            save_checkpoint(
                ckpt_dir, state.global_step, parts.model, parts.optimizer, parts.scheduler, asdict(state),
                keep=config.keep_checkpoints, rank_rng=ranks,
            )  # fmt: skip
        last_ckpt_step = state.global_step

    parts.model.train()
    start_batch = state.batch_in_epoch
    while state.global_step < prep.total_steps and not (stopped or early_stopped):
        order = _batches(prep.enc_train, config, [state.data_seed, state.epoch], prep.packing)
        for g in range(start_batch, len(order), config.grad_accum):
            group = order[g : g + config.grad_accum]
            t0 = time.perf_counter()
            n_pairs = train_step(prep, parts, group, running)
            dt = time.perf_counter() - t0
            state.global_step += 1
            state.batch_in_epoch = g + len(group)
            run_seconds += dt
            run_pairs += n_pairs
            state.train_seconds += dt
            state.pairs_seen += n_pairs
            if state.batch_in_epoch >= len(order):  # the epoch is done: a checkpoint here resumes at the next
                state.epoch, state.batch_in_epoch = state.epoch + 1, 0
            speed = run_pairs / run_seconds if run_seconds else None
            if config.log_every and state.global_step % config.log_every == 0:
                report("log", state, parts, running, speed)
            at_end = state.global_step >= prep.total_steps
            if config.eval_every and state.global_step % config.eval_every == 0 and not at_end:
                last_eval, last_eval_step = validate(prep, parts.model), state.global_step
                early_stopped = _record_validation(state, last_eval, report, parts, running, speed, config)
                # every rank stops together: validation losses that differ in the last bit between GPUs
                # would let one rank stop while the others wait for it in the next all-reduce for ever
                device = prep.device if prep.device.type == "cuda" else None
                early_stopped = distributed.any_rank(early_stopped, prep.dist, device)
            if config.checkpoint_every and state.global_step % config.checkpoint_every == 0 and not at_end:
                checkpoint()
            asked = should_stop is not None and not at_end and should_stop()
            if distributed.any_rank(asked, prep.dist, prep.device if prep.device.type == "cuda" else None):
                if last_ckpt_step != state.global_step:
                    checkpoint()
                stopped = True
            if stopped or early_stopped or at_end or state.batch_in_epoch == 0:
                break
        start_batch = 0
    if prep.device.type == "cuda":
        # The one wait for the device. Steps were timed as launched, so the work still queued counts too:
        # without it the throughput would be too high by up to a step or two.
        t0 = time.perf_counter()
        torch.cuda.synchronize()
        waited = time.perf_counter() - t0
        run_seconds += waited
        state.train_seconds += waited
    if not stopped and (last_eval is None or last_eval_step != state.global_step):
        last_eval, last_eval_step = validate(prep, parts.model), state.global_step
        _record_validation(
            state, last_eval, report, parts, running, run_pairs / run_seconds if run_seconds else None, config
        )
    report.close()
    return MemberOutcome(
        parts, state, resumed_from, last_eval, last_eval_step, stopped, early_stopped, run_seconds, run_pairs
    )


def _record_validation(state: RunState, metrics: dict, report, parts, running, speed, config) -> bool:
    """Append a history row, update early stopping; True when the run should stop early."""
    val = scalar_metrics(metrics)
    row = report("eval", state, parts, running, speed, {f"val_{k}": v for k, v in val.items()})
    state.history.append({k: v for k, v in row.items() if k != "event"})
    running.reset()
    log.info("step %d: val loss %.4f accuracy %.3f", state.global_step, val["loss"], val["accuracy"])
    best = state.best_val_loss
    if best is None or val["loss"] < best - 1e-4:
        state.best_val_loss, state.bad_evals = val["loss"], 0
        return False
    state.bad_evals += 1
    if _early_stop_reached(state, config):
        log.info("early stopping: val loss has not improved in %d evaluations", state.bad_evals)
        return True
    return False


def _early_stop_reached(state: RunState, config: TrainConfig) -> bool:
    return bool(config.early_stopping_patience) and state.bad_evals >= config.early_stopping_patience


# ---------------------------------------------------------------------------------------------------------
# finalize


def _member_file(prep: Prepared, member: int) -> Path:
    return prep.out_dir / "members" / f"member-{member}.safetensors"


def _average_into(model: RewardModel, files: Sequence[Path]) -> None:
    """WARM: the element-wise mean of the members' weights (same backbone init, same head init)."""
    from safetensors.torch import load_file

    total: dict[str, torch.Tensor] = {}
    for f in files:
        for k, v in load_file(str(f)).items():
            total[k] = total.get(k, 0) + v.double()
    state = {k: (v / len(files)).float() for k, v in total.items()}
    model.load_state_dict(state)


def fit_sample_indices(n: int, k: int, seed: int) -> list[int]:
    """Which of n pairs the fits after training are measured on: all of them, or a seeded sample of k."""
    if n <= k:
        return list(range(n))
    return sorted(np.random.default_rng([seed, 1]).choice(n, k, replace=False).tolist())


def _fit_sample(prep: Prepared) -> tuple[EncodedPairs, list[PreferencePair]]:
    """A seeded sample of the pairs the length and relevance fits are measured on, encoded and as
    pairs: the held-out calibration pairs, or, when none are held out, the human training pairs (never
    the mismatch or padding pairs)."""
    enc = prep.enc_calib or prep.enc_train
    pairs = prep.calib_pairs if prep.enc_calib else prep.train_pairs
    idx = fit_sample_indices(len(pairs), prep.config.calibration_max_pairs, prep.config.seed)

    def pick(rows):
        return [rows[i] for i in idx] if rows is not None else None

    sample = EncodedPairs(
        chosen_ids=pick(enc.chosen_ids),
        rejected_ids=pick(enc.rejected_ids),
        chosen_types=pick(enc.chosen_types),
        rejected_types=pick(enc.rejected_types),
        margin=enc.margin[idx],
        weight=enc.weight[idx],
        chosen_chars=enc.chosen_chars[idx],
        rejected_chars=enc.rejected_chars[idx],
        pad_id=enc.pad_id,
    )
    return sample, pick(pairs)


def finalize(prep: Prepared, model: RewardModel, metrics: dict) -> tuple[dict, dict]:
    """After training: ODIN head decorrelation, the length calibration, final validation, probe tests.

    Returns (final metrics, extra figures). The fits use held-out (or else training) human answers, never
    validation answers.
    """
    config = prep.config
    extra: dict[str, Any] = {}
    needs_scores = config.fits_after_training
    if needs_scores:
        sample, sample_pairs = _fit_sample(prep)
        q, ln = score_pairs(
            model, sample, batch_size=config.eval_batch_size, max_length=config.max_length,
            device=prep.device, autocast_dtype=prep.autocast_dtype,
        )  # fmt: skip
        chars = np.concatenate([sample.chosen_chars, sample.rejected_chars])
        q_all, l_all = q.ravel(), ln.ravel()  # (2N,) chosen then rejected
        if config.odin and config.decorrelate:
            before = scalar_metrics(metrics)
            c = model.decorrelate_heads(q_all, l_all, chars)
            q_all = q_all - c * l_all
            extra["decorrelation_factor"] = c
            extra |= {
                f"{k}_before_decorrelation": before.get(k)
                for k in ("accuracy", "accuracy_shorter_won", "pearson_length")
            }
        if config.length_balance and model.length_beta is not None:
            # trained where length predicted nothing, beta stayed near 0: the full model's length term
            # is the raters' pull on the natural (unweighted) pairs, given this reward; under the start
            # fit's prior, or pairs that length alone separates sent it to the search bound (10)
            weights = np.array([p.weight for p in sample_pairs])
            beta = fit_length_beta(q_all, chars, weights, prior_sd=LENGTH_BETA_START_PRIOR_SD)
            extra["length_beta_trained"] = float(model.length_beta.detach())
            model.length_beta.data.fill_(beta)
        if config.relevance_gate != "none":  # first: the calibration then flattens the gated reward
            device = str(next(model.parameters()).device)  # as RewardModel.relevance_term uses it
            model.relevance_gate = _fit_gate(prep, sample_pairs, float(np.std(q_all)), device)
            if model.relevance_gate:
                for key in ("accuracy", "touched"):  # cosine: fit accuracy; PMI: share below threshold
                    if key in model.relevance_gate:
                        extra[f"relevance_gate_{key}"] = model.relevance_gate[key]
                q_all = q_all + model.pair_relevance_terms(sample_pairs).ravel()  # chosen, then rejected
        if config.calibrate:
            model.calibration = LengthCalibration.fit(q_all, chars).to_dict()
    if needs_scores:
        metrics = validate(prep, model)
    if config.eval_probe_answers:
        metrics |= _probes(prep, model)
        if model.calibration or model.relevance_gate:  # the same tests before both, for comparison
            with model.raw():
                raw = _probes(prep, model)
            metrics |= {f"{k}_raw": v for k, v in raw.items() if k.endswith("accuracy")}
    return metrics, extra


def _fit_gate(prep: Prepared, pairs: list[PreferencePair], reward_std: float, device: str) -> dict | None:
    """The relevance gate (config.relevance_gate) fitted on the fit sample, in the units of the reward
    (`reward_std`: its standard deviation there; a PMI gate's LM runs on `device`, the reward model's);
    None when its model is missing or the data cannot fit it (a single prompt: no answer to another
    prompt to learn from)."""
    from . import relevance

    config = prep.config
    try:
        if config.relevance_gate == "pmi":
            likelihood = relevance.shared_likelihood(
                config.relevance_lm, relevance.PMI_PROMPT_TOKENS, relevance.PMI_ANSWER_TOKENS, device
            )
            gate = relevance.fit_pmi_gate(
                pairs, likelihood, weight=config.relevance_weight * reward_std,
                quantile=config.relevance_quantile, model=config.relevance_lm,
            )  # fmt: skip
            log.info("PMI gate: threshold %.3f, weight %.3f, %.1f%% of fit answers below", gate.threshold,
                     gate.weight, 100 * gate.touched)  # fmt: skip
        else:
            embed = relevance.shared_embedder()
            gate = relevance.fit_relevance_gate(pairs, embed, weight=reward_std, seed=config.seed)
            log.info("relevance gate: a=%.2f b=%.2f weight=%.3f, fit accuracy %.3f", gate.a, gate.b,
                     gate.weight, gate.accuracy)  # fmt: skip
    except (OSError, ValueError) as e:
        log.warning("relevance gate (%s) not fitted: %s", config.relevance_gate, e)
        return None
    return gate.to_dict()


def _probes(prep: Prepared, model: RewardModel) -> dict:
    return probe_tests(
        model,
        prep.tokenizer,
        prep.val_pairs,
        neighbours=prep.val_neighbours,
        max_answers=prep.config.eval_probe_answers,
        seed=prep.config.seed,
        batch_size=prep.config.eval_batch_size,
    )


# ---------------------------------------------------------------------------------------------------------
# the run


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float) + "\n")
    os.replace(tmp, path)


def fit_reward_model(
    pairs: Sequence[PreferencePair | dict],
    config: TrainConfig | None = None,
    out_dir: str | Path = "runs/rm",
    progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = True,
    val_pairs: Sequence[PreferencePair | dict] | None = None,
    final_dir: str | Path | None = None,
) -> TrainResult:
    """Prepare, train (each ensemble member), finalize, and write `model/` and `metrics.json` into
    `final_dir` (default `out_dir`; checkpoints always go to `out_dir`).

    `progress(dict)` is called every `log_every` steps and after each validation with step, total_steps,
    epoch, train_loss, lr, pairs_per_second (and val_* metrics when validated). `should_stop()` is polled
    after every optimizer step: when it returns True a checkpoint is written and the run returns with
    `stopped=True` and no model; calling again with the same arguments resumes it.
    With `val_pairs`, all of `pairs` train and `val_pairs` validate (no split; keep prompts apart yourself).
    Under torchrun every rank trains its share; only rank 0 writes files and gets a model_dir.
    A caller whose attempts share `out_dir` (to resume from its checkpoints) gives each attempt its own
    `final_dir`: an attempt presumed dead that finishes anyway must not overwrite, or delete half-way,
    the model files of the attempt that recorded its result.
    """
    config = config or TrainConfig()
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prep = prepare(pairs, config, out_dir, val_pairs)
    log.info(
        "reward model: %s, objective=%s, augment=%s, padding pairs %.2f (+%d pairs), calibrate=%s; "
        "%d train / %d val / %d calibration pairs; %d steps (%d per epoch) x %d member(s); world size %d",
        config.backbone, config.objective, config.augment, config.augment_padding, prep.n_augmented,
        config.calibrate,
        len(prep.train_pairs), len(prep.val_pairs), len(prep.calib_pairs), prep.total_steps,
        prep.steps_per_epoch, config.ensemble,
        prep.dist.world_size,
    )  # fmt: skip
    outcomes, member_files = _train_members(prep, progress, should_stop, resume)
    last = outcomes[-1]
    common = _result_fields(prep, outcomes)
    if last.stopped:
        log.info("stopped at step %d; checkpoint written, call again to resume", last.state.global_step)
        return TrainResult(
            metrics={}, model_dir=None, seconds=time.perf_counter() - t_start, stopped=True, **common
        )

    model = last.parts.model
    metrics = last.last_eval or validate(prep, model)
    if not prep.dist.is_main:  # other ranks are done: rank 0 finalizes and writes
        distributed.shutdown(prep.dist)
        return TrainResult(
            metrics=scalar_metrics(metrics), model_dir=None, seconds=time.perf_counter() - t_start, **common
        )
    metrics = _final_metrics(prep, model, metrics, member_files, last.state.global_step)
    final_dir = Path(final_dir) if final_dir is not None else out_dir
    final_dir.mkdir(parents=True, exist_ok=True)
    model_dir = save_final_model(model, prep.tokenizer, final_dir / "model")
    result = TrainResult(
        metrics=metrics,
        model_dir=str(model_dir),
        seconds=time.perf_counter() - t_start,
        early_stopped=any(o.early_stopped for o in outcomes),
        **common,
    )
    _write_json(
        final_dir / "metrics.json",
        {
            "metrics": metrics,
            "history": result.history,
            "config": asdict(config),
            **{k: v for k, v in asdict(result).items() if k not in ("metrics", "history")},
        },
    )
    if progress is not None:
        progress({"event": "done", "step": last.state.global_step, "total_steps": prep.total_steps}
                 | {f"val_{k}": v for k, v in scalar_metrics(metrics).items()})  # fmt: skip
    log.info(
        "reward model written to %s (%.1fs, %.2f pairs/s)", model_dir, result.seconds, result.pairs_per_second
    )
    distributed.shutdown(prep.dist)
    return result


def _train_members(
    prep: Prepared,
    progress: Callable[[dict], None] | None,
    should_stop: Callable[[], bool] | None,
    resume: bool,
) -> tuple[list[MemberOutcome], list[Path]]:
    """Train each ensemble member in turn (stop at the first one that was asked to stop); with more than
    one, rank 0 saves each member's weights for the average."""
    outcomes: list[MemberOutcome] = []
    member_files: list[Path] = []
    for member in range(prep.config.ensemble):
        outcome = train_member(
            prep, member, progress=progress, should_stop=should_stop, resume_enabled=resume
        )
        outcomes.append(outcome)
        if outcome.stopped:
            break
        if prep.config.ensemble > 1 and prep.dist.is_main:
            from safetensors.torch import save_model

            path = _member_file(prep, member)
            path.parent.mkdir(parents=True, exist_ok=True)
            save_model(outcome.parts.model, str(path))
            member_files.append(path)
    return outcomes, member_files


def _result_fields(prep: Prepared, outcomes: Sequence[MemberOutcome]) -> dict:
    """The TrainResult fields that every ending shares (stopped, other rank, finished)."""
    first, last = outcomes[0], outcomes[-1]
    run_seconds = sum(o.run_seconds for o in outcomes)
    several = prep.config.ensemble > 1
    return dict(
        history=[
            row | ({"member": i} if several else {})
            for i, o in enumerate(outcomes)
            for row in o.state.history
        ],
        pairs_train=len(prep.train_pairs),
        pairs_val=len(prep.val_pairs),
        pairs_calibration=len(prep.calib_pairs),
        pairs_per_second=sum(o.run_pairs for o in outcomes) / run_seconds if run_seconds else 0.0,
        device=str(prep.device),
        global_step=last.state.global_step,
        total_steps=prep.total_steps,
        resumed_from_step=first.resumed_from,
        train_seconds=sum(o.state.train_seconds for o in outcomes),
        members=prep.config.ensemble,
    )


def _final_metrics(
    prep: Prepared, model: RewardModel, metrics: dict, member_files: Sequence[Path], global_step: int
) -> dict:
    """Average the ensemble's members into `model` (and validate it again), finalize (calibration, the
    probes), and add the run's facts to the metrics."""
    if member_files:
        _average_into(model, member_files)
        metrics = validate(prep, model)
    with _scoring(prep, model):
        metrics, extra = finalize(prep, model, metrics)
    return dict(
        metrics,
        global_step=global_step,
        truncated_sequences=prep.enc_train.n_truncated + prep.enc_val.n_truncated,
        augmented_pairs=prep.n_augmented,
        gradient_checkpointing=prep.gradient_checkpointing,
        **extra,
    )


# ---------------------------------------------------------------------------------------------------------
# command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], allow_abbrev=False
    )  # "--max-len 16" set max_length without a word
    p.add_argument("--data", nargs="+", required=True, help="TRL-format preference JSONL file(s)")
    p.add_argument(
        "--val-data", nargs="*", default=None, help="validation JSONL (default: split --data by prompt)"
    )
    p.add_argument("--out", required=True, help="run folder: model/, metrics.json, checkpoints/")
    p.add_argument("--final-dir", default=None, help="model/ and metrics.json go here instead of --out")
    p.add_argument(
        "--config-json", default=None, help="a JSON file of TrainConfig fields (options below override it)"
    )
    p.add_argument("--no-resume", action="store_true", help="ignore checkpoints in --out and start fresh")
    p.add_argument("--progress-file", default=None, help="append each progress dict as a JSON line (rank 0)")
    p.add_argument("--stop-file", default=None, help="stop (with a checkpoint) once this file exists")
    add_config_args(p)
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    base = _config_file(Path(args.config_json)) if args.config_json else {}
    return config_from_namespace(args, base=base)


def _config_file(path: Path) -> dict:
    """--config-json's fields, checked: ValueError naming the file for invalid JSON, anything but an
    object, an unknown field, or a true/false field given another value ("false" as a string is true to
    Python: calibration stayed on)."""
    try:
        base = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e.msg}, line {e.lineno})") from None
    if not isinstance(base, dict):
        raise ValueError(f"{path}: expected a JSON object of TrainConfig fields, got {type(base).__name__}")
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(base) - set(fields))
    if unknown:
        raise ValueError(f"{path}: unknown TrainConfig field(s): {', '.join(unknown)}")
    for name, value in base.items():
        if fields[name].type in ("bool", bool) and not isinstance(value, bool):
            raise ValueError(f"{path}: {name} must be true or false, got {value!r}")
    return base


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    progress = None
    if args.progress_file:
        progress_path = Path(args.progress_file)

        def progress(info: dict) -> None:
            with progress_path.open("a") as f:
                f.write(json.dumps(info, default=float) + "\n")

    should_stop = (lambda: Path(args.stop_file).exists()) if args.stop_file else None
    try:
        config = config_from_args(args)
        pairs = [p for path in args.data for p in load_jsonl(path)]
        if args.val_data == []:  # "--val-data" alone fell back to splitting --data without a word
            raise DataError("--val-data needs at least one file (leave it out to split --data by prompt)")
        val = [p for path in args.val_data for p in load_jsonl(path)] if args.val_data else None
        result = fit_reward_model(
            pairs,
            config,
            args.out,
            progress=progress,
            should_stop=should_stop,
            resume=not args.no_resume,
            val_pairs=val,
            final_dir=args.final_dir,
        )
    except (DataError, ValueError, OSError) as e:  # a missing file or backbone, --out an existing file
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FloatingPointError as e:  # diverged (its message says what to change)
        print(f"error: {e}", file=sys.stderr)
        return 1
    if distributed.from_env().is_main:
        summary = scalar_metrics(result.metrics) | {
            "model_dir": result.model_dir,
            "stopped": result.stopped,
            "pairs_train": result.pairs_train,
            "pairs_val": result.pairs_val,
            "pairs_calibration": result.pairs_calibration,
            "seconds": round(result.seconds, 1),
            "pairs_per_second": round(result.pairs_per_second, 2),
            "device": result.device,
        }
        print(json.dumps(summary, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
