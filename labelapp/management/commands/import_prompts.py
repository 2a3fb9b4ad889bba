"""`manage.py import_prompts FILE.jsonl`: import prompts (with optional answers), all or nothing.

One JSON object a line: {"text", "source", "consent", "external_id"?, "category"?, "answers"?:
[{"text", "model", "model_version"?, "external_id"?}]}. Every text is PII-scrubbed before storage.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from labelapp.services.ingest import IngestError, ingest_jsonl


class Command(BaseCommand):
    help = (
        "Import prompts from a JSONL file (all or nothing; PII scrubbed; a prompt already stored is not "
        "stored again, its new answers are added)."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)

    def handle(self, *args, file: Path, **options):
        try:
            text = file.read_text(encoding="utf-8-sig")  # a BOM that Windows tools write in front goes
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"Cannot read {file}: {exc}") from None
        try:
            report = ingest_jsonl(text=text, limit=None)  # offline: no request size to bound
        except IngestError as exc:
            lines = "\n".join(
                f"  line {e['line']}: {e['error']}" if e.get("line") else f"  {e['error']}"
                for e in exc.errors
            )
            raise CommandError(
                f"Refused {file}: {len(exc.errors)} bad line(s), nothing was imported.\n{lines}"
            ) from None
        d = report.as_dict()
        pii = ", ".join(f"{k} {v}" for k, v in sorted(d["pii_found"].items())) or "none"
        self.stdout.write(
            f"Imported {d['created']} prompt(s) and {d['answers_created']} answer(s); "
            f"{d['duplicates']} duplicate(s) not stored again, {d['answers_added_to_existing']} new "
            f"answer(s) added to them, {d['answers_skipped_duplicate']} duplicate answer(s) skipped; "
            f"PII replaced: {pii}."
        )
