"""Preference export in TRL's format (`prompt`, `chosen`, `rejected`) as JSONL or Parquet.

What goes out: only `Rating.objects.usable()` (the rule training uses too): not excluded, on
consented, non-withheld prompts with no unreviewed personal-data flag, not flagged broken, not a
test-retest repeat. Ties
(preference 0) and "both bad" ratings are left out by default, or written to a separate "ties" stream
on request. Each row carries `margin` (the 7-point strength through
TRAINING["MARGINS"], as training uses it), `weight` (rater trust from `selectors.trust_weights`,
1.0 without a profile), `rater` (a keyed pseudonym, stable across exports, not reversible without
SECRET_KEY), `guideline_version`, ids, lengths, and whether it is gold or simulated. The frozen
evaluation set's ratings (no version trains on them) stay out unless asked for (`include_eval_set`),
and are then marked `eval_set`.

Modes:
- `rating`: one row per rating.
- `comparison`: one row per comparison, a trust-weighted majority. Each non-tie, non-both-bad rating
  votes its side with its rater's trust weight. score = sum(w * sign). The side with the larger
  weighted vote wins; `margin` is the trust-weighted mean margin of the ratings that agree with it;
  `weight` is |score| / (sum of all its ratings' weights, ties and both-bad included), so a
  unanimous comparison weighs 1 and a 2-to-1 split of equal raters 1/3. An exact split (score 0),
  a comparison with only ties, or one whose trust-weighted both-bad share is over one half goes to
  the ties stream (or is dropped), never into the pairs. `guideline_versions` lists each rating's
  version in the order of `rating_ids`; `guideline_version` is their version where all share one, else
  null (a `guideline_version` filter decides which ratings are aggregated, so a mixed comparison's
  winner can differ between a filtered and an unfiltered export).

Streaming: rows come from a server-side cursor (`QuerySet.iterator`), Parquet is written in
row groups (over HTTP each row group is sent once written: `parquet_chunks`); memory stays flat however
many ratings there are (bench/export.py measures it).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, Value

from labelapp.models import ExportFile, GuidelineVersion, Rating, Response
from labelapp.selectors import trust_weights
from labelapp.services.retention import export_path_lock, retention_deadline

MODES = ("rating", "comparison")
FORMATS = ("jsonl", "parquet")
_FIELDS = (
    "id",
    "rater_id",
    "comparison_id",
    "preference",
    "both_bad",
    "guideline_version__number",
    "created_at",
    "comparison__prompt_id",
    "comparison__prompt__text",
    "comparison__prompt__source",
    "comparison__prompt__created_at",
    "comparison__response_a__text",
    "comparison__response_a__char_count",
    "comparison__response_a__word_count",
    "comparison__response_a__token_count",
    "comparison__response_b__text",
    "comparison__response_b__char_count",
    "comparison__response_b__word_count",
    "comparison__response_b__token_count",
    "comparison__kind",
    "simulated__id",
    "in_eval_set",
)


@dataclass
class ExportFilters:
    guideline_versions: list[int] = field(default_factory=list)
    since: datetime | None = None
    until: datetime | None = None
    source_models: list[str] = field(default_factory=list)
    include_ties: bool = False  # write ties / both-bad / splits to the ties stream
    # The frozen evaluation set's ratings (services/training.py) are left out: a model trained on the
    # file would have seen the pairs safe activation scores versions on. In, they are marked `eval_set`.
    include_eval_set: bool = False

    def __post_init__(self):
        # every path (command, API) builds its filters here: an empty window exported nothing and
        # wrote over the target as if the data were gone
        if self.since and self.until and self.since >= self.until:
            raise ValueError(
                f"since ({self.since.isoformat()}) must be before until ({self.until.isoformat()}): "
                "that window holds no rating."
            )
        if any(v < 1 for v in self.guideline_versions):
            raise ValueError("guideline versions are numbered from 1.")
        if self.guideline_versions:  # an unknown one wrote an empty file and said "Wrote 0 pair(s)"
            published = set(
                GuidelineVersion.objects.filter(
                    number__in=self.guideline_versions, published_at__isnull=False
                ).values_list("number", flat=True)
            )
            missing = sorted(set(self.guideline_versions) - published)
            if missing:
                raise ValueError(f"there is no published guideline version {', '.join(map(str, missing))}.")
        if self.source_models:  # a misspelt model name wrote an empty file, as an unknown version did
            known = set(
                Response.objects.filter(source_model__in=self.source_models)
                .values_list("source_model", flat=True)
                .distinct()
            )
            unknown = [m for m in dict.fromkeys(self.source_models) if m not in known]
            if unknown:
                shown = ", ".join(repr(m[:100]) for m in unknown[:10])
                raise ValueError(f"no answer comes from the source model(s) {shown}.")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["since"] = self.since.isoformat() if self.since else None
        d["until"] = self.until.isoformat() if self.until else None
        return d


@dataclass
class ExportStats:
    pairs: int = 0
    ties: int = 0
    # Earliest created_at per prompt source in each file ("pair", "tie"), for its retention deadline.
    oldest_by_kind: dict[str, dict[str, datetime]] = field(default_factory=dict)

    def written(self, r: dict, kind: str) -> None:
        """Note the prompt of a row a file holds. Taken from the rows written, per file, not from every
        rating the filters matched: a tie left out, or a comparison that aggregated to a dropped tie,
        set the date of a file that does not hold its prompt (the ties file's prompts set the pairs
        file's), and the purge deleted the file early."""
        oldest = self.oldest_by_kind.setdefault(kind, {})
        _keep_earliest(oldest, r["comparison__prompt__source"], r["comparison__prompt__created_at"])

    @property
    def oldest_by_source(self) -> dict[str, datetime]:
        """Over every file of the export: its earliest deadline (what the command prints)."""
        merged: dict[str, datetime] = {}
        for oldest in self.oldest_by_kind.values():
            for source, created in oldest.items():
                _keep_earliest(merged, source, created)
        return merged


def _keep_earliest(oldest: dict[str, datetime], source: str, created: datetime) -> None:
    if source not in oldest or created < oldest[source]:
        oldest[source] = created


def exportable_ratings(*, filters: ExportFilters):
    """The ratings an export may contain: `Rating.objects.usable()` outside the frozen evaluation set
    (the same rule as training), or with it and marked (`include_eval_set`)."""
    qs = Rating.objects.usable()
    if filters.include_eval_set:
        qs = qs.with_eval_set_mark()
    else:
        qs = qs.outside_eval_set().annotate(in_eval_set=Value(False))
    if filters.guideline_versions:
        qs = qs.filter(guideline_version__number__in=filters.guideline_versions)
    if filters.since:
        qs = qs.filter(created_at__gte=filters.since)
    if filters.until:
        qs = qs.filter(created_at__lt=filters.until)
    if filters.source_models:
        qs = qs.filter(
            Q(comparison__response_a__source_model__in=filters.source_models)
            | Q(comparison__response_b__source_model__in=filters.source_models)
        )
    return qs


def rater_pseudonym(rater_id: int) -> str:
    """Stable per rater, meaningless without SECRET_KEY (no user ids or names leave the server)."""
    return _pseudonym(settings.SECRET_KEY, rater_id)


@functools.lru_cache(maxsize=4096)
def _pseudonym(secret: str, rater_id: int) -> str:
    mac = hmac.new(secret.encode(), f"rater:{rater_id}".encode(), hashlib.sha256)
    return "r_" + mac.hexdigest()[:16]


def _margin(preference: int) -> float:
    margins = settings.TRAINING["MARGINS"]
    return float(margins[min(abs(preference), 3) - 1])


def _row_values(values: tuple) -> dict:
    return dict(zip(_FIELDS, values, strict=True))


def _sides(r: dict, a_wins: bool) -> dict:
    a = ("comparison__response_a__", "comparison__response_b__")
    win, lose = a if a_wins else a[::-1]
    return {
        "prompt": r["comparison__prompt__text"],
        "chosen": r[win + "text"],
        "rejected": r[lose + "text"],
        "chosen_chars": r[win + "char_count"],
        "rejected_chars": r[lose + "char_count"],
        "chosen_words": r[win + "word_count"],
        "rejected_words": r[lose + "word_count"],
        "chosen_tokens": r[win + "token_count"],
        "rejected_tokens": r[lose + "token_count"],
    }


def _tie_row(
    r: dict,
    *,
    reason: str,
    rating_ids: list[int],
    raters: list[str],
    guideline_version: int | None,
    guideline_versions: list[int],
    n_simulated: int,
) -> dict:
    return {
        "prompt": r["comparison__prompt__text"],
        "response_a": r["comparison__response_a__text"],
        "response_b": r["comparison__response_b__text"],
        "reason": reason,
        "prompt_id": f"prompt:{r['comparison__prompt_id']}",
        "comparison_id": r["comparison_id"],
        "rating_ids": rating_ids,
        "raters": raters,
        "guideline_version": guideline_version,
        "guideline_versions": guideline_versions,
        "gold": r["comparison__kind"] == "gold",
        "n_simulated": n_simulated,
        "eval_set": bool(r.get("in_eval_set")),
    }


# Rows fetched from the server-side cursor at a time. A row holds a prompt and two answers, each up to
# 50,000 characters: 2,000 at a time held 800 MB while 5,048 ratings of such texts were exported.
FETCH_ROWS = 250


def _rating_rows(
    qs, weights: dict[int, float], stats: ExportStats, include_ties: bool
) -> Iterator[tuple[str, dict]]:
    for values in qs.order_by("id").values_list(*_FIELDS).iterator(chunk_size=FETCH_ROWS):
        r = _row_values(values)
        pref = r["preference"]
        if pref == 0 or r["both_bad"]:
            if include_ties:
                stats.ties += 1
                stats.written(r, "tie")
                reason = "both_bad" if r["both_bad"] else "tie"
                yield (
                    "tie",
                    _tie_row(
                        r,
                        reason=reason,
                        rating_ids=[r["id"]],
                        raters=[rater_pseudonym(r["rater_id"])],
                        guideline_version=r["guideline_version__number"],
                        guideline_versions=[r["guideline_version__number"]],
                        n_simulated=int(r["simulated__id"] is not None),
                    ),
                )
            continue
        stats.pairs += 1
        stats.written(r, "pair")
        yield (
            "pair",
            {
                **_sides(r, a_wins=pref < 0),
                "margin": _margin(pref),
                "weight": float(weights.get(r["rater_id"], 1.0)),
                "rater": rater_pseudonym(r["rater_id"]),
                "guideline_version": r["guideline_version__number"],
                "id": f"rating:{r['id']}",
                "prompt_id": f"prompt:{r['comparison__prompt_id']}",
                "comparison_id": r["comparison_id"],
                "rating_id": r["id"],
                "strength": abs(pref),
                "created_at": r["created_at"].isoformat(),
                "gold": r["comparison__kind"] == "gold",
                "simulated": r["simulated__id"] is not None,
                "eval_set": bool(r.get("in_eval_set")),
            },
        )


def aggregate_comparison(group: list[dict], weights: dict[int, float]) -> tuple[str, dict]:
    """One comparison's ratings -> ("pair", row) or ("tie", row); the rule is in the module docstring."""
    first = group[0]
    total = sum(weights.get(r["rater_id"], 1.0) for r in group)
    both_bad = sum(weights.get(r["rater_id"], 1.0) for r in group if r["both_bad"])
    votes = [r for r in group if r["preference"] != 0 and not r["both_bad"]]
    score = sum(weights.get(r["rater_id"], 1.0) * (1 if r["preference"] > 0 else -1) for r in votes)
    ids = [r["id"] for r in group]
    raters = [rater_pseudonym(r["rater_id"]) for r in group]
    # Each rating's own version, in the order of rating_ids; the single version only where they all
    # share it (the newest one named a version that may have decided nothing in a mixed comparison).
    versions = [r["guideline_version__number"] for r in group]
    version = versions[0] if len(set(versions)) == 1 else None
    n_simulated = sum(r["simulated__id"] is not None for r in group)
    tie = functools.partial(
        _tie_row,
        first,
        rating_ids=ids,
        raters=raters,
        guideline_version=version,
        guideline_versions=versions,
        n_simulated=n_simulated,
    )
    if total > 0 and both_bad / total > 0.5:
        return "tie", tie(reason="both_bad")
    if not votes or abs(score) < 1e-12:
        return "tie", tie(reason="tie" if not votes else "split")
    b_wins = score > 0
    agree = [r for r in votes if (r["preference"] > 0) == b_wins]
    w_agree = sum(weights.get(r["rater_id"], 1.0) for r in agree)
    margin = sum(weights.get(r["rater_id"], 1.0) * _margin(r["preference"]) for r in agree) / w_agree
    return "pair", {
        **_sides(first, a_wins=not b_wins),
        "margin": round(margin, 6),
        "weight": round(abs(score) / total, 6),
        "raters": raters,
        "guideline_version": version,
        "guideline_versions": versions,
        "id": f"comparison:{first['comparison_id']}",
        "prompt_id": f"prompt:{first['comparison__prompt_id']}",
        "comparison_id": first["comparison_id"],
        "rating_ids": ids,
        "n_ratings": len(group),
        "agreement": round(w_agree / sum(weights.get(r["rater_id"], 1.0) for r in votes), 6),
        "gold": first["comparison__kind"] == "gold",
        "n_simulated": n_simulated,
        "eval_set": bool(first.get("in_eval_set")),  # a comparison's ratings share its prompt
    }


def parquet_schema(mode: str, kind: str):
    """The Parquet columns of an export's `kind` ("pair", "tie") rows in `mode`, fixed rather than
    inferred from the first row group: a file with no rows still names and types its columns (a
    trainer tells "no data" from a broken file), and a column that is null throughout a row group
    (a mixed comparison's guideline_version) keeps its type."""
    import pyarrow as pa

    text, num, real, flag = pa.string(), pa.int64(), pa.float64(), pa.bool_()
    if kind == "tie":
        return pa.schema(
            [("prompt", text), ("response_a", text), ("response_b", text), ("reason", text)]
            + [("prompt_id", text), ("comparison_id", num), ("rating_ids", pa.list_(num))]
            + [("raters", pa.list_(text)), ("guideline_version", num), ("guideline_versions", pa.list_(num))]
            + [("gold", flag), ("n_simulated", num), ("eval_set", flag)]
        )
    sides = [("prompt", text), ("chosen", text), ("rejected", text)]
    sides += [
        (f"{side}_{unit}", num) for unit in ("chars", "words", "tokens") for side in ("chosen", "rejected")
    ]
    if mode == "rating":
        rest = [("margin", real), ("weight", real), ("rater", text), ("guideline_version", num), ("id", text)]
        rest += [("prompt_id", text), ("comparison_id", num), ("rating_id", num), ("strength", num)]
        rest += [("created_at", text), ("gold", flag), ("simulated", flag), ("eval_set", flag)]
    else:
        rest = [("margin", real), ("weight", real), ("raters", pa.list_(text)), ("guideline_version", num)]
        rest += [("guideline_versions", pa.list_(num)), ("id", text), ("prompt_id", text)]
        rest += [("comparison_id", num), ("rating_ids", pa.list_(num)), ("n_ratings", num)]
        rest += [("agreement", real), ("gold", flag), ("n_simulated", num), ("eval_set", flag)]
    return pa.schema(sides + rest)


def _comparison_rows(qs, weights, stats: ExportStats, include_ties: bool) -> Iterator[tuple[str, dict]]:
    group: list[dict] = []

    def flush():
        kind, row = aggregate_comparison(group, weights)
        if kind == "pair":
            stats.pairs += 1
            stats.written(group[0], kind)  # one comparison: one prompt
            return kind, row
        if include_ties:
            stats.ties += 1
            stats.written(group[0], kind)
            return kind, row
        return None

    for values in qs.order_by("comparison_id", "id").values_list(*_FIELDS).iterator(chunk_size=FETCH_ROWS):
        r = _row_values(values)
        if group and r["comparison_id"] != group[0]["comparison_id"]:
            out = flush()
            if out:
                yield out
            group = []
        group.append(r)
    if group:
        out = flush()
        if out:
            yield out


def export_rows(
    *, mode: str, filters: ExportFilters, stats: ExportStats | None = None
) -> Iterator[tuple[str, dict]]:
    """Yield ("pair", row) and, with include_ties, ("tie", row); streamed from a server-side cursor."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    stats = stats if stats is not None else ExportStats()
    qs = exportable_ratings(filters=filters)
    # Inside a transaction the server-side cursor streams; outside one Django declares it WITH HOLD,
    # and PostgreSQL then materializes the whole result before the first row comes back.
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:
            # One snapshot for the weights and the rows (which give the retention dates, `written`):
            # under READ COMMITTED a rating committed between those statements was weighted by a trust
            # weight read before it.
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        rater_ids = qs.order_by().values_list("rater_id", flat=True).distinct()
        weights = trust_weights(rater_ids=list(rater_ids))
        rows = _rating_rows if mode == "rating" else _comparison_rows
        yield from rows(qs, weights, stats, filters.include_ties)


# Line breaks to str.splitlines() (and to readers built on it) that JSON leaves raw in a string: a
# prompt holding U+2028 split its row in two there ("Unterminated string"). Escaped, the row reads the
# same to every JSON parser.
_LINE_BREAKS_IN_STRINGS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def jsonl_line(row: dict) -> str:
    """One JSON object on one line, whichever way the reader splits lines."""
    return json.dumps(row, ensure_ascii=False).translate(_LINE_BREAKS_IN_STRINGS) + "\n"


def jsonl_chunks(rows, size: int = 1 << 16) -> Iterator[bytes]:
    """JSONL in pieces of about `size` bytes for a streamed response: one write (and one HTTP chunk)
    per row cost the server as much time as building the rows."""
    buf, n = [], 0
    for row in rows:
        line = jsonl_line(row).encode()
        buf.append(line)
        n += len(line)
        if n >= size:
            yield b"".join(buf)
            buf, n = [], 0
    if buf:
        yield b"".join(buf)


# A row group ends at `batch` rows or at this many characters of text, whichever comes first: 5,000
# rows of long texts held 1.7 GB while they were written (and past 2 GB of one column, Arrow's limit
# for a string array, they could not be).
PARQUET_GROUP_CHARS = 32_000_000


class _ParquetSink:
    """Rows buffered into row groups of `batch` rows or PARQUET_GROUP_CHARS characters of text; one
    pyarrow writer per file. `path` is a file name or a writable file object (parquet_chunks' _Pieces)."""

    def __init__(self, path, batch: int = 5000, schema=None):
        self.path, self.batch, self.rows, self.writer, self.schema = path, batch, [], None, schema
        self.chars = 0

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.chars += sum(len(v) for v in row.values() if isinstance(v, str))
        if len(self.rows) >= self.batch or self.chars >= PARQUET_GROUP_CHARS:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not self.rows:
            return
        if self.writer is None:
            table = pa.Table.from_pylist(self.rows, schema=self.schema)
            self.writer = pq.ParquetWriter(self.path, table.schema)
        else:
            table = pa.Table.from_pylist(self.rows, schema=self.writer.schema)
        self.writer.write_table(table)
        self.rows, self.chars = [], 0

    def close(self) -> None:
        self.flush()
        if self.writer is not None:
            self.writer.close()
        else:
            # No rows: still a Parquet file, written over whatever is at the path (an earlier export
            # there must not stand in for this one).
            import pyarrow as pa
            import pyarrow.parquet as pq

            empty = self.schema.empty_table() if self.schema is not None else pa.table({})
            pq.write_table(empty, self.path)


class _Pieces:
    """A write-only file for pyarrow that keeps what is written until `take` hands it on."""

    closed = False

    def __init__(self):
        self.parts: list[bytes] = []
        self.position = 0

    def write(self, data) -> int:
        piece = bytes(data)
        self.parts.append(piece)
        self.position += len(piece)
        return len(piece)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        out, self.parts = b"".join(self.parts), []
        return out


def parquet_chunks(rows, batch: int = 5000, schema=None) -> Iterator[bytes]:
    """A Parquet file in pieces for a streamed response: each row group goes out once written (the
    footer last), so the first byte leaves after `batch` rows, memory holds one row group, and no
    temporary file holds prompt texts. A failure midway cuts the download short, and a Parquet file
    without its footer opens nowhere (JSONL: a missing final chunk), rather than being built first."""
    pieces = _Pieces()
    sink = _ParquetSink(pieces, batch=batch, schema=schema)
    for row in rows:
        sink.add(row)
        if pieces.parts:
            yield pieces.take()
    sink.close()
    yield pieces.take()


class _JsonlSink:
    def __init__(self, path: Path, schema=None):
        self.path, self.fh = path, path.open("w", encoding="utf-8")

    def add(self, row: dict) -> None:
        self.fh.write(jsonl_line(row))

    def close(self) -> None:
        self.fh.close()


@dataclass
class ExportResult:
    path: Path
    ties_path: Path | None
    pairs: int
    ties: int
    expires_at: datetime | None


_SINKS = {"jsonl": _JsonlSink, "parquet": _ParquetSink}
# _Landing's working names beside a target x: rows go to x.<random>.partial, an earlier file at x to
# x.<random>.previous. Random: fixed names overwrote, then deleted, a file of the user's that had one,
# and two exports to one path at once wrote into the same .partial.
_PARTIAL, _PREVIOUS = ".partial", ".previous"


def _working_file(target: Path, suffix: str) -> Path:
    """A new empty file beside `target`, of a name nothing else has."""
    while True:
        path = target.with_name(f"{target.name}.{secrets.token_hex(4)}{suffix}")
        try:
            path.open("x").close()
        except FileExistsError:
            continue
        return path


def _check_target(target: Path) -> None:
    """ValueError for a path no export can be written to or recorded at, before anything is written."""
    if not target.name or target.name in (".", ".."):
        raise ValueError(f"the path {str(target)!r} names no file")
    if target.is_symlink():
        # moved into place, the export replaced the link and left the file it pointed to as it was
        raise ValueError(f"{target} is a symbolic link: name the file itself ({target.resolve()})")
    if target.is_dir():
        raise ValueError(f"{target} is a directory: name a file")
    if target.exists() and not target.is_file():
        # /dev/stdout, a pipe: the export would replace it, not write into it
        raise ValueError(f"{target} is not a regular file: name a file to write")
    if target.suffix in (_PARTIAL, _PREVIOUS):
        # x.jsonl.partial as the export and x.jsonl as its ties file: the rows went to one path for
        # both, and the records named a file that did not exist
        raise ValueError(
            f"{target.name}: names ending in .partial or .previous are the export's own working files"
        )
    if len(str(target.resolve())) > ExportFile._meta.get_field("path").max_length:
        raise ValueError(f"the path {target} is too long to record (at most 500 characters)")


def _record_files(targets: dict, stats, *, mode: str, filters, created_by) -> None:
    """One ExportFile per file written, replacing a record of the same path (the purge must not delete
    the new file on the old one's date)."""
    counts = {"pair": stats.pairs, "tie": stats.ties}
    with transaction.atomic():
        for kind, (target, f) in targets.items():
            where = str(target.resolve())
            ExportFile.objects.filter(path=where).delete()
            ExportFile.objects.create(
                path=where,
                format=f,
                mode=mode,
                rows=counts[kind],
                filters=filters.as_dict(),
                created_by=created_by,
                expires_at=retention_deadline(stats.oldest_by_kind.get(kind, {})),
                oldest_by_source={s: t.isoformat() for s, t in stats.oldest_by_kind.get(kind, {}).items()},
            )


@dataclass
class _Landing:
    """The files of one export on their way into place, and what to undo if it fails."""

    targets: dict  # kind ("pair", "tie") -> (final path, format)
    partial: dict = field(default_factory=dict)  # kind -> the .partial file the rows go to
    sinks: dict = field(default_factory=dict)  # kind -> its open writer
    landed: list = field(default_factory=list)  # final paths already moved into place
    kept: dict = field(default_factory=dict)  # an earlier file at a target -> where it was moved aside

    def write(self, *, mode: str, filters: ExportFilters, stats: ExportStats) -> None:
        """Every row into the .partial files, closed (the footer too: a close that fails leaves no
        file behind either)."""
        for kind, (target, f) in self.targets.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            self.partial[kind] = _working_file(target, _PARTIAL)
            schema = parquet_schema(mode, kind) if f == "parquet" else None
            self.sinks[kind] = _SINKS[f](self.partial[kind], schema=schema)
        for kind, row in export_rows(mode=mode, filters=filters, stats=stats):
            self.sinks[kind].add(row)
        while self.sinks:
            self.sinks.pop(next(iter(self.sinks))).close()

    def land(self) -> None:
        """Move the files into place, an earlier file at a target aside until all have landed."""
        for kind, (target, _) in self.targets.items():
            if target.exists():
                aside = _working_file(target, _PREVIOUS)
                try:
                    self.kept[target] = target.replace(aside)
                except OSError:
                    aside.unlink(missing_ok=True)  # the empty name it held, not left behind
                    raise
            self.partial[kind].replace(target)
            self.landed.append(target)

    def undo(self) -> None:
        """Nothing of this export stays; the earlier exports come back, as their records say."""
        for sink in self.sinks.values():
            with contextlib.suppress(Exception):
                sink.close()
        for p in [*self.partial.values(), *self.landed]:
            with contextlib.suppress(OSError):
                p.unlink(missing_ok=True)
        for target, previous in self.kept.items():
            with contextlib.suppress(OSError):
                previous.replace(target)

    def finish(self) -> None:
        for previous in self.kept.values():
            previous.unlink(missing_ok=True)


def _export_targets(path: Path, fmt: str, ties_path: Path | None, ties_fmt: str) -> dict:
    """kind -> (path, format), checked: ValueError before anything is written."""
    if fmt not in FORMATS or ties_fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    targets = {"pair": (path, fmt)} | ({"tie": (ties_path, ties_fmt)} if ties_path is not None else {})
    for target, _ in targets.values():
        _check_target(target)
    if ties_path is not None and ties_path.resolve() == path.resolve():
        raise ValueError("the ties file must be another file than the export")
    return targets


def export_write(
    *,
    path: Path,
    fmt: str,
    mode: str,
    filters: ExportFilters,
    ties_path: Path | None = None,
    ties_fmt: str | None = None,
    created_by=None,
    record: bool = True,
) -> ExportResult:
    """Write the export (and the ties file when `ties_path` is given, in `ties_fmt`, by default `fmt`);
    record the files for retention.

    Each file is written under a `.partial` name and renamed into place only once every row is in:
    an export cut short (a lost connection, a full disk) leaves nothing at `path`, neither a valid-
    looking truncated file outside the purge's records nor an earlier export emptied. Both files land
    and are recorded, or neither stays (a ties file that could not be moved into place left the export
    landed and unrecorded, outside the purge's reach, and a .partial with prompt texts beside it). A
    file written over a recorded one replaces its record (the purge must not delete the new file on
    the old one's date). ValueError before anything is written for a path the record cannot hold."""
    landing = _Landing(_export_targets(path, fmt, ties_path, ties_fmt or fmt))
    filters.include_ties = ties_path is not None
    stats = ExportStats()
    try:
        landing.write(mode=mode, filters=filters, stats=stats)
        with transaction.atomic():  # no deletion of a recorded file at a target between land and record
            for where in sorted(str(target.resolve()) for target, _ in landing.targets.values()):
                export_path_lock(where)
            landing.land()
            expires = retention_deadline(stats.oldest_by_source)
            if record:
                _record_files(landing.targets, stats, mode=mode, filters=filters, created_by=created_by)
    except BaseException:
        landing.undo()
        raise
    landing.finish()
    return ExportResult(
        path=path, ties_path=ties_path, pairs=stats.pairs, ties=stats.ties, expires_at=expires
    )
