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


TOPICS = "cat dog house tree car road sky river stone light".split()
FILL = "the a runs fast slow blue red green".split()


def topic_pairs(n: int, seed: int = 0, n_prompts: int = 40) -> list[PreferencePair]:
    """Each prompt asks about one topic word and both of its answers mention it; chosen answers also
    contain 'excellent'. An answer to a prompt about another topic misses this prompt's word: what a
    relevance head can learn and a Bradley-Terry head on these pairs cannot (both sides share it)."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        k = i % n_prompts
        topic = TOPICS[k % len(TOPICS)]

        def answer(rng=rng, topic=topic) -> str:
            words = rng.choices(FILL, k=rng.randint(3, 8))
            words.insert(rng.randint(0, len(words)), topic)
            return " ".join(words)

        pairs.append(
            PreferencePair(
                prompt=f"question {k}: tell me about the {topic}",
                chosen=answer() + " excellent",
                rejected=answer(),
                pair_id=f"t{i}",
                prompt_id=f"q{k}",
            )
        )
    return pairs
