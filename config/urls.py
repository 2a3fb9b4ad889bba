"""URL map: rater and staff pages, the REST API and its schema, Django's admin and auth."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from labelapp.api import errors as api_errors
from labelapp.api.strict import CountsUnauthenticated
from labelapp.login_throttle import ThrottledPasswordChangeView


class SchemaView(CountsUnauthenticated, SpectacularAPIView):
    """The OpenAPI schema; a request without a valid session or token counts against the anonymous
    rate limit, as on every API endpoint."""


class ApiDocsView(SpectacularSwaggerSplitView):
    """The Swagger UI page, its start-up script served as a file (`?script`): an inline one is not
    allowed to run (CONTENT_SECURITY_POLICY). GET only: DRF's OPTIONS answer went through the page's
    HTML renderer, which has no template for it (a 500)."""

    http_method_names = ["get", "head"]


urlpatterns = [
    path("", include("labelapp.urls")),
    path("api/", include("labelapp.api.urls")),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", ApiDocsView.as_view(url_name="schema"), name="api-docs"),
    re_path(r"^api/(?P<rest>.*)$", api_errors.unmatched),  # last under /api/: JSON 404 even with DEBUG on
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # every account changes its own password here (raters had no way to; staff had only the admin's)
    # its old-password check is counted and locked as logins are (labelapp/login_throttle.py)
    path("accounts/password/", ThrottledPasswordChangeView.as_view(), name="password_change"),
    path("accounts/password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
    # one password page for every account, whose old-password check is throttled: the admin's own let
    # a hijacked staff session guess it without limit
    path("admin/password_change/", RedirectView.as_view(pattern_name="password_change")),
    path("admin/", admin.site.urls),
]

# /api/ answers JSON even for URLs no pattern matches (labelapp/api/errors.py).
handler400 = "labelapp.api.errors.bad_request"
handler404 = "labelapp.api.errors.not_found"
handler500 = "labelapp.api.errors.server_error"
