"""Base classes for admin pages of rows that jobs or services write and staff only look at.

No JSON column is editable in the admin (tests/labelapp/test_admin.py checks it): every one is a
record a job or a service wrote (a run's recipe, metrics, scrubbing counts), never typed by hand."""

from django.contrib import admin


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
