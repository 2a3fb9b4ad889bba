"""Pair augmentation and probes: prompt-mismatch pairs (RRM), neighbouring prompts, padded answers.

RRM (Liu et al. 2024, "RRM: Robust Reward Model Training Mitigates Reward Hacking", arXiv 2409.13156)
adds pairs in which an answer to THIS prompt beats an answer written for a different prompt. Such a
pair can only be won by checking that the answer addresses the prompt, never by length (the foreign
answer is as often longer as shorter), so it teaches the artefact-free part of the preference. The
neighbouring-prompt variant takes the foreign answer from the most similar other prompt (MiniLM
sentence embeddings, cosine), which makes the pair harder: the foreign answer is on a related topic.

    neighbours = prompt_neighbours(pairs, embed=minilm_embedder())   # prompt key -> nearest other key
    extra = mismatch_pairs(pairs, ratio=0.5, seed=0, neighbours=neighbours)
    padded = pad_answer(answer, prompt, kind="filler")                # for the padding test
    extra += padded_pairs(pairs, ratio=0.25, seed=0)      # training: padding in other words
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence

from .data import PreferencePair, prompt_groups

log = logging.getLogger(__name__)

PAD_KINDS = ("filler", "restate", "repeat")
FILLER = (
    " In summary, it is worth noting that the points above are important to keep in mind, and "
    "considering them carefully will help in understanding the topic more fully overall."
)


def minilm_embedder(model_dir: str | None = None, *, batch_size: int = 64, max_length: int = 128):
    """A function texts -> (N, 384) unit vectors: MiniLM-L6 mean-pooled sentence embeddings."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from .config import default_backbone

    model_dir = model_dir or default_backbone()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()

    @torch.inference_mode()
    def embed(texts: Sequence[str]):
        out = []
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(
                list(texts[i : i + batch_size]),
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            )
            hidden = model(**enc).last_hidden_state  # (B, T, H)
            mask = enc["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
            v = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, H)
            out.append(torch.nn.functional.normalize(v, dim=-1))
        return torch.cat(out).numpy() if out else torch.zeros(0, model.config.hidden_size).numpy()

    return embed


# Prompts at least this similar (cosine) are the same question reworded ("Are there some methods..." /
# "Is there some method..."): an answer to one answers the other, so it is never the foreign answer.
SAME_QUESTION_COSINE = 0.95


def prompt_neighbours(
    pairs: Sequence[PreferencePair], embed: Callable[[Sequence[str]], object]
) -> dict[str, str]:
    """Each prompt group's key (`prompt_groups`) -> the key of the most similar OTHER prompt (cosine
    of `embed` vectors) that is not the same question reworded (below SAME_QUESTION_COSINE); a prompt
    with none is left out (the callers then take a random other prompt)."""
    import numpy as np

    groups, _ = prompt_groups(pairs)
    keys = list(groups)
    if len(keys) < 2:
        return {}
    vectors = np.asarray(embed([pairs[groups[k][0]].prompt for k in keys]), dtype=np.float32)  # (P, H)
    sims = vectors @ vectors.T  # (P, P)
    np.fill_diagonal(sims, -np.inf)
    sims[sims >= SAME_QUESTION_COSINE] = -np.inf
    nearest = sims.argmax(axis=1)
    found = np.isfinite(sims[np.arange(len(keys)), nearest])
    return {k: keys[int(j)] for k, j, ok in zip(keys, nearest, found, strict=True) if ok}


def mismatch_pairs(
    pairs: Sequence[PreferencePair],
    *,
    ratio: float,
    seed: int,
    neighbours: dict[str, str] | None = None,
) -> list[PreferencePair]:
    """About `ratio * len(pairs)` extra pairs: (prompt, an answer to it) beats (prompt, an answer to
    another prompt). The on-prompt answer is the chosen or the rejected one (both address the prompt);
    the foreign answer is the chosen answer of a pair of the neighbouring prompt (or a random other
    prompt). Margin 0; the human pair's weight carries over."""
    groups, key_of = prompt_groups(pairs)
    keys = list(groups)
    if len(keys) < 2 or ratio <= 0:
        return []
    rng = random.Random(seed)
    n = round(ratio * len(pairs))
    picks = [rng.randrange(len(pairs)) for _ in range(n)]
    out = []
    for k, i in enumerate(picks):
        p = pairs[i]
        key = key_of[i]
        other = neighbours.get(key) if neighbours else None
        while other is None or other == key:
            other = keys[rng.randrange(len(keys))]
        foreign = pairs[groups[other][rng.randrange(len(groups[other]))]]
        answer = p.chosen if rng.random() < 0.5 else p.rejected
        out.append(
            PreferencePair(
                prompt=p.prompt,
                chosen=answer,
                rejected=foreign.chosen,
                margin=0.0,
                weight=p.weight,
                pair_id=f"{p.pair_id}~mismatch{k}",
                prompt_id=p.prompt_id,
            )
        )
    return out


# Training-time padding (TrainConfig.augment_padding) uses the test's three kinds in other words: the
# padding test's filler sentence, its restatement template and its whole-answer repetition never appear
# in training, so the test measures whether the lesson carries over to padding the model has not seen.
TRAIN_FILLERS = (
    "I hope this helps, and feel free to ask if anything is unclear.",
    "Great question! This is something many people wonder about.",
    "Overall, this is an interesting and important topic with many aspects to consider.",
    "It is always a good idea to keep these considerations in mind going forward.",
    "There are many factors involved, and each of them deserves careful thought.",
    "Let me know if you would like more details on any part of this answer.",
    "As with many things, the details can matter a great deal in practice.",
    "This should give you a clear and complete picture of the situation.",
)
TRAIN_RESTATEMENTS = (
    'Regarding your question, "{q}", here is what I can say.',
    "Thank you for asking: {q} Let me explain.",
    "The question is: {q} The answer follows.",
)


def train_padding(answer: str, prompt: str, kind: str, rng: random.Random) -> str:
    """A longer copy that adds nothing, in a form the padding test never uses (see TRAIN_FILLERS)."""
    if kind == "filler":
        extra = " ".join(rng.sample(TRAIN_FILLERS, k=rng.randint(1, 2)))
        return f"{extra} {answer}" if rng.random() < 0.3 else f"{answer} {extra}"
    if kind == "restate":
        question = " ".join(prompt.split())[:300]
        return f"{rng.choice(TRAIN_RESTATEMENTS).format(q=question)} {answer}"
    if kind == "repeat":  # part of the answer again, as a recap (the test repeats all of it)
        words = answer.split()
        start = rng.randrange(max(1, len(words) // 2))
        return f"{answer}\n\nTo recap: {' '.join(words[start : start + max(8, len(words) // 2)])}"
    raise ValueError(f"unknown padding kind {kind!r}")


def padded_pairs(pairs: Sequence[PreferencePair], *, ratio: float, seed: int) -> list[PreferencePair]:
    """About `ratio * len(pairs)` extra pairs: (prompt, an answer) beats (prompt, the same answer padded
    with filler, a restatement of the question or a recap; `train_padding`). Such a pair can only be won
    by a reward that does not pay for words that add nothing. Margin 0; the human pair's weight carries
    over."""
    if ratio <= 0 or not pairs:
        return []
    rng = random.Random(seed)
    out = []
    for k in range(round(ratio * len(pairs))):
        p = pairs[rng.randrange(len(pairs))]
        answer = p.chosen if rng.random() < 0.5 else p.rejected
        kind = PAD_KINDS[k % len(PAD_KINDS)]
        out.append(
            PreferencePair(
                prompt=p.prompt,
                chosen=answer,
                rejected=train_padding(answer, p.prompt, kind, rng),
                margin=0.0,
                weight=p.weight,
                pair_id=f"{p.pair_id}~padded{k}",
                prompt_id=p.prompt_id,
            )
        )
    return out


def pad_answer(answer: str, prompt: str, kind: str) -> str:
    """A longer copy that adds nothing: generic filler, a restatement of the question, or repetition."""
    if kind == "filler":
        return answer + FILLER
    if kind == "restate":
        question = " ".join(prompt.split())[:300]
        return f"You asked: {question} Here is my answer. {answer}"
    if kind == "repeat":
        return f"{answer}\n\n{answer}"
    raise ValueError(f"unknown padding kind {kind!r}")
