"""Reward-model training throughput and MFU: our trainer vs a bare bf16 loop on the same decoder.

    PYTHONPATH=. .venv/bin/python bench/rm_gpu.py                       # CPU: the tiny size only
    PYTHONPATH=. .venv/bin/python bench/rm_gpu.py --sizes 135m 350m 1.5b --steps 30   # on a GPU
    PYTHONPATH=. .venv/bin/python bench/rm_gpu.py --sizes 350m --max-tokens 65536     # token budget

Each size is a Llama-style decoder built from a config with random weights (throughput needs none):
135m ~ SmolLM2-135M's shape, 350m ~ SmolLM2-360M's, 1.5b ~ a 1.5B Llama; `tiny` for CPUs. The
tokenizer is MiniLM's (its vocabulary sets the embedding size). Side by side, in one run:

- ours: `fit_reward_model` with its defaults (objective 'length', bf16 autocast, SDPA, fused AdamW,
  regional torch.compile and batch widths in multiples of 16 on a GPU, gradient checkpointing when the
  memory estimate says so), on synthetic pairs; tokens/s counts real (unpadded) tokens of chosen and
  rejected rows over the training seconds; `--packing` adds ours_packed_<attention> for each of
  `--packed-attention` (TrainConfig.packing: every row of a micro-batch end to end; on a GPU the flash
  kernel's variable-length form, 'varlen', or FlexAttention with a document mask, 'flex'; same token
  budget);
- bare: the same model and head in a hand-written loop: fixed (2B, T) batches of random ids with no
  padding, bf16 autocast, fused AdamW, the same compilation, no host sync until the end.

`--fit-steps N` also runs `fit_reward_model` end to end (validation every N/2 steps, the final fits,
the written model), padded and packed with the same budget: the whole run's wall time, training
pairs/s and whether it finished, which the step timings above leave out (a packed run validates eager,
through SDPA).

MFU = 6 x non-embedding parameters x tokens/s / peak bf16 FLOP/s (H100/H200 SXM: 989e12 dense; the
embedding is a lookup and a reward model has no LM head). Peak memory is torch.cuda.max_memory_allocated.
On CPU MFU is not reported (no meaningful peak). Writes bench/out/rm_gpu.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchargs import positive_int  # noqa: E402  (bench/ is on sys.path when run)

OUT = ROOT / "bench" / "out"

SIZES = {
    # name: (hidden, intermediate, layers, heads, kv heads)
    "tiny": (64, 128, 2, 4, 2),
    "135m": (576, 1536, 30, 9, 3),
    "350m": (960, 2560, 32, 15, 5),
    "1.5b": (2048, 5632, 28, 16, 4),
}
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "H800": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}
VARIANTS = ("ours", "ours_budget", "ours_packed_auto", "ours_packed_varlen", "ours_packed_flex", "bare")
WORDS = "the a of to and in is it that for on with as was this by are be from at or an not have".split()


def build_backbone(size: str, vocab_size: int, pad_id: int, out: Path):
    import torch
    from transformers import LlamaConfig, LlamaModel

    hidden, inter, layers, heads, kv = SIZES[size]
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=4096,
        pad_token_id=pad_id,
        bos_token_id=pad_id,
        eos_token_id=pad_id,
    )
    torch.manual_seed(0)
    model = LlamaModel(config)
    model.save_pretrained(out)
    n_embed = model.embed_tokens.weight.numel()
    n_total = sum(p.numel() for p in model.parameters())
    return n_total - n_embed, n_total


def synthetic_pairs(n: int, max_words: int, seed: int = 0):
    from rewardtrainer.data import PreferencePair

    rng = random.Random(seed)

    def text(k):
        return " ".join(rng.choices(WORDS, k=k))

    return [
        PreferencePair(
            prompt=text(rng.randint(max_words // 8, max_words // 4)),
            chosen=text(rng.randint(max_words // 4, max_words)),
            rejected=text(rng.randint(max_words // 4, max_words)),
            prompt_id=f"q{i}",
        )
        for i in range(n)
    ]


def peak_flops(device) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16.items() if k in name), None)


def run_ours(
    backbone: str, pairs, val, args, device: str, max_tokens: int, packing: str, warmup: int = 3
) -> dict:
    """Our trainer's own steps with its defaults (prepare, build, train_step: length bucketing or token
    budget, collate, pinned async copies, the length-covariate loss, clipping, fused AdamW, schedule;
    gradient checkpointing when its memory estimate says so), timed like the bare loop: warm-up steps (one
    batch of each batch width, then `warmup` more), then args.steps steps between two device syncs. Tokens
    are the real (unpadded) tokens of both rows: padding to a width multiple counts as waste. `packing`:
    '' (padded batches) or the packed attention ('auto', 'varlen', 'flex')."""
    import torch

    from rewardtrainer.config import TrainConfig
    from rewardtrainer.train_rm import RunningStats, _batches, _micro_batch, build, prepare, train_step

    config = TrainConfig(
        backbone=backbone,
        max_length=args.max_length,
        batch_size=args.batch_size,
        max_tokens=max_tokens,
        max_steps=warmup + args.steps,
        augment="none",
        eval_probe_answers=0,
        device=device,
        compile=args.compile,
        pad_to_multiple=args.pad_to_multiple,
        packing=bool(packing),
        packed_attention=packing or "auto",
    )
    gpu = torch.cuda.is_available() and device != "cpu"
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp:
        prep = prepare(pairs, config, Path(tmp), val_pairs=val)
        parts = build(prep)
        parts.model.train()
        enc = prep.enc_train
        order = _batches(enc, config, [config.seed, 0], prep.packing)

        def real(b):
            return sum(len(enc.chosen_ids[i]) + len(enc.rejected_ids[i]) for i in b)

        def width(b):  # packed: the one row's length; else the width both rows of every pair pad to
            return _micro_batch(prep, b)["input_ids"].shape[1]

        def computed(b):  # token positions the forward runs over
            return width(b) if prep.packing else 2 * len(b) * width(b)

        # Warm-up: `warmup` steps, and before them one batch of each batch width (up to 16), as a long run
        # has met every shape once: new shapes cost once (cuDNN attention plans, allocator blocks, kernels).
        widths: dict[int, list[int]] = {}
        for b in order:
            widths.setdefault(width(b), b)
        warm = list(widths.values())[:16] + order[:warmup]
        groups = [[b] for b in warm] + [[order[i % len(order)]] for i in range(args.steps)]  # a batch a step
        warmup = len(warm)
        running = RunningStats()

        def sync():
            if gpu:
                torch.cuda.synchronize()

        t_warm = time.perf_counter()
        for group in groups[:warmup]:
            train_step(prep, parts, group, running)
        sync()
        t0 = time.perf_counter()
        n_pairs = sum(train_step(prep, parts, group, running) for group in groups[warmup:])
        sync()
        dt = time.perf_counter() - t0
        tokens = sum(real(b) for g in groups[warmup:] for b in g)
        padded = sum(computed(b) for g in groups[warmup:] for b in g)
        loss = running.means(prep.dist).get("loss")
    out = {
        "pairs_per_second": n_pairs / dt,
        "tokens_per_second": tokens / dt,
        "tokens_per_pair": tokens / n_pairs,
        "padding_share": 1 - tokens / padded if padded else 0.0,
        "seconds": dt,
        "warmup_seconds": t0 - t_warm,  # compilation and first meetings of each shape
        "steps": args.steps,
        "attention": parts.model.backbone.config._attn_implementation,
        "mean_loss": loss,
        "gradient_checkpointing": prep.gradient_checkpointing,
        "pad_to_multiple": prep.pad_multiple,
        "packing": prep.packing,
        "distinct_widths": len(widths),
    }
    if gpu:
        out["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return out


def run_fit(backbone: str, pairs, val, args, device: str, max_tokens: int, packing: str) -> dict:
    """A whole `fit_reward_model` run of args.fit_steps steps (validation twice, the final fits and the
    written model) with the trainer's defaults; `packing` '' (padded) or the packed attention."""
    from rewardtrainer.config import TrainConfig
    from rewardtrainer.train_rm import fit_reward_model

    config = TrainConfig(
        backbone=backbone,
        max_length=args.max_length,
        batch_size=args.batch_size,
        max_tokens=max_tokens,
        max_steps=args.fit_steps,
        eval_every=max(1, args.fit_steps // 2),
        augment="none",
        device=device,
        compile=args.compile,
        packing=bool(packing),
        packed_attention=packing or "auto",
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = fit_reward_model(pairs, config, Path(tmp), val_pairs=val)
        seconds = time.perf_counter() - t0
        written = result.model_dir is not None and Path(result.model_dir).is_dir()
    return {
        "seconds": seconds,
        "train_seconds": result.train_seconds,
        "pairs_per_second": result.pairs_per_second,
        "steps": result.global_step,
        "model_written": written,
        "val_accuracy": result.metrics.get("accuracy"),
    }


def run_bare(backbone: str, args, device_name: str, width: int, warmup: int = 3) -> dict:
    """Hand-written loop: same model and reward head, fixed (2B, T) random batches, bf16 autocast (and
    the same regional torch.compile as ours when ours compiles)."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModel

    from rewardtrainer.devices import pick_device

    device, dtype = pick_device(device_name)
    model = AutoModel.from_pretrained(backbone, dtype=torch.float32, attn_implementation="sdpa").to(device)
    from rewardtrainer.config import TrainConfig
    from rewardtrainer.train_rm import compile_blocks, compile_enabled

    n_params = sum(p.numel() for p in model.parameters())
    if compile_enabled(TrainConfig(compile=args.compile), device, n_params):  # as ours, so the two compare
        compile_blocks(model)
    head = torch.nn.Linear(model.config.hidden_size, 1).to(device)
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-5, fused=device.type == "cuda" or None)
    B, T = args.batch_size, width
    x = torch.randint(0, model.config.vocab_size, (2 * B, T), device=device)  # (2B, T)
    mask = torch.ones_like(x)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            h = model(input_ids=x, attention_mask=mask, use_cache=False).last_hidden_state  # (2B, T, H)
        r = head(h[:, -1].float()).squeeze(-1)  # (2B,)
        loss = -F.logsigmoid(r[:B] - r[B:]).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    out = {
        "tokens_per_second": 2 * B * T * args.steps / dt,
        "pairs_per_second": B * args.steps / dt,
        "width": T,
    }
    if device.type == "cuda":
        out["peak_memory_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return out


def _fits(backbone: str, pairs, val, args, gpu: bool) -> dict:
    """run_fit padded and, with --packing, once per packed attention; a failure is reported, not raised."""
    import torch

    out = {}
    for packing in [""] + (args.packed_attention if args.packing else []):
        name = f"packed_{packing}" if packing else "padded"
        budget = args.max_tokens if packing else 0
        try:
            out[name] = run_fit(backbone, pairs, val, args, args.device, budget, packing)
        except Exception as e:  # noqa: BLE001 - one run's failure must not lose the others
            logging.exception("fit %s failed", name)
            out[name] = {"error": f"{type(e).__name__}: {e}"[:300]}
        if gpu:
            torch.cuda.empty_cache()
    return out


def _print_fits(results: dict) -> None:
    for size, row in results.items():
        for name, r in row.get("fit", {}).items():
            if "error" in r:
                print(f"{size:6s} fit {name:14s} {r['error'][:80]}")
                continue
            acc = r["val_accuracy"]
            print(
                f"{size:6s} fit {name:14s} {r['seconds']:7.1f} s in all, "
                f"{r['train_seconds']:7.1f} s training, {r['pairs_per_second']:8.1f} pairs/s, "
                f"{r['steps']} steps, model written: {r['model_written']}, "
                f"val accuracy {acc if acc is None else round(100 * acc, 1)}"
            )


def main(argv=None) -> int:
    import torch
    from transformers import AutoTokenizer

    from rewardtrainer.config import default_backbone
    from rewardtrainer.devices import pick_device

    p = argparse.ArgumentParser(description="reward model throughput and MFU: ours vs a bare bf16 loop")
    p.add_argument(
        "--sizes", nargs="+", choices=list(SIZES), default=None, help="default: tiny on CPU, all on GPU"
    )
    p.add_argument(
        "--steps", type=positive_int, default=None, help="timed steps (default 30 on GPU, 6 on CPU)"
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=16, help="pairs per step (the trainer's default)"
    )
    p.add_argument("--max-length", type=positive_int, default=None, help="default 512 on GPU, 64 on CPU")
    p.add_argument("--max-tokens", type=int, default=0, help="also run ours with this token budget")
    p.add_argument(
        "--compile", choices=("auto", "on", "off"), default="auto", help="trainer compile (auto: on GPU)"
    )
    p.add_argument(
        "--pad-to-multiple", type=int, default=0, help="trainer pad_to_multiple (0: 16 on GPU, 1 on CPU)"
    )
    p.add_argument("--packing", action="store_true", help="add ours with packing on (the same token budget)")
    p.add_argument(
        "--fit-steps",
        type=int,
        default=0,
        help="also run fit_reward_model end to end for this many steps, padded and (with --packing) packed",
    )
    p.add_argument(
        "--packed-attention",
        nargs="+",
        choices=("auto", "varlen", "flex"),
        default=["auto"],
        help="with --packing: one packed run per attention kernel",
    )
    p.add_argument(
        "--gpu-memory-gb",
        type=float,
        default=0,
        help="cap this process's GPU memory (torch.cuda.set_per_process_memory_fraction), e.g. 80 to check "
        "on a larger card that a size trains on an 80 GB one; the trainer's memory estimate sees the cap",
    )
    p.add_argument("--device", default="")
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--out", type=Path, default=OUT / "rm_gpu.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    device, _ = pick_device(args.device or None)
    gpu = device.type == "cuda"
    if not gpu:
        torch.set_num_threads(args.threads)
    args.sizes = args.sizes or (["135m", "350m", "1.5b"] if gpu else ["tiny"])
    args.steps = args.steps or (30 if gpu else 6)
    args.max_length = args.max_length or (512 if gpu else 64)
    peak = peak_flops(device)
    if gpu and args.gpu_memory_gb:
        total = torch.cuda.get_device_properties(device).total_memory
        fraction = min(1.0, args.gpu_memory_gb * 1e9 / total)
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.set_per_process_memory_fraction(fraction, index)
    tokenizer = AutoTokenizer.from_pretrained(default_backbone())
    per_step = max(args.batch_size, args.max_tokens // (2 * args.max_length) + 1)
    n_pairs = per_step * (args.steps + 4)
    pairs = synthetic_pairs(n_pairs, max_words=int(args.max_length * 0.9))
    val = synthetic_pairs(args.batch_size, max_words=int(args.max_length * 0.9), seed=1)
    device_name = torch.cuda.get_device_name(device) if gpu else "cpu"
    print(
        f"device: {device_name}; peak bf16 {peak / 1e12 if peak else float('nan'):.0f} TFLOP/s; "
        f"{args.steps} steps x {args.batch_size} pairs, max_length {args.max_length}"
        + (f"; memory capped at {args.gpu_memory_gb:.0f} GB" if gpu and args.gpu_memory_gb else "")
    )
    results = {}
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            n_nonemb, n_total = build_backbone(
                size, tokenizer.vocab_size, tokenizer.pad_token_id or 0, Path(tmp)
            )
            tokenizer.save_pretrained(tmp)
            row: dict = {"params_non_embedding": n_nonemb, "params_total": n_total}
            variants = [("ours", 0, "")]
            variants += [("ours_budget", args.max_tokens, "")] if args.max_tokens else []
            if args.packing:
                variants += [(f"ours_packed_{a}", args.max_tokens, a) for a in args.packed_attention]
            for name, budget, packing in variants:
                try:
                    row[name] = run_ours(tmp, pairs, val, args, args.device, budget, packing)
                except torch.OutOfMemoryError as e:  # the 1.5B target: report it instead of dying
                    row[name] = {"error": f"out of memory: {e}"[:300]}
                except Exception as e:  # noqa: BLE001 - one variant's failure must not lose the others
                    logging.exception("%s failed", name)
                    row[name] = {"error": f"{type(e).__name__}: {e}"[:300]}
                if gpu:
                    torch.cuda.empty_cache()
            if args.fit_steps:
                row["fit"] = _fits(tmp, pairs, val, args, gpu)
            width = int(round(row["ours"].get("tokens_per_pair", 2 * args.max_length) / 2))
            try:
                row["bare"] = run_bare(tmp, args, args.device, width)
            except torch.OutOfMemoryError as e:
                row["bare"] = {"error": f"out of memory: {e}"[:300]}
            if gpu:
                torch.cuda.empty_cache()
        for name in VARIANTS:
            r = row.get(name)
            if r and "tokens_per_second" in r:
                r["mfu"] = 6 * n_nonemb * r["tokens_per_second"] / peak if peak else None
        results[size] = row

    header = ("size", "params", "variant", "tokens/s", "pairs/s", "MFU", "mem GB", "ckpt", "pad")
    print("\n{:6s} {:>8s} {:18s} {:>11s} {:>9s} {:>7s} {:>7s} {:>5s} {:>5s}".format(*header))
    for size, row in results.items():
        for name in VARIANTS:
            r = row.get(name)
            if r is None:
                continue
            if "error" in r:
                print(f"{size:6s} {row['params_total'] / 1e6:7.0f}M {name:18s} {r['error'][:60]}")
                continue
            mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") is not None else "n/a"
            mem = f"{r['peak_memory_gb']:.1f}" if "peak_memory_gb" in r else "-"
            print(
                f"{size:6s} {row['params_total'] / 1e6:7.0f}M {name:18s} {r['tokens_per_second']:11.0f} "
                f"{r['pairs_per_second']:9.2f} {mfu:>7s} {mem:>7s} "
                f"{'on' if r.get('gradient_checkpointing') else '-':>5s} "
                f"{100 * r.get('padding_share', 0.0):4.0f}%"
            )
        if "tokens_per_second" in row.get("ours", {}) and "tokens_per_second" in row.get("bare", {}):
            ratio = row["ours"]["tokens_per_second"] / row["bare"]["tokens_per_second"]
            print(f"       ours / bare tokens/s: {ratio:.2f}")
    _print_fits(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "device": device_name,
        "peak_bf16_flops": peak,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "gpu_memory_gb_cap": args.gpu_memory_gb or None,
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
