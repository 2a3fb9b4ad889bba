"""Data endpoints (staff): API tokens, prompt ingest (one, many, JSONL), answers, a prompt's recorded
consent changes, comparisons, all ratings with whitelisted filters, rater figures, and the preference export.

Filters and ordering accept only the names listed here; anything else is a 400 that lists what is
allowed (Label Studio's CVE-2023-47117 leaked password hashes through a free-form ORM filter).
"""

from __future__ import annotations

from django.http import StreamingHttpResponse
from django.utils.cache import add_never_cache_headers
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from labelapp.api import data_serializers as ds
from labelapp.api import parsers
from labelapp.api.pagination import PAGE_PARAMS, page_response
from labelapp.api.permissions import STAFF
from labelapp.api.serializers import ChoiceField
from labelapp.api.strict import PAGINATION_PARAMS, ApiView
from labelapp.models import ApiToken, Prompt, RaterProfile, Rating
from labelapp.services.comparisons import comparisons_create
from labelapp.services.consent import ConsentError, prompt_consent_changes, prompt_consent_set
from labelapp.services.erasure import ErasureError, prompt_erase
from labelapp.services.export import (
    ExportFilters,
    export_rows,
    jsonl_chunks,
    parquet_chunks,
    parquet_schema,
)
from labelapp.services.ingest import (
    MAX_PROMPTS_PER_REQUEST,
    IngestError,
    check_batch_size,
    ingest_jsonl,
    ingest_prompts,
    parse_answers,
    parse_prompt,
    responses_add,
)
from labelapp.services.roles import permission_check
from labelapp.services.tokens import TokenError, token_create, token_revoke


class FirstRendererNegotiation(BaseContentNegotiation):
    """Errors are JSON whatever the client's Accept says (a download endpoint must not answer 406)."""

    def select_parser(self, request, parsers):
        for parser in parsers:
            if request.content_type.split(";")[0].strip().lower() == parser.media_type:
                return parser
        return None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def _ingest_error(exc: IngestError) -> Response:
    return Response(
        {"detail": f"Refused: {len(exc.errors)} bad item(s); nothing was stored.", "errors": exc.errors},
        status=status.HTTP_400_BAD_REQUEST,
    )


# --- Tokens ------------------------------------------------------------------------------------------


class TokensView(ApiView):
    """API tokens (staff): list them, or create one for a user. The key is in the 201 answer only."""

    query_params_allowed = PAGINATION_PARAMS

    permission_classes = STAFF
    token_scope = "admin"

    @extend_schema(operation_id="tokens_list", responses={200: ds.PaginatedTokenList}, parameters=PAGE_PARAMS)
    def get(self, request):
        qs = ApiToken.objects.select_related("user").order_by("-id")
        return page_response(self, request, qs, ds.TokenSerializer)

    @extend_schema(request=ds.TokenCreateSerializer, responses={201: ds.TokenCreatedSerializer})
    def post(self, request):
        s = ds.TokenCreateSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        try:
            token, key = token_create(
                user=s.validated_data["username"],
                name=s.validated_data["name"],
                created_by=request.user,
                scopes=s.validated_data.get("scopes"),
                expires_in_days=s.validated_data.get("expires_in_days"),
                via=request.auth if isinstance(request.auth, ApiToken) else None,
            )
        except TokenError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        data = ds.TokenSerializer(token).data | {"key": key}
        response = Response(data, status=status.HTTP_201_CREATED)
        add_never_cache_headers(response)  # the key is shown this once: no proxy or browser cache keeps it
        return response


class TokenRevokeView(ApiView):
    permission_classes = STAFF
    token_scope = "admin"
    bodyless_methods = frozenset({"POST"})

    @extend_schema(request=None, responses={200: ds.TokenSerializer})
    def post(self, request, token_id: int):
        """Revoke a token, with every token it minted (staff with the admin scope; no body)."""
        token = ApiToken.objects.select_related("user").filter(pk=token_id).first()
        if token is None:
            raise NotFound("No such token.")
        via = request.auth if isinstance(request.auth, ApiToken) else None
        try:
            token = token_revoke(token=token, by=request.user, via=via)
        except TokenError as exc:
            raise PermissionDenied(str(exc)) from None
        return Response(ds.TokenSerializer(token).data)


# --- Prompts and answers -----------------------------------------------------------------------------


class PromptsView(ApiView):
    """Prompts (staff). POST one object, a list, or a JSONL file (`Content-Type: application/jsonl`).

    Every text is PII-scrubbed before it is stored. All or nothing: one bad item refuses the whole
    request, and `errors` lists every bad item with its line (JSONL) or 1-based position (list).
    """

    query_params_allowed = PAGINATION_PARAMS | {"source", "consent"}

    permission_classes = STAFF
    token_scope = "ingest"
    parser_classes = [
        parsers.SafeJSONParser,
        parsers.JSONLinesParser,
        parsers.NDJSONParser,
        parsers.StrictFormParser,
        parsers.StrictMultiPartParser,
    ]

    @extend_schema(
        operation_id="prompts_list",
        parameters=[
            OpenApiParameter("source", str, description="Only prompts from this source."),
            OpenApiParameter(
                "consent", bool, description="Only prompts with (true) or without (false) consent."
            ),
            *PAGE_PARAMS,
        ],
        responses={200: ds.PaginatedPromptOutList},
    )
    def get(self, request):
        qs = Prompt.objects.order_by("-id")
        if "source" in request.query_params:
            qs = qs.filter(source=request.query_params["source"])
        if "consent" in request.query_params:
            try:
                consent = serializers.BooleanField().to_internal_value(request.query_params["consent"])
            except serializers.ValidationError as exc:
                raise ValidationError({"consent": exc.detail}) from None
            qs = qs.filter(consent=consent)
        return page_response(self, request, qs, ds.PromptOutSerializer)

    @extend_schema(
        request={
            "application/json": ds.PromptInSerializer,
            "application/jsonl": OpenApiTypes.STR,
            "application/x-ndjson": OpenApiTypes.STR,
        },
        responses={201: ds.IngestReportSerializer, 400: ds.IngestErrorSerializer},
        description="One prompt object, a JSON list of them, or JSONL (one object a line).",
    )
    def post(self, request):
        try:
            media_type = request.content_type.split(";")[0].strip().lower()
            if media_type in {"application/jsonl", "application/x-ndjson"}:
                # An empty body never reaches the parser: DRF hands over an empty QueryDict then.
                report = ingest_jsonl(
                    text=request.data.get("jsonl", ""), limit=MAX_PROMPTS_PER_REQUEST, by=request.user
                )
            else:
                permission_check(request.user, "prompt_ingest")  # before parsing the items
                report = ingest_prompts(items=self._items(request.data), by=request.user)
        except IngestError as exc:
            return _ingest_error(exc)
        return Response(report.as_dict(), status=status.HTTP_201_CREATED)

    @staticmethod
    def _items(data):
        many = isinstance(data, list)
        objs = data if many else [data]
        if many and not objs:
            raise IngestError([{"line": None, "error": "the list is empty"}])
        check_batch_size(len(objs), MAX_PROMPTS_PER_REQUEST)
        items, errors = [], []
        for i, obj in enumerate(objs, 1):
            try:
                items.append(parse_prompt(obj))
            except ValueError as exc:
                errors.append({"line": i if many else None, "error": str(exc)})
        if errors:
            raise IngestError(errors)
        return items


def _prompt_found(prompt_id: int) -> Prompt:
    """The prompt of the URL, or 404."""
    prompt = Prompt.objects.filter(pk=prompt_id).first()
    if prompt is None:
        raise NotFound("No such prompt.")
    return prompt


class PromptDetailView(ApiView):
    permission_classes = STAFF
    token_scope = "ingest"

    @extend_schema(responses={200: ds.PromptOutSerializer})
    def get(self, request, prompt_id: int):
        """One stored prompt (staff), as scrubbed, with what the scrubber replaced."""
        prompt = _prompt_found(prompt_id)
        return Response(ds.PromptOutSerializer(prompt).data)


class PromptResponsesView(ApiView):
    """Attach answers from any model (name and version) to a prompt; scrubbed like prompts."""

    permission_classes = STAFF
    token_scope = "ingest"

    @extend_schema(
        request=ds.ResponsesInSerializer,
        responses={
            201: ds.ResponseOutSerializer(many=True),
            200: OpenApiResponse(ds.ResponseOutSerializer(many=True), description="A retry: all stored."),
        },
    )
    def post(self, request, prompt_id: int):
        prompt = _prompt_found(prompt_id)
        # The ingest service's own parser, as for answers inside POST /api/prompts/: text only (DRF's
        # CharField stored a number or NaN sent as the text as its str()), unknown fields refused.
        body = request.data
        if not isinstance(body, dict) or set(body) != {"answers"}:
            raise ValidationError({"answers": ['Send {"answers": [...]} and nothing else.']})
        try:
            answers = parse_answers(body["answers"], required=True)
        except ValueError as exc:
            raise ValidationError({"answers": [str(exc)]}) from None
        try:
            stored, n_new = responses_add(prompt=prompt, answers=answers, by=request.user)
        except IngestError as exc:
            return _ingest_error(exc)
        # 201 when anything was stored; a retry of the same answers gets them back with 200
        code = status.HTTP_201_CREATED if n_new else status.HTTP_200_OK
        return Response(ds.ResponseOutSerializer(stored, many=True).data, status=code)


class PromptConsentView(ApiView):
    """A prompt's consent changes (staff): GET lists them, oldest first; POST records one.

    `{"consent": false, "reason": "..."}` withdraws consent: the prompt's ratings leave training and
    exports at once and its comparisons leave the queue (services/consent.py); `true` restores it.
    """

    permission_classes = STAFF
    token_scope = "ingest"

    @extend_schema(
        operation_id="prompt_consent_changes_list",
        responses={200: ds.PromptConsentChangeSerializer(many=True)},
    )
    def get(self, request, prompt_id: int):
        changes = prompt_consent_changes(prompt=_prompt_found(prompt_id))
        return Response(ds.PromptConsentChangeSerializer(changes, many=True).data)

    @extend_schema(request=ds.PromptConsentInSerializer, responses={201: ds.PromptConsentChangeSerializer})
    def post(self, request, prompt_id: int):
        prompt = _prompt_found(prompt_id)
        body = ds.PromptConsentInSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            change = prompt_consent_set(prompt=prompt, by=request.user, **body.validated_data)
        except ConsentError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        return Response(ds.PromptConsentChangeSerializer(change).data, status=status.HTTP_201_CREATED)


class PromptEraseView(ApiView):
    """Erase a withdrawn or withheld prompt's words now (services/erasure.py; the data-manager role).

    Its text, its answers' texts, the ratings' rationales, the skip reasons, a gold explanation and the
    reasons of its consent changes and reviews become "[erased]"; ids, judgments and hashes stay. A
    prompt in use (consent in force, not withheld) is refused with 400: withdraw its consent first.
    Erasing an erased prompt again does nothing and says so (`erased_now: false`).
    """

    permission_classes = STAFF
    token_scope = "ingest"

    @extend_schema(
        operation_id="prompt_erase",
        request=ds.PromptEraseInSerializer,
        responses={200: ds.PromptEraseOutSerializer},
    )
    def post(self, request, prompt_id: int):
        prompt = _prompt_found(prompt_id)
        ds.PromptEraseInSerializer(data=request.data).is_valid(raise_exception=True)
        try:
            counts = prompt_erase(prompt=prompt, by=request.user)
        except ErasureError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        prompt.refresh_from_db(fields=["erased_at"])
        out = {"prompt_id": prompt.pk, "erased_now": counts is not None, "erased_at": prompt.erased_at}
        return Response(ds.PromptEraseOutSerializer({**out, "counts": counts or {}}).data)


class ComparisonsView(ApiView):
    """Make comparisons from prompts' answers: all pairs, or `per_prompt` sampled (length-matched)."""

    permission_classes = STAFF
    token_scope = "ingest"

    @extend_schema(request=ds.ComparisonsInSerializer, responses={201: ds.ComparisonsOutSerializer})
    def post(self, request):
        s = ds.ComparisonsInSerializer(data=request.data)
        s.is_valid(raise_exception=True)
        report = comparisons_create(**s.validated_data, by=request.user)
        return Response(
            {
                "created": report.created,
                "skipped_prompts": {str(k): v for k, v in report.skipped_prompts.items()},
            },
            status=status.HTTP_201_CREATED,
        )


# --- Staff: all ratings, rater figures ----------------------------------------------------------------


class RatingFilterSerializer(serializers.Serializer):
    rater = serializers.CharField(required=False, max_length=150, help_text="Username.")
    comparison = serializers.IntegerField(required=False, min_value=1, max_value=2**62)
    prompt = serializers.IntegerField(required=False, min_value=1, max_value=2**62)
    guideline_version = serializers.IntegerField(required=False, min_value=0, max_value=2**31 - 1)
    preference = serializers.IntegerField(required=False, min_value=-3, max_value=3)
    both_bad = serializers.BooleanField(required=False, allow_null=True, default=None)
    flag_pii = serializers.BooleanField(required=False, allow_null=True, default=None)
    flag_unsafe = serializers.BooleanField(required=False, allow_null=True, default=None)
    flag_broken = serializers.BooleanField(required=False, allow_null=True, default=None)
    length_check = ChoiceField(choices=["", "adds_content", "adds_nothing"], required=False)
    source_model = serializers.CharField(required=False, max_length=128)
    excluded = serializers.BooleanField(required=False, allow_null=True, default=None)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    ordering = ChoiceField(
        choices=[
            "id",
            "-id",
            "created_at",
            "-created_at",
            "preference",
            "-preference",
            "time_on_task_ms",
            "-time_on_task_ms",
        ],
        required=False,
        default="-id",
    )


_RATING_FILTERS = {
    "rater": "rater__username",
    "comparison": "comparison_id",
    "prompt": "comparison__prompt_id",
    "guideline_version": "guideline_version__number",
    "preference": "preference",
    "both_bad": "both_bad",
    "flag_pii": "flag_pii",
    "flag_unsafe": "flag_unsafe",
    "flag_broken": "flag_broken",
    "length_check": "length_check",
    "since": "created_at__gte",
    "until": "created_at__lt",
}


class StaffRatingsView(ApiView):
    """Every rating (staff), filtered and ordered by the listed fields only."""

    query_params_allowed = PAGINATION_PARAMS | set(RatingFilterSerializer().fields)

    permission_classes = STAFF
    token_scope = "export"

    @extend_schema(
        operation_id="staff_ratings_list",
        parameters=[RatingFilterSerializer, *PAGE_PARAMS],
        responses={200: ds.PaginatedStaffRatingList},
    )
    def get(self, request):
        f = RatingFilterSerializer(data=request.query_params)
        f.is_valid(raise_exception=True)
        v = f.validated_data
        qs = Rating.objects.select_related(
            "rater", "comparison", "guideline_version", "api_token__created_by"
        )
        for name, lookup in _RATING_FILTERS.items():
            if v.get(name) is not None:
                qs = qs.filter(**{lookup: v[name]})
        if v.get("source_model"):
            m = v["source_model"]
            qs = qs.filter(comparison__response_a__source_model=m) | qs.filter(
                comparison__response_b__source_model=m
            )
        if v.get("excluded") is True:
            qs = qs.excluded()
        elif v.get("excluded") is False:
            qs = qs.not_excluded()
        # the id breaks ties: ratings that share a preference or a time would otherwise come back in
        # any order, and pages (LIMIT/OFFSET) would repeat some and never show others
        tiebreak = "-id" if v["ordering"].startswith("-") else "id"
        qs = qs.order_by(v["ordering"], tiebreak)
        return page_response(self, request, qs, ds.StaffRatingSerializer)


class RaterFiguresView(ApiView):
    """Per-rater quality figures and trust weights (staff), where the quality job computed them."""

    query_params_allowed = PAGINATION_PARAMS

    permission_classes = STAFF
    token_scope = "read"

    @extend_schema(
        operation_id="staff_raters_list",
        responses={200: ds.PaginatedRaterFiguresList},
        parameters=PAGE_PARAMS,
    )
    def get(self, request):
        qs = RaterProfile.objects.select_related("rater").order_by("rater__username")
        return page_response(self, request, qs, ds.RaterFiguresSerializer)


# --- Export -------------------------------------------------------------------------------------------


class ExportQuerySerializer(serializers.Serializer):
    mode = ChoiceField(choices=["rating", "comparison"], default="rating")
    output = ChoiceField(choices=["jsonl", "parquet"], default="jsonl")
    kind = ChoiceField(
        choices=["pairs", "ties"],
        default="pairs",
        help_text="ties: the ties / both-bad / split rows instead.",
    )
    guideline_version = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**31 - 1), required=False
    )
    source_model = serializers.ListField(child=serializers.CharField(max_length=128), required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    include_eval_set = serializers.BooleanField(
        default=False,
        help_text="Also the frozen evaluation set's ratings, marked eval_set (left out by default, as "
        "training leaves them out).",
    )


class ExportView(ApiView):
    """The preference export (staff) in TRL format, streamed: JSONL in 64 KB pieces, Parquet a row
    group at a time."""

    query_params_allowed = frozenset(ExportQuerySerializer().fields)
    query_params_repeatable = frozenset({"guideline_version", "source_model"})
    format_param_allowed = False  # its negotiation reads ?output=, not DRF's ?format=

    permission_classes = STAFF
    token_scope = "export"
    renderer_classes = [JSONRenderer]
    content_negotiation_class = FirstRendererNegotiation

    @extend_schema(
        parameters=[
            OpenApiParameter("mode", str, enum=["rating", "comparison"]),
            OpenApiParameter("output", str, enum=["jsonl", "parquet"]),
            OpenApiParameter("kind", str, enum=["pairs", "ties"]),
            OpenApiParameter("guideline_version", int, many=True),
            OpenApiParameter("source_model", str, many=True),
            OpenApiParameter("since", OpenApiTypes.DATETIME),
            OpenApiParameter("until", OpenApiTypes.DATETIME),
            OpenApiParameter("include_eval_set", bool),
        ],
        responses={
            (200, "application/jsonl"): OpenApiResponse(
                OpenApiTypes.STR, description="One JSON object a line."
            ),
            (200, "application/vnd.apache.parquet"): OpenApiResponse(OpenApiTypes.BINARY),
        },
    )
    def get(self, request):
        data = {k: request.query_params.getlist(k) for k in ("guideline_version", "source_model")}
        data.update({k: v for k, v in request.query_params.items() if k not in data})
        q = ExportQuerySerializer(data={k: v for k, v in data.items() if v != []})
        q.is_valid(raise_exception=True)
        v = q.validated_data
        try:
            filters = ExportFilters(
                guideline_versions=v.get("guideline_version", []),
                since=v.get("since"),
                until=v.get("until"),
                source_models=v.get("source_model", []),
                include_ties=v["kind"] == "ties",
                include_eval_set=v["include_eval_set"],
            )
        except ValueError as exc:
            raise serializers.ValidationError({"detail": str(exc)}) from None
        wanted = "pair" if v["kind"] == "pairs" else "tie"
        rows = (row for kind, row in export_rows(mode=v["mode"], filters=filters) if kind == wanted)
        name = f"preferences-{v['mode']}-{v['kind']}"
        if v["output"] == "jsonl":
            chunks, content_type = jsonl_chunks(rows), "application/jsonl"
        else:
            schema = parquet_schema(v["mode"], wanted)
            chunks, content_type = parquet_chunks(rows, schema=schema), "application/vnd.apache.parquet"
        response = StreamingHttpResponse(chunks, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="{name}.{v["output"]}"'
        return response
