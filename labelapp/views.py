"""Rater and staff pages. Views stay short: validate with a form, call one service, render.

The rating page works without JavaScript (plain POST + redirect); with htmx a submit or skip answers
with the next comparison's panel directly, so a judgment costs the rater one round trip.
"""

from __future__ import annotations

import functools

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods
from django_htmx.http import HttpResponseClientRedirect, push_url, reswap, retarget

from labelapp.forms import RatingForm, SkipForm
from labelapp.models import Assignment, GuidelineVersion, Rating
from labelapp.rendering import show_bidi_controls
from labelapp.selectors import assignment_for_page, queue_latest_snapshot, rater_progress, rating_view
from labelapp.services.assignment import (
    TAKEN_BACK,
    QueueError,
    assignment_keep_or_take_back,
    assignment_next,
    assignment_next_with_notice,
    assignment_renew_if_expired,
    assignment_skip,
    assignment_taken_back_said,
    assignment_texts_shown,
    rater_has_work,
)
from labelapp.services.guidelines import (
    GuidelineAckRequired,
    GuidelineError,
    guideline_acknowledge,
    guideline_current,
    guideline_diff_html,
    guideline_last_acknowledged,
    guideline_needs_ack,
)
from labelapp.services.queue import queue_figures
from labelapp.services.ratings import (
    AssignmentGone,
    RatingError,
    gold_feedback,
    rating_still_possible,
    rating_submit,
)

SCALE_LABELS = [
    "Left much better",
    "Left better",
    "Left slightly better",
    "Tie",
    "Right slightly better",
    "Right better",
    "Right much better",
]


def _scale(shown_left: str) -> list[dict]:
    """The 7 buttons left to right (keys 1-7), each posting the A/B-relative preference it means."""
    sign = 1 if shown_left == Assignment.Side.A else -1
    # Position k=1..7 means "left much better" .. "right much better": k-4 in left/right terms.
    return [{"key": k, "value": (k - 4) * sign, "label": SCALE_LABELS[k - 1]} for k in range(1, 8)]


DIMENSION_LABELS = ["Left clearly", "Left", "Same", "Right", "Right clearly"]


def _dimensions(shown_left: str, form: RatingForm) -> list[dict]:
    """Per-dimension 5-point rows, left to right, each option posting its A/B-relative value."""
    sign = 1 if shown_left == Assignment.Side.A else -1
    rows = []
    for name in Rating.DIMENSIONS:
        current = form[name].value()
        options = []
        for p in range(1, 6):
            value = (p - 3) * sign
            options.append(
                {"value": value, "label": DIMENSION_LABELS[p - 1], "checked": str(current) == str(value)}
            )
        rows.append(
            {
                "name": name,
                "label": name.replace("_", " ").capitalize(),
                "options": options,
                "errors": form.errors.get(name),
            }
        )
    return rows


def _controls_context(shown_left: str, form: RatingForm) -> dict:
    chosen = str(form["preference"].value())
    scale = _scale(shown_left)
    for option in scale:
        option["checked"] = chosen == str(option["value"])
    dimensions = _dimensions(shown_left, form)
    return {
        "form": form,
        "scale": scale,
        "dimensions": dimensions,
        # Open only when a dimension itself is at fault: open, it pushes Submit below the fold.
        "dimensions_open": any(d["errors"] for d in dimensions),
        "length_check_value": form["length_check"].value() or "",
    }


_FRESH_CONTROLS: dict[str, str] = {}


def _fresh_controls(shown_left: str) -> str:
    """The empty judging controls depend only on the shown order: render each variant once per process."""
    if shown_left not in _FRESH_CONTROLS:
        form = RatingForm()
        _FRESH_CONTROLS[shown_left] = render_to_string(
            "labelapp/_rate_controls.html", _controls_context(shown_left, form)
        )
    return _FRESH_CONTROLS[shown_left]


def _panel_context(assignment: Assignment, form: RatingForm | None = None) -> dict:
    view = rating_view(assignment=assignment)
    context = {"view": view, "length_ratio_threshold": settings.LABEL["LENGTH_CHECK_RATIO"]}
    if form is None:
        context["controls_html"] = mark_safe(_fresh_controls(assignment.shown_left))  # noqa: S308 (our template)
        context["form_key"] = assignment.form_key
    else:
        context.update(_controls_context(assignment.shown_left, form))
        # A damaged key is replaced by the page's own, so the next submit can succeed.
        context["form_key"] = assignment.form_key if "form_key" in form.errors else form["form_key"].value()
    context["form"] = form
    return context


def _ack_context(rater, version: GuidelineVersion) -> dict:
    """The acknowledgment of `version`, with the diff to the version this rater last acknowledged."""
    previous = guideline_last_acknowledged(rater=rater)
    diff = None
    if previous is not None and previous.number < version.number:
        diff = mark_safe(guideline_diff_html(old=previous, new=version))  # noqa: S308 (textdiff escapes)
    return {"current": version, "needs_ack": version, "previous": previous, "diff": diff}


ALREADY_SUBMITTED = (
    "That comparison was already submitted (from another tab, or from a page opened again with Back). "
    "A rating is never changed, so the first judgment stands; here is your next comparison."
)


def _render_next(
    request: HttpRequest,
    *,
    just_finished: bool = False,
    feedback: dict | None = None,
    notice: str | None = None,
    guideline_version_id: int | None = None,
) -> HttpResponse:
    """After a submit or skip: htmx gets the next panel in place (into #rate-root, whichever form sent
    it), a plain browser a redirect. `notice` is said on top of the next panel.

    When a new guideline version came into force meanwhile, the next panel is its acknowledgment.
    """
    if not request.htmx:
        if feedback is not None:
            messages.info(request, _feedback_text(feedback))
        if notice:
            messages.info(request, notice)
        return redirect("rate_next")
    try:
        assignment = assignment_next(rater=request.user, just_finished=just_finished)
    except GuidelineAckRequired as exc:
        context = {**_ack_context(request.user, exc.version), "feedback": feedback, "notice": notice}
        response = render(request, "labelapp/_ack_panel.html", context)
        url = reverse("guidelines")
    else:
        if assignment is None:
            context = {"feedback": feedback, "notice": notice, **_empty_context(request.user)}
            response = render(request, "labelapp/_empty_panel.html", context)
            url = reverse("rate_next")
        else:
            context = {**_panel_context(assignment), "feedback": feedback, "notice": notice}
            context |= _guideline_side(request, guideline_version_id)
            response = render(request, "labelapp/_rate_panel.html", context)
            url = reverse("rate", args=[assignment.pk])
    return push_url(retarget(reswap(response, "outerHTML"), "#rate-root"), url)


def _guideline_side(request: HttpRequest, version_id: int | None) -> dict:
    """For an htmx panel: the id of the version in force, and the side panel again (out of band) when
    the page showed another one. A version acknowledged in another tab left the old text beside ratings
    stored under the new one. `version_id`: the version the rating just stored carries (the one in
    force, or the next panel would be the acknowledgment); when the page shows it, no query is made
    (the rating cycle's hot path)."""
    shown = request.POST.get("guideline_shown", "")
    if version_id is not None and shown == str(version_id):
        return {"guideline_shown": version_id}
    current = guideline_current()
    if current is None:
        return {}
    return {"guideline_shown": current.pk, "guideline_oob": None if shown == str(current.pk) else current}


def _feedback_text(feedback: dict) -> str:
    """The gold feedback as a message (a page without JavaScript), bidi controls made visible as the
    htmx panel shows them (`typed_text`): the explanation is typed by staff."""
    verdict = (
        "You agreed with the expected answer on the previous comparison."
        if feedback["agreed"]
        else "The previous comparison had an expected answer, and yours differed."
    )  # the htmx panel's words (_gold_feedback.html), with the side: the page said neither side nor tie
    side = feedback["expected_side"]
    expected = f"Expected: the {side} answer was better." if side else "Expected: a tie."
    return f"{verdict} {expected} {show_bidi_controls(feedback['explanation'])}"


@login_required
def home(request: HttpRequest) -> HttpResponse:
    needs_ack = guideline_needs_ack(rater=request.user)
    context = {
        "progress": rater_progress(rater=request.user),
        "needs_ack": needs_ack,
        "published": guideline_current() is not None,
        # Say so on the home page instead of a "Start rating" that leads to an empty page.
        "has_work": needs_ack is not None or rater_has_work(rater=request.user),
    }
    if request.user.is_staff:
        context["snapshot"] = queue_latest_snapshot()
        context["figures"] = queue_figures()
    return render(request, "labelapp/home.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def guidelines(request: HttpRequest) -> HttpResponse:
    current = guideline_current()
    if request.method == "POST":
        try:
            published = GuidelineVersion.objects.filter(published_at__isnull=False)  # a draft is unknown
            version = published.get(pk=int(request.POST.get("version", "")))
            guideline_acknowledge(rater=request.user, version=version)
        except (ValueError, GuidelineVersion.DoesNotExist):  # a forged version: no Python text on screen
            messages.error(request, "Could not record the acknowledgment: unknown version.")
            return redirect("guidelines")
        except GuidelineError as exc:
            messages.error(request, f"Could not record the acknowledgment: {exc}")
            return redirect("guidelines")
        if current is not None and version.pk != current.pk:
            messages.warning(request, f"Version {current.number} is now in force; please read it.")
            return redirect("guidelines")
        return redirect("rate_next")
    needs_ack = guideline_needs_ack(rater=request.user)
    context = {"current": current, "needs_ack": needs_ack}
    if needs_ack is not None:
        context.update(_ack_context(request.user, needs_ack))
    return render(request, "labelapp/guidelines.html", context)


def _empty_context(rater) -> dict:
    """What the "nothing to rate" panel says depends on whether the rater judged anything: a new rater
    was thanked for having "judged every comparison available", beside "0 judged in total"."""
    return {"judged_any": Rating.objects.filter(rater=rater).exists()}


@login_required
def rate_next(request: HttpRequest) -> HttpResponse:
    if guideline_current() is None:
        return render(request, "labelapp/empty.html", {"reason": "no_guidelines"})
    try:
        assignment, notice = assignment_next_with_notice(rater=request.user)
    except GuidelineAckRequired:
        return redirect("guidelines")
    if notice:
        messages.info(request, notice)
    if assignment is None:
        return render(request, "labelapp/empty.html", {"reason": "empty", **_empty_context(request.user)})
    return redirect("rate", assignment_id=assignment.pk)


_SET_ASIDE_WHY = (
    "That comparison was set aside: its prompt was reported as holding personal data and waits for a "
    "staff review."
)
SET_ASIDE = f"{_SET_ASIDE_WHY} Here is your next one."
# a form sent with an error on a comparison set aside since: not shown again to correct
SET_ASIDE_UNSAVED = f"{_SET_ASIDE_WHY} Nothing was saved; here is your next one."


class _Withdrawn(Exception):
    """The rater's own assignment, on a prompt withdrawn or withheld since (the selector hides it)."""


def _own_assignment(request: HttpRequest, assignment_id: int) -> Assignment:
    """The rater's own assignment with the page's rows; 404 for anyone else's or an unknown id,
    _Withdrawn for their own on a prompt taken out since."""
    try:
        return assignment_for_page(rater=request.user, assignment_id=assignment_id)
    except Assignment.DoesNotExist:
        if Assignment.objects.filter(pk=assignment_id, rater=request.user).exists():
            raise _Withdrawn from None
        raise Http404("No such assignment.") from None


def _withdrawn_moves_on(view):
    """A page on a withdrawn prompt leads to the next comparison with a word (it was a bare 404)."""

    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except _Withdrawn:
            messages.info(request, "That comparison was withdrawn; here is your next one.")
            # said here: not again on the next page
            assignment_taken_back_said(rater=request.user, assignment_id=kwargs["assignment_id"])
            if request.htmx:
                return HttpResponseClientRedirect(reverse("rate_next"))
            return redirect("rate_next")

    return wrapped


@login_required
@require_http_methods(["GET", "POST"])
@_withdrawn_moves_on
def rate(request: HttpRequest, assignment_id: int) -> HttpResponse:
    if request.method == "POST":
        return _rate_submit(request, assignment_id)
    assignment = _own_assignment(request, assignment_id)
    if assignment.status != Assignment.Status.LEASED:
        messages.info(request, _no_longer_open(request.user, assignment))
        return redirect("rate_next")
    if guideline_needs_ack(rater=request.user) is not None:
        return redirect("guidelines")
    if not assignment_keep_or_take_back(assignment):
        # a reload of /rate/N/ showed it again, and its submit was stored
        messages.info(request, SET_ASIDE)
        assignment_taken_back_said(rater=request.user, assignment_id=assignment_id)
        return redirect("rate_next")
    assignment_renew_if_expired(assignment)
    context = _panel_context(assignment)
    context["guideline"] = guideline_current()
    return render(request, "labelapp/rate.html", context)


def _no_longer_open(rater, assignment: Assignment) -> str:
    """What a reload of a lease that is no longer open says (it said "finished" for a lease that ran
    out or was taken back, with nothing saved)."""
    if assignment_taken_back_said(rater=rater, assignment_id=assignment.pk):
        return TAKEN_BACK
    if assignment.status == Assignment.Status.EXPIRED:
        return "Your time on that comparison ran out; nothing of it was saved. Here is your next one."
    return "That comparison is finished; here is your next one."


def _rate_submit(request: HttpRequest, assignment_id: int) -> HttpResponse:
    # No lookup before the submit: the submit service checks that the assignment is this rater's
    # (Assignment.DoesNotExist -> 404), and the page's rows are only loaded again to show an error.
    form = RatingForm(request.POST)
    if form.is_valid():
        try:
            rating, created = rating_submit(
                rater=request.user,
                assignment_id=assignment_id,
                idempotency_key=form.cleaned_data["form_key"],
                data=form.to_input(),
            )
            feedback = gold_feedback(rating=rating) if created else None
            notice = None if created else ALREADY_SUBMITTED  # the same form sent again: nothing stored
            return _render_next(
                request,
                just_finished=created,
                feedback=feedback,
                notice=notice,
                # a re-sent form's rating carries the version of its time, maybe not the one in force
                guideline_version_id=rating.guideline_version_id if created else None,
            )
        except Assignment.DoesNotExist:
            raise Http404("No such assignment.") from None
        except AssignmentGone as exc:
            # Showing this comparison again with the error left the rater stuck: every submit gave the
            # same error and nothing on the panel led on.
            return _render_next(request, notice=str(exc))
        except RatingError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
    assignment = _own_assignment(request, assignment_id)
    try:
        rating_still_possible(assignment)
    except AssignmentGone as exc:  # an error shown on it would offer a finished comparison again
        assignment_taken_back_said(rater=request.user, assignment_id=assignment_id)
        return _render_next(request, notice=f"{exc} Nothing was saved; here is your next comparison.")
    if not assignment_texts_shown(assignment):  # the error panel showed its texts again (only a GET
        assignment_taken_back_said(rater=request.user, assignment_id=assignment_id)  # took it back)
        return _render_next(request, notice=SET_ASIDE_UNSAVED)
    return _render_form_error(request, assignment, form)


def _render_form_error(request: HttpRequest, assignment: Assignment, form: RatingForm) -> HttpResponse:
    context = _panel_context(assignment, form)
    if request.htmx:
        # 200 so htmx swaps the panel in; the errors are inside it, next to the fields.
        context["guideline_shown"] = request.POST.get("guideline_shown", "")[:12]
        return render(request, "labelapp/_rate_panel.html", context)
    # a whole new page opens at its top, the errors below the answers out of sight: the page looked
    # unchanged (templates/_rate_panel.html puts the focus, and the view, on a line that says why)
    context.update(guideline=guideline_current(), error_summary=True)
    return render(request, "labelapp/rate.html", context, status=400)


@login_required
@require_http_methods(["GET", "POST"])
@_withdrawn_moves_on
def rate_skip(request: HttpRequest, assignment_id: int) -> HttpResponse:
    if request.method == "GET":
        # where a login sends a skip whose session had ended (next=/rate/N/skip/): a blank 405 before
        return redirect("rate", assignment_id=assignment_id)
    form = SkipForm(request.POST)
    try:
        if not form.is_valid():
            raise QueueError(form.errors["reason"][0])
        assignment_skip(rater=request.user, assignment_id=assignment_id, reason=form.cleaned_data["reason"])
    except Assignment.DoesNotExist:
        raise Http404("No such assignment.") from None
    except QueueError as exc:
        # The reason check runs before any lookup, so the id may be someone else's or unknown: 404.
        assignment = _own_assignment(request, assignment_id)
        if assignment.status == Assignment.Status.LEASED and not assignment_texts_shown(assignment):
            assignment_taken_back_said(rater=request.user, assignment_id=assignment_id)
            messages.info(request, SET_ASIDE_UNSAVED)
            if request.htmx:
                return HttpResponseClientRedirect(reverse("rate_next"))
            return redirect("rate_next")
        if assignment.status == Assignment.Status.LEASED:
            # The typed reason is shown back under the error. htmx swaps only the skip form (the rating
            # form keeps what the rater chose); a plain browser gets the page again, the form open.
            skip = {"skip_error": str(exc), "skip_reason": request.POST.get("reason", "")}
            if request.htmx:
                return render(request, "labelapp/_skip_form.html", {"a": assignment, **skip})
            context = {**_panel_context(assignment), **skip, "guideline": guideline_current()}
            return render(request, "labelapp/rate.html", context, status=400)
        messages.error(request, str(exc))
        if request.htmx:  # a plain redirect would be followed inside the skip form's swap
            return HttpResponseClientRedirect(reverse("rate_next"))
        return redirect("rate_next")
    return _render_next(request, just_finished=True)
