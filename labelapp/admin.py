"""Django admin for every model, with the filters and searches staff use to watch quality.

Ratings are evidence: read-only here (no add, change or delete). Staff confirm or exclude them with a
reason through actions that record a RatingReview (services/review.py). A stored prompt's consent
changes the same way: through actions that ask for a reason and record a PromptConsentChange
(services/consent.py), never by editing the field.
"""

from collections import Counter

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join
from django.utils.timezone import localtime

from labelapp.admin_base import (
    BidiShownMixin,
    DateBoundedListMixin,
    ReadOnlyAdmin,
    RecordAdmin,
    SaveChangedFieldsMixin,
)
from labelapp.models import (
    Assignment,
    Comparison,
    EvalSetRating,
    GuidelineAcknowledgment,
    GuidelineVersion,
    Prompt,
    PromptConsentChange,
    QueueSnapshot,
    RaterProfile,
    Rating,
    RatingReview,
    Response,
    RewardModelVersion,
    TrainingRun,
)
from labelapp.services.comparisons import prompt_text_fixed, response_text_fixed
from labelapp.services.consent import REASON_MAX as CONSENT_REASON_MAX
from labelapp.services.consent import ConsentError, prompt_consent_set
from labelapp.services.erasure import ErasureError, prompt_erase
from labelapp.services.gold import (
    GoldError,
    comparison_kind_check,
    gold_check,
    gold_make_padded,
    gold_mark,
    gold_prompt_hold,
    gold_unmark,
)
from labelapp.services.guidelines import (
    CHANGELOG_MAX,
    GuidelineError,
    guideline_draft,
    guideline_draft_check,
    guideline_draft_hold,
    guideline_draft_save,
    guideline_publish,
    unix_newlines,
)
from labelapp.services.privacy import scrub_model_text
from labelapp.services.retention import export_file_delete
from labelapp.services.review import ReviewError, rating_review_add
from labelapp.services.roles import NotPermitted, permitted
from labelapp.services.training import AlreadyActive, reward_model_activate, training_run_cancel

FIXED_TEXT = "A comparison shows this text and ratings judged it: it can no longer change."


class ResponseInlineForm(forms.ModelForm):
    """An answer a comparison shows keeps its text (services/comparisons.response_text_fixed); the rest
    of the row, and answers no comparison shows yet, stay editable."""

    def clean_text(self):
        text = self.cleaned_data.get("text")
        if "text" in self.changed_data and response_text_fixed(response=self.instance):
            raise forms.ValidationError(FIXED_TEXT)
        return text


class ResponseInline(admin.TabularInline):
    model = Response
    form = ResponseInlineForm
    extra = 0
    fields = ("text", "source_model", "source_model_version", "word_count")
    readonly_fields = ("word_count",)

    def has_add_permission(self, request, obj=None):
        # an erased prompt takes no answers (services/erasure.py)
        return (obj is None or obj.erased_at is None) and super().has_add_permission(request, obj)

    def get_readonly_fields(self, request, obj=None):
        erased = obj is not None and obj.erased_at is not None  # nothing to type back in
        return (*super().get_readonly_fields(request, obj), *(("text",) if erased else ()))


@admin.register(Prompt)
class PromptAdmin(SaveChangedFieldsMixin, admin.ModelAdmin):
    derived_fields = {"text": ("pii_found",)}  # scrub_model_text adds its counts
    list_display = ("id", "short_text", "category", "source", "consent", "withheld", "created_at")
    list_filter = ("category", "source", "consent", "withheld")
    search_fields = ("text", "external_id")
    # The scrubber's record (a type -> count object), not staff input: a typed non-object broke the save.
    readonly_fields = ("pii_found", "erased_at")
    inlines = [ResponseInline]
    actions = ["withdraw_consent", "restore_consent", "erase_words"]

    def get_readonly_fields(self, request, obj=None):
        # A stored prompt's consent changes only through the actions below, which record who, when and
        # why; a new prompt typed here takes its first value like an imported one.
        fields = super().get_readonly_fields(request, obj)
        if obj is None:
            return fields
        fixed = ("text",) if prompt_text_fixed(prompt=obj) else ()  # ratings judged it as it stands
        # `withheld` is a reviewer's personal-data decision (services/review.py): not a form field
        return (*fields, *fixed, "consent", "consent_history", "withheld")

    @admin.display(description="text")
    def short_text(self, obj):
        return obj.text[:80]

    @admin.display(description="consent changes")
    def consent_history(self, obj):
        rows = [
            (
                f"{localtime(c.created_at):%Y-%m-%d %H:%M}",
                "restored" if c.consent else "withdrawn",
                c.changed_by.username if c.changed_by_id else "a command or a deleted account",
                c.reason,
            )
            for c in obj.consent_changes.select_related("changed_by")
        ]
        if not rows:
            return "none recorded"
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}: {} by {}: {}</li>", rows))

    def _set_consent(self, request, queryset, *, consent: bool, title: str):
        form = _ask(self, request, queryset, form_class=ConsentReasonForm, title=title, submit_label=title)
        if not isinstance(form, ConsentReasonForm):
            return form
        reason = form.cleaned_data["reason"]
        _apply_each(
            self,
            request,
            queryset.order_by("pk"),
            lambda prompt: prompt_consent_set(prompt=prompt, consent=consent, reason=reason, by=request.user),
            refusal=ConsentError,
            done=lambda n: f"{title}: {n} prompt(s), reason recorded.",
        )
        return None

    @admin.action(
        description="Withdraw consent (with a reason): out of training, exports and the queue",
        permissions=["change"],
    )
    def withdraw_consent(self, request, queryset):
        return self._set_consent(request, queryset, consent=False, title="Withdraw consent")

    @admin.action(description="Restore consent (with a reason)", permissions=["change"])
    def restore_consent(self, request, queryset):
        return self._set_consent(request, queryset, consent=True, title="Restore consent")

    @admin.action(
        description="Erase the words of withdrawn or withheld prompts (text, answers, rationales, reasons)",
        permissions=["change"],
    )
    def erase_words(self, request, queryset):
        title = "Erase the words"
        form = _ask(self, request, queryset, form_class=EraseForm, title=title, submit_label=title)
        if not isinstance(form, EraseForm):
            return form
        _apply_each(
            self,
            request,
            queryset.order_by("pk"),
            lambda prompt: prompt_erase(prompt=prompt, by=request.user),
            refusal=ErasureError,
            done=lambda n: f"{title}: {n} prompt(s) erased (or erased before).",
        )
        return None

    # Staff-typed prompts and answers are scrubbed like imported ones (services/privacy.py).
    def save_model(self, request, obj, form, change):
        scrub_model_text(obj)
        super().save_model(request, obj, form, change)

    def save_formset(self, request, form, formset, change):
        for inline_form in formset.forms:
            if inline_form.has_changed() and hasattr(inline_form.instance, "text"):
                scrub_model_text(inline_form.instance)
        super().save_formset(request, form, formset, change)


@admin.register(Response)
class ResponseAdmin(SaveChangedFieldsMixin, admin.ModelAdmin):
    derived_fields = {"text": ("pii_found",)}  # scrub_model_text adds its counts
    list_display = ("id", "prompt_id", "source_model", "source_model_version", "word_count", "token_count")
    list_filter = ("source_model", "source_model_version")
    search_fields = ("text", "external_id", "prompt__text")
    readonly_fields = ("char_count", "word_count", "pii_found", "created_at")
    raw_id_fields = ("prompt",)
    actions = ["make_gold"]

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        # An answer a comparison shows keeps its text: ratings judged it as it stands.
        return (*fields, "text") if obj is not None and response_text_fixed(response=obj) else fields

    def save_model(self, request, obj, form, change):
        scrub_model_text(obj)
        super().save_model(request, obj, form, change)

    def has_add_comparison_permission(self, request):
        return request.user.has_perm("labelapp.add_comparison")  # the gold pairs are new comparisons

    @admin.action(
        description="Make 'concise is right' gold pairs from the selected answers (padded copies)",
        permissions=["add_comparison"],
    )
    def make_gold(self, request, queryset):
        made = 0
        for response in queryset.select_related("prompt"):
            try:
                gold_make_padded(response=response, by=request.user)
                made += 1
            except (GoldError, NotPermitted) as exc:
                self.message_user(request, str(exc), messages.WARNING)
        self.message_user(request, f"Made {made} gold pair(s).", messages.SUCCESS)


@admin.register(Comparison)
class ComparisonAdmin(SaveChangedFieldsMixin, admin.ModelAdmin):
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
    readonly_fields = ("claimed_count", "repeat_of", "repeat_for", "available_at", "forced_left")
    raw_id_fields = ("prompt", "response_a", "response_b")
    # Once a pair exists, ratings may refer to it: what it shows is never swapped under them.
    FIXED_ONCE_CREATED = ("prompt", "response_a", "response_b")
    list_editable = ("priority", "is_active")
    actions = ["mark_gold"]

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return (*fields, *self.FIXED_ONCE_CREATED) if obj is not None else fields

    def save_model(self, request, obj, form, change):
        # The form's clean below already ran the kind and gold rules on the stored row, before anything
        # was saved. Through the service again, so an edit obeys the same rules as the action; in one
        # savepoint, so a refusal here stores nothing.
        try:
            with transaction.atomic():
                # the prompt before the pair, in the order a consent withdrawal locks them
                prompt = gold_prompt_hold(obj) if obj.prompt_id is not None else None
                switched_on = not change or "is_active" in form.changed_data  # what this save writes
                blocked = prompt is not None and not prompt.comparable
                if obj.is_active and switched_on and blocked:
                    # a form opened before the withdrawal (or a tick in the list) switched the pair on
                    obj.is_active = False
                    self.message_user(
                        request,
                        "This comparison stays inactive: its prompt is withheld or without consent.",
                        messages.WARNING,
                    )
                super().save_model(request, obj, form, change)
                gold_fields = {"kind", "gold_preference", "gold_explanation"}
                if obj.kind == Comparison.Kind.GOLD:
                    # only when the gold part changed: gold_mark switches the pair on, so a priority
                    # edit, or unticking is_active, left a gold pair (even a withdrawn one) active
                    if not change or gold_fields & set(form.changed_data):
                        gold_mark(
                            comparison=obj,
                            preference=obj.gold_preference,
                            explanation=obj.gold_explanation,
                            by=request.user,
                        )
                elif change and form.initial.get("kind") == Comparison.Kind.GOLD:
                    gold_unmark(comparison=obj)
        except GoldError as exc:
            self.message_user(request, f"Not saved: {exc}", messages.ERROR)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)

        def clean(this):
            data = forms.ModelForm.clean(this)
            # `this.instance` still holds the stored row here (the typed values land on it after clean).
            kind = data.get("kind")
            if kind == Comparison.Kind.GOLD and not permitted(request.user, "gold_mark"):
                # "add comparison" alone must not make a gold pair that the action refuses
                this.add_error("kind", str(NotPermitted("gold_mark")))
                return data
            try:
                typed = (data.get("response_a"), data.get("response_b"))
                comparison_kind_check(
                    comparison=this.instance, kind=kind, answers=typed if any(typed) else None
                )
                if kind == Comparison.Kind.GOLD:
                    gold_check(
                        comparison=this.instance,
                        preference=data.get("gold_preference"),
                        explanation=data.get("gold_explanation"),
                    )
            except GoldError as exc:
                this.add_error(exc.field if exc.field in this.fields else None, str(exc))
            return data

        form.clean = clean
        return form

    @admin.action(
        description="Mark the selected comparisons as gold (expected preference + explanation)",
        permissions=["change"],
    )
    def mark_gold(self, request, queryset):
        title = "Mark as gold"
        form = _ask(self, request, queryset, form_class=GoldForm, title=title, submit_label=title)
        if not isinstance(form, GoldForm):
            return form
        preference, explanation = form.cleaned_data["preference"], form.cleaned_data["explanation"]
        _apply_each(
            self,
            request,
            queryset,
            lambda c: gold_mark(
                comparison=c, preference=preference, explanation=explanation, by=request.user
            ),
            refusal=GoldError,
            done=lambda n: f"Marked {n} comparison(s) as gold.",
        )
        return None


@admin.register(Assignment)
class AssignmentAdmin(RecordAdmin):
    """Evidence, like the rating it carries: the side shown on the left feeds the position-bias figures,
    the comparison and status the queue's claimed_count, and deleting one would delete its rating. The
    services write these rows (the queue and its lease release, rating submit, review); staff only look."""

    list_display = ("id", "rater", "comparison_id", "shown_left", "status", "issued_at", "lease_expires_at")
    list_filter = ("status", "shown_left", "rater")
    search_fields = ("rater__username", "skip_reason")


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=500, help_text="Recorded with your name beside the rating.")


class ConsentReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=CONSENT_REASON_MAX,
        help_text="Recorded with your name and the time beside each prompt's consent change.",
    )


class EraseForm(forms.Form):
    confirm = forms.BooleanField(
        label="Erase for good",
        help_text="The text of each prompt, its answers, the ratings' rationales and the reasons written "
        "about it are replaced by [erased]; ids, judgments and hashes stay. This cannot be undone.",
    )


class PublishForm(forms.Form):
    changelog = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        max_length=CHANGELOG_MAX,
        label="Change message",
        help_text="What changed: raters see it beside the diff. Empty: the draft's own change message.",
    )


class GoldForm(forms.Form):
    preference = forms.TypedChoiceField(
        choices=[(-1, "A is better"), (0, "tie"), (1, "B is better")], coerce=int, label="Expected preference"
    )
    explanation = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), max_length=2000)


def _apply_each(modeladmin, request, rows, apply, *, refusal: type[Exception], done) -> None:
    """An action's service call on each selected row: a `refusal` refuses that row only, and the user
    is told how many were done (`done(n)`) and which were refused and why."""
    n_done, refused = 0, []
    for row in rows:
        try:
            apply(row)
            n_done += 1
        except refusal as exc:
            refused.append(f"#{row.pk}: {exc}")
    if n_done:
        modeladmin.message_user(request, done(n_done), messages.SUCCESS)
    if refused:
        modeladmin.message_user(request, f"Refused {len(refused)}: " + " ".join(refused), messages.ERROR)


def _ask(modeladmin, request, queryset, *, form_class, title: str, submit_label: str):
    """Run an action that needs input: the first POST shows the form, the second applies it.

    Returns the bound, valid form, or a TemplateResponse to show (the form, again with errors)."""
    form = form_class(request.POST if "apply" in request.POST else None)
    if "apply" in request.POST and form.is_valid():
        return form
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "objects": list(queryset),
        "form": form,
        "action": request.POST.get("action", ""),
        "submit_label": submit_label,
        "opts": modeladmin.model._meta,
    }
    return TemplateResponse(request, "admin/labelapp/action_form.html", context)


@admin.register(Rating)
class RatingAdmin(RecordAdmin):
    list_display = (
        "id",
        "rater",
        "comparison_id",
        "preference",
        "both_bad",
        "length_check",
        "guideline_version",
        "time_on_task_ms",
        "review_state",
        "submitted_via",
        "created_at",
    )
    list_filter = (
        "preference",
        "both_bad",
        "length_check",
        "flag_pii",
        "flag_unsafe",
        "flag_broken",
        "reviews__decision",
        "guideline_version",
        "rater",
    )
    search_fields = ("rater__username", "rationale", "comparison__prompt__text")
    date_hierarchy = "created_at"
    # A rating is evidence (RecordAdmin): the actions record a confirm / exclude beside it, with a reason.
    actions = ["confirm_ratings", "exclude_ratings"]

    readonly_fields = ("submitted_via",)

    def get_queryset(self, request):
        return (
            super().get_queryset(request).select_related("api_token__created_by").prefetch_related("reviews")
        )

    @admin.display(description="submitted via")
    def submitted_via(self, obj):
        return obj.submitted_via()

    @admin.display(description="review")
    def review_state(self, obj):
        reviews = list(obj.reviews.all())
        return reviews[0].get_decision_display() if reviews else ""

    def _review(self, request, queryset, decision: str, title: str):
        form = _ask(self, request, queryset, form_class=ReasonForm, title=title, submit_label=title)
        if not isinstance(form, ReasonForm):
            return form
        reason = form.cleaned_data["reason"]
        rating = None
        try:
            # all or nothing: a refusal part-way left the first ratings decided and said nothing of them
            with transaction.atomic():
                for rating in queryset.select_related("comparison"):
                    rating_review_add(rating=rating, decision=decision, reason=reason, reviewer=request.user)
        except ReviewError as exc:
            self.message_user(request, f"Rating #{rating.pk}: {exc} Nothing was recorded.", messages.ERROR)
            return None
        done = f"{title}: {queryset.count()} rating(s), reason recorded."
        self.message_user(request, done, messages.SUCCESS)
        return None

    def has_review_permission(self, request):
        # The ratings never change (RecordAdmin): a decision is a new RatingReview beside them.
        return request.user.has_perm("labelapp.add_ratingreview")

    @admin.action(description="Confirm the selected ratings' flags (with a reason)", permissions=["review"])
    def confirm_ratings(self, request, queryset):
        return self._review(request, queryset, RatingReview.Decision.CONFIRM, "Confirm")

    @admin.action(
        description="Exclude the selected ratings from training and export (with a reason)",
        permissions=["review"],
    )
    def exclude_ratings(self, request, queryset):
        return self._review(request, queryset, RatingReview.Decision.EXCLUDE, "Exclude")


@admin.register(GuidelineVersion)
class GuidelineVersionAdmin(SaveChangedFieldsMixin, admin.ModelAdmin):
    always_saved_fields = ("author",)  # save_model records who edited the draft
    list_display = ("number", "title", "published_at", "author", "created_at")
    list_filter = ("published_at",)
    search_fields = ("text", "title", "changelog")
    readonly_fields = ("published_at", "created_at")
    actions = ["publish"]

    def get_readonly_fields(self, request, obj=None):
        # Published versions are history that ratings point to: never edited in place. The author is
        # whoever saves (as in the staff editor), never picked from a list.
        if obj is not None and obj.published_at is not None:
            return ("number", "title", "text", "changelog", "author", "published_at", "created_at")
        return ("number", "author", "published_at", "created_at")

    def has_delete_permission(self, request, obj=None):
        # Published versions are history: acknowledgments (and ratings) point at them. A draft may go.
        if obj is not None and obj.published_at is not None:
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request):
        # the bulk delete checks no row's own permission: it deleted published versions
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)

        def clean(this):
            data = forms.ModelForm.clean(this)
            if not permitted(request.user, "guideline_draft"):
                raise forms.ValidationError(str(NotPermitted("guideline_draft")))
            if "text" in data:  # stored and counted with LF line breaks, as the staff editor saves it
                data["text"] = unix_newlines(data["text"])
            try:  # the staff editor's rules (services/guidelines.py)
                if this.instance.pk is not None and this.instance.published_at is None:
                    guideline_draft_hold(this.instance)  # held until the admin's transaction ends, save too
                guideline_draft_check(
                    text=data.get("text", this.instance.text),
                    title=data.get("title", this.instance.title),
                    changelog=data.get("changelog", this.instance.changelog),
                )
            except GuidelineError as exc:
                raise forms.ValidationError(str(exc)) from None
            return data

        form.clean = clean
        return form

    def save_model(self, request, obj, form, change):
        if change:
            obj.author = request.user
            super().save_model(request, obj, form, change)
            return
        # One draft at a time, as in the staff editor: an add saves into the open draft, if there is one.
        open_draft = guideline_draft()
        draft = guideline_draft_save(text=obj.text, author=request.user, title=obj.title)
        if obj.changelog.strip() and obj.changelog.strip() != draft.changelog:  # empty: the draft's stays
            draft.changelog = obj.changelog.strip()
            draft.save(update_fields=["changelog"])
        if open_draft is not None and open_draft.pk == draft.pk:
            self.message_user(
                request,
                f"Saved into the open draft, version {draft.number}, replacing its text: there is one draft "
                "at a time.",
                messages.WARNING,
            )
        obj.pk, obj.number, obj.created_at, obj.author = (
            draft.pk,
            draft.number,
            draft.created_at,
            draft.author,
        )
        obj.text, obj.title, obj.changelog = draft.text, draft.title, draft.changelog
        obj._state.adding = False

    @admin.action(
        description="Publish the selected draft (raters must acknowledge it)", permissions=["change"]
    )
    def publish(self, request, queryset):
        title = "Publish"
        form = _ask(self, request, queryset, form_class=PublishForm, title=title, submit_label=title)
        if not isinstance(form, PublishForm):
            return form
        changelog = form.cleaned_data["changelog"].strip() or None  # None: the draft's own message
        for version in queryset.order_by("number"):
            try:
                guideline_publish(version=version, changelog=changelog, by=request.user)
                self.message_user(request, f"Published version {version.number}.", messages.SUCCESS)
            except (GuidelineError, NotPermitted) as exc:
                self.message_user(request, str(exc), messages.ERROR)
        return None


@admin.register(GuidelineAcknowledgment)
class GuidelineAcknowledgmentAdmin(RecordAdmin):
    """Records: an edited version or rater changed which version that rater's ratings carry."""

    list_display = ("rater", "version", "acknowledged_at")
    list_filter = ("version",)
    search_fields = ("rater__username",)


@admin.register(RatingReview)
class RatingReviewAdmin(RecordAdmin):
    """Decisions are records: added through the rating actions or the review list, never edited."""

    list_display = ("rating", "decision", "reason", "reviewer", "created_at")
    list_filter = ("decision",)
    raw_id_fields = ("rating",)


@admin.register(PromptConsentChange)
class PromptConsentChangeAdmin(RecordAdmin):
    """Consent changes are records: made through the Prompt actions, the API or `manage.py
    prompt_consent` (services/consent.py), never added, edited or deleted here."""

    list_display = ("prompt", "consent", "changed_by", "created_at", "reason")
    list_filter = ("consent",)
    list_select_related = ("prompt", "changed_by")
    search_fields = ("reason", "prompt__text", "changed_by__username")
    ordering = ("-created_at", "-pk")


@admin.register(RaterProfile)
class RaterProfileAdmin(RecordAdmin):
    """The quality job computes every field (services/quality.py): a typed trust weight was unbounded
    (a negative one reached training) and the next refresh overwrote it anyway."""

    list_display = ("rater", "trust_weight", "updated_at")
    search_fields = ("rater__username",)


@admin.register(QueueSnapshot)
class QueueSnapshotAdmin(ReadOnlyAdmin):
    """Queue figures the housekeeping job recorded: viewed (and deleted), never added or rewritten."""

    list_display = ("taken_at", "pending", "leased", "done", "released")
    date_hierarchy = "taken_at"


@admin.register(TrainingRun)
class TrainingRunAdmin(SaveChangedFieldsMixin, admin.ModelAdmin):
    """A run's record: what it trained with (config, kind, data snapshot) and what came of it. Runs start
    through the training service (the button, the API, the command: single flight, broker check), not
    from an add form, and their recipe is never rewritten afterwards; only the attempt limit is editable
    (cancel with the action)."""

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
    actions = ["cancel"]
    EDITABLE = ("max_attempts",)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields if f.name not in self.EDITABLE]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # the record of what trained each version (and of failures) stays

    @admin.action(description="Cancel the selected runs", permissions=["change"])
    def cancel(self, request, queryset):
        for run in queryset.filter(status__in=TrainingRun.ACTIVE):
            training_run_cancel(run=run, by=request.user)
            self.message_user(request, f"Cancelling run #{run.pk}.", messages.INFO)


@admin.register(RewardModelVersion)
class RewardModelVersionAdmin(SaveChangedFieldsMixin, admin.ModelAdmin):
    list_display = ("number", "is_active", "created_at", "activated_at", "artifact_path")
    list_filter = ("is_active",)
    readonly_fields = (
        "number",
        "run",
        "artifact_path",
        "metrics",
        "plots",
        "baseline_metrics",
        "eval_set_metrics",
        "activation_note",
        "is_active",
        "created_at",
        "activated_at",
    )
    actions = ["activate"]

    def has_add_permission(self, request):
        # Every field is read-only: an add form could only fail at the database (number is NULL).
        # Training runs make versions.
        return False

    def has_delete_permission(self, request, obj=None):
        # notes, policy versions and watch figures name it; a new run would take its number again
        return False

    @admin.action(description="Activate the selected version (roll back or forward)", permissions=["change"])
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to activate.", messages.ERROR)
            return
        try:
            version = reward_model_activate(version=queryset.get(), by=request.user)
        except AlreadyActive as e:
            self.message_user(request, str(e), messages.INFO)
            return
        self.message_user(request, f"Reward model v{version.number} is now active.", messages.SUCCESS)


# --- Data in and out (issue 8) -------------------------------------------------------------------------
from labelapp.models import ApiToken, ExportFile  # noqa: E402
from labelapp.services.tokens import TokenError, token_revoke, token_state  # noqa: E402


@admin.register(ApiToken)
class ApiTokenAdmin(SaveChangedFieldsMixin, admin.ModelAdmin):
    """Tokens are created through the API or `manage.py create_api_token` (the key is shown once)."""

    list_display = ("prefix", "name", "user", "scopes", "state", "last_used_at", "expires_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "user__username", "prefix")
    readonly_fields = (
        "user",
        "name",
        "prefix",
        "scopes",
        "created_by",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
        "parent",
    )
    exclude = ("digest",)
    actions = ["revoke"]

    @admin.display(description="state")
    def state(self, obj):
        return token_state(obj)

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        # revoke instead: a token is part of the record of the ratings it sent (Rating.api_token)
        return False

    @admin.action(
        description="Revoke the selected tokens (and every token they minted)", permissions=["change"]
    )
    def revoke(self, request, queryset):
        # Already revoked ones too: token_revoke sweeps what they minted (a direct update would not).
        _apply_each(
            self,
            request,
            queryset.select_related("user"),
            lambda token: token_revoke(token=token, by=request.user),
            refusal=TokenError,
            done=lambda n: f"Revoked {n} token(s), with every token they minted.",
        )


@admin.register(ExportFile)
class ExportFileAdmin(SaveChangedFieldsMixin, admin.ModelAdmin):
    list_display = ("path", "format", "mode", "rows", "created_at", "expires_at")
    list_filter = ("format", "mode")
    search_fields = ("path",)
    readonly_fields = ("path", "format", "mode", "rows", "filters", "created_by", "created_at", "expires_at")

    actions = ["delete_files"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        # Django's delete took the record and left the file, with prompt texts, where no purge would
        # look for it again: the action below deletes the file first
        return False

    def has_delete_file_permission(self, request):
        return request.user.has_perm("labelapp.delete_exportfile")

    @admin.action(
        description="Delete the selected files from disk, then their records", permissions=["delete_file"]
    )
    def delete_files(self, request, queryset):
        outcomes = Counter(export_file_delete(record) for record in queryset)
        said = f"Deleted {outcomes['deleted']} file(s)"
        if outcomes["missing"]:
            said += f"; {outcomes['missing']} were not on this server's disk (their records went)"
        if outcomes["replaced"]:
            said += f"; {outcomes['replaced']} had been written over by a newer export, which stays"
        if outcomes["failed"]:
            said += f"; {outcomes['failed']} could not be deleted and stay on record (see the log)"
        self.message_user(request, said + ".", messages.ERROR if outcomes["failed"] else messages.SUCCESS)


from labelapp import quality_admin  # noqa: E402, F401  (QualityReport, SimulatedDecision)


def _guard_every_list() -> None:
    """Every admin gets the date guard and the bidi markers (BidiShownMixin): ours, and the other apps'
    (auth's users and groups, Celery beat's tasks, django-axes' failed logins; registered before ours,
    INSTALLED_APPS order) on a subclass of their own admins. Celery beat's task form gets its own
    guard. django-axes' access and failure logs are off (AXES_DISABLE_ACCESS_LOG): their empty lists go."""
    from axes.models import AccessFailureLog, AccessLog
    from django_celery_beat.models import PeriodicTask

    for model in (AccessLog, AccessFailureLog):
        if admin.site.is_registered(model):
            admin.site.unregister(model)
    for model, model_admin in list(admin.site._registry.items()):
        if isinstance(model_admin, DateBoundedListMixin):
            continue
        other = type(model_admin)
        attrs = {"form": _periodic_task_form(other.form)} if model is PeriodicTask else {}
        admin.site.unregister(model)
        admin.site.register(model, type(other.__name__, (DateBoundedListMixin, BidiShownMixin, other), attrs))


def _periodic_task_form(form):
    """django-celery-beat's task form read data['task'] in clean() even when the field had failed (a
    name over 200 characters, a NUL): a KeyError, a 500. The field's own error is shown instead."""

    class Guarded(form):
        def clean(self):
            if "task" not in self.cleaned_data and not self.cleaned_data.get("regtask"):
                return self.cleaned_data
            return super().clean()

    return Guarded


@admin.register(EvalSetRating)
class EvalSetRatingAdmin(RecordAdmin):
    """The frozen evaluation set, read-only: it only grows (services.training.eval_set_grow)."""

    list_display = ("id", "rating_id", "prompt_id", "added_at")
    readonly_fields = ("rating", "prompt", "added_at")


# --- policy loop (read-mostly: rounds write these) -----------------------------------------------------

from labelapp.models import PolicyDecision, PolicyPair, PolicySample, PolicyVersion  # noqa: E402


@admin.register(PolicyVersion)
class PolicyVersionAdmin(SaveChangedFieldsMixin, admin.ModelAdmin):
    """Read-only: rounds write versions, and a rejection (with its reason) goes through the policy
    page or the API, where it is recorded; nothing here rewrites what a round produced."""

    list_display = ("number", "kind", "parent", "reward_model", "created_at", "rejected_at")
    list_filter = ("kind",)
    search_fields = ("artifact_path",)

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # a rejected version's record goes with it


@admin.register(PolicyDecision)
class PolicyDecisionAdmin(SaveChangedFieldsMixin, admin.ModelAdmin):
    """Read-only: decisions are made on the policy page or through the API, and never rewritten."""

    list_display = ("version", "action", "who", "at", "reason")
    list_filter = ("action", "automatic")
    list_select_related = ("version", "by")

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PolicySample)
class PolicySampleAdmin(RecordAdmin):
    """What a round's policy answered and how it scored: the watch's figures (read-only)."""

    list_display = ("policy", "prompt", "split", "index", "reward", "num_tokens", "finished")
    list_filter = ("split", "finished", "policy")
    search_fields = ("response__text", "prompt__text")
    raw_id_fields = ("prompt", "response")


@admin.register(PolicyPair)
class PolicyPairAdmin(RecordAdmin):
    """Which answer of a comparison is the new policy's: the win rate reads it (read-only; editing
    `new_is_a` rewrote a version's win rate)."""

    list_display = ("comparison", "kind", "new", "old", "new_is_a")
    list_filter = ("kind", "new")
    raw_id_fields = ("comparison",)


_guard_every_list()  # last: every list registered above gets the guard
