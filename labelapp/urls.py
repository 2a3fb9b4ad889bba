"""Rater and staff page URLs."""

from django.urls import path

from labelapp import views

urlpatterns = [
    path("", views.home, name="home"),
    path("guidelines/", views.guidelines, name="guidelines"),
    path("rate/", views.rate_next, name="rate_next"),
    path("rate/<int:assignment_id>/", views.rate, name="rate"),
    path("rate/<int:assignment_id>/skip/", views.rate_skip, name="rate_skip"),
]

from labelapp import training_views  # noqa: E402

urlpatterns += [
    path("training/", training_views.training_home, name="training_home"),
    path("training/runs-table/", training_views.training_runs_table, name="training_runs_table"),
    path("training/start/", training_views.training_start, name="training_start"),
    path("training/runs/<int:run_id>/", training_views.training_run, name="training_run"),
    path(
        "training/runs/<int:run_id>/cancel/",
        training_views.training_run_cancel_view,
        name="training_run_cancel",
    ),
    path("training/models/<int:number>/", training_views.reward_model_version, name="reward_model_version"),
    path(
        "training/models/<int:number>/activate/",
        training_views.reward_model_activate_view,
        name="reward_model_activate",
    ),
]

from labelapp import guideline_views, review_views  # noqa: E402

urlpatterns += [
    path("staff/guidelines/", guideline_views.staff_guidelines, name="staff_guidelines"),
    path("staff/guidelines/edit/", guideline_views.staff_guideline_edit, name="staff_guideline_edit"),
    path(
        "staff/guidelines/preview/", guideline_views.staff_guideline_preview, name="staff_guideline_preview"
    ),
    path("staff/guidelines/diff/", guideline_views.staff_guideline_diff, name="staff_guideline_diff"),
    path(
        "staff/guidelines/v/<int:number>/",
        guideline_views.staff_guideline_version,
        name="staff_guideline_version",
    ),
    path("staff/review/", review_views.staff_review, name="staff_review"),
    path("staff/review/<int:rating_id>/", review_views.staff_review_decide, name="staff_review_decide"),
]

from labelapp import quality_views  # noqa: E402

urlpatterns += [
    path("quality/", quality_views.quality_dashboard, name="quality_dashboard"),
    path("quality/raters.csv", quality_views.quality_raters_csv, name="quality_raters_csv"),
    path("quality/raters/<int:rater_id>/", quality_views.quality_rater, name="quality_rater"),
    path("quality/refresh/", quality_views.quality_refresh_now, name="quality_refresh"),
    path("me/quality/", quality_views.quality_me, name="quality_me"),
]

from labelapp import policy_views  # noqa: E402

urlpatterns += [
    path("policy/", policy_views.policy_home, name="policy_home"),
    path("policy/rounds/start/", policy_views.policy_round_start, name="policy_round_start"),
    path("policy/v/<int:number>/", policy_views.policy_version, name="policy_version"),
    path("policy/v/<int:number>/samples/", policy_views.policy_samples, name="policy_samples"),
    path("policy/v/<int:number>/reject/", policy_views.policy_version_reject, name="policy_version_reject"),
    path(
        "policy/v/<int:number>/reinstate/",
        policy_views.policy_version_reinstate,
        name="policy_version_reinstate",
    ),
]
