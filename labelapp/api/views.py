"""API views: validate with a serializer, call one service, serialize the result.

Every assignment lookup is filtered by the requesting rater, so another rater's id answers 404.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.response import Response

from labelapp.api import serializers as s
from labelapp.api.data_serializers import PaginatedTrainingRunList, paginated
from labelapp.api.pagination import PAGE_PARAMS, page_response
from labelapp.api.permissions import STAFF
from labelapp.api.strict import PAGINATION_PARAMS, ApiView, StrictQueryParams
from labelapp.models import (
    ApiToken,
    Assignment,
    GuidelineAcknowledgment,
    GuidelineVersion,
    Rating,
    RewardModelVersion,
    TrainingRun,
)
from labelapp.selectors import assignment_for_page, rating_view
from labelapp.services.assignment import (
    QueueError,
    assignment_next_with_notice,
    assignment_skip,
    assignment_taken_back_said,
    assignment_texts_shown,
)
from labelapp.services.guidelines import (
    GuidelineAckRequired,
    GuidelineError,
    guideline_acknowledge,
    guideline_current,
)
from labelapp.services.queue import queue_figures
from labelapp.services.ratings import RatingError, rating_submit
from labelapp.services.training import (
    AlreadyActive,
    BrokerUnavailable,
    TooFewRatings,
    reward_model_activate,
    training_run_request,
)


def _own_assignment(request, assignment_id: int) -> Assignment:
    try:
        return assignment_for_page(rater=request.user, assignment_id=assignment_id)
    except Assignment.DoesNotExist:
        raise NotFound("No such assignment.") from None


def _assignment_payload(assignment: Assignment) -> dict:
    view = rating_view(assignment=assignment)
    c = assignment.comparison
    by_label = {"A": c.response_a, "B": c.response_b}

    def answer(shown):
        return {
            "label": shown.label,
            "text": by_label[shown.label].text,
            "html": shown.html,
            "words": shown.words,
        }

    return {
        "id": assignment.pk,
        "comparison_id": c.pk,
        "prompt": c.prompt.text,
        "prompt_html": view.prompt_html,
        "left": answer(view.left),
        "right": answer(view.right),
        "shown_left": assignment.shown_left,
        "lease_expires_at": assignment.lease_expires_at,
        "idempotency_key": assignment.form_key,
        "length_check_ratio": settings.LABEL["LENGTH_CHECK_RATIO"],
    }


class NextAssignmentView(ApiView):
    token_scope = "rate"

    @extend_schema(
        responses={
            200: s.AssignmentSerializer,
            204: OpenApiResponse(
                description="Nothing to rate. A `Notice` header carries what `notice` would have said."
            ),
        }
    )
    def get(self, request):
        """Your open assignment, or the next comparison claimed for you (204 when nothing is left).
        `notice` says when a comparison you had open was set aside since you last asked (its prompt
        withdrawn, or held for a personal-data review); null otherwise. On a 204 the `Notice` header
        says it."""
        try:
            assignment, notice = assignment_next_with_notice(rater=request.user)
        except GuidelineAckRequired as exc:
            raise PermissionDenied(
                f"Acknowledge guidelines version {exc.version.number} first "
                "(POST /api/guidelines/acknowledge/)."
            ) from None
        said = {"Notice": notice} if notice else {}  # a 204 has no body to carry it
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT, headers=said)
        try:
            assignment = assignment_for_page(rater=request.user, assignment_id=assignment.pk)
        except Assignment.DoesNotExist:  # withdrawn in the instant since the claim: ask again
            return Response(status=status.HTTP_204_NO_CONTENT, headers={"Retry-After": "1", **said})
        return Response(s.AssignmentSerializer(_assignment_payload(assignment) | {"notice": notice}).data)


class AssignmentDetailView(ApiView):
    token_scope = "rate"

    @extend_schema(responses={200: s.AssignmentSerializer})
    def get(self, request, assignment_id: int):
        """One of your assignments, open or finished (404 for another rater's, and for one whose prompt
        waits for a staff review of a personal-data report: an open lease is taken back)."""
        assignment = _own_assignment(request, assignment_id)
        if not assignment_texts_shown(assignment):
            assignment_taken_back_said(rater=request.user, assignment_id=assignment_id)  # this answer says it
            raise NotFound("Set aside: its prompt waits for a staff review of a personal-data report.")
        return Response(s.AssignmentSerializer(_assignment_payload(assignment)).data)


class RatingSubmitView(ApiView):
    token_scope = "rate"

    @extend_schema(
        request=s.RatingInSerializer, responses={201: s.RatingOutSerializer, 200: s.RatingOutSerializer}
    )
    def post(self, request, assignment_id: int):
        """Rate your assignment. Re-sending the same idempotency_key returns the stored rating (200)."""
        serializer = s.RatingInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            rating, created = rating_submit(
                rater=request.user,
                assignment_id=assignment_id,
                idempotency_key=serializer.validated_data["idempotency_key"],
                data=serializer.to_input(),
                token=request.auth if isinstance(request.auth, ApiToken) else None,
            )
        except Assignment.DoesNotExist:
            raise NotFound("No such assignment.") from None
        except RatingError as exc:
            field = "idempotency_key" if exc.field == "form_key" else exc.field  # the page's name for it
            # a field's errors are a list, as the serializer's are; "detail" is one message
            raise ValidationError({field: [str(exc)]} if field else {"detail": str(exc)}) from None
        return Response(
            s.RatingOutSerializer(rating).data, status=status.HTTP_201_CREATED if created else 200
        )


class SkipView(ApiView):
    token_scope = "rate"

    @extend_schema(
        request=s.SkipSerializer,
        responses={200: inline_serializer("Skipped", {"status": serializers.CharField(default="skipped")})},
    )
    def post(self, request, assignment_id: int):
        """Skip your open assignment with a reason; the comparison goes back to the queue for others."""
        serializer = s.SkipSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            assignment_skip(
                rater=request.user, assignment_id=assignment_id, reason=serializer.validated_data["reason"]
            )
        except Assignment.DoesNotExist:
            raise NotFound("No such assignment.") from None
        except QueueError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        return Response({"status": "skipped"})


class MyRatingsView(StrictQueryParams, generics.ListAPIView):
    """Your own ratings, newest first (never editable: a rating is evidence)."""

    token_scope = "rate"
    query_params_allowed = PAGINATION_PARAMS

    serializer_class = s.RatingOutSerializer

    def get_queryset(self):
        return (
            Rating.objects.filter(rater=self.request.user).select_related("guideline_version").order_by("-id")
        )


class CurrentGuidelineView(ApiView):
    token_scope = "rate"

    @extend_schema(responses={200: s.GuidelineSerializer})
    def get(self, request):
        """The guideline version in force, and whether you acknowledged it (404 before any is published)."""
        current = guideline_current()
        if current is None:
            raise NotFound("No guidelines are published yet.")
        acked = GuidelineAcknowledgment.objects.filter(rater=request.user, version=current).exists()
        return Response(
            s.GuidelineSerializer(
                {
                    "number": current.number,
                    "title": current.title,
                    "text": current.text,
                    "html": current.html,
                    "published_at": current.published_at,
                    "acknowledged": acked,
                }
            ).data
        )


class AcknowledgeView(ApiView):
    token_scope = "rate"

    @extend_schema(
        request=s.AcknowledgeSerializer,
        responses={
            200: inline_serializer(
                "Acknowledged",
                {
                    "status": serializers.CharField(default="acknowledged"),
                    "version": serializers.IntegerField(),
                },
            )
        },
    )
    def post(self, request):
        """Acknowledge a published guideline version (you rate under the newest one you acknowledged)."""
        serializer = s.AcknowledgeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        # a draft is "no such version" too: a rater learnt that one existed, and its number
        published = GuidelineVersion.objects.filter(published_at__isnull=False)
        version = published.filter(number=serializer.validated_data["version"]).first()
        if version is None:
            raise ValidationError({"version": ["No such guideline version."]})
        try:
            guideline_acknowledge(rater=request.user, version=version)
        except GuidelineError as exc:
            raise ValidationError({"version": [str(exc)]}) from None
        return Response({"status": "acknowledged", "version": version.number})


class QueueFiguresView(ApiView):
    permission_classes = STAFF
    token_scope = "read"

    @extend_schema(responses={200: s.QueueFiguresSerializer})
    def get(self, request):
        """The queue's figures (staff): pending slots, open leases, ratings today."""
        return Response(s.QueueFiguresSerializer(queue_figures()).data)


class TrainingRunsView(ApiView):
    """Reward model runs (staff). POST queues one now, unless one is already queued or running (409)."""

    permission_classes = STAFF
    token_scope = "train"

    query_params_allowed = PAGINATION_PARAMS

    @extend_schema(
        operation_id="training_runs_list",
        responses={200: PaginatedTrainingRunList},
        parameters=PAGE_PARAMS,
    )
    def get(self, request):
        """Reward-model runs, newest first, a page at a time (`limit`, `offset`); policy rounds are
        listed at /api/policy-rounds/."""
        runs = TrainingRun.objects.filter(kind=TrainingRun.Kind.REWARD_MODEL).order_by("-created_at", "-id")
        return page_response(self, request, runs, s.TrainingRunSerializer)

    @extend_schema(
        request=s.TrainingRequestSerializer,
        responses={
            201: s.TrainingRunSerializer,
            400: OpenApiResponse(description="Too few ratings would train: no run was queued."),
            409: OpenApiResponse(description="A run is already queued or running: one at a time."),
            503: OpenApiResponse(description="The task broker is unreachable: the run was not queued."),
        },
    )
    def post(self, request):
        serializer = s.TrainingRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            run = training_run_request(
                trigger="api",
                requested_by=request.user,
                force=True,
                with_baseline=serializer.validated_data["with_baseline"],
            )
        except BrokerUnavailable as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        except TooFewRatings as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
        if run is None:
            return Response({"detail": "A run is already queued or running: one at a time."}, status=409)
        return Response(s.TrainingRunSerializer(run).data, status=status.HTTP_201_CREATED)


class RewardModelsView(ApiView):
    permission_classes = STAFF
    token_scope = "train"

    query_params_allowed = PAGINATION_PARAMS

    @extend_schema(
        operation_id="reward_models_list",
        responses={200: paginated(s.RewardModelVersionSerializer)},
        parameters=PAGE_PARAMS,
    )
    def get(self, request):
        """Reward-model versions (staff), newest first, a page at a time (`limit`, `offset`), with
        their metrics and activation state."""
        versions = RewardModelVersion.objects.order_by("-number")
        return page_response(self, request, versions, s.RewardModelVersionSerializer)


class RewardModelActivateView(ApiView):
    permission_classes = STAFF
    token_scope = "train"
    bodyless_methods = frozenset({"POST"})

    @extend_schema(
        request=None,
        responses={
            200: s.RewardModelVersionSerializer,
            409: OpenApiResponse(description="The version is already active: nothing changed."),
        },
    )
    def post(self, request, number: int):
        """Make this reward-model version the active one by hand (staff; the gate does not apply)."""
        version = RewardModelVersion.objects.filter(number=number).first()
        if version is None:
            raise NotFound("No such reward model version.")
        try:
            version = reward_model_activate(version=version, by=request.user)
        except AlreadyActive as e:
            return Response({"detail": str(e)}, status=409)
        return Response(s.RewardModelVersionSerializer(version).data)
