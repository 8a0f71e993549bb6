"""Static files in production: hashed and compressed after collectstatic, plain before it.

Django's manifest storage answers every page with a 500 when collectstatic has not been run
("Missing staticfiles manifest entry"). Here a name missing from the manifest falls back to the
app's own file, which whitenoise serves from the apps' folders (WHITENOISE_USE_FINDERS), and the
log says once per process that collectstatic should be run.
"""

from __future__ import annotations

import logging

from whitenoise.storage import CompressedManifestStaticFilesStorage

logger = logging.getLogger(__name__)


class ForgivingManifestStorage(CompressedManifestStaticFilesStorage):
    _reported = False

    def stored_name(self, name: str) -> str:
        try:
            return super().stored_name(name)
        except ValueError:
            if not ForgivingManifestStorage._reported:
                ForgivingManifestStorage._reported = True
                logger.warning(
                    "Static file %s is not in the collectstatic manifest: serving the apps' "
                    "files uncompressed. Run manage.py collectstatic --noinput.",
                    name,
                )
            return name
