"""API tokens for programs: staff create and revoke them; only a SHA-256 digest is stored.

A key looks like `rlhf_<prefix>_<secret>`; the prefix (not secret) finds the row, the digest of the
whole key is compared in constant time. The key is returned once, at creation, and never again.

Scopes narrow what a token may do, never widen it (a rater's token with `admin` is still a rater).
Each API view names the scope it needs (`token_scope`); `token_allows` is the one rule:
- a view's own scope allows every method on it;
- `read` allows the safe methods (GET, HEAD, OPTIONS) of every view except those whose scope is
  `rate`, `ingest`, `export` or `admin` (claiming an assignment, bulk data and tokens are never "just
  reading": the prompt list pages through every prompt text, those without consent or withheld for
  personal data included, which an export leaves out).
A token that creates tokens (`admin`) grants nothing it does not hold and nothing that outlives it,
and only a superuser may create a token for a superuser:
- what it mints has at most its scopes and expires no later than it does;
- the new row records it (`parent`); revoking a token revokes everything it minted, transitively, in
  one transaction, and a token is refused while any token in its minting chain is revoked, expired or
  belongs to an inactive account (so a row revoked some other way, e.g. a direct update, still cuts
  off what it minted);
- it mints only for its own account or for non-staff accounts (raters, e.g. simulated ones), never
  for another staff account: a program holding one staff member's token cannot become another. Signed
  in (a session, no token), a staff member with the role creates tokens for their own account and for
  raters; only a superuser creates them for another staff account.
A token may also expire (`expires_at`); an expired token is refused like a revoked one. A token is
refused once its account's standing (rater, staff, superuser) is not what it was when the token was
made, and so is what it minted: promoting a rater must not hand staff powers to keys made for the
rater (by anyone, with every scope by default), and demoting staff ends what they minted as staff.
Such tokens are revoked, for good, when the account is saved with its new standing (or when one of
them is next presented): changing the standing back does not bring them back.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from labelapp.models import TOKEN_SCOPES, ApiToken, token_scopes_all
from labelapp.rendering import control_character
from labelapp.services.roles import permission_check

KEY_PREFIX = "rlhf_"
# `read` does not open their GETs: bulk data (exports, every prompt text), tokens, and the rating
# endpoints (asking for the next assignment claims one).
PRIVATE_SCOPES = frozenset({"rate", "ingest", "export", "admin"})
MAX_EXPIRY_DAYS = 3650
# The shape token_create gives a key: hex prefix (secrets.token_hex(6)), URL-safe secret. Anything else
# is refused before the database is asked (a NUL in the prefix was a DataError there: a 500).
_KEY_SHAPE = re.compile(re.escape(KEY_PREFIX) + r"([0-9a-f]{1,16})_[A-Za-z0-9_-]+")


class TokenError(ValueError):
    """A token request that cannot be honoured (unknown scope, bad expiry); the message says why."""


def token_scopes_clean(scopes) -> list[str]:
    """The scopes in TOKEN_SCOPES order, or TokenError naming the unknown ones (None: all)."""
    if scopes is None:
        return token_scopes_all()
    if isinstance(scopes, str) or not all(isinstance(x, str) for x in scopes):
        raise TokenError(f"scopes must be a list of names from: {', '.join(TOKEN_SCOPES)}.")
    unknown = sorted(set(scopes) - set(TOKEN_SCOPES))
    if unknown:
        raise TokenError(f"Unknown scope(s): {', '.join(unknown)}. Known: {', '.join(TOKEN_SCOPES)}.")
    if not scopes:
        raise TokenError("A token needs at least one scope.")
    return [x for x in TOKEN_SCOPES if x in scopes]


def token_allows(*, token: ApiToken, scope: str, safe: bool) -> bool:
    """Whether `token` may call a view that needs `scope`, with a safe HTTP method (GET, HEAD, OPTIONS)
    or not (see the module docstring)."""
    granted = token.scopes or []
    if scope in granted:
        return True
    return safe and "read" in granted and scope not in PRIVATE_SCOPES


def account_standing(user) -> str:
    """ "superuser", "staff" or "rater": what decides who may make and use a token for the account."""
    return "superuser" if user.is_superuser else "staff" if user.is_staff else "rater"


# The same rule in SQL, for the minting chain.
_STANDING_SQL = "CASE WHEN u.is_superuser THEN 'superuser' WHEN u.is_staff THEN 'staff' ELSE 'rater' END"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


NAME_MAX = ApiToken._meta.get_field("name").max_length


def token_create(
    *, user, name: str, created_by=None, scopes=None, expires_in_days: int | None = None, via=None
) -> tuple[ApiToken, str]:
    """A new token for `user`; returns (row, key). The key is not stored and cannot be shown again.
    `scopes` None = all of them; `expires_in_days` None = never. `via`: the token the request came
    with, if any: a token mints nothing wider than itself (its scopes by default, never more; its
    expiry at the latest; only for its own account or a non-staff one) and is recorded as the new
    token's parent. TokenError for anything that cannot be honoured; NotPermitted when `created_by`
    may not create tokens (None: a command)."""
    permission_check(created_by, "token_create")
    if created_by is not None and not created_by.is_superuser and user.is_staff and user.pk != created_by.pk:
        # A token acts with its account's permissions: one minted for another staff account would hand
        # its creator that account's roles.
        raise TokenError(
            "Only a superuser may create a token for another staff account (it would act with that "
            "account's permissions); create one for your own account or for a rater."
        )
    if "\x00" in name:
        raise TokenError("The name must be plain text (no NUL character).")
    if (control := control_character(name)) is not None:
        raise TokenError(
            f"The name must be one line of plain text (it holds the control character {control})."
        )
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        # one rule for the API, the pages and the command (the command stored "" and cut long names)
        raise TokenError(f"Give the token a name of 1 to {NAME_MAX} characters: what it is for.")
    refused = _out_of_reach(user, by=created_by, via=via)
    if refused == "superuser":
        raise TokenError("Only a superuser may create a token for a superuser account.")
    if refused == "staff":
        raise TokenError(
            "A token may create tokens only for its own account or for non-staff accounts (raters), "
            "not for another staff account; sign in to create one for another staff member."
        )
    scopes = token_scopes_clean(scopes if scopes is not None or via is None else via.scopes)
    expires_at = _expiry(expires_in_days)
    if via is not None:
        wider = sorted(set(scopes) - set(via.scopes))
        if wider:
            raise TokenError(f"This token cannot grant scope(s) it does not hold: {', '.join(wider)}.")
        if via.expires_at is not None:
            if expires_at is not None and expires_at > via.expires_at:
                until = f"{via.expires_at:%Y-%m-%d %H:%M} UTC"
                raise TokenError(f"This token expires {until}; what it creates cannot outlive it.")
            expires_at = expires_at or via.expires_at
    prefix = secrets.token_hex(6)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(
        user=user,
        name=name,
        prefix=prefix,
        digest=_digest(key),
        created_by=created_by,
        scopes=scopes,
        expires_at=expires_at,
        parent=via,
        owner_standing=account_standing(user),
    )
    return token, key


def _out_of_reach(owner, *, by, via) -> str | None:
    """Whose tokens a request may create or revoke (one rule for both): "superuser" when `owner` is a
    superuser and the account `by` is not; "staff" when the request came with a token (`via`) of
    another account and `owner` is staff; None when it may."""
    if owner.is_superuser and by is not None and not by.is_superuser:
        return "superuser"
    if via is not None and owner.pk != via.user_id and (owner.is_staff or owner.is_superuser):
        return "staff"
    return None


def _expiry(expires_in_days):
    if expires_in_days is None:
        return None
    if isinstance(expires_in_days, bool) or not isinstance(expires_in_days, int):
        raise TokenError("expires_in_days must be a whole number of days.")
    if not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
        raise TokenError(f"expires_in_days must be between 1 and {MAX_EXPIRY_DAYS}.")
    return timezone.now() + timedelta(days=expires_in_days)


def token_revoke(*, token: ApiToken, by=None, via=None) -> ApiToken:
    """Revoke `token` and every token it minted, transitively, in one transaction. Descendants of an
    already revoked token are swept too (it may have been revoked by a direct update).
    `by`/`via` (the account and the token a request came with) follow token_create's rules: a token
    revokes only tokens of its own account or of non-staff accounts, and only a superuser revokes a
    superuser's tokens. TokenError otherwise; NotPermitted when `by` may not revoke tokens."""
    if by is None or token.user_id != by.pk:  # anyone may revoke their own (a leaked key)
        permission_check(by, "token_revoke")
    refused = _out_of_reach(token.user, by=by, via=via)
    if refused == "superuser":
        raise TokenError("Only a superuser may revoke a superuser's tokens.")
    if refused == "staff":
        raise TokenError(
            "A token may revoke tokens only of its own account or of non-staff accounts (raters), "
            "not another staff member's; sign in to revoke those."
        )
    with transaction.atomic():
        ids = _minted_by(token.pk)
        ApiToken.objects.filter(pk__in=ids, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token.refresh_from_db()
    return token


def tokens_stop_after_standing_change(user) -> int:
    """Revoke `user`'s tokens made under another standing than the account's now, and what they minted
    (returns how many rows). Called when an account is saved (labelapp/apps.py) and when such a token
    is presented: a token stopped by a demotion came back to life when the account was restored (a
    compromised staff account demoted to cut off its keys, then restored after a password reset, got
    its old keys back)."""
    stale = ApiToken.objects.filter(user=user, revoked_at__isnull=True).exclude(
        owner_standing=account_standing(user)
    )
    ids = set()
    for pk in stale.values_list("pk", flat=True):
        ids |= _minted_by(pk)
    if not ids:
        return 0
    return ApiToken.objects.filter(pk__in=ids, revoked_at__isnull=True).update(revoked_at=timezone.now())


def _minted_by(pk: int) -> set[int]:
    """`pk` and the ids of every token minted from it, at any depth (one query per generation)."""
    ids, frontier = {pk}, {pk}
    while frontier:
        frontier = set(ApiToken.objects.filter(parent_id__in=frontier).values_list("pk", flat=True)) - ids
        ids |= frontier
    return ids


# A token's ancestors (its parent, the parent's parent, ...) that can no longer act: revoked, expired or
# of an inactive account. One round trip whatever the depth; UNION (not UNION ALL) ends the walk even
# on a cycle (none can be made: `parent` is set once, to an older row).
_DEAD_ANCESTOR_SQL = """
WITH RECURSIVE chain(id, parent_id) AS (
    SELECT id, parent_id FROM labelapp_apitoken WHERE id = %(parent)s
    UNION
    SELECT t.id, t.parent_id FROM labelapp_apitoken t JOIN chain c ON t.id = c.parent_id
)
SELECT EXISTS (
    SELECT 1 FROM chain c
    JOIN labelapp_apitoken t ON t.id = c.id
    JOIN auth_user u ON u.id = t.user_id
    WHERE t.revoked_at IS NOT NULL OR t.expires_at <= %(now)s OR NOT u.is_active
       OR t.owner_standing <> STANDING
)
""".replace("STANDING", _STANDING_SQL)


def _chain_is_dead(parent_id: int, now) -> bool:
    """Whether any token from `parent_id` up the minting chain is revoked, expired, of an inactive
    account or of one whose standing changed."""
    with connection.cursor() as cursor:
        cursor.execute(_DEAD_ANCESTOR_SQL, {"parent": parent_id, "now": now})
        return bool(cursor.fetchone()[0])


def token_state(token: ApiToken, now=None) -> str:
    """Whether a token works, in the words a listing shows: "revoked", "expired", "account inactive",
    "account promoted or demoted" (refused since: see the module docstring), "minted from a stopped
    token" (one up its minting chain is any of those) or "active". The chain costs one query, only
    for a token minted by another."""
    now = now or timezone.now()
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    if not token.user.is_active:
        return "account inactive"
    if token.owner_standing != account_standing(token.user):
        return "account promoted or demoted"
    if token.parent_id is not None and _chain_is_dead(token.parent_id, now):
        return "minted from a stopped token"
    return "active"


def token_authenticate(*, key: str) -> ApiToken | None:
    """The active token for `key`, or None: not revoked or expired, of an active account whose
    standing is what it was when the token was made, and minted (if by a token) from a chain of such
    tokens. Marks it used (at most once a minute, to spare
    writes)."""
    match = _KEY_SHAPE.fullmatch(key) if len(key) <= 200 else None
    if match is None:
        return None
    prefix = match.group(1)
    token = ApiToken.objects.select_related("user").filter(prefix=prefix, revoked_at__isnull=True).first()
    if token is None or not hmac.compare_digest(token.digest, _digest(key)):
        return None
    now = timezone.now()
    state = token_state(token, now)
    if state == "account promoted or demoted":  # changed by an update that sent no signal: for good now
        tokens_stop_after_standing_change(token.user)
    if state != "active":
        return None
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token
