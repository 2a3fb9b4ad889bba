"""Base classes for admin pages of rows that jobs or services write and staff only look at, and the
JSON form field every editable JSON column in the admin uses."""

from django import forms
from django.contrib import admin
from django.db import models
from django.forms.fields import InvalidJSONInput
from rest_framework.exceptions import ParseError

from labelapp.api.parsers import loads_safely


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable, never added or changed here (a job or a service writes these rows)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class RecordAdmin(ReadOnlyAdmin):
    """Evidence: not even deleted here (ratings, review decisions, the frozen evaluation set)."""

    def has_delete_permission(self, request, obj=None):
        return False


def _json_problem(text: str) -> str | None:
    """Why `text` cannot be stored in a jsonb column, or None when it can."""
    try:
        loads_safely(text, allow_nul=False)
    except ParseError as exc:
        return str(exc.detail)
    return None


class SafeJSONFormField(forms.JSONField):
    """forms.JSONField that answers hostile JSON with a form error and shows the text back as typed.

    Django's own field raised on what the API parser refuses (a 5000-digit integer: ValueError; deep
    nesting: RecursionError), re-rendered a lone surrogate (\\ud800) into a page that could not be
    encoded, and passed \\u0000 on to jsonb, which refuses it: each a 500 on an admin form.
    """

    def to_python(self, value):
        if not self.disabled and isinstance(value, str) and value not in self.empty_values:
            problem = _json_problem(value)
            if problem:
                raise forms.ValidationError(problem, code="invalid")
        return super().to_python(value)

    def bound_data(self, data, initial):
        if not self.disabled and isinstance(data, str) and _json_problem(data):
            return InvalidJSONInput(data)  # shown back verbatim, never decoded
        return super().bound_data(data, initial)


# For ModelAdmin.formfield_overrides where a JSON column is editable.
SAFE_JSON_FIELDS = {models.JSONField: {"form_class": SafeJSONFormField}}
