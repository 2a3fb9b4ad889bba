"""Ingest: prompts (with optional answers) from the API and `manage.py import_prompts`.

Every text is PII-scrubbed (services/privacy.py) before it is stored; what was replaced is kept by
type and count on the row. Each prompt carries `source` and `consent` explicitly (no defaults: a
feed must say whether its users agreed to training use). Duplicates (same normalized text) are not
stored twice. A bulk import is all-or-nothing: one bad line refuses the whole file, and the error
lists every bad line with its number and reason.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass, field

from django.db import connection, transaction

from labelapp.models import Prompt, Response
from labelapp.services.privacy import merge_counts, scrub

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
_WS = re.compile(r"\s+")
# Only CR and LF end a JSONL line: JSON allows U+2028, U+0085 and the like unescaped inside strings
# (str.splitlines() split there, and a valid line came back as two malformed ones). CR and LF cannot
# be inside a JSON string, so splitting at them never breaks a value.
_JSONL_LINE_END = re.compile(r"\r\n|\r|\n")


class IngestError(ValueError):
    """Input refused. `errors` is a list of {"line": n, "error": reason} (line is None for one object)."""

    def __init__(self, errors: list[dict]):
        self.errors = errors
        super().__init__(
            "; ".join(f"line {e['line']}: {e['error']}" if e.get("line") else e["error"] for e in errors)
        )


def normalize_text(text: str) -> str:
    """What makes two prompts 'the same': Unicode NFKC, case-folded, whitespace collapsed."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text)).strip().casefold()


def text_hash(text: str) -> str:
    return hashlib.sha256(normalize_text(text).encode("utf-8", "surrogatepass")).hexdigest()


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
    answers_created: int = 0
    pii_found: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "created": len(self.created),
            "duplicates": len(self.duplicates),
            "prompt_ids": self.created,
            "duplicate_of": self.duplicates,
            "answers_created": self.answers_created,
            "pii_found": self.pii_found,
        }


def _text(value, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string")
    if not value.strip():
        raise ValueError(f"{what} is empty")
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
    if len(value) > max_len or "\x00" in value:
        raise ValueError(f"{what} must be at most {max_len} characters")
    return value.strip()


def parse_answer(a, what: str) -> AnswerIn:
    """One answer object -> AnswerIn, or ValueError naming `what` (unknown fields are refused)."""
    if not isinstance(a, dict):
        raise ValueError(f"{what} must be an object")
    unknown = sorted(set(a) - ANSWER_FIELDS)
    if unknown:
        raise ValueError(f"{what}: unknown field(s): {', '.join(unknown)}")
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
            f"unknown field(s): {', '.join(unknown)} (allowed: {', '.join(sorted(PROMPT_FIELDS))})"
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


def jsonl_lines(text: str) -> list[str]:
    """The lines of a JSONL text, split where JSON allows a line to end (CR, LF, CRLF) and nowhere else."""
    return _JSONL_LINE_END.split(text)


def parse_jsonl(text: str) -> list[PromptIn]:
    """Every line parsed; IngestError lists every bad line (1-based number and reason)."""
    from labelapp.api.parsers import MAX_DEPTH, _check_depth_and_text, decode_json

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
            errors.append({"line": n, "error": f"malformed JSON at column {exc.colno}: {exc.msg}"})
        except ValueError as exc:  # includes ParseError-free reasons from parse_prompt
            errors.append({"line": n, "error": str(exc)})
        except Exception as exc:  # rest_framework ParseError from the depth/Unicode check
            errors.append({"line": n, "error": str(getattr(exc, "detail", exc))})
    if errors:
        raise IngestError(errors)
    if not items:
        raise IngestError([{"line": None, "error": "the file holds no prompts"}])
    return items


def ingest_prompts(*, items: list[PromptIn], line_numbers: list[int] | None = None) -> IngestReport:
    """Scrub and store prompts (and their answers) in one transaction: all or nothing.

    A prompt whose normalized (scrubbed) text is already stored is not stored again; its answers are
    not attached either (the duplicate is reported with the existing id). External ids must be new.
    """
    report = IngestReport()
    errors = []
    with transaction.atomic():
        _lock_ingest()
        seen: dict[str, int] = {}
        for idx, item in enumerate(items):
            line = line_numbers[idx] if line_numbers else (idx + 1 if len(items) > 1 else None)
            scrubbed = scrub(item.text)
            digest = text_hash(scrubbed.text)
            existing = (
                seen.get(digest)
                or Prompt.objects.filter(text_hash=digest).values_list("pk", flat=True).first()
            )
            if existing:
                report.duplicates.append(existing)
                continue
            if item.external_id and Prompt.objects.filter(external_id=item.external_id).exists():
                errors.append({"line": line, "error": f"external_id {item.external_id!r} already exists"})
                continue
            answers = [(a, scrub(a.text)) for a in item.answers]
            bad = _taken_answer_ids(item.answers)
            if bad:
                error = f"answer external_id {bad[0]!r} already exists or is given twice"
                errors.append({"line": line, "error": error})
                continue
            found = merge_counts(scrubbed.found, *(s.found for _, s in answers))
            prompt = Prompt.objects.create(
                text=scrubbed.text,
                source=item.source,
                consent=item.consent,
                external_id=item.external_id,
                category=item.category,
                pii_found=scrubbed.found,
            )
            seen[digest] = prompt.pk
            for a, s in answers:
                _answer_create(prompt=prompt, answer=a, scrubbed=s)
                report.answers_created += 1
            report.created.append(prompt.pk)
            report.pii_found = merge_counts(report.pii_found, found)
        if errors:
            # Nothing is half-written: the whole file is refused.
            transaction.set_rollback(True)
            raise IngestError(errors)
    return report


def _lock_ingest() -> None:
    """Serialise every ingest (inside its transaction): the duplicate and external-id checks must see
    the rows other imports are writing right now."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_INGEST_LOCK])


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


def ingest_jsonl(*, text: str, limit: int | None = MAX_PROMPTS_PER_REQUEST) -> IngestReport:
    """One prompt a line (see parse_jsonl), at most `limit` lines with content (None: any number)."""
    numbers = [n for n, line in enumerate(jsonl_lines(text), 1) if line.strip()]
    check_batch_size(len(numbers), limit)  # before parsing: an oversized body is refused cheaply
    return ingest_prompts(items=parse_jsonl(text), line_numbers=numbers)


def responses_add(*, prompt: Prompt, answers: list[AnswerIn]) -> list[Response]:
    """Attach answers from any model to a stored prompt (scrubbed like everything else)."""
    with transaction.atomic():
        # two requests with the same new external id would otherwise both pass the check and the
        # second hit the unique constraint (a 500)
        _lock_ingest()
        bad = _taken_answer_ids(answers)
        if bad:
            raise IngestError(
                [{"line": None, "error": f"answer external_id {bad[0]!r} already exists or is given twice"}]
            )
        return [_answer_create(prompt=prompt, answer=a, scrubbed=scrub(a.text)) for a in answers]


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
