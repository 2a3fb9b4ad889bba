"""Django system checks: settings that would only fail when the first run is queued fail at startup.

`manage.py check` (and every `runserver` / worker start) builds the reward-model TrainConfig from the
RM_* settings, so a typo or a contradiction (RM_OBJECTIVE=foo, RM_RELEVANCE_HEAD without RM_AUGMENT) is
an error with TrainConfig's own message instead of a failed run later.
"""

from __future__ import annotations

from django.core.checks import Error, register


@register()
def reward_model_settings(app_configs=None, **kwargs) -> list[Error]:
    from .services.training import train_config_from_settings

    try:
        train_config_from_settings()
    except (TypeError, ValueError) as e:
        return [Error(f"reward-model settings (RM_*): {e}", id="labelapp.E001")]
    return []
