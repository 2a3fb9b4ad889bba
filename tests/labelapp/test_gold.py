"""Gold pairs and repeats in the stream: rate, never twice, indistinguishable, generator, feedback."""

import re

import pytest
from django.core.management import call_command
from django.urls import reverse

from labelapp.models import Assignment, Comparison, Rating, Response
from labelapp.services.assignment import assignment_next
from labelapp.services.gold import GoldError, gold_make_batch, gold_make_padded, gold_mark
from labelapp.services.ratings import RatingInput, rating_submit

pytestmark = pytest.mark.django_db


def _rate(rater, a, preference=0):
    return rating_submit(
        rater=rater,
        assignment_id=a.pk,
        idempotency_key=a.form_key,
        data=RatingInput(preference=preference, length_check="adds_content"),
    )[0]


@pytest.fixture
def no_repeats(settings):
    settings.LABEL = {**settings.LABEL, "REPEAT_RATE": 0.0}


def test_gold_is_mixed_in_at_the_configured_rate(settings, rater, acked, make_comparison, no_repeats):
    settings.LABEL = {**settings.LABEL, "GOLD_RATE": 0.25}
    for i in range(120):
        make_comparison(prompt_text=f"normal {i}")
    for i in range(60):
        c = make_comparison(prompt_text=f"gold {i}")
        gold_mark(comparison=c, preference=1, explanation="B is right")
    kinds = []
    for _ in range(120):
        a = assignment_next(rater=rater, just_finished=True)
        kinds.append(a.comparison.kind)
        _rate(rater, a)
    share = kinds.count("gold") / len(kinds)
    assert 0.12 < share < 0.40, share  # 25% +- 3 standard errors


def test_gold_off_serves_no_gold(settings, rater, acked, make_comparison, no_repeats):
    settings.LABEL = {**settings.LABEL, "GOLD_RATE": 0.0}
    gold_mark(comparison=make_comparison(prompt_text="g"), preference=1, explanation="x")
    make_comparison(prompt_text="n")
    a = assignment_next(rater=rater)
    assert a.comparison.kind == "normal"
    _rate(rater, a)
    assert assignment_next(rater=rater, just_finished=True) is None


def test_the_same_gold_pair_never_comes_twice_and_gold_ignores_required_ratings(
    settings, make_user, acked, make_comparison, no_repeats
):
    settings.LABEL = {**settings.LABEL, "GOLD_RATE": 1.0}
    g = make_comparison(prompt_text="gold", required_ratings=1)
    gold_mark(comparison=g, preference=-1, explanation="A is right")
    for i in range(3):
        make_comparison(prompt_text=f"n{i}", required_ratings=5)
    raters = [make_user(ack=True) for _ in range(3)]
    for r in raters:  # every rater gets the gold pair first (required_ratings 1 does not stop it)
        a = assignment_next(rater=r)
        assert a.comparison_id == g.pk
        _rate(r, a, preference=-1)
    r = raters[0]
    seen = []
    while (a := assignment_next(rater=r, just_finished=True)) is not None:
        seen.append(a.comparison_id)
        if a.comparison.kind == "gold":  # skipped or expired gold is never served again either
            Assignment.objects.filter(pk=a.pk).update(status="expired")
        else:
            _rate(r, a)
    assert g.pk not in seen and len(seen) == 3


def test_gold_alone_is_not_served_when_nothing_else_is_left(
    settings, rater, acked, make_comparison, no_repeats
):
    # GOLD_RATE 1.0: every claim draws a gold slot, so only the "ordinary work left?" check can
    # stop it (a rater reloading "Nothing to rate right now" would otherwise get each gold pair).
    settings.LABEL = {**settings.LABEL, "GOLD_RATE": 1.0}
    gold_mark(comparison=make_comparison(prompt_text="g"), preference=1, explanation="x")
    assert assignment_next(rater=rater) is None  # a stream of only gold would give gold away


def test_gold_is_not_served_once_the_rater_has_nothing_ordinary_left(
    settings, rater, other_rater, acked, make_comparison, no_repeats
):
    settings.LABEL = {**settings.LABEL, "GOLD_RATE": 1.0}
    g = gold_mark(comparison=make_comparison(prompt_text="g"), preference=1, explanation="x")
    mine = make_comparison(prompt_text="rated by me", required_ratings=3)
    full = make_comparison(prompt_text="full", required_ratings=1, priority=1)
    _rate(other_rater, assignment_next(rater=other_rater))  # the gold pair
    a = assignment_next(rater=other_rater, just_finished=True)
    assert a.comparison_id == full.pk
    _rate(other_rater, a)  # fills "full"
    a = assignment_next(rater=rater)
    assert a.comparison_id == g.pk  # ordinary work is left: gold comes first at GOLD_RATE 1.0
    _rate(rater, a)
    a = assignment_next(rater=rater, just_finished=True)
    assert a.comparison_id == mine.pk
    _rate(rater, a)
    gold_mark(comparison=make_comparison(prompt_text="g2"), preference=-1, explanation="y")
    # An unseen gold pair is left, but nothing ordinary is (rated, or full): no gold alone.
    assert assignment_next(rater=rater, just_finished=True) is None


@pytest.mark.parametrize("gold", [True, False])
def test_a_lease_that_ran_out_comes_back_on_reload_whether_gold_or_not(
    settings, rater, acked, make_comparison, no_repeats, gold
):
    # released and claimed again, an ordinary pair came straight back and a gold pair never did: a
    # rater who waited out the lease and reloaded could tell gold
    from datetime import timedelta

    from django.utils import timezone

    settings.LABEL = {**settings.LABEL, "GOLD_RATE": 1.0 if gold else 0.0}
    g = gold_mark(comparison=make_comparison(prompt_text="g"), preference=1, explanation="x")
    ordinary = [make_comparison(prompt_text=f"o{i}", required_ratings=3) for i in range(3)]
    a = assignment_next(rater=rater)
    assert a.comparison_id == (g.pk if gold else ordinary[0].pk)
    Assignment.objects.filter(pk=a.pk).update(lease_expires_at=timezone.now() - timedelta(minutes=1))
    again = assignment_next(rater=rater)
    assert again.pk == a.pk and again.lease_expires_at > timezone.now()


def test_a_gold_pair_whose_lease_was_released_can_come_again(
    settings, rater, acked, make_comparison, no_repeats
):
    # it was left out for good once issued in any state, so a gold pair left to expire was never scored
    from datetime import timedelta

    from django.utils import timezone

    from labelapp.services.assignment import leases_release_expired

    settings.LABEL = {**settings.LABEL, "GOLD_RATE": 1.0}
    g = gold_mark(comparison=make_comparison(prompt_text="g"), preference=1, explanation="x")
    make_comparison(prompt_text="o", required_ratings=3)
    a = assignment_next(rater=rater)
    assert a.comparison_id == g.pk
    Assignment.objects.filter(pk=a.pk).update(lease_expires_at=timezone.now() - timedelta(minutes=1))
    assert leases_release_expired() == 1
    assert assignment_next(rater=rater).comparison_id == g.pk


def _normalised(html: str) -> str:
    html = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", html)
    html = re.sub(r'"X-CSRFToken": "[^"]+"', "", html)
    html = re.sub(r"/rate/\d+/", "/rate/N/", html)
    html = re.sub(r'data-assignment="\d+"', "", html)
    html = re.sub(r'name="form_key" value="[^"]+"', "", html)
    return html


def test_raters_cannot_tell_gold_apart_in_the_page_or_the_api(
    settings, client, rater, acked, make_comparison, no_repeats
):
    settings.LABEL = {**settings.LABEL, "GOLD_RATE": 0.0}
    client.force_login(rater)
    pages, payloads = {}, {}
    for kind in ("normal", "gold"):
        c = make_comparison(prompt_text="Same prompt", a="Same answer A.", b="Same answer B, longer.")
        if kind == "gold":
            gold_mark(comparison=c, preference=-1, explanation="SECRET-EXPLANATION: A is concise")
        Comparison.objects.exclude(pk=c.pk).update(is_active=False)
        if kind == "gold":  # gold is only served while ordinary work is left
            make_comparison(prompt_text="Other prompt")
        settings.LABEL = {**settings.LABEL, "GOLD_RATE": 1.0 if kind == "gold" else 0.0}
        body = client.get("/api/assignments/next/").json()
        a = Assignment.objects.get(pk=body["id"])
        Assignment.objects.filter(pk=a.pk).update(shown_left="a")
        body = client.get(f"/api/assignments/{a.pk}/").json()
        pages[kind] = client.get(reverse("rate", args=[a.pk])).content.decode()
        payloads[kind] = {
            k: v
            for k, v in body.items()
            if k not in {"id", "comparison_id", "idempotency_key", "lease_expires_at"}
        }
        _rate(rater, a)
    assert _normalised(pages["gold"]) == _normalised(pages["normal"])
    assert payloads["gold"] == payloads["normal"]
    for text in (pages["gold"], str(payloads["gold"])):
        assert "SECRET-EXPLANATION" not in text and "gold" not in text.lower()


def test_make_gold_pads_an_answer_and_says_what_was_padded(make_comparison, capsys):
    make_comparison(
        prompt_text="How do I boil an egg?", a="Boil it for 9 minutes. Then cool it.", b="Microwave it."
    )
    call_command("make_gold", "--count", "2", "--seed", "3")
    gold = list(Comparison.objects.filter(kind="gold").select_related("response_a", "response_b"))
    assert len(gold) == 2
    for c in gold:
        padded, original = (
            (c.response_a, c.response_b) if c.gold_preference == 1 else (c.response_b, c.response_a)
        )
        assert padded.source_model.startswith("gold-generator:")
        assert original.text.strip() in padded.text and padded.word_count > original.word_count
        assert "padded with" in c.gold_explanation and c.gold_explanation
        # raters see "left" and "right": "Answer B is answer A padded ..." named sides nobody sees
        assert not re.search(r"\b[AB]\b", c.gold_explanation), c.gold_explanation
    assert "Made 2 gold pairs" in capsys.readouterr().out


def test_make_gold_pads_only_answers_to_prompts_that_may_be_compared(make_comparison, make_user, rf):
    # the batch took prompts without consent and the admin action also withheld ones, without the
    # gold_mark permission: dead gold rows that no claim serves
    from django.contrib import admin
    from django.contrib.messages.storage.fallback import FallbackStorage

    from labelapp.models import Prompt, Response
    from labelapp.services.gold import GoldError, gold_make_batch

    make_comparison(prompt_text="Private?", a="Yes, it is.", b="No.")
    Prompt.objects.update(consent=False)
    with pytest.raises(GoldError, match="no answers to pad"):
        gold_make_batch(count=2, seed=1)
    Prompt.objects.update(consent=True, withheld=True)
    model_admin = admin.site._registry[Response]
    staff = make_user(staff=True, roles=())
    from django.contrib.auth.models import Permission

    staff.user_permissions.add(*Permission.objects.filter(codename__in=["add_comparison", "view_response"]))
    staff = type(staff).objects.get(pk=staff.pk)

    def act(user) -> list[str]:
        request = rf.post("/")
        request.user, request.session = user, {}
        request._messages = FallbackStorage(request)
        model_admin.make_gold(request, Response.objects.all())
        return [str(m) for m in request._messages]

    root = make_user(staff=True)
    root.is_superuser = True
    root.save()
    assert any("withheld for personal data" in m for m in act(root))
    Prompt.objects.update(withheld=False)
    assert any("permission" in m.lower() for m in act(staff))  # may add comparisons, not mark gold
    assert not Comparison.objects.filter(kind="gold").exists()
    assert any("Made 2 gold pair(s)" in m for m in act(root))


def test_gold_padded_copies_never_enter_the_ordinary_stream(make_comparison):
    # a later POST /api/comparisons/ on the prompt paired the padded copies with each other and with
    # the answers: synthetic padding in front of raters as ordinary work, and in the training data
    from labelapp.services.comparisons import comparisons_create

    c = make_comparison(prompt_text="How do I boil an egg?", a="Boil it for 9 minutes.", b="Microwave it.")
    Response.objects.create(prompt=c.prompt, text="Steam it for 12 minutes.", source_model="team")
    call_command("make_gold", "--count", "2", "--seed", "3")
    assert Response.objects.filter(source_model__startswith="gold-generator:").count() == 2
    report = comparisons_create(prompt_ids=[c.prompt_id], seed=0)
    made = Comparison.objects.filter(pk__in=report.created).select_related("response_a", "response_b")
    assert len(made) == 2  # the new answer against each of the two originals, nothing else
    for m in made:
        assert not any(r.source_model.startswith("gold-generator") for r in (m.response_a, m.response_b))


@pytest.mark.parametrize(
    "kind, marker",
    [("filler", "I hope this helps"), ("restatement", "You asked"), ("repetition", "To repeat")],
)
def test_each_padding_kind(make_comparison, kind, marker):
    make_comparison(prompt_text="What is 2+2?", a="It is 4. Addition is simple.", b="5")
    made = gold_make_batch(count=1, seed=1, kind=kind)[0]
    c = made.comparison
    padded = c.response_a if c.gold_preference == 1 else c.response_b
    assert marker in padded.text and kind in padded.source_model


@pytest.mark.parametrize(
    "text, repeated",
    [
        # split at every ". ", "1. Preheat... 2. Bake" came back as "1. Preheat the oven to 200 C. 2."
        ("1. Preheat the oven to 200 C.\n2. Bake for 20 minutes.", None),
        # and a heading as a literal "# Answer" inside the repeated sentence
        ("# Answer\n\nUse a set. It keeps one of each.\n\n- a\n- b", "Use a set. It keeps one of each."),
        ("```py\nx = 1\n\ny = 2\n```\n\nThe value is 3.5 units. Then it stops.", "The value is 3.5 units."),
    ],
)
def test_repetition_padding_repeats_prose_and_pads_a_list_with_filler(make_comparison, text, repeated):
    make_comparison(prompt_text="How?", a=text, b="Other.")
    from labelapp.models import Response

    made = gold_make_padded(response=Response.objects.get(text=text), kind="repetition")
    c = made.comparison
    padded = c.response_a if c.gold_preference == 1 else c.response_b
    if repeated is None:
        assert made.padding == "filler" and padded.source_model == "gold-generator:filler"
        assert "To repeat" not in padded.text and "filler" in c.gold_explanation
    else:
        assert padded.text.count(repeated) == 3 and "To repeat the main point: " + repeated in padded.text
        assert "# Answer" not in padded.text.split("To repeat", 1)[1] and "2." not in padded.text


def test_make_gold_with_nothing_to_pad_is_a_clear_error(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no answers to pad"):
        call_command("make_gold", "--count", "1")


def test_gold_needs_a_preference_and_an_explanation(make_comparison):
    c = make_comparison()
    with pytest.raises(GoldError):
        gold_mark(comparison=c, preference=2, explanation="x")
    with pytest.raises(GoldError):
        gold_mark(comparison=c, preference=1, explanation="  ")


def test_staff_mark_gold_in_the_admin_action(client, staff, make_comparison):
    staff.is_superuser = True
    staff.save()
    c = make_comparison()
    client.force_login(staff)
    url = reverse("admin:labelapp_comparison_changelist")
    client.post(
        url,
        {
            "action": "mark_gold",
            "_selected_action": [c.pk],
            "apply": "1",
            "preference": "-1",
            "explanation": "A is right",
        },
    )
    c.refresh_from_db()
    assert (c.kind, c.gold_preference, c.gold_explanation) == ("gold", -1, "A is right")
    r = client.post(
        reverse("admin:labelapp_response_changelist"),
        {"action": "make_gold", "_selected_action": [c.response_a_id]},
    )
    assert r.status_code == 302 and Comparison.objects.filter(kind="gold").count() == 2
    assert Response.objects.filter(source_model__startswith="gold-generator").count() == 1


def test_gold_feedback_is_off_by_default_and_shown_when_on(
    settings, rater_client, rater, acked, make_comparison, no_repeats
):
    settings.LABEL = {**settings.LABEL, "GOLD_RATE": 1.0}
    for i in range(2):
        gold_mark(
            comparison=make_comparison(prompt_text=f"g{i}", a="4", b="Four"),
            preference=-1,
            explanation=f"EXPLAINED-{i}",
        )
        make_comparison(prompt_text=f"n{i}", a="4", b="Four")
    for on in (False, True):
        settings.LABEL = {**settings.LABEL, "GOLD_FEEDBACK": on}
        a = assignment_next(rater=rater)
        assert a.comparison.kind == "gold"
        r = rater_client.post(
            reverse("rate", args=[a.pk]),
            {"form_key": str(a.form_key), "preference": "1"},
            HTTP_HX_REQUEST="true",
        )
        html = r.content.decode()
        assert ("EXPLAINED" in html) is on and ('id="gold-feedback"' in html) is on
        if on:  # in the page's terms: A (expected) was on the left or on the right for this rater
            side = "left" if a.shown_left == "a" else "right"
            assert f"Expected: the {side} answer was better." in html
        # (the htmx answer already claimed the next pair: the second gold one, open for the next round)


def test_gold_feedback_without_javascript_shows_bidi_controls_as_markers(
    settings, rater_client, rater, acked, make_comparison, no_repeats
):
    # the htmx panel showed the explanation's right-to-left override as a marker, the message of a
    # page without JavaScript reordered the text after it
    settings.LABEL = {**settings.LABEL, "GOLD_RATE": 1.0, "GOLD_FEEDBACK": True}
    gold = make_comparison(prompt_text="g", a="4", b="Four")
    gold_mark(comparison=gold, preference=-1, explanation="a\u202eb")
    make_comparison(prompt_text="n", a="4", b="Four")
    a = assignment_next(rater=rater)
    r = rater_client.post(
        reverse("rate", args=[a.pk]), {"form_key": str(a.form_key), "preference": "1"}, follow=True
    )
    html = r.content.decode()
    assert "a\u27e6RLO U+202E\u27e7b" in html and "\u202e" not in html
    # and which side was expected, as the htmx panel says (the page said neither side nor tie)
    side = "left" if a.shown_left == "a" else "right"
    assert f"yours differed. Expected: the {side} answer was better." in html


# --- repeats -------------------------------------------------------------------------------------


def test_a_judged_pair_comes_back_later_with_sides_swapped(
    settings, rater, other_rater, acked, make_comparison
):
    settings.LABEL = {**settings.LABEL, "GOLD_RATE": 0.0, "REPEAT_RATE": 1.0, "REPEAT_DELAY_MINUTES": 0}
    original = make_comparison(prompt_text="orig", required_ratings=2)
    make_comparison(prompt_text="filler", required_ratings=2)
    first = assignment_next(rater=rater)
    assert first.comparison_id == original.pk
    _rate(rater, first, preference=-2)
    repeat = Comparison.objects.get(kind="repeat")
    assert (repeat.repeat_of_id, repeat.repeat_for_id) == (original.pk, rater.pk)
    assert (repeat.response_a_id, repeat.response_b_id) == (original.response_a_id, original.response_b_id)
    # The other rater never gets this rater's repeat.
    theirs = assignment_next(rater=other_rater)
    assert theirs.comparison.kind == "normal"
    again = assignment_next(rater=rater, just_finished=True)
    assert again.comparison_id == repeat.pk and again.shown_left != first.shown_left
    Assignment.objects.get(pk=again.pk)  # stored with the swapped side
    assert Assignment.objects.get(pk=again.pk).shown_left == again.shown_left
    _rate(rater, again, preference=-1)
    assert Comparison.objects.filter(kind="repeat").count() == 1  # repeats are not repeated
    assert Rating.objects.filter(rater=rater, comparison__repeat_of=original).count() == 1


def test_a_repeat_waits_for_its_delay(settings, rater, acked, make_comparison):
    settings.LABEL = {**settings.LABEL, "GOLD_RATE": 0.0, "REPEAT_RATE": 1.0, "REPEAT_DELAY_MINUTES": 60}
    make_comparison(prompt_text="orig")
    _rate(rater, assignment_next(rater=rater))
    assert Comparison.objects.filter(kind="repeat").count() == 1
    assert assignment_next(rater=rater, just_finished=True) is None  # not yet due
    Comparison.objects.filter(kind="repeat").update(available_at="2000-01-01T00:00:00Z")
    assert assignment_next(rater=rater, just_finished=True).comparison.kind == "repeat"


def test_repeats_off_schedules_none(settings, rater, acked, make_comparison):
    settings.LABEL = {**settings.LABEL, "REPEAT_RATE": 0.0}
    make_comparison()
    _rate(rater, assignment_next(rater=rater))
    assert not Comparison.objects.filter(kind="repeat").exists()


def test_only_staff_see_gold_answers(client, rater, acked, make_comparison):
    c = make_comparison()
    gold_mark(comparison=c, preference=1, explanation="SECRET-EXPLANATION")
    client.force_login(rater)
    for url in (
        reverse("admin:labelapp_comparison_change", args=[c.pk]),
        reverse("admin:labelapp_comparison_changelist"),
    ):
        r = client.get(url)
        assert r.status_code in (302, 403, 404) and b"SECRET-EXPLANATION" not in r.content
    assert b"SECRET-EXPLANATION" not in client.get("/api/ratings/").content


def test_a_late_submit_on_a_gold_pair_is_accepted(
    settings, rater, other_rater, acked, make_comparison, no_repeats
):
    settings.LABEL = {**settings.LABEL, "GOLD_RATE": 1.0}
    g = make_comparison(prompt_text="gold", required_ratings=1)
    gold_mark(comparison=g, preference=1, explanation="B")
    make_comparison(prompt_text="n", required_ratings=3)
    late = assignment_next(rater=rater)
    _rate(other_rater, assignment_next(rater=other_rater))  # gold is now "full" by required_ratings
    Assignment.objects.filter(pk=late.pk).update(status="expired")
    Comparison.objects.filter(pk=g.pk).update(claimed_count=1)  # as the releaser leaves it
    rating = _rate(rater, late)
    assert rating.comparison_id == g.pk


# --- gold in the admin -----------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, staff):
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    return client


def _edit(client, comparison, **changes):
    """Post the comparison's admin change form with its current values and `changes`."""
    data = {
        "kind": comparison.kind,
        "priority": str(comparison.priority),
        "required_ratings": str(comparison.required_ratings),
        "gold_preference": "" if comparison.gold_preference is None else str(comparison.gold_preference),
        "gold_explanation": comparison.gold_explanation,
        "external_id": comparison.external_id or "",
        **({"is_active": "on"} if comparison.is_active else {}),
        **changes,
    }
    return client.post(reverse("admin:labelapp_comparison_change", args=[comparison.pk]), data)


def _a_repeat(rater, make_comparison):
    from datetime import timedelta

    from labelapp.services.repeats import repeat_schedule

    original = make_comparison(prompt_text="orig", required_ratings=3)
    assert repeat_schedule(rater=rater, comparison_id=original.pk, shown_left="a", delay=timedelta(0))
    return Comparison.objects.get(kind="repeat")


@pytest.mark.parametrize("kind", ["gold", "normal"])
def test_a_repeat_keeps_its_kind_in_the_admin(admin_client, rater, acked, make_comparison, kind):
    # The form once stored kind=gold before the gold rule ran, so the rule saw "gold", not "repeat":
    # one rater's re-test became a pair served to every rater (as "normal" it joined the normal queue).
    repeat = _a_repeat(rater, make_comparison)
    r = _edit(admin_client, repeat, kind=kind, gold_preference="1", gold_explanation="B is right")
    assert r.status_code == 200 and b"repeat" in r.content and b"errorlist" in r.content
    repeat.refresh_from_db()
    assert (repeat.kind, repeat.gold_preference, repeat.gold_explanation) == ("repeat", None, "")


def test_nothing_is_made_a_repeat_by_hand_in_the_admin(admin_client, make_comparison):
    c = make_comparison()
    r = _edit(admin_client, c, kind="repeat")
    assert r.status_code == 200 and b"errorlist" in r.content
    c.refresh_from_db()
    assert c.kind == "normal"


def test_editing_a_comparison_gold_and_back_in_the_admin(admin_client, make_comparison):
    c = make_comparison()
    c.is_active = False
    c.save()
    r = _edit(admin_client, c, kind="gold", gold_preference="", gold_explanation="")
    assert r.status_code == 200 and b"Give the expected preference" in r.content
    assert _edit(admin_client, c, kind="gold", gold_preference="1", gold_explanation=" B ").status_code == 302
    c.refresh_from_db()
    assert (c.kind, c.gold_preference, c.gold_explanation, c.is_active) == ("gold", 1, "B", True)
    assert _edit(admin_client, c, kind="normal").status_code == 302  # through gold_unmark
    c.refresh_from_db()
    assert (c.kind, c.gold_preference, c.gold_explanation) == ("normal", None, "")


def test_the_mark_gold_action_says_what_it_marked_and_what_it_refused(
    admin_client, rater, acked, make_comparison
):
    repeat = _a_repeat(rater, make_comparison)
    normal = make_comparison(prompt_text="n")

    def mark(*comparisons):
        r = admin_client.post(
            reverse("admin:labelapp_comparison_changelist"),
            {"action": "mark_gold", "_selected_action": [c.pk for c in comparisons], "apply": "1",
             "preference": "1", "explanation": "B is right"},
            follow=True,
        )  # fmt: skip
        return [str(m) for m in r.context["messages"]]

    said = mark(repeat)
    assert not any(m.startswith("Marked") for m in said), said  # it once said "Marked as gold."
    assert any(m.startswith("Refused 1") and f"#{repeat.pk}" in m and "repeat" in m for m in said), said
    said = mark(repeat, normal)
    assert any("Marked 1 comparison" in m for m in said), said
    assert any("Refused 1" in m and f"#{repeat.pk}" in m for m in said), said
    assert Comparison.objects.get(pk=repeat.pk).kind == "repeat"
    assert Comparison.objects.get(pk=normal.pk).kind == "gold"


def test_unmarking_gold_clears_its_answer(make_comparison):
    from labelapp.services.gold import gold_unmark

    c = gold_mark(comparison=make_comparison(), preference=1, explanation="B is right")
    gold_unmark(comparison=c)
    c.refresh_from_db()
    assert (c.kind, c.gold_preference, c.gold_explanation) == ("normal", None, "")


def test_make_gold_run_twice_pads_each_answer_once(make_comparison, capsys):
    # the second run padded the same answers again: gold pairs of the same two texts under new ids,
    # which the queue served to a rater who had judged the first (it goes by id)
    from labelapp.models import Response
    from labelapp.services.gold import gold_make_padded

    for i in range(3):
        make_comparison(prompt_text=f"Question {i}?", a=f"Short answer {i}.", b=f"Another answer {i}.")
    call_command("make_gold", "--count", "4", "--seed", "7", "--kind", "filler")
    call_command("make_gold", "--count", "4", "--seed", "7", "--kind", "filler")
    out = capsys.readouterr().out
    assert "Made 2 gold pairs, not 4" in out and "padded for a gold pair already" in out
    gold = Comparison.objects.filter(kind="gold").select_related("response_a", "response_b")
    originals = [c.response_a_id if c.gold_preference == -1 else c.response_b_id for c in gold]
    assert len(originals) == 6 and len(set(originals)) == 6
    texts = [frozenset((c.response_a.text, c.response_b.text)) for c in gold]
    assert len(set(texts)) == 6
    with pytest.raises(GoldError, match="already has a padded gold pair"):
        gold_make_padded(response=Response.objects.get(pk=originals[0]))
    with pytest.raises(GoldError, match="no answers to pad.*padded gold pair already"):
        gold_make_batch(count=1, seed=1)


def test_a_generated_gold_pair_cannot_be_made_ordinary_work(make_comparison, admin_client):
    # unmarked, the pair with its synthetic padded answer was served as ordinary work and trained
    from labelapp.services.gold import gold_unmark

    make_comparison(prompt_text="Question?", a="Short answer.", b="Another answer.")
    made = gold_make_batch(count=1, seed=1, kind="filler")[0].comparison
    with pytest.raises(GoldError, match="stays gold"):
        gold_unmark(comparison=made)
    r = _edit(admin_client, made, kind="normal")
    assert r.status_code == 200 and b"stays gold" in r.content
    made.refresh_from_db()
    assert made.kind == "gold"
    # nor a new ordinary pair typed in the admin with the padding as one of its answers
    padded = made.response_a if made.gold_preference == 1 else made.response_b
    other = made.response_b if made.gold_preference == 1 else made.response_a
    before = Comparison.objects.count()
    r = admin_client.post(
        reverse("admin:labelapp_comparison_add"),
        {"prompt": made.prompt_id, "response_a": other.pk, "response_b": padded.pk, "kind": "normal",
         "priority": "0", "required_ratings": "1", "is_active": "on", "gold_explanation": "",
         "external_id": ""},
    )  # fmt: skip
    assert r.status_code == 200 and b"stays gold" in r.content and Comparison.objects.count() == before


def test_a_lease_the_housekeeping_released_comes_back_on_reload_whether_gold_or_not(
    settings, rater, other_rater, acked, make_comparison, no_repeats
):
    # released, the next claim drew gold only at GOLD_RATE: an ordinary pair came straight back (the
    # top of the queue) and a gold pair almost never did, so a rater who waited out the lease and the
    # housekeeping could tell which had been gold
    from datetime import timedelta

    from django.utils import timezone

    from labelapp.services.assignment import leases_release_expired

    settings.LABEL = {**settings.LABEL, "GOLD_RATE": 1.0}
    g = gold_mark(comparison=make_comparison(prompt_text="g"), preference=1, explanation="x")
    ordinary = make_comparison(prompt_text="o", required_ratings=1, priority=5)
    make_comparison(prompt_text="o2", required_ratings=3)
    a = assignment_next(rater=rater)
    assert a.comparison_id == g.pk
    settings.LABEL = {**settings.LABEL, "GOLD_RATE": 0.0}  # this claim draws no gold
    Assignment.objects.filter(pk=a.pk).update(lease_expires_at=timezone.now() - timedelta(minutes=1))
    assert leases_release_expired() == 1
    again = assignment_next(rater=rater)
    assert again.comparison_id == g.pk and again.pk != a.pk
    _rate(rater, again)
    b = assignment_next(rater=rater, just_finished=True)
    assert b.comparison_id == ordinary.pk
    Assignment.objects.filter(pk=b.pk).update(lease_expires_at=timezone.now() - timedelta(minutes=1))
    assert leases_release_expired() == 1
    _rate(other_rater, assignment_next(rater=other_rater))  # takes the freed slot: "o" is full now
    assert assignment_next(rater=rater).comparison.prompt.text == "o2"


@pytest.mark.django_db(transaction=True)
def test_the_migration_rewrites_stored_generated_explanations_without_sides(make_comparison):
    # stored gold pairs kept "Answer B is answer A padded ...", which contradicted the feedback's side
    old = (
        "Answer B is answer A padded with filler sentences: it says nothing more, so the concise answer A "
        "is better."
    )
    generated = gold_mark(comparison=make_comparison(prompt_text="g1"), preference=-1, explanation="x")
    own = gold_mark(comparison=make_comparison(prompt_text="g2"), preference=1, explanation="x")
    Comparison.objects.filter(pk=generated.pk).update(gold_explanation=old)
    Comparison.objects.filter(pk=own.pk).update(gold_explanation="Answer B cites the source.")  # staff's
    call_command("migrate", "labelapp", "0019", verbosity=0)
    call_command("migrate", "labelapp", verbosity=0)
    assert Comparison.objects.get(pk=generated.pk).gold_explanation == (
        "The longer answer is the other one padded with filler sentences: it says nothing more, so the "
        "concise answer is better."
    )
    assert Comparison.objects.get(pk=own.pk).gold_explanation == "Answer B cites the source."


def test_a_released_gold_pair_does_not_come_back_when_no_ordinary_work_is_left(
    settings, client, rater, acked, make_comparison, no_repeats
):
    # the home page said "nothing is left to rate" (it counts no gold) and /rate/ then served the
    # released gold pair: only gold comes back to an empty queue, so the rater could tell
    from datetime import timedelta

    from django.utils import timezone

    from labelapp.services.assignment import leases_release_expired

    settings.LABEL = {**settings.LABEL, "GOLD_RATE": 1.0}
    g = gold_mark(comparison=make_comparison(prompt_text="g"), preference=1, explanation="x")
    ordinary = make_comparison(prompt_text="o", required_ratings=1)
    a = assignment_next(rater=rater)
    assert a.comparison_id == g.pk
    Assignment.objects.filter(pk=a.pk).update(lease_expires_at=timezone.now() - timedelta(minutes=1))
    assert leases_release_expired() == 1
    Comparison.objects.filter(pk=ordinary.pk).update(is_active=False)  # the ordinary work was done
    client.force_login(rater)
    assert 'id="nothing-left"' in client.get("/").content.decode()
    assert assignment_next(rater=rater) is None


def test_no_pair_on_a_prompt_without_consent_is_made_active_by_gold_or_a_repeat(
    staff, rater, make_comparison
):
    """Marking gold set the pair active whatever its prompt (a withdrawal had deactivated it: now an
    active pair on a withdrawn prompt), and a repeat was inserted active on a withdrawn prompt."""
    from labelapp.services.consent import prompt_consent_set
    from labelapp.services.repeats import repeat_schedule

    comparison = make_comparison(required_ratings=3)
    prompt_consent_set(prompt=comparison.prompt, consent=False, reason="withdrawn", by=staff)
    comparison.refresh_from_db()
    assert not comparison.is_active
    gold_mark(comparison=comparison, preference=1, explanation="B is right")
    assert Comparison.objects.values_list("kind", "is_active").get(pk=comparison.pk) == ("gold", False)
    other = make_comparison(required_ratings=3)
    prompt_consent_set(prompt=other.prompt, consent=False, reason="withdrawn", by=staff)
    assert not repeat_schedule(rater=rater, comparison_id=other.pk, shown_left="a")
    assert not Comparison.objects.filter(kind=Comparison.Kind.REPEAT).exists()
    prompt_consent_set(prompt=comparison.prompt, consent=True, reason="given again", by=staff)
    assert Comparison.objects.get(pk=comparison.pk).is_active  # the restore brings the gold pair back


@pytest.mark.django_db(transaction=True)
def test_marking_gold_in_the_admin_while_its_prompt_is_withdrawn_does_not_deadlock(staff, make_comparison):
    """The admin saved the pair (locking it), then gold_mark locked its prompt; a consent withdrawal
    locks the prompt, then its pairs: PostgreSQL broke the deadlock by failing one of them."""
    import threading
    import time

    from django.db import connection, transaction
    from django.test import Client

    from labelapp.models import Prompt

    staff.is_superuser = True
    staff.save()
    comparison = make_comparison(required_ratings=3)
    locked, failed = threading.Event(), []

    def withdraw():  # the order of services/consent.py: the prompt, then its comparisons
        try:
            with transaction.atomic():
                Prompt.objects.select_for_update().get(pk=comparison.prompt_id)
                Prompt.objects.filter(pk=comparison.prompt_id).update(consent=False)
                locked.set()
                time.sleep(1.5)  # the admin's save arrives meanwhile
                Comparison.objects.filter(pk=comparison.pk).update(is_active=False)
        except Exception as exc:  # noqa: BLE001 (the test reports it)
            failed.append(exc)
        finally:
            connection.close()

    withdrawal = threading.Thread(target=withdraw)
    withdrawal.start()
    assert locked.wait(10)
    admin = Client(raise_request_exception=False)
    admin.force_login(staff)
    r = _edit(admin, comparison, kind="gold", gold_preference="1", gold_explanation="B is right")
    withdrawal.join()
    assert failed == [] and r.status_code == 302
    # gold, and not switched back on by the form opened before the withdrawal
    assert Comparison.objects.values_list("kind", "is_active").get(pk=comparison.pk) == ("gold", False)
