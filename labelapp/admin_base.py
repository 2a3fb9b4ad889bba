"""Base classes for admin pages of rows that jobs or services write and staff only look at, and the
date drill-down's guard.

No JSON column is editable in the admin (tests/labelapp/test_admin.py checks it): every one is a
record a job or a service wrote (a run's recipe, metrics, scrubbing counts), never typed by hand."""

import logging

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


class ReadOnlyAdmin(SaveChangedFieldsMixin, admin.ModelAdmin):
    """Viewable, never added or changed here (a job or a service writes these rows).

    Bidi control characters on these pages show as visible markers (⟦RLO U+202E⟧), as on the staff
    pages (`typed_text`): a rater's rationale or skip reason with a right-to-left override read
    reordered to the staff member checking it. Only on the pages a GET shows, where nothing is saved
    back (in an editable field's value a marker would be stored in place of the character: an action's
    form, answered to a POST, keeps what was typed); the list's search box shows a searched-for control
    as its marker."""

    def changeform_view(self, request, *args, **kwargs):
        response = super().changeform_view(request, *args, **kwargs)
        return _bidi_shown(response) if request.method == "GET" else response

    def changelist_view(self, request, *args, **kwargs):
        # a POST is an action, whose form (a reason typed for a review) is sent back as typed
        response = super().changelist_view(request, *args, **kwargs)
        return _bidi_shown(response) if request.method == "GET" else response

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def _bidi_shown(response):
    """The page with every bidi control shown as a marker (after a TemplateResponse renders)."""

    def mark(rendered):
        if rendered.get("Content-Type", "").startswith("text/html"):
            rendered.content = show_bidi_controls(rendered.content.decode(rendered.charset)).encode(
                rendered.charset
            )
        return rendered

    if hasattr(response, "add_post_render_callback") and not response.is_rendered:
        response.add_post_render_callback(mark)
        return response
    return mark(response) if not getattr(response, "streaming", False) else response


class RecordAdmin(ReadOnlyAdmin):
    """Evidence: not even deleted here (ratings, review decisions, the frozen evaluation set)."""

    def has_delete_permission(self, request, obj=None):
        return False
