"""Issue 6 in a real browser (Debian's chromium driven by Playwright).

- Staff publish a new guideline version (through the staff editor) while a rater has a rating page
  open: the rater's next submit leads to the acknowledgment, and no rating carries a version the
  rater did not acknowledge.
- On a 1366x900 window the length question, its error and Submit are in view when they matter.
- Guideline markdown with scripts, event handlers and javascript: links stays inert for staff
  (editor preview, version page) and raters.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connections

from labelapp.models import Comparison, GuidelineVersion, Prompt, Rating, Response
from labelapp.services.guidelines import guideline_acknowledge, guideline_create
from tests.browser.test_rating_flow import CHROMIUM_ARGS, RATING_READY, _chromium

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-for-browser-tests-1"
EVIL = (
    "# Rules\n\nBe concise.\n\n<script>window.pwned = 1</script>\n\n"
    '<img src=x onerror="window.pwned = 2">\n\n[click me](javascript:window.pwned=3)\n\n'
    '<a href="javascript:window.pwned=4" onclick="window.pwned=5">raw</a>\n'
)


@pytest.fixture
def browser(live_server, monkeypatch, settings):
    path = _chromium()
    if path is None:
        pytest.skip("Debian's chromium is not installed (make browser-deps installs it)")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.LABEL = {**settings.LABEL, "GOLD_RATE": 0.0, "REPEAT_RATE": 0.0}
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
            # the greenlet's own database connection (see tests/browser/test_rating_flow.py): left open,
            # it kept the test database busy at teardown
            connections.close_all()


def _user(name: str, *, staff: bool = False):
    """A rater, or a staff account with the guideline-editor role (it edits and publishes here)."""
    user = get_user_model().objects.create_user(username=name, password=PASSWORD, is_staff=staff)
    if staff:
        from django.contrib.auth.models import Group

        from labelapp.services.roles import ensure_roles

        ensure_roles()  # the live server's transactional tests flush the groups migrate made
        user.groups.add(Group.objects.get(name="guideline-editor"))
    return user


def _page(browser, live_server, username: str, *, width=1366, height=900):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.press("#id_password", "Enter")
    page.wait_for_url(f"{live_server.url}/")
    return page


def _comparison(prompt: str, a: str, b: str) -> Comparison:
    p = Prompt.objects.create(text=prompt)
    ra = Response.objects.create(prompt=p, text=a, source_model="t")
    rb = Response.objects.create(prompt=p, text=b, source_model="t")
    return Comparison.objects.create(prompt=p, response_a=ra, response_b=rb, required_ratings=1)


def _in_view(page, selector: str) -> bool:
    return page.evaluate(
        """sel => { const el = document.querySelector(sel); if (!el) return false;
           const r = el.getBoundingClientRect();
           return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight; }""",
        selector,
    )


def test_staff_publish_while_a_rater_has_the_page_open(browser, live_server):
    v1 = guideline_create(text="# Guidelines\n\nPrefer the concise answer.", publish=True)
    rater = _user("browser-rater")
    _user("browser-staff", staff=True)
    guideline_acknowledge(rater=rater, version=v1)
    for i in range(3):
        _comparison(f"Question {i}?", f"Answer {i}.", f"Another answer {i}.")

    rater_page = _page(browser, live_server, "browser-rater")
    rater_page.goto(f"{live_server.url}/rate/")
    rater_page.wait_for_selector(RATING_READY)

    staff_page = _page(browser, live_server, "browser-staff")
    staff_page.goto(f"{live_server.url}/staff/guidelines/edit/")
    staff_page.fill("#id_text", "# Guidelines\n\nPrefer the concise answer.\n\nNEW: flag personal data.")
    staff_page.fill("#id_changelog", "personal data rule")
    staff_page.click("#publish")
    staff_page.wait_for_url("**/staff/guidelines/")
    v2 = GuidelineVersion.objects.get(number=2)
    assert v2.published_at is not None and v2.changelog == "personal data rule"

    # The rater, still on the page issued under v1, judges and submits.
    rater_page.keyboard.press("4")
    rater_page.keyboard.press("Enter")
    rater_page.wait_for_selector("#acknowledge")
    assert rater_page.locator("#rating-form").count() == 0
    diff_text = rater_page.locator("#guideline-diff").inner_text().replace("\xa0", " ")
    assert "NEW: flag personal data." in diff_text
    assert rater_page.title() == "New guidelines · Preference loop"  # not "Rate", as before the swap
    assert [r.guideline_version_id for r in Rating.objects.all()] == [v1.pk]
    # The side panel no longer shows v1 beside the acknowledgment of v2 (out-of-band swap).
    assert not rater_page.locator("#guidelines-panel").is_visible()

    rater_page.click("#acknowledge")
    rater_page.wait_for_selector(RATING_READY)
    rater_page.keyboard.press("4")
    rater_page.keyboard.press("Enter")
    rater_page.wait_for_selector("#rating-form, #nothing-to-rate")
    for _ in range(50):
        if Rating.objects.count() == 2:
            break
        rater_page.wait_for_timeout(100)
    versions = list(Rating.objects.order_by("id").values_list("guideline_version__number", flat=True))
    assert versions == [1, 2]
    acked = set(rater.acknowledgments.values_list("version_id", flat=True))
    assert all(r.guideline_version_id in acked for r in Rating.objects.all())


def test_the_page_title_follows_the_panel_swapped_in(browser, live_server):
    """The tab, the window list and a screen reader's page name said "Rate" over "Nothing to rate"."""
    v1 = guideline_create(text="# Guidelines\n\nBe concise.", publish=True)
    rater = _user("browser-rater")
    guideline_acknowledge(rater=rater, version=v1)
    for i in range(2):
        _comparison(f"Question {i}?", f"Answer {i}.", f"Another answer {i}.")
    page = _page(browser, live_server, "browser-rater")
    page.goto(f"{live_server.url}/rate/")
    page.wait_for_selector(RATING_READY)
    for expected in ("Rate · Preference loop", "Nothing to rate · Preference loop"):
        first = page.locator("#rate-root").get_attribute("data-assignment")
        page.keyboard.press("4")
        page.keyboard.press("Enter")
        page.wait_for_function(
            "id => document.getElementById('rate-root').dataset.assignment !== id", arg=first
        )
        page.wait_for_function("t => document.title === t", arg=expected)
    assert page.locator("#nothing-to-rate").count() == 1
    assert Rating.objects.count() == 2


def test_the_length_question_its_error_and_submit_are_in_view_at_1366x900(browser, live_server):
    v1 = guideline_create(text="# Guidelines\n\n" + "Read carefully. " * 200, publish=True)
    rater = _user("browser-rater")
    guideline_acknowledge(rater=rater, version=v1)
    long_text = "\n\n".join("This paragraph repeats the same point at length. " * 6 for _ in range(12))
    _comparison("Explain photosynthesis " + "in detail " * 40, "Plants turn light into sugar.", long_text)
    _comparison("Second question?", "Short.", long_text)

    page = _page(browser, live_server, "browser-rater")
    page.goto(f"{live_server.url}/rate/")
    page.wait_for_selector(RATING_READY)
    assert page.evaluate("document.documentElement.scrollHeight") > 1800  # the controls start below the fold
    words_left = int(page.locator("#rate-root").get_attribute("data-words-left"))
    words_right = int(page.locator("#rate-root").get_attribute("data-words-right"))
    key = "1" if words_left > words_right else "7"  # pick the much longer answer
    page.keyboard.press(key)
    page.wait_for_selector("#length-check:not([hidden])")
    assert _in_view(page, "#length-check") and _in_view(page, "#submit-rating")

    # Submit without answering: the server's error comes back in a swapped panel, in view.
    page.evaluate("window.scrollTo(0, 0)")
    first_id = page.locator("#rate-root").get_attribute("data-assignment")
    page.keyboard.press("Enter")
    page.wait_for_selector("#length-check .errors")
    page.wait_for_timeout(200)
    assert _in_view(page, "#length-check .errors")
    assert _in_view(page, "#length-check") and _in_view(page, "#submit-rating")
    assert page.locator(f'input[name="preference"][data-key="{key}"]').is_checked()

    page.keyboard.press("n")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "id => document.getElementById('rate-root').dataset.assignment !== id", arg=first_id
    )
    # A new comparison starts at its prompt.
    assert page.evaluate("window.scrollY") == 0 and _in_view(page, "#prompt-text")
    assert Rating.objects.get().length_check == "adds_nothing"


def test_guideline_markdown_is_inert_for_staff_and_raters(browser, live_server):
    v1 = guideline_create(text="# Guidelines\n\nBe kind.", publish=True)
    rater = _user("browser-rater")
    _user("browser-staff", staff=True)
    guideline_acknowledge(rater=rater, version=v1)
    dialogs = []

    staff_page = _page(browser, live_server, "browser-staff")
    staff_page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    staff_page.goto(f"{live_server.url}/staff/guidelines/edit/")
    staff_page.fill("#id_text", "")
    staff_page.locator("#id_text").press_sequentially(EVIL[:40])
    staff_page.fill("#id_text", EVIL)
    staff_page.locator("#id_text").press("End")  # an input event: htmx refreshes the preview
    staff_page.wait_for_function(
        # a function: Playwright evaluates a bare expression with eval, which the page's policy refuses
        "() => document.getElementById('preview').innerText.includes('javascript:window.pwned=3')"
    )
    assert staff_page.evaluate("window.pwned") is None
    staff_page.get_by_text("click me").click()
    staff_page.fill("#id_changelog", "try to break it")
    staff_page.click("#publish")
    staff_page.wait_for_url("**/staff/guidelines/")
    staff_page.goto(f"{live_server.url}/staff/guidelines/v/2/")
    staff_page.get_by_text("click me").click()
    staff_page.get_by_text("raw", exact=False).first.click()
    assert staff_page.evaluate("window.pwned") is None
    assert staff_page.url.endswith("/staff/guidelines/v/2/")

    rater_page = _page(browser, live_server, "browser-rater")
    rater_page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    rater_page.goto(f"{live_server.url}/guidelines/")
    rater_page.wait_for_selector("#acknowledge")
    rater_page.get_by_text("The whole text of version 2").click()  # below the diff to v1
    text = rater_page.locator("details .markdown").inner_text()
    assert "<script>window.pwned = 1</script>" in text  # shown as text, not run
    assert "javascript:window.pwned=3" in text
    rater_page.get_by_text("click me").first.click()
    assert rater_page.evaluate("window.pwned") is None and rater_page.url.endswith("/guidelines/")
    assert rater_page.locator(".markdown img, .markdown script").count() == 0
    assert dialogs == []


def test_a_long_word_in_a_guideline_table_does_not_widen_the_pages(browser, live_server):
    # a 300-character word in one cell made /guidelines/ 4,600 px wide and pushed the editor's preview
    # off the screen (its grid columns grew to their content)
    word = "x" * 300
    table = f"| rule | example |\n|---|---|\n| one | {word} |\n"
    v1 = guideline_create(text="# Guidelines\n\n" + table, publish=True)
    rater = _user("wide-rater")
    guideline_acknowledge(rater=rater, version=v1)
    _user("wide-staff", staff=True)
    width = "document.documentElement.scrollWidth"
    page = _page(browser, live_server, "wide-rater")
    page.goto(f"{live_server.url}/guidelines/")
    assert page.evaluate(width) <= 1366
    staff = _page(browser, live_server, "wide-staff")
    for url in ("/staff/guidelines/v/1/", "/staff/guidelines/edit/"):
        staff.goto(live_server.url + url)
        staff.wait_for_timeout(300)  # the editor's preview renders after load
        assert staff.evaluate(width) <= 1366, url
    assert staff.evaluate("document.querySelector('#preview').getBoundingClientRect().right <= innerWidth")


def test_a_long_code_line_or_table_cell_in_an_answer_keeps_both_answers_readable(browser, live_server):
    # grid columns of 1fr grow to their widest content: a 400-character code line made the rating page
    # 3,464 px wide and squeezed the other answer to 60 px
    v1 = guideline_create(text="# Guidelines\n\nBe concise.", publish=True)
    rater = _user("code-rater")
    guideline_acknowledge(rater=rater, version=v1)
    code = "```\n" + "x = [" + ", ".join(str(i) for i in range(100)) + "]\n```"
    table = "| a | b |\n|---|---|\n| 1 | " + "y" * 500 + " |\n"
    _comparison("Write a list.", code + "\n\n" + table, "A short answer.")
    page = _page(browser, live_server, "code-rater")
    page.goto(f"{live_server.url}/rate/")
    page.wait_for_selector(RATING_READY)
    assert page.evaluate("document.documentElement.scrollWidth") <= 1366
    widths = page.evaluate(
        "[...document.querySelectorAll('.answer')].map(a => a.getBoundingClientRect().width)"
    )
    assert len(widths) == 2 and min(widths) > 400, widths


def test_choosing_with_a_key_brings_the_scale_and_submit_into_view(browser, live_server):
    # on an ordinary pair the scale and Submit sat below the fold at 1366x900: keys 1-7 and Enter
    # worked on a form the rater could not see
    v1 = guideline_create(text="# Guidelines\n\nBe concise.", publish=True)
    rater = _user("fold-rater")
    guideline_acknowledge(rater=rater, version=v1)
    answer = "\n\n".join("A paragraph of a fair length that says one thing clearly. " * 3 for _ in range(6))
    _comparison("Explain it.", answer, answer + " And one more sentence.")  # about the same length
    page = _page(browser, live_server, "fold-rater")
    page.goto(f"{live_server.url}/rate/")
    page.wait_for_selector(RATING_READY)
    assert not _in_view(page, "#submit-rating")
    # the rater has read down to where the scale begins: its options show, Submit does not
    page.evaluate(
        """() => { const r = document.querySelector('.scale-options').getBoundingClientRect();
                   window.scrollTo(0, scrollY + r.bottom - innerHeight + 2); }"""
    )
    assert _in_view(page, 'input[name="preference"][data-key="3"]') and not _in_view(page, "#submit-rating")
    page.keyboard.press("3")
    page.wait_for_timeout(200)
    assert _in_view(page, "#submit-rating") and _in_view(page, 'input[name="preference"][data-key="3"]')


def test_a_submit_that_fails_or_finds_the_session_ended_says_so(browser, live_server):
    # a 403 (the session's CSRF token changed after a login in another tab) swapped nothing: Enter did
    # nothing visible; an ended session swapped the login page into the panel
    v1 = guideline_create(text="# Guidelines\n\nBe concise.", publish=True)
    rater = _user("gone-rater")
    guideline_acknowledge(rater=rater, version=v1)
    _comparison("Which is right?", "Four.", "Five.")
    page = _page(browser, live_server, "gone-rater")
    page.goto(f"{live_server.url}/rate/")
    page.wait_for_selector(RATING_READY)
    rate_url = page.url
    page.evaluate("document.body.setAttribute('hx-headers', JSON.stringify({'X-CSRFToken': 'stale'}))")
    page.evaluate(
        "document.querySelectorAll('input[name=csrfmiddlewaretoken]').forEach(i => i.value = 'stale')"
    )
    page.keyboard.press("4")
    page.keyboard.press("Enter")
    page.wait_for_selector("#send-error")
    assert "session changed" in page.inner_text("#send-error") and _in_view(page, "#send-error")
    assert page.locator('input[name="preference"][data-key="4"]').is_checked()  # the choice is kept
    assert not Rating.objects.exists()

    page.goto(rate_url)
    page.wait_for_selector(RATING_READY)
    page.context.clear_cookies(name="sessionid")  # the session ends (the CSRF cookie stays)
    page.keyboard.press("4")
    page.keyboard.press("Enter")
    page.wait_for_url("**/accounts/login/**")
    assert page.locator("#rate-root").count() == 0  # the login page as a page, not inside the panel
    page.fill("#id_username", "gone-rater")
    page.fill("#id_password", PASSWORD)
    page.press("#id_password", "Enter")
    page.wait_for_url(rate_url)  # back on the comparison
    page.wait_for_selector(RATING_READY)


def test_enter_in_the_change_message_publishes_and_an_editor_error_is_in_view(browser, live_server):
    # Enter there saved a draft (the first button) and dropped the message typed to publish with; a
    # refused publish reloaded the page with its error at the bottom edge (off screen on a phone) and
    # the focus on the body
    guideline_create(text="# Guidelines\n\nPrefer the concise answer.", publish=True)
    _user("editor-enter", staff=True)
    page = _page(browser, live_server, "editor-enter", width=390, height=844)
    page.goto(f"{live_server.url}/staff/guidelines/edit/")
    page.fill("#id_text", "\n\n# Guidelines\n\nPrefer the concise answer.\n\nNEW rule.")
    page.click("#publish")  # no change message: refused
    page.wait_for_selector("#editor-error")
    page.wait_for_function("() => document.activeElement.id === 'editor-error'")  # autofocus, once parsed
    assert _in_view(page, "#editor-error")
    assert page.input_value("#id_text") == "\n\n# Guidelines\n\nPrefer the concise answer.\n\nNEW rule."
    save, publish = page.locator("#save-draft").bounding_box(), page.locator("#publish").bounding_box()
    assert save["x"] < publish["x"]  # shown in the usual order, Save draft first
    page.locator("#id_changelog").focus()
    page.keyboard.press("Tab")  # and reached in it
    assert page.evaluate("() => document.activeElement.id") == "save-draft"
    page.fill("#id_changelog", "a new rule")
    page.press("#id_changelog", "Enter")
    page.wait_for_url("**/staff/guidelines/")
    v2 = GuidelineVersion.objects.get(number=2)
    assert v2.published_at is not None and v2.changelog == "a new rule"
