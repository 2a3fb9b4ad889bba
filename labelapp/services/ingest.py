"""Ingest: prompts (with optional answers) from the API and `manage.py import_prompts`.

Every text is PII-scrubbed (services/privacy.py) before it is stored; what was replaced is kept by
type and count on the row. Each prompt carries `source` and `consent` explicitly (no defaults: a
feed must say whether its users agreed to training use). Duplicates (same normalized text) are not
stored twice: the stored prompt gets the duplicate's new answers (a new model answering the same
prompts is how a dataset grows) and its external_id if it had none; a duplicate that disagrees with it
on consent or external_id is a bad line. A bulk import is all-or-nothing: one bad line refuses the
whole file, and the error lists every bad line with its number and reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field

from django.db import transaction
from django.db.models import Count, Q

from labelapp.models import Prompt, Response
from labelapp.rawsql import xact_lock
from labelapp.rendering import control_character, is_blank
from labelapp.services.privacy import ScrubResult, merge_counts, scrub
from labelapp.services.roles import permission_check
from labelapp.shown_text import decode_references
from rewardtrainer.data import jsonl_lines

PROMPT_FIELDS = {"text", "source", "consent", "external_id", "category", "answers"}
REQUIRED_FIELDS = {"text", "source", "consent"}
ANSWER_FIELDS = {"text", "model", "model_version", "external_id"}
MAX_TEXT_CHARS = 50_000
MAX_ANSWERS = 32
# Prompts in one API request (a JSON list or a JSONL body alike): one request holds the ingest lock for
# all of them, so a bigger one would block every other import for minutes and outlive the web worker's
# timeout. `manage.py import_prompts` runs offline and takes a file of any size.
MAX_PROMPTS_PER_REQUEST = 10_000
# One lock id for every ingest: dedup by hash must see rows other imports are writing right now.
_INGEST_LOCK = 0x1A9E57
_TRAILING_WS = re.compile(r"[ \t]+$", re.MULTILINE)
_NO_MEANING = dict.fromkeys(map(ord, "\ufeff\u200b\u2060\u00ad"))


class IngestError(ValueError):
    """Input refused. `errors` is a list of {"line": n, "error": reason} (line is None for one object)."""

    def __init__(self, errors: list[dict]):
        self.errors = errors
        super().__init__(
            "; ".join(f"line {e['line']}: {e['error']}" if e.get("line") else e["error"] for e in errors)
        )


def normalize_text(text: str) -> str:
    """What makes two prompts 'the same': the same characters (Unicode NFC: one text however its
    accents were encoded), line ends, spaces at the end of lines, blank lines at either end and
    invisible characters without meaning (BOM, zero-width space, word joiner, soft hyphen) aside, and a
    character written as a reference the page decodes the same as the character (`crit&#101;rion`,
    `&#8203;`, `&lt;`: the page shows them alike, and with the reference a withdrawn prompt came back
    as a new one with consent). Not in code, nor without the ";": the page shows those as typed
    (labelapp/shown_text.py).

    Nothing that can change the meaning: the key was NFKC, case-folded, with every run of whitespace
    one space, which merged a program with its `print` inside an `if` and one with it outside, "10⁶"
    with "106", "US" with "us", and attached the second prompt's answers to the first."""
    text = decode_references(text)
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    # Invisible characters that mean nothing (a byte-order mark a file or an editor put in front, a
    # zero-width space, a word joiner, a soft hyphen) go: with them a withdrawn prompt came back as a
    # new prompt with consent. Joiners that change a script's or an emoji's shape (ZWJ, ZWNJ) stay.
    text = text.translate(_NO_MEANING)
    # blank lines at either end go, the first line's indentation stays (it is code's meaning too)
    return _TRAILING_WS.sub("", text).strip("\n")


def text_hash(text: str) -> str:
    return hashlib.sha256(normalize_text(text).encode("utf-8", "surrogatepass")).hexdigest()


def question_hash(text: str) -> str:
    """One key for prompts that ask one question: the normalized text with case and runs of white space
    aside, as the reward trainer groups prompts for its split (rewardtrainer/data.py). Not the dedup key,
    which must keep "US" apart from "us" and code's line breaks: the frozen evaluation set keeps a
    question's prompts on one side, so that no version trains on "what is python?" while it is judged
    on "What is Python?"."""
    key = " ".join(normalize_text(text).casefold().split())
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class AnswerIn:
    text: str
    model: str
    model_version: str = ""
    external_id: str | None = None


@dataclass
class PromptIn:
    text: str
    source: str
    consent: bool
    external_id: str | None = None
    category: str = ""
    answers: list[AnswerIn] = field(default_factory=list)


@dataclass
class IngestReport:
    created: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    # every answer stored, those attached to duplicates (prompts already stored) included
    answers_created: int = 0
    answers_added_to_existing: int = 0
    # answers of duplicates not stored: the prompt already has an answer with the same scrubbed text
    answers_skipped_duplicate: int = 0
    pii_found: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "created": len(self.created),
            "duplicates": len(self.duplicates),
            "prompt_ids": self.created,
            "duplicate_of": self.duplicates,
            "answers_created": self.answers_created,
            "answers_added_to_existing": self.answers_added_to_existing,
            "answers_skipped_duplicate": self.answers_skipped_duplicate,
            "pii_found": self.pii_found,
        }


def _text(value, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string")
    if is_blank(value):  # zero-width characters only were stored as a prompt nobody could read
        raise ValueError(f"{what} is empty (or holds only invisible characters)")
    if len(value) > MAX_TEXT_CHARS:
        raise ValueError(f"{what} is longer than {MAX_TEXT_CHARS} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} is not valid Unicode") from None
    if "\x00" in value:
        raise ValueError(f"{what} contains a NUL character")
    return value


def _short(value, what: str, max_len: int, *, required: bool) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise ValueError(f"{what} must be a non-empty string" if required else f"{what} must be a string")
    if "\x00" in value:
        raise ValueError(f"{what} contains a NUL character")
    if (control := control_character(value)) is not None:
        raise ValueError(f"{what} contains a control character ({control}): one line of plain text")
    if len(value) > max_len:
        raise ValueError(f"{what} must be at most {max_len} characters")
    return value.strip()


def _names_shown(names: list[str]) -> str:
    from labelapp.api.strict import names_shown  # the API's rule: a client's key may be anything

    return names_shown(names)


def parse_answer(a, what: str) -> AnswerIn:
    """One answer object -> AnswerIn, or ValueError naming `what` (unknown fields are refused)."""
    if not isinstance(a, dict):
        raise ValueError(f"{what} must be an object")
    unknown = sorted(set(a) - ANSWER_FIELDS)
    if unknown:
        raise ValueError(f"{what}: unknown field(s): {_names_shown(unknown)}")
    return AnswerIn(
        text=_text(a.get("text"), f"{what}.text"),
        model=_short(a.get("model"), f"{what}.model", 128, required=True),
        model_version=_short(a.get("model_version"), f"{what}.model_version", 64, required=False),
        external_id=_short(a.get("external_id"), f"{what}.external_id", 128, required=False) or None,
    )


def parse_answers(raw, *, required: bool) -> list[AnswerIn]:
    """A list of answer objects (a prompt's `answers`, or the body of POST /api/prompts/N/responses/).
    Absent or null is no answers where they are optional; anything else that is not a list (an object,
    "", 0, false) is refused, never read as "no answers"."""
    if raw is None and not required:
        return []
    if not isinstance(raw, list):
        raise ValueError("answers must be a list")
    if required and not raw:
        raise ValueError("answers must hold at least one answer")
    if len(raw) > MAX_ANSWERS:
        raise ValueError(f"at most {MAX_ANSWERS} answers per prompt")
    return [parse_answer(a, f"answers[{i}]") for i, a in enumerate(raw, 1)]


def parse_prompt(obj) -> PromptIn:
    """One prompt object -> PromptIn, or ValueError with the reason (unknown fields are refused)."""
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object")
    unknown = sorted(set(obj) - PROMPT_FIELDS)
    if unknown:
        raise ValueError(
            f"unknown field(s): {_names_shown(unknown)} (allowed: {', '.join(sorted(PROMPT_FIELDS))})"
        )
    missing = sorted(REQUIRED_FIELDS - set(obj))
    if missing:
        raise ValueError(f"missing field(s): {', '.join(missing)}")
    if not isinstance(obj["consent"], bool):
        raise ValueError("consent must be true or false")
    answers = parse_answers(obj.get("answers"), required=False)
    return PromptIn(
        text=_text(obj.get("text"), "text"),
        source=_short(obj.get("source"), "source", 64, required=True),
        consent=obj["consent"],
        external_id=_short(obj.get("external_id"), "external_id", 128, required=False) or None,
        category=_short(obj.get("category"), "category", 32, required=False),
        answers=answers,
    )


def parse_jsonl(text: str) -> list[PromptIn]:
    """Every line parsed; IngestError lists every bad line (1-based number and reason)."""
    from labelapp.api.parsers import MAX_DEPTH, _check_depth_and_text, decode_json, json_error_reason

    items, errors = [], []
    for n, line in enumerate(jsonl_lines(text), 1):
        if not line.strip():
            continue
        try:
            obj = decode_json(line)
            _check_depth_and_text(obj)
            items.append(parse_prompt(obj))
        except RecursionError:
            errors.append({"line": n, "error": f"JSON nested deeper than {MAX_DEPTH} levels"})
        except json.JSONDecodeError as exc:
            errors.append(
                {"line": n, "error": f"malformed JSON at column {exc.colno}: {json_error_reason(exc)}"}
            )
        except ValueError as exc:  # includes ParseError-free reasons from parse_prompt
            errors.append({"line": n, "error": str(exc)})
        except Exception as exc:  # rest_framework ParseError from the depth/Unicode check
            errors.append({"line": n, "error": str(getattr(exc, "detail", exc))})
    if errors:
        raise IngestError(errors)
    if not items:
        raise IngestError([{"line": None, "error": "the file holds no prompts"}])
    return items


def ingest_prompts(*, items: list[PromptIn], line_numbers: list[int] | None = None, by=None) -> IngestReport:
    """Scrub and store prompts (and their answers) in one transaction: all or nothing. NotPermitted
    when `by` may not import (None: a command).

    A prompt whose normalized (scrubbed) text is already stored (a duplicate) is not stored again:
    see _ingest_duplicate for what it may add and when it is refused. New prompts and answers need
    external ids not taken yet.
    """
    permission_check(by, "prompt_ingest")
    report = IngestReport()
    errors = []
    with transaction.atomic():
        _lock_ingest()
        batch = _Batch()
        for idx, item in enumerate(items):
            line = line_numbers[idx] if line_numbers else (idx + 1 if len(items) > 1 else None)
            scrubbed = scrub(item.text)
            digest = text_hash(scrubbed.text)
            stored = batch.prompts.get(digest) or _stored_prompt(digest)
            try:
                if stored:
                    _ingest_duplicate(item, stored, batch, report)
                else:
                    batch.add(digest, _ingest_new(item, scrubbed, report), line)
            except _BadLine as exc:
                errors.append({"line": line, "error": str(exc)})
        if errors:
            # Nothing is half-written: the whole file is refused.
            transaction.set_rollback(True)
            raise IngestError(errors)
    return report


def _stored_prompt(digest: str) -> Prompt | None:
    """The stored prompt with this text hash (the oldest, should older rows repeat a text)."""
    return Prompt.objects.filter(text_hash=digest).only("consent", "external_id", "erased_at").first()


class _BadLine(ValueError):
    """One item refused; raised before anything of it is written."""


@dataclass
class _Batch:
    """Prompts this ingest created, by text hash, and the line each came from (for error messages:
    their ids are rolled back with the refusal)."""

    prompts: dict[str, Prompt] = field(default_factory=dict)
    lines: dict[int, int | None] = field(default_factory=dict)

    def add(self, digest: str, prompt: Prompt, line: int | None) -> None:
        self.prompts[digest] = prompt
        self.lines[prompt.pk] = line

    def name(self, prompt: Prompt) -> str:
        if prompt.pk in self.lines:
            line = self.lines[prompt.pk]
            return f"the same prompt on line {line}" if line else "the same prompt earlier in this request"
        return f"stored prompt {prompt.pk}"


def _ingest_new(item: PromptIn, scrubbed: ScrubResult, report: IngestReport) -> Prompt:
    """Store a prompt not seen before with its answers (_BadLine: refused, nothing written)."""
    if item.external_id and Prompt.objects.filter(external_id=item.external_id).exists():
        raise _BadLine(f"external_id {item.external_id!r} already exists")
    # Answers whose scrubbed texts are the same are one answer (two that differed only in an e-mail
    # address were both stored), as for a stored prompt's new answers.
    answers, skipped, _ = _unseen([(a, scrub(a.text)) for a in item.answers], held={})
    _check_answer_ids([a for a, _ in answers])
    # one query for both: the same words in another case or spacing, erased or withheld
    twins = Prompt.objects.filter(question_hash=question_hash(scrubbed.text)).aggregate(
        erased=Count("pk", filter=Q(erased_at__isnull=False)), withheld=Count("pk", filter=Q(withheld=True))
    )
    if twins["erased"]:
        raise _BadLine(
            "a prompt with this text (in another case or spacing) was erased on request: it is not "
            "imported again"
        )
    prompt = Prompt.objects.create(
        text=scrubbed.text,
        source=item.source,
        consent=item.consent,
        external_id=item.external_id,
        category=item.category,
        pii_found=scrubbed.found,
        # the same words as a prompt withheld for personal data hold the same personal data
        withheld=bool(twins["withheld"]),
    )
    for a, s in answers:
        _answer_create(prompt=prompt, answer=a, scrubbed=s)
    report.created.append(prompt.pk)
    report.answers_created += len(answers)
    report.answers_skipped_duplicate += skipped
    report.pii_found = merge_counts(report.pii_found, scrubbed.found, *(s.found for _, s in answers))
    return prompt


def _ingest_duplicate(item: PromptIn, stored: Prompt, batch: _Batch, report: IngestReport) -> None:
    """A prompt already stored: attach the answers it lacks, and the external_id when it has none.

    Refused (_BadLine, nothing written) when the item disagrees with the stored prompt on
    consent (ingest never changes a stored prompt's consent) or external_id, or when an answer to add
    has an external_id that is taken. The prompt's own source and category stay as stored.
    """
    _check_duplicate(item, stored, batch)
    new, skipped = _answers_to_store(stored, [(a, scrub(a.text)) for a in item.answers])
    if item.external_id and stored.external_id is None:
        Prompt.objects.filter(pk=stored.pk).update(external_id=item.external_id)
        stored.external_id = item.external_id  # a later line of this batch sees it
    for a, s in new:
        _answer_create(prompt=stored, answer=a, scrubbed=s)
    report.duplicates.append(stored.pk)
    report.answers_created += len(new)
    report.answers_added_to_existing += len(new)
    report.answers_skipped_duplicate += skipped
    report.pii_found = merge_counts(report.pii_found, *(s.found for _, s in new))


def _check_duplicate(item: PromptIn, stored: Prompt, batch: _Batch) -> None:
    """_BadLine when the item disagrees with the stored prompt of the same text."""
    if stored.erased_at is not None:
        # its answers would be stored beside a prompt whose words were erased on request
        raise _BadLine(
            f"{batch.name(stored)} has this text and was erased (withdrawn or withheld, its words "
            "removed on request): it is not imported again"
        )
    if item.consent != stored.consent:
        conflict = (
            f"consent conflict: {batch.name(stored)} has consent={_bool(stored.consent)}, this one says "
            f"consent={_bool(item.consent)}; ingest does not change the consent of a stored prompt"
        )
        if stored.pk not in batch.lines:  # stored before this request: say how to change it
            flag = "--restore" if item.consent else "--withdraw"
            conflict += (
                f" (record the change with a reason: POST /api/prompts/{stored.pk}/consent/ "
                f'{{"consent": {_bool(item.consent)}, "reason": "..."}} or '
                f'manage.py prompt_consent {stored.pk} {flag} --reason "...")'
            )
        raise _BadLine(conflict)
    if not item.external_id or item.external_id == stored.external_id:
        return
    if stored.external_id is not None:
        raise _BadLine(
            f"external_id conflict: {batch.name(stored)} has the same text with external_id "
            f"{stored.external_id!r}, this one says {item.external_id!r}"
        )
    if Prompt.objects.filter(external_id=item.external_id).exists():
        raise _BadLine(f"external_id {item.external_id!r} already exists (on another prompt)")


def _answers_to_store(
    prompt: Prompt, scrubbed: list[tuple[AnswerIn, ScrubResult]]
) -> tuple[list[tuple[AnswerIn, ScrubResult]], int]:
    """The answers (with their scrub results) the prompt does not hold yet, and how many it does: an
    answer whose scrubbed text is stored for the prompt, or repeated in `scrubbed`, is skipped. A
    stored answer without an external_id gets the one sent with its text. _BadLine (nothing written)
    when an external_id to store is taken, or disagrees with the one the same text already has."""
    held = {
        r.text: r
        for r in Response.objects.filter(prompt=prompt, text__in=[s.text for _, s in scrubbed]).only(
            "id", "text", "external_id"
        )
    }
    new, skipped, named = _unseen(scrubbed, held=held)
    _check_answer_ids([a for a, _ in new] + [a for _, a in named])
    for response, answer in named:
        Response.objects.filter(pk=response.pk).update(external_id=answer.external_id)
    return new, skipped


def _unseen(
    scrubbed: list[tuple[AnswerIn, ScrubResult]], *, held: dict[str, Response]
) -> tuple[list[tuple[AnswerIn, ScrubResult]], int, list[tuple[Response, AnswerIn]]]:
    """The answers whose scrubbed text is not `held` (stored answers by text) nor repeated before
    them; how many were; and the held answers without an external_id that one sent with their text
    names. _BadLine when a skipped answer's external_id is not the one its text already has (it was
    dropped without a word, and a later look-up by it found nothing)."""
    new, named = [], []
    ids = {text: response.external_id for text, response in held.items()}
    position = {}  # text -> its answer's index in `new`
    for a, s in scrubbed:
        if s.text not in ids:
            position[s.text] = len(new)
            new.append((a, s))
            ids[s.text] = a.external_id
            continue
        if not a.external_id or a.external_id == ids[s.text]:
            continue
        if ids[s.text] is None:  # the held answer, or the same text earlier in this request, takes it
            if s.text in held:
                named.append((held[s.text], a))
            else:
                first, result = new[position[s.text]]
                new[position[s.text]] = (dataclasses.replace(first, external_id=a.external_id), result)
            ids[s.text] = a.external_id
            continue
        where = "stored for this prompt" if s.text in held else "sent earlier in this request"
        raise _BadLine(
            f"answer external_id {a.external_id!r}: the same answer text is {where} with external_id "
            f"{ids[s.text]!r}"
        )
    return new, len(scrubbed) - len(new), named


def _bool(value: bool) -> str:
    return "true" if value else "false"  # as the feed writes it (JSON)


def _lock_ingest() -> None:
    """Serialise every ingest (inside its transaction): the duplicate and external-id checks must see
    the rows other imports are writing right now."""
    xact_lock(_INGEST_LOCK)


def _check_answer_ids(answers: list[AnswerIn]) -> None:
    bad = _taken_answer_ids(answers)
    if bad:
        raise _BadLine(f"answer external_id {bad[0]!r} already exists or is given twice")


def _taken_answer_ids(answers: list[AnswerIn]) -> list[str]:
    """Answer external ids already stored, or given twice in `answers` (one query).

    A repeat inside one prompt is not in the table yet when the check runs, so it used to reach the
    unique constraint at insert (IntegrityError: a 500 instead of a line in the refusal).
    """
    ids = [a.external_id for a in answers if a.external_id]
    stored = set(Response.objects.filter(external_id__in=ids).values_list("external_id", flat=True))
    taken, seen = [], set()
    for external_id in ids:
        if external_id in seen or external_id in stored:
            taken.append(external_id)
        seen.add(external_id)
    return taken


def check_batch_size(n: int, limit: int | None) -> None:
    """IngestError when a batch of n prompts is over `limit` (None: no limit)."""
    if limit is not None and n > limit:
        raise IngestError(
            [{"line": None, "error": f"at most {limit} prompts per request (this one has {n})"}]
        )


def ingest_jsonl(*, text: str, limit: int | None = MAX_PROMPTS_PER_REQUEST, by=None) -> IngestReport:
    """One prompt a line (see parse_jsonl), at most `limit` lines with content (None: any number)."""
    permission_check(by, "prompt_ingest")  # before parsing: no work for a request that is refused
    numbers = [n for n, line in enumerate(jsonl_lines(text), 1) if line.strip()]
    check_batch_size(len(numbers), limit)  # before parsing: an oversized body is refused cheaply
    return ingest_prompts(items=parse_jsonl(text), line_numbers=numbers, by=by)


def responses_add(*, prompt: Prompt, answers: list[AnswerIn], by=None) -> tuple[list[Response], int]:
    """Attach answers from any model to a stored prompt (scrubbed like everything else); returns
    (the stored answers, one per distinct text sent, and how many of them are new). An answer whose
    scrubbed text the prompt already holds is not stored again, as in ingest: a retried request
    stored every answer twice."""
    permission_check(by, "prompt_ingest")
    with transaction.atomic():
        # two requests with the same new external id would otherwise both pass the check and the
        # second hit the unique constraint (a 500)
        _lock_ingest()
        if Prompt.objects.filter(pk=prompt.pk, erased_at__isnull=False).exists():
            raise IngestError(
                [{"line": None, "error": f"prompt {prompt.pk} was erased: it takes no answers"}]
            )
        scrubbed = [(a, scrub(a.text)) for a in answers]
        try:
            # a retry sends answers stored with their external ids: only the new ones' must be free
            new, _ = _answers_to_store(prompt, scrubbed)
        except _BadLine as exc:
            raise IngestError([{"line": None, "error": str(exc)}]) from None
        for a, result in new:
            _answer_create(prompt=prompt, answer=a, scrubbed=result)
        texts = list(dict.fromkeys(result.text for _, result in scrubbed))
        held = {r.text: r for r in Response.objects.filter(prompt=prompt, text__in=texts).order_by("-id")}
        return [held[t] for t in texts], len(new)


def _answer_create(*, prompt: Prompt, answer: AnswerIn, scrubbed) -> Response:
    """Store one answer as scrubbed text, recording what the scrubber replaced (types and counts)."""
    return Response.objects.create(
        prompt=prompt,
        text=scrubbed.text,
        source_model=answer.model,
        source_model_version=answer.model_version,
        external_id=answer.external_id,
        pii_found=scrubbed.found,
    )
