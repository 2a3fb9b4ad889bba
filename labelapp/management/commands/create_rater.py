"""`manage.py create_rater USERNAME [--staff]`: create a rater (or staff) account with a random password."""

import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create a rater account (no self-registration: staff create raters) and print its password."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--staff", action="store_true", help="Create a staff (admin) account instead.")

    def handle(self, *args, username, staff=False, **options):
        user_model = get_user_model()
        if user_model.objects.filter(username=username).exists():
            raise CommandError(f"User {username!r} already exists.")
        password = secrets.token_urlsafe(12)
        user = user_model(username=username, is_staff=staff, is_superuser=staff)
        user.set_password(password)
        user.save()
        self.stdout.write(f"created {'staff' if staff else 'rater'} {username} with password {password}")
