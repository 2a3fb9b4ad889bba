"""`manage.py create_api_token USERNAME --name NAME [--scope S ...] [--expires-days N]`: a token for a
program; prints the key once."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from labelapp.management.args import int_arg, text_arg
from labelapp.models import TOKEN_SCOPES
from labelapp.services.tokens import MAX_EXPIRY_DAYS, TokenError, token_create


class Command(BaseCommand):
    help = "Create an API token for a user (only its hash is stored; the key is printed once)."

    def add_arguments(self, parser):
        parser.add_argument("username", type=text_arg)
        parser.add_argument("--name", required=True, type=text_arg, help="what the token is for")
        parser.add_argument(
            "--scope",
            action="append",
            dest="scopes",
            metavar="SCOPE",
            help=f"what it may do (repeat for several): {', '.join(TOKEN_SCOPES)}; default: all",
        )
        parser.add_argument(
            "--expires-days",
            type=int_arg(1, MAX_EXPIRY_DAYS),
            help=f"refused after this many days, at most {MAX_EXPIRY_DAYS} (default: never)",
        )

    def handle(self, *args, username: str, name: str, scopes, expires_days, **options):
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"No active user {username!r}.")
        try:
            token, key = token_create(user=user, name=name, scopes=scopes, expires_in_days=expires_days)
        except TokenError as exc:
            raise CommandError(str(exc)) from None
        expiry = f", expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else ""
        self.stdout.write(
            f"Token #{token.pk} for {username} ({name}; scopes: {', '.join(token.scopes)}{expiry}). "
            f"Key (shown once): {key}"
        )
