"""manage.py rerender_markdown: render stored prompts and answers again with the current sanitizer.

Prompt and answer HTML is rendered once, when a row is saved (the rating page is the hot path). After
the renderer changes (issue 6: removed links and images shown as inert text, bidi controls made
visible) rows stored before keep their old HTML until this command runs.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from labelapp.management.args import int_arg
from labelapp.models import Prompt, Response
from labelapp.rendering import render_stored_markdown


class Command(BaseCommand):
    help = "Render every prompt's and answer's markdown again with the current renderer and sanitizer."

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch", type=int_arg(1, 100_000), default=1000, help="rows per batch (default 1000)"
        )

    def handle(self, *args, batch: int, **options):
        for model in (Prompt, Response):
            changed = seen = 0
            last = 0
            while True:
                rows = list(
                    model.objects.filter(pk__gt=last).order_by("pk").only("id", "text", "html")[:batch]
                )
                if not rows:
                    break
                last = rows[-1].pk
                stale = []
                for row in rows:
                    html = render_stored_markdown(row.text)
                    if html != row.html:
                        row.html = html
                        stale.append(row)
                # bulk_update writes only `html` and skips save(), which would recount the answer.
                model.objects.bulk_update(stale, ["html"])
                changed += len(stale)
                seen += len(rows)
            self.stdout.write(f"{model.__name__}: {changed} of {seen} re-rendered")
