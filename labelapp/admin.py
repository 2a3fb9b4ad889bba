"""Django admin for every model, with the filters and searches staff use to watch quality."""

from django.contrib import admin, messages
from django.db.models import Max

from labelapp.models import (
    Assignment,
    Comparison,
    GuidelineAcknowledgment,
    GuidelineVersion,
    Prompt,
    QueueSnapshot,
    RaterProfile,
    Rating,
    RatingReview,
    Response,
    RewardModelVersion,
    TrainingRun,
)
from labelapp.services.guidelines import GuidelineError, guideline_publish
from labelapp.services.training import reward_model_activate, training_run_cancel


class ResponseInline(admin.TabularInline):
    model = Response
    extra = 0
    fields = ("text", "source_model", "source_model_version", "word_count")
    readonly_fields = ("word_count",)


@admin.register(Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ("id", "short_text", "category", "source", "consent", "created_at")
    list_filter = ("category", "source", "consent")
    search_fields = ("text", "external_id")
    inlines = [ResponseInline]

    @admin.display(description="text")
    def short_text(self, obj):
        return obj.text[:80]


@admin.register(Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = ("id", "prompt_id", "source_model", "source_model_version", "word_count", "token_count")
    list_filter = ("source_model", "source_model_version")
    search_fields = ("text", "external_id", "prompt__text")
    readonly_fields = ("char_count", "word_count", "created_at")
    raw_id_fields = ("prompt",)


@admin.register(Comparison)
class ComparisonAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "prompt_id",
        "kind",
        "priority",
        "required_ratings",
        "claimed_count",
        "is_active",
        "created_at",
    )
    list_filter = ("kind", "is_active", "priority")
    search_fields = ("prompt__text", "external_id")
    readonly_fields = ("claimed_count",)
    raw_id_fields = ("prompt", "response_a", "response_b", "repeat_of")
    list_editable = ("priority", "is_active")


@admin.register(Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ("id", "rater", "comparison_id", "shown_left", "status", "issued_at", "lease_expires_at")
    list_filter = ("status", "shown_left", "rater")
    search_fields = ("rater__username", "skip_reason")
    raw_id_fields = ("comparison",)
    readonly_fields = ("form_key",)


@admin.register(Rating)
class RatingAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "rater",
        "comparison_id",
        "preference",
        "both_bad",
        "length_check",
        "guideline_version",
        "time_on_task_ms",
        "created_at",
    )
    list_filter = (
        "preference",
        "both_bad",
        "length_check",
        "flag_pii",
        "flag_unsafe",
        "flag_broken",
        "guideline_version",
        "rater",
    )
    search_fields = ("rater__username", "rationale", "comparison__prompt__text")
    raw_id_fields = ("comparison", "assignment")
    date_hierarchy = "created_at"


@admin.register(GuidelineVersion)
class GuidelineVersionAdmin(admin.ModelAdmin):
    list_display = ("number", "title", "published_at", "author", "created_at")
    list_filter = ("published_at",)
    search_fields = ("text", "title", "changelog")
    readonly_fields = ("published_at", "created_at")
    actions = ["publish"]

    def get_readonly_fields(self, request, obj=None):
        # Published versions are history that ratings point to: never edited in place.
        if obj is not None and obj.published_at is not None:
            return ("number", "title", "text", "changelog", "author", "published_at", "created_at")
        return ("number", "published_at", "created_at")

    def save_model(self, request, obj, form, change):
        if not change:
            obj.author = obj.author or request.user
            obj.number = (GuidelineVersion.objects.aggregate(m=Max("number"))["m"] or 0) + 1
        super().save_model(request, obj, form, change)

    @admin.action(description="Publish the selected draft (raters must acknowledge it)")
    def publish(self, request, queryset):
        for version in queryset.order_by("number"):
            try:
                guideline_publish(version=version)
                self.message_user(request, f"Published version {version.number}.", messages.SUCCESS)
            except GuidelineError as exc:
                self.message_user(request, str(exc), messages.ERROR)


@admin.register(GuidelineAcknowledgment)
class GuidelineAcknowledgmentAdmin(admin.ModelAdmin):
    list_display = ("rater", "version", "acknowledged_at")
    list_filter = ("version",)
    search_fields = ("rater__username",)


@admin.register(RatingReview)
class RatingReviewAdmin(admin.ModelAdmin):
    list_display = ("rating", "decision", "reason", "reviewer", "created_at")
    list_filter = ("decision",)
    raw_id_fields = ("rating",)


@admin.register(RaterProfile)
class RaterProfileAdmin(admin.ModelAdmin):
    list_display = ("rater", "trust_weight", "updated_at")
    search_fields = ("rater__username",)
    readonly_fields = ("figures", "updated_at")


@admin.register(QueueSnapshot)
class QueueSnapshotAdmin(admin.ModelAdmin):
    list_display = ("taken_at", "pending", "leased", "done", "released")
    date_hierarchy = "taken_at"


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "kind",
        "status",
        "progress",
        "attempts",
        "max_attempts",
        "trigger",
        "created_at",
        "finished_at",
    )
    list_filter = ("kind", "status", "trigger")
    search_fields = ("error", "worker")
    readonly_fields = (
        "status",
        "attempts",
        "progress",
        "progress_detail",
        "metrics",
        "metrics_history",
        "data_snapshot",
        "error",
        "artifact_path",
        "worker",
        "started_at",
        "heartbeat_at",
        "finished_at",
        "created_at",
    )
    actions = ["cancel"]

    @admin.action(description="Cancel the selected runs")
    def cancel(self, request, queryset):
        for run in queryset.filter(status__in=TrainingRun.ACTIVE):
            training_run_cancel(run=run)
            self.message_user(request, f"Cancelling run #{run.pk}.", messages.INFO)


@admin.register(RewardModelVersion)
class RewardModelVersionAdmin(admin.ModelAdmin):
    list_display = ("number", "is_active", "created_at", "activated_at", "artifact_path")
    list_filter = ("is_active",)
    readonly_fields = (
        "number",
        "run",
        "artifact_path",
        "metrics",
        "plots",
        "baseline_metrics",
        "is_active",
        "created_at",
        "activated_at",
    )
    actions = ["activate"]

    @admin.action(description="Activate the selected version (roll back or forward)")
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.ERROR)
            return
        version = reward_model_activate(version=queryset.get())
        self.message_user(request, f"Reward model v{version.number} is now active.", messages.SUCCESS)


# --- policy loop (read-mostly: rounds write these) -----------------------------------------------------

from labelapp.models import PolicyPair, PolicySample, PolicyVersion  # noqa: E402


@admin.register(PolicyVersion)
class PolicyVersionAdmin(admin.ModelAdmin):
    list_display = ("number", "kind", "parent", "reward_model", "created_at")
    list_filter = ("kind",)
    search_fields = ("artifact_path",)
    readonly_fields = ("metrics", "history", "created_at")


@admin.register(PolicySample)
class PolicySampleAdmin(admin.ModelAdmin):
    list_display = ("policy", "prompt", "split", "index", "reward", "num_tokens", "finished")
    list_filter = ("split", "finished", "policy")
    search_fields = ("response__text", "prompt__text")
    raw_id_fields = ("prompt", "response")


@admin.register(PolicyPair)
class PolicyPairAdmin(admin.ModelAdmin):
    list_display = ("comparison", "kind", "new", "old", "new_is_a")
    list_filter = ("kind", "new")
    raw_id_fields = ("comparison",)
