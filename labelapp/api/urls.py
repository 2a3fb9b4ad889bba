"""REST API URLs (session auth; the OpenAPI schema is at /api/schema/)."""

from django.urls import path

from labelapp.api import views

urlpatterns = [
    path("assignments/next/", views.NextAssignmentView.as_view(), name="api-assignment-next"),
    path("assignments/<int:assignment_id>/", views.AssignmentDetailView.as_view(), name="api-assignment"),
    path(
        "assignments/<int:assignment_id>/rating/", views.RatingSubmitView.as_view(), name="api-rating-submit"
    ),
    path("assignments/<int:assignment_id>/skip/", views.SkipView.as_view(), name="api-skip"),
    path("ratings/", views.MyRatingsView.as_view(), name="api-ratings"),
    path("guidelines/current/", views.CurrentGuidelineView.as_view(), name="api-guideline-current"),
    path("guidelines/acknowledge/", views.AcknowledgeView.as_view(), name="api-guideline-ack"),
    path("queue/", views.QueueFiguresView.as_view(), name="api-queue"),
    path("training/runs/", views.TrainingRunsView.as_view(), name="api-training-runs"),
    path("reward-models/", views.RewardModelsView.as_view(), name="api-reward-models"),
    path(
        "reward-models/<int:number>/activate/",
        views.RewardModelActivateView.as_view(),
        name="api-reward-model-activate",
    ),
]

from labelapp.api import data_views  # noqa: E402

urlpatterns += [
    path("tokens/", data_views.TokensView.as_view(), name="api-tokens"),
    path("tokens/<int:token_id>/revoke/", data_views.TokenRevokeView.as_view(), name="api-token-revoke"),
    path("prompts/", data_views.PromptsView.as_view(), name="api-prompts"),
    path("prompts/<int:prompt_id>/", data_views.PromptDetailView.as_view(), name="api-prompt"),
    path(
        "prompts/<int:prompt_id>/responses/",
        data_views.PromptResponsesView.as_view(),
        name="api-prompt-responses",
    ),
    path(
        "prompts/<int:prompt_id>/consent/", data_views.PromptConsentView.as_view(), name="api-prompt-consent"
    ),
    path("prompts/<int:prompt_id>/erase/", data_views.PromptEraseView.as_view(), name="api-prompt-erase"),
    path("comparisons/", data_views.ComparisonsView.as_view(), name="api-comparisons"),
    path("staff/ratings/", data_views.StaffRatingsView.as_view(), name="api-staff-ratings"),
    path("staff/raters/", data_views.RaterFiguresView.as_view(), name="api-staff-raters"),
    path("export/", data_views.ExportView.as_view(), name="api-export"),
]

from labelapp.api import policy as policy_api  # noqa: E402

urlpatterns += [
    path("policies/", policy_api.PolicyVersionsView.as_view(), name="api-policies"),
    path("policies/<int:number>/", policy_api.PolicyVersionView.as_view(), name="api-policy"),
    path("policies/<int:number>/samples/", policy_api.PolicySamplesView.as_view(), name="api-policy-samples"),
    path("policies/<int:number>/reject/", policy_api.PolicyRejectView.as_view(), name="api-policy-reject"),
    path(
        "policies/<int:number>/reinstate/",
        policy_api.PolicyReinstateView.as_view(),
        name="api-policy-reinstate",
    ),
    path("policy-rounds/", policy_api.PolicyRoundsView.as_view(), name="api-policy-rounds"),
]
