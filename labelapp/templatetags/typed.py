"""`typed_text`: text a person typed (a change message, a reason, a rationale), shown as plain text.

Escaped as Django escapes any variable, and with bidi control characters (U+202E and friends) shown as
visible markers, as rendered Markdown shows them (labelapp/rendering.py): a raw right-to-left override
in a reason or change message reversed the rest of its line on the staff pages and the raters' own.
"""

from __future__ import annotations

from django import template
from django.utils.html import conditional_escape
from django.utils.safestring import SafeString, mark_safe

from labelapp.rendering import show_bidi_controls

register = template.Library()


@register.filter
def typed_text(value) -> SafeString:
    # the markers hold no character that HTML would read, so marking the escaped text safe is sound
    return mark_safe(show_bidi_controls(str(conditional_escape(value))))  # noqa: S308
