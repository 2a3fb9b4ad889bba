"""Strict reading of multipart/form-data bodies: one reader for the pages (the middleware puts its
result where Django's request.POST would be) and the API (its parser). No view of this app takes
files, and Django's own multipart parser decodes bytes that are not UTF-8 into U+FFFD, so a rationale
or a guideline sent that way was stored altered without a word.

The body is split by hand, in time linear in its size, and only the plain shape browsers and HTTP
clients send is read: `Content-Disposition: form-data; name=...` parts of text, at most
DATA_UPLOAD_MAX_NUMBER_FIELDS of them, each with a header block of at most 1 KiB (the standard
library's MIME parser took minutes on one part with a long header, and any time on nested parts),
no file, no nested multipart, no transfer encoding but 7bit/8bit/binary, and a part's charset only if
it is UTF-8 (or ASCII) or the request's own. Each value is decoded strictly.
"""

from __future__ import annotations

import codecs
import re

from django.conf import settings
from django.utils.http import parse_header_parameters

MAX_PART_HEADER = 1024  # bytes; Django's own parser allows as much
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_IDENTITY_ENCODINGS = {"", "7bit", "8bit", "binary"}


class FormBodyError(ValueError):
    """A form body that is refused; the message says why (shown to the sender)."""


def multipart_fields(body: bytes, content_type: str, charset: str) -> list[tuple[str, str]]:
    """The (name, value) pairs of a multipart/form-data body, or FormBodyError."""
    boundary = parse_header_parameters(content_type)[1].get("boundary")
    if not boundary:
        raise FormBodyError("The multipart body has no boundary in its Content-Type.")
    delimiter = b"--" + boundary.encode("latin-1", "replace")
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    if limit is not None and body.count(delimiter) > limit + 1:  # counted before anything is split
        raise FormBodyError(f"The form body has more than {limit} fields.")
    fields = []
    for chunk in body.split(delimiter)[1:]:  # what comes before the first delimiter is a preamble
        if chunk.startswith(b"--"):
            return fields  # the closing delimiter; what follows is an epilogue
        fields.append(_field(_part_of(chunk), charset))
    if not body.strip():
        return fields  # no body at all
    # Without the closing delimiter (or any) the body was cut short or is not multipart: read as an
    # empty form, "garbage" started a training run and revoked a token.
    raise FormBodyError("The multipart body is malformed (it does not end with its closing boundary).")


def _part_of(chunk: bytes) -> tuple[dict[str, str], bytes]:
    """A part between two delimiters -> (its headers, lower-cased names; its content)."""
    chunk = chunk.lstrip(b" \t")
    for line_end in (b"\r\n", b"\n"):
        if chunk.startswith(line_end):
            chunk = chunk[len(line_end) :]
            break
    else:
        raise FormBodyError("The multipart body is malformed (no line break after a boundary).")
    for line_end in (b"\r\n", b"\n"):  # the line break before the next delimiter belongs to it
        if chunk.endswith(line_end):
            chunk = chunk[: -len(line_end)]
            break
    end = _HEADER_END.search(chunk, 0, MAX_PART_HEADER + 4)
    if end is None:
        raise FormBodyError(f"A part's headers must end within {MAX_PART_HEADER} bytes.")
    try:
        lines = chunk[: end.start()].decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise FormBodyError("A part's headers are not UTF-8.") from None
    headers: dict[str, str] = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon:
            raise FormBodyError("A part of the multipart body has a malformed header line.")
        headers[name.strip().lower()] = value.strip()
    return headers, chunk[end.end() :]


def _field(part: tuple[dict[str, str], bytes], charset: str) -> tuple[str, str]:
    headers, content = part
    disposition, params = parse_header_parameters(headers.get("content-disposition", ""))
    name = params.get("name")
    if disposition != "form-data" or not name:
        raise FormBodyError("Each part of a multipart body needs 'Content-Disposition: form-data; name=...'.")
    _check_text(name, "A field name")
    if "filename" in params:
        raise FormBodyError("Files are not accepted here: send the field's text as a form field (or JSON).")
    if headers.get("content-transfer-encoding", "").lower() not in _IDENTITY_ENCODINGS:
        raise FormBodyError(f"The form field {name!r} has a transfer encoding; send its text as it is.")
    charset = _part_charset(headers.get("content-type", ""), name, charset)
    try:
        value = content.decode(charset)
    except UnicodeDecodeError:
        raise FormBodyError(f"The form field {name!r} is not {charset.upper()}.") from None
    _check_text(value, f"The form field {name!r}")
    return name, value


def _part_charset(content_type: str, name: str, request_charset: str) -> str:
    """The charset a part's text is in: its own, if UTF-8 (or ASCII) or the request's, else the
    request's. A nested multipart or a part that is not text is refused."""
    if not content_type:
        return request_charset
    kind, params = parse_header_parameters(content_type)
    if kind != "text/plain":
        raise FormBodyError(f"The form field {name!r} is {kind!r}: only text fields are accepted.")
    own = params.get("charset")
    if not own:
        return request_charset
    try:
        found = codecs.lookup(own).name
    except LookupError:
        found = ""
    if found in ("utf-8", "ascii") or found == codecs.lookup(request_charset).name:
        return found
    raise FormBodyError(f"The form field {name!r} is in {own[:40]!r}: send it in UTF-8.")


def _check_text(text: str, what: str) -> None:
    """Text that can be encoded again (raw header bytes are decoded strictly, so this is a safeguard).
    A NUL is left to the form or serializer, which names the field and keeps what was typed."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise FormBodyError(f"{what} is not valid UTF-8 text.") from None
