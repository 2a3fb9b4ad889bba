"""Rater and staff pages. Views stay short: validate with a form, call one service, render.

The rating page works without JavaScript (plain POST + redirect); with htmx a submit or skip answers
with the next comparison's panel directly, so a judgment costs the rater one round trip.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import push_url

from labelapp.forms import RatingForm, SkipForm
from labelapp.models import Assignment, GuidelineVersion, Rating
from labelapp.selectors import assignment_for_page, queue_latest_snapshot, rater_progress, rating_view
from labelapp.services.assignment import QueueError, assignment_next, assignment_skip
from labelapp.services.guidelines import (
    GuidelineError,
    guideline_acknowledge,
    guideline_current,
    guideline_needs_ack,
)
from labelapp.services.queue import queue_figures
from labelapp.services.ratings import RatingError, rating_submit

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
    return {
        "form": form,
        "scale": scale,
        "dimensions": _dimensions(shown_left, form),
        "length_check_value": form["length_check"].value() or "",
    }


_FRESH_CONTROLS: dict[str, str] = {}


def _fresh_controls(shown_left: str) -> str:
    """The empty judging controls depend only on the shown order: render each variant once per process."""
    if shown_left not in _FRESH_CONTROLS:
        form = RatingForm(words_a=0, words_b=0)
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
        context["form_key"] = form["form_key"].value()
    context["form"] = form
    return context


def _render_next(request: HttpRequest, *, just_finished: bool = False) -> HttpResponse:
    """After a submit or skip: htmx gets the next panel in place, a plain browser a redirect."""
    if not request.htmx:
        return redirect("rate_next")
    assignment = assignment_next(rater=request.user, just_finished=just_finished)
    if assignment is None:
        response = render(request, "labelapp/_empty_panel.html", {})
        return push_url(response, reverse("rate_next"))
    response = render(request, "labelapp/_rate_panel.html", _panel_context(assignment))
    return push_url(response, reverse("rate", args=[assignment.pk]))


@login_required
def home(request: HttpRequest) -> HttpResponse:
    context = {
        "progress": rater_progress(rater=request.user),
        "needs_ack": guideline_needs_ack(rater=request.user),
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
            version = GuidelineVersion.objects.get(pk=int(request.POST.get("version", "")))
            guideline_acknowledge(rater=request.user, version=version)
        except (ValueError, GuidelineVersion.DoesNotExist, GuidelineError) as exc:
            messages.error(request, f"Could not record the acknowledgment: {exc or 'unknown version'}")
            return redirect("guidelines")
        if current is not None and version.pk != current.pk:
            messages.warning(request, f"Version {current.number} is now in force; please read it.")
            return redirect("guidelines")
        return redirect("rate_next")
    return render(
        request,
        "labelapp/guidelines.html",
        {"current": current, "needs_ack": guideline_needs_ack(rater=request.user)},
    )


@login_required
def rate_next(request: HttpRequest) -> HttpResponse:
    if guideline_current() is None:
        return render(request, "labelapp/empty.html", {"reason": "no_guidelines"})
    if guideline_needs_ack(rater=request.user) is not None:
        return redirect("guidelines")
    assignment = assignment_next(rater=request.user)
    if assignment is None:
        return render(request, "labelapp/empty.html", {"reason": "empty"})
    return redirect("rate", assignment_id=assignment.pk)


@login_required
@require_http_methods(["GET", "POST"])
def rate(request: HttpRequest, assignment_id: int) -> HttpResponse:
    try:
        assignment = assignment_for_page(rater=request.user, assignment_id=assignment_id)
    except Assignment.DoesNotExist:
        raise Http404("No such assignment.") from None

    if request.method == "GET":
        if assignment.status != Assignment.Status.LEASED:
            messages.info(request, "That comparison is finished; here is your next one.")
            return redirect("rate_next")
        if guideline_needs_ack(rater=request.user) is not None:
            return redirect("guidelines")
        context = _panel_context(assignment)
        context["guideline"] = guideline_current()
        return render(request, "labelapp/rate.html", context)

    view = rating_view(assignment=assignment)
    form = RatingForm(request.POST, words_a=view.words_a, words_b=view.words_b)
    if form.is_valid():
        try:
            _, created = rating_submit(
                rater=request.user,
                assignment_id=assignment.pk,
                idempotency_key=form.cleaned_data["form_key"],
                data=form.to_input(),
            )
            return _render_next(request, just_finished=created)
        except Assignment.DoesNotExist:
            raise Http404("No such assignment.") from None
        except RatingError as exc:
            form.add_error(None, str(exc))
    return _render_form_error(request, assignment, form)


def _render_form_error(request: HttpRequest, assignment: Assignment, form: RatingForm) -> HttpResponse:
    context = _panel_context(assignment, form)
    if request.htmx:
        # 200 so htmx swaps the panel in; the errors are inside it, next to the fields.
        return render(request, "labelapp/_rate_panel.html", context)
    context["guideline"] = guideline_current()
    return render(request, "labelapp/rate.html", context, status=400)


@login_required
@require_POST
def rate_skip(request: HttpRequest, assignment_id: int) -> HttpResponse:
    form = SkipForm(request.POST)
    try:
        if not form.is_valid():
            raise QueueError(form.errors["reason"][0])
        assignment_skip(rater=request.user, assignment_id=assignment_id, reason=form.cleaned_data["reason"])
    except Assignment.DoesNotExist:
        raise Http404("No such assignment.") from None
    except QueueError as exc:
        messages.error(request, str(exc))
        if request.htmx:
            # The reason check runs before any lookup, so the id may be someone else's or unknown: 404.
            try:
                assignment = assignment_for_page(rater=request.user, assignment_id=assignment_id)
            except Assignment.DoesNotExist:
                raise Http404("No such assignment.") from None
            if assignment.status == Assignment.Status.LEASED:
                context = _panel_context(assignment)
                context["skip_error"] = str(exc)
                return render(request, "labelapp/_rate_panel.html", context)
        return redirect("rate_next")
    return _render_next(request, just_finished=True)
