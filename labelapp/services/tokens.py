"""API tokens for programs: staff create and revoke them; only a SHA-256 digest is stored.

A key looks like `rlhf_<prefix>_<secret>`; the prefix (not secret) finds the row, the digest of the
whole key is compared in constant time. The key is returned once, at creation, and never again.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.db import transaction
from django.utils import timezone

from labelapp.models import ApiToken

KEY_PREFIX = "rlhf_"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def token_create(*, user, name: str, created_by=None) -> tuple[ApiToken, str]:
    """A new token for `user`; returns (row, key). The key is not stored and cannot be shown again."""
    prefix = secrets.token_hex(6)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(
        user=user,
        name=name.strip()[:100] or "unnamed",
        prefix=prefix,
        digest=_digest(key),
        created_by=created_by,
    )
    return token, key


def token_revoke(*, token: ApiToken) -> ApiToken:
    with transaction.atomic():
        ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token.refresh_from_db()
    return token


def token_authenticate(*, key: str) -> ApiToken | None:
    """The active token for `key`, or None. Marks it used (at most once a minute, to spare writes)."""
    if not key.startswith(KEY_PREFIX) or key.count("_") < 2 or len(key) > 200:
        return None
    prefix = key[len(KEY_PREFIX) :].split("_", 1)[0]
    token = ApiToken.objects.select_related("user").filter(prefix=prefix, revoked_at__isnull=True).first()
    if token is None or not hmac.compare_digest(token.digest, _digest(key)):
        return None
    if not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token
