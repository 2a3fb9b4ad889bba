"""`make run`: one command that brings up the whole loop on a developer's machine.

Migrates, seeds the demo project (idempotent), then starts and supervises the same services as
docker-compose.yml: web (gunicorn), worker (queue `default`), gpu-worker (queues RM_QUEUE and
POLICY_QUEUE, `gpu` by default, one task at a time), beat. A taken PORT stops it before anything
starts. Prints the URL and the demo accounts. Ctrl-C stops them all; the embedded PostgreSQL and
Redis keep running for the next start (`make stop` stops them).

Environment: PORT (default 8000), HOST (default 127.0.0.1), WEB_WORKERS (default 3), WEB_THREADS
(default 4, config/gunicorn.py), plus everything in .env.example.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent


def stop_signals() -> tuple[int, ...]:
    """What stops the services: Ctrl-C, `kill`, and the terminal closing (SIGHUP: the services run in
    their own sessions and ran on, orphaned; the next `make run` found the port taken, `make stop` knew
    nothing), unless hangups are ignored as `nohup make run &` asks."""
    signals = [signal.SIGINT, signal.SIGTERM]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signals.append(signal.SIGHUP)
    return tuple(signals)


def _django_env() -> dict[str, str]:
    """Resolve the embedded services once so every child uses the same URLs."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.conf import settings

    env = dict(os.environ)
    env.setdefault("DATABASE_URL", settings.DATABASE_URL)
    env.setdefault("REDIS_URL", settings.REDIS_URL)
    return env


def _bare_host(host: str) -> str:
    """An IPv6 host without the brackets a URL gives it ([::1] -> ::1)."""
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _url_host(host: str) -> str:
    """The host as a URL or gunicorn's --bind writes it: an IPv6 one in brackets (::1:8000 is no address)."""
    bare = _bare_host(host)
    return f"[{bare}]" if ":" in bare else bare


def bind_address(host: str, port: str) -> str:
    """host:port as gunicorn reads it."""
    return f"{_url_host(host)}:{port}"


def port_in_use_message(host: str, port: str) -> str | None:
    """Why the web server could not listen at host:port, before anything starts; None when it can.
    A taken port printed the URL, then "web exited with code 1", the cause only in web.log."""
    try:
        number = int(port)
    except ValueError:
        return f"PORT={port!r} is not a port number."
    if not 1 <= number <= 65535:  # 99999 was an OverflowError traceback, 0 a random port
        return f"PORT={port!r} is not a port number (1 to 65535)."
    bare = _bare_host(host)
    try:
        with socket.socket(socket.AF_INET6 if ":" in bare else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
            probe.bind((bare, number))
    except socket.gaierror as exc:
        return f"HOST={host!r} is not an address this machine has ({exc.strerror})."
    except OSError as exc:
        why = f"Cannot listen on {host}:{port} ({exc.strerror}): another program has it?"
        return f"{why} Try PORT=8001 make run."
    return None


def _gpu_queues() -> str:
    """The training worker's queues: those of reward-model runs and policy rounds (RM_QUEUE,
    POLICY_QUEUE), so moving either in .env needs no edit here."""
    from django.conf import settings

    return ",".join(dict.fromkeys([settings.TRAINING["QUEUE"], settings.POLICY["QUEUE"]]))


def services(
    python: str, host: str, port: str, web_workers: str, gpu_queues: str = "gpu"
) -> dict[str, list[str]]:
    """The processes `make run` supervises; docker-compose.yml names the same four."""
    celery = [python, "-m", "celery", "-A", "config"]
    return {
        "web": [
            python,
            "-m",
            "gunicorn",
            "config.wsgi",
            "-c",  # gthread workers: a long streamed export outlives the 30 s worker timeout
            "config/gunicorn.py",
            "--bind",
            bind_address(host, port),
            "--workers",
            web_workers,
            "--access-logfile",
            "-",
        ],
        "worker": [
            *celery,
            "worker",
            "-Q",
            "default",
            "--concurrency",
            "2",
            "-n",
            "default@%h",
            "--loglevel",
            "INFO",
        ],
        "gpu-worker": [
            *celery,
            "worker",
            "-Q",
            gpu_queues,
            "--concurrency",
            "1",
            "--prefetch-multiplier",
            "1",
            "-n",
            "gpu@%h",
            "--loglevel",
            "INFO",
        ],
        "beat": [*celery, "beat", "--loglevel", "INFO"],
    }


def main() -> int:
    # HOST and PORT checked before Django starts, which starts the embedded PostgreSQL and Redis: a
    # taken port stopped this command and left both running. The .env file is read here as the
    # settings read it (a value already in the environment wins).
    if (BASE_DIR / ".env").exists():
        environ.Env.read_env(BASE_DIR / ".env")
    host, port = os.environ.get("HOST", "127.0.0.1"), os.environ.get("PORT", "8000")
    refused = port_in_use_message(host, port)
    if refused:
        print(f"  {refused}", file=sys.stderr)
        return 1
    env = _django_env()
    python = sys.executable
    subprocess.run(
        [python, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR, env=env, check=True
    )
    # a database with real prompts (DATABASE_URL pointed at one) gets no demo project in its queue
    subprocess.run([python, "manage.py", "demo", "--skip-if-real"], cwd=BASE_DIR, env=env, check=True)

    log_dir = BASE_DIR / ".data" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    # before the services start: a signal in between killed this process and orphaned them
    for signum in stop_signals():
        signal.signal(signum, stop)
    procs: dict[str, subprocess.Popen] = {}
    supervised = services(python, host, port, os.environ.get("WEB_WORKERS", "3"), _gpu_queues())
    for name, cmd in supervised.items():
        log = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 (kept open for the child's lifetime)
        procs[name] = subprocess.Popen(
            cmd, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    url = f"http://{bind_address(host, port)}/"
    print(f"\n  Preference loop running at {url}   (admin: {url}admin/)")
    print(f"  Logs: {log_dir}/{{web,worker,gpu-worker,beat}}.log   Ctrl-C stops everything.\n", flush=True)

    exit_code = 0
    while not stopping:
        for name, proc in procs.items():
            if proc.poll() is not None:
                log = log_dir / f"{name}.log"
                tail = log.read_text(errors="replace").splitlines()[-8:] if log.exists() else []
                print(f"  {name} exited with code {proc.returncode}; the end of {log}:", file=sys.stderr)
                print("\n".join(f"    {line}" for line in tail), file=sys.stderr)
                stopping, exit_code = True, 1
                break
        time.sleep(0.5)
    for proc in procs.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.time() + 15
    for proc in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    print("  stopped.")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
