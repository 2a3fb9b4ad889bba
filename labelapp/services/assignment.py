"""The assignment queue: claim the next comparison for a rater, skip it, release expired leases.

Concurrency design (checked by tests/labelapp/test_queue_concurrency.py against real PostgreSQL):
- `Comparison.claimed_count` (leased + done) is changed only while that comparison's row is locked.
- A claim (one SQL statement, `_CLAIM_SQL` or `_CLAIM_GOLD_SQL`; `_CLAIM_BACK_SQL` first when the
  rater's last lease ran out and was released: that same comparison) picks this rater's due repeat, else
  (at GOLD_RATE, and only while ordinary work is left for the rater) an unseen gold pair, else the
  best open comparison, with
  `SELECT ... FOR UPDATE SKIP LOCKED LIMIT 1`: two raters
  never wait on each other, and because the open condition `claimed_count < required_ratings` is a
  column of the locked row, PostgreSQL re-checks it against the newest row version after the lock is
  taken, so a comparison filled a moment ago is not claimed again.
- Lock order is always assignment rows, then comparison rows in id order: no deadlock between the
  releaser, skips and claims.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, OperationalError, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from labelapp.models import (
    Assignment,
    Comparison,
    GuidelineAcknowledgment,
    Prompt,
    Response,
    prompt_awaiting_review,
    prompts_awaiting_review,
)
from labelapp.rawsql import fetch_one, loaded_instance
from labelapp.rendering import is_blank
from labelapp.services.guidelines import GuidelineAckRequired, guideline_current
from labelapp.services.privacy import scrub


class QueueError(Exception):
    """A queue operation the caller asked for cannot be done; the message is for the user."""


def _open_assignment(rater) -> Assignment | None:
    return (
        Assignment.objects.select_related(
            "comparison__prompt", "comparison__response_a", "comparison__response_b"
        )
        .filter(rater=rater, status=Assignment.Status.LEASED)
        .first()
    )


# One statement, so one round trip and no explicit transaction: pick (locking only the comparison,
# skipping rows other claims hold), bump claimed_count, issue the assignment, and return the rows
# the rating page shows. A unique violation (the rater already holds a lease) undoes all of it.
#
# Streams, tried in order, and PostgreSQL evaluates a WITH query only as far as the outer query
# asks for rows, so a stream after the first one that yields a row is never run (nor locks):
#   rep    this rater's own repeats that are due (test-retest; sides swapped via forced_left);
#   gold   only in _CLAIM_GOLD_SQL, used when the claim drew a gold slot (GOLD_RATE): an active gold
#          pair this rater has not judged, skipped or open (one whose lease ran out may come again, as
#          an ordinary pair may: a gold pair left to expire was never scored), least-served first;
#          gold ignores required_ratings. Only while `ordinary` finds an open normal pair or a due repeat for
#          this rater (the other streams' conditions as a plain EXISTS probe that locks nothing; the
#          rule of queue_has_work_for): a rater reloading an empty queue would otherwise be handed
#          each unseen gold pair alone, and so could tell it was gold;
#   normal the ordinary queue (priority, then age).
# Every stream requires that the rater acknowledged the version in force (`acked`; evaluated once),
# and skips prompts staff withheld for personal data or whose consent was withdrawn (a comparison is
# never made on a prompt without consent; one switched back on by hand, or made gold, still is not
# served).
#
# Two statements rather than a gold flag in one: both run as prepared statements (settings:
# DB_PREPARED_STATEMENTS), and PostgreSQL keeps a generic plan only while its estimated cost is
# below that of the plans for the actual values. With a gold flag, the gold stream and its probe
# weighed on the generic plan's estimate although 95% of claims fold them away, so PostgreSQL
# re-planned every claim (about 1 ms of database CPU each); each statement here keeps its generic plan.
_NOT_SEEN = """NOT EXISTS (
          SELECT 1 FROM labelapp_assignment s
          WHERE s.rater_id = %(rater)s AND s.comparison_id = c.id
            AND s.status IN ('leased', 'done', 'skipped'))"""
# The claim's prompt rule as SQL on a comparison aliased `c` (the simulator counts open slots with it).
# A prompt may be shown while it has consent, is not withheld, and no rater's "contains personal data"
# flag on it, or on a prompt asking the same question in another case or spacing, waits for a staff
# review (models.prompts_awaiting_review: exports and training hold it back then; the queue went on
# showing it to more raters). Each is a probe per candidate through an index (the prompt's comparisons,
# then the partial index rating_flag_pii; its twins by prompt_question_hash), so a claim's time grows
# with the held comparisons it steps over at the head of the queue, not with their square: the set of
# held prompts read once per statement became a join that took 340 ms a claim with 5,000 held, and a
# NOT IN over that set (a hashed subplan) cost more than the probes, as the set is built anew in each
# of the claim's streams (bench/rater_cycle.py --held-prompts).
_HELD_BY_ITS_FLAG = """NOT EXISTS (
          SELECT 1 FROM labelapp_comparison fc
          JOIN labelapp_rating fr ON fr.comparison_id = fc.id AND fr.flag_pii
          WHERE fc.prompt_id = c.prompt_id
            AND NOT EXISTS (SELECT 1 FROM labelapp_ratingreview rv WHERE rv.rating_id = fr.id))"""
_HELD_BY_A_TWINS_FLAG = """NOT EXISTS (
          SELECT 1 FROM labelapp_prompt p0
          JOIN labelapp_prompt t ON t.question_hash = p0.question_hash AND t.id <> p0.id
          JOIN labelapp_comparison fc ON fc.prompt_id = t.id
          JOIN labelapp_rating fr ON fr.comparison_id = fc.id AND fr.flag_pii
          WHERE p0.id = c.prompt_id AND p0.question_hash <> ''
            AND NOT EXISTS (SELECT 1 FROM labelapp_ratingreview rv WHERE rv.rating_id = fr.id))"""
PROMPT_SERVABLE_SQL = f"""NOT EXISTS (
          SELECT 1 FROM labelapp_prompt w WHERE w.id = c.prompt_id AND (w.withheld OR NOT w.consent))
      AND {_HELD_BY_ITS_FLAG}
      AND {_HELD_BY_A_TWINS_FLAG}"""
_REP_WHERE = f"""c.kind = 'repeat' AND c.is_active AND c.claimed_count = 0
      AND c.repeat_for_id = %(rater)s AND c.available_at <= %(now)s
      AND {PROMPT_SERVABLE_SQL}
      AND {_NOT_SEEN}"""
_NORMAL_WHERE = f"""c.is_active AND c.claimed_count < c.required_ratings AND c.kind = 'normal'
      AND {PROMPT_SERVABLE_SQL}
      AND {_NOT_SEEN}"""

_ORDINARY = f"""ordinary AS (
    SELECT 1 WHERE EXISTS (
        SELECT 1 FROM labelapp_comparison c
        WHERE {_NORMAL_WHERE}
    ) OR EXISTS (
        SELECT 1 FROM labelapp_comparison c
        WHERE {_REP_WHERE}
    )
)"""
_GOLD_STREAM = f"""{_ORDINARY}, gold AS (
    SELECT c.id FROM labelapp_comparison c
    WHERE c.kind = 'gold' AND c.is_active
      AND EXISTS (SELECT 1 FROM acked) AND EXISTS (SELECT 1 FROM ordinary)
      AND {PROMPT_SERVABLE_SQL}
      AND {_NOT_SEEN}
    ORDER BY c.claimed_count, c.id
    LIMIT 1
    FOR UPDATE OF c SKIP LOCKED
), """


_ACKED = """acked AS (
    SELECT 1 FROM labelapp_guidelineacknowledgment k
    WHERE k.rater_id = %(rater)s AND k.version_id = (
        SELECT g.id FROM labelapp_guidelineversion g WHERE g.published_at IS NOT NULL
        ORDER BY g.number DESC LIMIT 1)
)"""

# Take the picked comparison: bump its count, issue the lease, return what the rating page shows.
_ISSUE = """bumped AS (
    UPDATE labelapp_comparison c SET claimed_count = c.claimed_count + 1
    FROM picked WHERE c.id = picked.id
    RETURNING c.id, c.prompt_id, c.response_a_id, c.response_b_id, c.kind, c.priority, c.required_ratings,
              COALESCE(NULLIF(c.forced_left, ''), %(side)s) AS side
), issued AS (
    INSERT INTO labelapp_assignment
        (rater_id, comparison_id, shown_left, status, issued_at, lease_expires_at, skip_reason, form_key)
    SELECT %(rater)s, bumped.id, bumped.side, 'leased', %(now)s, %(expires)s, '', %(key)s FROM bumped
    RETURNING id
)
SELECT issued.id, b.id, b.kind, b.priority, b.required_ratings,
       p.id, p.text, p.html, ra.id, ra.text, ra.html, ra.word_count, rb.id, rb.text, rb.html, rb.word_count,
       b.side
FROM issued, bumped b
JOIN labelapp_prompt p ON p.id = b.prompt_id
JOIN labelapp_response ra ON ra.id = b.response_a_id
JOIN labelapp_response rb ON rb.id = b.response_b_id
"""

# The comparison of the rater's own lease that the housekeeping released (`%(back)s`), whatever its
# kind, while it may still be served to them: a reload after the release then brings the same pair
# back for gold as for an ordinary pair (the ordinary one came back as the top of the queue, the gold
# one only at GOLD_RATE, so a rater who waited out the lease could tell which had been gold). Gold
# only while ordinary work is left, as in the gold stream: the home page (queue_has_work_for, which
# counts no gold) said "nothing is left to rate", and /rate/ then showed a pair, which only gold does.
_CLAIM_BACK_SQL = f"""
WITH {_ACKED}, {_ORDINARY}, picked AS (
    SELECT c.id FROM labelapp_comparison c
    WHERE c.id = %(back)s AND EXISTS (SELECT 1 FROM acked)
      AND (({_NORMAL_WHERE})
           OR (c.kind = 'gold' AND c.is_active AND {PROMPT_SERVABLE_SQL} AND {_NOT_SEEN}
               AND EXISTS (SELECT 1 FROM ordinary))
           OR ({_REP_WHERE}))
    FOR UPDATE OF c SKIP LOCKED
), {_ISSUE}"""


def _claim_sql(*, gold: bool) -> str:
    gold_stream, gold_picked = (_GOLD_STREAM, "SELECT id FROM gold UNION ALL ") if gold else ("", "")
    return f"""
WITH {_ACKED}, rep AS (
    SELECT c.id FROM labelapp_comparison c
    WHERE {_REP_WHERE}
      AND EXISTS (SELECT 1 FROM acked)
    ORDER BY c.available_at, c.id
    LIMIT 1
    FOR UPDATE OF c SKIP LOCKED
), {gold_stream}normal AS (
    SELECT c.id FROM labelapp_comparison c
    WHERE {_NORMAL_WHERE}
      AND EXISTS (SELECT 1 FROM acked)
    ORDER BY c.priority DESC, c.created_at, c.id
    LIMIT 1
    FOR UPDATE OF c SKIP LOCKED
), picked AS (
    SELECT id FROM rep UNION ALL {gold_picked}SELECT id FROM normal LIMIT 1
), {_ISSUE}"""


_CLAIM_SQL = _claim_sql(gold=False)
_CLAIM_GOLD_SQL = _claim_sql(gold=True)


def _claim_one(*, rater, now: datetime, back: int | None = None, rng=None) -> Assignment | None:
    """Claim for `rater`: the comparison `back` only (see _CLAIM_BACK_SQL), or else the streams. `rng`
    draws the side and the gold (the simulator's seeded generator: a run is repeatable)."""
    rng = rng or random
    params = {
        "rater": rater.pk,
        # Left/right is random per assignment so position bias averages out and can be measured.
        "side": rng.choice([Assignment.Side.A, Assignment.Side.B]),
        "now": now,
        "expires": now + settings.LEASE_DURATION,
        "key": uuid.uuid4(),
    }
    if back is not None:
        row = fetch_one(_CLAIM_BACK_SQL, {**params, "back": back})
    else:
        # Gold is drawn per claim, so each rater's stream holds about GOLD_RATE gold pairs.
        gold = rng.random() < settings.LABEL["GOLD_RATE"]
        row = fetch_one(_CLAIM_GOLD_SQL if gold else _CLAIM_SQL, params)
    if row is None:
        return None
    (aid, cid, kind, priority, required, pid, ptext, phtml,
     ra_id, ra_text, ra_html, ra_words, rb_id, rb_text, rb_html, rb_words, side) = row  # fmt: skip
    prompt = loaded_instance(Prompt, id=pid, text=ptext, html=phtml)
    comparison = loaded_instance(
        Comparison,
        id=cid,
        prompt=prompt,
        kind=kind,
        priority=priority,
        required_ratings=required,
        response_a=loaded_instance(
            Response, id=ra_id, prompt=prompt, text=ra_text, html=ra_html, word_count=ra_words
        ),
        response_b=loaded_instance(
            Response, id=rb_id, prompt=prompt, text=rb_text, html=rb_html, word_count=rb_words
        ),
    )
    return loaded_instance(
        Assignment,
        id=aid,
        rater=rater,
        comparison=comparison,
        shown_left=side,
        status=Assignment.Status.LEASED,
        issued_at=now,
        lease_expires_at=params["expires"],
        form_key=params["key"],
    )


def assignment_next(*, rater, just_finished: bool = False, rng=None) -> Assignment | None:
    """The rater's open assignment, or a newly claimed one, or None when nothing is left for them.

    Raises GuidelineAckRequired when a guideline version the rater has not acknowledged is in force
    (every path, page, htmx panel, API or simulator, then shows the acknowledgment first).
    `just_finished`: the caller has just closed the rater's assignment, so skip looking for an open
    one (if another tab claimed meanwhile, the unique constraint sends us to it anyway). `rng`: the
    random.Random that draws sides and gold (default: the module's).
    """
    if not rater.is_active:
        return None  # a deactivated account claims nothing (rating_submit refuses it too)
    now = timezone.now()
    current = None if just_finished else _open_assignment(rater)
    if current is not None and not assignment_keep_or_take_back(current):
        current = None
    if current is not None:
        _require_ack(rater)
        if current.lease_expires_at > now or _lease_renewed(current, now):
            return current  # same one back on reload (a lease that ran out is renewed)
        leases_release_expired(now=now, rater=rater)
    try:
        claimed = None if just_finished else _claim_released(rater=rater, now=now, rng=rng)
        claimed = claimed or _claim_one(rater=rater, now=now, rng=rng)
    except IntegrityError:
        # The same rater claimed in another tab at the same instant: the unique "one open
        # assignment per rater" constraint refused the second; give back the winner's.
        return _open_assignment(rater)
    if claimed is not None:
        return claimed
    # The claim also finds nothing when the rater has not acknowledged the version in force.
    if not _require_ack(rater):
        return None  # no guidelines published: nothing may be rated
    if leases_release_expired(now=now):
        # Expired leases of other raters just went back into the pool: try once more.
        claimed = _claim_one(rater=rater, now=now, rng=rng)
    for _ in range(5):
        # SKIP LOCKED can come back empty while other raters hold the only open rows for a moment;
        # "nothing to rate" must mean nothing is left, so look again while open slots exist.
        if claimed is not None or not queue_has_work_for(rater=rater):
            break
        time.sleep(0.02)
        claimed = _claim_one(rater=rater, now=now, rng=rng)
    return claimed


TAKEN_BACK = (
    "The comparison you had open was set aside (its prompt was withdrawn, or waits for a staff review "
    "of a personal-data report); nothing of it was saved."
)


_TAKEN_BACK_TTL = 24 * 3600  # a rater back after a day needs no word about a comparison they forgot


def _taken_back_key(rater_id: int, joined) -> str:
    # the account's creation time too: a database created afresh (tests, a reinstall) numbers its
    # accounts from 1 again, and must not inherit another account's notice from Redis. A Redis set of
    # assignment ids, added to and taken from atomically ("set-aside", not the list the older
    # "assignment-taken-back" keys held: two withdrawals at once each kept only their own ids there)
    return f"assignment-set-aside:{rater_id}:{joined.timestamp()}"


def _note_taken_back(leases, *, at_commit: bool = True) -> None:
    """Remember, for the next `assignment_next_with_notice` of each rater, which open leases of theirs
    were taken back ((assignment id, rater id, date_joined) triples), once the taking back commits or
    now. In the cache: a notice lost while Redis is down is a notice, not data."""
    by_key: dict[str, set[int]] = {}
    for assignment_id, rater_id, joined in leases:
        by_key.setdefault(_taken_back_key(rater_id, joined), set()).add(assignment_id)
    if not by_key:
        return

    def write():
        for key, ids in by_key.items():
            cache.set_add(key, ids, timeout=_TAKEN_BACK_TTL)

    if at_commit:
        transaction.on_commit(write)
    else:
        write()


def assignment_next_with_notice(*, rater) -> tuple[Assignment | None, str | None]:
    """`assignment_next`, and TAKEN_BACK when an open lease of the rater's was set aside since they last
    asked (its prompt withdrawn or withheld, its consent withdrawn, or held for a personal-data
    review): without a word the page said everything had been judged, and the API handed out another
    comparison. A lease that merely ran out, or that another tab finished or skipped, is no news."""
    assignment = assignment_next(rater=rater)
    # the delete says whether there was a notice: two tabs asking at once tell it once
    told = cache.delete(_taken_back_key(rater.pk, rater.date_joined))
    return assignment, TAKEN_BACK if told else None


def assignment_taken_back_said(*, rater, assignment_id: int) -> bool:
    """The rater was just told what became of this assignment (a reload of it, a refused submit), or
    rated it after all (a lease taken back, then re-taken when its prompt came back): the next
    `assignment_next_with_notice` need not mention it. Other leases noted stay noted. Returns whether
    it had been noted as taken back."""
    # Redis drops a set whose last member goes
    return cache.set_discard(_taken_back_key(rater.pk, rater.date_joined), assignment_id)


def assignment_keep_or_take_back(assignment: Assignment) -> bool:
    """An open lease shown again (a reload, /rate/ or /rate/N/, the API's next): True when its prompt
    may still be shown; otherwise the lease is taken back, its slot freed, and False."""
    if _servable(assignment):
        return True
    _take_back(assignment)
    return False


def assignment_texts_shown(assignment: Assignment) -> bool:
    """Whether the rater may see this assignment's texts again (a reload, the API's detail, a form
    error shown on it). An open lease: `assignment_keep_or_take_back` (taken back otherwise). A finished
    one: no personal-data flag on its prompt waits for review (the rater who judged it before another
    flagged it read it back through the API meanwhile, when the queue, exports and training all held
    it). Withdrawn and withheld prompts never load (selectors.assignment_for_page)."""
    if assignment.status == Assignment.Status.LEASED:
        return assignment_keep_or_take_back(assignment)
    return not prompt_awaiting_review(assignment.comparison.prompt_id)


def _servable(assignment: Assignment) -> bool:
    """Whether the open lease's prompt may still be shown (consent in force, not withheld, no personal-
    data flag waiting for review)."""
    prompt = assignment.comparison.prompt
    if not prompt.comparable:
        return False
    return not prompt_awaiting_review(prompt.pk)


def _take_back(assignment: Assignment) -> None:
    """End an open lease whose prompt was withdrawn or withheld in the instant it was claimed (the
    withdrawal's take-back did not see it yet), or flagged for personal data since, freeing its slot,
    as comparisons_withdraw does."""
    with transaction.atomic():
        ended = Assignment.objects.filter(pk=assignment.pk, status=Assignment.Status.LEASED).update(
            status=Assignment.Status.EXPIRED, finished_at=timezone.now()
        )
        if ended:
            Comparison.objects.filter(pk=assignment.comparison_id).update(
                claimed_count=F("claimed_count") - 1
            )
    if ended:  # noted now, not on commit: the request that took it back says so itself
        lease = Assignment.objects.filter(pk=assignment.pk).values_list(
            "pk", "rater_id", "rater__date_joined"
        )
        _note_taken_back(lease, at_commit=False)


def _claim_released(*, rater, now: datetime, rng=None) -> Assignment | None:
    """The rater's last lease, if it ran out and was released (by the housekeeping or just above) and
    its comparison may still be theirs: claimed again, gold or not (_CLAIM_BACK_SQL). Not on the
    submit -> next path (`just_finished`), whose last assignment is the one just finished."""
    last = (
        Assignment.objects.filter(rater=rater).order_by("-id").values_list("status", "comparison_id").first()
    )
    if last is None or last[0] != Assignment.Status.EXPIRED:
        return None
    return _claim_one(rater=rater, now=now, back=last[1], rng=rng)


def assignment_renew_if_expired(assignment: Assignment) -> None:
    """The rating page opened again (a reload of /rate/N/) on the rater's own lease that ran out: renew
    it as assignment_next does, so a reload keeps the comparison whichever way the rater reloads."""
    now = timezone.now()
    if assignment.status == Assignment.Status.LEASED and assignment.lease_expires_at <= now:
        _lease_renewed(assignment, now)


def _lease_renewed(assignment: Assignment, now: datetime) -> bool:
    """Renew the rater's own lease that ran out but is still held (the housekeeping has not released
    it: its slot still counts), when its comparison may still be served. Every kind comes back alike:
    released and claimed again, an ordinary pair came straight back (it was at the top of the queue)
    and a gold pair never did, so a rater who waited out the lease and reloaded could tell gold."""
    expires = now + settings.LEASE_DURATION
    renewed = (
        Assignment.objects.filter(pk=assignment.pk, status=Assignment.Status.LEASED)
        .filter(Exists(Comparison.objects.filter(SERVABLE, pk=OuterRef("comparison_id"))))
        .update(lease_expires_at=expires)
    )
    if renewed:
        assignment.lease_expires_at = expires
    return bool(renewed)


def _require_ack(rater) -> bool:
    """Raise GuidelineAckRequired if the version in force is not acknowledged; False if none is published."""
    current = guideline_current()
    if current is None:
        return False
    if not GuidelineAcknowledgment.objects.filter(rater=rater, version=current).exists():
        raise GuidelineAckRequired(current)
    return True


# A comparison whose prompt may be shown: consent in force, not withheld, no personal-data flag waiting
# for a review (`_servable` is the same rule on one loaded lease; the home page's open-lease test uses it).
PROMPT_SHOWABLE = Q(prompt__withheld=False, prompt__consent=True) & ~Q(
    prompt_id__in=prompts_awaiting_review()
)
# What may be put in front of a rater at all (the claim SQL's rule, for the ORM's readers: the rater
# home's "nothing left" and the staff queue figures).
SERVABLE = Q(is_active=True) & PROMPT_SHOWABLE


def due_repeats() -> Q:
    """Repeats whose time has come and that nobody holds (each is one rater's: add `repeat_for`)."""
    return Q(kind=Comparison.Kind.REPEAT, claimed_count=0, available_at__lte=timezone.now())


def rater_has_work(*, rater) -> bool:
    """Whether "Start rating" leads to a comparison: an open lease of the rater's whose prompt may still
    be shown (one on a prompt held for a personal-data review led to the set-aside notice and an empty
    page), or work in the queue (`queue_has_work_for`)."""
    showable = Comparison.objects.filter(PROMPT_SHOWABLE, pk=OuterRef("comparison_id"))
    open_lease = (
        Assignment.objects.filter(rater=rater, status=Assignment.Status.LEASED)
        .filter(Exists(showable))
        .exists()
    )
    return open_lease or queue_has_work_for(rater=rater)


def queue_has_work_for(*, rater) -> bool:
    """Whether the ordinary queue or a due repeat still holds something for this rater.

    Gold alone does not count: a stream of nothing but gold pairs would tell the rater they are gold.
    The claim's `ordinary` probe (_CLAIM_GOLD_SQL) is the same rule in SQL.
    """
    seen = Assignment.objects.filter(
        rater=rater,
        comparison=OuterRef("pk"),
        status__in=[Assignment.Status.LEASED, Assignment.Status.DONE, Assignment.Status.SKIPPED],
    )
    open_normal = Q(kind=Comparison.Kind.NORMAL, claimed_count__lt=F("required_ratings"))
    due_repeat = due_repeats() & Q(repeat_for=rater)
    return Comparison.objects.filter(SERVABLE, open_normal | due_repeat).exclude(Exists(seen)).exists()


def assignment_skip(*, rater, assignment_id: int, reason: str) -> Assignment:
    reason = (reason or "").strip()
    if is_blank(reason):  # a zero-width space alone was stored as the reason
        raise QueueError("Say why you skip (for example: outside my expertise, broken prompt).")
    with transaction.atomic():
        assignment = Assignment.objects.select_for_update().filter(pk=assignment_id, rater=rater).first()
        if assignment is None:
            raise Assignment.DoesNotExist
        if assignment.status != Assignment.Status.LEASED:
            raise QueueError("This comparison is no longer assigned to you.")
        assignment.status = Assignment.Status.SKIPPED
        assignment.skip_reason = scrub(reason).text[:500]  # scrubbed like a rationale
        assignment.finished_at = timezone.now()
        assignment.save(update_fields=["status", "skip_reason", "finished_at"])
        Comparison.objects.filter(pk=assignment.comparison_id).update(claimed_count=F("claimed_count") - 1)
    return assignment


def leases_release_expired(*, now: datetime | None = None, rater=None, limit: int = 1000) -> int:
    """Expire leases past their deadline and give their slots back to the pool. Returns how many."""
    now = now or timezone.now()
    with transaction.atomic():
        qs = Assignment.objects.filter(status=Assignment.Status.LEASED, lease_expires_at__lte=now)
        if rater is not None:
            qs = qs.filter(rater=rater)
        # skip_locked: a lease being rated or skipped right now is left to that request.
        rows = list(
            qs.select_for_update(skip_locked=True).order_by("id").values_list("id", "comparison_id")[:limit]
        )
        if not rows:
            return 0
        Assignment.objects.filter(pk__in=[r[0] for r in rows]).update(
            status=Assignment.Status.EXPIRED, finished_at=now
        )
        per_comparison = Counter(r[1] for r in rows)
        for comparison_id in sorted(per_comparison):  # id order: see the module docstring
            Comparison.objects.filter(pk=comparison_id).update(
                claimed_count=F("claimed_count") - per_comparison[comparison_id]
            )
    return len(rows)


# What a rating on a lease taken back by a withdrawal or a withholding is told (here and ratings.py).
WITHDRAWN_WHILE_OPEN = (
    "This comparison was withdrawn while you had it open. Nothing was saved; please take the next one."
)


def assignment_reclaim_expired(*, assignment: Assignment) -> None:
    """Re-take the slot of an expired assignment whose rater submits late, if the slot is still free.

    Called inside the rating transaction with `assignment` locked. Raises QueueError when the
    comparison was filled by other raters in the meantime, or was withdrawn (deactivated, or its
    prompt withheld for personal data or without consent). Gold pairs ignore required_ratings, as in
    the claim. The caller (services/ratings.py) has already applied the claim's other rules to a
    lapsed lease: the guidelines in force acknowledged, no personal-data flag holding the prompt back.

    When a reload meanwhile issued the same comparison to the same rater again (an expired lease
    does not keep it from them), that open lease is ended and its slot passes to the late rating:
    left open, it would be served on every reload and every submit of it refused (one rating per
    comparison), and claimed_count would count this rater twice.
    """
    # Locked first: a reload claiming this comparison back in the same instant either committed its
    # lease before (and _release_reissued_lease below sees it) or skips the locked row. Unlocked, a
    # lease committed between that check and this rating stayed open on a comparison the rater had
    # rated: served on every reload, each submit refused.
    comparison = (
        Comparison.objects.select_for_update(of=("self",))
        .filter(pk=assignment.comparison_id)
        .values("is_active", "prompt__withheld", "prompt__consent")
    )
    state = comparison.first()
    if state is None or not state["is_active"] or state["prompt__withheld"] or not state["prompt__consent"]:
        # A lease ended before its deadline was taken back by the withdrawal (comparisons_withdraw):
        # telling that rater their time ran out would be wrong.
        taken_back = (
            assignment.finished_at is not None and assignment.finished_at < assignment.lease_expires_at
        )
        raise QueueError(
            WITHDRAWN_WHILE_OPEN
            if taken_back
            else "Your time on this comparison ran out and it has been withdrawn. "
            "Nothing was saved; please take the next one."
        )
    skipped = Assignment.objects.filter(
        rater_id=assignment.rater_id, comparison_id=assignment.comparison_id, status=Assignment.Status.SKIPPED
    )
    if skipped.exists():  # the old tab's late submit after the rater skipped it in a new one
        raise QueueError("You skipped this comparison since. Nothing was saved; please take the next one.")
    if _release_reissued_lease(assignment):
        return  # the re-issued lease's slot is this rating's now: claimed_count stays right
    updated = (
        Comparison.objects.filter(pk=assignment.comparison_id)
        .filter(Q(kind=Comparison.Kind.GOLD) | Q(claimed_count__lt=F("required_ratings")))
        .update(claimed_count=F("claimed_count") + 1)
    )
    if updated != 1:
        raise QueueError(
            "Your time on this comparison ran out and other raters have completed it. "
            "Nothing was saved; please take the next one."
        )


def _release_reissued_lease(assignment: Assignment) -> bool:
    """End the rater's open lease on the same comparison as `assignment`, if any; True if there was one.

    QueueError when another transaction holds that lease right now (a skip, a submit, a withdrawal or
    the housekeeping): the late rating is refused rather than wait against the lock order.
    """
    # The caller holds the comparison row, so these assignment rows are taken after it, against the
    # order everywhere else (a skip of that lease, a withdrawal, the housekeeping hold the assignment and
    # wait for the comparison): NOWAIT, and a lease someone holds right now refuses this late rating
    # instead of deadlocking with them.
    reissued = (
        Assignment.objects.select_for_update(nowait=True)
        .filter(
            rater_id=assignment.rater_id,
            comparison_id=assignment.comparison_id,
            status=Assignment.Status.LEASED,
        )
        .exclude(pk=assignment.pk)
    )
    try:
        ids = list(reissued.values_list("pk", flat=True))
    except OperationalError:
        raise QueueError(
            "This comparison is being changed in another tab of yours right now. "
            "Nothing was saved; please take the next one."
        ) from None
    return bool(
        ids
        and Assignment.objects.filter(pk__in=ids, status=Assignment.Status.LEASED).update(
            status=Assignment.Status.EXPIRED, finished_at=timezone.now()
        )
    )


def comparisons_withdraw(comparison_ids) -> int:
    """Take comparisons away from raters: open leases on them are taken back (a rating sent on one is
    refused: the comparison is withdrawn) and the comparisons deactivated. Returns how many leases
    were taken back. Call inside a transaction. Lock order as in the claim: assignment rows, then
    comparison rows in id order. A claim committing in the very instant (its lease not yet visible
    here) keeps that lease; its comparison is inactive once it ends."""
    ids = sorted(comparison_ids)
    leases = list(
        Assignment.objects.select_for_update(of=("self",))
        .filter(comparison_id__in=ids, status=Assignment.Status.LEASED)
        .order_by("id")
        .values_list("id", "comparison_id", "rater_id", "rater__date_joined")
    )
    Assignment.objects.filter(pk__in=[lease[0] for lease in leases]).update(
        status=Assignment.Status.EXPIRED, finished_at=timezone.now()
    )
    _note_taken_back((lease_id, rater_id, joined) for lease_id, _, rater_id, joined in leases)
    taken = Counter(lease[1] for lease in leases)
    for comparison_id in ids:
        Comparison.objects.filter(pk=comparison_id).update(
            is_active=False, claimed_count=F("claimed_count") - taken[comparison_id]
        )
    return len(leases)
