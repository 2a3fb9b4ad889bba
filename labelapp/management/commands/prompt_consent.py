"""manage.py prompt_consent: withdraw (or restore) a stored prompt's consent, with a recorded reason.

The same service as `POST /api/prompts/{id}/consent/` and the Prompt admin's actions
(services/consent.py): the change is recorded with the reason, the time and `--by` (a staff account;
left out, the record says a command made it).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from labelapp.management.args import ID_MAX, int_arg, text_arg
from labelapp.models import Prompt
from labelapp.services.consent import ConsentError, prompt_consent_set
from labelapp.services.roles import NotPermitted


class Command(BaseCommand):
    help = (
        "Withdraw or restore a prompt's consent with a recorded reason: a withdrawn prompt's ratings "
        "leave training and exports at once and its comparisons leave the queue."
    )

    def add_arguments(self, parser):
        parser.add_argument("prompt_id", type=int_arg(1, ID_MAX), help="the prompt's id")
        what = parser.add_mutually_exclusive_group(required=True)
        what.add_argument("--withdraw", action="store_true", help="set consent to false")
        what.add_argument("--restore", action="store_true", help="set consent to true")
        parser.add_argument("--reason", required=True, type=text_arg, help="why (recorded)")
        parser.add_argument(
            "--by", metavar="USERNAME", type=text_arg, help="the staff member who asked (recorded)"
        )

    def handle(self, *args, prompt_id: int, withdraw: bool, restore: bool, reason: str, by, **options):
        prompt = Prompt.objects.filter(pk=prompt_id).first()
        if prompt is None:
            raise CommandError(f"No prompt #{prompt_id}.")
        user = None
        if by is not None:  # text_arg refused a NUL or non-UTF-8 bytes already
            user = get_user_model().objects.filter(username=by, is_active=True).first()
            if user is None:
                raise CommandError(f"No active user {by!r}.")
        try:
            change = prompt_consent_set(
                prompt=prompt, consent=restore, reason=reason, by=user, on_behalf=True
            )
        except (ConsentError, NotPermitted) as exc:
            raise CommandError(str(exc)) from exc
        if withdraw:
            done = f"consent withdrawn; {len(change.comparison_ids)} comparison(s) taken out of the queue"
        else:
            done = f"consent restored; {len(change.comparison_ids)} comparison(s) put back in the queue"
        self.stdout.write(self.style.SUCCESS(f"Prompt #{prompt.pk}: {done} (change #{change.pk})."))
