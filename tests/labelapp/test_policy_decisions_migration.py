"""Migration 0009: rejections recorded before decisions existed become each version's first decision."""

from __future__ import annotations

import pytest
from django.utils import timezone

from tests.labelapp.migration_helpers import back_to_latest, migrate_to

BEFORE = [("labelapp", "0008_policy_rejection")]
AFTER = [("labelapp", "0009_policy_decisions")]


@pytest.mark.django_db(transaction=True)
def test_earlier_rejections_become_decisions():
    with back_to_latest():
        apps = migrate_to(BEFORE)
        version = apps.get_model("labelapp", "PolicyVersion")
        user = apps.get_model("auth", "User").objects.create(username="lead", is_staff=True)
        at = timezone.now()
        version.objects.create(number=0, kind="base")
        version.objects.create(
            number=1, kind="ppo", rejected_at=at, rejected_reason="worse", rejected_by=user
        )
        version.objects.create(number=2, kind="ppo", rejected_at=at, rejected_reason="Automatic: ...")
        apps = migrate_to(AFTER)
        decision = apps.get_model("labelapp", "PolicyDecision")
        got = sorted(
            decision.objects.values_list("version__number", "action", "reason", "by_id", "automatic", "at")
        )
        assert got == [
            (1, "reject", "worse", user.pk, False, at),
            (2, "reject", "Automatic: ...", None, True, at),
        ]
