"""The dashboard on the admin index: the first page after login.

Per tenant the user may read (keystore.permissions): entries by expiry state (expired, within 7,
30 and 90 days, later; each count links to the keystore list with its expiry filter), New SAP Keys
with their automatic activation dates, integration flows waiting for a restart, and the entries
expiring in each of the next twelve months as a server-rendered SVG bar chart; below them the
last audit events of those tenants, then Django's app list (templates/admin/index.html).

The page asks the database the same number of times however many tenants and entries there are:
counts are aggregates (Count with a filter per state, grouped by tenant or month), lists are
bounded. `expiry_state_counts` is shared with the metrics (keystore_site.metrics).
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, TypedDict, cast
from urllib.parse import urlencode

from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncMonth
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from keystore import permissions
from keystore.models import AuditEvent, KeystoreEntry, Tenant
from keystore.querysets import expiry_bucket_conditions
from renewals.models import PendingSapKey

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

    from keystore.permissions import AnyUser

    class ChangeUrl(TypedDict):
        change_url: str

    #: Rows of the dashboard's lists, each with the URL of its admin page ("" without one).
    LinkedPendingKey = WithAnnotations[PendingSapKey, ChangeUrl]
    LinkedAuditEvent = WithAnnotations[AuditEvent, ChangeUrl]

# (state of keystore.querysets.EXPIRY_BUCKETS, heading, value of the keystore list's "expiry"
# filter that lists these entries)
EXPIRY_STATES: tuple[tuple[str, str, str], ...] = (
    ("expired", "Expired", "expired"),
    ("within_7_days", "Within 7 days", "7"),
    ("within_30_days", "8 to 30 days", "8-30"),
    ("within_90_days", "31 to 90 days", "31-90"),
    ("later", "Later", "later"),
)
TIMELINE_MONTHS = 12
LIST_LIMIT = 50
AUDIT_EVENTS = 10


# -- counts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TenantExpiryCounts:
    """A tenant's entries by expiry state (keystore.querysets.EXPIRY_BUCKETS) and in all."""

    tenant: Tenant
    state_counts: dict[str, int]
    entry_total: int


def expiry_state_counts(tenants: QuerySet[Tenant], now: datetime) -> list[TenantExpiryCounts]:
    """The tenants' counts, ordered by slug, from one query."""
    filters = expiry_bucket_conditions(now, "entries__")
    annotations = {
        f"n_{state}": Count("entries", filter=condition) for state, condition in filters.items()
    }
    return [
        TenantExpiryCounts(
            tenant=tenant,
            state_counts={state: getattr(tenant, f"n_{state}") for state in filters},
            entry_total=tenant.entry_total,
        )
        for tenant in tenants.annotate(entry_total=Count("entries"), **annotations).order_by(
            "slug", "pk"
        )
    ]


def month_starts(now: datetime, count: int = TIMELINE_MONTHS) -> list[date]:
    """The first day of this month (UTC) and of the `count - 1` months after it."""
    moment = now.astimezone(UTC)
    year, month = moment.year, moment.month
    starts = []
    for _ in range(count):
        starts.append(date(year, month, 1))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return starts


def _after(month: date) -> datetime:
    year, number = (month.year + 1, 1) if month.month == 12 else (month.year, month.month + 1)
    return datetime(year, number, 1, tzinfo=UTC)


def expiry_counts_by_month(
    tenant_ids: Iterable[int], now: datetime, months: int = TIMELINE_MONTHS
) -> dict[int, list[tuple[date, int]]]:
    """tenant id -> [(first day of month, entries still valid now that expire in that month)]
    for this month and the next ones, from one grouped query."""
    ids = list(tenant_ids)
    starts = month_starts(now, months)
    grouped = (
        KeystoreEntry.objects.filter(
            tenant_id__in=ids, valid_until__gt=now, valid_until__lt=_after(starts[-1])
        )
        .annotate(month=TruncMonth("valid_until", tzinfo=UTC))
        .values("tenant_id", "month")
        .annotate(n=Count("pk"))
        .order_by()
    )
    found: dict[tuple[int, date], int] = {}
    for row in grouped:
        month = row["month"]
        month = month.date() if isinstance(month, datetime) else month
        found[(row["tenant_id"], month)] = row["n"]
    return {
        tenant_id: [(start, found.get((tenant_id, start), 0)) for start in starts]
        for tenant_id in ids
    }


# -- the chart ---------------------------------------------------------------------------------


def _text(value) -> str:
    return html.escape(str(value), quote=True)


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _ticks(top: int) -> list[int]:
    if top <= 0:
        return [0]
    if top == 1:
        return [0, 1]
    return sorted({0, top // 2, top})


def expiry_timeline_svg(
    counts_by_month: list[tuple[date, int]],
    *,
    title: str = "Entries expiring per month",
    width: int = 600,
    height: int = 200,
    bar_colour: str = "#79aec8",
) -> str:
    """A bar chart, one bar per month, as a standalone SVG document (every text escaped).

    Bar heights are proportional to the counts (the highest bar fills the plot); each bar is a
    <rect> with data-month and data-count, and a <title> for the tooltip.
    """
    left, right, top, bottom = 36, 8, 34, 34
    plot_width = max(width - left - right, 1)
    plot_height = max(height - top - bottom, 1)
    highest = max((count for _month, count in counts_by_month), default=0)
    slot = plot_width / max(len(counts_by_month), 1)
    bar_width = slot * 0.7
    baseline = top + plot_height
    total = sum(count for _month, count in counts_by_month)
    label = f"{title}: {total} entr{'y' if total == 1 else 'ies'} in {len(counts_by_month)} months"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_text(label)}" '
        'class="expiry-timeline" font-family="sans-serif" font-size="11">',
        f"<title>{_text(label)}</title>",
        f'<text x="{left}" y="14" fill="currentColor" font-weight="bold">{_text(title)}</text>',
    ]
    for tick in _ticks(highest):
        y = baseline - (tick / highest * plot_height if highest else 0)
        parts.append(
            f'<line x1="{left}" y1="{_number(y)}" x2="{left + plot_width}" y2="{_number(y)}" '
            'stroke="currentColor" stroke-opacity="0.2"/>'
        )
        parts.append(
            f'<text x="{left - 6}" y="{_number(y + 4)}" text-anchor="end" '
            f'fill="currentColor">{tick}</text>'
        )
    for index, (month, count) in enumerate(counts_by_month):
        x = left + index * slot + (slot - bar_width) / 2
        bar_height = count / highest * plot_height if highest else 0
        centre = _number(x + bar_width / 2)
        tooltip = f"{month:%B %Y}: {count} entr{'y' if count == 1 else 'ies'} expiring"
        parts.append(
            f"<g><title>{_text(tooltip)}</title>"
            f'<rect x="{_number(x)}" y="{_number(baseline - bar_height)}" '
            f'width="{_number(bar_width)}" height="{_number(bar_height)}" '
            f'fill="{_text(bar_colour)}" '
            f'data-month="{month:%Y-%m}" data-count="{count}"/></g>'
        )
        if count:
            parts.append(
                f'<text x="{centre}" y="{_number(baseline - bar_height - 3)}" '
                f'text-anchor="middle" fill="currentColor">{count}</text>'
            )
        parts.append(
            f'<text x="{centre}" y="{baseline + 14}" text-anchor="middle" '
            f'fill="currentColor">{_text(f"{month:%b}")}</text>'
        )
        if index == 0 or month.month == 1:
            parts.append(
                f'<text x="{centre}" y="{baseline + 27}" text-anchor="middle" '
                f'fill="currentColor" fill-opacity="0.7">{month.year}</text>'
            )
    parts.append(
        f'<line x1="{left}" y1="{baseline}" x2="{left + plot_width}" y2="{baseline}" '
        'stroke="currentColor"/>'
    )
    if not highest:
        parts.append(
            f'<text x="{left + plot_width / 2:.0f}" y="{top + plot_height / 2:.0f}" '
            'text-anchor="middle" fill="currentColor" fill-opacity="0.7">'
            "No entry expires in these months</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


# -- the page ----------------------------------------------------------------------------------


@dataclass
class StateCell:
    state: str
    heading: str
    count: int
    url: str


@dataclass
class TenantDashboard:
    tenant: Tenant
    states: list[StateCell]
    entry_total: int
    entries_url: str
    timeline: list[tuple[date, int]]
    timeline_svg: SafeString
    pending: list[LinkedPendingKey] = field(default_factory=list)
    pending_count: int = 0
    pending_url: str = ""
    flows: list = field(default_factory=list)
    flows_count: int = 0
    flows_url: str = ""
    plans: list = field(default_factory=list)  # renewal plans in progress

    @property
    def pending_more(self) -> int:
        return self.pending_count - len(self.pending)

    @property
    def flows_more(self) -> int:
        return self.flows_count - len(self.flows)


@dataclass
class Dashboard:
    now: datetime
    tenants: list[TenantDashboard]
    audit_events: list[LinkedAuditEvent]
    audit_url: str
    flows_available: bool


def _restart_flows(tenant_ids: list[int]):
    """(flows waiting for a restart, count per tenant), or None while the where-used app or
    its restart mark is not there (it is optional to this page)."""
    try:
        from renewals.whereused.models import IntegrationFlow
    except (ImportError, LookupError, RuntimeError):
        return None
    if not hasattr(IntegrationFlow.objects, "restart_required"):
        return None
    waiting = IntegrationFlow.objects.restart_required().filter(tenant_id__in=tenant_ids)
    flows = list(
        waiting.select_related("tenant").order_by("restart_required_since", "pk")[:LIST_LIMIT]
    )
    counts = dict(
        waiting.values("tenant_id").annotate(n=Count("pk")).values_list("tenant_id", "n").order_by()
    )
    return flows, counts


def _plans_in_progress(tenant_ids: list[int]) -> list:
    """The renewal plans whose key waits, each with `backend_count` (affected backends),
    `confirmed_count` (confirmed or verified), `confirmed_share` and `change_url` (one query),
    or [] without the plans app."""
    try:
        from renewals.plans.models import BackendStatus, RenewalPlan
    except (ImportError, LookupError, RuntimeError):
        return []
    # Annotated rows with two attributes set below (the page reads them): Any, not the model.
    plans: list[Any] = list(
        RenewalPlan.objects.waiting()
        .filter(tenant_id__in=tenant_ids)
        .annotate(
            # Backends marked not affected need nothing: the share is of the others.
            backend_count=Count("backends", filter=~Q(backends__status=BackendStatus.NOT_AFFECTED)),
            confirmed_count=Count(
                "backends",
                filter=Q(backends__status__in=(BackendStatus.CONFIRMED, BackendStatus.VERIFIED)),
            ),
        )
        .order_by("planned_activation", "created_at", "pk")[: LIST_LIMIT * 4]
    )
    for plan in plans:
        plan.change_url = _url("admin:plans_renewalplan_change", plan.pk)
        plan.confirmed_share = (
            round(100 * plan.confirmed_count / plan.backend_count) if plan.backend_count else 100
        )
    return plans


def _url(name: str, *args, query: dict | None = None) -> str:
    try:
        url = reverse(name, args=args)
    except NoReverseMatch:
        return ""
    return f"{url}?{urlencode(query)}" if query else url


def build_dashboard(user: AnyUser, now: datetime | None = None) -> Dashboard:
    """Everything the dashboard shows, for the tenants this user may read."""
    now = now or timezone.now()
    visible = permissions.tenant_ids(user, permissions.READ)
    counts = expiry_state_counts(Tenant.objects.filter(pk__in=visible), now)
    ids = [row.tenant.pk for row in counts]
    timelines = expiry_counts_by_month(ids, now) if ids else {}

    waiting = PendingSapKey.objects.filter(tenant_id__in=ids)
    pending: list[LinkedPendingKey] = []
    for key in (
        waiting.select_related("tenant", "entry")
        .defer("chain_pem", "sealed_private_key", "entry__chain_pem", "entry__sealed_private_key")
        .order_by("entry__valid_until", "pk")[:LIST_LIMIT]
    ):
        # The cast is made true on the next line (the page and its tests read key.change_url).
        linked_key = cast("LinkedPendingKey", key)
        linked_key.change_url = _url("admin:renewals_pendingsapkey_change", key.pk)
        pending.append(linked_key)
    pending_counts = dict(
        waiting.values("tenant_id").annotate(n=Count("pk")).values_list("tenant_id", "n").order_by()
    )
    restart = _restart_flows(ids) if ids else ([], {})
    plans_by_tenant: dict[int, list] = {}
    for plan in _plans_in_progress(ids) if ids else []:
        plans_by_tenant.setdefault(plan.tenant_id, []).append(plan)
    flows, flow_counts = restart if restart is not None else ([], {})

    entries_list = _url("admin:keystore_keystoreentry_changelist")
    pending_list = _url("admin:renewals_pendingsapkey_changelist")
    flows_list = _url("admin:whereused_integrationflow_changelist")
    pending_by_tenant: dict[int, list[LinkedPendingKey]] = {}
    for key in pending:
        pending_by_tenant.setdefault(key.tenant_id, []).append(key)
    flows_by_tenant: dict[int, list] = {}
    for flow in flows:
        flow.change_url = _url("admin:whereused_integrationflow_change", flow.pk)
        flows_by_tenant.setdefault(flow.tenant_id, []).append(flow)

    summaries = []
    for row in counts:
        tenant = row.tenant
        cells = [
            StateCell(
                state,
                heading,
                row.state_counts[state],
                f"{entries_list}?"
                + urlencode({"tenant": tenant.pk, **({"expiry": expiry} if expiry else {})}),
            )
            for state, heading, expiry in EXPIRY_STATES
        ]
        timeline = timelines.get(tenant.pk, [])
        svg = expiry_timeline_svg(timeline, title=f"Entries of {tenant.slug} expiring per month")
        summaries.append(
            TenantDashboard(
                tenant=tenant,
                states=cells,
                entry_total=row.entry_total,
                entries_url=f"{entries_list}?{urlencode({'tenant': tenant.pk})}",
                timeline=timeline,
                timeline_svg=mark_safe(svg),  # noqa: S308  every text in it is escaped
                pending=pending_by_tenant.get(tenant.pk, []),
                pending_count=pending_counts.get(tenant.pk, 0),
                pending_url=f"{pending_list}?{urlencode({'tenant': tenant.pk})}",
                flows=flows_by_tenant.get(tenant.pk, []),
                flows_count=flow_counts.get(tenant.pk, 0),
                plans=plans_by_tenant.get(tenant.pk, [])[:LIST_LIMIT],
                flows_url=(
                    f"{flows_list}?"
                    + urlencode({"tenant": tenant.pk, "restart_required__exact": 1})
                    if flows_list
                    else ""
                ),
            )
        )
    audit_events: list[LinkedAuditEvent] = []
    for event in AuditEvent.objects.filter(tenant_id__in=ids).select_related("tenant")[
        :AUDIT_EVENTS
    ]:
        linked_event = cast("LinkedAuditEvent", event)
        linked_event.change_url = _url("admin:keystore_auditevent_change", event.pk)
        audit_events.append(linked_event)
    return Dashboard(
        now=now,
        tenants=summaries,
        audit_events=audit_events,
        audit_url=_url("admin:keystore_auditevent_changelist"),
        flows_available=restart is not None,
    )


def index(request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
    """The admin index with the dashboard above the app list (routed before admin.site.urls,
    wrapped in admin_view: staff login required)."""
    context = {"keystore_dashboard": build_dashboard(request.user), **(extra_context or {})}
    return admin.site.index(request, extra_context=context)
