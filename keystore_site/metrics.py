"""Prometheus metrics at GET /metrics, in the text exposition format (version 0.0.4).

Who may read them: a scraper that sends `Authorization: Bearer <token>` with the token configured
as METRICS_TOKEN (Django setting, or the environment variable of that name) sees every tenant;
a logged-in staff user sees the tenants they may read (keystore.permissions). Without a bearer
token and a staff session the answer is 401; with a wrong token, or a user who is not staff, 403.

Metrics (timestamps are Unix seconds):
  keystore_entry_expiry_timestamp_seconds{tenant,alias,type,owner}  when each entry expires
  keystore_entries{tenant,state}            entries per expiry state (as on the dashboard)
  renewals_pending_sap_keys{tenant}         new SAP keys waiting for activation
  renewals_pending_auto_activation_timestamp_seconds{tenant,alias}
                                            when the scheduler activates each waiting key
  renewals_pending_needing_attention{tenant}
                                            waiting keys the scheduler never activates
  renewals_last_successful_scan_timestamp_seconds
                                            when the last scan without failures finished
                                            (absent until one has)
  renewals_scan_runs_interrupted_total      scans that never finished (a later one did the work)
  keystore_cache_up                         1 when the cache answers, 0 during an outage
  whereused_flows_restart_required{tenant}  integration flows waiting for a restart
  renewals_channel_messages_sent_total{kind}
                                            channel messages delivered, per channel kind
                                            (apprise's service: json, slack, msteams ...)
  renewals_channel_delivery_failures_total{kind}
                                            failed delivery attempts to channels
  renewals_channel_messages_given_up_total{kind}
                                            channel messages given up (after the last
                                            attempt, or when their channel was removed)

The number of queries does not depend on the number of tenants or entries.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.core.cache import cache
from django.db.models import Count, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from keystore import permissions
from keystore.models import KeystoreEntry, Tenant
from keystore_site import conf
from keystore_site.dashboard import EXPIRY_STATES, expiry_state_counts
from renewals import conf as renewals_conf
from renewals.models import PendingSapKey, ScanRun, SentNotification

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = dict[str, str]


@dataclass
class Family:
    """One metric: its name, help text, type and samples (labels, value)."""

    name: str
    help: str
    type: str = "gauge"
    samples: list[tuple[Labels, float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> None:
        self.samples.append((labels, value))


# -- the exposition format ---------------------------------------------------------------------


def escape_label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return repr(float(value))


def render(families: Iterable[Family]) -> str:
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for labels, value in family.samples:
            if labels:
                pairs = ",".join(
                    f'{name}="{escape_label_value(str(text))}"' for name, text in labels.items()
                )
                lines.append(f"{family.name}{{{pairs}}} {format_value(value)}")
            else:
                lines.append(f"{family.name} {format_value(value)}")
    return "\n".join(lines) + "\n"


# -- the data ----------------------------------------------------------------------------------


def _restart_counts(tenant_ids: list[int]) -> dict[int, int] | None:
    try:
        from renewals.whereused.models import IntegrationFlow
    except (ImportError, LookupError, RuntimeError):
        return None
    return dict(
        IntegrationFlow.objects.filter(tenant_id__in=tenant_ids, restart_required=True)
        .values("tenant_id")
        .annotate(n=Count("pk"))
        .values_list("tenant_id", "n")
        .order_by()
    )


def collect(tenant_ids: Iterable[int] | None, now: datetime | None = None) -> list[Family]:
    """The metric families for these tenants (None: every tenant)."""
    now = now or timezone.now()
    tenants_qs = (
        Tenant.objects.all()
        if tenant_ids is None
        else Tenant.objects.filter(pk__in=list(tenant_ids))
    )
    counts = expiry_state_counts(tenants_qs, now)
    tenants = [row.tenant for row in counts]
    ids = [tenant.pk for tenant in tenants]
    slugs = {tenant.pk: tenant.slug for tenant in tenants}

    expiry = Family(
        "keystore_entry_expiry_timestamp_seconds",
        "When the certificate of a keystore entry expires (valid until), Unix time.",
    )
    for tenant_id, alias, entry_type, owner, valid_until in (
        KeystoreEntry.objects.filter(tenant_id__in=ids)
        .order_by("tenant_id", "alias")
        .values_list("tenant_id", "alias", "entry_type", "owner", "valid_until")
    ):
        expiry.add(
            valid_until.timestamp(),
            tenant=slugs[tenant_id],
            alias=alias,
            type=entry_type,
            owner=owner,
        )

    states = Family(
        "keystore_entries",
        "Keystore entries by expiry state: expired, within_7_days, within_30_days "
        "(8 to 30), within_90_days (31 to 90), later.",
    )
    for row in counts:
        for state, _heading, _filter in EXPIRY_STATES:
            states.add(row.state_counts[state], tenant=row.tenant.slug, state=state)

    pending_counts = dict(
        PendingSapKey.objects.filter(tenant_id__in=ids)
        .values("tenant_id")
        .annotate(n=Count("pk"))
        .values_list("tenant_id", "n")
        .order_by()
    )
    pending = Family(
        "renewals_pending_sap_keys", "New SAP keys waiting for activation (New SAP Keys)."
    )
    for tenant in tenants:
        pending.add(pending_counts.get(tenant.pk, 0), tenant=tenant.slug)

    before = renewals_conf.auto_activate_before()
    activation = Family(
        "renewals_pending_auto_activation_timestamp_seconds",
        "When the scheduler activates a waiting new SAP key (current key's expiry minus "
        "RENEWALS_AUTO_ACTIVATE_BEFORE), Unix time.",
    )
    for tenant_id, alias, current_valid_until in (
        PendingSapKey.objects.filter(tenant_id__in=ids)
        .activatable_automatically(now)
        .order_by("tenant_id", "alias")
        .values_list("tenant_id", "alias", "entry__valid_until")
    ):
        activation.add(
            (current_valid_until - before).timestamp(), tenant=slugs[tenant_id], alias=alias
        )

    attention_counts = dict(
        PendingSapKey.objects.filter(tenant_id__in=ids)
        .needing_attention(now)
        .values("tenant_id")
        .annotate(n=Count("pk"))
        .values_list("tenant_id", "n")
        .order_by()
    )
    attention = Family(
        "renewals_pending_needing_attention",
        "New SAP keys the scheduler never activates: expired, or expiring no later than the "
        "key they replace.",
    )
    for tenant in tenants:
        attention.add(attention_counts.get(tenant.pk, 0), tenant=tenant.slug)

    last_scan = Family(
        "renewals_last_successful_scan_timestamp_seconds",
        "When the last automatic-activation scan without failures finished, Unix time.",
    )
    # The newest rows come first by primary key (indexed); scans are not long-lived.
    finished = (
        ScanRun.objects.filter(finished_at__isnull=False, failed=0)
        .order_by("-pk")
        .values_list("finished_at", flat=True)
        .first()
    )
    if finished is not None:
        last_scan.add(finished.timestamp())
    interrupted = Family(
        "renewals_scan_runs_interrupted_total",
        "Scans that never finished (worker killed); a later scan did their work.",
        type="counter",
    )
    interrupted.add(ScanRun.objects.filter(interrupted=True).count())
    cache_up = Family(
        "keystore_cache_up",
        "1 when the cache (Redis with REDIS_URL) answers, 0 during an outage; nothing "
        "depends on it without a fallback.",
    )
    cache_up.add(1 if cache_answers() else 0)

    families = [expiry, states, pending, activation, attention, last_scan, interrupted, cache_up]
    families += channel_delivery_families(ids)
    restart_counts = _restart_counts(ids)
    if restart_counts is not None:
        restart = Family(
            "whereused_flows_restart_required",
            "Integration flows waiting for a restart after a key they use was activated.",
        )
        for tenant in tenants:
            restart.add(restart_counts.get(tenant.pk, 0), tenant=tenant.slug)
        families.append(restart)
    return families


def channel_delivery_families(tenant_ids: list[int]) -> list[Family]:
    """The outbox's channel rows counted per channel kind, in one query: sent, failed
    attempts (every attempt of a row but its successful one) and given up."""
    sent = Family(
        "renewals_channel_messages_sent_total",
        "Messages delivered to chat and webhook channels, per channel kind.",
        type="counter",
    )
    failed = Family(
        "renewals_channel_delivery_failures_total",
        "Failed attempts to deliver a message to a channel, per channel kind.",
        type="counter",
    )
    given_up = Family(
        "renewals_channel_messages_given_up_total",
        "Channel messages given up after the last attempt (or when their channel was "
        "removed), per channel kind.",
        type="counter",
    )
    rows = (
        SentNotification.objects.channel_messages()
        .filter(tenant_id__in=tenant_ids)
        .values("channel__service")
        .annotate(
            n_sent=Count("pk", filter=Q(sent_at__isnull=False)),
            n_attempts=Sum("attempts"),
            n_given_up=Count("pk", filter=Q(gave_up=True)),
        )
        .order_by("channel__service")
    )
    for row in rows:
        kind = row["channel__service"]
        sent.add(row["n_sent"], kind=kind)
        failed.add((row["n_attempts"] or 0) - row["n_sent"], kind=kind)
        given_up.add(row["n_given_up"], kind=kind)
    return [sent, failed, given_up]


def cache_answers() -> bool:
    try:
        cache.get("keystore-metrics-probe")
    except Exception as error:  # any client error means the same thing: the cache is down
        logger.warning("The cache does not answer: %s", error)
        return False
    return True


# -- the view ----------------------------------------------------------------------------------


def _refusal(status: int, text: str) -> HttpResponse:
    response = HttpResponse(text + "\n", status=status, content_type="text/plain; charset=utf-8")
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


@never_cache
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer" and credentials:
        token = conf.metrics_token()
        if not token or not constant_time_compare(credentials, token):
            return _refusal(403, "The bearer token is not valid.")
        tenant_ids = None
    else:
        user = request.user
        if not user.is_authenticated:
            return _refusal(401, "Send the metrics bearer token, or log in as staff.")
        if not (user.is_active and user.is_staff):
            return _refusal(403, "Only staff users may read the metrics.")
        tenant_ids = permissions.tenant_ids(user, permissions.READ)
    return HttpResponse(render(collect(tenant_ids)), content_type=CONTENT_TYPE)
