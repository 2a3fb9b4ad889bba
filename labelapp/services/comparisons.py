"""Comparisons from a prompt's answers: every pair, or a sampled number per prompt, optionally
length-matched (pairs whose answers are closest in length first, DESIGN section 5).

Prompts without consent or withheld get no comparisons: ratings on them could never train, so rater
time is not spent on them. A pair that already exists (either order) is not created again.

Once a comparison shows a prompt or an answer, its text is fixed (`prompt_text_fixed`,
`response_text_fixed`): ratings judge the texts they were shown and are never edited after the fact,
so the text under them is not either (the admin, the one place that edits a stored text, asks these).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import Q

from labelapp.models import Comparison, Prompt, Response
from labelapp.services.gold import without_gold_copies
from labelapp.services.roles import permission_check


@dataclass
class ComparisonReport:
    created: list[int] = field(default_factory=list)
    skipped_prompts: dict[int, str] = field(default_factory=dict)


def _length_gap(a: Response, b: Response) -> float:
    lo, hi = sorted((max(a.word_count, 1), max(b.word_count, 1)))
    return hi / lo


def _new_pairs(prompt: Prompt) -> list[tuple[Response, Response]]:
    """The prompt's pairs of answers that differ in text and are not compared yet. By text, not by id:
    an answer stored twice (the answers endpoint and ingest keep what they are sent) would pair with
    itself, a comparison with nothing to judge, or repeat a comparison under new ids. Gold's padded
    copies are not ordinary answers (services/gold.py)."""
    answers = list(without_gold_copies(Response.objects.filter(prompt=prompt)).order_by("pk"))
    compared = Comparison.objects.filter(prompt=prompt)
    seen = {frozenset(texts) for texts in compared.values_list("response_a__text", "response_b__text")}
    pairs = []
    for a, b in itertools.combinations(answers, 2):
        key = frozenset((a.text, b.text))
        if len(key) == 2 and key not in seen:
            seen.add(key)
            pairs.append((a, b))
    return pairs


def comparisons_create(
    *,
    prompt_ids: list[int],
    per_prompt: int | None = None,
    length_matched: bool = False,
    max_length_ratio: float | None = None,
    required_ratings: int | None = None,
    priority: int = 0,
    seed: int | None = None,
    by=None,
) -> ComparisonReport:
    """Create pairs for each prompt: all pairs (per_prompt None) or `per_prompt` of them. NotPermitted
    when `by` may not create comparisons (None: a command or the loop itself).

    length_matched: choose the pairs with the smallest length ratio first (and, with
    `max_length_ratio`, none above it); otherwise sample uniformly.
    """
    permission_check(by, "comparison_create")
    rng = random.Random(seed)
    report = ComparisonReport()
    required = required_ratings or settings.LABEL["DEFAULT_REQUIRED_RATINGS"]
    with transaction.atomic():
        prompts = Prompt.objects.filter(pk__in=prompt_ids).select_for_update().order_by("pk")
        found = {p.pk: p for p in prompts}
        # each prompt once: one listed twice got its pairs, then "every pair exists" beside them
        for pid in dict.fromkeys(prompt_ids):
            prompt = found.get(pid)
            if prompt is None:
                report.skipped_prompts[pid] = "no such prompt"
                continue
            if not prompt.consent:
                report.skipped_prompts[pid] = "no consent: never compared for training"
                continue
            if prompt.withheld:
                report.skipped_prompts[pid] = "withheld"
                continue
            pairs = _new_pairs(prompt)
            if pairs and max_length_ratio:
                pairs = [p for p in pairs if _length_gap(*p) <= max_length_ratio]
                if not pairs:
                    report.skipped_prompts[pid] = f"no new pair within max_length_ratio {max_length_ratio:g}"
                    continue
            if length_matched:
                rng.shuffle(pairs)  # random among equal gaps
                pairs.sort(key=lambda p: _length_gap(*p))
            else:
                rng.shuffle(pairs)
            if per_prompt is not None:
                pairs = pairs[:per_prompt]
            if not pairs:
                report.skipped_prompts[pid] = "fewer than two different answers or every pair exists"
                continue
            for a, b in pairs:
                if rng.random() < 0.5:  # A/B order carries no meaning; the page randomizes sides too
                    a, b = b, a
                c = Comparison.objects.create(
                    prompt=prompt, response_a=a, response_b=b, required_ratings=required, priority=priority
                )
                report.created.append(c.pk)
    return report


def prompt_text_fixed(*, prompt: Prompt) -> bool:
    """Whether a comparison shows `prompt`, or it was erased (its text may then no longer change: typed
    in again, an erased prompt's words came back and its dedup hash followed the new text)."""
    if prompt.pk is None:
        return False
    return prompt.erased_at is not None or Comparison.objects.filter(prompt_id=prompt.pk).exists()


def response_text_fixed(*, response: Response) -> bool:
    """Whether a comparison shows `response` on either side, or its prompt was erased (its text may then
    no longer change)."""
    if response.pk is None:
        return False
    if Prompt.objects.filter(pk=response.prompt_id, erased_at__isnull=False).exists():
        return True  # erased with its prompt
    return Comparison.objects.filter(Q(response_a_id=response.pk) | Q(response_b_id=response.pk)).exists()
