"""Request body parsers for the API: JSON that cannot crash the server, and raw JSONL for bulk uploads.

Found by fuzzing (issue 8): a body nested ~950 levels deep raised RecursionError inside the parser
(500), and a lone surrogate (\\ud800) decoded fine but made the error message that echoed it
unencodable (500). Later fuzzing: an integer literal of over 4300 digits made json.loads raise a
plain ValueError (500). All are refused here as 400s; bodies over `API_MAX_BODY_BYTES` get 413 before
they are read into memory.
"""

from __future__ import annotations

import json
import math
import sys

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser

MAX_DEPTH = 32


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


def read_limited(stream, parser_context) -> bytes:
    """The body, or 413 when it is (or declares itself) larger than the limit."""
    limit = settings.API_MAX_BODY_BYTES
    request = (parser_context or {}).get("request")
    declared = request.META.get("CONTENT_LENGTH") if request is not None else None
    try:
        if declared and int(declared) > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
    except ValueError:
        raise ParseError("Bad Content-Length header.") from None
    body = stream.read(limit + 1) if stream is not None else b""
    if len(body) > limit:
        raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
    return body


def _check_depth_and_text(value, *, allow_nul: bool = True) -> None:
    """Iteratively (no recursion to exhaust): nesting depth at most MAX_DEPTH, every string encodable
    (and, with allow_nul=False, free of U+0000, which a jsonb column refuses)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ParseError(f"JSON is nested deeper than {MAX_DEPTH} levels.")
        if isinstance(item, dict):
            for key, val in item.items():
                _check_text(key, allow_nul)
                stack.append((val, depth + 1))
        elif isinstance(item, list):
            stack.extend((val, depth + 1) for val in item)
        elif isinstance(item, str):
            _check_text(item, allow_nul)


def _check_text(text: str, allow_nul: bool = True) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ParseError(
            "JSON strings must be valid Unicode (a lone surrogate such as \\ud800 is not)."
        ) from None
    if not allow_nul and "\x00" in text:
        raise ParseError("JSON strings must not contain NUL (\\u0000): PostgreSQL cannot store it.")


def _refuse_constant(name: str):
    # Python's json reads these non-standard literals as floats, and a text field then stored "nan".
    raise ParseError(f"{name} is not JSON: send numbers as finite literals, text as strings.")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):  # 1e400 read as inf
        raise ParseError(f"The number {literal[:40]} is too large for a float.")
    return value


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    # Python's json keeps the last of repeated keys: {"preference": -3, "preference": 3} stored 3, a
    # rating that cannot be edited afterwards, and a prompt line's first "text" was dropped
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ParseError(f"The key {key[:50]!a} appears more than once in one JSON object.")
        out[key] = value
    return out


def decode_json(text: str):
    """json.loads, where Python's refusal of an integer literal longer than sys.get_int_max_str_digits()
    (4300; a plain ValueError, which was a 500) becomes a ParseError, as do the non-standard literals
    NaN, Infinity and -Infinity and a float literal too large to be finite (1e400). Malformed JSON
    still raises JSONDecodeError, for the caller to word with its own position (a body's line, a
    JSONL line). A key repeated in one object is a ParseError too."""
    try:
        return json.loads(
            text, parse_constant=_refuse_constant, parse_float=_finite_float, object_pairs_hook=_unique_keys
        )
    except json.JSONDecodeError:
        raise
    except ValueError:
        limit = sys.get_int_max_str_digits()
        raise ParseError(f"A number in the JSON has more than {limit} digits.") from None


def json_error_reason(exc: json.JSONDecodeError) -> str:
    """The decoder's reason without the dangling "at" of "Unterminated string starting at" or "Invalid
    control character at" (it expects a position after it; ours is given before it)."""
    return exc.msg.removesuffix(" at")


def loads_safely(raw: bytes | str, *, allow_nul: bool = True):
    """json.loads that answers every malformed or hostile input with ParseError (never 500).
    allow_nul=False also refuses U+0000 in strings (for values stored as jsonb as they are)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise ParseError(f"The body is not UTF-8 (byte {exc.start}).") from None
    try:
        data = decode_json(text)
    except RecursionError:
        raise ParseError(f"JSON is nested deeper than {MAX_DEPTH} levels.") from None
    except json.JSONDecodeError as exc:
        raise ParseError(
            f"Malformed JSON at line {exc.lineno} column {exc.colno}: {json_error_reason(exc)}."
        ) from None
    _check_depth_and_text(data, allow_nul=allow_nul)
    return data


class SafeJSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        return loads_safely(read_limited(stream, parser_context))


class JSONLinesParser(BaseParser):
    """`application/jsonl` (or x-ndjson): hands the view the raw text; the ingest service parses lines."""

    media_type = "application/jsonl"

    def parse(self, stream, media_type=None, parser_context=None):
        body = read_limited(stream, parser_context)
        try:
            # a byte-order mark in front, as an editor saves it: import_prompts reads the same file
            return {"jsonl": body.decode("utf-8-sig")}
        except UnicodeDecodeError as exc:
            raise ParseError(f"The body is not UTF-8 (byte {exc.start}).") from None


class NDJSONParser(JSONLinesParser):
    media_type = "application/x-ndjson"


class StrictFormParser(BaseParser):
    """`application/x-www-form-urlencoded`, read like the JSON bodies: over `API_MAX_BODY_BYTES` a 413,
    bytes that are not in the declared charset (UTF-8 unless the Content-Type names another) a 400
    (Django's decoding put U+FFFD in their place and a rationale was stored altered), more fields than
    DATA_UPLOAD_MAX_NUMBER_FIELDS a 400; always JSON, with DEBUG on or off (Django's own limits
    answered an HTML debug page, or a bare "Bad request.")."""

    media_type = "application/x-www-form-urlencoded"

    def parse(self, stream, media_type=None, parser_context=None):
        from urllib.parse import parse_qsl

        from django.http import QueryDict

        body = read_limited(stream, parser_context)
        # the charset the Content-Type names (config/wsgi.py has refused those that are not text)
        charset = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        try:
            text = body.decode(charset)
            pairs = parse_qsl(
                text, keep_blank_values=True, encoding=charset, errors="strict", max_num_fields=limit
            )
        except UnicodeDecodeError as exc:
            raise ParseError(f"The form body is not {charset.upper()} (byte {exc.start}).") from None
        except ValueError:
            raise ParseError(f"The form body has more than {limit} fields.") from None
        data = QueryDict(mutable=True)
        for key, value in pairs:
            _check_text(key)
            _check_text(value)
            data.appendlist(key, value)
        data._mutable = False
        return data


def _read_by_middleware(parser_context):
    """The fields RefuseUndecodableFormMiddleware already read from this body by the same rules
    (labelapp/middleware.py: read_multipart_body), or None where it did not run (a bare test factory)."""
    request = (parser_context or {}).get("request")
    django_request = getattr(request, "_request", None)
    return getattr(django_request, "strict_multipart_post", None)


class StrictMultiPartParser(BaseParser):
    """`multipart/form-data` (`curl -F`, and Django's test client by default), read as strictly as
    StrictFormParser (labelapp/formbody.py): DRF's MultiPartParser (Django's) decoded field bytes that
    are not UTF-8 into U+FFFD and a rating's rationale was stored altered with a 201, and its size and
    field-count limits answered an HTML debug page. No endpoint takes files: a file part is a 400."""

    media_type = "multipart/form-data"

    def parse(self, stream, media_type=None, parser_context=None):
        from django.http import QueryDict

        from labelapp.formbody import FormBodyError, multipart_fields

        body = read_limited(stream, parser_context)
        already = _read_by_middleware(parser_context)
        if already is not None:
            return already
        charset = (parser_context or {}).get("encoding") or settings.DEFAULT_CHARSET
        try:
            fields = multipart_fields(body, media_type or "", charset)
        except FormBodyError as exc:
            raise ParseError(str(exc)) from None
        data = QueryDict(mutable=True)
        for name, value in fields:
            data.appendlist(name, value)
        data._mutable = False
        return data
