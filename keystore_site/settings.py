"""Settings for the keystore site, read from the environment.

Zero set-up by default (SQLite file, django-q2 ORM broker, console mail). Deployments set
DATABASE_URL, REDIS_URL, DJANGO_SECRET_KEY, DJANGO_ALLOWED_HOSTS, KEYSTORE_KEK and mail settings.
"""

import base64
import hashlib
import os
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from keystore_site.api.hashers import ClientSecretHasher

BASE_DIR = Path(__file__).resolve().parent.parent


_TRUE_WORDS = {"1", "true", "yes", "on"}
_FALSE_WORDS = {"0", "false", "no", "off"}


def env_bool(name: str, default: bool) -> bool:
    """Unset gives the default; anything but a known word refuses to start, because a typo in
    DJANGO_DEBUG must never turn debug (and its development secrets) on."""
    value = os.environ.get(name)
    if value is None:
        return default
    word = value.strip().lower()
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise ImproperlyConfigured(
        f"{name} must be one of 1, 0, true, false, yes, no, on, off (it is {value!r})."
    )


def env_int(name: str, default: int, minimum: int = 0) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = int(value.strip())
    except ValueError:
        number = minimum - 1
    if number < minimum:
        raise ImproperlyConfigured(f"{name} must be a whole number >= {minimum} (it is {value!r}).")
    return number


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


TESTING = "pytest" in sys.modules or (len(sys.argv) > 1 and sys.argv[1] == "test")

# The demo and the tests run with debug on; production turns it off explicitly.
DEBUG = env_bool("DJANGO_DEBUG", True)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off.")
    SECRET_KEY = "dev-only-insecure-secret-key-do-not-use-in-production-0123456789"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS")

# Key-encryption keys for private keys at rest: the first seals, all open (rotation).
_kek_env = os.environ.get("KEYSTORE_KEK", "")
if _kek_env.strip():
    KEYSTORE_KEK = [item.strip() for item in _kek_env.split(",") if item.strip()]
    # Checked now, so that a malformed key stops the start instead of the first private key use.
    from keystore.sealing import decode_kek

    for _kek in KEYSTORE_KEK:
        decode_kek(_kek)
elif DEBUG:
    # A local, derived KEK keeps development and tests free of set-up; never used with debug off.
    KEYSTORE_KEK = [
        base64.urlsafe_b64encode(
            hashlib.sha256(b"keystore-dev-kek:" + SECRET_KEY.encode()).digest()
        ).decode()
    ]
else:
    raise ImproperlyConfigured(
        "KEYSTORE_KEK must be set when DJANGO_DEBUG is off "
        "(one or more comma-separated URL-safe base64 keys of 32 bytes)."
    )

INSTALLED_APPS = [
    "django.contrib.admin",
    "axes",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "guardian",
    "django_q",
    "keystore",
    "renewals",
    "renewals.whereused",
    "renewals.plans",
    "renewals.connectivity",
    "renewals.channels",
    "oauth2_provider",
    "keystore_site.api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as django-axes asks: it turns a lockout raised during authentication into its page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "keystore_site.urls"

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
                "renewals.context_processors.new_sap_keys",
            ],
        },
    },
]

WSGI_APPLICATION = "keystore_site.wsgi.application"

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}", conn_max_age=0
    )
}
if os.environ.get("TEST_DATABASE_NAME"):
    # Lets several test runs share one PostgreSQL server without dropping each other's database.
    DATABASES["default"]["TEST"] = {"NAME": os.environ["TEST_DATABASE_NAME"]}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE makes concurrent writers queue on the lock instead of failing mid-transaction.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 30}
    )

AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out user name and address before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
GUARDIAN_RAISE_403 = True
ANONYMOUS_USER_NAME = None

OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
OAUTH2_PROVIDER = {
    # API client secrets: salted SHA-256 (keystore_site.api.hashers says why), checked by it only.
    "CLIENT_SECRET_HASHER": ClientSecretHasher(),
    "OAUTH2_VALIDATOR_CLASS": "keystore_site.api.validators.ClientSecretValidator",
    # RFC 9700 (OAuth 2.0 Security BCP) now rather than with django-oauth-toolkit 4.0: tokens
    # stored hashed, never taken from a URL, no implicit or password grant.
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "ACCESS_TOKEN_EXPIRE_SECONDS": 3600,
    "SCOPES": {"api": "The Cloud Integration keystore API"},
    "DEFAULT_SCOPES": ["api"],
    # Client credentials only: there is no user consent page.
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https"],
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# One date format on every page (see keystore_site/formats).
FORMAT_MODULE_PATH = ["keystore_site.formats"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("DJANGO_STATIC_ROOT", "") or BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or TESTING
        else "keystore_site.staticfiles.ForgivingManifestStorage"
    },
}
# The site serves its own static files (whitenoise): compressed, hashed names from STATIC_ROOT
# after collectstatic, and the apps' own files when it has not been run (so a forgotten
# collectstatic costs compression, never a page).
WHITENOISE_USE_FINDERS = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_URL = "admin:login"
# A refused or missing ?next= lands on the dashboard (Django's default is /accounts/profile/).
LOGIN_REDIRECT_URL = "admin:index"

# A key-management console: sessions end when the browser closes, and at the latest after
# DJANGO_SESSION_HOURS (default 8) hours.
SESSION_COOKIE_AGE = env_int("DJANGO_SESSION_HOURS", 8, minimum=1) * 3600
SESSION_EXPIRE_AT_BROWSER_CLOSE = True

# Failed logins (django-axes): locked per combination of user name and client address, stored in
# the database (so they hold across workers and restarts without Redis), reset by a good login.
TRUSTED_PROXY_COUNT = env_int("DJANGO_TRUSTED_PROXY_COUNT", 0)
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "keystore_site.clientaddress.client_address"
AXES_LOCKOUT_CALLABLE = "keystore_site.lockout.lockout_response"
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_VERBOSE = False

# Content-Security-Policy (django-csp): scripts and styles from the site's own files only.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # A hanging Redis must cost a page at most a second, not the worker's whole time.
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# Uploads are small by nature; bigger bodies are refused before anything is parsed.
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# Mail: console in the demo, SMTP when EMAIL_HOST is set.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "587"))
    EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
else:
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "keystore@localhost")

# django-q2: ORM broker by default, Redis when REDIS_URL is set.
Q_CLUSTER = {
    "name": "keystore",
    "workers": int(os.environ.get("Q_WORKERS", "2")),
    "timeout": 300,
    "retry": 600,
    "max_attempts": 3,
    "catch_up": False,
    "save_limit": 1000,
    "label": "Task queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
if TESTING:
    Q_CLUSTER["sync"] = True

# Renewals, where-used and metrics settings a deployment sets through its environment; the rest
# (reminder days, alert thresholds, scan interval) are typed and defaulted in renewals/conf.py.
RENEWALS_SITE_URL = os.environ.get("RENEWALS_SITE_URL", "")
WHEREUSED_RESTART_CALLABLE = os.environ.get("WHEREUSED_RESTART_CALLABLE") or None
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
# Networks the TLS connectivity test may reach besides the public and private ranges
# (comma-separated CIDRs); loopback, link-local and metadata addresses are refused otherwise.
CONNECTIVITY_ALLOWED_NETWORKS = env_list("CONNECTIVITY_ALLOWED_NETWORKS")
try:
    from renewals.connectivity.addresses import parse_networks

    parse_networks(CONNECTIVITY_ALLOWED_NETWORKS)
except ValueError as _error:
    raise ImproperlyConfigured(str(_error)) from None

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"refusals": {"()": "keystore_site.logfilters.RefusalRecordFilter"}},
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
    "loggers": {
        # axes logs every login at INFO; its warnings (failures, lockouts) are what matters.
        "django_q": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
        # A refusal is logged once, as one line, by keystore_site.refusals (no traceback).
        "django.request": {"filters": ["refusals"]},
    },
}

# Behind a TLS-terminating proxy that sets X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
