#!/usr/bin/env python
"""Export benchmark: stream N synthetic ratings (default 1 million) out as TRL JSONL and Parquet.

    nice -n 10 env PYTHONPATH=. .venv/bin/python bench/export.py             # 1,000,000 ratings
    nice -n 10 env PYTHONPATH=. .venv/bin/python bench/export.py --ratings 100000 --keep-db

1. Creates a separate database `<your db>_bench_export` on the server of DATABASE_URL (the developer's
   own database is never touched), migrates it, and loads a synthetic world with PostgreSQL COPY:
   R raters, ratings/R comparisons (prompt + two answers of 20-120 words), every rater rating every
   comparison (so one rating per (rater, comparison) holds), a guideline version, assignments.
   Reloaded only when the row count differs (--keep-db keeps it for the next run).
2. Runs `export_write` (what `manage.py export_preferences` calls) for: per-rating JSONL,
   per-rating Parquet, per-comparison JSONL. Rows come from a server-side cursor.
3. Reports rows/s and memory: the process' peak RSS (ru_maxrss), RSS before the export, and the
   largest RSS sampled every 0.1 s during it. Bounded memory means the sampled RSS stops growing
   after the first chunks, whatever N is. Writes bench/out/export.json.
4. With --http, also downloads `GET /api/export/` (JSONL, then Parquet) from gunicorn started the way
   production starts it (`-c config/gunicorn.py`, DJANGO_ENV=production, one worker, a staff token),
   on a free loopback port: time to the first byte, total time, whether the download is complete
   (every chunk and the terminating one; Parquet ends in PAR1), and the worker's RSS (sampled every
   0.2 s, and VmHWM). --worker-class sync --timeout N shows what the old sync workers did to a
   download longer than N seconds. gunicorn is stopped at the end, also on an error or Ctrl-C.

    nice -n 10 env PYTHONPATH=. .venv/bin/python bench/export.py --ratings 100000 --http --keep-db
    ... --ratings 100000 --http --only rating-jsonl --worker-class sync --timeout 5   # cut off
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
# gunicorn start/stop and /proc reading: the rater-cycle bench's (bench/ is on sys.path when run)
from benchargs import positive_int  # noqa: E402
from benchdb import recreate_database, server_connection, with_database  # noqa: E402
from rater_cycle import all_pids, free_port, read_stat, stop_gunicorn  # noqa: E402

WORDS = "the of and to in is that it for on as with was by be this are or at from model answer prompt".split()


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _bench_url(base: str) -> tuple[str, str]:
    name = urlsplit(base).path.lstrip("/") + "_bench_export"
    return with_database(base, name), name


def _create_db(base_url: str, name: str) -> None:
    with server_connection(base_url) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def _text(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi)))


def _load(n_ratings: int, n_raters: int) -> float:
    """Synthetic world through COPY. Returns seconds taken."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from labelapp.models import GuidelineVersion

    t0 = time.perf_counter()
    rng = random.Random(0)
    with connection.cursor() as cur:
        cur.execute(
            "TRUNCATE labelapp_rating, labelapp_assignment, labelapp_comparison, labelapp_response, "
            "labelapp_prompt, labelapp_guidelineversion, labelapp_exportfile CASCADE"
        )
        cur.execute("DELETE FROM auth_user WHERE username LIKE 'bench-rater-%%'")
    gv = GuidelineVersion.objects.create(number=1, text="bench", published_at=datetime.now(UTC))
    users = get_user_model().objects.bulk_create(
        [get_user_model()(username=f"bench-rater-{i}", password="!") for i in range(n_raters)]
    )
    n_comp = n_ratings // n_raters
    now = datetime.now(UTC)
    raw = connection.connection  # psycopg 3 connection
    with raw.cursor() as cur:
        with cur.copy(
            "COPY labelapp_prompt (id, text, category, source, consent, withheld, html, text_hash, "
            "pii_found, "
            "created_at) FROM STDIN"
        ) as cp:
            for i in range(1, n_comp + 1):
                cp.write_row(
                    (i, f"Prompt {i}: " + _text(rng, 8, 30), "", "bench", True, False, "", "", "{}", now)
                )
        with cur.copy(
            "COPY labelapp_response (id, prompt_id, text, source_model, source_model_version, char_count, "
            "word_count, token_count, html, pii_found, created_at) FROM STDIN"
        ) as cp:
            for i in range(1, n_comp + 1):
                for side in (0, 1):
                    t = _text(rng, 20, 120)
                    wc = t.count(" ") + 1
                    cp.write_row(
                        (2 * i - 1 + side, i, t, f"model-{side}", "1", len(t), wc, wc, "", "{}", now)
                    )
        with cur.copy(
            "COPY labelapp_comparison (id, prompt_id, response_a_id, response_b_id, kind, priority, "
            "required_ratings, claimed_count, is_active, gold_explanation, forced_left, created_at) "
            "FROM STDIN"
        ) as cp:
            for i in range(1, n_comp + 1):
                cp.write_row((i, i, 2 * i - 1, 2 * i, "normal", 0, n_raters, n_raters, True, "", "", now))
        with cur.copy(
            "COPY labelapp_assignment (id, rater_id, comparison_id, shown_left, status, issued_at, "
            "lease_expires_at, finished_at, skip_reason, form_key) FROM STDIN"
        ) as cp:
            k = 0
            for c in range(1, n_comp + 1):
                for u in users:
                    k += 1
                    cp.write_row((k, u.pk, c, "a", "done", now, now, now, "", uuid.uuid4()))
        prefs = [-3, -2, -1, 0, 1, 2, 3]
        with cur.copy(
            "COPY labelapp_rating (id, rater_id, comparison_id, assignment_id, preference, both_bad, "
            "rationale, "
            "flag_pii, flag_unsafe, flag_broken, length_check, guideline_version_id, time_on_task_ms, "
            "idempotency_key, created_at) FROM STDIN"
        ) as cp:
            k = 0
            for c in range(1, n_comp + 1):
                for u in users:
                    k += 1
                    created = now - timedelta(seconds=n_ratings - k)
                    cp.write_row(
                        (
                            k,
                            u.pk,
                            c,
                            k,
                            rng.choice(prefs),
                            rng.random() < 0.03,
                            "",
                            False,
                            False,
                            False,
                            "",
                            gv.pk,
                            1000,
                            uuid.uuid4(),
                            created,
                        )
                    )
        for table in ("prompt", "response", "comparison", "assignment", "rating"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('labelapp_{table}', 'id'), "
                f"(SELECT COALESCE(MAX(id), 1) FROM labelapp_{table}))"
            )
        cur.execute("ANALYZE")
    raw.commit() if not raw.autocommit else None
    return time.perf_counter() - t0


def _run(label: str, *, fmt: str, mode: str, out_dir: Path) -> dict:
    from labelapp.services.export import ExportFilters, export_write

    samples: list[float] = []
    done = threading.Event()

    def sample():
        # Every 0.1 s while the export runs: sampled every 50k rows, an export of fewer rows took no
        # sample, and its "max during" was the RSS after it.
        while not done.wait(0.1):
            samples.append(round(_rss_mb(), 1))

    sampler = threading.Thread(target=sample, daemon=True)
    rss_before = _rss_mb()
    sampler.start()
    t0 = time.perf_counter()
    try:
        result = export_write(
            path=out_dir / f"{label}.{fmt}", fmt=fmt, mode=mode, filters=ExportFilters(), record=False
        )
    finally:
        done.set()
        sampler.join()
    seconds = time.perf_counter() - t0
    size = (out_dir / f"{label}.{fmt}").stat().st_size
    (out_dir / f"{label}.{fmt}").unlink()
    return {
        "label": label,
        "rows": result.pairs,
        "seconds": round(seconds, 2),
        "rows_per_s": round(result.pairs / seconds),
        "file_mb": round(size / 2**20, 1),
        "rss_before_mb": round(rss_before, 1),
        "rss_sampled_max_mb": max(samples) if samples else round(_rss_mb(), 1),
        "rss_samples_mb": samples[:: max(1, len(samples) // 10)],
        "peak_rss_mb_so_far": round(_peak_mb(), 1),
    }


# --- through gunicorn (--http) ------------------------------------------------------------------


def _start_web(db_url: str, args, log_path: Path) -> tuple[subprocess.Popen, int]:
    """gunicorn as production runs it (config/gunicorn.py), one worker so its memory is the export's."""
    from gunicorn.config import KNOWN_SETTINGS

    port = free_port()
    env = dict(os.environ)
    env.update(
        DJANGO_ENV="production",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="127.0.0.1",
        SECURE_SSL_REDIRECT="false",
        DATABASE_URL=db_url,
        LOG_LEVEL="WARNING",
        PYTHONPATH=str(ROOT),
    )
    cmd = [sys.executable, "-m", "gunicorn", "config.wsgi", "-c", "config/gunicorn.py"]
    cmd += ["--bind", f"127.0.0.1:{port}", "--workers", "1"]
    if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS):
        cmd.append("--no-control-socket")  # recent gunicorn: leave ~/.gunicorn/gunicorn.ctl to others
    if args.worker_class:
        # gunicorn turns "sync" into gthread when threads > 1 (config/gunicorn.py sets 4).
        cmd += ["--worker-class", args.worker_class]
        cmd += ["--threads", "1"] if args.worker_class == "sync" else []
    if args.timeout:
        cmd += ["--timeout", str(args.timeout)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    # Listening is enough (the login page that rater_cycle's wait_until_ready asks for needs
    # collected static files, which production settings want and this bench does not build).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            time.sleep(0.2)
    stop_gunicorn(proc)
    raise RuntimeError("gunicorn did not listen within 60 s")


def _children(pid: int) -> list[int]:
    return [p for p in all_pids() if (stat := read_stat(p)) is not None and stat["ppid"] == pid]


def _status_mb(pid: int, field: str) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class _WorkerRss(threading.Thread):
    """Samples the gunicorn workers' RSS every 0.2 s (a worker killed mid-export is counted too)."""

    def __init__(self, master: int):
        super().__init__(daemon=True)
        self.master, self.max_mb, self.pids, self.done = master, 0.0, set(), threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            for pid in _children(self.master):
                self.pids.add(pid)
                self.max_mb = max(self.max_mb, _status_mb(pid, "VmRSS"))


def _http_get(port: int, key: str, query: str, master: int) -> dict:
    workers_before = set(_children(master))
    rss_before = max((_status_mb(p, "VmRSS") for p in workers_before), default=0.0)
    sampler = _WorkerRss(master)
    sampler.start()
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("GET", f"/api/export/?{query}", headers={"Authorization": f"Bearer {key}"})
    response = conn.getresponse()
    ttfb, n_bytes, lines, tail, error = None, 0, 0, b"", None
    try:
        while chunk := response.read1(1 << 16):
            ttfb = ttfb if ttfb is not None else time.perf_counter() - t0
            n_bytes += len(chunk)
            lines += chunk.count(b"\n")
            tail = (tail + chunk)[-4:]
    except (http.client.IncompleteRead, ConnectionError) as exc:
        error = type(exc).__name__
    seconds = time.perf_counter() - t0
    conn.close()
    sampler.done.set()
    sampler.join()
    workers = set(_children(master))
    complete = error is None and response.status == 200
    if "parquet" in query:
        complete = complete and tail == b"PAR1"
    return {
        "query": query,
        "status": response.status,
        "complete": complete,
        "error": error,
        "seconds": round(seconds, 2),
        "first_byte_s": round(ttfb, 2) if ttfb is not None else None,
        "mb": round(n_bytes / 2**20, 1),
        "lines": lines if "jsonl" in query else None,
        "worker_rss_before_mb": round(rss_before, 1),
        "worker_rss_max_mb": round(sampler.max_mb, 1),
        "worker_peak_rss_mb": round(max((_status_mb(p, "VmHWM") for p in workers), default=0.0), 1),
        "worker_replaced": workers != workers_before,
    }


def _http_runs(db_url: str, args, wanted: list[str]) -> tuple[list[dict], str]:
    from django.contrib.auth import get_user_model

    from labelapp.services.tokens import token_create

    staff, _ = get_user_model().objects.get_or_create(
        username="bench-export-staff", defaults={"is_staff": True}
    )
    key = token_create(user=staff, name="bench export", scopes=["export"])[1]
    log_path = args.out.parent / "export-gunicorn.log"  # beside the report (--out), not always bench/out
    log_path.parent.mkdir(parents=True, exist_ok=True)
    proc, port = _start_web(db_url, args, log_path)
    runs = []
    try:
        for label in wanted:
            mode, fmt = label.split("-")
            r = {"label": "http-" + label, **_http_get(port, key, f"mode={mode}&output={fmt}", proc.pid)}
            runs.append(r)
            outcome = "complete" if r["complete"] else f"CUT OFF ({r['error'] or r['status']})"
            print(
                f"http {label:13s} {outcome}  "
                f"{r['seconds']:7.1f} s  first byte {r['first_byte_s']} s  {r['mb']} MB  "
                f"worker RSS {r['worker_rss_before_mb']} MB before, max {r['worker_rss_max_mb']} MB"
                + ("  (worker replaced)" if r["worker_replaced"] else ""),
                flush=True,
            )
    finally:
        stop_gunicorn(proc)
    killed = log_path.read_text(errors="replace").count("WORKER TIMEOUT")
    return runs, f"{killed} worker timeout(s) in {log_path}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ratings", type=positive_int, default=1_000_000)
    p.add_argument("--raters", type=positive_int, default=50)
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "export.json", help="the JSON report")
    p.add_argument("--keep-db", action="store_true", help="keep the bench database for the next run")
    p.add_argument("--only", choices=["rating-jsonl", "rating-parquet", "comparison-jsonl"], action="append")
    p.add_argument("--http", action="store_true", help="also download GET /api/export/ through gunicorn")
    p.add_argument("--http-only", action="store_true", help="only the --http downloads")
    p.add_argument("--worker-class", help="--http: override config/gunicorn.py's worker class (e.g. sync)")
    p.add_argument("--timeout", type=int, help="--http: override the worker timeout (seconds)")
    args = p.parse_args()
    args.http = args.http or args.http_only

    base = os.environ.get("DATABASE_URL")
    if not base:
        print("Set DATABASE_URL (the bench database is created beside it).", file=sys.stderr)
        return 2
    url, name = _bench_url(base)
    if args.keep_db:
        _create_db(base, name)  # reused: its rows are kept for the next run
    else:
        # afresh: a database left by a run that failed half-way kept its schema, and an edited
        # migration it had applied (a column's default added since) failed the next run's COPY
        recreate_database(base, name)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from labelapp.models import Rating

    call_command("migrate", verbosity=0)
    load_s = None
    if Rating.objects.count() != args.ratings:
        print(f"Loading {args.ratings:,} ratings into {name} with COPY ...", flush=True)
        load_s = _load(args.ratings, args.raters)
        print(f"  loaded in {load_s:.0f} s", flush=True)
    runs = []
    wanted = args.only or ["rating-jsonl", "rating-parquet", "comparison-jsonl"]
    with tempfile.TemporaryDirectory() as tmp:
        for label in [] if args.http_only else wanted:
            mode, fmt = label.split("-")
            r = _run(label, fmt=fmt, mode=mode, out_dir=Path(tmp))
            runs.append(r)
            print(
                f"{label:18s} {r['rows']:>9,} rows  {r['seconds']:7.1f} s  {r['rows_per_s']:>7,} rows/s  "
                f"file {r['file_mb']} MB  RSS before {r['rss_before_mb']} MB, "
                f"max during {r['rss_sampled_max_mb']} MB",
                flush=True,
            )
    http_note = None
    if args.http:
        http, http_note = _http_runs(url, args, wanted)
        runs += http
        print(http_note)
    report = {
        "ratings": args.ratings,
        "http_server": (
            {"worker_class": args.worker_class or "config/gunicorn.py", "timeout": args.timeout or 30}
            if args.http
            else None
        ),
        "http_note": http_note,
        "raters": args.raters,
        "load_seconds": round(load_s, 1) if load_s else None,
        "runs": runs,
        "peak_rss_mb": round(_peak_mb(), 1),
        "cpu_count": os.cpu_count(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(f"process peak RSS {report['peak_rss_mb']} MB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    connection.close()
    if not args.keep_db:
        with server_connection(base) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
