"""Rating guidelines: drafts, publishing a new version, raters acknowledging the version in force.

A published version is immutable history (ratings point at it; `GuidelineVersion.save` refuses to
change one); staff edit one draft at a time and publish it with a change message. A rater may only
rate under a version they acknowledged: the queue (services/assignment.py) and the rating service
(services/ratings.py) check it, and `GuidelineAckRequired` tells every caller to show the
acknowledgment next.
"""

from __future__ import annotations

import hashlib

from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from labelapp.models import GuidelineAcknowledgment, GuidelineVersion
from labelapp.rawsql import xact_lock
from labelapp.rendering import is_blank, render_guideline
from labelapp.services.roles import permission_check
from labelapp.textdiff import side_by_side

CHANGELOG_MAX = 500
_DRAFT_LOCK = 0x6D2AF7  # pg_advisory_xact_lock key of draft saves (ingest has its own)
TITLE_MAX = 200  # GuidelineVersion.title's column
# Every rater reads it before rating and its diff is built for each acknowledgment: with no bound a
# pasted 200,000-character text made both pages slow for everyone. The default text has 6,750.
TEXT_MAX = 50_000


class GuidelineError(Exception):
    """A guideline operation was refused; the message is for the user."""


class GuidelineConflict(GuidelineError):
    """Another staff member saved or published since this editor opened: saving would replace their
    work without anyone seeing it."""


class GuidelineAckRequired(Exception):
    """The rater has not acknowledged the version in force: show it (and its diff) before any rating."""

    def __init__(self, version: GuidelineVersion):
        self.version = version
        super().__init__(
            f"Guidelines version {version.number} is in force: read and acknowledge it before rating."
        )


def guideline_current() -> GuidelineVersion | None:
    """The newest published version: the one in force."""
    return GuidelineVersion.objects.filter(published_at__isnull=False).order_by("-number").first()


def guideline_draft() -> GuidelineVersion | None:
    """The draft being edited: an unpublished version newer than every published one."""
    current = guideline_current()
    drafts = GuidelineVersion.objects.filter(published_at__isnull=True)
    if current is not None:
        drafts = drafts.filter(number__gt=current.number)
    return drafts.order_by("-number").first()


def guideline_edit_base(start: GuidelineVersion | None = ...) -> str:
    """What the editor starts from (the draft, or else the version in force), as a token the editor
    sends back with Save and Publish: `based_on` there refuses the save when it no longer matches.
    `start`: the version whose text the editor shows (read once with it: a token read apart from the
    text could pair a colleague's newer save with the older text, and let it overwrite theirs)."""
    if start is ...:
        start = guideline_draft() or guideline_current()
    if start is None:
        return "none"
    seen = f"{start.pk}\0{start.title}\0{start.text}".encode("utf-8", "surrogatepass")
    return f"{start.number}-{hashlib.sha256(seen).hexdigest()[:16]}"


def _check_base(based_on: str | None) -> None:
    """GuidelineConflict when the draft or the version in force changed since `based_on` was read
    (None: the caller does not say what it started from, e.g. the admin)."""
    if based_on is None or based_on == guideline_edit_base():
        return
    draft, current = guideline_draft(), guideline_current()
    if draft is not None:
        by = draft.author.get_username() if draft.author else "someone"
        what = f": {by} saved the draft (version {draft.number})"
    elif current is not None:  # the author is who last saved its text; publishing records no one
        by = f", last edited by {current.author.get_username()}" if current.author else ""
        what = f": version {current.number} was published{by}"
    else:
        what = ""
    raise GuidelineConflict(
        f"The guidelines changed since you opened the editor{what}. Your text is kept here; compare "
        "it with theirs (History opens in another tab), then save again to replace theirs with yours."
    )


def unix_newlines(text: str) -> str:
    """Browsers send a textarea's line breaks as CRLF (the HTML form encoding rules). Stored text uses
    LF, so the text in force sent back untouched compares equal ("Nothing changed") and diffs line up."""
    return (text or "").replace("\r\n", "\n").replace("\r", "\n")


def _check_texts(*, changelog: str | None = None, **texts: str | None) -> None:
    """PostgreSQL refuses NUL (U+0000) in text columns: refuse it here with a message, not a 500 at save.
    A change message over CHANGELOG_MAX or a title over TITLE_MAX is refused too (each was cut to fit
    without a word)."""
    for what, value in {**texts, "change message": changelog}.items():
        if value and "\x00" in value:
            raise GuidelineError(f"The {what} contains a NUL character (U+0000); remove it and save again.")
    if len(texts.get("text") or "") > TEXT_MAX:
        raise GuidelineError(
            f"Keep the guidelines to {TEXT_MAX:,} characters (they have {len(texts['text']):,})."
        )
    title = (texts.get("title") or "").strip()
    if len(title) > TITLE_MAX:  # it was cut to fit without a word
        raise GuidelineError(f"Keep the title to {TITLE_MAX} characters (it has {len(title)}).")
    if changelog and len(changelog.strip()) > CHANGELOG_MAX:
        raise GuidelineError(
            f"Keep the change message to {CHANGELOG_MAX} characters (it has {len(changelog.strip())})."
        )


def guideline_create(
    *, text: str, author=None, title: str = "Rating guidelines", changelog: str = "", publish: bool = False
) -> GuidelineVersion:
    guideline_draft_check(text=text, title=title, changelog=changelog)
    for _ in range(3):
        try:
            with transaction.atomic():
                number = (GuidelineVersion.objects.aggregate(m=Max("number"))["m"] or 0) + 1
                return GuidelineVersion.objects.create(
                    number=number,
                    text=text,
                    title=title,
                    changelog=changelog.strip(),
                    author=author,
                    published_at=timezone.now() if publish else None,
                )
        except IntegrityError:
            continue  # two admins saved at once; take the next number
    raise GuidelineError("Could not allocate a version number; try again.")


def guideline_draft_save(
    *, text: str, author, title: str = "", based_on: str | None = None, changelog: str | None = None
) -> GuidelineVersion:
    """Save the staff editor's text as the draft (raters see nothing). Updates the open draft in place.
    `based_on`: the guideline_edit_base() the editor opened with (GuidelineConflict if it changed).
    `changelog`: the change message typed so far, kept with the draft (None: left as it is); a draft
    save dropped it, and the editor opened again with an empty one."""
    permission_check(author, "guideline_draft")
    return _draft_save(text=text, author=author, title=title, based_on=based_on, changelog=changelog)


def guideline_draft_check(*, text: str, title: str = "", changelog: str = "") -> None:
    """GuidelineError for a draft that may not be saved: empty text (zero-width characters only would
    publish a page that shows nothing), a NUL, an over-long title or change message."""
    if is_blank(text or ""):
        raise GuidelineError("The guideline text is empty.")
    _check_texts(text=text, title=title, changelog=changelog)


def guideline_draft_hold(version: GuidelineVersion) -> None:
    """Inside the caller's transaction (the admin's change form): hold the draft lock and the version's
    row until it ends, or GuidelineError when the version is published or gone. The form read the
    version as a draft, and the model's own check, read without a lock, let a change saved while a
    publish committed rewrite the text of the version just published."""
    xact_lock(_DRAFT_LOCK)
    stored = (
        GuidelineVersion.objects.select_for_update()
        .filter(pk=version.pk)
        .values_list("number", "published_at")
        .first()
    )
    if stored is None:
        raise GuidelineError("This draft was deleted meanwhile; nothing was saved.")
    if stored[1] is not None:
        raise GuidelineError(
            f"Version {stored[0]} was published meanwhile and cannot change; nothing was saved. "
            "Write the change in a new draft."
        )


def _draft_save(
    *, text: str, author, title: str, based_on: str | None = None, changelog: str | None = None
) -> GuidelineVersion:
    text = unix_newlines(text)
    guideline_draft_check(text=text, title=title, changelog=changelog or "")
    title = (title or "").strip()
    with transaction.atomic():
        # Serialise every draft save: locking the draft row left its absence unguarded, and eight
        # saves at once with no draft stored four drafts (each took the next number).
        xact_lock(_DRAFT_LOCK)
        _check_base(based_on)  # under the lock: a save that lands meanwhile is seen
        draft = guideline_draft()
        if draft is not None:  # and on its row: a publish at the same time makes it history
            draft = GuidelineVersion.objects.select_for_update().get(pk=draft.pk)
        if draft is None or draft.published_at is not None:
            current = guideline_current()
            return guideline_create(
                text=text,
                author=author,
                title=title or (current.title if current else "Rating guidelines"),
                changelog=changelog or "",
            )
        draft.text, draft.author = text, author
        if title:
            draft.title = title
        if changelog is not None:
            draft.changelog = changelog.strip()
        draft.save(update_fields=["text", "author", "title", "changelog"])
        return draft


def guideline_publish(
    *, version: GuidelineVersion, changelog: str | None = None, by=None
) -> GuidelineVersion:
    """Publish a draft. Published versions are immutable history: ratings point at them."""
    permission_check(by, "guideline_publish")
    _check_texts(changelog=changelog)
    with transaction.atomic():
        version = GuidelineVersion.objects.select_for_update().get(pk=version.pk)
        if version.published_at is not None:
            raise GuidelineError(f"Version {version.number} is already published.")
        newest = guideline_current()
        if newest is not None and newest.number > version.number:
            raise GuidelineError(f"Version {newest.number} is newer; edit a new draft instead.")
        # every path (the editor, the admin action) publishes under the same rules
        _refuse_empty_publish(
            text=version.text,
            title=version.title,
            changelog=version.changelog if changelog is None else changelog,
        )
        fields = ["published_at"]
        if changelog is not None:
            version.changelog = changelog.strip()
            fields.append("changelog")
        version.published_at = timezone.now()
        version.save(update_fields=fields)
    return version


def guideline_publish_text(
    *, text: str, changelog: str, author, title: str = "", based_on: str | None = None
) -> GuidelineVersion:
    """The staff editor's Publish: save the text as the draft and publish it with a change message
    (`based_on` as for guideline_draft_save: one editor's Publish replaced another's newer draft)."""
    permission_check(author, "guideline_publish")
    permission_check(author, "guideline_draft")  # it saves the text as the draft first
    # Checked before the draft is saved: a refused publish must not leave a half-done draft behind;
    # on the text as it will be stored, as a draft save checks it (a browser sends CRLF line breaks:
    # counted twice, text that saved as a draft was too long to publish).
    text = unix_newlines(text)
    _check_texts(text=text, title=title, changelog=changelog)
    _refuse_empty_publish(text=text, title=title, changelog=changelog)
    with transaction.atomic():
        # Save and publish under one hold of the draft lock: in two transactions another staff
        # member's draft save (or publish) could land between them, and this publish then published
        # their text under this change message.
        xact_lock(_DRAFT_LOCK)
        draft = _draft_save(text=text, author=author, title=title, based_on=based_on)
        return guideline_publish(version=draft, changelog=changelog, by=author)


def _refuse_empty_publish(*, text: str, title: str, changelog: str | None) -> None:
    """GuidelineError for a publish without a change message, or of the version in force's text and
    title (every rater would acknowledge again for nothing). An empty `title` keeps the current one;
    the title is compared as it is stored, stripped."""
    if not (changelog or "").strip():
        raise GuidelineError("Say what changed (the change message is shown to raters).")
    current = guideline_current()
    title = (title or "").strip()
    same_title = not title or current is None or title == current.title
    if current is None or not same_title:
        return
    if unix_newlines(current.text) == unix_newlines(text):
        raise GuidelineError(f"Nothing changed since version {current.number}.")
    if render_guideline(current.text) == render_guideline(text):
        # spaces at line ends, a blank line more: every rater acknowledged again a page that looks
        # exactly as before (two spaces before a line break do show, as a break, and are a change)
        raise GuidelineError(
            f"Nothing raters can see changed since version {current.number}: the text differs only in "
            "ways the page does not show (spacing, or another spelling of the same markup)."
        )


def guideline_acknowledge(*, rater, version: GuidelineVersion) -> GuidelineAcknowledgment:
    if version.published_at is None:
        raise GuidelineError("A draft cannot be acknowledged.")
    ack, _ = GuidelineAcknowledgment.objects.get_or_create(rater=rater, version=version)
    return ack


def guideline_needs_ack(*, rater) -> GuidelineVersion | None:
    """The version in force if this rater has not acknowledged it yet, else None."""
    current = guideline_current()
    if current is None:
        return None
    if GuidelineAcknowledgment.objects.filter(rater=rater, version=current).exists():
        return None
    return current


def guideline_last_acknowledged(*, rater) -> GuidelineVersion | None:
    """The newest published version this rater acknowledged (what they last agreed to work under)."""
    return (
        GuidelineVersion.objects.filter(acknowledgments__rater=rater, published_at__isnull=False)
        .order_by("-number")
        .first()
    )


def guideline_diff_html(*, old: GuidelineVersion, new: GuidelineVersion) -> str:
    """A side-by-side diff of two versions' markdown source (and title, when it changed) as an HTML
    table (labelapp/textdiff.py: every character escaped, so markdown holding `<script>` shows as text;
    only the changed lines with two lines of context; long lines wrap in the stylesheet)."""
    # a changed title is a line of the diff: a publish that changed only the title read "No differences."
    titled = old.title != new.title
    before, after = (f"Title: {v.title}\n\n{v.text}" if titled else v.text for v in (old, new))
    return side_by_side(
        before, after, fromdesc=f"Version {old.number}", todesc=f"Version {new.number}", context=2
    )
