#!/usr/bin/env python
"""Quality dashboard benchmark: every quality page at a million ratings must answer in under 300 ms.

    PYTHONPATH=. nice -n 10 .venv/bin/python bench/dashboard.py                  # 1,000,000 ratings
    PYTHONPATH=. .venv/bin/python bench/dashboard.py --ratings 100000 --requests 10

1. Creates a throw-away database `bench_dashboard_<your database>` on the PostgreSQL server of
   DATABASE_URL (dropped and re-created; the developer's own database is never touched) and migrates it.
2. Loads synthetic data with COPY: rater accounts, two published guideline versions, prompts and
   answers of varied length, comparisons (3 ratings each; 3% gold pairs, 1% repeats of an earlier
   pair with A and B swapped), one assignment and one rating per judgment. Raters have their own
   length and position pulls, so the figures are not flat.
3. Runs the quality job once (services/quality.py: what Celery beat runs) and times it.
4. Requests every quality page through Django's test client (in-process: server time, no network),
   warm cache and cold cache (the cache cleared before each request, so each one reads the stored
   report from PostgreSQL): the dashboard (all versions, one version, sorted), the CSV, one rater's
   page for staff, and a rater's own page. Prints p50/p95 per page and writes bench/out/dashboard.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from benchargs import positive_int  # noqa: E402
from benchdb import libpq_url, recreate_database, with_database  # bench/ is on sys.path when run

BASE_DIR = Path(__file__).resolve().parent.parent
OUT = BASE_DIR / "bench" / "out" / "dashboard.json"
TARGET_MS = 300.0

WORDS = (
    "the answer depends on context and the key facts are these water boils lower at altitude because air "
    "pressure drops so cooking takes longer use a lid keep the heat steady and check the manual first"
).split()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ratings", type=positive_int, default=1_000_000)
    p.add_argument("--out", type=Path, default=OUT, help="where the JSON report goes")
    p.add_argument("--raters", type=positive_int, default=200)
    p.add_argument("--prompts", type=positive_int, default=20_000)
    p.add_argument(
        "--requests", type=positive_int, default=30, help="timed requests per page (after 3 warm-up)"
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep-db", action="store_true", help="leave the bench database for inspection")
    p.add_argument(
        "--reuse-db",
        action="store_true",
        help="measure the database an earlier --keep-db run left (no reload; no job unless --refresh)",
    )
    p.add_argument("--refresh", action="store_true", help="with --reuse-db: run the quality job again")
    return p.parse_args(argv)


# --- synthetic data --------------------------------------------------------------------------------


def _text(rng: np.random.Generator, words: int) -> str:
    return " ".join(rng.choice(WORDS, words).tolist()) + "."


def load(db_url: str, args: argparse.Namespace) -> dict:
    """COPY the synthetic project into the migrated bench database. Returns counts and timings."""
    import psycopg

    rng = np.random.default_rng(args.seed)
    now = datetime.now(UTC)
    t0 = time.monotonic()
    n_comparisons = args.ratings // 3
    n_ratings = n_comparisons * 3
    with psycopg.connect(libpq_url(db_url), autocommit=False) as conn:
        # Foreign keys are checked by triggers; the rows are consistent by construction, skip them.
        conn.execute("SET session_replication_role = replica")
        with conn.cursor() as cur:
            with cur.copy(
                "COPY auth_user (id, password, is_superuser, username, first_name, last_name, email, "
                "is_staff, is_active, date_joined) FROM STDIN"
            ) as copy:
                for i in range(1, args.raters + 1):
                    copy.write_row((i, "!", False, f"bench-rater-{i:04d}", "", "", "", False, True, now))
                copy.write_row((args.raters + 1, "!", True, "bench-staff", "", "", "", True, True, now))
            with cur.copy(
                "COPY labelapp_guidelineversion (id, number, title, text, changelog, created_at, "
                "published_at) FROM STDIN"
            ) as copy:
                for v in (1, 2):
                    copy.write_row((v, v, "Rating guidelines", f"Version {v}.", "", now, now))
            with cur.copy(
                "COPY labelapp_prompt (id, text, category, source, consent, withheld, html, text_hash, "
                "pii_found, created_at) FROM STDIN"
            ) as copy:
                for p in range(1, args.prompts + 1):
                    text = f"Question {p}: {_text(rng, 12)}"
                    # plain ASCII words: the ingest's normalized text is the text itself
                    digest = hashlib.sha256(text.encode()).hexdigest()
                    copy.write_row(
                        (p, text, "bench", "bench", True, False, f"<p>{text}</p>", digest, "{}", now)
                    )
            # Two answers per prompt, 20..400 words.
            words = rng.integers(20, 400, size=2 * args.prompts)
            with cur.copy(
                "COPY labelapp_response (id, prompt_id, text, source_model, source_model_version, "
                "char_count, word_count, token_count, html, pii_found, created_at) FROM STDIN"
            ) as copy:
                for r in range(2 * args.prompts):
                    text, w = _text(rng, 20), int(words[r])
                    copy.write_row(
                        (r + 1, r // 2 + 1, text, "bench", "", w * 6, w, w, f"<p>{text}</p>", "{}", now)
                    )
            # Comparisons: each prompt's two answers, in either order; some gold, some repeats.
            prompt_of = rng.integers(1, args.prompts + 1, size=n_comparisons)
            swap = rng.random(n_comparisons) < 0.5
            kind = np.where(rng.random(n_comparisons) < 0.03, "gold", "normal").astype(object)
            repeat = (rng.random(n_comparisons) < 0.01) & (np.arange(n_comparisons) > 0)
            kind[repeat] = "repeat"
            resp_a = np.where(swap, 2 * prompt_of, 2 * prompt_of - 1)
            resp_b = np.where(swap, 2 * prompt_of - 1, 2 * prompt_of)
            repeat_of = np.zeros(n_comparisons, dtype=np.int64)
            for c in np.flatnonzero(repeat).tolist():
                original = int(rng.integers(0, c))
                repeat_of[c] = original + 1
                prompt_of[c] = prompt_of[original]
                resp_a[c], resp_b[c] = resp_b[original], resp_a[original]  # left and right swapped
                kind[original] = "normal" if kind[original] == "repeat" else kind[original]
            shorter_is_a = words[resp_a - 1] < words[resp_b - 1]
            with cur.copy(
                "COPY labelapp_comparison (id, prompt_id, response_a_id, response_b_id, kind, priority, "
                "required_ratings, claimed_count, gold_preference, gold_explanation, repeat_of_id, "
                "forced_left, is_active, created_at) FROM STDIN"
            ) as copy:
                for c in range(n_comparisons):
                    gold = (-1 if shorter_is_a[c] else 1) if kind[c] == "gold" else None
                    copy.write_row(
                        (c + 1, int(prompt_of[c]), int(resp_a[c]), int(resp_b[c]), kind[c], 0, 3, 3, gold,
                         "bench" if gold is not None else "",
                         int(repeat_of[c]) or None, "", True, now)
                    )  # fmt: skip
            # Judgments: 3 distinct raters per comparison; each rater has a length and a position pull.
            length_bias = rng.uniform(0, 1.2, args.raters + 1)
            position_bias = rng.normal(0, 0.3, args.raters + 1)
            speed = rng.lognormal(np.log(25), 0.4, args.raters + 1)
            offsets = rng.choice(np.arange(1, args.raters), size=(n_comparisons, 2))
            first = rng.integers(1, args.raters + 1, size=n_comparisons)
            raters = np.stack(
                [
                    first,
                    (first - 1 + offsets[:, 0]) % args.raters + 1,
                    (first - 1 + offsets[:, 1]) % args.raters + 1,
                ],
                axis=1,
            )
            clash = raters[:, 2] == raters[:, 1]
            raters[clash, 2] = raters[clash, 2] % args.raters + 1
            clash = (raters[:, 2] == raters[:, 0]) | (raters[:, 2] == raters[:, 1])
            raters[clash, 2] = (raters[clash, 2] + 1) % args.raters + 1
            comp = np.repeat(np.arange(n_comparisons), 3)
            rater = raters.reshape(-1)
            ok = np.ones(n_ratings, dtype=bool)
            pairs = rater.astype(np.int64) * (n_comparisons + 1) + comp
            _, first_idx = np.unique(pairs, return_index=True)
            ok[:] = False
            ok[first_idx] = True  # any leftover duplicate (rater, comparison) is dropped
            a_left = rng.random(n_ratings) < 0.5
            x = np.log(words[resp_b[comp] - 1] / words[resp_a[comp] - 1])
            quality = rng.normal(0, 1.0, n_comparisons)[comp]
            logit = quality + length_bias[rater] * x + position_bias[rater] * np.where(a_left, -1, 1)
            chose_b = rng.random(n_ratings) < 1 / (1 + np.exp(-logit))
            strength = rng.integers(1, 4, n_ratings)
            pref = np.where(chose_b, strength, -strength)
            pref[rng.random(n_ratings) < 0.05] = 0
            chars = words[resp_a[comp] - 1] * 6 + words[resp_b[comp] - 1] * 6 + 80
            ms = (1000 * chars / speed[rater] * rng.lognormal(0, 0.3, n_ratings)).astype(np.int64)
            version = np.where(comp < n_comparisons // 2, 1, 2)
            issued = [now - timedelta(seconds=int(s)) for s in rng.integers(0, 90 * 86400, 1000)]
            idx = np.flatnonzero(ok)
            with cur.copy(
                "COPY labelapp_assignment (id, rater_id, comparison_id, shown_left, status, issued_at, "
                "lease_expires_at, finished_at, skip_reason, form_key) FROM STDIN"
            ) as copy:
                for n, i in enumerate(idx.tolist(), 1):
                    t = issued[n % 1000]
                    copy.write_row(
                        (n, int(rater[i]), int(comp[i]) + 1, "a" if a_left[i] else "b", "done", t, t, t, "",
                         uuid.uuid4())
                    )  # fmt: skip
            with cur.copy(
                "COPY labelapp_rating (id, rater_id, comparison_id, assignment_id, preference, both_bad, "
                "rationale, flag_pii, flag_unsafe, flag_broken, length_check, guideline_version_id, "
                "time_on_task_ms, idempotency_key, created_at) FROM STDIN"
            ) as copy:
                for n, i in enumerate(idx.tolist(), 1):
                    copy.write_row(
                        (n, int(rater[i]), int(comp[i]) + 1, n, int(pref[i]), False, "", False, False, False,
                         "", int(version[i]), int(ms[i]), uuid.uuid4(), issued[n % 1000])
                    )  # fmt: skip
            for table in ("auth_user", "labelapp_guidelineversion", "labelapp_prompt", "labelapp_response",
                          "labelapp_comparison", "labelapp_assignment", "labelapp_rating"):  # fmt: skip
                cur.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
                )
        conn.commit()
    with psycopg.connect(libpq_url(db_url), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return {"ratings": int(ok.sum()), "comparisons": n_comparisons, "raters": args.raters,
            "load_seconds": round(time.monotonic() - t0, 1)}  # fmt: skip


def existing_counts(db_url: str) -> dict:
    import psycopg

    with psycopg.connect(libpq_url(db_url)) as conn:
        ratings = conn.execute("SELECT count(*) FROM labelapp_rating").fetchone()[0]
        comparisons = conn.execute("SELECT count(*) FROM labelapp_comparison").fetchone()[0]
        raters = conn.execute("SELECT count(DISTINCT rater_id) FROM labelapp_rating").fetchone()[0]
    return {"ratings": ratings, "comparisons": comparisons, "raters": raters, "load_seconds": None}


# --- measuring -------------------------------------------------------------------------------------


def _percentiles(samples: list[float]) -> dict:
    s = sorted(samples)
    return {
        "p50_ms": round(statistics.median(s), 1),
        "p95_ms": round(s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))], 1),
        "max_ms": round(s[-1], 1),
        "n": len(s),
    }


def measure(args: argparse.Namespace) -> dict:
    import resource

    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.test import Client

    from labelapp.services.quality import quality_refresh

    refresh_seconds = None
    if not args.reuse_db or args.refresh:
        t0 = time.monotonic()
        quality_refresh()
        refresh_seconds = round(time.monotonic() - t0, 1)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    users = get_user_model().objects
    staff = Client(HTTP_HOST="127.0.0.1")
    staff.force_login(users.get(username="bench-staff"))
    rater_user = users.get(username="bench-rater-0001")
    rater = Client(HTTP_HOST="127.0.0.1")
    rater.force_login(rater_user)
    pages = [
        ("dashboard, all versions", staff, "/quality/"),
        ("dashboard, v1", staff, "/quality/?version=1"),
        ("dashboard, v2 sorted by P(left)", staff, "/quality/?version=2&sort=p_left&dir=desc"),
        ("raters CSV", staff, "/quality/raters.csv"),
        ("one rater (staff)", staff, f"/quality/raters/{rater_user.pk}/"),
        ("own figures (rater)", rater, "/me/quality/"),
    ]
    results = {}
    for name, client, url in pages:
        for cold in (False, True):
            samples = []
            for i in range(3 + args.requests):
                if cold:
                    cache.clear()
                t = time.perf_counter()
                response = client.get(url)
                elapsed = (time.perf_counter() - t) * 1000
                if response.status_code != 200:
                    raise SystemExit(f"{url}: HTTP {response.status_code}")
                if url.startswith("/quality/?") or url == "/quality/":
                    if b'id="raters"' not in response.content:
                        raise SystemExit(f"{url}: no report to show (run with --refresh)")
                if i >= 3:
                    samples.append(elapsed)
            results[f"{name}{' (cold cache)' if cold else ''}"] = {
                "url": url, "bytes": len(response.content), **_percentiles(samples)
            }  # fmt: skip
    return {"refresh_seconds": refresh_seconds, "peak_rss_mb": round(peak_rss_mb), "pages": results}


def main(argv=None) -> int:
    args = parse_args(argv)
    server_url = os.environ.get("DATABASE_URL")
    if not server_url:
        raise SystemExit("Set DATABASE_URL to a PostgreSQL server (the bench makes its own database there).")
    base_name = urlsplit(server_url).path.lstrip("/") or "postgres"
    name = f"bench_dashboard_{base_name}"[:63]
    db_url = with_database(server_url, name)
    if not args.reuse_db:
        recreate_database(server_url, name)
    try:
        if args.reuse_db:
            counts = existing_counts(db_url)
            print(f"reusing {name}: {counts['ratings']:,} ratings", flush=True)
        else:
            env = {**os.environ, "DATABASE_URL": db_url}
            env.setdefault("DJANGO_ENV", "development")
            subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=BASE_DIR, env=env, check=True)
            print(f"loading {args.ratings:,} ratings into {name} with COPY ...", flush=True)
            counts = load(db_url, args)
            print(f"  loaded {counts['ratings']:,} ratings on {counts['comparisons']:,} comparisons "
                  f"by {counts['raters']} raters in {counts['load_seconds']} s", flush=True)  # fmt: skip
        os.environ.update(DATABASE_URL=db_url, DJANGO_SETTINGS_MODULE="config.settings", LOG_LEVEL="WARNING")
        os.environ.setdefault("DJANGO_ENV", "development")
        import django

        django.setup()
        figures = measure(args)
        report = {
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "target_ms": TARGET_MS,
            **counts,
            **figures,
            "cpu_count": os.cpu_count(),
            "loadavg_1m": os.getloadavg()[0],
        }
        if figures["refresh_seconds"] is not None:
            print(f"quality job: {figures['refresh_seconds']} s for {counts['ratings']:,} ratings "
                  f"(peak RSS {figures['peak_rss_mb']} MB)")  # fmt: skip
        print(f"{'page':<44} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'KB':>6}")
        worst = 0.0
        for page, r in figures["pages"].items():
            worst = max(worst, r["p95_ms"])
            print(f"{page:<44} {r['p50_ms']:>8} {r['p95_ms']:>8} {r['max_ms']:>8} {r['bytes'] / 1024:>6.0f}")
        verdict = "PASS" if worst < TARGET_MS else "FAIL"
        print(
            f"{verdict}: worst p95 {worst} ms (target < {TARGET_MS:.0f} ms); load {report['loadavg_1m']:.1f}"
        )
        report["worst_p95_ms"], report["pass"] = worst, worst < TARGET_MS
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.out}")
        return 0 if worst < TARGET_MS else 1
    finally:
        if not (args.keep_db or args.reuse_db):
            try:
                from django.db import connections

                connections.close_all()
            except Exception:  # noqa: BLE001 - Django may not be set up yet (failed before loading)
                pass
            recreate_database(server_url, name, create=False)


if __name__ == "__main__":
    sys.exit(main())
