"""The cache backend: Django's Redis cache that degrades to a miss while Redis is unreachable.

Nothing in this cache is the only copy of anything: sessions are written through to PostgreSQL
(`cached_db`), DRF's throttle counters and the quality dashboard's figures are recomputed. With
Django's own backend a Redis outage made every request a 500 (sessions and throttling read the cache
before any view ran), where the broker check would have answered 503 with a message. So reads answer
"not cached" and writes are skipped while Redis is down, with a warning in the log; throttling is off
for that time (availability over rate limits), and everything else keeps working on PostgreSQL.
"""

from __future__ import annotations

import functools
import logging
import time

from django.core.cache.backends.redis import RedisCache
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)
WARN_EVERY_SECONDS = 30.0  # one line per interval, not one per cache call (hundreds a second under load)
_last_warning: float | None = None


def _warn(exc: BaseException, name: str) -> None:
    global _last_warning
    now = time.monotonic()
    if _last_warning is None or now - _last_warning >= WARN_EVERY_SECONDS:
        _last_warning = now
        log.warning(
            "cache unavailable (%s: %s): %s answered as a miss, as is every call while Redis does not "
            "answer (this warning at most every %.0f s)",
            type(exc).__name__,
            exc,
            name,
            WARN_EVERY_SECONDS,
        )


def _fail_open(fallback):
    """Run the cache call; while Redis is unreachable return `fallback(*args, **kwargs)` instead."""

    def wrap(method):
        @functools.wraps(method)
        def call(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except _DOWN as exc:
                _warn(exc, method.__name__)
                return fallback(*args, **kwargs)

        return call

    return wrap


def _default(key, default=None, *args, **kwargs):
    return default


class FailOpenRedisCache(RedisCache):
    get = _fail_open(_default)(RedisCache.get)
    get_many = _fail_open(lambda *a, **k: {})(RedisCache.get_many)
    has_key = _fail_open(lambda *a, **k: False)(RedisCache.has_key)
    add = _fail_open(lambda *a, **k: False)(RedisCache.add)
    set = _fail_open(lambda *a, **k: None)(RedisCache.set)
    set_many = _fail_open(lambda *a, **k: [])(RedisCache.set_many)
    touch = _fail_open(lambda *a, **k: False)(RedisCache.touch)
    delete = _fail_open(lambda *a, **k: False)(RedisCache.delete)
    delete_many = _fail_open(lambda *a, **k: None)(RedisCache.delete_many)
    clear = _fail_open(lambda *a, **k: None)(RedisCache.clear)

    # Sets: what several processes add to and take from at once (the leases of a rater's that were
    # set aside). A get-then-set of a list there lost one writer's entries.
    @_fail_open(lambda *a, **k: None)
    def set_add(self, key, members, timeout):
        """Add `members` to the set at `key` and (re)start its expiry, as one step."""
        key = self.make_and_validate_key(key)
        client = self._cache.get_client(key, write=True)
        with client.pipeline() as pipe:  # MULTI/EXEC: no reader sees the set without its expiry
            pipe.sadd(key, *members)
            pipe.expire(key, self.get_backend_timeout(timeout))
            pipe.execute()

    @_fail_open(lambda *a, **k: False)
    def set_discard(self, key, member) -> bool:
        """Take `member` out of the set at `key`; whether it was there."""
        key = self.make_and_validate_key(key)
        return bool(self._cache.get_client(key, write=True).srem(key, member))
