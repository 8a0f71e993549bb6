"""The where-used report of an alias, and the usage counts list pages show.

`where_used` answers "which flows, channels and steps use this alias, and which backends must
take the new certificate" from the index alone, in one query however many flows there are;
`usage_counts` and `annotate_usage_counts` give the same numbers for many aliases at once. The
admin pages, the `where_used` command, the CSV and the renewal pack (renewals.whereused.pack)
read it.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import reduce
from typing import Any, NamedTuple, TypeVar

from django.db.models import Count, Exists, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from keystore.models import KeyMaterial, Tenant
from renewals.whereused.models import USAGE_FIELDS, KeyUsageRecord
from renewals.whereused.parser import ANY_KEY, Certainty, Usage
from renewals.whereused.querysets import component_key, script_passes_q

#: Any queryset of rows with a tenant and an alias (see annotate_usage_counts).
_QS = TypeVar("_QS", bound=QuerySet[Any])

NO_BACKEND = ("", "")


class ComponentUse(NamedTuple):
    """One usage row of a component (a component using a key two ways has two rows)."""

    component_id: str
    component_name: str
    component_type: str
    direction: str
    usage: str
    property_key: str
    alias: str  # ANY_KEY for "may use" rows
    outbound: bool
    reason: str = ""  # why a "may use" row may use the key
    script_file: str = ""  # scripts: the file the step runs

    @property
    def label(self) -> str:
        return self.component_name or self.component_id

    @property
    def alias_label(self) -> str:
        return self.alias if self.alias != ANY_KEY else "any key"

    @property
    def kind(self) -> str:
        """ "SOAP Receiver", "PKCS#7 signer", ..."""
        return " ".join(part for part in (self.component_type, self.direction) if part)


@dataclass
class FlowUse:
    flow_id: int
    bundle_id: str
    bundle_name: str
    version: str
    restart_required: bool
    restart_required_since: datetime | None
    components: list[ComponentUse] = field(default_factory=list)
    #: The flow's admin change page; set by the admin's where-used page, which links each flow.
    admin_url: str = ""

    @property
    def component_count(self) -> int:
        return len({component.component_id for component in self.components})

    @property
    def outbound(self) -> bool:
        """Does the flow hold outbound connections with the key (restart after activation)?"""
        return any(component.outbound for component in self.components)


@dataclass
class BackendUse:
    system: str
    address: str
    flows: list[FlowUse] = field(default_factory=list)

    @property
    def is_backend(self) -> bool:
        return (self.system, self.address) != NO_BACKEND

    @property
    def label(self) -> str:
        if not self.is_backend:
            return "No backend system (steps and scripts)"
        return self.system or self.address

    @property
    def component_count(self) -> int:
        return sum(flow.component_count for flow in self.flows)

    @property
    def usages(self) -> list[str]:
        """The distinct usages in this backend, in a stable order."""
        found = {component.usage for flow in self.flows for component in flow.components}
        return [usage.value for usage in Usage if usage.value in found]


class WhereUsedCounts(NamedTuple):
    uses: int  # components that use the alias
    may_use: int  # components that may use it
    backends: int  # distinct backend systems (name and address) in both sections
    flows: int  # distinct flows in both sections


@dataclass
class WhereUsedReport:
    tenant: Tenant
    alias: str
    key_pair: bool
    uses: list[BackendUse]
    may_use: list[BackendUse]

    @property
    def sections(self) -> list[tuple[str, str, list[BackendUse]]]:
        return [("uses", "Uses this alias", self.uses), ("may use", "May use it", self.may_use)]

    def _flows(self) -> dict[int, FlowUse]:
        return {
            flow.flow_id: flow for backend in (*self.uses, *self.may_use) for flow in backend.flows
        }

    @property
    def counts(self) -> WhereUsedCounts:
        backends = {
            (backend.system, backend.address)
            for backend in (*self.uses, *self.may_use)
            if backend.is_backend
        }
        return WhereUsedCounts(
            uses=sum(backend.component_count for backend in self.uses),
            may_use=sum(backend.component_count for backend in self.may_use),
            backends=len(backends),
            flows=len(self._flows()),
        )

    @property
    def restart_required_flows(self) -> list[FlowUse]:
        """Flows marked "restart required" now."""
        return sorted(
            (flow for flow in self._flows().values() if flow.restart_required),
            key=_flow_order,
        )

    @property
    def flows_to_restart_after_activation(self) -> list[FlowUse]:
        """Flows whose outbound connections use this key (or any key): what
        mark_restart_required will mark when the alias is activated."""
        outbound: dict[int, FlowUse] = {}
        for backend in (*self.uses, *self.may_use):
            for flow in backend.flows:
                if flow.outbound:
                    outbound[flow.flow_id] = flow
        return sorted(outbound.values(), key=_flow_order)

    @property
    def is_empty(self) -> bool:
        return not self.uses and not self.may_use


def _flow_order(flow: FlowUse) -> tuple[str, str]:
    return (flow.bundle_name.lower(), flow.bundle_id)


def _backend_order(backend: BackendUse) -> tuple[bool, str, str]:
    # Named backends first; steps and scripts without a backend last.
    return (not backend.is_backend, backend.system.lower(), backend.address.lower())


_REPORT_FIELDS = (
    "flow_id",
    "flow__bundle_id",
    "flow__bundle_name",
    "flow__version",
    "flow__restart_required",
    "flow__restart_required_since",
    *USAGE_FIELDS,
)


def where_used(tenant: Tenant | int, alias: str, *, key_pair: bool = True) -> WhereUsedReport:
    """Where the tenant's flows use `alias`, from the index, in one query.

    `uses`: components configured with this alias, and script steps passing it to a keystore
    API (ignoring case, matched now: a key created after the import is found). `may_use`:
    components that name no alias (any fitting key), decryptors (they try every key), signers
    without an alias, aliases from runtime expressions or unset parameters, and components
    naming this alias behind an authentication nobody can read from the export. Both are
    grouped backend (system, address) -> flow -> component. `key_pair=False` (a trusted
    certificate entry) leaves out "may use" rows that need a private key.
    """
    if isinstance(tenant, int):
        tenant = Tenant.objects.get(pk=tenant)
    rows = (
        KeyUsageRecord.objects.for_alias(alias, key_pair=key_pair, tenant=tenant)
        .order_by()
        .values_list(*_REPORT_FIELDS)
    )
    sections: dict[bool, dict[tuple[str, str], dict[int, FlowUse]]] = {True: {}, False: {}}
    for row in rows:
        record = dict(zip(_REPORT_FIELDS, row, strict=True))
        may = record["alias"] == ANY_KEY or record["certainty"] == Certainty.MAY_USE
        flows = sections[may].setdefault((record["system"], record["address"]), {})
        flow = flows.get(record["flow_id"])
        if flow is None:
            flow = flows[record["flow_id"]] = FlowUse(
                flow_id=record["flow_id"],
                bundle_id=record["flow__bundle_id"],
                bundle_name=record["flow__bundle_name"],
                version=record["flow__version"],
                restart_required=record["flow__restart_required"],
                restart_required_since=record["flow__restart_required_since"],
            )
        flow.components.append(
            ComponentUse(
                component_id=record["component_id"],
                component_name=record["component_name"],
                component_type=record["component_type"],
                direction=record["direction"],
                usage=record["usage"],
                property_key=record["property_key"],
                alias=record["alias"],
                outbound=record["outbound"],
                reason=record["reason"],
                script_file=record["script_file"],
            )
        )

    def grouped(section: dict[tuple[str, str], dict[int, FlowUse]]) -> list[BackendUse]:
        backends = []
        for (system, address), flows in section.items():
            for flow in flows.values():
                flow.components.sort(key=lambda c: (c.label.lower(), c.component_id, c.usage))
            backends.append(BackendUse(system, address, sorted(flows.values(), key=_flow_order)))
        return sorted(backends, key=_backend_order)

    return WhereUsedReport(
        tenant=tenant,
        alias=alias,
        key_pair=key_pair,
        uses=grouped(sections[False]),
        may_use=grouped(sections[True]),
    )


class UsageCounts(NamedTuple):
    uses: int
    may_use: int


def usage_counts(tenant: Tenant | int, aliases: Iterable[str]) -> dict[str, UsageCounts]:
    """Components that use / may use each alias (key pairs), for list pages: two queries for
    any number of aliases. The numbers match where_used(...).counts."""
    aliases = list(dict.fromkeys(aliases))
    if not aliases:
        return {}
    usages = KeyUsageRecord.objects.for_tenant(tenant)
    # The rows naming the aliases (a handful each), each with whether its component also has an
    # any-key row: the "may use" sections count a component once.
    with_any_key = usages.filter(
        flow_id=OuterRef("flow_id"), component_id=OuterRef("component_id"), alias=ANY_KEY
    )
    # Each branch names the tenant itself, so each is one index lookup (as in for_alias).
    scope = Q(tenant=tenant)
    branches = [scope & Q(alias__in=aliases)] + [scope & script_passes_q(a) for a in aliases]
    named = (
        KeyUsageRecord.objects.filter(reduce(operator.or_, branches))
        .order_by()
        .values_list("alias", "usage", "certainty", component_key())
        .annotate(any_key=Exists(with_any_key))
    )
    by_lower = {alias.lower(): alias for alias in aliases}  # unique ignoring case in a keystore
    uses: dict[str, set[str]] = {alias: set() for alias in aliases}
    may_by_name: dict[str, set[str]] = {alias: set() for alias in aliases}
    for alias, usage, certainty, component, any_key in named:
        if certainty == Certainty.MAY_USE:
            if alias in may_by_name and not any_key:
                may_by_name[alias].add(component)
        elif usage == Usage.NAMED_IN_SCRIPT and alias.lower() in by_lower:
            uses[by_lower[alias.lower()]].add(component)
        elif alias in uses:
            uses[alias].add(component)
    may_use = usages.may_use().component_count()
    return {
        alias: UsageCounts(len(uses[alias]), may_use + len(may_by_name[alias])) for alias in aliases
    }


def annotate_usage_counts(
    queryset: _QS, *, tenant_field: str = "tenant_id", alias_field: str = "alias"
) -> _QS:
    """`queryset` (rows with a tenant and an alias, e.g. New SAP Keys) annotated with
    `where_used_uses` and `where_used_may_use` (components, as in usage_counts): still one query
    for the whole list."""
    tenant = Q(tenant_id=OuterRef(tenant_field))
    alias = OuterRef(alias_field)

    def count(*branches: Q) -> Coalesce:
        # Each branch names the tenant itself, so each is one index lookup (as in for_alias).
        rows = KeyUsageRecord.objects.filter(reduce(operator.or_, (tenant & b for b in branches)))
        per_tenant = (
            rows.order_by()
            .values("tenant_id")
            .annotate(n=Count(component_key(), distinct=True))
            .values("n")
        )
        return Coalesce(Subquery(per_tenant, output_field=IntegerField()), Value(0))

    return queryset.annotate(
        where_used_uses=count(
            Q(alias=alias) & ~Q(certainty=Certainty.MAY_USE), script_passes_q(alias)
        ),
        where_used_may_use=count(Q(alias=ANY_KEY), Q(alias=alias, certainty=Certainty.MAY_USE)),
    )


# -- as JSON (the where_used command and the API's WhereUsed) ------------------------------


def backend_json(backends: list[BackendUse]) -> list[dict[str, Any]]:
    return [
        {
            "backend": {"system": backend.system, "address": backend.address},
            "flows": [
                {
                    "bundle_name": flow.bundle_name,
                    "bundle_id": flow.bundle_id,
                    "version": flow.version,
                    "restart_required": flow.restart_required,
                    "components": [
                        {
                            "id": component.component_id,
                            "name": component.component_name,
                            "type": component.component_type,
                            "direction": component.direction,
                            "usage": component.usage,
                            "alias": component.alias,
                            "property_key": component.property_key,
                            "outbound": component.outbound,
                            "reason": component.reason,
                            "script_file": component.script_file,
                        }
                        for component in flow.components
                    ],
                }
                for flow in backend.flows
            ],
        }
        for backend in backends
    ]


def report_json(report: WhereUsedReport, material: KeyMaterial, pending: bool) -> dict[str, Any]:
    counts = report.counts
    return {
        "alias": report.alias,
        "tenant": report.tenant.slug,
        "pending": pending,
        "key": {
            "fingerprint_sha256": material.fingerprint_sha256,
            "valid_from": material.valid_from.isoformat(),
            "valid_until": material.valid_until.isoformat(),
        },
        "counts": counts._asdict(),
        "uses": backend_json(report.uses),
        "may_use": backend_json(report.may_use),
        "restart_after_activation": [
            flow.bundle_name for flow in report.flows_to_restart_after_activation
        ],
    }
