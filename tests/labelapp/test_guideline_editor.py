"""Living guidelines: staff editor, drafts, publish with a change message, history, diffs, permissions."""

import re

import pytest
from django.urls import reverse

from labelapp.models import GuidelineVersion, PublishedGuidelineImmutable
from labelapp.services.guidelines import (
    GuidelineError,
    guideline_current,
    guideline_draft_save,
    guideline_publish_text,
)

pytestmark = pytest.mark.django_db


def _post_editor(client, data: dict):
    """Post the editor's form as a browser does: with the `based_on` of the page it was opened from."""
    page = client.get(reverse("staff_guideline_edit")).content.decode()
    return client.post(reverse("staff_guideline_edit"), {**data, "based_on": _based_on(page)})


EVIL = '<script>window.pwned=1</script> <img src=x onerror="window.pwned=2"> [go](javascript:window.pwned=3)'


@pytest.mark.parametrize(
    "method, name, data",
    [
        ("get", "staff_guidelines", None),
        ("get", "staff_guideline_edit", None),
        ("post", "staff_guideline_edit", {"text": "x", "changelog": "y", "action": "publish"}),
        ("post", "staff_guideline_preview", {"text": "x"}),
        ("get", "staff_guideline_diff", None),
    ],
)
def test_raters_cannot_edit_or_publish(client, rater, acked, method, name, data):
    client.force_login(rater)
    r = getattr(client, method)(reverse(name), data or {})
    assert r.status_code == 403
    assert GuidelineVersion.objects.count() == 1


def test_the_editor_starts_from_the_current_text(client, staff, acked):
    client.force_login(staff)
    html = client.get(reverse("staff_guideline_edit")).content.decode()
    assert "Prefer the concise answer when content is equal." in html


def test_a_draft_is_invisible_to_raters_until_published(client, staff, rater, acked):
    client.force_login(staff)
    r = _post_editor(client, {"text": "DRAFT TEXT", "action": "draft"})
    assert r.status_code == 302
    draft = GuidelineVersion.objects.get(published_at__isnull=True)
    assert guideline_current() == acked
    # Saving again updates the same draft; the editor continues from it.
    _post_editor(client, {"text": "DRAFT TEXT 2", "action": "draft"})
    assert GuidelineVersion.objects.get(published_at__isnull=True).pk == draft.pk
    assert "DRAFT TEXT 2" in client.get(reverse("staff_guideline_edit")).content.decode()
    client.force_login(rater)
    assert "DRAFT TEXT" not in client.get(reverse("guidelines")).content.decode()


def test_publish_needs_a_change_message_and_makes_a_new_version(client, staff, acked):
    client.force_login(staff)
    r = client.post(
        reverse("staff_guideline_edit"), {"text": "v2 text", "changelog": "", "action": "publish"}
    )
    assert r.status_code == 400 and b"Say what changed" in r.content and b"v2 text" in r.content
    assert guideline_current() == acked
    r = _post_editor(client, {"text": "v2 text", "changelog": "shorter rules", "action": "publish"})
    assert r.status_code == 302
    current = guideline_current()
    assert (current.number, current.text, current.changelog, current.author) == (
        2,
        "v2 text",
        "shorter rules",
        staff,
    )
    acked.refresh_from_db()
    assert acked.text.startswith("# Guidelines")  # the old version is untouched history
    history = client.get(reverse("staff_guidelines")).content.decode()
    assert "shorter rules" in history and 'id="guideline-history"' in history


def test_a_published_version_cannot_be_edited(staff, acked):
    acked.text = "rewritten"
    with pytest.raises(PublishedGuidelineImmutable):
        acked.save()
    stored = GuidelineVersion.objects.get(pk=acked.pk)
    assert stored.text.startswith("# Guidelines")
    with pytest.raises(GuidelineError, match="Nothing changed"):
        guideline_publish_text(text=stored.text, changelog="no change", author=staff)
    # the title is stored stripped: a space before it was a change, and every rater acknowledged again
    with pytest.raises(GuidelineError, match="Nothing changed"):
        guideline_publish_text(
            text=stored.text, title=f" {stored.title} ", changelog="no change", author=staff
        )
    assert GuidelineVersion.objects.count() == 1


def test_publishing_the_unchanged_text_from_a_browser_is_refused(client, staff, acked):
    """A browser sends a textarea's line breaks as CRLF: the text in force, sent back untouched, was
    not equal to the stored (LF) text, so "Publish" made a new version every rater had to acknowledge."""
    client.force_login(staff)
    as_sent = acked.text.replace("\n", "\r\n")
    r = client.post(
        reverse("staff_guideline_edit"),
        {"title": acked.title, "text": as_sent, "changelog": "no change", "action": "publish"},
    )
    assert r.status_code == 400 and b"Nothing changed since version 1" in r.content
    assert guideline_current() == acked
    _post_editor(client, {"text": as_sent + "\r\nMore.\r", "action": "draft"})
    draft = GuidelineVersion.objects.get(published_at__isnull=True)
    assert draft.text == acked.text + "\nMore.\n"  # stored with LF line breaks, like every other path


def test_a_publish_raters_could_not_see_is_refused_and_a_title_change_shows_in_the_diff(staff, acked):
    # spaces at a line's end published a new version every rater acknowledged for a page that looked
    # the same; a title-only change showed raters a diff that said "No differences."
    from labelapp.services.guidelines import GuidelineError, guideline_diff_html

    spaced = acked.text.replace("\n", " \n", 1) + "\n\n"
    with pytest.raises(GuidelineError, match="only in ways the page does not show"):
        guideline_publish_text(text=spaced, title=acked.title, changelog="spaces", author=staff)
    v2 = guideline_publish_text(
        text=acked.text + "\n\nFirst line\nsecond line.", title=acked.title, changelog="more", author=staff
    )
    broken = v2.text.replace("First line\n", "First line  \n")  # two spaces: a line break that shows
    v2 = guideline_publish_text(text=broken, title=acked.title, changelog="a break", author=staff)
    v3 = guideline_publish_text(text=broken, title="Renamed rules", changelog="title", author=staff)
    diff = guideline_diff_html(old=v2, new=v3)
    shown = re.sub(r"<[^>]+>", "", diff)  # the changed characters are marked inside a line
    assert "No differences" not in shown and "Title: Renamed rules" in shown
    assert "Title:" not in guideline_diff_html(old=acked, new=v2)


def test_the_admin_cannot_edit_a_published_version(client, staff, acked):
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    html = client.get(reverse("admin:labelapp_guidelineversion_change", args=[acked.pk])).content.decode()
    assert 'name="text"' not in html


def test_the_diff_between_any_two_versions_is_side_by_side_and_escaped(client, staff, acked):
    guideline_draft_save(text="# Guidelines\n\nPrefer the SHORT answer.\n\n" + EVIL, author=staff)
    guideline_publish_text(
        text="# Guidelines\n\nPrefer the SHORT answer.\n\n" + EVIL, changelog="c", author=staff
    )
    client.force_login(staff)
    html = client.get(reverse("staff_guideline_diff"), {"a": 1, "b": 2}).content.decode()
    assert 'class="diff"' in html and "Version 1" in html and "Version 2" in html
    assert "SHORT" in html and "<script>window.pwned" not in html and "&lt;script&gt;" in html
    r = client.get(reverse("staff_guideline_diff"), {"a": "x<b>", "b": 99})
    # a bad or unknown version is said, not silently replaced by the latest two
    assert (
        r.status_code == 200
        and "No guideline version &#x27;x&lt;b&gt;&#x27;, &#x27;99&#x27;" in r.content.decode()
    )
    assert "No guideline version" not in client.get(reverse("staff_guideline_diff")).content.decode()
    # only the version that does not exist is named (v1 exists: naming it said it did not)
    one_bad = client.get(reverse("staff_guideline_diff"), {"a": 1, "b": 99}).content.decode()
    assert "No guideline version &#x27;99&#x27;;" in one_bad


def test_the_preview_is_the_sanitized_server_render(client, staff, acked):
    client.force_login(staff)
    r = client.post(reverse("staff_guideline_preview"), {"text": "**bold** " + EVIL}, HTTP_HX_REQUEST="true")
    html = r.content.decode()
    assert "<strong>bold</strong>" in html
    assert "<script" not in html and "<img" not in html  # the img (and its onerror) shown as text only
    assert "<img" not in html and 'href="javascript' not in html
    assert "javascript:window.pwned=3" in html  # shown as inert text


@pytest.mark.parametrize(
    "field, action",
    [
        ("text", "draft"),
        ("text", "publish"),
        ("title", "draft"),
        ("title", "publish"),
        ("changelog", "publish"),  # a draft does not store the change message
    ],
)
def test_a_nul_character_is_a_form_error_and_keeps_the_text(client, staff, acked, field, action):
    # PostgreSQL refuses NUL in text columns: the save was a 500 and the staff member's text was lost.
    client.force_login(staff)
    data = {"text": "New rules TYPED-TEXT", "title": "T", "changelog": "c", "action": action}
    data[field] += "\x00"
    r = _post_editor(client, data)
    assert r.status_code == 400
    assert b"NUL" in r.content and b"TYPED-TEXT" in r.content
    assert GuidelineVersion.objects.count() == 1


def test_the_service_refuses_nul_characters(staff, acked):
    with pytest.raises(GuidelineError, match="NUL"):
        guideline_draft_save(text="a\x00b", author=staff)
    with pytest.raises(GuidelineError, match="NUL"):
        guideline_publish_text(text="new", changelog="c\x00", author=staff)
    assert GuidelineVersion.objects.count() == 1


def test_an_over_long_change_message_is_refused_not_cut(staff):
    from labelapp.services.guidelines import CHANGELOG_MAX, GuidelineError, guideline_publish_text

    with pytest.raises(GuidelineError, match=f"{CHANGELOG_MAX} characters"):
        guideline_publish_text(text="# G\n\nNew rule.", changelog="y" * (CHANGELOG_MAX + 1), author=staff)


def test_an_over_long_title_is_refused_not_cut(client, staff):

    from labelapp.services.guidelines import TITLE_MAX, GuidelineError, guideline_draft_save

    with pytest.raises(GuidelineError, match=f"{TITLE_MAX} characters"):
        guideline_draft_save(text="# G\n\nNew rule.", title="t" * (TITLE_MAX + 1), author=staff)
    client.force_login(staff)  # a client that ignores the field's maxlength
    data = {"text": "# G\n\nKeep this.", "title": "t" * 300, "changelog": "c", "action": "draft"}
    r = _post_editor(client, data)
    assert r.status_code == 400 and b"Keep the title to 200 characters (it has 300)." in r.content
    assert not GuidelineVersion.objects.filter(title__startswith="ttt").exists()


def test_a_cleared_title_is_an_error_that_keeps_the_text(client, staff):

    client.force_login(staff)
    data = {"text": "# G\n\nKeep this.", "title": "  ", "changelog": "c", "action": "draft"}
    r = _post_editor(client, data)
    assert r.status_code == 400 and b"Give the guidelines a title." in r.content
    assert b"Keep this." in r.content
    from labelapp.models import GuidelineVersion

    assert not GuidelineVersion.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_saves_at_the_same_time_keep_one_draft(make_user, guideline):
    # With no draft stored, each of 8 concurrent saves created one (4 drafts in a live run): the lock
    # was on the draft row, and there was none yet.
    import threading

    from django.db import connections

    editors = [make_user(staff=True) for _ in range(8)]
    barrier, errors = threading.Barrier(len(editors)), []

    def save(user, n):
        try:
            barrier.wait()
            guideline_draft_save(text=f"Draft text {n}", author=user)
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(repr(exc))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=save, args=(u, n)) for n, u in enumerate(editors)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert GuidelineVersion.objects.filter(published_at__isnull=True).count() == 1


def test_a_guideline_of_invisible_characters_only_is_refused(staff):
    from labelapp.services.guidelines import GuidelineError, guideline_draft_save

    with pytest.raises(GuidelineError, match="empty"):
        guideline_draft_save(text="\u200b\ufeff\n", author=staff)


@pytest.mark.django_db(transaction=True)
def test_a_draft_saved_while_another_editor_publishes_is_not_what_gets_published(
    make_user, guideline, monkeypatch
):
    # The editor's Publish saved the draft and published it in two transactions: a colleague's draft
    # save landing between them was published under the publisher's change message.
    import threading
    import time

    from django.db import connections

    from labelapp.services import guidelines
    from labelapp.services.guidelines import guideline_publish_text

    publisher, colleague = make_user(staff=True), make_user(staff=True)
    real_publish = guidelines.guideline_publish

    def slow_publish(**kwargs):
        time.sleep(0.4)  # the gap between the draft save and the publish, widened
        return real_publish(**kwargs)

    monkeypatch.setattr(guidelines, "guideline_publish", slow_publish)
    errors = []

    def run(fn):
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(repr(exc))
        finally:
            connections.close_all()

    publishing = threading.Thread(
        target=run,
        args=(lambda: guideline_publish_text(text="Publisher's text", changelog="mine", author=publisher),),
    )
    saving = threading.Thread(
        target=run, args=(lambda: guideline_draft_save(text="Colleague's draft", author=colleague),)
    )
    publishing.start()
    time.sleep(0.15)
    saving.start()
    publishing.join()
    saving.join()
    assert errors == []
    published = GuidelineVersion.objects.get(changelog="mine")
    assert published.text == "Publisher's text" and published.published_at is not None
    assert GuidelineVersion.objects.get(published_at__isnull=True).text == "Colleague's draft"


@pytest.mark.parametrize("action", ["draft", "publish"])
def test_guidelines_longer_than_the_limit_are_refused_and_the_text_kept(client, staff, acked, action):
    """No bound: a pasted 200,000-character text made every rater's guideline page and acknowledgment
    diff slow (and the editor rendered all of it on each error)."""

    from labelapp.services.guidelines import TEXT_MAX, GuidelineError, guideline_create

    with pytest.raises(GuidelineError, match="50,000 characters"):
        guideline_create(text="x" * (TEXT_MAX + 1), publish=True)
    client.force_login(staff)
    text = "# G\n\n" + "word " * 12_000
    data = {"text": text, "title": "G", "changelog": "long", "action": action}
    r = _post_editor(client, data)
    assert (
        r.status_code == 400 and b"Keep the guidelines to 50,000 characters (they have 60,005)" in r.content
    )
    assert text.encode() in r.content  # kept in the editor
    assert GuidelineVersion.objects.count() == 1


def test_text_that_saves_as_a_draft_publishes_from_a_browser(client, staff, acked):
    # the length was checked before CRLF became LF on Publish only: each line break counted twice, so
    # a text that saved as a draft was "over 50,000 characters" when published
    client.force_login(staff)
    text = "\r\n".join(["x" * 24] * 2000)  # 51,998 characters as sent, 49,999 as stored
    assert _post_editor(client, {"text": text, "title": "T", "action": "draft"}).status_code == 302
    r = _post_editor(client, {"text": text, "title": "T", "changelog": "c", "action": "publish"})
    assert r.status_code == 302, r.content.decode()[:500]
    assert len(guideline_current().text) == 49_999


@pytest.mark.parametrize(
    "field, value", [("number", 77), ("changelog", "rewritten history"), ("author", "staff")]
)
def test_no_field_of_a_published_version_changes(staff, acked, field, value):
    # only text, title and the publication time were compared: v1 could become v77
    setattr(acked, field, staff if value == "staff" else value)
    with pytest.raises(PublishedGuidelineImmutable):
        acked.save()


def test_a_diff_asked_with_one_version_compares_it_with_the_newest(client, staff, acked):
    # ?a=1 alone showed v2 -> v3 without a word
    for n in (2, 3):
        guideline_publish_text(text=f"# Guidelines\n\nrule {n}", changelog=f"c{n}", author=staff)
    client.force_login(staff)
    url = reverse("staff_guideline_diff")

    def shown(query):
        context = client.get(url, query).context
        return context["old"].number, context["new"].number

    assert shown({"a": 1}) == (1, 3)
    assert shown({"b": 2}) == (1, 2)
    assert shown({"a": 3}) == (2, 3)
    assert shown({}) == (2, 3)
    assert shown({"a": 3, "b": 1}) == (3, 1)
    assert shown({"b": 1}) == (1, 2)  # the first version: it against the one after, not v3 -> v1


def test_a_rater_cannot_tell_a_draft_from_a_version_that_does_not_exist(client, rater, acked, staff):
    # "A draft cannot be acknowledged" told a rater that an unpublished draft existed, and its number
    draft = guideline_draft_save(text="# Guidelines\n\nnext rules", author=staff)
    client.force_login(rater)
    answers = [
        client.post("/api/guidelines/acknowledge/", {"version": n}, content_type="application/json").json()
        for n in (draft.number, draft.number + 5)
    ]
    assert (
        answers[0] == answers[1] == {"version": ["No such guideline version."]}
    )  # a list, as a field's errors
    r = client.post(reverse("guidelines"), {"version": draft.pk}, follow=True)
    assert "unknown version" in r.content.decode()


def _based_on(html: str) -> str:
    import re

    return re.search(r'name="based_on" value="([^"]*)"', html).group(1)


@pytest.mark.parametrize("their_action", ["draft", "publish"])
def test_an_editor_does_not_replace_a_colleagues_save_unseen(client, staff, make_user, acked, their_action):
    # one draft, no check: the second Save (or Publish) replaced the first editor's newer text silently
    from django.test import Client

    url = reverse("staff_guideline_edit")
    client.force_login(staff)
    mine = _based_on(client.get(url).content.decode())
    colleague = Client()
    colleague.force_login(make_user("staff2", staff=True))
    theirs = {
        "text": "# Guidelines\n\ntheir rules",
        "title": "T",
        "changelog": "theirs",
        "action": their_action,
    }
    theirs["based_on"] = _based_on(colleague.get(url).content.decode())
    assert colleague.post(url, theirs).status_code == 302
    r = client.post(
        url, {"text": "my rules", "title": "T", "changelog": "mine", "action": "publish", "based_on": mine}
    )
    page = r.content.decode()
    assert r.status_code == 409 and "changed since you opened the editor" in page and "staff2" in page
    assert "my rules" in page  # the typed text is kept
    assert "my rules" not in (guideline_current().text + (GuidelineVersion.objects.first().text))
    again = {
        "text": "my rules",
        "title": "T",
        "changelog": "mine",
        "action": "publish",
        "based_on": _based_on(page),
    }
    assert client.post(url, again).status_code == 302  # seen, and replaced on purpose
    assert guideline_current().text == "my rules"


def test_an_editor_post_without_its_base_is_checked_as_a_stale_one(client, staff, acked):
    # without based_on nothing was checked: a page opened before the check existed (or a script)
    # still replaced a colleague's newer draft without a word
    guideline_draft_save(text="# Guidelines\n\ntheir draft", author=staff)
    client.force_login(staff)
    r = client.post(reverse("staff_guideline_edit"), {"text": "mine", "title": "T", "action": "draft"})
    assert r.status_code == 409 and GuidelineVersion.objects.get(published_at=None).text.endswith(
        "their draft"
    )


@pytest.mark.django_db(transaction=True)
def test_an_admin_change_saved_while_its_draft_is_published_changes_nothing(staff):
    """The admin's change form checked "still a draft?" with a read the publish's row lock does not
    stop: its save waited for the publish to commit, then rewrote the text of the published version."""
    import threading
    import time

    from django.db import connection, transaction
    from django.test import Client

    from labelapp.services.guidelines import guideline_create, guideline_publish

    staff.is_superuser = True
    staff.save()
    guideline_create(text="v1 text", author=staff, publish=True)
    draft = guideline_draft_save(text="draft text", author=staff, title="T")
    publishing = threading.Event()

    def publish():
        with transaction.atomic():
            guideline_publish(version=draft, changelog="v2", by=staff)
            publishing.set()
            time.sleep(1)  # the admin's save arrives before this commits
        connection.close()

    publisher = threading.Thread(target=publish)
    publisher.start()
    assert publishing.wait(10)
    admin = Client()
    admin.force_login(staff)
    url = reverse("admin:labelapp_guidelineversion_change", args=[draft.pk])
    r = admin.post(url, {"title": "T", "text": "EDITED AFTER PUBLISH", "changelog": "v2"})
    publisher.join()
    assert r.status_code == 200 and "was published meanwhile" in r.content.decode()
    assert GuidelineVersion.objects.get(pk=draft.pk).text == "draft text"


def test_the_admin_stores_and_counts_a_draft_with_lf_line_breaks(client, staff, acked):
    """The staff editor stores LF; the admin stored a browser's CRLF and counted the CRs against the
    length limit, refusing a text the editor accepts."""
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    draft = guideline_draft_save(text="draft", author=staff)
    url = reverse("admin:labelapp_guidelineversion_change", args=[draft.pk])
    text = "ab\r\n" * 13000  # 39,000 characters with LF, 52,000 with CRLF
    r = client.post(url, {"title": "T", "text": text, "changelog": ""})
    assert r.status_code == 302, r.content.decode()[-2000:]
    assert GuidelineVersion.objects.get(pk=draft.pk).text == ("ab\n" * 13000).strip()  # the form strips


def test_saving_the_read_only_form_of_a_published_version_says_nothing_false(client, staff, acked):
    """Save on a published version's form (every field read-only) said "was published meanwhile"."""
    staff.is_superuser = True
    staff.save()
    client.force_login(staff)
    r = client.post(reverse("admin:labelapp_guidelineversion_change", args=[acked.pk]), {})
    assert r.status_code == 302 and GuidelineVersion.objects.get(pk=acked.pk).text == acked.text


def test_a_draft_keeps_the_change_message_typed_so_far(client, staff, guideline):
    # a draft save dropped it: the editor opened again with an empty change message
    client.force_login(staff)
    r = _post_editor(
        client,
        {"text": "# G\n\nA draft rule.", "title": "Rating guidelines", "changelog": "  clearer rule  ",
         "action": "draft"},
    )  # fmt: skip
    assert r.status_code == 302
    page = client.get(reverse("staff_guideline_edit")).content.decode()
    assert 'name="changelog" maxlength="500" value="clearer rule"' in page
    assert GuidelineVersion.objects.get(published_at__isnull=True).changelog == "clearer rule"


def test_the_preview_of_an_ended_session_warns_in_place_instead_of_leaving_the_page(client, staff):
    # the background preview (every keystroke) got the login redirect as HX-Redirect: the whole editor
    # page went to the login page with the text being typed
    r = client.post(reverse("staff_guideline_preview"), {"text": "# Typed"}, HTTP_HX_REQUEST="true")
    assert r.status_code == 200 and "HX-Redirect" not in r and "Your session has ended" in r.content.decode()
    client.force_login(staff)
    r = client.post(reverse("staff_guideline_preview"), {"text": "# Typed"}, HTTP_HX_REQUEST="true")
    assert r.content.decode().startswith("<h1>Typed</h1>")


def test_the_login_page_after_an_ended_session_speaks_to_the_page_it_came_from(client):
    # staff were told to "judge that comparison again" after a guideline publish or a review decision
    staff_page = client.get("/accounts/login/?next=/staff/guidelines/edit/&unsaved=1").content.decode()
    assert "send it again" in staff_page and "judge that comparison" not in staff_page
    rater_page = client.get("/accounts/login/?next=/rate/12/&unsaved=1").content.decode()
    assert "judge that comparison again" in rater_page
