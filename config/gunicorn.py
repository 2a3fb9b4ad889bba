"""gunicorn settings for the web process, wherever it starts: the Dockerfile, docker-compose.yml and
`make run` (config/run.py) all pass `-c config/gunicorn.py`; bind and worker count stay on their
command lines.

Why gthread and not the default sync worker: a sync worker tells the master it is alive only between
requests, so any response still being written after `timeout` seconds (30) gets the worker killed
mid-body. A large `GET /api/export/` streams for longer than that (about 10,000 rows/s, see
bench/export.py --http), and the client got a truncated file. A gthread worker's main loop reports in
every second while its threads serve requests, so a long streamed export runs to the end, and a few
threads per worker keep the other pages answering while one streams. `timeout` still kills a worker
whose main loop hangs, but no longer a thread stuck in one request (waiting on a lock, say): for
that the web process's database statements stop after DB_STATEMENT_TIMEOUT_MS (60 s unless set),
and the request answers 503 (labelapp.middleware.DatabaseTimeoutMiddleware). Each thread holds its
own database connection: workers x threads connections.
"""

import os

# Read by config/settings.py when the workers load the app (they inherit the master's environment):
# the web process's default DB_STATEMENT_TIMEOUT_MS is 60 s. A marker, not the variable itself: set
# here, before settings read .env, it hid a DB_STATEMENT_TIMEOUT_MS written in .env.
os.environ["RLHF_WEB_PROCESS"] = "1"

worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
# A worker takes no more connections than it has threads: at capacity it closes a connection after
# its response instead of keeping it alive, and new ones wait in the kernel's queue, first come first
# served, for whichever worker frees a thread. With gthread's default (1,000) a worker kept every
# keep-alive connection it had accepted, and those clients queued behind each other inside one busy
# worker while others idled: under 50 raters the slowest got 123 cycles where the median got 149 and
# p99 was 385-555 ms; with this, every rater within 3% of the median and p99 232-305 ms
# (bench/rater_cycle.py, same machine and day; README "Benchmarks").
worker_connections = threads
timeout = 30


def on_starting(server):
    """One control socket per instance (`gunicornc -s PATH`): gunicorn's default is one path per user
    ($XDG_RUNTIME_DIR/gunicorn.ctl or ~/.gunicorn/gunicorn.ctl), which the master started last took
    over (a benchmark's, a second checkout's) and removed when it stopped, so `gunicornc` then reached
    the wrong server or none. The bind address goes into the name; `--control-socket` still wins."""
    cfg = server.cfg
    setting = cfg.settings["control_socket"]
    if cfg.control_socket_disable or setting.value != setting.default:
        return
    name = "_".join(cfg.bind).replace("unix:", "").replace("/", "-").replace(":", "-").strip("-")
    path = os.path.join(os.path.dirname(setting.default), f"gunicorn-{name}.ctl")
    cfg.set("control_socket", path)
