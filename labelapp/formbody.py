"""Strict reading of multipart/form-data bodies: one rule for the pages (middleware) and the API
(parser). No view of this app takes files, and Django's own multipart parser decodes bytes that are not
UTF-8 into U+FFFD, so a rationale or a guideline sent that way was stored altered without a word.

Parts are counted before anything is parsed (a body of many tiny parts cost seconds of CPU to split),
each part's text is decoded strictly in the charset the part names, else the request's (UTF-8 unless
the Content-Type names another), and a part with a file name is refused.
"""

from __future__ import annotations

from email.parser import BytesParser
from email.policy import HTTP

from django.conf import settings
from django.utils.http import parse_header_parameters


class FormBodyError(ValueError):
    """A form body that is refused; the message says why (shown to the sender)."""


def multipart_fields(body: bytes, content_type: str, charset: str) -> list[tuple[str, str]]:
    """The (name, value) pairs of a multipart/form-data body, or FormBodyError."""
    boundary = parse_header_parameters(content_type)[1].get("boundary")
    if not boundary:
        raise FormBodyError("The multipart body has no boundary in its Content-Type.")
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    # each part opens with the boundary line, and one more closes the body
    if limit is not None and body.count(b"--" + boundary.encode("latin-1", "replace")) > limit + 1:
        raise FormBodyError(f"The form body has more than {limit} fields.")
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    parts = message.get_payload() if message.is_multipart() else []
    return [_field(part, charset) for part in parts]


def _field(part, charset: str) -> tuple[str, str]:
    name = part.get_param("name", header="content-disposition")
    if part.get_content_disposition() != "form-data" or not isinstance(name, str):
        raise FormBodyError("Each part of a multipart body needs 'Content-Disposition: form-data; name=...'.")
    _check_text(name, "A field name")
    if part.get_filename() is not None:
        raise FormBodyError("Files are not accepted here: send the field's text as a form field (or JSON).")
    charset = part.get_content_charset() or charset
    try:
        value = (part.get_payload(decode=True) or b"").decode(charset)
    except (UnicodeDecodeError, LookupError):
        raise FormBodyError(f"The form field {name!r} is not {charset.upper()}.") from None
    _check_text(value, f"The form field {name!r}")
    return name, value


def _check_text(text: str, what: str) -> None:
    """Text that can be encoded again (a header's raw bytes become lone surrogates). A NUL is left to
    the form or serializer, which names the field and keeps what was typed."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise FormBodyError(f"{what} is not valid UTF-8 text.") from None
