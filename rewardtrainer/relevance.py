"""Relevance gate: does an answer address this prompt at all? A post-hoc term of the deployed reward.

A Bradley-Terry reward learns from pairs that share a prompt, so nothing in its data asks whether an
answer addresses the prompt: measured on the human pairs, the MiniLM reward preferred an answer written
for a neighbouring prompt about 65% of the time (README, off-prompt test). RRM's remedy (arXiv
2409.13156: "an answer to this prompt beats one to another prompt" pairs in the ranking loss) teaches
that, but on this backbone it cost the human pairs their accuracy, and a relevance head trained on
those pairs learned too slowly (README). The gate uses what MiniLM was trained for, sentence
similarity: the cosine between the prompt's and the answer's embeddings, each encoded on its own. On
training prompts a class-balanced logistic fit of P(relevant | cosine) separates their own answers
from answers to the most similar other prompt, and the deployed reward adds

    weight * log sigmoid(a * cosine + b)

which is near 0 for an answer that addresses the prompt and falls by several reward standard
deviations for one that does not (`weight` = the standard deviation of the reward, before the length
calibration, on the answers the gate is fitted on, so the term is in the reward's units). The fit is
four numbers in `reward_config.json`; scoring embeds prompts and answers with the MiniLM encoder (CPU, 22M).

    gate = RelevanceGate.fit(pos_cosines, neg_cosines, weight=reward_std)
    deployed = reward + gate(cosines(embed, prompts, answers))
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

Embedder = Callable[[Sequence[str]], np.ndarray]  # texts -> (N, D) unit vectors (augment.minilm_embedder)


@functools.cache
def shared_embedder() -> Embedder:
    """The MiniLM-L6 sentence encoder as shipped (never the fine-tuned reward backbone), loaded once."""
    from .augment import minilm_embedder

    return minilm_embedder()


def cosines(embed: Embedder, prompts: Sequence[str], answers: Sequence[str]) -> np.ndarray:
    """(N,) cosine of each prompt's embedding with its answer's; each distinct text is embedded once."""
    texts = list(dict.fromkeys([*prompts, *answers]))
    index = {t: i for i, t in enumerate(texts)}
    vectors = np.asarray(embed(texts), dtype=np.float64)  # (U, D), unit rows
    p = vectors[[index[t] for t in prompts]]
    a = vectors[[index[t] for t in answers]]
    return (p * a).sum(axis=1)


def _balanced_logistic_fit(
    x: np.ndarray, y: np.ndarray, iters: int = 50, l2: float = 1e-3
) -> tuple[float, float]:
    """(a, b) of P(y=1 | x) = sigmoid(a x + b), each class weighing half (Newton's method, small ridge)."""
    w_class = np.where(y > 0.5, 0.5 / max(1, int((y > 0.5).sum())), 0.5 / max(1, int((y < 0.5).sum())))
    X = np.stack([x, np.ones_like(x)], axis=1)  # (N, 2)
    theta = np.zeros(2)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(X @ theta)))
        grad = X.T @ (w_class * (p - y)) + l2 * theta
        hess = (X * (w_class * p * (1.0 - p))[:, None]).T @ X + l2 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return float(theta[0]), float(theta[1])


def fit_relevance_gate(pairs: Sequence, embed: Embedder, *, weight: float, seed: int = 0) -> RelevanceGate:
    """Fit the gate on training pairs: each pair's prompt with one of its own answers (relevant) and with
    an answer to the most similar other prompt (not relevant), as augment.mismatch_pairs builds them."""
    from .augment import mismatch_pairs, prompt_neighbours

    triples = mismatch_pairs(pairs, ratio=1.0, seed=seed, neighbours=prompt_neighbours(pairs, embed))
    prompts = [t.prompt for t in triples]
    on = cosines(embed, prompts, [t.chosen for t in triples])
    off = cosines(embed, prompts, [t.rejected for t in triples])
    return RelevanceGate.fit(on, off, weight=weight)


@dataclass
class RelevanceGate:
    """weight * log sigmoid(a * cosine + b); `accuracy` is the fit's balanced accuracy on its own data."""

    a: float
    b: float
    weight: float
    accuracy: float = 0.0

    @classmethod
    def fit(cls, positive: Sequence[float], negative: Sequence[float], *, weight: float) -> RelevanceGate:
        pos, neg = np.asarray(positive, dtype=np.float64), np.asarray(negative, dtype=np.float64)
        if len(pos) == 0 or len(neg) == 0:
            raise ValueError("the relevance gate needs answers to their own prompt and to other prompts")
        x, y = np.concatenate([pos, neg]), np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
        a, b = _balanced_logistic_fit(x, y)
        logit = a * x + b
        accuracy = 0.5 * (float((logit[y > 0.5] > 0).mean()) + float((logit[y < 0.5] <= 0).mean()))
        return cls(a=a, b=b, weight=float(weight), accuracy=accuracy)

    def __call__(self, cos: Sequence[float] | np.ndarray) -> np.ndarray:
        z = self.a * np.asarray(cos, dtype=np.float64) + self.b
        return self.weight * -np.logaddexp(0.0, -z)  # weight * log sigmoid(z), stable for any z

    def to_dict(self) -> dict:
        return {"method": "minilm-cosine-logistic", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict | None) -> RelevanceGate | None:
        if not data:
            return None
        return cls(
            float(data["a"]), float(data["b"]), float(data["weight"]), float(data.get("accuracy", 0.0))
        )
