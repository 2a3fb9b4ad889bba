"""`manage.py export_preferences OUT`: preference pairs in TRL format (JSONL or Parquet)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from labelapp.management.args import INT_MAX, int_arg, text_arg
from labelapp.services.export import ExportFilters, export_write


def _when(value: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        # argparse turns this into a usage error; a CommandError raised while parsing was a traceback.
        raise argparse.ArgumentTypeError(f"not an ISO date/time: {value!r}") from None
    return dt if timezone.is_aware(dt) else timezone.make_aware(dt, UTC)


_KNOWN_SUFFIXES = {".parquet": "parquet", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def _format_of(path: Path, default: str, *, told: bool, ties: bool = False) -> str:
    """The format a file's suffix names; `default` for no suffix or, when --format was given (`told`),
    any suffix. A file named out.csv got JSONL without a word. `ties`: the ties file, which --format
    does not name (the refusal suggested it)."""
    if path.suffix.lower() in _KNOWN_SUFFIXES:
        return _KNOWN_SUFFIXES[path.suffix.lower()]
    if path.suffix and not told:
        how = (
            "name one of those or none (the main file's format)"
            if ties
            else "name one of those, or say --format"
        )
        raise CommandError(f"{path.name}: the export writes .jsonl or .parquet files; {how}.")
    return default


def _refuse_a_contradicting_suffix(path: Path | None, fmt: str | None) -> None:
    """--format jsonl into w.parquet wrote a file that no Parquet reader opens, under a name that says
    it is one."""
    if path is None or fmt is None:
        return
    named = _KNOWN_SUFFIXES.get(path.suffix.lower())
    if named is not None and named != fmt:
        raise CommandError(f"{path.name} names a {named} file but --format says {fmt}: make them agree.")


class Command(BaseCommand):
    help = "Export consented, non-excluded ratings as TRL preference pairs (JSONL or Parquet)."

    def add_arguments(self, parser):
        parser.add_argument(
            "out",
            type=Path,
            nargs="?",
            help="output file (.jsonl or .parquet); default: a new file in EXPORT_DIR",
        )
        parser.add_argument("--format", choices=["jsonl", "parquet"], help="default: from the file suffix")
        parser.add_argument("--mode", choices=["rating", "comparison"], default="rating")
        parser.add_argument("--ties", type=Path, help="also write ties / both-bad / splits to this file")
        parser.add_argument("--guideline-version", type=int_arg(1, INT_MAX), action="append", default=[])
        parser.add_argument("--source-model", action="append", default=[], type=text_arg)
        parser.add_argument("--since", type=_when, help="ratings created at or after (ISO date)")
        parser.add_argument("--until", type=_when, help="ratings created before (ISO date)")
        parser.add_argument(
            "--include-eval-set",
            action="store_true",
            help="also the frozen evaluation set's ratings (marked eval_set); left out by default, as "
            "training leaves them out",
        )

    def handle(self, *args, **o):
        if o["out"] is None:
            stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
            o["out"] = Path(settings.EXPORT_DIR) / f"preferences-{o['mode']}-{stamp}.{o['format'] or 'jsonl'}"
        fmt = o["format"] or _format_of(o["out"], "jsonl", told=False)
        _refuse_a_contradicting_suffix(o["out"], o["format"])  # the ties file follows its own name
        # The ties file follows its own name (TIES.jsonl next to OUT.parquet), else the main format.
        # An unknown suffix there is refused even with --format, which names the main file's format only.
        ties_fmt = _format_of(o["ties"], fmt, told=False, ties=True) if o["ties"] else None
        try:
            filters = ExportFilters(
                guideline_versions=o["guideline_version"],
                since=o["since"],
                until=o["until"],
                source_models=o["source_model"],
                include_eval_set=o["include_eval_set"],
            )
            result = export_write(
                path=o["out"],
                fmt=fmt,
                mode=o["mode"],
                filters=filters,
                ties_path=o["ties"],
                ties_fmt=ties_fmt,
            )
        except (ValueError, OSError) as exc:  # a path that cannot be written: nothing was left behind
            raise CommandError(f"Nothing was exported: {exc}") from None
        msg = f"Wrote {result.pairs} pair(s) to {result.path}"
        if result.ties_path:
            msg += f" and {result.ties} tie/both-bad/split row(s) to {result.ties_path}"
        if result.expires_at:
            msg += f"; purge_expired deletes them after {result.expires_at:%Y-%m-%d %H:%M} UTC"
        self.stdout.write(msg + ".")
