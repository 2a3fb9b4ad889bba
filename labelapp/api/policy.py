"""Staff API for the policy loop: versions with the over-optimization watch, their evaluation answers side
by side with the previous policy's, rejecting and reinstating a version, and starting a round. Each view
validates, calls one service, serializes."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from labelapp.api.data_serializers import PaginatedTrainingRunList, paginated
from labelapp.api.pagination import PAGE_PARAMS, page_response
from labelapp.api.permissions import STAFF
from labelapp.api.serializers import ChoiceField, StrictTextField, TrainingRunSerializer
from labelapp.api.strict import PAGINATION_PARAMS, ApiView, StrictSerializer
from labelapp.models import PolicyVersion, TrainingRun
from labelapp.services.policy import (
    POLICY_KINDS,
    PolicyError,
    VersionRow,
    policy_reinstate,
    policy_reject,
    policy_round_request,
    policy_sample_pairs,
    policy_version_get,
    policy_version_rows,
    policy_versions_query,
    policy_warnings,
    policy_win_rate,
)
from labelapp.services.training import BrokerUnavailable


class WinRateSerializer(serializers.Serializer):
    n = serializers.IntegerField(help_text="judged comparisons: the unit the intervals count")
    judgments = serializers.IntegerField(help_text="ratings of those comparisons")
    wins = serializers.IntegerField(help_text="judgments the new policy's answer won")
    ties = serializers.IntegerField()
    losses = serializers.IntegerField()
    win_rate = serializers.FloatField(help_text="mean over comparisons of the share won, ties half")
    lo = serializers.FloatField(help_text="95% Wilson interval, lower end")
    hi = serializers.FloatField(help_text="95% Wilson interval, upper end")
    lc_win_rate = serializers.FloatField(
        allow_null=True, help_text="P(new wins) at equal length: the raters' length pull taken out"
    )
    lc_lo = serializers.FloatField(allow_null=True, help_text="95% interval, lower end")
    lc_hi = serializers.FloatField(allow_null=True, help_text="95% interval, upper end")
    length_slope = serializers.FloatField(
        allow_null=True, help_text="raters' pull toward the longer answer, logit per e-fold of word ratio"
    )
    same_policy_pairs = serializers.IntegerField(help_text="new-vs-new comparisons that measured it")


class PolicyDecisionSerializer(serializers.Serializer):
    action = serializers.CharField(help_text="reject or reinstate")
    reason = serializers.CharField()
    by = serializers.CharField(
        source="by.username", allow_null=True, default=None, help_text="null: the watch or a deleted account"
    )
    automatic = serializers.BooleanField(help_text="the watch decided, not a person")
    who = serializers.CharField(help_text="the watch, the account's name, or 'a deleted account'")
    at = serializers.DateTimeField()


class PolicyVersionSerializer(serializers.Serializer):
    number = serializers.IntegerField(source="version.number")
    kind = serializers.CharField(source="version.kind")
    parent = serializers.IntegerField(source="version.parent.number", allow_null=True, default=None)
    reward_model = serializers.IntegerField(
        source="version.reward_model.number", allow_null=True, default=None
    )
    run_id = serializers.IntegerField(source="version.run_id", allow_null=True)
    sampling = serializers.DictField(source="version.sampling")
    metrics = serializers.DictField(source="version.metrics")
    history = serializers.ListField(source="version.history", child=serializers.DictField())
    win = WinRateSerializer(allow_null=True)
    warnings = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField(source="version.created_at")
    rejected_at = serializers.DateTimeField(source="version.rejected_at", allow_null=True)
    rejected_reason = serializers.CharField(source="version.rejected_reason")
    decisions = PolicyDecisionSerializer(source="version.decisions.all", many=True)


class PolicyAnswerSerializer(serializers.Serializer):
    policy = serializers.IntegerField(source="policy.number")
    text = serializers.CharField(source="response.text")
    reward = serializers.FloatField(allow_null=True)
    num_tokens = serializers.IntegerField()
    finished = serializers.BooleanField()
    kl = serializers.FloatField(allow_null=True)


class SamplePairSerializer(serializers.Serializer):
    prompt_id = serializers.IntegerField(source="prompt.pk")
    prompt = serializers.CharField(source="prompt.text")
    previous = PolicyAnswerSerializer(
        source="old", allow_null=True, help_text="its reward is on the reward model of the round that made it"
    )
    new = PolicyAnswerSerializer()
    previous_reward = serializers.FloatField(
        source="old_reward",
        allow_null=True,
        help_text="the previous answer's reward under this round's reward model, the one new.reward is "
        "on (null for rounds recorded before it was kept)",
    )


class RoundRequestSerializer(StrictSerializer):
    kind = ChoiceField(choices=[str(k) for k in POLICY_KINDS], help_text="ppo or best_of_n")


class PolicyVersionsView(ApiView):
    permission_classes = STAFF
    token_scope = "train"

    query_params_allowed = PAGINATION_PARAMS

    @extend_schema(
        operation_id="policies_list",
        responses={200: paginated(PolicyVersionSerializer)},
        parameters=PAGE_PARAMS,
    )
    def get(self, request):
        """Every policy version (staff), newest first, a page at a time (`limit`, `offset`), with its
        round's watch figures, win rate and warnings."""
        return page_response(
            self, request, policy_versions_query(), PolicyVersionSerializer, rows=policy_version_rows
        )


def _version(number: int) -> PolicyVersion:
    version = policy_version_get(number)
    if version is None:
        raise NotFound("No such policy version.")
    return version


class PolicyVersionView(ApiView):
    permission_classes = STAFF
    token_scope = "train"

    @extend_schema(responses={200: PolicyVersionSerializer})
    def get(self, request, number: int):
        """One policy version (staff): its round's figures, win rate against its parent, warnings."""
        version = _version(number)
        win = policy_win_rate(version=version)
        row = VersionRow(version, win, policy_warnings(version=version, win=win))
        return Response(PolicyVersionSerializer(row).data)


class ReasonSerializer(StrictSerializer):
    reason = StrictTextField(max_length=2000, help_text="Why (recorded).")


def _decide(request, number: int, decide) -> Response:
    """Validate the reason, call the decision service, answer with the version (400 on PolicyError)."""
    version = _version(number)
    body = ReasonSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    try:
        version = decide(version=version, reason=body.validated_data["reason"], by=request.user)
    except PolicyError as exc:
        raise ValidationError({"reason": [str(exc)]}) from None
    win = policy_win_rate(version=version)
    row = VersionRow(version, win, policy_warnings(version=version, win=win))
    return Response(PolicyVersionSerializer(row).data)


class PolicyRejectView(ApiView):
    """Reject a version: later rounds start from the newest version neither rejected nor built on one."""

    permission_classes = STAFF
    token_scope = "train"

    @extend_schema(request=ReasonSerializer, responses={200: PolicyVersionSerializer})
    def post(self, request, number: int):
        return _decide(request, number, policy_reject)


class PolicyReinstateView(ApiView):
    """Lift a version's rejection: rounds may start from it again; the watch does not reject it again."""

    permission_classes = STAFF
    token_scope = "train"

    @extend_schema(request=ReasonSerializer, responses={200: PolicyVersionSerializer})
    def post(self, request, number: int):
        return _decide(request, number, policy_reinstate)


class PolicySamplesView(ApiView):
    """Evaluation prompts with the previous and this version's answers: prompt texts in bulk, so a
    token needs the `export` scope (`read` does not open it)."""

    permission_classes = STAFF
    token_scope = "export"

    @extend_schema(responses={200: SamplePairSerializer(many=True)})
    def get(self, request, number: int):
        pairs = policy_sample_pairs(version=_version(number))
        return Response(SamplePairSerializer(pairs, many=True).data)


class PolicyRoundsView(ApiView):
    """Policy rounds (staff). POST queues one now (409 while one is queued or running)."""

    permission_classes = STAFF
    token_scope = "train"

    query_params_allowed = PAGINATION_PARAMS

    @extend_schema(
        operation_id="policy_rounds_list",
        responses={200: PaginatedTrainingRunList},
        parameters=PAGE_PARAMS,
    )
    def get(self, request):
        """Policy rounds, newest first, a page at a time (`limit`, `offset`)."""
        rounds = TrainingRun.objects.filter(kind__in=POLICY_KINDS).order_by("-created_at", "-id")
        return page_response(self, request, rounds, TrainingRunSerializer)

    @extend_schema(
        request=RoundRequestSerializer,
        responses={
            201: TrainingRunSerializer,
            409: OpenApiResponse(description="A round is active."),
            503: OpenApiResponse(description="The task broker is unreachable: nothing was queued."),
        },
    )
    def post(self, request):
        serializer = RoundRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            run = policy_round_request(
                kind=serializer.validated_data["kind"], trigger="api", requested_by=request.user
            )
        except PolicyError as exc:
            raise ValidationError({"detail": str(exc)}) from None
        except BrokerUnavailable as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        if run is None:
            return Response(
                {"detail": "A policy round is already queued or running: one at a time."}, status=409
            )
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_201_CREATED)
