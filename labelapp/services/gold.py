"""Gold pairs: comparisons with a known answer, mixed into every rater's stream to measure accuracy.

Staff mark any comparison gold (`gold_mark`) with the expected preference and an explanation, in the
admin or the staff action; `gold_make_padded` generates "concise is right" gold pairs from existing
answers: the same content padded with filler, a restatement of the question or repetition, against
the original. The queue (services/assignment.py) serves gold at GOLD_RATE and never the same gold
pair twice to a rater; nothing in the page or the API tells a rater a pair is gold. A repeat (one
rater's re-test, services/repeats.py) never becomes gold or normal, and nothing becomes a repeat by
hand (`comparison_kind_check`, which the admin's edit form runs on the stored row before saving).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Exists, OuterRef, Q

from labelapp.models import Comparison, Prompt, Response
from labelapp.services.roles import permission_check

PADDING_KINDS = ("filler", "restatement", "repetition")
GENERATOR_MODEL = "gold-generator"

_FILLERS_BEFORE = [
    "That is a great question, and it is one that many people ask.",
    "Before answering, it is worth taking a moment to consider the question carefully.",
    "There are several things to keep in mind here, so let us go through them.",
]
_FILLERS_AFTER = [
    "I hope this helps! Let me know if you have any other questions.",
    "In summary, the answer above covers what you need to know about this topic.",
    "Overall, this is an important topic, and it is always good to think about it carefully.",
    "It is worth noting that every situation is different, so keep that in mind.",
]
# a sentence ends at . ! or ? after a letter or a closing mark (not "1." of a numbered list, not "3.5")
# and before a capital or an opening mark
_SENTENCE_RE = re.compile(r"(?<=[^\d\s][.!?])\s+(?=[A-Z\"\u201c(])")
# a block that is not running prose: a heading, a list item, a table row, a quote, indented code
_NOT_PROSE_RE = re.compile(r"^\s*(#|[-*+]\s|\d+[.)]\s|\||>|    )")


class GoldError(Exception):
    """A gold operation was refused; the message is for staff, `field` the form field it is about."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


def _is_repeat(comparison: Comparison) -> bool:
    """By the stored row as well as the instance: an admin form has already put the typed kind on the
    instance when the rule runs, and a repeat's own fields (repeat_of, repeat_for) are not editable."""
    if comparison.kind == Comparison.Kind.REPEAT or comparison.repeat_of_id or comparison.repeat_for_id:
        return True
    return _stored_kind(comparison) == Comparison.Kind.REPEAT


def _stored_kind(comparison: Comparison) -> str | None:
    if comparison.pk is None:
        return None
    return Comparison.objects.filter(pk=comparison.pk).values_list("kind", flat=True).first()


def gold_check(*, comparison: Comparison, preference: int | None, explanation: str | None) -> str:
    """The gold rule, without saving (the admin form runs it before anything is stored): raises
    GoldError, or returns the explanation as it will be stored."""
    if preference not in (-1, 0, 1):
        message = "Give the expected preference: -1 (A better), 0 (tie) or 1 (B better)."
        raise GoldError(message, field="gold_preference")
    explanation = (explanation or "").strip()
    if not explanation:
        message = "Explain why the expected answer is right (with feedback on, raters read it)."
        raise GoldError(message, field="gold_explanation")
    if _is_repeat(comparison):
        # A repeat is one rater's re-test of a pair they judged; as gold every rater would be served it.
        raise GoldError("A repeat cannot be gold; mark the original comparison.", field="kind")
    return explanation


def comparison_kind_check(*, comparison: Comparison, kind: str, answers: tuple | None = None) -> None:
    """May staff set this kind by hand (the admin's kind field)? Repeats belong to the queue
    (services/repeats.py): one made anything else would be served to every rater, and a comparison
    typed as a repeat has no rater to re-test. Gold's own rule is `gold_check`. `answers`: the two
    answers (Response rows or ids) the comparison is about to hold, where they are typed with the kind
    (the admin's add form: the row holds none yet)."""
    if _is_repeat(comparison) and kind != Comparison.Kind.REPEAT:
        raise GoldError("A repeat stays a repeat: it re-tests one rater on a pair they judged.", field="kind")
    if kind == Comparison.Kind.REPEAT and not _is_repeat(comparison):
        raise GoldError("Repeats are scheduled by the queue, not made by hand.", field="kind")
    if kind != Comparison.Kind.GOLD and _holds_generated_padding(comparison, answers):
        # made normal, it was served as ordinary work and its ratings trained as ordinary data
        raise GoldError(
            "A pair made by the gold generator stays gold: one of its answers is generated padding, "
            "which is never ordinary work. Deactivate it instead.",
            field="kind",
        )


def _holds_generated_padding(comparison: Comparison, answers: tuple | None = None) -> bool:
    ids = (
        [getattr(a, "pk", a) for a in answers]
        if answers
        else [comparison.response_a_id, comparison.response_b_id]
    )
    return Response.objects.filter(
        pk__in=[i for i in ids if i is not None], source_model__startswith=GENERATOR_MODEL
    ).exists()


def _padded_already() -> Q:
    """A Response filter: the answer is the original of a pair make_gold made (against its padded
    copy). Padded again, it made a second pair of the same two texts (make_gold run twice), which the
    queue served to a rater who had judged the first: "never the same gold pair twice" goes by id."""
    padded = Comparison.objects.filter(kind=Comparison.Kind.GOLD)
    as_a = padded.filter(response_a=OuterRef("pk"), response_b__source_model__startswith=GENERATOR_MODEL)
    as_b = padded.filter(response_b=OuterRef("pk"), response_a__source_model__startswith=GENERATOR_MODEL)
    return Q(Exists(as_a)) | Q(Exists(as_b))


def gold_prompt_hold(row: Comparison | Response) -> Prompt:
    """Lock the prompt of a comparison (or of an answer a pair is about to be made of) until the
    caller's transaction ends, before anything locks the comparison: a consent withdrawal locks the
    prompt, then its comparisons, and a save of the pair followed by gold_mark took the two the other
    way round (a deadlock, a 500 on one side)."""
    return Prompt.objects.select_for_update().get(pk=row.prompt_id)


def gold_mark(*, comparison: Comparison, preference: int, explanation: str, by=None) -> Comparison:
    """Make `comparison` a gold pair: preference -1 (A is right), 0 (tie), +1 (B is right).
    NotPermitted when `by` may not mark gold pairs (None: a command, the generator)."""
    permission_check(by, "gold_mark")
    explanation = gold_check(comparison=comparison, preference=preference, explanation=explanation)
    with transaction.atomic():
        # the prompt as it is now (locked: a consent withdrawal waits, then deactivates this one too):
        # a pair on a prompt without consent or withheld stays inactive. Set active from the state
        # read earlier, a withdrawal that had just deactivated it was undone.
        prompt = gold_prompt_hold(comparison)
        comparison.kind = Comparison.Kind.GOLD
        comparison.gold_preference = preference
        comparison.gold_explanation = explanation
        fields = ["kind", "gold_preference", "gold_explanation"]
        if prompt.comparable:
            comparison.is_active = True
            fields.append("is_active")
        comparison.save(update_fields=fields)
    return comparison


def gold_unmark(*, comparison: Comparison) -> Comparison:
    """Make a gold pair normal again, without its expected answer or explanation."""
    comparison_kind_check(comparison=comparison, kind=Comparison.Kind.NORMAL)
    comparison.kind = Comparison.Kind.NORMAL
    comparison.gold_preference = None
    comparison.gold_explanation = ""
    comparison.save(update_fields=["kind", "gold_preference", "gold_explanation"])
    return comparison


def pad_answer(*, text: str, prompt: str, kind: str, rng: random.Random) -> tuple[str, str]:
    """The same content made longer without adding anything. Returns (padded text, what was added)."""
    text = text.strip()
    if kind == "filler":
        before, after = rng.choice(_FILLERS_BEFORE), rng.sample(_FILLERS_AFTER, 2)
        return (
            f"{before}\n\n{text}\n\n{after[0]} {after[1]}",
            "filler sentences before and after the same content",
        )
    if kind == "restatement":
        question = " ".join(prompt.split())
        if len(question) > 300:
            question = question[:300].rsplit(" ", 1)[0] + "…"
        return (
            f'You asked: "{question}" Let me restate that to be sure I understand: you want an answer '
            f'to "{question}"\n\n{text}\n\nTo restate the question once more: "{question}" The answer '
            "is given above.",
            "a restatement of the question, three times",
        )
    if kind == "repetition":
        prose = _first_prose(text)
        if prose is None:  # all list, heading or code: repeated, it read as broken text
            return pad_answer(text=text, prompt=prompt, kind="filler", rng=rng)
        sentences = [s for s in _SENTENCE_RE.split(prose) if s.strip()]
        repeated = " ".join(sentences[: max(1, min(3, len(sentences)))])
        return (
            f"{text}\n\nTo repeat the main point: {repeated}\n\nAgain, in other words: {repeated}",
            "the answer's own first sentences repeated twice",
        )
    raise GoldError(f"Unknown padding kind {kind!r}; use one of {', '.join(PADDING_KINDS)}.")


def _first_prose(text: str) -> str | None:
    """The answer's first paragraph of running prose, on one line; None when it has none. Split into
    sentences anywhere, "1. Preheat the oven. 2. Bake." was repeated as "1. Preheat the oven. 2." and a
    heading as a literal "# Answer" inside a sentence."""
    in_code = False
    for block in re.split(r"\n\s*\n", text):
        if block.lstrip().startswith(("```", "~~~")) or in_code:
            in_code ^= block.count("```") % 2 == 1 or block.count("~~~") % 2 == 1
            continue
        lines = [line for line in block.splitlines() if line.strip()]
        if lines and not any(_NOT_PROSE_RE.match(line) for line in lines):
            return " ".join(" ".join(lines).split())
    return None


@dataclass(frozen=True)
class GoldMade:
    comparison: Comparison
    padding: str


def gold_make_padded(
    *,
    response: Response,
    kind: str | None = None,
    rng: random.Random | None = None,
    required_ratings: int = 1,
    by=None,
) -> GoldMade:
    """A "concise is right" gold pair: `response` against a padded copy of itself (random sides).
    NotPermitted when `by` may not mark gold pairs (None: a command); GoldError for a prompt that may
    not be compared (withheld, or without consent: no comparison is ever made on one)."""
    permission_check(by, "gold_mark")
    rng = rng or random.Random()
    if response.source_model.startswith(GENERATOR_MODEL):
        raise GoldError(f"Answer #{response.pk} is itself generated padding; pick an original answer.")
    kind = kind or rng.choice(PADDING_KINDS)
    if kind == "repetition" and _first_prose(response.text) is None:
        kind = "filler"  # nothing to repeat that reads as text (pad_answer would pad with filler)
    with transaction.atomic():
        # checked under the prompt's lock: a withdrawal committing between check and insert left the
        # new gold pair active on a withdrawn prompt (and two runs made two pairs of one answer)
        prompt = gold_prompt_hold(response)
        if not prompt.comparable:
            why = "withheld for personal data" if prompt.withheld else "without consent"
            raise GoldError(f"Answer #{response.pk}'s prompt is {why}: no comparison is made on it.")
        if Response.objects.filter(_padded_already(), pk=response.pk).exists():
            raise GoldError(f"Answer #{response.pk} already has a padded gold pair; pick another answer.")
        padded_text, what = pad_answer(text=response.text, prompt=prompt.text, kind=kind, rng=rng)
        padded = Response.objects.create(
            prompt=prompt, text=padded_text, source_model=f"{GENERATOR_MODEL}:{kind}", source_model_version=""
        )
        original_is_a = rng.random() < 0.5
        a, b = (response, padded) if original_is_a else (padded, response)
        comparison = Comparison.objects.create(
            prompt=prompt,
            response_a=a,
            response_b=b,
            required_ratings=required_ratings,
        )
        # No side names: raters see "left" and "right", and which of A and B is left varies per rater.
        explanation = (
            f"The longer answer is the other one padded with {what}: it says nothing more, so the concise "
            "answer is better."
        )
        gold_mark(
            comparison=comparison, preference=-1 if original_is_a else 1, explanation=explanation, by=by
        )
    return GoldMade(comparison=comparison, padding=kind)


def without_gold_copies(responses):
    """`responses` (a Response queryset) without the padded copies that make_gold wrote. They exist for
    their gold pairs only: paired in the ordinary stream (with each other, or with other answers) they
    put synthetic padding in front of raters as ordinary work, and into the training data."""
    return responses.exclude(source_model__startswith=GENERATOR_MODEL)


def gold_make_batch(*, count: int, seed: int | None = None, kind: str | None = None) -> list[GoldMade]:
    """Generate `count` padded gold pairs from original answers that are not padding, nor padded yet."""
    if count < 1:
        raise GoldError("Make at least one gold pair.")
    if kind is not None and kind not in PADDING_KINDS:
        raise GoldError(f"Unknown padding kind {kind!r}; use one of {', '.join(PADDING_KINDS)}.")
    rng = random.Random(seed)
    candidates = list(
        without_gold_copies(Response.objects.filter(prompt__withheld=False, prompt__consent=True))
        .exclude(_padded_already())
        .select_related("prompt")
        .order_by("id")
        .values_list("id", flat=True)
    )
    if not candidates:
        raise GoldError(
            "There are no answers to pad: none with consent and not withheld is imported yet, or each "
            "has its padded gold pair already."
        )
    chosen = rng.sample(candidates, min(count, len(candidates)))
    responses = Response.objects.select_related("prompt").in_bulk(chosen)
    return [gold_make_padded(response=responses[rid], kind=kind, rng=rng) for rid in chosen]
