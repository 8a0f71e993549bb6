"""The bare admin of the baseline model: plain columns, stock filters and search."""

from django.contrib import admin

from bench.bareapp.models import BareEntry


@admin.register(BareEntry)
class BareEntryAdmin(admin.ModelAdmin):
    list_display = (
        "alias",
        "tenant",
        "entry_type",
        "owner",
        "valid_until",
        "subject_cn",
        "issuer_cn",
        "key_type",
        "key_size",
        "modified_at",
        "modified_by_label",
    )
    list_filter = ("tenant", "entry_type", "owner", "valid_until")
    search_fields = ("alias", "subject", "issuer", "serial", "fingerprint_sha256")
    list_select_related = ("tenant",)
    list_per_page = 100
