"""The staff review list: flagged (personal data, unsafe, broken) and both-bad ratings.

Staff confirm or exclude each with a reason (services/review.py); the row is swapped in place (htmx).
"""

from __future__ import annotations

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_POST

from labelapp.access import staff_required
from labelapp.selectors_review import review_queue
from labelapp.services.review import ReviewError, rating_review_add
from labelapp.services.roles import NotPermitted

STATES = ("open", "done", "all")
FLAGS = ("", "pii", "unsafe", "broken", "both_bad")


def _list_filters(query) -> tuple[str, str]:
    """The list's (state, flag) from a query string; unknown values fall back to the defaults."""
    state, flag = query.get("state", "open"), query.get("flag", "")
    return (state if state in STATES else "open"), (flag if flag in FLAGS else "")


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _list_url(query) -> str:
    """The list as the reviewer left it (state, flag, page): the rows' forms carry its query string."""
    state, flag = _list_filters(query)
    params = {"state": state, "flag": flag, "page": query.get("page", "")}
    params = {k: v for k, v in params.items() if v and v != "open" and (k != "page" or _is_number(v))}
    return reverse("staff_review") + (f"?{urlencode(params)}" if params else "")


@staff_required
def staff_review(request: HttpRequest) -> HttpResponse:
    state, flag = _list_filters(request.GET)
    page = Paginator(review_queue(state=state, flag=flag), 25).get_page(request.GET.get("page"))
    return render(
        request,
        "labelapp/staff/review.html",
        {"page": page, "state": state, "flag": flag, "states": STATES, "flags": FLAGS},
    )


@staff_required
@require_POST
def staff_review_decide(request: HttpRequest, rating_id: int) -> HttpResponse:
    rating = review_queue(state="all").filter(pk=rating_id).first()
    if rating is None:
        raise Http404("No such flagged rating.")
    error = None
    try:
        review = rating_review_add(
            rating=rating,
            decision=request.POST.get("decision", ""),
            reason=request.POST.get("reason", ""),
            reviewer=request.user,
        )
        rating = review_queue(state="all").get(pk=rating_id)
        status = 200
    except ReviewError as exc:
        error, status = str(exc), 400
    except NotPermitted as exc:  # the row comes back with the reason typed, not a bare 403 page
        error, status = str(exc), 403
    context = {"r": rating, "error": error, "reason": request.POST.get("reason", "") if error else ""}
    if not request.htmx:  # a plain form post got the bare table row as its whole page
        if error is None:
            messages.success(request, f"Rating {rating.pk}: {review.get_decision_display()}, recorded.")
            return redirect(_list_url(request.GET))
        return render(request, "labelapp/staff/review_one.html", context, status=status)
    # htmx swaps only 2xx answers: the row with its error comes back as 200 there.
    return render(request, "labelapp/staff/_review_row.html", context)
