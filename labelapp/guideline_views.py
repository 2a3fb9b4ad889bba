"""Staff pages for living guidelines: editor with live preview, drafts, publish, history and diffs.

Only staff reach these (403 for raters); saving a draft and publishing need the guideline-editor
role's permissions (services/roles.py, checked in the guideline services). Published versions are
never edited: the editor always works on the draft, which starts from the current text; Publish turns
it into a new version.
"""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods, require_POST

from labelapp.access import staff_required
from labelapp.models import GuidelineVersion
from labelapp.rendering import render_markdown
from labelapp.services.guidelines import (
    TEXT_MAX,
    GuidelineConflict,
    GuidelineError,
    guideline_current,
    guideline_diff_html,
    guideline_draft,
    guideline_draft_save,
    guideline_edit_base,
    guideline_publish_text,
)
from labelapp.services.roles import NotPermitted

PREVIEW_MAX_CHARS = TEXT_MAX  # what may be saved: the rest is refused on save, not rendered


@staff_required
def staff_guidelines(request: HttpRequest) -> HttpResponse:
    versions = list(GuidelineVersion.objects.select_related("author").order_by("-number"))
    return render(
        request,
        "labelapp/staff/guidelines.html",
        {"versions": versions, "current": guideline_current(), "draft": guideline_draft()},
    )


@staff_required
@require_http_methods(["GET", "POST"])
def staff_guideline_edit(request: HttpRequest) -> HttpResponse:
    draft, current = guideline_draft(), guideline_current()
    start = draft or current
    text = start.text if start else ""
    title = start.title if start else "Rating guidelines"
    changelog, error, status = (draft.changelog if draft else ""), None, 200
    based_on = guideline_edit_base(start)
    if request.method == "POST":
        text = request.POST.get("text", "")
        typed_title = request.POST.get("title")
        title = typed_title if typed_title is not None else title
        changelog = request.POST.get("changelog", "")
        # What this editor opened with: a colleague's save since then is not replaced unseen. A post
        # without it (a page opened before this check existed, a script) is checked as a stale one.
        based_on = request.POST.get("based_on", "")
        try:
            if not title.strip():  # a cleared title silently became the old one again
                raise GuidelineError("Give the guidelines a title.")
            if request.POST.get("action") == "publish":
                version = guideline_publish_text(
                    text=text, changelog=changelog, author=request.user, title=title, based_on=based_on
                )
                messages.success(
                    request, f"Published version {version.number}; raters will be asked to acknowledge it."
                )
                return redirect("staff_guidelines")
            version = guideline_draft_save(
                text=text, author=request.user, title=title, based_on=based_on, changelog=changelog
            )
            messages.success(
                request, f"Draft (version {version.number}) saved; raters see nothing until you publish."
            )
            return redirect("staff_guideline_edit")
        except GuidelineConflict as exc:
            # the editor now knows: sending the same text again replaces the colleague's on purpose
            error, status, based_on = str(exc), 409, guideline_edit_base()
        except GuidelineError as exc:
            error, status = str(exc), 400
        except NotPermitted as exc:  # the editor again with the text typed, not a bare 403 page
            error, status = str(exc), 403
    return render(
        request,
        "labelapp/staff/guideline_edit.html",
        {
            "text": text,
            "title": title,
            "changelog": changelog,
            "based_on": based_on or "",
            "error": error,
            "draft": draft,
            "current": current,
            "preview": mark_safe(render_markdown(text[:PREVIEW_MAX_CHARS])),  # noqa: S308 (sanitized)
        },
        status=status,
    )


# (not "log in again in another tab": a login changes the CSRF token, and this page's Save then got 403)
PREVIEW_SESSION_ENDED = (
    '<p class="errors" role="alert">Your session has ended: what you type here can no longer be saved '
    "from this page. Copy your text (and change message) somewhere safe, log in again, open the editor "
    "and paste it back.</p>"
)


@require_POST
def staff_guideline_preview(request: HttpRequest) -> HttpResponse:
    """The live preview (htmx): the same server-side render and sanitizer raters get. Sent in the
    background on every keystroke, it answers a session that has ended with a warning in the preview,
    not with the login redirect, which took the whole editor page away with the text being typed."""
    if not request.user.is_authenticated:
        return HttpResponse(PREVIEW_SESSION_ENDED)
    if not request.user.is_staff:
        raise PermissionDenied("Staff only.")
    text = request.POST.get("text", "")[:PREVIEW_MAX_CHARS]
    return HttpResponse(render_markdown(text))


@staff_required
def staff_guideline_version(request: HttpRequest, number: int) -> HttpResponse:
    version = GuidelineVersion.objects.filter(number=number).select_related("author").first()
    if version is None:
        raise Http404("No such version.")
    return render(request, "labelapp/staff/guideline_version.html", {"version": version})


def _pair_asked(request: HttpRequest, versions: list) -> tuple:
    """The (old, new) versions `?a=` and `?b=` name. One left out is filled in: `b` is the newest
    version, `a` the one before `b` (`?a=1` alone showed v2 -> v3 without a word). A value that names
    no version falls back to the newest two, with a message saying so."""
    by_number = {v.number: v for v in versions}
    asked = {k: request.GET[k] for k in ("a", "b") if k in request.GET}
    chosen, bad = {}, []
    for key, value in asked.items():
        try:
            chosen[key] = by_number[int(value)]
        except (KeyError, ValueError):
            bad.append(value[:20])
    if bad:  # a typo or a stale link must not pass for the diff that was asked for
        old, new = versions[1], versions[0]
        shown = ", ".join(repr(a) for a in bad)
        messages.error(request, f"No guideline version {shown}; showing v{old.number} -> v{new.number}.")
        return old, new
    new = chosen.get("b") or versions[0]
    if "a" in chosen:
        old = chosen["a"]
    else:  # the one before `b`; `b` the first version: it against the one after (not v4 -> v1)
        before = [v for v in versions if v.number < new.number]
        after = [v for v in versions if v.number > new.number]
        old, new = (before[0], new) if before else (new, after[-1])
    if "b" not in chosen and old.number == new.number:  # ?a= named the newest: it against the one before
        old, new = versions[1], versions[0]
    return old, new


@staff_required
def staff_guideline_diff(request: HttpRequest) -> HttpResponse:
    versions = list(GuidelineVersion.objects.order_by("-number"))
    if len(versions) < 2:
        messages.info(request, "A diff needs two versions.")
        return redirect("staff_guidelines")
    old, new = _pair_asked(request, versions)
    diff = mark_safe(guideline_diff_html(old=old, new=new))  # noqa: S308 (textdiff escapes the text)
    context = {"old": old, "new": new, "diff": diff, "versions": versions}
    return render(request, "labelapp/staff/guideline_diff.html", context)
