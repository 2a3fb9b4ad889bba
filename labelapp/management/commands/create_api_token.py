"""`manage.py create_api_token USERNAME --name NAME`: a token for a program; prints the key once."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from labelapp.services.tokens import token_create


class Command(BaseCommand):
    help = "Create an API token for a user (only its hash is stored; the key is printed once)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", required=True, help="what the token is for")

    def handle(self, *args, username: str, name: str, **options):
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"No active user {username!r}.")
        token, key = token_create(user=user, name=name)
        self.stdout.write(f"Token #{token.pk} for {username} ({name}). Key (shown once): {key}")
