"""gunicorn's settings for the site: `gunicorn -c python:keystore_site.gunicorn keystore_site.wsgi`.

The configuration is checked once in the arbiter before any worker starts, so a wrong setting
ends the start with one line instead of every worker failing to boot with a traceback.
"""

import os

# The web worker's time limit; the TLS connectivity test stays well inside it.
timeout = 30
graceful_timeout = 30


def on_starting(server) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "keystore_site.settings")
    from keystore_site.startup import load_settings_or_exit

    load_settings_or_exit()
