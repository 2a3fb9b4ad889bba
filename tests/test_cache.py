"""config/cache.py: the Redis cache answers a miss while Redis is unreachable, and says so once."""

import logging

from config import cache as fail_open
from config.cache import FailOpenRedisCache


def test_a_dead_redis_is_a_miss_and_one_warning(caplog, monkeypatch):
    monkeypatch.setattr(fail_open, "_last_warning", None)
    c = FailOpenRedisCache("redis://127.0.0.1:1/0", {"OPTIONS": {"socket_connect_timeout": 1}})
    with caplog.at_level(logging.WARNING, logger="config.cache"):
        assert c.get("k", "fallback") == "fallback"
        assert c.set("k", 1) is None and c.add("k", 1) is False and c.get_many(["k"]) == {}
        assert c.delete("k") is False and c.has_key("k") is False
        assert c.set_add("k", {1}, timeout=60) is None and c.set_discard("k", 1) is False
    assert len([r for r in caplog.records if "cache unavailable" in r.getMessage()]) == 1


def test_a_set_expires_and_tells_whether_a_member_was_there():
    from django.core.cache import cache

    cache.delete("set-test")
    cache.set_add("set-test", {1, 2}, timeout=60)
    cache.set_add("set-test", {3}, timeout=60)
    key = cache.make_and_validate_key("set-test")
    assert 0 < cache._cache.get_client(key).ttl(key) <= 60  # the second add restarted it, kept it
    assert [cache.set_discard("set-test", m) for m in (2, 2, 4)] == [True, False, False]
    assert cache.delete("set-test") is True and cache.delete("set-test") is False
