"""Reward-model quality on real human preferences: every objective / calibration / augmentation variant,
same split (by prompt), same budget, same backbone; prints a table and checks the issue-9 targets.

Run from the project root (the data sets live beside it, in ../shared/data/preferences/):

    nice -n 10 .venv/bin/python bench/rm_quality.py                          # MiniLM-L6, 150 steps, len 128
    nice -n 10 .venv/bin/python bench/rm_quality.py --max-steps 200 --seeds 0 1 2
    nice -n 10 .venv/bin/python bench/rm_quality.py --only plain length+rrm-nb

Variants (one training run each; calibration is post-hoc, so "+cal" rows come from the same run):
plain (Bradley-Terry), odin (quality head, decorrelated), length (the learned length covariate, beta
dropped at use), and length with prompt-mismatch pairs (RRM) taken from a random other prompt or from
the most similar prompt (MiniLM; ".15" = 0.15 such pairs per human pair instead of 0.5); "+bal" weighs the
pairs the longer and the shorter answer won equally (length_balance; the full model's length term is
then fitted after training); "+pad" adds
padding pairs (an answer beats itself padded, worded unlike the padding test: augment.padded_pairs);
"+hold" fits the length calibration on 10% of the training prompts held out of training ("hold20":
20%) instead of on training answers (plain Bradley-Terry always trains on every training pair);
"+ens3" trains 3 members (data orders seed, seed+1, seed+2; member 0 is the run without it) and
averages their weights (WARM), 3x the budget; "+rel" sends the mismatch pairs to a separate relevance
head instead of the Bradley-Terry reward (model.relevance_loss; the deployed reward adds
log sigmoid(relevance)); "+gate" adds the relevance
gate (relevance.py: a logistic fit on the MiniLM cosine of prompt and answer, post-hoc like the
calibration, so "+gate" and the same run without it train identically); "+pmi" the PMI gate (a hinge on
the pointwise mutual information of answer and prompt under SmolLM2; bench/pmi_gate.py sweeps its
settings on saved models); "+flat" adds |corr(reward, length)| to the loss (reward_corr_weight 1), so the
reward is trained flat in length instead of only calibrated afterwards (bench/rm_probe.py's "-resid"
heads, fine-tuned).
Figures per row: accuracy of the deployed reward; accuracy of the full model (reward + length term);
accuracy where the longer / shorter answer won and their mean (balanced); Pearson and Spearman of the
deployed reward with answer length; the padding test; the off-prompt test.
Medians over seeds when several are given; the two targets that compare with plain Bradley-Terry read
the median of the per-seed differences (same split and data order), printed per seed. Targets (for
the shipped default, TrainConfig's defaults):
|Pearson| <= 0.05; shorter-won >= 55%; balanced >= plain's + 3 points; full model within 1 point of
plain's accuracy; padding and off-prompt tests >= 90%. Writes bench/out/rm_quality.json.
Exits 0 with a message when the data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rewardtrainer.config import TrainConfig  # noqa: E402
from rewardtrainer.data import load_jsonl  # noqa: E402
from rewardtrainer.evaluate import scalar_metrics  # noqa: E402
from rewardtrainer.train_rm import fit_reward_model  # noqa: E402

# ../shared/data beside the project (a worktree sits one level deeper: ../../shared/data)
DATA_DIR = next(
    (
        d
        for d in (
            ROOT.parent / "shared" / "data" / "preferences",
            ROOT.parent.parent / "shared" / "data" / "preferences",
        )
        if d.is_dir()
    ),
    ROOT.parent / "shared" / "data" / "preferences",
)
OUT = ROOT / "bench" / "out"


def shared_pairs(data_dir: Path = DATA_DIR) -> list:
    """Every pair of the shared preference data sets in `data_dir`; [] when it is absent."""
    files = sorted(data_dir.glob("*.jsonl")) if data_dir.is_dir() else []
    return [pair for f in files for pair in load_jsonl(f)]


# Every run states these explicitly (not TrainConfig's defaults, so that a changed default changes no
# row); a variant names only what it changes.
BASE = dict(
    objective="length",
    augment="none",
    augment_padding=0.0,
    calibration_holdout=0.0,
    length_balance=False,
    reward_corr_weight=0.0,
    length_beta_start="zero",
)


def variant(**changes) -> dict:
    return BASE | changes


# name -> TrainConfig overrides (one training run each)
RUNS = {
    "plain": variant(objective="plain"),
    "odin": variant(objective="odin", calibrate=False),
    "length": variant(),
    "length+rrm": variant(augment="random"),
    "length+rrm-nb": variant(augment="neighbour"),
    "plain+rrm-nb": variant(objective="plain", augment="neighbour"),
    "length+pad": variant(augment_padding=0.5),
    "length+pad+fit": variant(augment_padding=0.5, length_beta_start="fit"),
    "plain+flat": variant(objective="plain", reward_corr_weight=1.0),
    "length+pad+flat": variant(augment_padding=0.5, reward_corr_weight=1.0),
    "plain+bal": variant(objective="plain", length_balance=True),
    "length+pad+bal": variant(augment_padding=0.5, length_balance=True),
    "length+pad+gate": variant(augment_padding=0.5, relevance_gate="cosine"),
    "length+pad+pmi": variant(augment_padding=0.5, relevance_gate="pmi"),
    "length+pad+ens3": variant(augment_padding=0.5, ensemble=3),
    "length+pad+hold": variant(augment_padding=0.5, calibration_holdout=0.1),
    "length+pad+hold20": variant(augment_padding=0.5, calibration_holdout=0.2),
    "length+rrm-nb+pad": variant(augment="neighbour", augment_padding=0.5),
    "length+rrm-nb+rel+pad": variant(augment="neighbour", relevance_head=True, augment_padding=0.5),
    "length+rrm+rel+pad": variant(augment="random", relevance_head=True, augment_padding=0.5),
    "length+rrm-nb.15+pad+hold": variant(
        augment="neighbour", augment_ratio=0.15, augment_padding=0.5, calibration_holdout=0.1
    ),
}
# Rows of the table: (label, run, which figures) - "raw" = before calibration, "cal" = deployed.
ROWS = [
    ("plain", "plain", "raw"),
    ("plain+cal", "plain", "cal"),
    ("odin", "odin", "cal"),
    ("length", "length", "raw"),
    ("length+cal", "length", "cal"),
    ("length+rrm+cal", "length+rrm", "cal"),
    ("length+rrm-nb", "length+rrm-nb", "raw"),
    ("length+rrm-nb+cal", "length+rrm-nb", "cal"),
    ("plain+rrm-nb+cal", "plain+rrm-nb", "cal"),
    ("length+pad+cal", "length+pad", "cal"),
    ("length+pad", "length+pad", "raw"),
    ("length+pad+fit", "length+pad+fit", "raw"),
    ("length+pad+fit+cal", "length+pad+fit", "cal"),
    ("plain+flat", "plain+flat", "raw"),
    ("plain+flat+cal", "plain+flat", "cal"),
    ("length+pad+flat", "length+pad+flat", "raw"),
    ("length+pad+flat+cal", "length+pad+flat", "cal"),
    ("plain+bal", "plain+bal", "raw"),
    ("plain+bal+cal", "plain+bal", "cal"),
    ("length+pad+bal", "length+pad+bal", "raw"),
    ("length+pad+bal+cal", "length+pad+bal", "cal"),
    ("length+pad+gate+cal", "length+pad+gate", "cal"),
    ("length+pad+pmi+cal", "length+pad+pmi", "cal"),
    ("length+pad+ens3+cal", "length+pad+ens3", "cal"),
    ("length+pad+hold+cal", "length+pad+hold", "cal"),
    ("length+pad+hold20+cal", "length+pad+hold20", "cal"),
    ("length+rrm-nb+pad+cal", "length+rrm-nb+pad", "cal"),
    ("length+rrm-nb.15+pad+hold+cal", "length+rrm-nb.15+pad+hold", "cal"),
    ("length+rrm-nb+rel+pad+cal", "length+rrm-nb+rel+pad", "cal"),
    ("length+rrm+rel+pad+cal", "length+rrm+rel+pad", "cal"),
]
FIGURES = [
    ("acc", "accuracy"),
    ("full", "accuracy_full"),
    ("longer", "accuracy_longer_won"),
    ("shorter", "accuracy_shorter_won"),
    ("balanced", "balanced_accuracy"),
    ("pearson", "pearson_length"),
    ("spearman", "spearman_length"),
    ("padding", "padding_accuracy"),
    ("offprompt", "off_prompt_accuracy"),
]
RAW_KEYS = {"accuracy", "accuracy_longer_won", "accuracy_shorter_won", "balanced_accuracy", "pearson_length",
            "spearman_length", "padding_accuracy", "off_prompt_accuracy"}  # fmt: skip


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="reward model variants on human preference pairs")
    p.add_argument("--data-dir", type=Path, default=DATA_DIR)
    p.add_argument("--max-steps", type=int, default=150)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--probe-answers", type=int, default=120)
    p.add_argument("--calibration-pairs", type=int, default=300)
    p.add_argument("--only", nargs="+", choices=list(RUNS), default=None)
    p.add_argument("--backbone", default=None)
    p.add_argument("--out", type=Path, default=OUT / "rm_quality.json")
    return p.parse_args(argv)


def figures(metrics: dict, which: str) -> dict:
    out = {}
    for _, key in FIGURES:
        if which == "raw" and key in RAW_KEYS:
            out[key] = metrics.get(f"{key}_raw", metrics.get(key))
        else:
            out[key] = metrics.get(key)
    return out


def fmt(key: str, v) -> str:
    if v is None:
        return "-"
    return f"{v:+.3f}" if key in ("pearson_length", "spearman_length") else f"{100 * v:.1f}"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def paired_gaps(results: dict, shipped: str) -> dict:
    """The shipped default against plain Bradley-Terry seed by seed (same split, same data order), and
    the median of those differences: the seeds disagree more than the variants do, so a difference
    of medians taken over different seeds can show a gap that no single split has."""
    run, which = next((run, which) for label, run, which in ROWS if label == shipped)
    per_seed = {}
    for seed, entry in results[run]["seeds"].items():
        plain_entry = results["plain"]["seeds"].get(seed)
        if plain_entry is None:
            continue
        d, p = figures(entry["metrics"], which), figures(plain_entry["metrics"], "raw")
        if None in (d["balanced_accuracy"], p["balanced_accuracy"], d["accuracy_full"], p["accuracy"]):
            continue
        per_seed[seed] = {
            "balanced_vs_plain": d["balanced_accuracy"] - p["balanced_accuracy"],
            "full_vs_plain_accuracy": d["accuracy_full"] - p["accuracy"],
        }
    keys = ("balanced_vs_plain", "full_vs_plain_accuracy")
    return {"per_seed": per_seed, "median": {k: median([g[k] for g in per_seed.values()]) for k in keys}}


def print_gaps(gaps: dict, shipped: str) -> None:
    print(f"\n{shipped} minus plain, per seed (points): balanced accuracy / full model vs plain accuracy")
    for seed, g in gaps["per_seed"].items():
        balanced, full = 100 * g["balanced_vs_plain"], 100 * g["full_vs_plain_accuracy"]
        print(f"  seed {seed}: {balanced:+.1f} / {full:+.1f}")
    m = gaps["median"]
    if m["balanced_vs_plain"] is not None:
        print(f"  median:  {100 * m['balanced_vs_plain']:+.1f} / {100 * m['full_vs_plain_accuracy']:+.1f}")


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    files = sorted(args.data_dir.glob("*.jsonl")) if args.data_dir.is_dir() else []
    if not files:
        print(f"SKIP: no preference data in {args.data_dir} (the shared data sets are not in a user's clone)")
        return 0
    pairs = [p for f in files for p in load_jsonl(f)]
    print(f"{len(pairs)} pairs from {', '.join(f.name for f in files)}; seeds {args.seeds}", flush=True)
    default = TrainConfig()
    runs = {k: v for k, v in RUNS.items() if not args.only or k in args.only}
    results: dict[str, dict] = {}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for name, overrides in runs.items():
            config = TrainConfig(
                **overrides,
                **({"backbone": args.backbone} if args.backbone else {}),
                max_length=args.max_length,
                batch_size=args.batch_size,
                lr=args.lr,
                max_steps=args.max_steps,
                val_fraction=args.val_fraction,
                seed=seed,
                eval_every=0,  # same budget, no mid-run validation cost, no early stopping
                early_stopping_patience=0,
                checkpoint_every=0,
                eval_probe_answers=args.probe_answers,
                calibration_max_pairs=args.calibration_pairs,
            )
            t0 = time.perf_counter()
            # the models beside the report (bench/pmi_gate.py --models reads them)
            model_dir = args.out.parent / "rm_quality" / f"{name}-s{seed}"
            res = fit_reward_model(pairs, config, model_dir, resume=False)
            wall = time.perf_counter() - t0
            m = scalar_metrics(res.metrics)
            entry = results.setdefault(name, {"config": overrides, "seeds": {}})
            entry["seeds"][seed] = {
                "metrics": m,
                "steps": res.global_step,
                "pairs_train": res.pairs_train,
                "pairs_val": res.pairs_val,
                "pairs_calibration": res.pairs_calibration,
                "train_pairs_per_second": res.pairs_per_second,
                "wall_seconds": wall,
            }
            print(
                f"[{name} seed {seed}] {res.global_step} steps, {res.pairs_per_second:.2f} pairs/s, "
                f"{wall:.0f}s; deployed (calibrated when the run calibrates): "
                f"acc {100 * m['accuracy']:.1f} balanced {100 * (m['balanced_accuracy'] or 0):.1f} "
                f"pearson {m['pearson_length']:+.3f}; raw: acc {100 * m['accuracy_raw']:.1f} "
                f"balanced {100 * (m['balanced_accuracy_raw'] or 0):.1f}",
                flush=True,
            )
            args.out.write_text(
                json.dumps({"partial": True, "results": results}, indent=2, default=float) + "\n"
            )

    table = {}
    for label, run, which in ROWS:
        if run not in results:
            continue
        per_seed = [figures(s["metrics"], which) for s in results[run]["seeds"].values()]
        table[label] = {key: median([f[key] for f in per_seed]) for _, key in FIGURES}
    print(f"\nmedians over {len(args.seeds)} seed(s), {args.max_steps} steps x {args.batch_size} pairs, "
          f"max_length {args.max_length}; accuracies in %")  # fmt: skip
    print(f"{'variant':30s}" + "".join(f"{h:>10s}" for h, _ in FIGURES))
    for label, row in table.items():
        print(f"{label:30s}" + "".join(f"{fmt(k, row[k]):>10s}" for _, k in FIGURES))

    shipped = None
    for name, overrides in RUNS.items():
        if all(getattr(default, k) == v for k, v in overrides.items()):
            shipped = f"{name}+cal" if overrides.get("calibrate", True) else name
    targets, gaps = {}, {}
    if shipped in table and "plain" in table:
        d = table[shipped]
        gaps = paired_gaps(results, shipped)
        print_gaps(gaps, shipped)
        pearson, shorter = d["pearson_length"], d["accuracy_shorter_won"] or 0
        balanced_gap = gaps["median"]["balanced_vs_plain"]
        full_gap = gaps["median"]["full_vs_plain_accuracy"]
        targets = {
            "|Pearson(deployed reward, length)| <= 0.05": pearson is not None and abs(pearson) <= 0.05,
            "shorter-won accuracy >= 55%": shorter >= 0.55,
            "balanced accuracy >= plain's + 3 points": balanced_gap is not None and balanced_gap >= 0.03,
            "full model within 1 point of plain's accuracy": full_gap is not None and abs(full_gap) <= 0.01,
            "padding test >= 90%": (d["padding_accuracy"] or 0) >= 0.90,
            "off-prompt test >= 90%": (d["off_prompt_accuracy"] or 0) >= 0.90,
        }
        print(f"\nshipped default: {shipped}")
        for label, passed in targets.items():
            print(f"{'PASS' if passed else 'FAIL'}  {label}")
    report = {
        "data": [f.name for f in files],
        "n_pairs": len(pairs),
        "budget": {"max_steps": args.max_steps, "batch_size": args.batch_size, "max_length": args.max_length},
        "seeds": args.seeds,
        "results": results,
        "table_medians": table,
        "paired_gaps": gaps,
        "shipped_default": shipped,
        "targets": targets,
    }
    args.out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
