"""The PMI relevance gate's settings (threshold quantile, weight) on trained reward models, without
retraining: what each setting buys on the off-prompt test and costs on the human pairs.

The gate (rewardtrainer/relevance.py, `RM_RELEVANCE_GATE=pmi`) is post-hoc: after training, `finalize`
fits its threshold (a quantile of the PMI of training answers to their own prompts) and its weight
(reward standard deviations per nat), then refits the length calibration on the gated reward. This bench
does exactly that, for a grid of settings, on the models that `bench/rm_quality.py` saved (run it first:
`--only length+pad --seeds 0 1 2`), on the same splits: the fit sample (300 training pairs, as
rm_quality's --calibration-pairs), the human validation pairs and the padding and off-prompt tests
(with --probe-answers answers, more than rm_quality's 120 so that the off-prompt test has ~200 cases).
Reward-model scores and PMIs are computed once per split and reused across the grid; the LM's
log-probs are kept in bench/out/pmi_gate_logprobs.pkl for the next run. Besides threshold and weight,
the grid varies the answers the length calibration is refitted on: all fit answers with their gated
reward (as `finalize` did first) or only those the gate leaves alone.

About 15-25 minutes a seed on 2 CPU cores (two SmolLM2 forwards per answer, prompts up to 256 tokens),
a few minutes a seed on a second run (the log-probs are cached).
Writes bench/out/pmi_gate.json; exits 0 with a message when the data or the models are absent.

    PYTHONPATH=. nice -n 10 .venv/bin/python bench/pmi_gate.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import pickle
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from rm_quality import DATA_DIR, OUT, shared_pairs  # noqa: E402

from rewardtrainer.augment import prompt_neighbours  # noqa: E402
from rewardtrainer.calibrate import LengthCalibration  # noqa: E402
from rewardtrainer.data import split_by_prompt  # noqa: E402
from rewardtrainer.evaluate import evaluate, probe_tests, scalar_metrics  # noqa: E402
from rewardtrainer.model import RewardModel  # noqa: E402
from rewardtrainer.relevance import (  # noqa: E402
    PMI_ANSWER_TOKENS,
    PMI_PROMPT_TOKENS,
    PmiGate,
    shared_embedder,
    shared_likelihood,
)
from rewardtrainer.train_rm import fit_sample_indices  # noqa: E402

# (threshold quantile, weight in reward std per nat, the answers the length calibration is fitted on:
# "all" = every fit answer with its gated reward, "untouched" = only those the gate leaves alone)
GRID = [(None, None, "all")] + [
    (q, w, fit) for q in (0.04, 0.08, 0.12) for w in (20.0, 100.0) for fit in ("all", "untouched")
]
CACHE = OUT / "pmi_gate_logprobs.pkl"  # SmolLM2's mean answer log-probs, (prompt, answer) -> float
FIGURES = ("accuracy", "balanced_accuracy", "accuracy_longer_won", "accuracy_shorter_won",
           "accuracy_full", "pearson_length", "padding_accuracy", "off_prompt_accuracy")  # fmt: skip


class RawScores:
    """The model's reward before calibration and gate, remembered per (prompt, answer)."""

    def __init__(self, model: RewardModel, tokenizer):
        self.model, self.tokenizer, self.memory = model, tokenizer, {}
        self.score = RewardModel.score.__get__(model)  # the class's method, not a patched instance one

    def __call__(self, prompts, answers) -> np.ndarray:
        todo = [k for k in dict.fromkeys(zip(prompts, answers, strict=True)) if k not in self.memory]
        if todo:
            with self.model.raw():
                s = self.score(self.tokenizer, [p for p, _ in todo], [a for _, a in todo]).numpy()
            self.memory.update(zip(todo, s, strict=True))
        return np.array([self.memory[k] for k in zip(prompts, answers, strict=True)])


def measure_split(pairs, seed: int, model_dir: Path, probe_answers: int, fit_pairs: int) -> list[dict]:
    from transformers import AutoTokenizer

    train, val = split_by_prompt(pairs, 0.15, seed)
    fit = [train[i] for i in fit_sample_indices(len(train), fit_pairs, seed)]  # finalize's fit sample
    model, tokenizer = RewardModel.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir)
    raw = RawScores(model, tokenizer)
    likelihood = shared_likelihood("", PMI_PROMPT_TOKENS, PMI_ANSWER_TOKENS, "cpu")
    if CACHE.is_file() and not likelihood.memory:  # log-probs of an earlier run (same LM and cut-offs)
        likelihood.memory.update(pickle.loads(CACHE.read_bytes()))
    prompts = [p.prompt for p in fit] * 2
    answers = [p.chosen for p in fit] + [p.rejected for p in fit]
    fit_pmi, fit_raw = likelihood.pmi(prompts, answers), raw(prompts, answers)
    chars = np.array([len(a) for a in answers], dtype=np.float64)
    neighbours = prompt_neighbours(val, shared_embedder())
    rows = []
    for quantile, weight, calibrate_on in GRID:
        t0 = time.perf_counter()
        gate = None
        if quantile is not None:
            gate = PmiGate(
                threshold=float(np.quantile(fit_pmi, quantile)), weight=weight * float(fit_raw.std())
            )
        model.relevance_gate = gate.to_dict() if gate else None
        gated = fit_raw + (gate(fit_pmi) if gate else 0.0)
        keep = gated == fit_raw if calibrate_on == "untouched" else np.ones(len(gated), dtype=bool)
        model.calibration = LengthCalibration.fit(gated[keep], chars[keep]).to_dict()

        def deployed(_tokenizer, p, a, batch_size=32, gate=gate):
            s = raw(p, a) - model.length_offset([len(x) for x in a])
            return torch.as_tensor(s + (gate.term(p, a) if gate else 0.0))

        model.score = deployed  # the probes score through model.score
        m = scalar_metrics(evaluate(model, val, tokenizer))
        m |= probe_tests(model, tokenizer, val, neighbours=neighbours, max_answers=probe_answers, seed=seed)
        del model.score
        CACHE.write_bytes(pickle.dumps(dict(likelihood.memory)))
        row = {"seed": seed, "quantile": quantile, "weight": weight, "calibrate_on": calibrate_on,
               "threshold": gate and gate.threshold,
               "n_off_prompt": m["n_off_prompt"], **{k: m[k] for k in FIGURES}}  # fmt: skip
        rows.append(row)
        figures = " ".join(f"{k} {m[k]:.3f}" for k in FIGURES)
        took = time.perf_counter() - t0
        print(
            f"seed {seed} q={quantile} w={weight} calibration on {calibrate_on}: {figures} ({took:.0f}s)",
            flush=True,
        )
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--models", type=Path, default=OUT / "rm_quality",
                   help="rm_quality's output folder (length+pad-s<seed>/model)")  # fmt: skip
    p.add_argument("--probe-answers", type=int, default=400)
    p.add_argument("--fit-pairs", type=int, default=300)
    p.add_argument("--out", type=Path, default=OUT / "pmi_gate.json")
    args = p.parse_args(argv)
    if args.models != OUT / "rm_quality" and not args.models.is_dir():
        p.error(f"--models {args.models}: no such folder")  # named by hand: not "nothing to measure", rc 0
    pairs = shared_pairs()
    dirs = {s: args.models / f"length+pad-s{s}" / "model" for s in args.seeds}
    missing = [str(d) for d in dirs.values() if not (d / "reward_config.json").is_file()]
    if not pairs or missing:
        why = f"no data in {DATA_DIR}" if not pairs else f"no model in {', '.join(missing)}"
        print(f"nothing to measure: {why} (run bench/rm_quality.py --only length+pad first)")
        return 0
    torch.set_num_threads(2)
    rows = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for seed, model_dir in dirs.items():
        rows += measure_split(pairs, seed, model_dir, args.probe_answers, args.fit_pairs)
        args.out.write_text(json.dumps({"grid": GRID, "rows": rows}, indent=2) + "\n")
    print(f"\nmedians over seeds {args.seeds}; accuracies in %")
    print(f"{'quantile':>8} {'weight':>6} {'calib. on':>9} " + " ".join(f"{k[:12]:>12}" for k in FIGURES))
    for quantile, weight, calibrate_on in GRID:
        sel = [
            r
            for r in rows
            if (r["quantile"], r["weight"], r["calibrate_on"]) == (quantile, weight, calibrate_on)
        ]
        cells = [statistics.median(r[k] for r in sel) for k in FIGURES]
        text = [
            f"{v:+12.3f}" if k == "pearson_length" else f"{100 * v:12.1f}"
            for k, v in zip(FIGURES, cells, strict=True)
        ]
        print(f"{quantile or '-':>8} {weight or '-':>6} {calibrate_on:>9} " + " ".join(text))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
