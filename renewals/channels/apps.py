"""The channels app (label "channels"): a tenant's chat and webhook destinations."""

from django.apps import AppConfig
from django.core import checks


class ChannelsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "renewals.channels"
    label = "channels"
    verbose_name = "Channels"

    def ready(self) -> None:
        from renewals.channels import logguard
        from renewals.channels.conf import check_settings

        checks.register(check_settings)
        # Not a schedule or a query: a log filter, so that no library prints a channel's URL.
        logguard.install()
