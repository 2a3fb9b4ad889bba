"""The web process keeps streaming past gunicorn's worker timeout (a long export was cut off).

A sync worker reports to the master only between requests, so one still writing its body after
`timeout` seconds was killed and the client got a truncated download. The web command line
(`config/run.py`, the same flags as the Dockerfile and docker-compose.yml) loads config/gunicorn.py:
gthread workers, whose main loop reports in every second while a thread streams.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from config.run import services
from tests.gunicorn_slow_app import LINES, STEP

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 2  # seconds; the app streams for LINES * STEP = 4


def no_control_socket() -> list[str]:
    """Recent gunicorn opens ~/.gunicorn/gunicorn.ctl; a second master on the machine must not take it."""
    from gunicorn.config import KNOWN_SETTINGS

    return ["--no-control-socket"] if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS) else []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_all(port: int, deadline: float) -> bytes:
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    response = conn.getresponse()
    body = b""
    try:
        while chunk := response.read1(65536):
            body += chunk
    except http.client.IncompleteRead as exc:  # the worker died mid-body
        body += exc.partial
    except ConnectionError:
        pass
    conn.close()
    return body


def test_a_streamed_response_outlives_the_worker_timeout(tmp_path):
    port = _free_port()
    cmd = services(sys.executable, "127.0.0.1", str(port), "1")["web"]
    cmd[cmd.index("config.wsgi")] = "tests.gunicorn_slow_app:app"  # every other flag as served
    cmd += ["--timeout", str(TIMEOUT), *no_control_socket()]  # the command line wins over the config file
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        body = _get_all(port, deadline=time.monotonic() + 30)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
    assert LINES * STEP > TIMEOUT
    assert body.decode().splitlines() == [f"line {i}" for i in range(LINES)], log.read_text()
    assert not re.search(r"WORKER TIMEOUT", log.read_text())


def test_every_way_the_web_process_starts_loads_the_gunicorn_config():
    assert "-c config/gunicorn.py" in " ".join(services("python", "h", "1", "1")["web"])
    assert "exec gunicorn config.wsgi -c config/gunicorn.py" in (ROOT / "Dockerfile").read_text()
    assert "gunicorn config.wsgi -c config/gunicorn.py" in (ROOT / "docker-compose.yml").read_text()


def test_each_web_server_gets_its_own_control_socket(tmp_path):
    # Two masters (make run and bench/rater_cycle, two checkouts) shared ~/.gunicorn/gunicorn.ctl: the
    # last one started took it over and removed it when it stopped.
    code = """
import runpy, sys
from types import SimpleNamespace
from gunicorn.config import Config
cfg = Config()
cfg.set("bind", [sys.argv[1]])
if sys.argv[2]:
    cfg.set("control_socket", sys.argv[2])
runpy.run_path("config/gunicorn.py")["on_starting"](SimpleNamespace(cfg=cfg))
print(cfg.control_socket)
"""

    def socket_for(bind: str, explicit: str = "") -> str:
        out = subprocess.run(
            [sys.executable, "-c", code, bind, explicit], cwd=ROOT, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()

    a, b = socket_for("127.0.0.1:8000"), socket_for("127.0.0.1:8001")
    assert a != b and a.endswith("gunicorn-127.0.0.1-8000.ctl") and b.endswith("8001.ctl")
    assert socket_for("127.0.0.1:8000", str(tmp_path / "mine.ctl")) == str(tmp_path / "mine.ctl")


def test_make_run_refuses_a_taken_port_before_starting_anything():
    # it printed the URL, then "web exited with code 1"; the cause was only in web.log
    import socket

    from config.run import port_in_use_message

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = str(held.getsockname()[1])
        assert "Try PORT=8001 make run" in port_in_use_message("127.0.0.1", port)
    assert port_in_use_message("127.0.0.1", port) is None
    assert "not a port number" in port_in_use_message("127.0.0.1", "eighty")
    # 99999 was an OverflowError traceback, 0 a random port; [::1] "another program has it?"
    for bad in ("99999", "-1", "0"):
        assert "not a port number (1 to 65535)" in port_in_use_message("127.0.0.1", bad)
    assert "not an address" in port_in_use_message("no-such-host.invalid", "8000")


def test_make_run_binds_an_ipv6_host_in_brackets_and_stops_when_the_terminal_closes():
    import signal

    from config.run import bind_address, services, stop_signals

    # gunicorn read --bind ::1:8000 as host "" and port ":1:8000"
    assert bind_address("::1", "8000") == bind_address("[::1]", "8000") == "[::1]:8000"
    assert bind_address("127.0.0.1", "8000") == "127.0.0.1:8000"
    web = services("python", "::1", "8000", "1")["web"]
    assert web[web.index("--bind") + 1] == "[::1]:8000"
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        assert signal.SIGHUP in stop_signals()  # the services ran on, orphaned, after the terminal closed
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # nohup make run &: hangups are to be ignored
        assert signal.SIGHUP not in stop_signals() and signal.SIGTERM in stop_signals()
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_the_training_worker_of_make_run_listens_on_the_configured_queues(settings):
    # -Q gpu was written out: RM_QUEUE or POLICY_QUEUE set in .env left runs with no worker
    from config.run import _gpu_queues

    settings.TRAINING = {**settings.TRAINING, "QUEUE": "train"}
    settings.POLICY = {**settings.POLICY, "QUEUE": "gpu"}
    assert _gpu_queues() == "train,gpu"
    cmd = services("python", "h", "1", "1", _gpu_queues())["gpu-worker"]
    assert cmd[cmd.index("-Q") + 1] == "train,gpu"


def test_make_run_with_a_taken_port_starts_no_embedded_service(tmp_path):
    # the port was checked after Django's start-up, which starts the embedded PostgreSQL and Redis:
    # the command stopped on the taken port and left both running
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DJANGO_ENV="development", EMBEDDED_DATA_DIR=str(tmp_path / "data"))
    root = Path(__file__).resolve().parents[1]
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        env["PORT"] = str(held.getsockname()[1])
        try:
            r = subprocess.run(
                [sys.executable, "-m", "config.run"],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
        finally:
            subprocess.run([sys.executable, "-m", "config.embedded", "stop"], cwd=root, env=env, timeout=60)
    assert r.returncode == 1 and "Try PORT=" in r.stderr
    assert not (tmp_path / "data" / "pg").exists()
