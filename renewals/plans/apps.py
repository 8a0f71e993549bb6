"""The renewal-plans app: one plan per new SAP key, tracked per backend."""

from django.apps import AppConfig


class PlansConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "renewals.plans"
    label = "plans"
    verbose_name = "Renewal plans"
