"""API serializers. Raters see answers by side; model names and gold answers never leave the server."""

from __future__ import annotations

import re

from rest_framework import serializers

from labelapp.api.strict import StrictSerializer
from labelapp.models import Rating
from labelapp.services.ratings import RatingInput


class StrictTextField(serializers.CharField):
    """Text only: DRF's CharField would store a number sent as text (or NaN, true) as its str()."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """JSON true or false only: DRF's BooleanField reads "yes", "0" and 1 as booleans too."""

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer, or in a form body its ASCII digits: DRF's IntegerField also took 3.0, true, "３"
    (full-width) and "١" (Arabic-Indic) as numbers, so a rating sent with a float or a look-alike digit
    was stored as if typed plainly."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | str):
            self.fail("invalid")
        if isinstance(data, str):
            # text only from a form body (a QueryDict), where every value is text; in JSON, "3" is a
            # string, not the number the field takes
            form_body = hasattr(getattr(self.root, "initial_data", None), "getlist")
            if not form_body or not _ASCII_INTEGER.fullmatch(data.strip()):
                self.fail("invalid")
        return super().to_internal_value(data)


_ASCII_INTEGER = re.compile(r"[-+]?[0-9]{1,20}")


class StrictFloatField(serializers.FloatField):
    """A JSON number only: DRF's FloatField reads true as 1.0 (and "2" as 2.0)."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class ChoiceField(serializers.ChoiceField):
    """DRF's ChoiceField, with the refused value cut to 50 characters in the error: the message quoted
    the whole of it (a 100 KB "kind" came back as a 100 KB 400)."""

    def fail(self, key, **kwargs):
        if "input" in kwargs:
            kwargs["input"] = str(kwargs["input"])[:50]
        super().fail(key, **kwargs)


class StrictUUIDField(serializers.UUIDField):
    """A UUID written as a string: DRF's UUIDField turns an integer (and true, and 0) into UUID(int=...)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid", value=data)
        return super().to_internal_value(data)


class AnswerSerializer(serializers.Serializer):
    label = serializers.CharField(help_text="A or B: what `preference` refers to.")
    text = serializers.CharField()
    html = serializers.CharField(help_text="Rendered and sanitized markdown.")
    words = serializers.IntegerField()


class AssignmentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    comparison_id = serializers.IntegerField()
    prompt = serializers.CharField()
    prompt_html = serializers.CharField()
    left = AnswerSerializer()
    right = AnswerSerializer()
    shown_left = serializers.CharField()
    lease_expires_at = serializers.DateTimeField()
    idempotency_key = serializers.UUIDField()
    length_check_ratio = serializers.FloatField()
    notice = serializers.CharField(
        allow_null=True,
        default=None,
        help_text="GET /api/assignments/next/ only: a comparison you had open was set aside since you last "
        "asked (its prompt withdrawn, or held for a personal-data review); null otherwise.",
    )


class RatingInSerializer(StrictSerializer):
    preference = StrictIntegerField(
        min_value=-3, max_value=3, help_text="-3 A much better .. 3 B much better"
    )
    both_bad = serializers.BooleanField(default=False)
    helpfulness = StrictIntegerField(min_value=-2, max_value=2, required=False, allow_null=True)
    factual_accuracy = StrictIntegerField(min_value=-2, max_value=2, required=False, allow_null=True)
    harmlessness = StrictIntegerField(min_value=-2, max_value=2, required=False, allow_null=True)
    conciseness = StrictIntegerField(min_value=-2, max_value=2, required=False, allow_null=True)
    coherence = StrictIntegerField(min_value=-2, max_value=2, required=False, allow_null=True)
    rationale = StrictTextField(required=False, allow_blank=True, max_length=5000, default="")
    flag_pii = serializers.BooleanField(default=False)
    flag_unsafe = serializers.BooleanField(default=False)
    flag_broken = serializers.BooleanField(default=False)
    length_check = ChoiceField(
        choices=["", "adds_content", "adds_nothing"],
        required=False,
        default="",
        help_text="Required when the chosen answer is at least length_check_ratio times longer "
        "(the rating service answers 400 with a length_check error otherwise).",
    )
    time_on_task_ms = StrictIntegerField(
        min_value=0,
        required=False,
        help_text="Milliseconds from first sight to submit, as the client measured it; omitted: the server "
        "measures from the lease's issue to the submit.",
    )
    idempotency_key = StrictUUIDField()

    def to_input(self) -> RatingInput:
        return RatingInput.from_validated(self.validated_data)


class RatingOutSerializer(serializers.ModelSerializer):
    guideline_version = serializers.IntegerField(source="guideline_version.number")

    class Meta:
        model = Rating
        fields = [
            "id",
            "comparison",
            "assignment",
            "preference",
            "both_bad",
            *Rating.DIMENSIONS,
            "rationale",
            "flag_pii",
            "flag_unsafe",
            "flag_broken",
            "length_check",
            "guideline_version",
            "time_on_task_ms",
            "idempotency_key",
            "created_at",
        ]


class SkipSerializer(StrictSerializer):
    reason = StrictTextField(max_length=500)


class AcknowledgeSerializer(StrictSerializer):
    version = StrictIntegerField(help_text="The guideline version number being acknowledged.")


class GuidelineSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    title = serializers.CharField()
    text = serializers.CharField()
    html = serializers.CharField()
    published_at = serializers.DateTimeField()
    acknowledged = serializers.BooleanField()


class QueueFiguresSerializer(serializers.Serializer):
    pending = serializers.IntegerField()
    leased = serializers.IntegerField()
    done = serializers.IntegerField()


class TrainingRunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    status = serializers.CharField()
    trigger = serializers.CharField()
    attempts = serializers.IntegerField()
    max_attempts = serializers.IntegerField()
    progress = serializers.FloatField()
    progress_detail = serializers.DictField()
    metrics = serializers.DictField()
    error = serializers.CharField()
    n_ratings = serializers.IntegerField(source="data_snapshot.n_usable", default=0)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class TrainingRequestSerializer(StrictSerializer):
    with_baseline = StrictBooleanField(
        default=None,
        allow_null=True,
        help_text="Also train a plain Bradley-Terry model (left out: the RM_TRAIN_PLAIN_BASELINE setting).",
    )


class RewardModelVersionSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    run_id = serializers.IntegerField()
    is_active = serializers.BooleanField()
    metrics = serializers.DictField()
    baseline_metrics = serializers.DictField()
    eval_set_metrics = serializers.DictField()
    activation_note = serializers.CharField()
    artifact_path = serializers.CharField()
    created_at = serializers.DateTimeField()
    activated_at = serializers.DateTimeField(allow_null=True)
