"""manage.py erase_prompts: erase the words of prompts that are out of use (withdrawn or withheld).

The same service as the Prompt admin's action (services/erasure.py): the prompt's text, its answers'
texts and what was written about it (rationales, skip reasons, gold explanations, consent and review
reasons) are replaced; ids, judgments and the text's hashes stay.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from labelapp.management.args import ID_MAX, int_arg
from labelapp.services.erasure import ErasureError, erasure_refusal, prompts_erase, prompts_out_of_use


class Command(BaseCommand):
    help = (
        "Erase the words of withdrawn or withheld prompts (text, answers, rationales, reasons); ids, "
        "judgments and hashes stay. A prompt in use is refused: withdraw its consent first."
    )

    def add_arguments(self, parser):
        parser.add_argument("prompt_ids", nargs="*", type=int_arg(1, ID_MAX), help="prompt ids")
        parser.add_argument(
            "--all", action="store_true", help="every withdrawn or withheld prompt not erased yet"
        )
        parser.add_argument("--dry-run", action="store_true", help="list what it would erase; change nothing")

    def handle(self, *args, prompt_ids: list[int], all: bool, dry_run: bool, **options):
        if bool(prompt_ids) == all:
            raise CommandError("Name the prompts to erase, or pass --all (not both).")
        ids = list(prompts_out_of_use().values_list("pk", flat=True)) if all else prompt_ids
        if not ids:
            self.stdout.write("Nothing to erase: no withdrawn or withheld prompt is left unerased.")
            return
        if dry_run:
            # the refusal a real run gives before erasing any (a dry run listed a prompt in use)
            if (refusal := erasure_refusal(ids)) is not None:
                raise CommandError(f"{refusal} Nothing was erased.")
            self.stdout.write(f"Would erase {len(ids)} prompt(s): {', '.join(f'#{i}' for i in ids)}")
            return
        try:
            report = prompts_erase(prompt_ids=ids)
        except ErasureError as exc:
            raise CommandError(str(exc)) from exc
        for pk in report.already:
            self.stdout.write(f"Prompt #{pk} was erased before; nothing to do.")
        if report.erased:
            what = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in report.counts.items() if n)
            self.stdout.write(self.style.SUCCESS(f"Erased {len(report.erased)} prompt(s) ({what})."))
