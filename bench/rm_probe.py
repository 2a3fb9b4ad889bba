"""Does a stronger backbone lift the length-debiased reward more than plain Bradley-Terry? Linear probes.

Issue 9 asks the shipped reward's balanced accuracy to beat plain Bradley-Terry's by 3 points; on
MiniLM-L6 (fine-tuned, bench/rm_quality.py) it does not, and the open question is whether a larger
backbone changes that. Fine-tuning SmolLM2-135M on this 2-core CPU takes hours, so this bench asks it
of frozen features: each backbone reads every (prompt, answer) of the shared human pairs once
(`--max-length` tokens: the end of the prompt, the head and tail of the answer, as the trainer cuts
them), and linear Bradley-Terry heads are fitted on the cached features, per hidden layer and pooling
(mean over the answer's tokens, or the last token):

- plain: P(chosen) = sigmoid(w . (f_c - f_r));
- length: the same plus the learned length covariate beta * (log(1+chars_c) - log(1+chars_r)),
  dropped at use (the trainer's default objective);
- length+bal: the length covariate, with the pairs the longer and the shorter answer won weighing the
  same;
- "-resid": plain and length on features from which the part linear in log length was projected out
  (over all answers, no labels), so the reward is length-free as trained, not only after calibration.

"+cal" is the deployed reward: the trainer's own LengthCalibration fitted on the training answers and
subtracted. The L2 strength is chosen per run on an inner split of the training pairs (by prompt, full
model accuracy), never on validation. Splits are bench/rm_quality.py's (by prompt, --val-fraction,
one per seed), figures are rewardtrainer.evaluate's, medians over the seeds.

    nice -n 10 .venv/bin/python bench/rm_probe.py                       # MiniLM-L6 and SmolLM2-135M
    nice -n 10 .venv/bin/python bench/rm_probe.py --backbones minilm    # 2 minutes

Feature extraction takes about 2 minutes for MiniLM-L6 and 23 for SmolLM2-135M (GGUF, 30 layers) on
2 cores at max_length 256; features are cached under bench/out/rm_probe/ and reused when present.
Writes bench/out/rm_probe.json. Exits 0 with a message when the data folder is absent.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.rm_quality import DATA_DIR, shared_pairs  # noqa: E402
from rewardtrainer.calibrate import LengthCalibration  # noqa: E402
from rewardtrainer.data import split_by_prompt, truncate  # noqa: E402
from rewardtrainer.evaluate import metrics_from_rewards  # noqa: E402

OUT = ROOT / "bench" / "out"
VARIANTS = ("plain", "length", "length+bal")
RESIDUALIZED = ("plain", "length")  # the same heads on features with log length projected out
C_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
FIGURES = {
    "acc": "accuracy",
    "full": "accuracy_full",
    "longer": "accuracy_longer_won",
    "shorter": "accuracy_shorter_won",
    "balanced": "balanced_accuracy",
    "pearson": "pearson_length",
}
LENGTH_SCALE = 10.0  # the covariate enters as 10 x its log ratio, so the L2 penalty barely touches beta


# --- features -------------------------------------------------------------------------------------------


def load_backbone(name: str):
    """(tokenizer, model, is_decoder) for 'minilm' (the shipped encoder) or 'smollm2' (the GGUF policy)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    if name == "smollm2":
        from rewardtrainer.sampling import default_policy

        folder, gguf = default_policy()
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
        return tok, AutoModel.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32).eval(), True
    from rewardtrainer.config import default_backbone

    tok = AutoTokenizer.from_pretrained(default_backbone())
    return tok, AutoModel.from_pretrained(default_backbone(), dtype=torch.float32).eval(), False


def encode(tok, is_decoder: bool, prompt: str, answer: str, max_length: int) -> tuple[list[int], int]:
    """(token ids, index of the answer's first token): the chat template for a decoder, [CLS] prompt
    [SEP] answer [SEP] for an encoder."""
    p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    a_ids = tok(answer, add_special_tokens=False)["input_ids"]
    p_ids, a_ids = truncate(p_ids, a_ids, max_length - 12)  # room for the template's own tokens
    if is_decoder:
        head = tok.apply_chat_template(
            [{"role": "user", "content": tok.decode(p_ids)}], add_generation_prompt=True, tokenize=False
        )
        head_ids = tok(head, add_special_tokens=False)["input_ids"]
        end = tok(tok.eos_token or "", add_special_tokens=False)["input_ids"]
        return head_ids + a_ids + end, len(head_ids)
    return [tok.cls_token_id, *p_ids, tok.sep_token_id, *a_ids, tok.sep_token_id], len(p_ids) + 2


def extract(name: str, texts: list[tuple[str, str]], max_length: int, batch_size: int = 16):
    """(features (N, layers, 2 poolings, hidden), layer numbers) for every (prompt, answer)."""
    import torch

    tok, model, is_decoder = load_backbone(name)
    n_layers = model.config.num_hidden_layers
    layers = sorted({n_layers // 2, (3 * n_layers) // 4, n_layers})
    enc = [encode(tok, is_decoder, p, a, max_length) for p, a in texts]
    order = np.argsort([len(ids) for ids, _ in enc])  # similar lengths share a batch: little padding
    out = np.zeros((len(texts), len(layers), 2, model.config.hidden_size), np.float32)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(len(enc[i][0]) for i in rows)
            ids = torch.full((len(rows), width), pad)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, i in enumerate(rows):
                ids[r, : len(enc[i][0])] = torch.tensor(enc[i][0])
                mask[r, : len(enc[i][0])] = 1
            hidden = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
            for r, i in enumerate(rows):
                n, first = len(enc[i][0]), enc[i][1]
                for j, layer in enumerate(layers):
                    out[i, j, 0] = hidden[layer][r, first:n].mean(0).numpy()
                    out[i, j, 1] = hidden[layer][r, n - 1].numpy()
    return out, layers


def cached_features(name: str, texts: list[tuple[str, str]], max_length: int, cache: Path):
    """`extract`, read from / written to `cache` (keyed by backbone, length and the texts)."""
    stem = cache / f"{name}{max_length}"
    meta_file, data_file = stem.with_suffix(".json"), stem.with_suffix(".npy")
    if meta_file.exists() and data_file.exists():
        meta = json.loads(meta_file.read_text())
        if [tuple(k) for k in meta["keys"]] == texts:
            return np.load(data_file), meta["layers"], 0.0
    t0 = time.perf_counter()
    features, layers = extract(name, texts, max_length)
    seconds = time.perf_counter() - t0
    cache.mkdir(parents=True, exist_ok=True)
    np.save(data_file, features)
    meta_file.write_text(json.dumps({"layers": layers, "keys": [list(k) for k in texts]}))
    return features, layers, seconds


# --- heads ----------------------------------------------------------------------------------------------


class Probe:
    """Linear Bradley-Terry heads on one (standardised) feature matrix."""

    def __init__(self, features: np.ndarray, index: dict[tuple[str, str], int]):
        self.f, self.index = features, index

    def rows(self, pairs, side: str) -> np.ndarray:
        return np.stack([self.f[self.index[(p.prompt, getattr(p, side))]] for p in pairs])

    def fit(self, pairs, variant: str, C: float, seed: int) -> tuple[np.ndarray, float]:
        """(w, beta): a logistic regression without intercept on feature differences, each pair shown
        in a random orientation (so both classes occur)."""
        from sklearn.linear_model import LogisticRegression

        diff = self.rows(pairs, "chosen") - self.rows(pairs, "rejected")
        log_ratio = np.array([np.log1p(len(p.chosen)) - np.log1p(len(p.rejected)) for p in pairs])
        if variant != "plain":
            diff = np.hstack([diff, LENGTH_SCALE * log_ratio[:, None]])
        sign = np.where(np.random.default_rng(seed).random(len(diff)) < 0.5, 1.0, -1.0)
        weight = None
        if variant.endswith("+bal"):
            longer = log_ratio > 0
            weight = np.where(longer, 0.5 / max(longer.mean(), 1e-9), 0.5 / max(1 - longer.mean(), 1e-9))
        clf = LogisticRegression(C=C, fit_intercept=False, max_iter=3000)
        clf.fit(diff * sign[:, None], (sign > 0).astype(int), sample_weight=weight)
        coef = clf.coef_[0]
        beta = float(coef[-1] * LENGTH_SCALE) if variant != "plain" else 0.0
        return coef[: self.f.shape[1]], beta

    def calibration(self, w: np.ndarray, pairs) -> LengthCalibration:
        answers = sorted({(p.prompt, a) for p in pairs for a in (p.chosen, p.rejected)})
        rewards = self.f[[self.index[k] for k in answers]] @ w
        return LengthCalibration.fit(rewards, [len(a) for _, a in answers])

    def metrics(self, w, beta, pairs, calibration: LengthCalibration | None = None) -> dict:
        q_c, q_r = self.rows(pairs, "chosen") @ w, self.rows(pairs, "rejected") @ w
        len_c = np.array([len(p.chosen) for p in pairs], float)
        len_r = np.array([len(p.rejected) for p in pairs], float)
        if calibration is not None:
            q_c, q_r = q_c - calibration(len_c), q_r - calibration(len_r)
        m = metrics_from_rewards(q_c, q_r, len_c, len_r, beta * np.log1p(len_c), beta * np.log1p(len_r))
        return {key: m[key] for key in FIGURES.values()}


def run_split(probe: Probe, pairs, variant: str, seed: int, val_fraction: float) -> dict:
    """Raw and deployed figures of one variant on one split, L2 strength chosen on an inner split."""
    train, val = split_by_prompt(pairs, val_fraction, seed)
    inner_train, inner_val = split_by_prompt(train, 0.2, seed + 100)
    score = {c: probe.metrics(*probe.fit(inner_train, variant, c, seed), inner_val) for c in C_GRID}
    C = max(C_GRID, key=lambda c: (score[c]["accuracy_full"], -c))  # ties: the stronger penalty
    w, beta = probe.fit(train, variant, C, seed)
    return {
        "C": C,
        "beta": beta,
        "raw": probe.metrics(w, beta, val),
        "cal": probe.metrics(w, beta, val, probe.calibration(w, train)),
    }


def residualized(x: np.ndarray, log_length: np.ndarray) -> np.ndarray:
    """`x` with the part of every feature that is linear in [1, log length] removed (no labels): any
    linear reward on it is uncorrelated with log length by construction, before any calibration."""
    basis = np.column_stack([np.ones_like(log_length), log_length])
    coef, *_ = np.linalg.lstsq(basis, x, rcond=None)
    rest = x - basis @ coef
    return rest / (rest.std(0) + 1e-6)


def probe_backbone(name: str, features: np.ndarray, layers, index, pairs, args) -> dict:
    """Every layer x pooling x variant of one backbone: rows of median figures (printed as they come)."""
    log_length = np.log1p(np.array([len(answer) for _, answer in index], float))  # index: in text order
    rows = {}
    for j, layer in enumerate(layers):
        for pooling, pooling_name in enumerate(("mean", "last")):
            x = features[:, j, pooling]
            x = (x - x.mean(0)) / (x.std(0) + 1e-6)  # no labels: all answers
            probes = {"": Probe(x, index), "-resid": Probe(residualized(x, log_length), index)}
            for variant, feature_set in [(v, "") for v in VARIANTS] + [(v, "-resid") for v in RESIDUALIZED]:
                runs = [
                    run_split(probes[feature_set], pairs, variant, s, args.val_fraction) for s in args.seeds
                ]
                for which, suffix in (("raw", ""), ("cal", "+cal")):
                    label = f"{name} L{layer} {pooling_name} {variant}{feature_set}{suffix}"
                    row = medians(runs, which)
                    rows[label] = {
                        "medians": row,
                        "runs": [r[which] for r in runs],
                        "C": [r["C"] for r in runs],
                        "beta": [r["beta"] for r in runs],
                    }
                    cells = "".join(f"{fmt(k, row[k]):>9s}" for k in FIGURES.values())
                    print(f"{label:48s}{cells}", flush=True)
    return rows


# --- report ---------------------------------------------------------------------------------------------


def medians(runs: list[dict], which: str) -> dict:
    return {k: statistics.median(r[which][k] for r in runs) for k in FIGURES.values()}


def fmt(key: str, v: float) -> str:
    return f"{v:+.3f}" if key == "pearson_length" else f"{100 * v:.1f}"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="linear reward probes on frozen backbones")
    p.add_argument("--data-dir", type=Path, default=DATA_DIR)
    p.add_argument("--backbones", nargs="+", choices=["minilm", "smollm2"], default=["minilm", "smollm2"])
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cache", type=Path, default=OUT / "rm_probe")
    p.add_argument("--out", type=Path, default=OUT / "rm_probe.json")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    pairs = shared_pairs(args.data_dir)
    if not pairs:
        print(f"SKIP: no preference data in {args.data_dir} (the shared data sets are not in a user's clone)")
        return 0
    texts = list(dict.fromkeys((p.prompt, a) for p in pairs for a in (p.chosen, p.rejected)))
    index = {t: i for i, t in enumerate(texts)}
    report: dict = {
        "n_pairs": len(pairs),
        "seeds": args.seeds,
        "max_length": args.max_length,
        "backbones": {},
    }
    print(f"{len(pairs)} pairs, {len(texts)} distinct answers; seeds {args.seeds}; accuracies in %")
    print(f"{'backbone layer pooling variant':48s}" + "".join(f"{h:>9s}" for h in FIGURES))
    for name in args.backbones:
        features, layers, seconds = cached_features(name, texts, args.max_length, args.cache)
        rows = probe_backbone(name, features, layers, index, pairs, args)
        report["backbones"][name] = {"extract_seconds": seconds, "layers": layers, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
