"""WSGI entry point (gunicorn keystore_site.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

from keystore_site.startup import WORKER_BOOT_ERROR, load_settings_or_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "keystore_site.settings")
load_settings_or_exit(WORKER_BOOT_ERROR)

application = get_wsgi_application()
