"""`manage.py create_rater USERNAME [--staff | --role ROLE ...]`: create a rater, a superuser staff account,
or a staff account with only the roles given (services/roles.py), with a random password."""

import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from labelapp.management.args import text_arg
from labelapp.services.roles import ROLES, account_named, ensure_roles


class Command(BaseCommand):
    help = "Create a rater account (no self-registration: staff create raters) and print its password."

    def add_arguments(self, parser):
        who = parser.add_mutually_exclusive_group()
        who.add_argument("--staff", action="store_true", help="Create a superuser staff (admin) account.")
        who.add_argument(
            "--role",
            action="append",
            choices=sorted(ROLES),
            help="Create a staff account with this role only (repeat for several); it reads every staff "
            "page and changes only what its roles allow.",
        )
        parser.add_argument("username", type=text_arg)

    def handle(self, *args, username, staff=False, role=None, **options):
        user_model = get_user_model()
        # As the admin's user form and the login form: NFKC first (the login form turns a typed "ｂｏｓｓ"
        # into "boss", so an account stored in full-width letters could never log in), then not blank, at
        # most 150 of letters, digits, @.+-_, and no other account of the same name in another case.
        username = user_model.normalize_username(username)
        try:
            user_model._meta.get_field(user_model.USERNAME_FIELD).clean(username, None)
        except ValidationError as exc:
            raise CommandError(f"Username {username!r}: {' '.join(exc.messages)}") from None
        taken = account_named(username)
        if taken is not None:
            raise CommandError(f"User {taken.username!r} already exists.")
        password = secrets.token_urlsafe(12)
        user = user_model(username=username, is_staff=staff or bool(role), is_superuser=staff)
        user.set_password(password)
        user.save()
        if role:
            ensure_roles()
            user.groups.add(*Group.objects.filter(name__in=role))
        kind = "staff" if staff else f"staff ({', '.join(role)})" if role else "rater"
        self.stdout.write(f"created {kind} {username} with password {password}")
