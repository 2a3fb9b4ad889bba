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

MiniLM's cosine cannot tell an answer to this prompt from one to a similar prompt finely enough (the
off-prompt test stays under 90% whatever its weight; README, bench/relevance_bound.py). The PMI gate
(`PmiGate`) reads prompt and answer together with a causal LM (by default the shipped policy,
SmolLM2-135M-Instruct): the pointwise mutual information per answer token,

    PMI = mean log p(answer token | the prompt) - mean log p(answer token | an empty prompt),

is high when reading the prompt makes the answer more likely, and near or below 0 for an answer
written for something else. It carries no quality signal (it agrees with the raters about half of
the time), so it is a hinge, never a linear term: answers above a threshold are untouched, answers
below it lose `weight` reward units per nat. The threshold is a low quantile of the PMI of training
answers to their own prompts, so the gate judges only that share of real answers.

    gate = fit_pmi_gate(pairs, likelihood, weight=k * reward_std, quantile=0.12)
    deployed = reward + gate.term(prompts, answers)
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

# The PMI gate reads the end of the prompt (the question) and the start of the answer.
PMI_PROMPT_TOKENS, PMI_ANSWER_TOKENS = 256, 128

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
        return {"method": self.METHOD, **asdict(self)}

    METHOD = "minilm-cosine-logistic"

    def term(self, prompts: Sequence[str], answers: Sequence[str], device: str = "cpu") -> np.ndarray:
        """(N,) the deployed reward's relevance term of each (prompt, answer); MiniLM runs on the CPU."""
        return self(cosines(shared_embedder(), prompts, answers))

    @classmethod
    def from_dict(cls, data: dict | None) -> RelevanceGate | None:
        if not data:
            return None
        return cls(
            float(data["a"]), float(data["b"]), float(data["weight"]), float(data.get("accuracy", 0.0))
        )


# --- the PMI gate -----------------------------------------------------------------------------------


class AnswerLikelihood:
    """Mean log-probability per answer token under a causal LM, given a prompt in its chat template.

    Prompts keep their last `max_prompt_tokens` tokens (the question is at the end), answers their first
    `max_answer_tokens`. Rows are batched by length under a token budget; results are remembered per
    (prompt, answer) (bounded), since training scores the same answers for several fits and tests.
    """

    def __init__(
        self,
        model_name: str = "",
        *,
        max_prompt_tokens: int = PMI_PROMPT_TOKENS,
        max_answer_tokens: int = PMI_ANSWER_TOKENS,
        batch_tokens: int = 4096,
        device: str | None = None,
        memory: int = 200_000,
    ):
        from .sampling import load_policy

        self.model, self.tokenizer = load_policy(model_name, device=device)
        self.model.eval()
        self.max_prompt, self.max_answer = max_prompt_tokens, max_answer_tokens
        self.batch_tokens = batch_tokens
        self.memory: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.memory_size = memory

    def _ids(self, prompt: str, answer: str) -> tuple[list[int], list[int]]:
        from .sampling import prompt_ids

        p_ids = prompt_ids(self.tokenizer, prompt)[-self.max_prompt :]
        a_ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"][: self.max_answer]
        return p_ids, a_ids or [self.tokenizer.eos_token_id]  # an empty answer: its end of turn

    def _forward(self, rows: list[tuple[list[int], list[int]]]) -> list[float]:
        import torch

        from .ppo import Rollout, sequence_inputs
        from .sampling import left_pad

        pad = self.tokenizer.pad_token_id
        q_ids, q_mask = left_pad([p for p, _ in rows], pad)
        R = max(len(a) for _, a in rows)
        r_ids = torch.full((len(rows), R), pad, dtype=torch.long)
        r_mask = torch.zeros((len(rows), R), dtype=torch.long)
        for i, (_, a) in enumerate(rows):
            r_ids[i, : len(a)], r_mask[i, : len(a)] = torch.tensor(a), 1
        rollout = Rollout(q_ids, q_mask, r_ids, r_mask, torch.ones(len(rows), dtype=torch.bool), [], [])
        device = next(self.model.parameters()).device
        ids, attention, positions = sequence_inputs(rollout.to(device), self.model)
        with torch.no_grad():  # only the answer positions go through the LM head
            logits = self.model(
                input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=False,
                logits_to_keep=R + 1,
            ).logits[:, :-1].float()  # fmt: skip
        logprobs = logits.log_softmax(-1).gather(-1, r_ids.to(logits.device)[..., None]).squeeze(-1).cpu()
        return ((logprobs * r_mask).sum(1) / r_mask.sum(1)).tolist()

    def mean_logprobs(self, prompts: Sequence[str], answers: Sequence[str]) -> np.ndarray:
        """(N,) mean log p(answer token | prompt) of each (prompt, answer)."""
        keys = list(zip(prompts, answers, strict=True))
        todo = [k for k in dict.fromkeys(keys) if k not in self.memory]
        rows = [self._ids(*k) for k in todo]
        order = sorted(range(len(rows)), key=lambda i: -(len(rows[i][0]) + len(rows[i][1])))
        start = 0
        while start < len(order):  # longest first, as many rows as fit the token budget
            width = len(rows[order[start]][0]) + len(rows[order[start]][1])
            batch = order[start : start + max(1, self.batch_tokens // width)]
            for i, value in zip(batch, self._forward([rows[i] for i in batch]), strict=True):
                self.memory[todo[i]] = value
            start += len(batch)
        out = np.array([self.memory[k] for k in keys], dtype=np.float64)
        for k in keys:  # most recently used last; the oldest are forgotten first
            self.memory.move_to_end(k)
        while len(self.memory) > self.memory_size:
            self.memory.popitem(last=False)
        return out

    def pmi(self, prompts: Sequence[str], answers: Sequence[str]) -> np.ndarray:
        """(N,) PMI per answer token: log p(answer | prompt) - log p(answer | an empty prompt)."""
        both = self.mean_logprobs([*prompts, *[""] * len(answers)], [*answers, *answers])
        return both[: len(answers)] - both[len(answers) :]


@functools.cache
def shared_likelihood(
    model_name: str, max_prompt_tokens: int, max_answer_tokens: int, device: str = "cpu"
) -> AnswerLikelihood:
    """One AnswerLikelihood per model, cut-offs and device in a process (the LM loads once)."""
    return AnswerLikelihood(
        model_name, max_prompt_tokens=max_prompt_tokens, max_answer_tokens=max_answer_tokens, device=device
    )


@dataclass
class PmiGate:
    """-weight * max(0, threshold - PMI): nothing above the threshold, `weight` reward units per nat of
    PMI below it. `model` '' = the shipped SmolLM2; `touched` = share of the fit's answers below it."""

    threshold: float
    weight: float
    model: str = ""
    max_prompt_tokens: int = PMI_PROMPT_TOKENS
    max_answer_tokens: int = PMI_ANSWER_TOKENS
    touched: float = 0.0

    METHOD = "lm-pmi-hinge"

    def __call__(self, pmi: Sequence[float] | np.ndarray) -> np.ndarray:
        return -self.weight * np.maximum(0.0, self.threshold - np.asarray(pmi, dtype=np.float64))

    def likelihood(self, device: str = "cpu") -> AnswerLikelihood:
        return shared_likelihood(self.model, self.max_prompt_tokens, self.max_answer_tokens, device)

    def term(self, prompts: Sequence[str], answers: Sequence[str], device: str = "cpu") -> np.ndarray:
        """(N,) the deployed reward's relevance term; the LM runs on `device` (the reward model's)."""
        return self(self.likelihood(device).pmi(prompts, answers))

    def to_dict(self) -> dict:
        return {"method": self.METHOD, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> PmiGate:
        return cls(
            threshold=float(data["threshold"]),
            weight=float(data["weight"]),
            model=str(data.get("model", "")),
            max_prompt_tokens=int(data.get("max_prompt_tokens", PMI_PROMPT_TOKENS)),
            max_answer_tokens=int(data.get("max_answer_tokens", PMI_ANSWER_TOKENS)),
            touched=float(data.get("touched", 0.0)),
        )


def fit_pmi_gate(
    pairs: Sequence, likelihood: AnswerLikelihood, *, weight: float, quantile: float, model: str = ""
) -> PmiGate:
    """The threshold is the `quantile` of the PMI of the pairs' answers (both sides: each answers its own
    prompt), so the gate judges about that share of real answers and leaves the rest to the reward."""
    if not pairs:
        raise ValueError("the PMI gate needs answers to fit its threshold on")
    prompts = [p.prompt for p in pairs]
    pmi = likelihood.pmi(prompts + prompts, [p.chosen for p in pairs] + [p.rejected for p in pairs])
    threshold = float(np.quantile(pmi, quantile))
    return PmiGate(
        threshold=threshold,
        weight=float(weight),
        model=model,
        max_prompt_tokens=likelihood.max_prompt,
        max_answer_tokens=likelihood.max_answer,
        touched=float((pmi < threshold).mean()),
    )


def gate_from_dict(data: dict | None) -> RelevanceGate | PmiGate | None:
    """The stored gate of a reward model (reward_config.json), of either kind; None without one."""
    if not data:
        return None
    if data.get("method") == PmiGate.METHOD:
        return PmiGate.from_dict(data)
    return RelevanceGate.from_dict(data)
