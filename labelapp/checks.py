"""Django system checks: settings that would only fail when the first run is queued fail at startup.

`manage.py check` (and every `runserver` / worker start) builds the reward-model TrainConfig from the
RM_* settings and a PPOConfig from the POLICY_* / PPO_* ones, so a typo or a contradiction
(RM_OBJECTIVE=foo, RM_RELEVANCE_HEAD without RM_AUGMENT, RM_MAX_STEPS=-1, PPO_UPDATES=0) is an error
with the config's own message instead of a failed run, or a run that trains nothing, later.
"""

from __future__ import annotations

from django.core.checks import Error, Warning, register


@register()
def reward_model_settings(app_configs=None, **kwargs) -> list[Error]:
    from .services.training import train_config_from_settings, training_settings_check

    try:
        train_config_from_settings()
        training_settings_check()
    except (TypeError, ValueError) as e:
        return [Error(f"reward-model settings ({_variable_of(str(e))}): {e}", id="labelapp.E001")]
    return []


def _variable_of(message: str) -> str:
    """The RM_* variable a TrainConfig message is about ("max_steps must be ..." -> RM_MAX_STEPS), or
    RM_* when it names none: the message named the config field, which no one sets."""
    from django.conf import settings

    field = message.split(" ", 1)[0]
    if field.startswith("RM_"):  # the message names the variable already
        return field
    key = {"lr": "LEARNING_RATE"}.get(field, field.upper())
    return f"RM_{key}" if key in settings.TRAINING else "RM_*"


@register()
def policy_settings(app_configs=None, **kwargs) -> list[Error]:
    from .services.policy import policy_settings_check

    try:
        policy_settings_check()
    except (TypeError, ValueError) as e:
        return [Error(f"policy settings (POLICY_*, PPO_*): {e}", id="labelapp.E002")]
    return []


@register()
def reward_model_backbone(app_configs=None, **kwargs) -> list[Warning]:
    from .services.training import training_backbone_missing

    missing = training_backbone_missing()
    if missing is None:
        return []
    # a warning: the web server's machine need not hold the model that the gpu worker's does
    return [
        Warning(f"RM_BACKBONE: no model at {missing} (runs on this machine will fail)", id="labelapp.W001")
    ]


@register()
def schedule_settings(app_configs=None, **kwargs) -> list[Error]:
    from .services.schedules import schedules_settings_check

    try:
        schedules_settings_check()
    except ValueError as e:
        return [Error(f"scheduled jobs: {e}", id="labelapp.E003")]
    return []
