"""Forms of the rater pages. Validation errors are shown on the page with what the rater typed kept.

The form checks types only; the rules of a rating (the length check among them) live in
services/ratings.py, so the page, the API and the simulator enforce the same ones.
"""

from __future__ import annotations

from django import forms

from labelapp.models import Rating
from labelapp.services.ratings import RatingInput

SCORE_CHOICES = [("", "not judged")] + [(str(i), str(i)) for i in range(-2, 3)]


class RatingForm(forms.Form):
    preference = forms.TypedChoiceField(
        choices=Rating.Preference.choices,
        coerce=int,
        widget=forms.RadioSelect,
        error_messages={
            "required": "Choose one of the seven options (keys 1-7).",
            "invalid_choice": "Choose one of the seven options (keys 1-7).",
        },
    )
    both_bad = forms.BooleanField(required=False, label="Both answers are bad")
    helpfulness = forms.TypedChoiceField(choices=SCORE_CHOICES, coerce=int, empty_value=None, required=False)
    factual_accuracy = forms.TypedChoiceField(
        choices=SCORE_CHOICES, coerce=int, empty_value=None, required=False
    )
    harmlessness = forms.TypedChoiceField(choices=SCORE_CHOICES, coerce=int, empty_value=None, required=False)
    conciseness = forms.TypedChoiceField(choices=SCORE_CHOICES, coerce=int, empty_value=None, required=False)
    coherence = forms.TypedChoiceField(choices=SCORE_CHOICES, coerce=int, empty_value=None, required=False)
    rationale = forms.CharField(required=False, max_length=5000, widget=forms.Textarea(attrs={"rows": 2}))
    flag_pii = forms.BooleanField(required=False, label="Contains personal data")
    flag_unsafe = forms.BooleanField(required=False, label="Unsafe")
    flag_broken = forms.BooleanField(required=False, label="Broken / unreadable")
    length_check = forms.ChoiceField(
        choices=[c for c in Rating.LengthCheck.choices if c[0]], required=False, widget=forms.RadioSelect
    )
    # Hidden fields the page's script fills; their errors are shown too (templates/_rate_panel.html),
    # in words a rater can act on, since they cannot see or fix the field itself.
    time_on_task_ms = forms.IntegerField(
        required=False,
        min_value=0,
        widget=forms.HiddenInput,
        error_messages={
            "invalid": "The page's timer sent a bad value; please submit again.",
            "min_value": "The page's timer sent a bad value; please submit again.",
        },
    )
    form_key = forms.UUIDField(
        widget=forms.HiddenInput,
        error_messages={
            "required": "This form lost its key; please submit again (the page was refreshed for you).",
            "invalid": "This form's key is damaged; please submit again (the page was refreshed for you).",
        },
    )

    def to_input(self) -> RatingInput:
        return RatingInput.from_validated(self.cleaned_data)


class SkipForm(forms.Form):
    reason = forms.CharField(max_length=500, error_messages={"required": "Say why you skip."})
