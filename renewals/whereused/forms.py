"""The "Import integration flows" form, and the upload handler that keeps uploads on disk.

The form only collects the tenant and the files. Whether a file is a usable flow export is decided
per file by services.import_flow_exports, so one bad file never stops the others: the file field
accepts empty and odd files and leaves the verdict to the service.

Uploads are streamed to temporary files (never held in memory all at once), each cut off one byte
past the parser's size cap: an oversized file is then refused by size without being kept whole.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.core.files.uploadhandler import TemporaryFileUploadHandler

from keystore import permissions
from keystore.models import Tenant
from renewals.whereused import parser


class CappedTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    """Writes each uploaded file to a temporary file, keeping at most MAX_ZIP_BYTES + 1 bytes."""

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.kept = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        room = parser.MAX_ZIP_BYTES + 1 - self.kept
        if room > 0:
            chunk = raw_data[:room]
            self.file.write(chunk)
            self.kept += len(chunk)
        return None  # the rest of an oversized file is read from the request and dropped

    def file_complete(self, file_size: int):
        return super().file_complete(self.kept)


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files in one field (Django's "Uploading multiple files" recipe)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("widget", MultipleFileInput(attrs={"multiple": True, "accept": ".zip"}))
        # Empty files are reported per file by the import ("not a ZIP file").
        kwargs.setdefault("allow_empty_file", True)
        super().__init__(*args, **kwargs)

    def clean(self, data, initial=None) -> list:
        single_file_clean = super().clean
        if isinstance(data, list | tuple):
            if not data:
                return [single_file_clean(None, initial)]  # raises "required"
            return [single_file_clean(item, initial) for item in data]
        return [single_file_clean(data, initial)]


class FlowImportForm(forms.Form):
    tenant = forms.ModelChoiceField(
        queryset=Tenant.objects.none(),
        error_messages={
            "invalid_choice": "Choose a tenant in which you may import integration flows.",
            "required": "Choose a tenant.",
        },
    )
    # The field keeps its public name (templates, tests and scripts post "files"); the form
    # metaclass moves it into base_fields, so BaseForm.files (the uploads) is not shadowed.
    files = MultipleFileField(  # type: ignore[assignment]  # the name, not the attribute, clashes
        label="Integration flow exports",
        help_text="One or more ZIP files exported from Cloud Integration (Export on the "
        "integration flow), up to {limit} at a time. A flow imported before is replaced.",
        error_messages={"required": "Choose at least one ZIP file."},
    )

    def __init__(self, *args, user, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        files = self.fields["files"]
        # Django refuses a request with more files than this before the form sees it.
        files.help_text = files.help_text.format(limit=settings.DATA_UPLOAD_MAX_NUMBER_FILES)
        tenants = Tenant.objects.visible_to(user, permissions.DEPLOY)
        tenant_field = self.fields["tenant"]
        assert isinstance(tenant_field, forms.ModelChoiceField)
        tenant_field.queryset = tenants
        if not self.is_bound:
            only = list(tenants[:2])
            if len(only) == 1:
                self.fields["tenant"].initial = only[0].pk
