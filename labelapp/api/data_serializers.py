"""Serializers for the data endpoints (tokens, ingest, comparisons, staff ratings, export).

Outputs list their fields explicitly: nothing reaches a client because a model grew a column.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework import serializers

from labelapp.api.serializers import (
    StrictBooleanField,
    StrictFloatField,
    StrictIntegerField,
    StrictTextField,
    TrainingRunSerializer,
)
from labelapp.api.strict import StrictSerializer
from labelapp.models import TOKEN_SCOPES, PromptConsentChange
from labelapp.services.ingest import MAX_TEXT_CHARS
from labelapp.services.tokens import MAX_EXPIRY_DAYS


class TokenCreateSerializer(StrictSerializer):
    username = StrictTextField(max_length=150, help_text="Whose token (the program acts as this user).")
    name = StrictTextField(max_length=100, help_text="What the token is for.")
    scopes = serializers.ListField(
        child=StrictTextField(max_length=16),
        required=False,
        max_length=16,
        help_text="What it may do, from: " + ", ".join(TOKEN_SCOPES) + ". Omitted: all of them.",
    )
    expires_in_days = StrictIntegerField(
        required=False, min_value=1, max_value=MAX_EXPIRY_DAYS, help_text="Omitted: never expires."
    )

    def validate_username(self, value):
        user = get_user_model().objects.filter(username=value, is_active=True).first()
        if user is None:
            raise serializers.ValidationError("No such active user.")
        return user


class TokenSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    username = serializers.CharField(source="user.username")
    prefix = serializers.CharField()
    created_at = serializers.DateTimeField()
    last_used_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    scopes = serializers.ListField(child=serializers.CharField())
    expires_at = serializers.DateTimeField(allow_null=True)
    state = serializers.SerializerMethodField(
        help_text=(
            "active, revoked, expired, account inactive, account promoted or demoted, or minted from a "
            "stopped token (all but active are refused)."
        )
    )

    def get_state(self, token) -> str:
        from labelapp.services.tokens import token_state

        return token_state(token)


class TokenCreatedSerializer(TokenSerializer):
    key = serializers.CharField(help_text="Shown once. Only its SHA-256 digest is stored.")


class AnswerInSerializer(serializers.Serializer):
    text = serializers.CharField(max_length=MAX_TEXT_CHARS)
    model = serializers.CharField(max_length=128, help_text="Source model name (never shown to raters).")
    model_version = serializers.CharField(max_length=64, required=False, allow_blank=True)
    external_id = serializers.CharField(max_length=128, required=False, allow_null=True)


class PromptInSerializer(serializers.Serializer):
    """Documentation of one prompt object; the ingest service validates (and refuses unknown fields)."""

    text = serializers.CharField(max_length=MAX_TEXT_CHARS)
    source = serializers.CharField(max_length=64)
    consent = serializers.BooleanField(help_text="May ratings on this prompt be used for training?")
    external_id = serializers.CharField(max_length=128, required=False, allow_null=True)
    category = serializers.CharField(max_length=32, required=False, allow_blank=True)
    answers = AnswerInSerializer(many=True, required=False)


class IngestReportSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    prompt_ids = serializers.ListField(child=serializers.IntegerField())
    duplicate_of = serializers.ListField(child=serializers.IntegerField())
    answers_created = serializers.IntegerField(help_text="Answers stored, those added to duplicates too.")
    answers_added_to_existing = serializers.IntegerField(
        help_text="Answers attached to prompts already stored (the duplicates)."
    )
    answers_skipped_duplicate = serializers.IntegerField(
        help_text="Answers of duplicates not stored: the prompt already has that (scrubbed) text."
    )
    pii_found = serializers.DictField(child=serializers.IntegerField(), help_text="Type -> count, no values.")


class IngestErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
    errors = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text="[{line, error}] for every bad line (absent when the body itself could not be read).",
    )


class PromptOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    text = serializers.CharField()
    source = serializers.CharField()
    consent = serializers.BooleanField()
    withheld = serializers.BooleanField()
    external_id = serializers.CharField(allow_null=True)
    category = serializers.CharField()
    pii_found = serializers.DictField(child=serializers.IntegerField())
    created_at = serializers.DateTimeField()
    erased_at = serializers.DateTimeField(
        allow_null=True, help_text="When its words were erased (POST .../erase/); null: never."
    )


class PromptEraseInSerializer(StrictSerializer):
    """No fields: the prompt is the URL's. A body with fields is refused (none is read)."""


class PromptEraseOutSerializer(serializers.Serializer):
    prompt_id = serializers.IntegerField()
    erased_now = serializers.BooleanField(help_text="false: its words had been erased before; nothing done.")
    erased_at = serializers.DateTimeField()
    counts = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="Rows whose words were replaced, by kind (prompts, answers, rationales, skip_reasons, "
        "gold_explanations, consent_reasons, review_reasons); empty when erased before.",
    )


class PromptConsentInSerializer(StrictSerializer):
    consent = StrictBooleanField(help_text="The new value: false withdraws consent, true restores it.")
    reason = StrictTextField(
        max_length=PromptConsentChange.REASON_MAX, help_text="Why (recorded with your name and the time)."
    )


class PromptConsentChangeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    prompt_id = serializers.IntegerField()
    consent = serializers.BooleanField(help_text="The value set: false = withdrawn, true = restored.")
    reason = serializers.CharField()
    changed_by = serializers.CharField(
        source="changed_by.username",
        allow_null=True,
        default=None,
        help_text="null: a command or a deleted account",
    )
    comparison_ids = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="Comparisons taken out of the queue (withdrawal) or put back (restoration).",
    )
    created_at = serializers.DateTimeField()


class ResponsesInSerializer(serializers.Serializer):
    answers = AnswerInSerializer(many=True, min_length=1, max_length=32)


class ResponseOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    prompt_id = serializers.IntegerField()
    text = serializers.CharField()
    source_model = serializers.CharField()
    source_model_version = serializers.CharField()
    external_id = serializers.CharField(allow_null=True)  # a retry's answers matched to the sender's
    word_count = serializers.IntegerField()
    pii_found = serializers.DictField(child=serializers.IntegerField())


class ComparisonsInSerializer(StrictSerializer):
    prompt_ids = serializers.ListField(child=StrictIntegerField(min_value=1), min_length=1, max_length=1000)
    per_prompt = StrictIntegerField(
        min_value=1, max_value=100, required=False, allow_null=True, help_text="Empty: all pairs."
    )
    length_matched = StrictBooleanField(default=False, help_text="Closest-in-length pairs first.")
    max_length_ratio = StrictFloatField(min_value=1.0, max_value=1000.0, required=False, allow_null=True)
    required_ratings = StrictIntegerField(min_value=1, max_value=50, required=False, allow_null=True)
    priority = StrictIntegerField(min_value=-1000, max_value=1000, default=0)
    seed = StrictIntegerField(min_value=0, max_value=2**31 - 1, required=False, allow_null=True)


class ComparisonsOutSerializer(serializers.Serializer):
    created = serializers.ListField(child=serializers.IntegerField())
    skipped_prompts = serializers.DictField(child=serializers.CharField())


class StaffRatingSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    rater = serializers.CharField(source="rater.username")
    comparison = serializers.IntegerField(source="comparison_id")
    prompt = serializers.IntegerField(source="comparison.prompt_id")
    kind = serializers.CharField(source="comparison.kind")
    preference = serializers.IntegerField()
    both_bad = serializers.BooleanField()
    rationale = serializers.CharField()
    flag_pii = serializers.BooleanField()
    flag_unsafe = serializers.BooleanField()
    flag_broken = serializers.BooleanField()
    length_check = serializers.CharField()
    guideline_version = serializers.IntegerField(source="guideline_version.number")
    time_on_task_ms = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    api_token = serializers.CharField(
        source="api_token.prefix",
        allow_null=True,
        default=None,
        help_text="The prefix of the API token the rating was submitted with (null: the rating page).",
    )
    submitted_via = serializers.CharField(help_text="The same in words, with who made the token.")


class RaterFiguresSerializer(serializers.Serializer):
    rater = serializers.CharField(source="rater.username")
    trust_weight = serializers.FloatField()
    figures = serializers.DictField()
    updated_at = serializers.DateTimeField()


def paginated(child: type[serializers.Serializer]) -> type[serializers.Serializer]:
    """The limit/offset page around `child` as the list endpoints answer it (for the schema)."""
    name = "Paginated" + child.__name__.removesuffix("Serializer") + "List"
    return type(
        name,
        (serializers.Serializer,),
        {
            "count": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": child(many=True),
        },
    )


PaginatedTokenList = paginated(TokenSerializer)
PaginatedPromptOutList = paginated(PromptOutSerializer)
PaginatedStaffRatingList = paginated(StaffRatingSerializer)
PaginatedRaterFiguresList = paginated(RaterFiguresSerializer)
# reward-model runs and policy rounds alike: one class, one schema component
PaginatedTrainingRunList = paginated(TrainingRunSerializer)
