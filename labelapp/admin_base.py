"""Base classes for admin pages of rows that jobs or services write and staff only look at, and the
date drill-down's guard.

No JSON column is editable in the admin (tests/labelapp/test_admin.py checks it): every one is a
record a job or a service wrote (a run's recipe, metrics, scrubbing counts), never typed by hand."""

import logging
import re

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.views.main import ChangeList
from django.db import DataError, transaction

from labelapp.rendering import show_bidi_controls

log = logging.getLogger(__name__)


class DateBoundedChangeList(ChangeList):
    """Django's date hierarchy computes the end of the day, month or year asked for by adding to it;
    past 9999-12-31 that raised OverflowError or ValueError (a 500), and so did a year lookup in the
    query string on any date column of any list (`?created_at__year=0`, `__iso_year=0`,
    `__year__gte=10000`: the year's bounds are computed when the list counts its rows). Refused like
    any other bad lookup instead: the list redirects to itself with ?e=1. So is a lookup the database
    refuses, as an unbalanced regular expression (`?id__regex=(`)."""

    def get_filters(self, request):
        try:
            return super().get_filters(request)
        except (OverflowError, ValueError) as exc:
            raise IncorrectLookupParameters(exc) from exc

    def get_results(self, request):
        try:
            # in a savepoint: a lookup the database refuses (`?id__regex=(`, an unbalanced regular
            # expression, was a 500 on every list) leaves the request's transaction usable
            with transaction.atomic():
                return super().get_results(request)
        except (OverflowError, ValueError, DataError) as exc:
            if not self.filter_params:  # not the query string's doing: a bug, and a 500 says so
                raise
            log.warning("admin list %s: lookup refused (%s)", request.path, exc)
            raise IncorrectLookupParameters(exc) from exc


class DateBoundedListMixin:
    """A ModelAdmin whose list uses the guarded change list (labelapp/admin.py gives it to every list)."""

    def get_changelist(self, request, **kwargs):
        return DateBoundedChangeList


class SaveChangedFieldsMixin:
    """A change form (and a list's editable columns) saves only the fields the staff member changed,
    with what the model derives from them (`derived_fields`; the models' own save() adds theirs):
    Django's save wrote every column as the form had read it, so a service's change in between (a
    claim count, a consent withdrawal, a run's status, a token's revocation, the active reward model)
    went back to the old value. An add saves the whole row, as before."""

    derived_fields: dict[str, tuple[str, ...]] = {}
    always_saved_fields: tuple[str, ...] = ()

    def save_model(self, request, obj, form, change):
        if not change:
            return super().save_model(request, obj, form, change)
        concrete = {f.name for f in obj._meta.concrete_fields}
        fields = {name for name in form.changed_data if name in concrete}
        for name in list(fields):
            fields.update(self.derived_fields.get(name, ()))
        if fields:
            fields.update(self.always_saved_fields)
            obj.save(update_fields=sorted(fields))
        return None


class BidiShownMixin:
    """Bidi control characters show as visible markers (⟦RLO U+202E⟧) on every admin page a GET shows, as
    on the staff pages (`typed_text`): a rater's rationale, a rejection reason or a prompt read reordered
    to the staff member checking it. Not inside a form's fields (inputs, text areas, selects), whose
    values are sent back as they stand: a marker there would be stored in place of the character. A POST
    (an action's form sent back with an error, a change form with its errors) is answered as typed.
    labelapp/admin.py gives it to every admin, as the date guard."""

    def changeform_view(self, request, *args, **kwargs):
        return _bidi_shown_on_get(request, super().changeform_view(request, *args, **kwargs))

    def changelist_view(self, request, *args, **kwargs):
        return _bidi_shown_on_get(request, super().changelist_view(request, *args, **kwargs))

    def history_view(self, request, *args, **kwargs):
        return _bidi_shown_on_get(request, super().history_view(request, *args, **kwargs))

    def delete_view(self, request, *args, **kwargs):
        return _bidi_shown_on_get(request, super().delete_view(request, *args, **kwargs))


class ReadOnlyAdmin(SaveChangedFieldsMixin, admin.ModelAdmin):
    """Viewable, never added or changed here (a job or a service writes these rows)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


# A form's fields in a rendered admin page: their values go back to the server as they stand.
_FORM_FIELDS = re.compile(r"<textarea\b.*?</textarea>|<select\b.*?</select>|<input\b[^>]*>", re.S | re.I)


def bidi_shown_outside_fields(page: str) -> str:
    """`page` (HTML) with every bidi control shown as a marker, except inside form fields."""
    out, pos = [], 0
    for m in _FORM_FIELDS.finditer(page):
        out += [show_bidi_controls(page[pos : m.start()]), m.group()]
        pos = m.end()
    out.append(show_bidi_controls(page[pos:]))
    return "".join(out)


def _bidi_shown_on_get(request, response):
    """The page with bidi controls shown as markers (after a TemplateResponse renders); a POST's as is."""
    if request.method != "GET":
        return response

    def mark(rendered):
        if rendered.get("Content-Type", "").startswith("text/html"):
            text = rendered.content.decode(rendered.charset)
            rendered.content = bidi_shown_outside_fields(text).encode(rendered.charset)
        return rendered

    if hasattr(response, "add_post_render_callback") and not response.is_rendered:
        response.add_post_render_callback(mark)
        return response
    return mark(response) if not getattr(response, "streaming", False) else response


class RecordAdmin(ReadOnlyAdmin):
    """Evidence: not even deleted here (ratings, review decisions, the frozen evaluation set)."""

    def has_delete_permission(self, request, obj=None):
        return False
