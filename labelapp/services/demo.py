"""The demo project: team-written prompts and answers, guidelines v1, a rater and an admin account.

Idempotent: every object has a stable external id, so running it twice creates nothing new, and
existing accounts keep their passwords. Passwords are random on first run and kept in
`.data/demo_accounts.json` (mode 600, outside git) so that `make run` can print them every time; one is
printed only while the account still takes it (changed since, or another database: it is not).

A database with prompts that are not the demo's holds real work: the demo's prompts would enter its
queue (with consent, so they would train), its gold pairs the raters' figures, and a superuser would
appear. `demo_seed` refuses it (DemoRefused) unless `force`; `make run` skips the demo there.
"""

from __future__ import annotations

import itertools
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from labelapp.models import Comparison, GuidelineVersion, Prompt, Response
from labelapp.services.guidelines import guideline_create
from labelapp.services.roles import account_named
from labelapp.services.schedules import schedules_ensure

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"
ACCOUNTS_FILE = Path(settings.BASE_DIR) / ".data" / "demo_accounts.json"
DEMO_MODEL = "demo-team-written"
DEMO_ACCOUNTS = {"demo-admin": True, "demo-rater": False}  # name -> staff (a superuser)


class DemoRefused(Exception):
    """The demo will not seed this database; the message says why and what to do."""


@dataclass
class DemoResult:
    prompts_created: int
    responses_created: int
    comparisons_created: int
    guideline_number: int | None  # None: a draft exists and none is published (left to its author)
    accounts: dict[str, str | None]  # username -> password (None when unknown: kept from an earlier run)


def _load_accounts() -> dict[str, str]:
    if ACCOUNTS_FILE.exists():
        return json.loads(ACCOUNTS_FILE.read_text())
    return {}


def _save_accounts(accounts: dict[str, str]) -> None:
    ACCOUNTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    tmp = ACCOUNTS_FILE.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(accounts, fh, indent=2)
    os.replace(tmp, ACCOUNTS_FILE)


def _ensure_user(username: str, *, staff: bool, known: dict[str, str]) -> str | None:
    """The demo account's password as far as it is known (None: set another way, or the file holds
    another database's); the account is created when missing."""
    user_model = get_user_model()
    user = user_model.objects.filter(username=username).first()
    if user is not None:
        kept = known.get(username)
        return kept if kept is not None and user.check_password(kept) else None
    password = secrets.token_urlsafe(12)
    user = user_model(username=username, is_staff=staff, is_superuser=staff)
    user.set_password(password)
    user.save()
    known[username] = password
    return password


def demo_real_prompts() -> int:
    """Prompts in the database that the demo did not make (imported, typed by staff)."""
    return Prompt.objects.exclude(source="demo").count()


def _demo_guidelines(admin) -> GuidelineVersion | None:
    """The version in force; the demo's own v1 published only on a database with no version at all (a
    draft someone is writing is theirs to publish, not replaced by the demo's)."""
    guideline = GuidelineVersion.objects.filter(published_at__isnull=False).order_by("-number").first()
    if guideline is not None or GuidelineVersion.objects.exists():
        return guideline
    return guideline_create(
        text=(DEMO_DIR / "guidelines_v1.md").read_text(),
        author=admin,
        changelog="First version written by the team.",
        publish=True,
    )


def demo_seed(*, required_ratings: int | None = None, force: bool = False) -> DemoResult:
    """Seed the demo project; DemoRefused on a database with real prompts unless `force`."""
    real = demo_real_prompts()
    if real and not force:
        raise DemoRefused(
            f"This database holds {real} prompt(s) that are not the demo's: the demo would add its prompts "
            "to the raters' queue (with consent, so they would train), its gold pairs to their figures, "
            "and a superuser. Pass --force to add it all the same."
        )
    for username in DEMO_ACCOUNTS:  # before any is made: refused, the demo leaves nothing behind
        twin = account_named(username)
        if twin is not None and twin.username != username:
            # the rest of the app refuses names that differ only in case (create_rater, the simulator)
            raise DemoRefused(
                f"An account named {twin.username!r} exists: the demo's {username!r} would differ from it "
                "only in case. Rename that account, or seed the demo on another database."
            )
    required = required_ratings or settings.LABEL["DEFAULT_REQUIRED_RATINGS"]
    items = json.loads((DEMO_DIR / "prompts.json").read_text())
    prompts_created = responses_created = comparisons_created = 0

    known = _load_accounts()
    accounts = {name: _ensure_user(name, staff=staff, known=known) for name, staff in DEMO_ACCOUNTS.items()}
    _save_accounts(known)
    admin = get_user_model().objects.get(username="demo-admin")

    with transaction.atomic():
        guideline = _demo_guidelines(admin)
        for item in items:
            prompt, created = Prompt.objects.get_or_create(
                external_id=f"demo:{item['slug']}",
                defaults={"text": item["prompt"], "category": item["category"], "source": "demo"},
            )
            prompts_created += created
            responses = {}
            for answer in item["answers"]:
                response, created = Response.objects.get_or_create(
                    external_id=f"demo:{item['slug']}:{answer['key']}",
                    defaults={
                        "prompt": prompt,
                        "text": answer["text"],
                        "source_model": DEMO_MODEL,
                        "source_model_version": answer.get("style", "v1"),
                    },
                )
                responses_created += created
                responses[answer["key"]] = response
            gold = item.get("gold")
            for key_a, key_b in itertools.combinations(sorted(responses), 2):
                is_gold = bool(gold) and {key_a, key_b} == {gold["better"], gold["worse"]}
                defaults = {
                    "prompt": prompt,
                    "response_a": responses[key_a],
                    "response_b": responses[key_b],
                    "required_ratings": required,
                    "kind": Comparison.Kind.GOLD if is_gold else Comparison.Kind.NORMAL,
                    "gold_preference": (-1 if gold["better"] == key_a else 1) if is_gold else None,
                    "gold_explanation": gold["why"] if is_gold else "",
                }
                _, created = Comparison.objects.get_or_create(
                    external_id=f"demo:{item['slug']}:{key_a}-{key_b}", defaults=defaults
                )
                comparisons_created += created

    schedules_ensure()
    number = guideline.number if guideline is not None else None
    return DemoResult(prompts_created, responses_created, comparisons_created, number, accounts)
