"""Forms of the keystore admin views: uploads, key pair creation, signed certificates, rename and
PKCS#12 export.

The forms only collect input: every check on the content (parsing, chain, strength, alias rules)
happens in keystore.services, whose KeystoreError message the view puts back on the form. What the
forms do check is what must be refused before the service is called: a file over the size cap
(refused from UploadedFile.size, before the file is read), an empty file, a tenant the user may
not deploy to, two export passwords that differ and an export password the password validators
refuse (keystore.passwords). Passwords are never rendered back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.core.files.uploadedfile import UploadedFile
from django.db.models import QuerySet

from keystore import crypto, permissions
from keystore.models import ALIAS_MAX_LENGTH, Tenant
from keystore.passwords import MIN_EXPORT_PASSWORD_LENGTH, export_password_problems
from keystore.services import KEY_TYPES, MAX_CREATED_VALID_DAYS

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from keystore.permissions import AnyUser


def _size_text(limit: int) -> str:
    if limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MiB"
    return f"{limit // 1024} KiB"


class CappedFileField(forms.FileField):
    """A file field that refuses files over `max_bytes` by their announced size, unread."""

    def __init__(self, *, max_bytes: int, what: str, **kwargs) -> None:
        self.max_bytes = max_bytes
        self.what = what
        kwargs.setdefault("allow_empty_file", False)
        kwargs.setdefault(
            "error_messages",
            {"empty": "The file is empty.", "required": "Choose a file to upload."},
        )
        super().__init__(**kwargs)

    def clean(self, data, initial=None):
        upload = super().clean(data, initial)
        if (
            isinstance(upload, UploadedFile)
            and upload.size is not None
            and upload.size > self.max_bytes
        ):
            raise forms.ValidationError(
                f"The file is larger than {_size_text(self.max_bytes)}, the limit for {self.what}."
            )
        return upload


def read_upload(upload: UploadedFile) -> bytes:
    """The whole file; only called after CappedFileField has checked its size."""
    upload.seek(0)
    return b"".join(upload.chunks())


def _password_field(label: str, help_text: str = "") -> forms.CharField:
    return forms.CharField(
        label=label,
        strip=False,
        help_text=help_text,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
    )


def _alias_field(label: str = "Alias") -> forms.CharField:
    # strip=False: white space around an alias is reported by the service, not silently changed.
    return forms.CharField(
        label=label,
        max_length=ALIAS_MAX_LENGTH,
        strip=False,
        help_text="Unique in the tenant's keystore; aliases starting with 'sap_' or "
        "'hcicertificate' are reserved for SAP.",
    )


class TenantUploadForm(forms.Form):
    """Base of the upload forms: the tenant is chosen among those where the user holds
    `tenant_permission` (may deploy, for uploads)."""

    tenant_permission = permissions.DEPLOY
    tenant = forms.ModelChoiceField(
        queryset=Tenant.objects.none(),
        error_messages={
            "invalid_choice": "Choose a tenant in which you may add keystore content.",
            "required": "Choose a tenant.",
        },
    )

    def __init__(self, *args: Any, user: AnyUser, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        offer_tenants(self, Tenant.objects.visible_to(user, self.tenant_permission))


def offer_tenants(form: forms.Form, tenants: QuerySet[Tenant]) -> None:
    """The form's `tenant` field offers `tenants`; a user with only one finds it chosen."""
    tenant_field = form.fields["tenant"]
    assert isinstance(tenant_field, forms.ModelChoiceField)  # the forms declare it so
    tenant_field.queryset = tenants
    if not form.is_bound:
        only = list(tenants[:2])
        if len(only) == 1:
            tenant_field.initial = only[0].pk


class CertificateUploadForm(TenantUploadForm):
    alias = _alias_field()
    file = CappedFileField(
        label="Certificate file",
        max_bytes=crypto.MAX_CERTIFICATE_BYTES,
        what="a certificate file",
        help_text="PEM (one certificate or a chain) or DER (.cer, .crt, .pem, .der).",
    )
    overwrite = forms.BooleanField(
        required=False, help_text="Replace an existing tenant entry with this alias."
    )


class KeyPairUploadForm(TenantUploadForm):
    alias = _alias_field()
    file = CappedFileField(
        label="PKCS#12 file",
        max_bytes=crypto.MAX_KEYSTORE_BYTES,
        what="a PKCS#12 file",
        help_text="One private key with its certificate chain (.p12, .pfx).",
    )
    password = _password_field("Password", "The password of the PKCS#12 file.")
    overwrite = forms.BooleanField(
        required=False, help_text="Replace an existing tenant entry with this alias."
    )


class KeystoreUploadForm(TenantUploadForm):
    file = CappedFileField(
        label="Keystore file",
        max_bytes=crypto.MAX_KEYSTORE_BYTES,
        what="a keystore file",
        help_text="PKCS#12 (.p12, .pfx) or Java keystore (.jks); every entry is imported "
        "under its own alias.",
    )
    password = _password_field("Password", "The password of the keystore file.")
    overwrite = forms.BooleanField(
        required=False,
        help_text="Replace existing tenant entries with the same aliases "
        "(otherwise they are rejected).",
    )


_KEY_TYPE_LABELS = {
    "rsa-2048": "RSA 2048 bits",
    "rsa-3072": "RSA 3072 bits",
    "rsa-4096": "RSA 4096 bits",
    "ec-256": "EC P-256",
    "ec-384": "EC P-384",
}


class CreateKeyPairForm(TenantUploadForm):
    alias = _alias_field()
    subject = forms.CharField(
        label="Subject",
        max_length=crypto.MAX_SUBJECT_LENGTH,
        help_text="Distinguished name, most specific part first, e.g. "
        "CN=orders.example.com, OU=Integration, O=Example AG, C=DE.",
        widget=forms.TextInput(attrs={"size": 70}),
    )
    key_type = forms.ChoiceField(
        label="Key type",
        choices=[(key, _KEY_TYPE_LABELS[key]) for key in KEY_TYPES],
        initial="rsa-2048",
    )
    valid_days = forms.IntegerField(
        label="Valid for (days)",
        min_value=1,
        max_value=MAX_CREATED_VALID_DAYS,
        initial=365,
        help_text="Of the self-signed certificate; a certificate authority sets its own "
        "validity when it signs the request.",
    )


class SigningResponseForm(forms.Form):
    file = CappedFileField(
        label="Signed certificate",
        max_bytes=crypto.MAX_CERTIFICATE_BYTES,
        what="a certificate file",
        help_text="The certificate authority's answer: PEM, DER (.cer, .crt) or PKCS#7 "
        "(.p7b, .p7c), with or without the CA chain.",
    )


class RenameForm(forms.Form):
    new_alias = _alias_field("New alias")


class ExportForm(forms.Form):
    """The password that protects an exported private key, twice; it must pass the password
    validators (keystore.passwords). `user`, when given, is the person exporting."""

    password1 = _password_field(
        "Password",
        f"Protects the exported file; at least {MIN_EXPORT_PASSWORD_LENGTH} characters, "
        "not a common password.",
    )
    password2 = _password_field("Password (again)")

    def __init__(self, *args: Any, user: User | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.exporting_user = user

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        first, second = cleaned.get("password1"), cleaned.get("password2")
        problems = export_password_problems(first, self.exporting_user) if first else []
        if problems:
            self.add_error("password1", problems)
        elif first is not None and second is not None and first != second:
            self.add_error("password2", "The two passwords differ.")
        return cleaned


class KeystoreBackupForm(TenantUploadForm, ExportForm):
    """The tenant whose whole keystore is written, and the password protecting the file."""

    tenant_permission = permissions.READ_SECURITY

    def __init__(self, *args: Any, user: User, **kwargs: Any) -> None:
        super().__init__(*args, user=user, **kwargs)
        self.fields["tenant"].error_messages["invalid_choice"] = (
            "Choose a tenant whose keystore you may back up."
        )
        self.exporting_user = user
        self.order_fields(["tenant", "password1", "password2"])
