"""Forms of the rater pages. Validation errors are shown on the page with what the rater typed kept."""

from __future__ import annotations

from django import forms

from labelapp.models import Rating
from labelapp.services.ratings import RatingInput, length_check_asked

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
    time_on_task_ms = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)
    form_key = forms.UUIDField(widget=forms.HiddenInput)

    def __init__(self, *args, words_a: int, words_b: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.words_a, self.words_b = words_a, words_b

    def clean(self):
        data = super().clean()
        preference = data.get("preference")
        if preference is None:
            return data
        if length_check_asked(preference=preference, words_a=self.words_a, words_b=self.words_b):
            if not data.get("length_check"):
                self.add_error(
                    "length_check", "You picked the much longer answer: does its extra length add content?"
                )
        else:
            data["length_check"] = ""  # only stored when the question was asked
        return data

    def to_input(self) -> RatingInput:
        return RatingInput.from_validated(self.cleaned_data)


class SkipForm(forms.Form):
    reason = forms.CharField(max_length=500, error_messages={"required": "Say why you skip."})
