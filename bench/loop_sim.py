"""Three turns of the loop with simulated, length-biased raters: does the policy get better, or longer?

The raters are the simulator of labelapp/services/simulation.py: its true utility (`answer_utilities`)
and its decision rule (`decide`: utility difference + length_bias x log word ratio + noise). Run from
the project root, with the app's environment (DJANGO_ENV, DATABASE_URL, REDIS_URL) set, because the
simulator lives in labelapp:

    nice -n 10 .venv/bin/python bench/loop_sim.py              # small: about 40 min on 2 CPU cores
    nice -n 10 .venv/bin/python bench/loop_sim.py --seeds 1 2 --variants debiased   # more seeds
    nice -n 10 .venv/bin/python bench/loop_sim.py --seeds 0 1 2 --variants covariate  # no calibration
    .venv/bin/python bench/loop_sim.py --full                  # full size (a GPU: minutes)

Each turn, for the shipped length-debiased reward model (length covariate + calibration + padding
pairs) and, as the control, a plain Bradley-Terry one, with the same seeds:
1. the current policy answers every training prompt 4 times;
2. a simulated rater judges every pair of distinct answers to a prompt (6 per prompt) by the
   simulator's rule (ties dropped): it likes quality, and also length (--length-bias, the simulator's
   default 0.6 per e-fold of the word ratio);
3. the reward model is trained on all judgments so far (its accuracy on this turn's fresh judgments is
   measured first, with last turn's model);
4. one PPO round against it (KL to v0), then the new policy answers the held-out evaluation prompts
   (4 samples each).
Per turn (turn 0 = policy v0, before any round) it prints and writes to bench/out/loop_sim.json: mean
true utility of the policy's evaluation answers, mean answer length in tokens, KL to v0, and last turn's
reward model on this turn's fresh judgments: its agreement with the raters, with the true utility's
order (which the raters themselves get right about 70% of the time), and how often it prefers the
shorter answer. With several seeds (each its own prompt split and samples) the summary
judges the targets on the mean curve over seeds and counts the seeds that rose every turn. Targets:
with the debiased model the true utility rises every turn and the mean length grows at most 10% from v0
over three turns; the control shows what happens without it.

Sizes (small / --full): 30 / 96 training prompts, 15 / 48 evaluation prompts (the 45 demo prompts, whose
key facts the simulator knows, then prompts of ../shared/data), 96 / 128 new tokens, 6 / 16 PPO updates
of 8 / 32 answers (2 / 4 epochs, learning rate 1e-5 / 3e-6), reward model 2 epochs on MiniLM-L6.
On a GPU the same script runs the policy in bf16 (rewardtrainer picks CUDA on its own); generation
dominates there, which is where an inference engine would come in (README, "How a bigger policy runs").
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out"
from benchargs import finite_float, non_negative_float, non_negative_int, positive_int  # noqa: E402  (bench/ is on sys.path when run)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="three loop turns with length-biased simulated raters")
    p.add_argument("--full", action="store_true", help="full sizes (see the module docstring)")
    p.add_argument("--turns", type=positive_int, default=3)
    p.add_argument(
        "--length-bias", type=finite_float, default=0.6, help="rater's pull per e-fold of word ratio"
    )
    p.add_argument(
        "--noise", type=non_negative_float, default=0.3, help="rater's noise (the simulator's scale)"
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed; means over seeds")
    p.add_argument(
        "--variants", nargs="+", choices=["debiased", "plain", "covariate"], default=["debiased", "plain"],
        help="which reward models to run (the control 'plain' doubles the time; 'covariate': the length "
        "covariate without the calibration)",
    )  # fmt: skip
    p.add_argument(
        "--answers-per-prompt", type=non_negative_int, default=0,
        help="answers per training prompt a turn (0 = the size's 4); the rater judges every pair of them, "
        "so 8 gives 28 judgments a prompt instead of 6",
    )  # fmt: skip
    p.add_argument(
        "--ppo-batch", type=non_negative_int, default=0,
        help="answers per PPO update, even (0 = the size's: 8, or 32 with --full); the round keeps its "
        "number of updates and its two minibatches, so a larger batch averages each step over more answers",
    )  # fmt: skip
    p.add_argument("--policy", default="", help="'' = SmolLM2-135M-Instruct (GGUF)")
    p.add_argument("--workdir", type=Path, default=ROOT / "runs" / "loop_sim")
    p.add_argument("--out", type=Path, default=OUT / "loop_sim.json")
    args = p.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds):  # one seed's two runs were merged into one curve
        p.error(f"--seeds: each seed once, not {' '.join(map(str, args.seeds))}")
    return args


def sizes(full: bool) -> dict:
    if full:
        return {
            "train_prompts": 96,
            "eval_prompts": 48,
            "max_new_tokens": 128,
            "ppo_updates": 16,
            "batch": 32,
            "ppo_epochs": 4,
            "ppo_lr": 3e-6,
            "answers_per_prompt": 4,
            "eval_samples": 4,
        }
    # Few, larger steps: 3e-6 over 4 updates leaves a 135M policy where it was.
    return {
        "train_prompts": 30,
        "eval_prompts": 15,
        "max_new_tokens": 96,
        "ppo_updates": 6,
        "batch": 8,
        "ppo_epochs": 2,
        "ppo_lr": 1e-5,
        "answers_per_prompt": 4,
        "eval_samples": 4,  # 60 evaluation answers a turn: at 30 one turn's step was within the noise
    }


def load_prompts(n_train: int, n_eval: int, seed: int) -> tuple[list[str], list[str]]:
    """The demo project's prompts first (the simulator knows their key facts, so its true utility
    measures content there), then prompts of the shared preference data; split, no overlap."""
    from rewardtrainer.data import load_jsonl

    demo = [d["prompt"] for d in json.loads((ROOT / "labelapp" / "demo" / "prompts.json").read_text())]
    random.Random(seed).shuffle(demo)
    extra: list[str] = []
    data_dir = ROOT.parent / "shared" / "data" / "preferences"
    for path in sorted(data_dir.glob("*.jsonl")) if data_dir.is_dir() else []:
        extra.extend(p.prompt for p in load_jsonl(path))
    extra = sorted({t for t in extra if 0 < len(t) < 600} - set(demo))
    random.Random(seed).shuffle(extra)
    texts = demo + extra
    # the evaluation prompts come from the demo set too, where the utility is most meaningful
    n_eval_demo = min(n_eval, len(demo) // 3)
    eval_prompts = demo[:n_eval_demo] + extra[: n_eval - n_eval_demo]
    train = [t for t in texts if t not in set(eval_prompts)][:n_train]
    return train, eval_prompts


def sample_groups(policy, tok, prompts, params, n: int, seed: int) -> list[list]:
    """`n` sampled answers per prompt (one batch of len(prompts) * n rows, in order)."""
    from rewardtrainer.sampling import HFGenerator

    flat = HFGenerator(policy, tok).generate([p for p in prompts for _ in range(n)], params, seed=seed)
    return [flat[i * n : (i + 1) * n] for i in range(len(prompts))]


def judge(prompts, groups, utilities, args, rng):
    """A length-biased simulated rater (the simulator's rule) judges every pair of distinct answers
    to each prompt: a PreferencePair per decided pair (ties dropped, as the app drops them), and beside
    each its true utilities (chosen, rejected), which the reward model never sees."""
    from labelapp.services.simulation import RaterConfig, decide
    from rewardtrainer.data import PreferencePair

    rater = RaterConfig(length_bias=args.length_bias, position_bias=0.0, noise=args.noise)
    pairs, truth = [], []
    for i, (p, answers) in enumerate(zip(prompts, groups, strict=True)):
        texts = [a.text for a in answers]
        u = utilities(prompt=p, texts=texts)
        for j, k in itertools.combinations(range(len(texts)), 2):
            if texts[j].strip() == texts[k].strip():
                continue
            d = decide(
                config=rater,
                u_a=u[j],
                u_b=u[k],
                words_a=len(texts[j].split()),
                words_b=len(texts[k].split()),
                a_left=rng.random() < 0.5,
                rng=rng,
            )
            if d.preference == 0:
                continue
            chosen, rejected = (texts[k], texts[j]) if d.preference > 0 else (texts[j], texts[k])
            truth.append((u[k], u[j]) if d.preference > 0 else (u[j], u[k]))
            pairs.append(
                PreferencePair(
                    prompt=p, chosen=chosen, rejected=rejected, pair_id=f"{i}-{j}-{k}", prompt_id=p
                )
            )
    return pairs, truth


def rm_agreement(scorer, pairs, truth) -> dict:
    """Last turn's reward model on this turn's fresh pairs: how often it agrees with the raters' choice
    (`rm_accuracy_fresh`), with the true utility's order (`rm_accuracy_true`, pairs of unequal utility),
    and how often it prefers the shorter answer (`rm_prefers_shorter`, pairs of unequal word count)."""
    if scorer is None or not pairs:
        return {"rm_accuracy_fresh": None, "rm_accuracy_true": None, "rm_prefers_shorter": None}
    c = scorer([p.prompt for p in pairs], [p.chosen for p in pairs]).float().numpy()
    r = scorer([p.prompt for p in pairs], [p.rejected for p in pairs]).float().numpy()
    margin = c - r  # > 0: the reward model sides with the rater
    true_sign = [uc - ur for uc, ur in truth]
    words = [len(p.chosen.split()) - len(p.rejected.split()) for p in pairs]  # > 0: the chosen is longer
    unequal = [(float(m), t) for m, t in zip(margin, true_sign, strict=True) if t != 0]
    longer = [(float(m), w) for m, w in zip(margin, words, strict=True) if w != 0]
    return {
        "rm_accuracy_fresh": float((margin > 0).mean()),
        "rm_accuracy_true": sum((m > 0) == (t > 0) for m, t in unequal) / len(unequal) if unequal else None,
        "rm_prefers_shorter": sum((m > 0) == (w < 0) for m, w in longer) / len(longer) if longer else None,
    }


def evaluate(policy, tok, reference, eval_prompts, params, utilities, args, n: int) -> dict:
    """The policy's answers (n per held-out prompt): mean true utility, mean length, KL to v0."""
    from rewardtrainer.ppo import sequence_kl
    from rewardtrainer.sampling import HFGenerator

    groups = sample_groups(policy, tok, eval_prompts, params, n, seed=args.seed + 7)
    answers = [a for g in groups for a in g]
    u = [
        x
        for p, g in zip(eval_prompts, groups, strict=True)
        for x in utilities(prompt=p, texts=[a.text for a in g])
    ]
    kls = sequence_kl(policy, reference, answers, HFGenerator(policy, tok).pad_id, params.temperature)
    return {
        "_answers": [([a.text for a in g], u[i * n : (i + 1) * n]) for i, g in enumerate(groups)],
        "true_utility": sum(u) / len(u),
        "mean_length_tokens": sum(a.num_tokens for a in answers) / len(answers),
        "no_eos_share": sum(not a.finished for a in answers) / len(answers),
        "kl_to_v0": sum(kls) / len(kls),
    }


def win_rates(previous, new, args, rng) -> dict:
    """The over-optimization watch's figures for this turn's policy against last turn's, on the
    evaluation prompts: answer k of each prompt against the previous policy's answer k, judged by the
    length-biased simulated rater (ties count half): the raw win rate, the length-controlled one (the
    app's `metrics.length_controlled_win_rate`, the raters' pull measured on pairs of the new policy's
    own answers, 0 vs 1 and 2 vs 3) and the true one (by the simulator's utility)."""
    from labelapp import metrics
    from labelapp.services.simulation import RaterConfig, decide

    rater = RaterConfig(length_bias=args.length_bias, position_bias=0.0, noise=args.noise)

    def judged(text_a, text_b, u_a, u_b):  # 1: A won, 0.5: tie, 0: B won; and log(words_A / words_B)
        wa, wb = max(len(text_a.split()), 1), max(len(text_b.split()), 1)
        d = decide(config=rater, u_a=u_a, u_b=u_b, words_a=wa, words_b=wb, a_left=rng.random() < 0.5, rng=rng)
        return float(metrics.a_won(d.preference)), float(np.log(wa / wb))

    won, x, same, same_x, true = [], [], [], [], []
    for (old_texts, old_u), (new_texts, new_u) in zip(previous, new, strict=True):
        for k in range(len(new_texts)):
            w, lr = judged(new_texts[k], old_texts[k], new_u[k], old_u[k])
            won.append(w)
            x.append(lr)
            true.append(0.5 if new_u[k] == old_u[k] else float(new_u[k] > old_u[k]))
        for k in range(0, len(new_texts) - 1, 2):
            w, lr = judged(new_texts[k], new_texts[k + 1], new_u[k], new_u[k + 1])
            same.append(w)
            same_x.append(lr)
    lc = metrics.length_controlled_win_rate(won, x, same, same_x)["win_rate"]
    return {
        "win_rate_raw": float(np.mean(won)),
        "win_rate_length_controlled": lc.value,
        "win_rate_lc_interval": [lc.lo, lc.hi],
        "win_rate_true": float(np.mean(true)),
    }


# reward-model recipes: the shipped one, the plain control, and the length covariate without the
# calibration (the covariate explains the raters' length pull; nothing flattens the reward in length)
VARIANTS = {
    "debiased": {"objective": "length", "calibrate": True},
    "plain": {"objective": "plain", "calibrate": False, "augment_padding": 0.0},
    "covariate": {"objective": "length", "calibrate": False},
}


def run_variant(name: str, args, s: dict, utility) -> list[dict]:
    from rewardtrainer.ppo import PPOConfig, train_ppo
    from rewardtrainer.sampling import RewardScorer, SamplingParams, load_policy
    from rewardtrainer.train_rm import TrainConfig, fit_reward_model

    work = args.workdir / name
    train_prompts, eval_prompts = load_prompts(s["train_prompts"], s["eval_prompts"], args.seed)
    params = SamplingParams(temperature=0.7, max_new_tokens=s["max_new_tokens"])
    reference, ref_tok = load_policy(args.policy)
    # PPO trains the policy in place: it must not be the reference object itself.
    policy_path, policy, tok = args.policy, copy.deepcopy(reference), ref_tok
    rng = random.Random(args.seed)
    all_pairs, scorer = [], None
    rows = [
        {
            "reward_model": name,
            "turn": 0,
            **evaluate(policy, tok, reference, eval_prompts, params, utility, args, s["eval_samples"]),
        }
    ]
    previous_answers = rows[0].pop("_answers")
    print(json.dumps(rows[0]), flush=True)
    for turn in range(1, args.turns + 1):
        t0 = time.perf_counter()
        groups = sample_groups(
            policy, tok, train_prompts, params, s["answers_per_prompt"], args.seed * 100 + turn
        )
        fresh, truth = judge(train_prompts, groups, utility, args, rng)
        agreement = rm_agreement(scorer, fresh, truth)
        all_pairs += fresh
        rm_config = TrainConfig(**VARIANTS[name], epochs=2, seed=args.seed)
        rm = fit_reward_model(all_pairs, rm_config, work / f"rm-{turn}")
        scorer = RewardScorer.from_pretrained(rm.model_dir)
        config = PPOConfig(
            policy=policy_path,
            reference="",  # the model object passed below: v0
            updates=s["ppo_updates"],
            batch_size=s["batch"],
            mini_batch_size=max(1, s["batch"] // 2),
            ppo_epochs=s["ppo_epochs"],
            lr=s["ppo_lr"],
            max_new_tokens=s["max_new_tokens"],
            seed=args.seed,
        )
        result = train_ppo(
            train_prompts,
            scorer,
            config,
            work / f"ppo-{turn}",
            policy=policy,
            tokenizer=tok,
            reference=reference,
            resume=False,
        )
        policy, tok, policy_path = result.policy, result.tokenizer, result.policy_dir
        row = {
            "reward_model": name,
            "turn": turn,
            **evaluate(policy, tok, reference, eval_prompts, params, utility, args, s["eval_samples"]),
            **agreement,
            "fresh_pairs": len(fresh),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        answers = row.pop("_answers")
        # its own generator, so that the raters' judgments for training stay what they were
        row |= win_rates(previous_answers, answers, args, random.Random(args.seed * 1000 + turn))
        previous_answers = answers
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def mean_curve(rows: list[dict], name: str) -> list[dict]:
    """Per turn, the mean over seeds of true utility and length (with each seed's utility beside it)."""
    turns = sorted({r["turn"] for r in rows if r["reward_model"] == name})
    curve = []
    for t in turns:
        at = [r for r in rows if r["reward_model"] == name and r["turn"] == t]
        curve.append(
            {
                "turn": t,
                "true_utility": statistics.fmean(r["true_utility"] for r in at),
                "mean_length_tokens": statistics.fmean(r["mean_length_tokens"] for r in at),
                "utility_per_seed": [round(r["true_utility"], 4) for r in at],
            }
        )
    return curve


def rises(values: list[float]) -> bool:
    return all(b > a for a, b in zip(values, values[1:], strict=False))


def summarize(rows: list[dict]) -> dict:
    """The targets on the debiased loop's mean curve over seeds (one seed: that run), and per seed."""
    summary: dict = {}
    for name in VARIANTS:
        curve = mean_curve(rows, name)
        if len(curve) < 2:
            continue
        u = [c["true_utility"] for c in curve]
        growth = curve[-1]["mean_length_tokens"] / curve[0]["mean_length_tokens"] - 1
        seeds = sorted({r["seed"] for r in rows if r["reward_model"] == name})
        per_seed = {
            seed: [r["true_utility"] for r in sorted(rows, key=lambda r: r["turn"])
                   if r["reward_model"] == name and r["seed"] == seed]
            for seed in seeds
        }  # fmt: skip
        summary[name] = {
            "seeds": seeds,
            "mean_curve": curve,
            "utility_rises_every_turn": rises(u),
            "seeds_rising_every_turn": sum(rises(v) for v in per_seed.values()),
            "length_growth": growth,
        }
    if "debiased" in summary:
        summary["length_target_met"] = summary["debiased"]["length_growth"] <= 0.10
    return summary


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    try:
        from labelapp.services.simulation import answer_utilities
    except ImportError as e:
        print(f"the rater simulator is not available ({e}); nothing to run")
        return 0
    s = sizes(args.full)
    if args.answers_per_prompt:
        if args.answers_per_prompt < 2:
            print("--answers-per-prompt needs at least 2 answers to make a pair")
            return 2
        s["answers_per_prompt"] = args.answers_per_prompt
    if args.ppo_batch:
        if args.ppo_batch < 2 or args.ppo_batch % 2:
            print("--ppo-batch needs an even number of answers, at least 2 (two minibatches)")
            return 2
        s["batch"] = args.ppo_batch
    rows = []
    for seed in args.seeds:
        one = argparse.Namespace(**(vars(args) | {"seed": seed, "workdir": args.workdir / f"seed-{seed}"}))
        for name in args.variants:
            rows += [r | {"seed": seed} for r in run_variant(name, one, s, answer_utilities)]
    summary = summarize(rows)
    print(json.dumps(summary))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "sizes": s,
                "args": {k: str(v) for k, v in vars(args).items()},
                "turns": rows,
                "summary": summary,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
