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
   largest RSS sampled every 50k rows during it. Bounded memory means the sampled RSS stops growing
   after the first chunks, whatever N is. Writes bench/out/export.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
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
    parts = urlsplit(base)
    name = parts.path.lstrip("/") + "_bench_export"
    return urlunsplit(parts._replace(path="/" + name)), name


def _create_db(base_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(base_url.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
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
            "required_ratings, claimed_count, is_active, gold_explanation, created_at) FROM STDIN"
        ) as cp:
            for i in range(1, n_comp + 1):
                cp.write_row((i, i, 2 * i - 1, 2 * i, "normal", 0, n_raters, n_raters, True, "", now))
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
    from labelapp.services import export as export_service
    from labelapp.services.export import ExportFilters, export_write

    samples = []
    # Sample RSS every 50k rows by wrapping the row stream (cheap: one check per row).
    original_rows = export_service.export_rows

    def sampled_rows(**kw):
        for i, item in enumerate(original_rows(**kw), 1):
            if i % 50_000 == 0:
                samples.append(round(_rss_mb(), 1))
            yield item

    export_service.export_rows = sampled_rows
    rss_before = _rss_mb()
    t0 = time.perf_counter()
    try:
        result = export_write(
            path=out_dir / f"{label}.{fmt}", fmt=fmt, mode=mode, filters=ExportFilters(), record=False
        )
    finally:
        export_service.export_rows = original_rows
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ratings", type=int, default=1_000_000)
    p.add_argument("--raters", type=int, default=50)
    p.add_argument("--keep-db", action="store_true", help="keep the bench database for the next run")
    p.add_argument("--only", choices=["rating-jsonl", "rating-parquet", "comparison-jsonl"], action="append")
    args = p.parse_args()

    base = os.environ.get("DATABASE_URL")
    if not base:
        print("Set DATABASE_URL (the bench database is created beside it).", file=sys.stderr)
        return 2
    url, name = _bench_url(base)
    _create_db(base, name)
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
        for label in wanted:
            mode, fmt = label.split("-")
            r = _run(label, fmt=fmt, mode=mode, out_dir=Path(tmp))
            runs.append(r)
            print(
                f"{label:18s} {r['rows']:>9,} rows  {r['seconds']:7.1f} s  {r['rows_per_s']:>7,} rows/s  "
                f"file {r['file_mb']} MB  RSS before {r['rss_before_mb']} MB, "
                f"max during {r['rss_sampled_max_mb']} MB",
                flush=True,
            )
    report = {
        "ratings": args.ratings,
        "raters": args.raters,
        "load_seconds": round(load_s, 1) if load_s else None,
        "runs": runs,
        "peak_rss_mb": round(_peak_mb(), 1),
        "cpu_count": os.cpu_count(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    print(f"process peak RSS {report['peak_rss_mb']} MB")
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "export.json").write_text(json.dumps(report, indent=2))
    connection.close()
    if not args.keep_db:
        import psycopg

        with psycopg.connect(base.replace("postgres://", "postgresql://", 1), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
