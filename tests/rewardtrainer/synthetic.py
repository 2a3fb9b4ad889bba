"""Synthetic preference data for the rewardtrainer tests."""

from __future__ import annotations

import random

from rewardtrainer.data import PreferencePair

WORDS = "the a cat dog runs fast slow blue red green house tree car road sky river stone light".split()


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choices(WORDS, k=n))


def keyword_pairs(
    n: int, seed: int = 0, n_prompts: int = 40, longer_chosen: float = 0.5
) -> list[PreferencePair]:
    """Chosen answers contain the keyword 'excellent'; in `longer_chosen` of the pairs chosen is also the
    longer one (0.5 = length carries no signal)."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        short, long = rng.randint(2, 6), rng.randint(10, 18)
        n_chosen, n_rejected = (long, short) if rng.random() < longer_chosen else (short, long)
        k = i % n_prompts
        pairs.append(
            PreferencePair(
                prompt=f"question {k}: {sentence(random.Random(k), 6)}",
                chosen=sentence(rng, n_chosen) + " excellent",
                rejected=sentence(rng, n_rejected),
                pair_id=f"p{i}",
                prompt_id=f"q{k}",
            )
        )
    return pairs
