"""Reward-model training throughput: rewardtrainer vs TRL's RewardTrainer, same backbone, data and machine.

Run from the project root:

    .venv/bin/python bench/rm_throughput.py                    # 320 training pairs, len 256, batch 16, fp32
    .venv/bin/python bench/rm_throughput.py --pairs 160 --trl-variants default,no-gc

Both trainers fine-tune MiniLM-L6 (plain Bradley-Terry, one head) on the same training pairs drawn from
../shared/data/preferences (a prompt-grouped split; skipped with a message when the folder is absent),
one epoch, batch 16, max length 256, fp32, one after the other, each in its own subprocess so its peak
memory (VmHWM) is its own. Reported per trainer: pairs trained and dropped, steps, training seconds
(model loading and evaluation excluded), pairs/s, peak RSS, and validation accuracy on the same held-out
pairs, all of them, scored by each trained model (TRL's model sees its own input format, cut at
max_length), and on the held-out pairs that fit in max_length; also real (non-pad) tokens trained per
second, and rewardtrainer trained on exactly the pairs TRL kept ("ours-fit": the same work).

TRL 1.16 filters out pairs whose chosen or rejected sequence is longer than max_length, silently; this
benchmark counts them. rewardtrainer truncates the prompt from the left instead and trains on every pair.
TRL is imported only in its worker (`pip install trl==1.16.0`); without it that half is skipped.
Writes bench/out/rm_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA_DIR = ROOT.parent / "shared" / "data" / "preferences"
OUT = ROOT / "bench" / "out"


def peak_rss_mb() -> float:
    """High-water mark of this process's resident memory (what the OS had to give it), in MiB."""
    try:
        import psutil

        info = psutil.Process().memory_full_info()
        if hasattr(info, "peak_wset"):  # Windows
            return info.peak_wset / 2**20
    except ImportError:
        pass
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def read_pairs(path: Path) -> list[dict]:
    from rewardtrainer.data import jsonl_lines

    return [json.loads(line) for line in jsonl_lines(path.read_text(encoding="utf-8")) if line.strip()]


# --- workers (each runs in its own process) ---------------------------------------------------------------


def worker_ours(args) -> dict:
    from transformers import AutoTokenizer

    from rewardtrainer.data import PreferencePair, encode_pairs
    from rewardtrainer.train_rm import TrainConfig, default_backbone, fit_reward_model

    train = [PreferencePair(r["prompt"], r["chosen"], r["rejected"]) for r in read_pairs(args.train)]
    val = [PreferencePair(r["prompt"], r["chosen"], r["rejected"]) for r in read_pairs(args.val)]
    tok = AutoTokenizer.from_pretrained(default_backbone())
    offered = len(train)
    if args.worker == "ours-fit":  # the same work as TRL: only the pairs that fit in max_length
        train = [
            p
            for p, n in zip(train, encode_pairs(train, tok, 10**6).lengths, strict=True)
            if n <= args.max_length
        ]
    enc = encode_pairs(train, tok, args.max_length)
    config = TrainConfig(
        backbone=default_backbone(),
        # the same Bradley-Terry work as TRL (no mismatch pairs, no post-hoc fits, no probes)
        objective="odin" if args.worker == "ours-odin" else "plain",
        augment="none",
        augment_padding=0.0,
        calibrate=False,
        eval_probe_answers=0,
        max_length=args.max_length,
        batch_size=args.batch_size,
        epochs=1,
        eval_every=0,
        checkpoint_every=0,
        early_stopping_patience=0,
        seed=args.seed,
        device="cpu",
        decorrelate=False,  # not training time, and it does not change the summed-reward accuracy
    )
    with tempfile.TemporaryDirectory() as out:
        res = fit_reward_model(train, config, out, val_pairs=val, resume=False)
    fits = encode_pairs(val, tok, 10**6).lengths <= args.max_length
    plots = res.metrics["plots"]
    n = len(val)
    q = plots["reward_quality"]
    correct = [q[i] > q[n + i] for i in range(n)]
    return {
        "pairs_trained": res.pairs_train,
        "pairs_dropped": offered - res.pairs_train,
        "tokens_trained": sum(len(r) for r in enc.chosen_ids + enc.rejected_ids),
        "steps": res.global_step,
        "train_seconds": res.train_seconds,
        "pairs_per_second": res.pairs_per_second,
        "val_accuracy": res.metrics["accuracy"],
        "val_accuracy_fit": sum(c for c, f in zip(correct, fits, strict=True) if f) / max(1, int(fits.sum())),
        "n_val": n,
        "n_val_fit": int(fits.sum()),
    }


def worker_trl(args) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from rewardtrainer.train_rm import default_backbone

    backbone = default_backbone()
    train = read_pairs(args.train)
    val = read_pairs(args.val)
    tok = AutoTokenizer.from_pretrained(backbone)
    eos = tok.eos_token or tok.sep_token  # BERT tokenizers have no eos token; TRL appends one to answers
    torch.manual_seed(args.seed)
    model = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=1, dtype=torch.float32)
    with tempfile.TemporaryDirectory() as out:
        cfg = RewardConfig(
            output_dir=out,
            max_length=args.max_length,
            per_device_train_batch_size=args.batch_size,
            num_train_epochs=1,
            bf16=False,
            fp16=False,
            use_cpu=True,
            gradient_checkpointing=args.worker == "trl",  # TRL's default is True; "trl-no-gc" turns it off
            eos_token=eos,
            report_to="none",
            save_strategy="no",
            eval_strategy="no",
            logging_steps=10,
            seed=args.seed,
            disable_tqdm=True,
        )
        data = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in train])
        trainer = RewardTrainer(model=model, args=cfg, train_dataset=data, processing_class=tok)
        kept = len(trainer.train_dataset)
        tokens = sum(len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in trainer.train_dataset)
        t0 = time.perf_counter()
        out_metrics = trainer.train()
        seconds = time.perf_counter() - t0
        steps = out_metrics.global_step

    # Score the held-out pairs as TRL formats them (prompt + answer + eos), cut at max_length.
    model = trainer.model.eval()
    texts_c = [r["prompt"] + r["chosen"] + eos for r in val]
    texts_r = [r["prompt"] + r["rejected"] + eos for r in val]
    fits = [
        len(tok(c)["input_ids"]) <= args.max_length and len(tok(r)["input_ids"]) <= args.max_length
        for c, r in zip(texts_c, texts_r, strict=True)
    ]
    scores = []
    with torch.inference_mode():
        for i in range(0, 2 * len(val), 32):
            chunk = (texts_c + texts_r)[i : i + 32]
            enc = tok(chunk, truncation=True, max_length=args.max_length, padding=True, return_tensors="pt")
            scores.extend(model(**enc).logits.squeeze(-1).tolist())
    n = len(val)
    correct = [scores[i] > scores[n + i] for i in range(n)]
    return {
        "pairs_trained": kept,
        "pairs_dropped": len(train) - kept,
        "tokens_trained": tokens,
        "steps": steps,
        "train_seconds": seconds,
        "pairs_per_second": kept / seconds,
        "val_accuracy": sum(correct) / n,
        "val_accuracy_fit": sum(c for c, f in zip(correct, fits, strict=True) if f) / max(1, sum(fits)),
        "n_val": n,
        "n_val_fit": sum(fits),
    }


def run_worker(args) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING)
    import torch

    torch.set_num_threads(args.threads or torch.get_num_threads())
    result = worker_trl(args) if args.worker.startswith("trl") else worker_ours(args)
    result |= {"peak_rss_mb": peak_rss_mb(), "threads": torch.get_num_threads()}
    args.result.write_text(json.dumps(result))
    return 0


# --- driver -------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="rewardtrainer vs TRL RewardTrainer throughput")
    p.add_argument("--data-dir", type=Path, default=DATA_DIR)
    p.add_argument("--pairs", type=int, default=320, help="training pairs offered to both trainers")
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--trl-variants",
        default="default",
        help="comma list: default (TRL's defaults, gradient checkpointing on), no-gc (checkpointing off)",
    )
    p.add_argument("--out", type=Path, default=OUT / "rm_throughput.json")
    # internal: run one trainer
    p.add_argument("--worker", choices=["ours", "ours-odin", "ours-fit", "trl", "trl-no-gc"], default=None)
    p.add_argument("--train", type=Path)
    p.add_argument("--val", type=Path)
    p.add_argument("--result", type=Path)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return run_worker(args)
    files = sorted(args.data_dir.glob("*.jsonl")) if args.data_dir.is_dir() else []
    if not files:
        print(f"SKIP: no preference data in {args.data_dir} (the shared data sets are not in a user's clone)")
        return 0
    from rewardtrainer.data import encode_pairs, load_jsonl, split_by_prompt
    from rewardtrainer.train_rm import default_backbone

    pairs = [p for f in files for p in load_jsonl(f)]
    train_pool, val = split_by_prompt(pairs, args.val_fraction, args.seed)
    train = random.Random(args.seed).sample(train_pool, min(args.pairs, len(train_pool)))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_backbone())
    too_long = int((encode_pairs(train, tok, 10**6).lengths > args.max_length).sum())
    print(
        f"{len(train)} training pairs (of {len(train_pool)}), {len(val)} held-out pairs; "
        f"{too_long} training pairs exceed {args.max_length} tokens"
    )

    try:
        import trl  # noqa: F401

        have_trl = True
    except ImportError:
        have_trl = False
        print("TRL is not installed: `pip install trl==1.16.0` to run its half; skipping it")
    workers = ["ours", "ours-fit"] + (
        [f"trl{'' if v == 'default' else '-' + v}" for v in args.trl_variants.split(",")] if have_trl else []
    )

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, rows in (("train", train), ("val", val)):
            (tmp / f"{name}.jsonl").write_text(
                "".join(
                    json.dumps({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}) + "\n"
                    for p in rows
                )
            )
        for w in workers:
            cmd = [sys.executable, __file__, "--worker", w, "--result", str(tmp / f"{w}.json")]
            cmd += [
                "--train",
                str(tmp / "train.jsonl"),
                "--val",
                str(tmp / "val.jsonl"),
                "--seed",
                str(args.seed),
            ]
            cmd += ["--max-length", str(args.max_length), "--batch-size", str(args.batch_size)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            t0 = time.perf_counter()
            env = dict(os.environ, TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(ROOT))
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"[{w}] failed:\n{proc.stderr[-3000:]}")
                continue
            results[w] = json.loads((tmp / f"{w}.json").read_text()) | {
                "wall_seconds": time.perf_counter() - t0
            }
            r = results[w]
            print(
                f"[{w}] {r['pairs_per_second']:.2f} pairs/s, val acc {100 * r['val_accuracy']:.1f}%",
                flush=True,
            )

    cols = [
        ("pairs trained", lambda r: f"{r['pairs_trained']}"),
        ("pairs dropped", lambda r: f"{r['pairs_dropped']}"),
        ("optimizer steps", lambda r: f"{r['steps']}"),
        ("train seconds", lambda r: f"{r['train_seconds']:.1f}"),
        ("pairs/s (training)", lambda r: f"{r['pairs_per_second']:.2f}"),
        ("real tokens/s (training)", lambda r: f"{r['tokens_trained'] / r['train_seconds']:.0f}"),
        ("peak RSS MiB", lambda r: f"{r['peak_rss_mb']:.0f}"),
        ("val acc, all held-out", lambda r: f"{100 * r['val_accuracy']:.1f}% (n={r['n_val']})"),
        ("val acc, fit max_length", lambda r: f"{100 * r['val_accuracy_fit']:.1f}% (n={r['n_val_fit']})"),
    ]
    names = list(results)
    print()
    print(f"{'':26s}" + "".join(f"{n:>22s}" for n in names))
    for label, f in cols:
        print(f"{label:26s}" + "".join(f"{f(results[n]):>22s}" for n in names))
    verdict = {}
    if "ours" in results and "trl" in results:
        ours, ref = results["ours"], results["trl"]
        ratio = ours["pairs_per_second"] / ref["pairs_per_second"]
        acc_gap = 100 * (ours["val_accuracy"] - ref["val_accuracy"])
        verdict = {
            "speed_ratio": ratio,
            "accuracy_gap_points": acc_gap,
            "target_2x": ratio >= 2.0,
            "target_equal_accuracy": abs(acc_gap) <= 1.0,
            "target_no_dropped_pairs": ours["pairs_dropped"] == 0,
        }
        print(
            f"\nspeed ratio ours / TRL (default settings): {ratio:.2f}x; accuracy gap {acc_gap:+.1f} points"
        )
        print(f"{'PASS' if ratio >= 2.0 else 'FAIL'}  ours >= 2x TRL's pairs/s")
        print(f"{'PASS' if abs(acc_gap) <= 1.0 else 'FAIL'}  equal validation accuracy (+-1 point)")
        dropped = f"(TRL dropped {ref['pairs_dropped']} of {len(train)})"
        print(f"{'PASS' if ours['pairs_dropped'] == 0 else 'FAIL'}  ours dropped no pairs {dropped}")
        if "ours-fit" in results:
            fit = results["ours-fit"]["pairs_per_second"] / ref["pairs_per_second"]
            n_fit = results["ours-fit"]["pairs_trained"]
            print(f"speed ratio on identical work (ours on the {n_fit} pairs TRL kept) / TRL: {fit:.2f}x")
            verdict["speed_ratio_same_pairs"] = fit
        if "trl-no-gc" in results:
            no_gc = ours["pairs_per_second"] / results["trl-no-gc"]["pairs_per_second"]
            print(f"speed ratio ours / TRL without gradient checkpointing: {no_gc:.2f}x")
            verdict["speed_ratio_vs_trl_no_gc"] = no_gc
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "settings": {
                    k: getattr(args, k) for k in ("pairs", "max_length", "batch_size", "seed", "val_fraction")
                }
                | {"precision": "fp32", "device": "cpu", "train_pairs_over_max_length": too_long},
                "results": results,
                "verdict": verdict,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
