"""Reward-model quality on real human preferences: plain Bradley-Terry vs ODIN, same budget.

Run from the project root (the data sets live beside it, in ../shared/data/preferences/):

    .venv/bin/python bench/rm_quality.py                       # defaults: MiniLM-L6, 2 epochs, len 256
    .venv/bin/python bench/rm_quality.py --max-steps 40        # a quick look
    .venv/bin/python bench/rm_quality.py --data-dir DIR

Both models see the same prompt-grouped split (val 15%), backbone, seed, steps and batch order. For each it
reports validation accuracy (quality head; for ODIN also the summed heads), accuracy on length-matched
pairs (longer/shorter <= 1.2 in characters) and on pairs the shorter answer won, Pearson and Spearman
correlation of the reward with answer length, ECE, training pairs/s and wall time, then checks the
targets (ODIN, Chen et al. 2024): ODIN's quality head |Pearson| <= 0.05; its length-matched and
shorter-won accuracy >= the plain model's; its summed-head accuracy within 1 point of the plain model's
accuracy. Writes bench/out/rm_quality.json. Exits 0 with a message when the data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rewardtrainer.data import load_jsonl  # noqa: E402
from rewardtrainer.evaluate import scalar_metrics  # noqa: E402
from rewardtrainer.train_rm import TrainConfig, train_reward_model  # noqa: E402

DATA_DIR = ROOT.parent / "shared" / "data" / "preferences"
OUT = ROOT / "bench" / "out"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="plain vs ODIN reward model on human preference pairs")
    p.add_argument("--data-dir", type=Path, default=DATA_DIR)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=None, help="overrides --epochs")
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--corr-quality-weight", type=float, default=None)
    p.add_argument("--corr-length-weight", type=float, default=None)
    p.add_argument("--ortho-weight", type=float, default=None)
    p.add_argument("--corr-mode", choices=["global", "batch"], default=None)
    p.add_argument("--no-decorrelate", action="store_true", help="skip ODIN's final head decorrelation")
    p.add_argument("--only", choices=["plain", "odin"], default=None, help="train just one of the two")
    p.add_argument("--out", type=Path, default=OUT / "rm_quality.json")
    return p.parse_args(argv)


def fmt(v, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{100 * v:.1f}%" if pct else f"{v:+.3f}"


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    files = sorted(args.data_dir.glob("*.jsonl")) if args.data_dir.is_dir() else []
    if not files:
        print(f"SKIP: no preference data in {args.data_dir} (the shared data sets are not in a user's clone)")
        return 0
    pairs = [p for f in files for p in load_jsonl(f)]
    print(f"{len(pairs)} pairs from {', '.join(f.name for f in files)}")

    results = {}
    for name in ("plain", "odin"):
        if args.only and name != args.only:
            continue
        config = TrainConfig(
            odin=name == "odin",
            max_length=args.max_length,
            batch_size=args.batch_size,
            lr=args.lr,
            epochs=args.epochs,
            max_steps=args.max_steps,
            val_fraction=args.val_fraction,
            seed=args.seed,
            eval_every=0,  # same budget, no mid-run validation cost, no early stopping
            early_stopping_patience=None,
            checkpoint_every=0,
            decorrelate=not args.no_decorrelate,
        )
        for field in ("corr_quality_weight", "corr_length_weight", "ortho_weight", "corr_mode"):
            if getattr(args, field) is not None:
                setattr(config, field, getattr(args, field))
        t0 = time.perf_counter()
        res = train_reward_model(pairs, config, OUT / "rm_quality" / name, resume=False)
        wall = time.perf_counter() - t0
        m = scalar_metrics(res.metrics)
        results[name] = {
            "metrics": m,
            "pairs_train": res.pairs_train,
            "pairs_val": res.pairs_val,
            "steps": res.global_step,
            "train_pairs_per_second": res.pairs_per_second,
            "train_seconds": res.train_seconds,
            "wall_seconds": wall,
            "config": {k: getattr(config, k) for k in ("odin", "max_length", "batch_size", "lr", "epochs")}
            | {"max_steps": config.max_steps, "loss_weights": vars(config.loss_weights())},
        }
        print(
            f"[{name}] {res.global_step} steps, {res.pairs_per_second:.2f} train pairs/s, {wall:.0f}s wall, "
            f"val acc {100 * m['accuracy']:.1f}%, pearson {m['pearson_length']:+.3f}",
            flush=True,
        )

    rows = [
        ("val accuracy (quality head)", "accuracy", True),
        ("val accuracy (summed heads)", "accuracy_sum", True),
        ("length-matched accuracy", "accuracy_length_matched", True),
        ("  n length-matched", "n_length_matched", None),
        ("shorter-won accuracy", "accuracy_shorter_won", True),
        ("  n shorter-won", "n_shorter_won", None),
        ("Pearson(reward, length)", "pearson_length", False),
        ("Spearman(reward, length)", "spearman_length", False),
        ("Pearson(length head, length)", "pearson_length_head", False),
        ("  before final decorrelation:", None, None),
        ("  val accuracy (quality head)", "accuracy_before_decorrelation", True),
        ("  length-matched accuracy", "accuracy_length_matched_before_decorrelation", True),
        ("  shorter-won accuracy", "accuracy_shorter_won_before_decorrelation", True),
        ("  Pearson(reward, length)", "pearson_length_before_decorrelation", False),
        ("ECE", "ece", False),
        ("val loss", "loss", False),
    ]
    names = list(results)
    print()
    print(f"{'metric':32s}" + "".join(f"{n:>12s}" for n in names))
    for label, key, pct in rows:
        cells = []
        for n in names:
            v = results[n]["metrics"].get(key) if key else ""
            cells.append(str(v) if pct is None else fmt(v, pct))
        print(f"{label:32s}" + "".join(f"{c:>12s}" for c in cells))
    for label, key, f in (
        ("train pairs/s", "train_pairs_per_second", "{:.2f}"),
        ("wall s", "wall_seconds", "{:.0f}"),
    ):
        print(f"{label:32s}" + "".join(f"{f.format(results[n][key]):>12s}" for n in names))

    targets = []
    if "plain" in results and "odin" in results:
        p, o = results["plain"]["metrics"], results["odin"]["metrics"]

        def ge(a, b):
            return a is not None and b is not None and a >= b

        targets = [
            ("ODIN quality head |Pearson(reward, length)| <= 0.05", abs(o["pearson_length"]) <= 0.05),
            (
                "ODIN length-matched accuracy >= plain's",
                ge(o["accuracy_length_matched"], p["accuracy_length_matched"]),
            ),
            (
                "ODIN shorter-won accuracy >= plain's",
                ge(o["accuracy_shorter_won"], p["accuracy_shorter_won"]),
            ),
            (
                "ODIN summed-head accuracy within 1 point of plain's",
                abs(o["accuracy_sum"] - p["accuracy"]) <= 0.01,
            ),
        ]
        print()
        for label, ok in targets:
            print(f"{'PASS' if ok else 'FAIL'}  {label}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "data": [f.name for f in files],
        "n_pairs": len(pairs),
        "results": results,
        "targets": {label: ok for label, ok in targets},
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
