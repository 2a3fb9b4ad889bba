"""One rule for every API endpoint: a request names only the body fields and query parameters it knows.

Most endpoints dropped what they did not know: `POST /api/training/runs/ {"train_plain_baseline":
true}` queued a run without the baseline, a rating's misspelt field was lost, and `GET
/api/ratings/?foo=1` listed everything, so a typo looked like success. Now an unknown field or
parameter is a 400 that names it and lists what is allowed:
- `ApiView` (or `StrictQueryParams` before another DRF view class) checks the query string against
  the view's `query_params_allowed`, after authentication and permissions (a stranger gets 401/403
  first). DRF's `?format=` is always allowed: an unknown format stays DRF's 404.
- `StrictSerializer` refuses unknown top-level keys of a request body.
- A view's `bodyless_methods` take no body at all: a body there is a 400 (`{"reason": ...}` sent to
  activate a reward model was dropped, as if a reason had been recorded); an empty JSON object counts
  as none, `null` and `[]` do not.
- A view whose own negotiation ignores `?format=` sets `format_param_allowed = False`: the parameter
  is then unknown like any other (the export chooses with `?output=`; `?format=parquet` served JSONL).
"""

from __future__ import annotations

from collections.abc import Mapping

from rest_framework import serializers
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated, ValidationError
from rest_framework.settings import api_settings
from rest_framework.views import APIView

PAGINATION_PARAMS = frozenset({"limit", "offset"})


def refuse_unknown_params(request, allowed, *, format_allowed: bool = True, repeatable=frozenset()) -> None:
    """400 naming the query parameters of `request` outside `allowed` (and `?format=` if allowed), or
    given more than once without being in `repeatable` (the last one was used: `?source=a&source=b`
    silently dropped a filter)."""
    allowed = set(allowed) | ({api_settings.URL_FORMAT_OVERRIDE} if format_allowed else set())
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        shown = ", ".join(sorted(a for a in allowed if a)) or "none"
        raise ValidationError(
            {"detail": f"Unknown query parameter(s): {names_shown(unknown)}. Allowed: {shown}."}
        )
    repeated = sorted(k for k, v in request.query_params.lists() if len(v) > 1 and k not in repeatable)
    if repeated:
        raise ValidationError(
            {"detail": f"Query parameter(s) given more than once: {names_shown(repeated)}."}
        )


class CountsUnauthenticated:
    """Mixin for a DRF view: a request refused for want of a valid token or session counts against the
    anonymous rate limit, and past it gets 429. DRF counts a request against the rate limits after
    authentication and permissions: every such request, a guessed token's included, was answered 401
    and never counted."""

    def initial(self, request, *args, **kwargs):
        try:
            super().initial(request, *args, **kwargs)
        except (NotAuthenticated, AuthenticationFailed):
            self.check_throttles(request)
            raise


class StrictQueryParams(CountsUnauthenticated):
    """Mixin for a DRF view: 400 for a query parameter outside `query_params_allowed`, or for a body
    sent to a method in `bodyless_methods`; unauthenticated requests counted (CountsUnauthenticated)."""

    query_params_allowed: frozenset[str] = frozenset()
    query_params_repeatable: frozenset[str] = frozenset()  # list filters (the export's versions, models)
    format_param_allowed: bool = True
    bodyless_methods: frozenset[str] = frozenset()

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        refuse_unknown_params(
            request,
            self.query_params_allowed,
            format_allowed=self.format_param_allowed,
            repeatable=self.query_params_repeatable,
        )
        # An empty object is "no body" (clients that always send JSON send {}); null and [] are a body
        if request.method in self.bodyless_methods and not (
            isinstance(request.data, Mapping) and not request.data
        ):
            raise ValidationError({"detail": f"{request.method} here takes no request body; send none."})


class ApiView(StrictQueryParams, APIView):
    """APIView with the strict query string; every API endpoint derives from it."""


class StrictSerializer(serializers.Serializer):
    """A request body's serializer that refuses top-level keys it has no field for, and, in a form or
    multipart body, a field given more than once that takes one value (DRF reads the last: a rating
    sent as `preference=-3&preference=3` was stored as 3, where the same in JSON is refused)."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            # a signed-in browser's form carries its CSRF token in the body (Django's way, which the
            # session check reads): not a field, and not refused as an unknown one
            carried = {"csrfmiddlewaretoken"} if hasattr(data, "lists") else set()
            unknown = sorted(str(k) for k in set(data) - set(self.fields) - carried)
            if unknown:
                raise ValidationError(
                    {
                        api_settings.NON_FIELD_ERRORS_KEY: [
                            f"Unknown field(s): {names_shown(unknown)}. "
                            + (f"Allowed: {', '.join(self.fields)}." if self.fields else "It takes none.")
                        ]
                    }
                )
        if hasattr(data, "lists"):  # a QueryDict: a form or multipart body
            many = (serializers.ListField, serializers.MultipleChoiceField, serializers.ListSerializer)
            repeated = sorted(
                k
                for k, v in data.lists()
                if len(v) > 1 and k in self.fields and not isinstance(self.fields[k], many)
            )
            if repeated:
                raise ValidationError(
                    {k: [f"The field {k[:50]!a} appears more than once; send it once."] for k in repeated}
                )
        return super().to_internal_value(data)


def names_shown(names: list[str]) -> str:
    """The first ten, each cut to 50 characters: a client's key may be anything (a 200,000-character
    key was echoed whole in a 400)."""
    shown = ", ".join(n[:50] for n in names[:10])
    return shown + (f" (and {len(names) - 10} more)" if len(names) > 10 else "")
