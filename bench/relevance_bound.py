"""How far can a post-hoc cosine gate take the off-prompt test, and what does it cost the human pairs?

The relevance gate (rewardtrainer/relevance.py) adds weight * log sigmoid(a * cosine + b) to the reward,
where cosine is the shipped MiniLM's similarity of prompt and answer. Measured in bench/rm_quality.py it
lifted the off-prompt test from 48% to 78% and cost 4 points of accuracy (README). This bench asks the
question without training anything: for a gate of ANY weight, which share of the off-prompt test's cases
can the cosine decide correctly, and which share of the human validation pairs does it then touch?

A hinge gate at logit t, -W * max(0, t - z) with z = a * cosine + b (a, b: the shipped fit on training
prompts) and W unbounded, leaves answers with z >= t to the reward model and ranks the rest by z alone:
- an off-prompt case is won by the gate when min(z_on, t) > min(z_off, t); when both are >= t the reward
  model decides (it passes 35-48% of those in rm_quality), so "upper bound" = gate wins + both above t,
  the best any reward model could do behind that gate;
- a human pair is touched when either answer has z < t: there the gate, not the reward, ranks it.
"bare cosine" = the on-prompt answer's cosine above the other's (t = +infinity, every pair touched).

Same splits as bench/rm_quality.py (split_by_prompt, 15% validation, one split per seed). The off-prompt
cases are built like the test's (an answer against the chosen answer of the neighbouring validation
prompt, augment.mismatch_pairs) but from every validation pair, where the probe samples 100, and the
on-prompt answer is the chosen or the rejected one.
No training; about 2 minutes on 2 CPU cores (MiniLM embeddings of every text once). Writes
bench/out/relevance_bound.json; exits 0 with a message when ../shared/data/preferences is absent.

    .venv/bin/python bench/relevance_bound.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from rm_quality import DATA_DIR, OUT, shared_pairs  # noqa: E402

from rewardtrainer.augment import mismatch_pairs, prompt_neighbours  # noqa: E402
from rewardtrainer.data import split_by_prompt  # noqa: E402
from rewardtrainer.relevance import RelevanceGate, cosines, shared_embedder  # noqa: E402

THRESHOLDS = (-1.0, 0.0, 1.0)


def cached(embed):
    """The embedder with a cache: each distinct text is embedded once over all seeds."""
    memory: dict[str, np.ndarray] = {}

    def run(texts):
        todo = [t for t in dict.fromkeys(texts) if t not in memory]
        if todo:
            memory.update(zip(todo, np.asarray(embed(todo), dtype=np.float64), strict=True))
        return np.stack([memory[t] for t in texts])

    return run


def hinge(on: np.ndarray, off: np.ndarray, human_low: np.ndarray, t: float) -> dict:
    """A hinge gate at t on per-case scores of the on- and off-prompt answers, and on the lower score of
    each human pair: cases it wins, its upper bound, the human pairs it ranks (see the docstring)."""
    wins = float((np.minimum(on, t) > np.minimum(off, t)).mean())
    both_above = float(((on >= t) & (off >= t)).mean())
    return {
        "t": t,
        "gate_wins": wins,
        "upper_bound": wins + both_above,
        "human_pairs_touched": float((human_low < t).mean()),
    }


def triple_cosines(embed, triples) -> tuple[np.ndarray, np.ndarray]:
    prompts = [t.prompt for t in triples]
    return cosines(embed, prompts, [t.chosen for t in triples]), cosines(
        embed, prompts, [t.rejected for t in triples]
    )


def bound_for_split(pairs, seed: int, embed) -> dict:
    train, val = split_by_prompt(pairs, 0.15, seed)
    gate = RelevanceGate.fit(
        *triple_cosines(
            embed, mismatch_pairs(train, ratio=1.0, seed=seed, neighbours=prompt_neighbours(train, embed))
        ),
        weight=1.0,
    )
    cases = mismatch_pairs(val, ratio=1.0, seed=seed, neighbours=prompt_neighbours(val, embed))
    on, off = (gate.a * c + gate.b for c in triple_cosines(embed, cases))
    human = np.minimum(*(gate.a * c + gate.b for c in triple_cosines(embed, val)))  # lower z of each pair
    row = {
        "seed": seed,
        "gate": {"a": gate.a, "b": gate.b, "train_balanced_accuracy": gate.accuracy},
        "off_prompt_cases": len(on),
        "human_pairs": len(val),
        "bare_cosine_off_prompt": float((on > off).mean()),
    }
    row["hinge"] = [hinge(on, off, human, t) for t in THRESHOLDS]
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=OUT / "relevance_bound.json")
    args = p.parse_args(argv)
    pairs = shared_pairs()
    if not pairs:
        print(f"no preference data in {DATA_DIR}; nothing to measure")
        return 0
    embed = cached(shared_embedder())
    rows = [bound_for_split(pairs, seed, embed) for seed in args.seeds]
    print(
        f"{'seed':>4} {'bare cos':>8} | "
        + " | ".join(f"t={t:+.0f}: wins / bound / human touched" for t in THRESHOLDS)
    )
    for r in rows:
        cells = " | ".join(
            f"{h['gate_wins']:6.1%} / {h['upper_bound']:6.1%} / {h['human_pairs_touched']:6.1%}"
            for h in r["hinge"]
        )
        print(f"{r['seed']:>4} {r['bare_cosine_off_prompt']:8.1%} | {cells}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"thresholds": THRESHOLDS, "splits": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
