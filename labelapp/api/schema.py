"""OpenAPI post-processing: every operation documents the error codes it can answer.

Views document their success bodies (and special codes such as 409); this hook adds the errors
every endpoint shares, so clients and schemathesis see them: 400 (bad input: malformed or too deep
JSON, invalid fields, unknown filters), 401 (no or bad credentials), 403 (not allowed), 404 (path
ids, unknown ?format=), 413 (body over API_MAX_BODY_BYTES), 415 (a body in a media type the
operation does not take), 429 (throttled). A view's own error codes (409, 503) get the error body too.
"""

from __future__ import annotations

ERROR_SCHEMA = {
    "type": "object",
    "description": (
        "`detail` for most errors; for field validation errors one key per field, with a message or a "
        "list of messages."
    ),
    "properties": {"detail": {}},
    "additionalProperties": True,
}

_DESCRIPTIONS = {
    "400": "Bad request: malformed JSON/JSONL (with line and reason), invalid or unknown fields or filters.",
    "401": "Authentication required, or the token is invalid or revoked.",
    "403": (
        "Authenticated but not allowed: the token lacks the scope, the account lacks the staff role, or "
        "(raters) the guidelines in force are not acknowledged."
    ),
    "404": "No such object (or not yours).",
    "413": "Request body larger than the configured limit.",
    "415": "The body's Content-Type is not one this operation takes.",
    "429": "Too many requests: throttled per user (anonymous: per IP).",
}


def _error(code: str) -> dict:
    return {
        "description": _DESCRIPTIONS.get(code, "Error."),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def document_error_responses(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    result.get("paths", {}).pop("/api/schema/", None)  # the schema does not describe itself
    for methods in result.get("paths", {}).values():
        for method, op in methods.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            responses = op.setdefault("responses", {})
            # 404 everywhere: path ids, and DRF answers 404 to an unknown ?format= on any endpoint.
            codes = ["400", "401", "403", "404", "429"]
            if "requestBody" in op:
                codes += ["413", "415"]
            for code in codes:
                responses.setdefault(code, _error(code))
            for code, response in responses.items():
                # a view's own 409 or 503 (documented by a description only) answers JSON too
                if str(code).isdigit() and int(code) >= 400 and "content" not in response:
                    response["content"] = _error(code)["content"]
    return result
