"""Request sanity shared by every page and API endpoint, checked before any view runs.

PostgreSQL refuses NUL (U+0000) in text, so a `%00` in a query parameter that reaches a text filter
was a DataError (500) wherever it landed: the API's `?source=`, every admin list filter on a text
field. No query parameter of this app has a use for one, so such a request is a 400 with a message.

Django decodes the query string and a form body with the charset named in the request's Content-Type
(any codec Python knows). `charset=utf-7` or `unicode_escape` turned `?q=+2AA-` into a lone surrogate
that PostgreSQL refused, and a bytes-to-bytes codec (`hex`, `bz2`, `rot13`) failed while Django built
the request, before any middleware: 500s. So `refuse_unsupported_charset` wraps the WSGI application
(config/wsgi.py): a request names UTF-8, ASCII, UTF-16/32, a single-byte charset (ISO 8859, code
pages) or a common CJK one, or it is a 400 that says so.
(Bodies are the views' business: a form error keeps what was typed, the API parser answers JSON.
One exception: a page's url-encoded form body in bytes that are not UTF-8, or declared in another
charset, is a 400 that says so. Django decoded such bytes as U+FFFD, so a rationale or a guideline was
stored altered and nobody was told, and it raised on a charset not named exactly "utf-8" in a way that
became a 500; no browser sends either for a page served in UTF-8.)

A query string with more parameters than DATA_UPLOAD_MAX_NUMBER_FIELDS is a 400 that says so, counted
before anything parses it: Django's own 400 for it became a 500 with DEBUG on (its debug page parses
the query string again and fails the same way).

A statement that PostgreSQL cancels at DB_STATEMENT_TIMEOUT_MS (the web process's limit, see
config/gunicorn.py) is a 503 with a message: the request changed nothing (its transaction rolls
back) and may be tried again; it was a 500 with no word of why.
"""

from __future__ import annotations

import codecs
import logging
import re
from urllib.parse import parse_qsl, urlencode, urlsplit

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import resolve_url
from django.utils.datastructures import MultiValueDict
from django.utils.http import parse_header_parameters
from psycopg.errors import QueryCanceled

from labelapp.formbody import FormBodyError, multipart_fields

NUL_IN_QUERY = "Query parameters must not contain NUL characters (%00)."
TOO_MANY_PARAMS = "Too many query parameters: at most {} are accepted."
BAD_CHARSET = "Unsupported charset {!r} in Content-Type: send UTF-8."
# codecs.lookup(...).name of the charsets a browser or an HTTP client sends (their decoders never
# yield a lone surrogate); every other codec, text or not, is refused
_CHARSETS = re.compile(
    r"utf-8|ascii|utf-(16|32)(-[lb]e)?|iso8859-\d+|cp\d+|koi8-[ru]|mac-\w+"
    r"|shift_jis|euc_jp|euc_kr|gb2312|gbk|gb18030|big5"
)
UNDECODABLE_FORM = "The form holds bytes that are not UTF-8: nothing was saved. Send it again from the page."
DB_TIMEOUT = "The database took too long to answer; nothing was changed. Please try again in a moment."
log = logging.getLogger(__name__)


def query_has_too_many_fields(request: HttpRequest) -> bool:
    """True when the query string has more fields than Django would parse (counted as it counts)."""
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    raw = request.META.get("QUERY_STRING", "")
    return limit is not None and 1 + raw.count("&") > limit


def query_has_nul(request: HttpRequest) -> bool:
    """True when a query parameter's name or value holds U+0000."""
    raw = request.META.get("QUERY_STRING", "")
    if "%00" not in raw and "\x00" not in raw:
        return False  # the common case, without parsing the query string
    return any("\x00" in key or any("\x00" in v for v in values) for key, values in request.GET.lists())


def unsupported_charset(content_type: str) -> str | None:
    """The Content-Type's charset when it is not one of _CHARSETS, else None (also for none given)."""
    charset = parse_header_parameters(content_type)[1].get("charset")
    if not charset:
        return None
    try:
        name = codecs.lookup(charset).name
    except LookupError:
        return None  # Django ignores a charset Python does not know and reads the default, UTF-8
    return None if _CHARSETS.fullmatch(name) else charset


def refuse_unsupported_charset(app):
    """The WSGI application, answering 400 itself to a request in an unsupported charset."""

    def application(environ, start_response):
        charset = unsupported_charset(environ.get("CONTENT_TYPE", ""))
        if charset is None:
            return app(environ, start_response)
        response = _answer(environ.get("PATH_INFO", ""), BAD_CHARSET.format(charset[:40]), 400)
        start_response(f"400 {response.reason_phrase}", [*response.items()])
        return [response.content]

    return application


class RefuseBadQueryMiddleware:
    """400 for a query string holding a NUL or too many parameters (JSON under /api/, as
    labelapp/api/errors.py, text elsewhere); a cookie holding a NUL is dropped."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # A quoted cookie may carry `\000`, which Django's parser turns into NUL: a session key with
        # one reached PostgreSQL (DataError) on every page, signed in or not. No cookie of this app
        # holds one, so such a cookie is ignored (the request goes on as without it).
        for name in [n for n, v in request.COOKIES.items() if "\x00" in n or "\x00" in v]:
            del request.COOKIES[name]
        if query_has_too_many_fields(request):
            return _answer(request.path, TOO_MANY_PARAMS.format(settings.DATA_UPLOAD_MAX_NUMBER_FIELDS), 400)
        if query_has_nul(request):
            return _answer(request.path, NUL_IN_QUERY, 400)
        return self.get_response(request)


NOT_UTF8_FORM = "A form body must be UTF-8 (it says charset={}): nothing was saved."


def _utf8_alias(charset: str) -> bool:
    """UTF-8 under another name (utf8, UTF_8), or ASCII, which is UTF-8 too."""
    return codecs.lookup(charset).name in ("utf-8", "ascii")


def form_body_charset_error(request: HttpRequest) -> str | None:
    """Why a page's url-encoded form body is refused, else None. API bodies are the parser's
    (labelapp/api/parsers.py: StrictFormParser).

    Django 5.2 reads such a body only when its charset is named exactly "utf-8" (RFC 1866: always
    UTF-8) and raises BadRequest otherwise, from the CSRF check, and again from the 403 and 400 pages,
    which read the form too: `charset=utf8` or `charset=iso-8859-1` on any POST was a 500. A UTF-8 name
    is read as UTF-8; another charset is a 400 that says so."""
    if request.method != "POST" or request.path.startswith("/api/"):
        return None
    if request.content_type != "application/x-www-form-urlencoded":
        return None
    declared = request.encoding
    if declared is not None and declared.lower() != "utf-8":
        if not _utf8_alias(declared):
            return NOT_UTF8_FORM.format(declared[:40])
        request.encoding = "utf-8"  # what Django asks for; the bytes are the same
    body = request.body  # read once; Django parses the form from the same bytes
    if b"%" not in body and body.isascii():
        return None  # the common case: nothing beyond ASCII, raw or escaped
    try:
        parse_qsl(body.decode(), keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        return UNDECODABLE_FORM
    return None


def read_multipart_body(request: HttpRequest) -> tuple[str, int] | None:
    """Read a multipart/form-data POST (page or API) with labelapp/formbody.py and make what it read
    the request's POST; (message, status) when it refuses the body, else None. Before the CSRF check:
    for a signed-in session that check read the form with Django's lenient parser, which also used up
    the body, and DRF then handed the API view that parse, so the API's strict parser never ran."""
    if request.method != "POST" or request.content_type != "multipart/form-data":
        return None
    try:
        body = request.body
    except RequestDataTooBig:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return f"A multipart body may hold at most {limit} bytes: send larger data as JSON or JSONL.", 413
    try:
        fields = multipart_fields(body, request.META.get("CONTENT_TYPE", ""), request.encoding or "utf-8")
    except FormBodyError as exc:
        return str(exc), 400
    # What request.POST holds from now on, for the CSRF check and the views alike: Django's own
    # parser would read the same body again, leniently and by other rules (a part's charset, LF-only
    # line ends), so a page could store what this reader never saw.
    post = QueryDict(mutable=True)
    for name, value in fields:
        post.appendlist(name, value)
    post._mutable = False
    request._post, request._files = post, MultiValueDict()
    # the API's StrictMultiPartParser takes this instead of splitting the same body a second time
    request.strict_multipart_post = post
    return None


class RefuseUndecodableFormMiddleware:
    """400 for a page's url-encoded form body in a charset other than UTF-8, or holding bytes that are
    not UTF-8; a UTF-8 alias (utf8, ascii) is read as UTF-8 (see form_body_charset_error). A multipart
    body, page or API, is read strictly (read_multipart_body)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        error = form_body_charset_error(request)
        if error is not None:
            return _answer(request.path, error, 400)
        refused = read_multipart_body(request)
        if refused is not None:
            return _answer(request.path, *refused)
        return self.get_response(request)


def _answer(path: str, message: str, status: int) -> HttpResponse:
    """JSON under /api/ (as labelapp/api/errors.py), plain text elsewhere."""
    if path.startswith("/api/"):
        return JsonResponse({"detail": message}, status=status)
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


class DatabaseTimeoutMiddleware:
    """503 for a request whose statement PostgreSQL cancelled (statement_timeout)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, OperationalError) and isinstance(exception.__cause__, QueryCanceled):
            log.warning("statement cancelled on %s %s: %s", request.method, request.path, exception)
            response = _answer(request.path, DB_TIMEOUT, 503)
            response["Retry-After"] = "5"
            return response
        return None


ACTION_SELECTION = "_selected_action"  # django.contrib.admin.helpers.ACTION_CHECKBOX_NAME
BAD_SELECTION = "The selection holds an id that is not a whole number: select the rows on the list again."


class RefuseBadAdminSelectionMiddleware:
    """400 for an admin list action whose selected ids are not whole numbers. Django's own
    `ModelAdmin.response_action` filtered `pk__in` with them, and `_selected_action=abc` (a hand-made
    request) raised ValueError: a 500 on every list with an action, ours and the installed apps'. Every
    table here has an integer id."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.prefix = None

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.path.startswith(self._admin_prefix()):
            selected = request.POST.getlist(ACTION_SELECTION)
            if not all(v.isascii() and v.isdigit() and len(v) <= 19 for v in selected):
                return _answer(request.path, BAD_SELECTION, 400)
        return self.get_response(request)

    def _admin_prefix(self) -> str:
        if self.prefix is None:
            from django.urls import reverse

            self.prefix = reverse("admin:index")
        return self.prefix


class HtmxLoginRedirectMiddleware:
    """An htmx request whose session has ended is sent to the login page as a whole page, and back to
    the page the rater was on afterwards. The plain redirect that `login_required` answers was followed
    by htmx inside the panel: a login page (with its own top bar) swapped in under the rating form, the
    judgment gone, and a login after a skip landing on the skip URL (a GET there: 405). A form sent
    after the session ended (htmx or not) reaches the login page with `unsaved=1`, which says so."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if response.status_code != 302:
            return response
        login = resolve_url(settings.LOGIN_URL)
        path, _, query = response["Location"].partition("?")
        # login_required's redirect names the page to come back to; a logout's does not
        if not path.endswith(login) or "next" not in dict(parse_qsl(query)):
            return response
        # A form sent after the session ended (a judgment, a skip) was not stored: the login page says
        # so (it came back with an empty form, and nothing told the rater to judge it again)
        unsaved = {SESSION_ENDED_UNSAVED: "1"} if request.method == "POST" else {}
        if not getattr(request, "htmx", False):
            if unsaved:
                response["Location"] = f"{path}?{query}&{urlencode(unsaved)}"
            return response
        from django_htmx.http import HttpResponseClientRedirect

        back = _same_site_path(request.htmx.current_url) or request.path
        return HttpResponseClientRedirect(f"{login}?{urlencode({'next': back, **unsaved})}")


SESSION_ENDED_UNSAVED = "unsaved"  # the login page's query parameter (templates/registration/login.html)


def _same_site_path(url: str | None) -> str | None:
    """The path (and query) of `url` when it names a page of this site, else None."""
    if not url:
        return None
    parts = urlsplit(url)
    if not parts.path.startswith("/") or parts.path.startswith("//"):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


class ContentSecurityPolicyMiddleware:
    """Send CONTENT_SECURITY_POLICY (settings.py) on every response that has none of its own: no script
    but this site's own files runs, whatever a page came to hold (defence in depth beside escaping
    and sanitizing). The pages have no inline script (data goes in json_script blocks; the API docs
    load their start-up script as a file, SpectacularSwaggerSplitView)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        policy = settings.CONTENT_SECURITY_POLICY
        if policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy
        return response
