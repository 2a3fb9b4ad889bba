"""The data model of the rater loop: prompts, answers, comparisons, the queue, ratings, guidelines.

Invariants kept by the database itself (not only by code):
- one Rating per (rater, comparison) and per (rater, idempotency key);
- a rater holds at most one leased Assignment;
- scores stay in range (CheckConstraints).
`Comparison.claimed_count` counts leased + done assignments; it is only changed while the comparison
row is locked (services/assignment.py), which is what keeps 20 concurrent claims from over-assigning.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.core.validators import MinValueValidator
from django.db import models, transaction
from django.db.models import Exists, F, OuterRef, Q

_WORD_RE = re.compile(r"\S+")
# A tokenizer-free token estimate (word pieces and punctuation); the web app must not need torch.
_TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def count_words(text: str) -> int:
    return len(_WORD_RE.findall(text))


def one_line_name(value: str) -> None:
    """A model field's validator (the admin's forms): the rule ingest and the token service apply to
    one-line names (labelapp/rendering.control_character); the admin stored "\x01" and U+202E in them."""
    from django.core.exceptions import ValidationError

    from labelapp.rendering import control_character

    if value and (found := control_character(value)) is not None:
        raise ValidationError(f"One line of plain text: this holds the control character {found}.")


class Prompt(models.Model):
    text = models.TextField()
    category = models.CharField(max_length=32, blank=True, validators=[one_line_name])
    source = models.CharField(
        max_length=64, default="manual", help_text="Where the prompt came from.", validators=[one_line_name]
    )
    external_id = models.CharField(
        max_length=128, unique=True, null=True, blank=True, validators=[one_line_name]
    )
    consent = models.BooleanField(default=True, help_text="May ratings on this prompt be used for training?")
    # Staff confirmed (in the review list) that the prompt holds personal data: never shown to raters again.
    withheld = models.BooleanField(default=False)
    html = models.TextField(blank=True, editable=False)
    # Dedup key: sha256 of the normalized text (services/ingest.py). Indexed, not unique: older rows
    # and tests may repeat a text; the ingest service is what refuses to store one twice.
    text_hash = models.CharField(max_length=64, blank=True, db_index=True, editable=False)
    # One question (services/ingest.py, question_hash: case and runs of white space aside): the
    # evaluation set takes or leaves a question's prompts together. Empty on rows older than the column
    # that migration 0029 could not reach; those go by their id. A database default too: a process still
    # running the code before 0029 (a rolling deploy), or a bench's COPY, inserts prompts without it.
    question_hash = models.CharField(max_length=64, blank=True, default="", db_default="", editable=False)
    # What the PII scrubber replaced, by type and count (never the values): {"EMAIL": 1, "PHONE": 2}.
    pii_found = models.JSONField(default=dict, blank=True)
    # When its words were erased (services/erasure.py): out of use, text gone, ids and hashes kept.
    erased_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["question_hash"], name="prompt_question_hash")]

    def __str__(self) -> str:
        # No text: the admin copies this into its history (django_admin_log.object_repr), where a
        # purged or withdrawn prompt's words would outlive it.
        return f"Prompt #{self.pk}"

    def save(self, *args, **kwargs) -> None:
        from labelapp.rendering import render_stored_markdown
        from labelapp.services.ingest import question_hash, text_hash

        if self.erased_at is not None:
            # its hashes are of the words erased, kept so that the text is not imported again: computed
            # from the placeholder, an admin save of its category let the text back in with consent
            return super().save(*args, **kwargs)
        self.html = render_stored_markdown(self.text)
        self.text_hash = text_hash(self.text)
        self.question_hash = question_hash(self.text)
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = set(kwargs["update_fields"]) | {"html", "text_hash", "question_hash"}
        super().save(*args, **kwargs)

    @property
    def comparable(self) -> bool:
        """Consent in force and not withheld: comparisons on it may be made, active and served (as this
        row was loaded: a caller that must not race a withdrawal loads it under the row's lock)."""
        return self.consent and not self.withheld


class PromptConsentChange(models.Model):
    """A recorded change of a stored prompt's consent: a withdrawal (the data subject takes it back) or,
    rarely, a restoration.

    Append-only: `Prompt.consent` is what is in force, these rows say how it came to be, in order, with
    who and why. Only `services/consent.py` writes them; the admin shows them read-only. They go with
    their prompt when retention deletes it (the reason may name the person who asked).
    """

    REASON_MAX = 2000

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="consent_changes")
    consent = models.BooleanField(help_text="The value set: false = withdrawn, true = restored.")
    reason = models.CharField(max_length=REASON_MAX)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # What the change did to the queue: the comparisons a withdrawal took out (deactivated) or a
    # restoration put back. A restoration puts back exactly what the latest withdrawal took out.
    comparison_ids = models.JSONField(default=list, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.CheckConstraint(condition=~Q(reason=""), name="prompt_consent_change_reason_required")
        ]

    def __str__(self) -> str:
        what = "restored" if self.consent else "withdrawn"
        return f"prompt #{self.prompt_id}: consent {what}"


class Response(models.Model):
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="responses")
    text = models.TextField()
    source_model = models.CharField(max_length=128, validators=[one_line_name])
    source_model_version = models.CharField(max_length=64, blank=True, validators=[one_line_name])
    char_count = models.PositiveIntegerField(default=0)
    word_count = models.PositiveIntegerField(default=0)
    token_count = models.PositiveIntegerField(
        default=0, help_text="Policy tokens if known, else an estimate."
    )
    # Sanitized HTML rendered once at write time: the rating page is the hot path.
    html = models.TextField(blank=True, editable=False)
    external_id = models.CharField(
        max_length=128, unique=True, null=True, blank=True, validators=[one_line_name]
    )
    pii_found = models.JSONField(default=dict, blank=True, help_text="Scrubbed PII by type and count.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"Answer #{self.pk} ({self.source_model})"  # no text, as Prompt.__str__

    def save(self, *args, **kwargs) -> None:
        from labelapp.rendering import render_stored_markdown

        self.char_count = len(self.text)
        self.word_count = count_words(self.text)
        if not self.token_count:
            self.token_count = len(_TOKEN_RE.findall(self.text))
        self.html = render_stored_markdown(self.text)
        if kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = set(kwargs["update_fields"]) | {
                "char_count",
                "word_count",
                "token_count",
                "html",
            }
        super().save(*args, **kwargs)


class Comparison(models.Model):
    class Kind(models.TextChoices):
        NORMAL = "normal", "normal"
        GOLD = "gold", "gold (known answer)"
        REPEAT = "repeat", "repeat (test-retest)"

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="comparisons")
    response_a = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="+")
    response_b = models.ForeignKey(Response, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.NORMAL)
    priority = models.IntegerField(default=0, help_text="Higher is served first.")
    # the validator gives the admin's form a sentence; the constraint below guards every other path
    required_ratings = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1)])
    claimed_count = models.PositiveSmallIntegerField(
        default=0, editable=False, help_text="Leased + done assignments (kept by the queue service)."
    )
    # For gold pairs: the expected preference sign (-1 A better, +1 B better, 0 tie). Never sent to raters.
    gold_preference = models.SmallIntegerField(null=True, blank=True)
    gold_explanation = models.TextField(blank=True, help_text="Why the gold answer is right (staff only).")
    repeat_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="repeats"
    )
    # A repeat is served to one rater only (the one who judged the original), not before
    # `available_at`, with the sides swapped (`forced_left`); normal and gold pairs leave these empty.
    repeat_for = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    available_at = models.DateTimeField(null=True, blank=True)
    forced_left = models.CharField(max_length=1, blank=True, default="")
    is_active = models.BooleanField(default=True)
    external_id = models.CharField(max_length=128, unique=True, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-priority", "created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(response_a=F("response_b")), name="comparison_distinct_answers"
            ),
            models.CheckConstraint(
                condition=Q(required_ratings__gte=1), name="comparison_required_ratings_min1"
            ),
            models.CheckConstraint(
                condition=Q(gold_preference__isnull=True) | Q(gold_preference__in=[-1, 0, 1]),
                name="comparison_gold_preference_sign",
            ),
            # Gold is scored against its expected answer and, with feedback on, raters read its
            # explanation: the services and the admin require both, this guards a script's ORM write.
            models.CheckConstraint(
                condition=~Q(kind="gold") | (Q(gold_preference__isnull=False) & ~Q(gold_explanation="")),
                name="comparison_gold_has_answer",
            ),
        ]
        indexes = [
            # The queue's hot query: open comparisons by priority, then age. Only the normal stream
            # (gold and repeats have their own indexes below): a predicate that matches the claim's
            # WHERE exactly is what makes the planner walk this index in order and stop at the first
            # free row, instead of sorting every open row (193 ms vs 2 ms on 4000 comparisons).
            models.Index(
                F("priority").desc(),
                "created_at",
                "id",
                name="comparison_open_normal",
                condition=Q(is_active=True, claimed_count__lt=F("required_ratings"), kind="normal"),
            ),
            # The two side streams of a claim (services/assignment.py): active gold pairs, and each
            # rater's own pending repeats.
            models.Index(fields=["id"], name="comparison_gold", condition=Q(kind="gold", is_active=True)),
            models.Index(
                fields=["repeat_for", "available_at"],
                name="comparison_pending_repeat",
                condition=Q(kind="repeat", is_active=True, claimed_count=0),
            ),
        ]

    def __str__(self) -> str:
        return f"Comparison #{self.pk} ({self.kind}) on prompt #{self.prompt_id}"

    def clean(self) -> None:
        """Both answers answer this comparison's prompt (forms call this; the services build pairs from
        a prompt's own answers): otherwise raters judge answers to another question under it, and the
        export and the reward model train on the mismatch."""
        super().clean()
        if not self.prompt_id:
            return
        errors = {}
        for field in ("response_a", "response_b"):
            response_id = getattr(self, f"{field}_id")
            if response_id and not Response.objects.filter(pk=response_id, prompt_id=self.prompt_id).exists():
                errors[field] = f"Answer #{response_id} does not answer prompt #{self.prompt_id}."
        if errors:
            raise ValidationError(errors)


class Assignment(models.Model):
    class Status(models.TextChoices):
        LEASED = "leased", "leased"
        DONE = "done", "done"
        SKIPPED = "skipped", "skipped"
        EXPIRED = "expired", "expired"

    class Side(models.TextChoices):
        A = "a", "A on the left"
        B = "b", "B on the left"

    rater = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments")
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="assignments")
    shown_left = models.CharField(
        max_length=1, choices=Side.choices, help_text="Which answer was on the left."
    )
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.LEASED)
    issued_at = models.DateTimeField()
    lease_expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    skip_reason = models.CharField(max_length=500, blank=True)
    # A fresh key per issued page so a double-submitted form maps onto the same rating.
    form_key = models.UUIDField()

    class Meta:
        ordering = ["-issued_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["rater"], condition=Q(status="leased"), name="assignment_one_open_per_rater"
            ),
        ]
        indexes = [
            models.Index(fields=["rater", "comparison"], name="assignment_rater_comparison"),
            models.Index(
                fields=["lease_expires_at"], condition=Q(status="leased"), name="assignment_open_leases"
            ),
            # a rater's newest assignment (services/assignment.py: _claim_released), without a sort
            models.Index(fields=["rater", "-id"], name="assignment_rater_newest"),
        ]

    def __str__(self) -> str:
        return f"Assignment #{self.pk} {self.rater} -> comparison #{self.comparison_id} ({self.status})"


class PublishedGuidelineImmutable(Exception):
    """Raised when code tries to change a published guideline version (publish a new one instead)."""


class GuidelineVersion(models.Model):
    number = models.PositiveIntegerField(unique=True)
    title = models.CharField(max_length=200, default="Rating guidelines")
    text = models.TextField(help_text="Markdown; rendered and sanitized for raters.")
    changelog = models.CharField(max_length=500, blank=True)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    published_at = models.DateTimeField(null=True, blank=True, help_text="Empty while a draft.")

    class Meta:
        ordering = ["-number"]

    def __str__(self) -> str:
        state = "published" if self.published_at else "draft"
        return f"Guidelines v{self.number} ({state})"

    def save(self, *args, **kwargs) -> None:
        # Published versions are history that ratings point to: no code path may rewrite one (its
        # number too: the version in force is the highest, and ratings name versions by number).
        if self._state.adding or self.pk is None:
            super().save(*args, **kwargs)
            return
        fields = ("published_at", "number", "text", "title", "changelog", "author_id")
        with transaction.atomic():  # the row locked: a publish committing meanwhile is seen
            stored = GuidelineVersion.objects.select_for_update().filter(pk=self.pk).values(*fields).first()
            if stored and stored["published_at"] is not None:
                if any(getattr(self, f) != stored[f] for f in fields):
                    raise PublishedGuidelineImmutable(
                        f"Version {self.number} is published; it cannot change."
                    )
            super().save(*args, **kwargs)

    @property
    def html(self) -> str:
        from labelapp.rendering import render_guideline

        return render_guideline(self.text)


class GuidelineAcknowledgment(models.Model):
    rater = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="acknowledgments"
    )
    version = models.ForeignKey(GuidelineVersion, on_delete=models.CASCADE, related_name="acknowledgments")
    acknowledged_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rater", "version"], name="ack_once_per_version")]

    def __str__(self) -> str:
        return f"{self.rater} acknowledged v{self.version.number}"


def _exclusions_in_force():
    """Rating ids whose newest review is EXCLUDE (a subquery; reviews are few)."""
    at = OuterRef("created_at")
    newer = RatingReview.objects.filter(rating=OuterRef("rating")).filter(
        Q(created_at__gt=at) | Q(created_at=at, pk__gt=OuterRef("pk"))
    )
    in_force = RatingReview.objects.filter(decision=RatingReview.Decision.EXCLUDE).exclude(Exists(newer))
    return in_force.values("rating")


def _unreviewed_pii_flags():
    """Ratings flagged "contains personal data" that no staff member has reviewed."""
    reviewed = RatingReview.objects.filter(rating=OuterRef("pk"))
    return Rating.objects.filter(flag_pii=True).exclude(Exists(reviewed))


def prompts_awaiting_review():
    """Ids of prompts held back while a rater's "contains personal data" flag waits for a review.

    A flag is a rater's suspicion about the prompt or its answers, and every rating on that prompt
    carries the same text out, so the whole prompt waits, and so does every prompt asking the same
    question in another case or spacing (`question_hash`: the same words; a confirm withholds those
    too). Any review settles it: a confirm withholds them (`services/review.py`), an exclude leaves
    the prompts' other ratings free to go.
    """
    flags = _unreviewed_pii_flags()
    questions = flags.exclude(comparison__prompt__question_hash="").values(
        "comparison__prompt__question_hash"
    )
    return Prompt.objects.filter(
        Q(pk__in=flags.values("comparison__prompt_id")) | Q(question_hash__in=questions)
    ).values("pk")


def prompt_awaiting_review(prompt_id: int) -> bool:
    """Whether this prompt is among prompts_awaiting_review()."""
    return prompts_awaiting_review().filter(pk=prompt_id).exists()


def eval_set_prompts():
    """Prompt ids in the frozen evaluation set (a subquery)."""
    return EvalSetRating.objects.values("prompt_id")


def same_text_in_eval_set() -> Exists:
    """A rating's prompt's question is in the evaluation set (by `Prompt.question_hash`: staff can type
    a question twice, in another case): its rating neither trains nor leaves in an export as training
    data."""
    return Exists(
        EvalSetRating.objects.filter(
            prompt__question_hash=OuterRef("comparison__prompt__question_hash")
        ).exclude(prompt__question_hash="")
    )


def in_eval_set() -> Q:
    """A rating's prompt, or one with its text, is in the frozen evaluation set."""
    return Q(comparison__prompt_id__in=eval_set_prompts()) | Q(same_text_in_eval_set())


class RatingQuerySet(models.QuerySet):
    def outside_eval_set(self) -> RatingQuerySet:
        """Ratings neither of a prompt in the frozen evaluation set nor of one with the same text:
        what may train (services/training.py) and what an export gives as training data."""
        # NOT EXISTS, an anti-join: NOT IN over ~100k 64-character hashes outgrew work_mem and
        # PostgreSQL rescanned the list for every rating (373 s for 20k ratings against 1 s)
        return self.exclude(comparison__prompt_id__in=eval_set_prompts()).exclude(same_text_in_eval_set())

    def with_eval_set_mark(self) -> RatingQuerySet:
        """Annotated `in_eval_set`: the rating's prompt, or one with its text, is in the set."""
        held = models.ExpressionWrapper(in_eval_set(), output_field=models.BooleanField())
        return self.annotate(in_eval_set=held)

    def excluded(self) -> RatingQuerySet:
        """Ratings whose newest review (the one in force) is an exclusion."""
        return self.filter(pk__in=_exclusions_in_force())

    def not_excluded(self) -> RatingQuerySet:
        """Ratings whose newest review is not an exclusion: the only ones that may train or be
        exported. A rating excluded and later confirmed is back in."""
        return self.exclude(pk__in=_exclusions_in_force())

    def awaiting_review(self) -> RatingQuerySet:
        """Ratings on a prompt flagged as holding personal data that staff have not reviewed yet."""
        return self.filter(comparison__prompt_id__in=prompts_awaiting_review())

    def usable(self) -> RatingQuerySet:
        """Ratings that may train a model or leave in an export: the one rule both paths share.

        Not excluded in review, on a consented prompt not withheld for personal data and not
        awaiting review of a personal-data flag, not flagged broken, and not a test-retest repeat (a
        repeat is the same rater judging the same pair again; counting it would give that rater's
        judgment twice the weight).
        """
        return (
            self.not_excluded()
            .filter(comparison__prompt__consent=True, comparison__prompt__withheld=False, flag_broken=False)
            .exclude(comparison__kind="repeat")
            .exclude(comparison__prompt_id__in=prompts_awaiting_review())
        )


class Rating(models.Model):
    class Preference(models.IntegerChoices):
        A_MUCH = -3, "A much better"
        A_BETTER = -2, "A better"
        A_SLIGHTLY = -1, "A slightly better"
        TIE = 0, "Tie"
        B_SLIGHTLY = 1, "B slightly better"
        B_BETTER = 2, "B better"
        B_MUCH = 3, "B much better"

    class LengthCheck(models.TextChoices):
        NOT_ASKED = "", "not asked"
        ADDS_CONTENT = "adds_content", "the extra length adds content"
        ADDS_NOTHING = "adds_nothing", "the extra length adds nothing"

    DIMENSIONS = ("helpfulness", "factual_accuracy", "harmlessness", "conciseness", "coherence")

    rater = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ratings")
    comparison = models.ForeignKey(Comparison, on_delete=models.CASCADE, related_name="ratings")
    assignment = models.OneToOneField(Assignment, on_delete=models.CASCADE, related_name="rating")
    # Relative to A/B, never to left/right: the shown order is on the assignment.
    preference = models.SmallIntegerField(choices=Preference.choices)
    both_bad = models.BooleanField(default=False)
    # Per-dimension comparisons on a 5-point scale, A/B-relative like `preference`:
    # -2 A clearly better, -1 A better, 0 same, +1 B better, +2 B clearly better; empty = not judged.
    helpfulness = models.SmallIntegerField(null=True, blank=True)
    factual_accuracy = models.SmallIntegerField(null=True, blank=True)
    harmlessness = models.SmallIntegerField(null=True, blank=True)
    conciseness = models.SmallIntegerField(null=True, blank=True)
    coherence = models.SmallIntegerField(null=True, blank=True)
    rationale = models.TextField(blank=True)
    flag_pii = models.BooleanField("contains personal data", default=False)
    flag_unsafe = models.BooleanField("unsafe", default=False)
    flag_broken = models.BooleanField("broken", default=False)
    length_check = models.CharField(max_length=16, choices=LengthCheck.choices, blank=True, default="")
    guideline_version = models.ForeignKey(GuidelineVersion, on_delete=models.PROTECT, related_name="ratings")
    time_on_task_ms = models.PositiveIntegerField(default=0)
    idempotency_key = models.UUIDField()
    created_at = models.DateTimeField(auto_now_add=True)
    # The API token the rating came with (empty: the rating page, or the simulator in-process). A token
    # for a rater may be minted by staff (services/tokens.py), so a rating sent with it is not proof
    # that the rater judged it: the token and who made it are part of the evidence.
    # No database constraint and nothing done on the token's deletion: the rating keeps the id (a token
    # minted through a deleted one, or of a deleted account, goes too; emptied, the rating read as if it
    # came from the page, and ratings never change).
    api_token = models.ForeignKey(
        "ApiToken",
        null=True,
        blank=True,
        editable=False,
        db_index=False,  # the partial index below: almost every rating comes from the page
        db_constraint=False,
        on_delete=models.DO_NOTHING,
        related_name="ratings",
        help_text="The API token the rating was submitted with (empty: the rating page).",
    )

    objects = RatingQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The staff review list: flagged and both-bad ratings, newest first.
            models.Index(
                fields=["-created_at"],
                name="rating_needs_review",
                condition=Q(flag_pii=True) | Q(flag_unsafe=True) | Q(flag_broken=True) | Q(both_bad=True),
            ),
            # The queue's personal-data hold (services/assignment.py, PROMPT_SERVABLE_SQL): a prompt's
            # (or its twins') flagged ratings, found in a probe or two per candidate comparison.
            models.Index(fields=["comparison"], name="rating_flag_pii", condition=Q(flag_pii=True)),
            # A token's ratings (a token deleted sets them to empty; the admin lists them).
            models.Index(fields=["api_token"], name="rating_api_token", condition=Q(api_token__isnull=False)),
        ]
        constraints = [
            models.UniqueConstraint(fields=["rater", "comparison"], name="rating_once_per_rater_comparison"),
            models.UniqueConstraint(fields=["rater", "idempotency_key"], name="rating_idempotency_key"),
            models.CheckConstraint(
                condition=Q(preference__gte=-3, preference__lte=3), name="rating_preference_range"
            ),
        ] + [
            models.CheckConstraint(
                condition=Q(**{f"{d}__isnull": True}) | Q(**{f"{d}__gte": -2, f"{d}__lte": 2}),
                name=f"rating_{d}_range",
            )
            for d in ("helpfulness", "factual_accuracy", "harmlessness", "conciseness", "coherence")
        ]

    def __str__(self) -> str:
        return f"Rating #{self.pk} by {self.rater} on comparison #{self.comparison_id}: {self.preference:+d}"

    def submitted_via(self) -> str:
        """How the rating came in, for the staff who weigh it: the page, or which API token (and who made
        it, when not the rater: a token for a rater may be minted by staff). Plain text: templates
        escape it."""
        if self.api_token_id is None:
            return "the rating page (or the simulator)"
        try:
            token = self.api_token
        except ObjectDoesNotExist:
            token = None
        if token is None:
            return f"an API token since deleted (#{self.api_token_id})"
        said = f"API token {token.prefix} (\u201c{token.name}\u201d)"
        if token.created_by_id is None:
            return said + ", maker not on record (a command, or an account since deleted)"
        if token.created_by_id != self.rater_id:
            return said + f", made by {token.created_by.username}"
        return said


class RatingReview(models.Model):
    """A staff decision on a rating. Ratings are evidence and never change; a review sits beside one.

    The newest review of a rating is in force; an EXCLUDE keeps it out of training and exports.
    """

    class Decision(models.TextChoices):
        CONFIRM = "confirm", "confirmed (flag stands, rating kept)"
        EXCLUDE = "exclude", "excluded from training and export"

    rating = models.ForeignKey(Rating, on_delete=models.CASCADE, related_name="reviews")
    decision = models.CharField(max_length=8, choices=Decision.choices)
    reason = models.CharField(max_length=500)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.CheckConstraint(condition=~Q(reason=""), name="rating_review_reason_required")]

    def __str__(self) -> str:
        return f"{self.get_decision_display()}: rating #{self.rating_id}"


class RaterProfile(models.Model):
    """Per-rater quality figures, recomputed by the quality job; `trust_weight` weighs their pairs."""

    rater = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="rater_profile"
    )
    trust_weight = models.FloatField(default=1.0)
    figures = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.rater} (trust {self.trust_weight:.2f})"


class QueueSnapshot(models.Model):
    """Queue figures recorded by the housekeeping job; the staff home page shows the latest."""

    taken_at = models.DateTimeField(auto_now_add=True, db_index=True)
    pending = models.PositiveIntegerField(help_text="Rating slots not yet claimed on active comparisons.")
    leased = models.PositiveIntegerField(help_text="Assignments currently leased.")
    done = models.PositiveIntegerField(help_text="Ratings stored.")
    released = models.PositiveIntegerField(default=0, help_text="Expired leases released by this run.")

    class Meta:
        ordering = ["-taken_at"]

    def __str__(self) -> str:
        return f"{self.taken_at:%Y-%m-%d %H:%M} pending={self.pending} leased={self.leased} done={self.done}"


class TrainingRun(models.Model):
    """One training job. Its state lives here, not in a Celery result backend (DESIGN section 3).

    At most one queued-or-running run per kind (a partial unique index): that is the single-flight
    lock, so two beats firing at once create one run. A worker owns a run after the conditional
    UPDATE queued -> running succeeds; a redelivered task finds it running and does nothing.
    """

    class Kind(models.TextChoices):
        REWARD_MODEL = "reward_model", "reward model"
        PPO = "ppo", "PPO round"
        BEST_OF_N = "best_of_n", "best-of-n round"

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    ACTIVE = (Status.QUEUED, Status.RUNNING)

    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.REWARD_MODEL)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    trigger = models.CharField(max_length=16, default="manual", help_text="beat, manual, command or api")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    # at least 1 (a check constraint too): the admin's 0 failed the run at its next claim
    max_attempts = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1)])
    progress = models.FloatField(default=0.0, help_text="0..1")
    progress_detail = models.JSONField(default=dict, blank=True)
    metrics_history = models.JSONField(default=list, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    config = models.JSONField(default=dict, blank=True)
    data_snapshot = models.JSONField(default=dict, blank=True, help_text="Which ratings went in.")
    error = models.TextField(blank=True)
    artifact_path = models.CharField(max_length=500, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    # The Celery task message and the process of the attempt running it: that message delivered again
    # to the same worker while that process is gone is a run to take over (see run_claim).
    task_id = models.CharField(max_length=255, blank=True, default="")
    pid = models.PositiveIntegerField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    with_baseline = models.BooleanField(default=False, help_text="Also train a plain Bradley-Terry model.")
    # When the task message was last handed to the broker (None: never, say Redis was down): recovery
    # re-sends queued runs whose message is older than RM_QUEUED_RESEND_SECONDS.
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind"],
                condition=Q(status__in=["queued", "running"]),
                name="training_run_single_flight",
            ),
            # Both policy round kinds write the next policy version: one of either at a time. The
            # per-kind slot above let a PPO and a best-of-n request made at the same instant both in.
            models.UniqueConstraint(
                models.Case(
                    models.When(kind__in=["ppo", "best_of_n"], then=models.Value("policy")),
                    default=models.F("kind"),
                    output_field=models.CharField(),
                ),
                condition=Q(status__in=["queued", "running"]),
                name="training_run_single_flight_policy",
            ),
            models.CheckConstraint(condition=Q(max_attempts__gte=1), name="training_run_max_attempts_min_1"),
        ]

    def __str__(self) -> str:
        return f"Run #{self.pk} {self.kind} ({self.status})"

    def clean(self) -> None:
        """A limit below the attempts already made reads "Gave up after 2 attempts. 3 / 1" at the next
        claim; cancelling is how a run is stopped."""
        if self.max_attempts is not None and self.max_attempts < self.attempts:
            raise ValidationError(
                {
                    "max_attempts": f"This run has made {self.attempts} attempts already; the limit cannot "
                    "be lower. To stop the run, cancel it."
                }
            )

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or self.heartbeat_at or self.started_at
        return (end - self.started_at).total_seconds()


class RewardModelVersion(models.Model):
    """A trained reward model. Exactly one (or none) is active: the one PPO and best-of-n use."""

    number = models.PositiveIntegerField(unique=True)
    run = models.OneToOneField(TrainingRun, on_delete=models.PROTECT, related_name="reward_model")
    artifact_path = models.CharField(max_length=500)
    metrics = models.JSONField(default=dict)
    plots = models.JSONField(default=dict, help_text="Loss curves, reward by length, scatter samples.")
    baseline_metrics = models.JSONField(
        default=dict, blank=True, help_text="A plain model trained beside it."
    )
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    # Figures on the frozen evaluation set (EvalSetRating), this version and the then-active one.
    eval_set_metrics = models.JSONField(default=dict, blank=True)
    activation_note = models.TextField(blank=True, help_text="Why it was or was not activated.")

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=Q(is_active=True), name="one_active_reward_model"
            ),
        ]

    def __str__(self) -> str:
        return f"Reward model v{self.number}{' (active)' if self.is_active else ''}"


TOKEN_SCOPES = ("read", "rate", "ingest", "export", "train", "admin")


def token_scopes_all() -> list[str]:
    return list(TOKEN_SCOPES)


class ApiToken(models.Model):
    """A bearer token for programs. Only a SHA-256 digest is stored; the key is shown once, at creation.

    Keys are 256-bit random strings, so an unsalted fast hash is enough (as GitHub and PyPI do): there
    is nothing to brute-force. `prefix` (the first characters, not secret) finds the row in O(1).
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(
        max_length=100,
        help_text="What the token is for (e.g. 'playground ingest').",
        validators=[one_line_name],
    )
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    scopes = models.JSONField(
        default=token_scopes_all,
        help_text="What the token may do (services/tokens.py, TOKEN_SCOPES); never more than its user may.",
    )
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Refused from then on (empty: never).")
    # The token whose request created this one (empty: a person or the command did). What a token
    # minted must not outlive it: revoking cascades (token_revoke) and token_authenticate refuses a
    # token with a dead ancestor, so deleting one deletes what it minted rather than orphan it.
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        editable=False,
        on_delete=models.CASCADE,
        related_name="minted",
        help_text="The token that created this one; revoking it revokes this one too.",
    )
    # What the account was when the token was made (services/tokens.py: account_standing). Who may make
    # a token for an account was decided for the account as it was: once it is promoted or demoted,
    # the token is refused (a rater's token, possibly minted by someone else, gained staff powers).
    owner_standing = models.CharField(max_length=10, editable=False, default="rater")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        state = "revoked" if self.revoked_at else "active"
        return f"{self.prefix}… {self.name} ({self.user}, {state})"


class ExportFile(models.Model):
    """A preference export written to disk; purge_expired deletes it when its oldest prompt expires."""

    path = models.CharField(max_length=500)
    format = models.CharField(max_length=8)
    mode = models.CharField(max_length=16)
    rows = models.PositiveIntegerField(default=0)
    filters = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The earliest moment any prompt in the file passes its source's retention period (null: never),
    # under the settings when the file was written; the purge reads `oldest_by_source` under today's.
    expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    # The oldest prompt's creation time per source in the file (ISO 8601), so that a period set or
    # shortened after the file was written still reaches it.
    oldest_by_source = models.JSONField(default=dict, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Export #{self.pk} {self.path} ({self.rows} rows)"


class EvalSetRating(models.Model):
    """A rating in the frozen evaluation set: no reward model version trains on it.

    Whole prompts join (every later rating of an evaluation prompt joins too), and only prompts none of
    whose ratings any earlier run trained on, so no version has seen the prompt. The set only grows;
    safe activation compares a new version with the active one on it (services/training.py).
    """

    rating = models.OneToOneField(Rating, on_delete=models.CASCADE, related_name="eval_set_entry")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="eval_set_ratings")
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"eval-set rating {self.rating_id}"


from labelapp.quality_models import QualityReport, SimulatedDecision  # noqa: E402, F401


class PolicyVersion(models.Model):
    """A policy that answers prompts. v0 is the instruct model as shipped; each round adds one.

    A PPO version has its own weights (`artifact_path`, safetensors); a best-of-n version reuses its
    parent's weights and samples n answers per prompt, keeping the one the reward model scores best.
    `metrics` holds the over-optimization watch of its round (reward-model score, KL to the reference,
    mean length, share without EOS, the parent's figures scored by the same reward model);
    `history` the per-update PPO log.
    """

    class Kind(models.TextChoices):
        BASE = "base", "instruct model as shipped"
        PPO = "ppo", "PPO"
        BEST_OF_N = "best_of_n", "best-of-n"

    number = models.PositiveIntegerField(unique=True)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    reward_model = models.ForeignKey(
        RewardModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="policies"
    )
    run = models.OneToOneField(
        TrainingRun, null=True, blank=True, on_delete=models.PROTECT, related_name="policy_version"
    )
    artifact_path = models.CharField(
        max_length=500, blank=True, help_text="Weights folder; empty = the POLICY_MODEL setting (v0)."
    )
    sampling = models.JSONField(default=dict, help_text="temperature, top_p, max_new_tokens (and n).")
    metrics = models.JSONField(default=dict, blank=True)
    history = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # A rejected version (by staff, or by the watch when raters prefer its parent at equal length) is
    # never the parent of a later round, nor is anything built on it. These fields are the rejection in
    # force (cleared when staff reinstate the version); every rejection and reinstatement is recorded,
    # never erased, as a PolicyDecision.
    rejected_at = models.DateTimeField(null=True, blank=True)
    rejected_reason = models.TextField(blank=True)
    rejected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-number"]

    def __str__(self) -> str:
        return f"Policy v{self.number} ({self.kind})"

    @property
    def source_model(self) -> str:
        """What `Response.source_model` says for its answers."""
        return f"policy-v{self.number}"


class PolicyDecision(models.Model):
    """A recorded decision on a policy version: rejected (by staff or the watch) or reinstated (staff).

    Append-only: the version's `rejected_*` fields say what is in force, these rows say how it came to
    be, in order, with who and why.
    """

    class Action(models.TextChoices):
        REJECT = "reject", "rejected"
        REINSTATE = "reinstate", "reinstated"

    version = models.ForeignKey(PolicyVersion, on_delete=models.PROTECT, related_name="decisions")
    action = models.CharField(max_length=12, choices=Action.choices)
    reason = models.TextField()
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    automatic = models.BooleanField(default=False, help_text="the watch decided, not a person")
    at = models.DateTimeField()

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"v{self.version.number} {self.get_action_display()} {self.at:%Y-%m-%d %H:%M}"

    @property
    def who(self) -> str:
        """Who decided, in words: the watch, the account, or (its account since deleted) a deleted one."""
        if self.automatic:
            return "the watch"
        return self.by.username if self.by_id else "a deleted account"


class PolicySample(models.Model):
    """One answer of a policy version to a prompt, kept as the Response raters see."""

    class Split(models.TextChoices):
        EVAL = "eval", "held-out evaluation prompt"
        FRESH = "fresh", "fresh prompt"
        DEMO = "demo", "demo queue"

    policy = models.ForeignKey(PolicyVersion, on_delete=models.CASCADE, related_name="samples")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="policy_samples")
    response = models.OneToOneField(Response, on_delete=models.CASCADE, related_name="policy_sample")
    split = models.CharField(max_length=8, choices=Split.choices)
    index = models.PositiveSmallIntegerField(default=0, help_text="Several answers to one prompt: 0, 1, ...")
    reward = models.FloatField(null=True, blank=True, help_text="Reward model score (quality head).")
    num_tokens = models.PositiveIntegerField(default=0)
    finished = models.BooleanField(default=True, help_text="Ended with EOS (not cut at the token cap).")
    kl = models.FloatField(null=True, blank=True, help_text="Sum over tokens of log pi - log pi_ref.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["policy", "prompt", "index"]
        constraints = [
            models.UniqueConstraint(fields=["policy", "prompt", "split", "index"], name="policy_sample_once"),
        ]

    def __str__(self) -> str:
        return f"v{self.policy.number} on prompt #{self.prompt_id} ({self.split} {self.index})"


class PolicyPair(models.Model):
    """Which policies a comparison puts side by side: the win rate of `new` against `old` comes from it."""

    class Kind(models.TextChoices):
        VS_PREVIOUS = "vs_previous", "new vs previous policy"
        VS_SELF = "vs_self", "new vs new (diversity)"
        VS_DEMO = "vs_demo", "policy vs team-written answer"

    comparison = models.OneToOneField(Comparison, on_delete=models.CASCADE, related_name="policy_pair")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    new = models.ForeignKey(PolicyVersion, on_delete=models.CASCADE, related_name="pairs_as_new")
    old = models.ForeignKey(
        PolicyVersion, null=True, blank=True, on_delete=models.CASCADE, related_name="pairs_as_old"
    )
    new_is_a = models.BooleanField(help_text="The new policy's answer is response A.")

    def __str__(self) -> str:
        return f"{self.kind}: comparison #{self.comparison_id}"
