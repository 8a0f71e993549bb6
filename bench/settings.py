"""Settings of a benchmark run: the site's settings, a throwaway database, production-like options.

bench/run.py sets BENCH_DATABASE_URL (a temporary SQLite file or a uniquely named PostgreSQL
database) before Django starts. Debug is off, as in production: no query log grows in memory and
templates are cached. The bare baseline app is added for the changelist comparison.
"""

import base64
import os

# Read by keystore_site.settings at import time; only defaults, a caller's environment wins.
os.environ.setdefault("DJANGO_DEBUG", "0")
os.environ.setdefault("DJANGO_SECRET_KEY", "bench-" + base64.b64encode(os.urandom(30)).decode())
os.environ.setdefault("KEYSTORE_KEK", base64.urlsafe_b64encode(os.urandom(32)).decode())
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
os.environ.setdefault("DJANGO_LOG_LEVEL", "WARNING")

import dj_database_url  # noqa: E402

from keystore_site.settings import *  # noqa: E402,F403
from keystore_site.settings import INSTALLED_APPS  # noqa: E402

_url = os.environ.get("BENCH_DATABASE_URL")
if not _url:
    raise RuntimeError("BENCH_DATABASE_URL is not set; start benchmarks with bench/run.py.")
DATABASES = {"default": dj_database_url.parse(_url, conn_max_age=0)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The site's own SQLite options (see keystore_site.settings), nothing tuned for the benchmark.
    DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 30}

INSTALLED_APPS = [*INSTALLED_APPS, "bench.bareapp"]
# The site's URLs and the bare baselines (bench/bareapp/urls.py).
ROOT_URLCONF = "bench.bareapp.urls"

# Production-like, but plain HTTP through the test client and without collectstatic.
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = False
CSRF_COOKIE_SECURE = False
SECURE_HSTS_SECONDS = 0
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Mails are built and "sent" without a network or console output.
EMAIL_BACKEND = "django.core.mail.backends.dummy.EmailBackend"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
Q_CLUSTER = {**Q_CLUSTER, "sync": True}  # noqa: F405
