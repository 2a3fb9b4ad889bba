"""config/cache.py: the Redis cache answers a miss while Redis is unreachable, and says so once."""

import logging

from config import cache as fail_open
from config.cache import FailOpenRedisCache


def test_a_dead_redis_is_a_miss_and_one_warning(caplog, monkeypatch):
    monkeypatch.setattr(fail_open, "_last_warning", None)
    monkeypatch.setattr(fail_open, "_skip_until", 0.0)
    c = FailOpenRedisCache("redis://127.0.0.1:1/0", {"OPTIONS": {"socket_connect_timeout": 1}})
    with caplog.at_level(logging.WARNING, logger="config.cache"):
        assert c.get("k", "fallback") == "fallback"
        assert c.set("k", 1) is None and c.add("k", 1) is False and c.get_many(["k"]) == {}
        assert c.delete("k") is False and c.has_key("k") is False
    assert len([r for r in caplog.records if "cache unavailable" in r.getMessage()]) == 1


def test_after_a_failure_redis_is_not_asked_again_for_a_while(monkeypatch):
    # a Redis that accepts connections and never answers cost each cache call its socket timeout
    # (several per request): the API's 503 came after half a minute
    import socket
    import threading
    import time

    monkeypatch.setattr(fail_open, "_skip_until", 0.0)
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    held = []
    stop = threading.Event()

    def accept():  # accepts, never answers
        silent.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(silent.accept()[0])
            except OSError:
                pass

    threading.Thread(target=accept, daemon=True).start()
    port = silent.getsockname()[1]
    c = FailOpenRedisCache(f"redis://127.0.0.1:{port}/0", {"OPTIONS": {"socket_timeout": 1}})
    try:
        started = time.monotonic()
        assert c.get("k", "miss") == "miss"
        first = time.monotonic() - started
        started = time.monotonic()
        for _ in range(5):
            assert c.get("k", "miss") == "miss" and c.add("k", 1) is False
        assert first >= 0.9 and time.monotonic() - started < 0.1
        monkeypatch.setattr(fail_open, "_skip_until", 0.0)  # the interval is over: asked again
        started = time.monotonic()
        assert c.get("k", "miss") == "miss" and time.monotonic() - started >= 0.9
    finally:
        stop.set()
        for conn in held:
            conn.close()
        silent.close()
