"""Where-used operations: import flow exports into the index, answer where an alias is used, build
the renewal pack for backend administrators, and track which flows must be restarted.

Each operation is one function; the admin pages, the `import_iflows` and `where_used` commands and
the activation call them. Reading (where_used, usage_counts, the CSV and the pack) touches the
index only, never a flow file, with a fixed number of queries however many flows there are.

`actor` is the user who acts (their tenant permission is checked) or None for the system.
"""

from __future__ import annotations

import csv
import functools
import io
import logging
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from os import PathLike
from typing import BinaryIO, NamedTuple

from django.db import DatabaseError, IntegrityError, connections, models, router, transaction
from django.db.models import Count, IntegerField, OuterRef, Q, Subquery, Value
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from keystore import permissions
from keystore.models import (
    ALIAS_MAX_LENGTH,
    AuditAction,
    AuditEvent,
    KeyMaterial,
    KeystoreEntry,
    Tenant,
)
from keystore.services import (
    Download,
    KeystoreError,
    actor_label,
    public_download,
    record_audit,
)
from renewals.whereused import restart
from renewals.whereused.models import IntegrationFlow, KeyUsageRecord
from renewals.whereused.parser import (
    ANY_KEY,
    Certainty,
    FlowExport,
    FlowParseError,
    KeyUsage,
    KnownAliases,
    Usage,
    alias_lookup,
    parse_flow_zip,
)
from renewals.whereused.querysets import component_key

logger = logging.getLogger(__name__)

MAX_STORED_WARNINGS = 50
NO_BACKEND = ("", "")


class WhereUsedError(KeystoreError):
    """A where-used operation was refused; the message is for the operator."""


def _one_line(value: object, limit: int = 300) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- import ----------------------------------------------------------------------------------

FlowSource = BinaryIO | bytes | str | PathLike


@dataclass(frozen=True)
class FlowImportResult:
    """The outcome for one file: imported (ok) or refused with a one-line message."""

    name: str
    ok: bool
    message: str
    bundle_id: str = ""
    bundle_name: str = ""
    usage_count: int = 0
    replaced: bool = False
    warnings: tuple[str, ...] = ()
    flow_id: int | None = None


def import_flow_exports(
    tenant: Tenant, sources: Iterable[tuple[str, FlowSource]], *, actor=None
) -> list[FlowImportResult]:
    """Index each flow export ZIP of `sources` ((name, file) pairs) for the tenant.

    Files are read one at a time, in order (pass a generator to open them lazily), and each is
    parsed and checked on its own: the flow row is created or updated and its earlier usages are
    replaced. A file that cannot be read or stored is reported and leaves the index as it was;
    the other files are still imported. What the files yield is written in groups (STORE_GROUP
    files or STORE_GROUP_SECONDS of reading), each in one short transaction of a few statements
    (see _Group): a commit is a disk flush, and ORM work per row would cost more than reading
    the file. Reading holds no transaction, so activations are never kept waiting by an import.
    Raises WhereUsedError only when the actor may not change the tenant's content (then nothing
    is read).
    """
    if actor is not None and not permissions.may(actor, permissions.DEPLOY, tenant):
        raise WhereUsedError(
            f"You are not allowed to import integration flows into tenant {tenant.slug}."
        )
    # Scripts are matched against the tenant's real aliases (in the keystore's spelling); the
    # lookup is built once for all files.
    known_aliases = alias_lookup(
        KeystoreEntry.objects.for_tenant(tenant).values_list("alias", flat=True)
    )
    results: list[FlowImportResult | None] = []
    remaining = iter(sources)
    finished = False
    while not finished:
        group = _Group(tenant, actor, results)
        started = time.monotonic()
        for count, (name, source) in enumerate(remaining, start=1):
            export = _read_one(name, source, known_aliases)
            if isinstance(export, FlowImportResult):
                results.append(export)
            else:
                results.append(None)  # filled in when the group is written
                group.add(len(results) - 1, name, export)
            if count >= STORE_GROUP or time.monotonic() - started >= STORE_GROUP_SECONDS:
                break
        else:
            finished = True
        group.finish()
    return results  # type: ignore[return-value]  # every None was filled in


# Files written together (see import_flow_exports); the seconds bound how long a file's results
# wait for their commit.
STORE_GROUP = 100
STORE_GROUP_SECONDS = 1.0


def _read_one(
    name: str, source: FlowSource, known_aliases: KnownAliases
) -> FlowExport | FlowImportResult:
    """The parsed and checked file, or the result that refuses it."""
    try:
        export = parse_flow_zip(source, known_aliases=known_aliases)
    except FlowParseError as error:
        return FlowImportResult(name, False, str(error))
    except Exception:
        # A defect in the parser must not cost the operator the other files of the batch.
        logger.exception("Unexpected error reading the flow export %r", name)
        return FlowImportResult(
            name, False, "the file could not be read (unexpected error; see the server log)"
        )
    if len(export.bundle_id) > _FLOW_MAX["bundle_id"]:
        return FlowImportResult(name, False, "the bundle ID in META-INF/MANIFEST.MF is too long")
    return export


def _store_alone(tenant: Tenant, p: _Pending, actor) -> FlowImportResult:
    try:
        with transaction.atomic():
            return _store(tenant, p, actor)
    except IntegrityError:
        return FlowImportResult(
            p.name,
            False,
            f"bundle {p.bundle_id} was being imported by someone else at the same time; "
            "import the file again",
        )
    except DatabaseError as error:
        logger.exception("Storing the flow export %r failed", p.name)
        return FlowImportResult(p.name, False, f"the flow could not be stored ({_one_line(error)})")


_USAGE_MAX = {
    name: KeyUsageRecord._meta.get_field(name).max_length
    for name in (
        "component_id",
        "component_name",
        "component_type",
        "direction",
        "property_key",
        "system",
        "address",
    )
}
_FLOW_MAX = {
    name: IntegrationFlow._meta.get_field(name).max_length
    for name in ("bundle_id", "bundle_name", "version")
}


def _kept_usages(usages: list[KeyUsage], warnings: list[str]) -> list[KeyUsage]:
    kept = []
    for usage in usages:
        if len(usage.alias) > ALIAS_MAX_LENGTH:
            # No keystore entry can carry it, so no where-used question can find it.
            warnings.append(
                f"{usage.component_name or usage.component_id}: alias longer than "
                f"{ALIAS_MAX_LENGTH} characters ignored"
            )
        else:
            kept.append(usage)
    return kept


def _stored_warnings(warnings: list[str]) -> list[str]:
    if len(warnings) <= MAX_STORED_WARNINGS:
        return warnings
    return warnings[:MAX_STORED_WARNINGS] + [
        f"... and {len(warnings) - MAX_STORED_WARNINGS} more warnings"
    ]


def _audit_detail(flow: IntegrationFlow, usage_count: int, replaced: bool) -> str:
    return (
        f"flow imported: {flow.bundle_name} ({flow.bundle_id}"
        + (f", version {flow.version}" if flow.version else "")
        + f"), {usage_count} key usages"
        + ("; replaced the earlier import" if replaced else "")
    )


def _result(
    name: str, flow: IntegrationFlow, usage_count: int, replaced: bool, warnings: list[str]
) -> FlowImportResult:
    return FlowImportResult(
        name=name,
        ok=True,
        message=f"bundle {flow.bundle_id}, {usage_count} usages"
        + (" (replaced)" if replaced else ""),
        bundle_id=flow.bundle_id,
        bundle_name=flow.bundle_name,
        usage_count=usage_count,
        replaced=replaced,
        warnings=tuple(warnings),
        flow_id=flow.pk,
    )


def _store(tenant: Tenant, p: _Pending, actor) -> FlowImportResult:
    """One file through the ORM: the fallback when its group could not be stored together."""
    flow = (
        IntegrationFlow.objects.select_for_update()
        .filter(tenant=tenant, bundle_id=p.bundle_id)
        .first()
    )
    replaced = flow is not None
    if flow is None:
        flow = IntegrationFlow(tenant=tenant, bundle_id=p.bundle_id)
    label = actor_label(actor)
    for column, value in zip(_IMPORT_COLUMNS, _import_values(p, actor, label), strict=True):
        setattr(flow, column, value)
    flow.save()
    if replaced:
        flow.usages.all().delete()
    KeyUsageRecord.objects.bulk_create(
        [
            KeyUsageRecord(
                **dict(zip(_USAGE_ATTNAMES, _usage_row(tenant.pk, flow.pk, usage), strict=True))
            )
            for usage in p.usages
        ],
        batch_size=500,
    )
    record_audit(
        tenant,
        "",
        AuditAction.OTHER,
        actor,
        label=label,
        detail=_audit_detail(flow, len(p.usages), replaced),
        at=p.imported_at,
    )
    return _result(p.name, flow, len(p.usages), replaced, p.warnings)


class _Pending:
    """A file of the group, read and checked: its flow row in the making, waiting for the
    group's writes (the attributes are IntegrationFlow's, for _audit_detail and _result)."""

    __slots__ = (
        "index",
        "name",
        "export",
        "bundle_id",
        "bundle_name",
        "version",
        "imported_at",
        "warnings",
        "usages",
        "pk",
        "replaced",
    )

    def __init__(self, index: int, name: str, export: FlowExport) -> None:
        self.index, self.name, self.export = index, name, export
        self.bundle_id = export.bundle_id
        self.bundle_name = export.bundle_name[: _FLOW_MAX["bundle_name"]]
        self.version = export.version[: _FLOW_MAX["version"]]
        self.imported_at = timezone.now()
        self.warnings = list(export.warnings)
        self.usages = _kept_usages(export.usages, self.warnings)
        self.pk: int | None = None
        self.replaced = False


class _Group:
    """The files of one commit group, stored together with a handful of statements.

    Files are read one at a time; what a file yields (its flow row, usages and audit record) is
    small and kept until the group is written: the flow rows with one statement for the new and
    one for the re-imported bundles, the usages they replace deleted with one, the usage rows and
    audit records inserted with one each, all as plain value tuples. They run in one
    transaction: if any write fails, it is rolled back and the group's files are stored again one
    by one through the ORM, each in its own transaction (_store_alone), so a single bad file
    cannot spoil the others.
    """

    def __init__(self, tenant: Tenant, actor, results: list[FlowImportResult | None]) -> None:
        self.tenant, self.actor, self.results = tenant, actor, results
        self.actor_id = actor.pk if actor is not None else None
        self.label = actor_label(actor)
        self.files: list[_Pending] = []
        self.bundles: set[str] = set()

    def add(self, index: int, name: str, export: FlowExport) -> None:
        if export.bundle_id in self.bundles:
            self.finish()  # the later file replaces the earlier one: store them in file order
        self.files.append(_Pending(index, name, export))
        self.bundles.add(export.bundle_id)

    def finish(self) -> None:
        """Write the group and fill in its results."""
        if not self.files:
            return
        try:
            with transaction.atomic():
                self._write()
        except DatabaseError as error:
            # Which file broke the group is unknown: store each again, each reporting its own.
            logger.info("Storing %d flows together failed (%s); one by one", len(self.files), error)
            for p in self.files:
                self.results[p.index] = _store_alone(self.tenant, p, self.actor)
        else:
            for p in self.files:
                self.results[p.index] = _result(p.name, p, len(p.usages), p.replaced, p.warnings)
        self.files, self.bundles = [], set()

    def _write(self) -> None:
        tenant_id, files = self.tenant.pk, self.files
        existing = _flow_ids(tenant_id, [p.bundle_id for p in files], lock=True)
        new = [p for p in files if p.bundle_id not in existing]
        again = [p for p in files if p.bundle_id in existing]
        for p in again:
            p.pk, p.replaced = existing[p.bundle_id], True
        # The import columns only: a re-import keeps the flow's restart marks.
        _execute_many(
            IntegrationFlow,
            _UPDATE_FLOW,
            [(*_import_values(p, self.actor_id, self.label), p.pk) for p in again],
        )
        if again:
            KeyUsageRecord.objects.filter(flow_id__in=[p.pk for p in again]).delete()
        _execute_many(
            IntegrationFlow,
            _INSERT_FLOW,
            [
                (
                    tenant_id,
                    p.bundle_id,
                    *_import_values(p, self.actor_id, self.label),
                    False,
                    None,
                    "",
                    None,
                    "",
                )
                for p in new
            ],
        )
        if new:
            # (tenant, bundle) is unique: these are the rows just inserted.
            ids = _flow_ids(tenant_id, [p.bundle_id for p in new], lock=False)
            for p in new:
                p.pk = ids[p.bundle_id]
        _execute_many(
            KeyUsageRecord,
            _INSERT_USAGE,
            [_usage_row(tenant_id, p.pk, usage) for p in files for usage in p.usages],
        )
        _execute_many(
            AuditEvent,
            _INSERT_AUDIT,
            [
                (
                    tenant_id,
                    "",
                    AuditAction.OTHER.value,
                    self.actor_id,
                    self.label,
                    p.imported_at,
                    "",
                    "",
                    _audit_detail(p, len(p.usages), p.replaced),
                )
                for p in files
            ],
        )


def _import_values(p: _Pending, actor, label: str) -> tuple:
    """The values of _IMPORT_COLUMNS for a file (`actor`: the user or their id)."""
    return (
        p.bundle_name,
        p.version,
        list(p.export.flow_names),
        p.imported_at,
        actor,
        label,
        _stored_warnings(p.warnings),
    )


def _flow_ids(tenant_id: int, bundle_ids: list[str], *, lock: bool) -> dict[str, int]:
    """{bundle ID: flow row id} of the tenant's flows among `bundle_ids` (rows locked)."""
    rows = IntegrationFlow.objects.filter(tenant_id=tenant_id, bundle_id__in=bundle_ids)
    if lock:
        rows = rows.select_for_update()
    return dict(rows.values_list("bundle_id", "pk"))


class _Statement(NamedTuple):
    """A statement the group runs with one executemany: an INSERT of `columns`, or an UPDATE of
    `columns` by primary key (the key comes last in each row). Every column of a table is named
    in its INSERT: rows go in as they are, without the model's defaults."""

    kind: str  # "insert" or "update"
    columns: tuple[str, ...]


_IMPORT_COLUMNS = (
    "bundle_name",
    "version",
    "flow_names",
    "imported_at",
    "imported_by",
    "imported_by_label",
    "warnings",
)
_RESTART_COLUMNS = (
    "restart_required",
    "restart_required_since",
    "restart_reason",
    "last_restart_at",
    "last_restart_by_label",
)
_UPDATE_FLOW = _Statement("update", _IMPORT_COLUMNS)
_INSERT_FLOW = _Statement("insert", ("tenant", "bundle_id", *_IMPORT_COLUMNS, *_RESTART_COLUMNS))
# What a usage row says about its component: stored by the import, read back by the report.
_USAGE_FIELDS = (
    "component_id",
    "component_name",
    "component_type",
    "direction",
    "usage",
    "certainty",
    "alias",
    "property_key",
    "system",
    "address",
    "outbound",
)
_INSERT_USAGE = _Statement("insert", ("tenant", "flow", *_USAGE_FIELDS))
_INSERT_AUDIT = _Statement(
    "insert",
    (
        "tenant",
        "alias",
        "action",
        "actor",
        "actor_label",
        "at",
        "old_fingerprint",
        "new_fingerprint",
        "detail",
    ),
)


# The same columns as model attributes, for the ORM path (_store).
_USAGE_ATTNAMES = ("tenant_id", "flow_id", *_USAGE_FIELDS)


def _usage_row(tenant_id: int, flow_id: int | None, usage: KeyUsage) -> tuple:
    """The values of _INSERT_USAGE."""
    m = _USAGE_MAX
    return (
        tenant_id,
        flow_id,
        usage.component_id[: m["component_id"]],
        usage.component_name[: m["component_name"]],
        usage.component_type[: m["component_type"]],
        usage.direction[: m["direction"]],
        usage.usage.value,
        usage.certainty.value,
        usage.alias,
        usage.property_key[: m["property_key"]],
        usage.system[: m["system"]],
        usage.address[: m["address"]],
        usage.outbound,
    )


# Column types whose Python values (str, int, bool, None) the database drivers take as they are;
# any other column's values go through the field's own preparation (datetimes, JSON).
_PLAIN_TYPES = frozenset(
    {
        "AutoField",
        "BigAutoField",
        "BigIntegerField",
        "BooleanField",
        "CharField",
        "ForeignKey",
        "IntegerField",
        "TextField",
    }
)


class _CompiledStatement(NamedTuple):
    sql: str  # an UPDATE or a PostgreSQL INSERT; elsewhere an INSERT up to its VALUES keyword
    row: str  # an INSERT's placeholders for one row, "(%s, %s, ...)"; "" when `sql` is whole
    fields: list  # the model fields behind a row's values, in order
    prepare: tuple  # per value of a row: the field whose get_db_prep_save it needs, or None
    columns: bool  # parameters are the columns of all rows, one array each (PostgreSQL UNNEST)


@functools.cache
def _compile(db: str, model: type[models.Model], statement: _Statement) -> _CompiledStatement:
    # Built from the model's own table and column names only, never from input.
    connection = connections[db]
    quote = connection.ops.quote_name
    meta = model._meta
    fields = [meta.get_field(name) for name in statement.columns]
    table = quote(meta.db_table)
    prepare = tuple(
        None if field.get_internal_type() in _PLAIN_TYPES else field for field in fields
    )
    names = ", ".join(quote(field.column) for field in fields)
    if statement.kind == "update":
        assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
        sql = f"UPDATE {table} SET {assignments} WHERE {quote(meta.pk.column)} = %s"  # noqa: S608
        return _CompiledStatement(sql, "", [*fields, meta.pk], (*prepare, None), False)
    if connection.vendor == "postgresql":
        # One array per column: PostgreSQL plans a multi-row VALUES list of hundreds of rows
        # slowly (Django's bulk_create does the same).
        arrays = ", ".join(f"%s::{field.db_type(connection)}[]" for field in fields)
        sql = f"INSERT INTO {table} ({names}) SELECT * FROM UNNEST({arrays})"  # noqa: S608
        return _CompiledStatement(sql, "", fields, prepare, True)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = f"INSERT INTO {table} ({names}) VALUES "  # noqa: S608
    return _CompiledStatement(sql, row, fields, prepare, False)


def _execute_many(model: type[models.Model], statement: _Statement, rows: list[tuple]) -> None:
    """Run the statement for every row: an INSERT with one statement (multi-row, in as few
    batches as the database takes), an UPDATE once per row. The ORM's bulk_create and save
    compile every value of every row, which costs more than reading the file behind them."""
    if not rows:
        return
    db = router.db_for_write(model)
    connection = connections[db]
    compiled = _compile(db, model, statement)
    if any(compiled.prepare):
        rows = [
            tuple(
                value if field is None else field.get_db_prep_save(value, connection)
                for field, value in zip(compiled.prepare, row, strict=True)
            )
            for row in rows
        ]
    with connection.cursor() as cursor:
        if compiled.columns:
            cursor.execute(compiled.sql, [list(column) for column in zip(*rows, strict=True)])
        elif not compiled.row:
            cursor.executemany(compiled.sql, rows)
        else:
            batch = max(1, connection.ops.bulk_batch_size(compiled.fields, rows))
            for start in range(0, len(rows), batch):
                chunk = rows[start : start + batch]
                cursor.execute(
                    compiled.sql + ", ".join([compiled.row] * len(chunk)),
                    [value for row in chunk for value in row],
                )


# -- removing flows from the index ---------------------------------------------------------


@dataclass(frozen=True)
class FlowRemovalResult:
    """The outcome for one bundle: removed (ok) or not in the index, with a one-line message."""

    bundle_id: str
    ok: bool
    message: str


def remove_flows(
    tenant: Tenant, bundle_ids: Iterable[str], *, actor=None
) -> list[FlowRemovalResult]:
    """Remove flows from the tenant's where-used index, with their key usages: flows undeployed
    or deleted in the tenant, so that Where-used stops listing them. Importing a flow again
    brings it back.

    One transaction; each removal gets an audit record. A bundle that is not in the index (never
    imported, or removed already: a second click) is reported and changes nothing. Raises
    WhereUsedError when the actor may not change the tenant's content (then nothing changes).
    """
    if actor is not None and not permissions.may(actor, permissions.DEPLOY, tenant):
        raise WhereUsedError(
            f"You are not allowed to remove integration flows from tenant {tenant.slug}."
        )
    wanted = list(dict.fromkeys(bundle_ids))
    label = actor_label(actor)
    with transaction.atomic():
        flows = {
            flow.bundle_id: flow
            for flow in IntegrationFlow.objects.select_for_update()
            .filter(tenant=tenant, bundle_id__in=wanted)
            .order_by()  # the model's ordering joins the tenant, whose row needs no lock
        }
        usages = dict(
            KeyUsageRecord.objects.filter(flow__in=flows.values())
            .order_by()
            .values_list("flow_id")
            .annotate(count=Count("id"))
        )
        results = []
        for bundle_id in wanted:
            flow = flows.get(bundle_id)
            if flow is None:
                results.append(
                    FlowRemovalResult(
                        bundle_id,
                        False,
                        f"bundle {bundle_id} is not in the where-used index of tenant "
                        f"{tenant.slug} (never imported, or removed already); nothing changed",
                    )
                )
                continue
            count = usages.get(flow.pk, 0)
            record_audit(
                tenant,
                "",
                AuditAction.OTHER,
                actor,
                label=label,
                detail=f"flow removed from the where-used index: {flow.bundle_name} "
                f"({flow.bundle_id}), {count} key usages",
            )
            results.append(
                FlowRemovalResult(bundle_id, True, f"{flow} removed with its {count} key usages")
            )
        IntegrationFlow.objects.filter(pk__in=[flow.pk for flow in flows.values()]).delete()
    return results


# -- where-used ------------------------------------------------------------------------------


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


def _flow_order(flow: FlowUse) -> tuple:
    return (flow.bundle_name.lower(), flow.bundle_id)


def _backend_order(backend: BackendUse) -> tuple:
    # Named backends first; steps and scripts without a backend last.
    return (not backend.is_backend, backend.system.lower(), backend.address.lower())


_REPORT_FIELDS = (
    "flow_id",
    "flow__bundle_id",
    "flow__bundle_name",
    "flow__version",
    "flow__restart_required",
    "flow__restart_required_since",
    *_USAGE_FIELDS,
)


def where_used(tenant: Tenant | int, alias: str, *, key_pair: bool = True) -> WhereUsedReport:
    """Where the tenant's flows use `alias`, from the index, in one query.

    `uses`: components configured with this alias. `may_use`: components that name no alias
    (any fitting key), decryptors (they try every key) and runtime-expression aliases. Both are
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
    usages = KeyUsageRecord.objects.for_tenant(tenant)
    uses = dict(
        usages.filter(alias__in=aliases)
        .exclude(certainty=Certainty.MAY_USE)
        .order_by()
        .values("alias")
        .annotate(n=Count(component_key(), distinct=True))
        .values_list("alias", "n")
    )
    may_use = usages.may_use().component_count() if aliases else 0
    return {alias: UsageCounts(uses.get(alias, 0), may_use) for alias in aliases}


def annotate_usage_counts(queryset, *, tenant_field: str = "tenant_id", alias_field: str = "alias"):
    """`queryset` (rows with a tenant and an alias, e.g. New SAP Keys) annotated with
    `where_used_uses` and `where_used_may_use` (components, as in usage_counts): still one query
    for the whole list."""
    usages = KeyUsageRecord.objects.filter(tenant_id=OuterRef(tenant_field)).order_by()

    def count(rows) -> Coalesce:
        per_tenant = (
            rows.values("tenant_id").annotate(n=Count(component_key(), distinct=True)).values("n")
        )
        return Coalesce(Subquery(per_tenant, output_field=IntegerField()), Value(0))

    return queryset.annotate(
        where_used_uses=count(
            usages.filter(alias=OuterRef(alias_field)).exclude(certainty=Certainty.MAY_USE)
        ),
        where_used_may_use=count(usages.may_use()),
    )


CSV_COLUMNS = (
    "section",
    "backend system",
    "backend address",
    "flow",
    "bundle id",
    "flow restart required",
    "component id",
    "component name",
    "component type",
    "direction",
    "usage",
    "alias",
    "property",
    "outbound connection",
)


def _csv_cell(value: object) -> str:
    text = str(value)
    # Flow files are untrusted: a cell starting like a formula must not run in a spreadsheet.
    if text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text


def where_used_csv(report: WhereUsedReport) -> bytes:
    """The report as CSV (UTF-8 with BOM for spreadsheets), one line per usage row."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for section, _title, backends in report.sections:
        for backend in backends:
            for flow in backend.flows:
                for component in flow.components:
                    writer.writerow(
                        [
                            _csv_cell(value)
                            for value in (
                                section,
                                backend.system,
                                backend.address,
                                flow.bundle_name,
                                flow.bundle_id,
                                "yes" if flow.restart_required else "no",
                                component.component_id,
                                component.component_name,
                                component.component_type,
                                component.direction,
                                component.usage,
                                component.alias_label,
                                component.property_key,
                                "yes" if component.outbound else "no",
                            )
                        ]
                    )
    return out.getvalue().encode("utf-8-sig")


def csv_download(report: WhereUsedReport, *, pending: bool = False) -> Download:
    stem = public_download_stem(report.alias)
    suffix = "_new_key" if pending else ""
    return Download(
        f"{stem}{suffix}_where-used.csv", "text/csv; charset=utf-8", where_used_csv(report)
    )


def public_download_stem(alias: str) -> str:
    # The same file stem keystore.services.public_download uses.
    return alias.replace("/", "_").replace("\\", "_") or "entry"


# -- renewal pack ----------------------------------------------------------------------------


def _utc(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else ""


def _material_kind(material: KeyMaterial) -> str:
    model = material._meta.model_name
    if model == "pendingsapkey":
        return "the new SAP key waiting for activation (New SAP Keys)"
    if model == "sapkeybackup":
        return f"a backup from SAP Key History (active until {_utc(material.active_until)})"
    return "the current key of the keystore entry"


def _actions(usage: str, files: dict[str, str], material: KeyMaterial) -> list[str]:
    """What a backend administrator imports for one usage."""
    cer, root = files["cer"], files["root"]
    root_text = (
        f"Import the root certificate {root} into the backend's trust store "
        f"(root CA {material.root_subject}, SHA-256 {material.root_fingerprint_sha256})."
    )
    if usage == Usage.CLIENT_CERTIFICATE:
        return [
            root_text,
            f"Map the client certificate {cer} to the user Cloud Integration logs on as "
            "(certificate-based logon / user mapping), replacing the old certificate.",
        ]
    if usage == Usage.SIGNING:
        return [
            f"Import the signing certificate {cer} to verify the signatures of messages from "
            "Cloud Integration (and trust its root if the backend validates the chain)."
        ]
    if usage == Usage.DECRYPTION:
        return [
            f"Import the encryption certificate {cer}: the backend encrypts messages for Cloud "
            "Integration with it."
        ]
    if usage == Usage.ENCRYPTION:
        return [
            f"Cloud Integration encrypts messages for the backend with {cer}: the backend must "
            "decrypt with the private key that belongs to this certificate."
        ]
    if usage == Usage.VERIFICATION:
        return [
            f"Cloud Integration verifies the backend's signatures with {cer}: the backend must "
            "sign with the private key that belongs to this certificate."
        ]
    return [
        f"Check how the component uses the key (it is {usage}); import {cer} and its root "
        f"{root} where the receiving system needs them."
    ]


def _backend_lines(backends: list[BackendUse], files: dict[str, str], material) -> list[str]:
    lines: list[str] = []
    for number, backend in enumerate(backends, start=1):
        if backend.is_backend:
            where = f" ({backend.address})" if backend.system and backend.address else ""
            lines.append(f"{number}. {backend.label}{where}")
        else:
            lines.append(
                f"{number}. {backend.label}: the receivers of these flows' signed or encrypted "
                "messages"
            )
        lines.append("   Used by:")
        for flow in backend.flows:
            for component in flow.components:
                via = f" [{component.property_key}]" if component.property_key else ""
                lines.append(
                    f"   - flow {flow.bundle_name!r} ({flow.bundle_id}), {component.label!r}"
                    f" ({component.kind or 'component'}): {component.usage}, "
                    f"{component.alias_label}{via}"
                )
        lines.append("   To import there:")
        actions: list[str] = []
        for usage in backend.usages:
            for action in _actions(usage, files, material):
                if action not in actions:
                    actions.append(action)
        lines += [f"   - {action}" for action in actions]
        lines.append("")
    return lines


def instruction_sheet(material: KeyMaterial, report: WhereUsedReport, files: dict[str, str]) -> str:
    """INSTRUCTIONS.txt of the renewal pack: the files, then per backend what to import."""
    tenant_slug = report.tenant.slug
    lines = [
        f"Renewal pack for alias {material.alias} in tenant {tenant_slug}",
        f"Key: {_material_kind(material)}",
        f"Prepared: {_utc(timezone.now())}",
        "",
        "Files",
        f"  {files['cer']}: the certificate (DER)",
        f"      Subject: {material.subject}",
        f"      Issuer: {material.issuer}",
        f"      Serial number: {material.serial}",
        f"      Valid from {_utc(material.valid_from)} until {_utc(material.valid_until)}",
        f"      SHA-256 fingerprint: {material.fingerprint_sha256}",
        f"  {files['root']}: the root certificate (DER)",
        f"      Subject: {material.root_subject}",
        f"      SHA-256 fingerprint: {material.root_fingerprint_sha256}",
        f"  {files['p7b']}: the whole chain, PKCS#7 (Windows certificate manager, openssl, "
        "keytool)",
        f"  {files['pem']}: the whole chain, PEM",
        "",
    ]
    current = getattr(material, "entry", None)
    if current is not None and current.root_fingerprint_sha256 != material.root_fingerprint_sha256:
        lines += [
            "NOTE: this key is issued under another root certificate than the current key "
            f"({current.root_subject}). Every backend must trust the new root.",
            "",
        ]
    counts = report.counts
    lines += [
        f"Backends that use this alias ({len([b for b in report.uses if b.is_backend])})",
        "=" * 40,
    ]
    lines += _backend_lines(report.uses, files, material) or [
        "None found in the imported flows.",
        "",
    ]
    lines += [
        f"Backends that may use it ({len([b for b in report.may_use if b.is_backend])})",
        "=" * 40,
        "These components name no alias (Cloud Integration may choose any fitting key), try "
        "every key (decryptors) or take the alias from a runtime expression. Check them.",
        "",
    ]
    lines += _backend_lines(report.may_use, files, material) or ["None found.", ""]
    restart_flows = report.flows_to_restart_after_activation
    lines += ["Restart after activation", "=" * 40]
    if restart_flows:
        lines.append(
            "These flows authenticate outbound connections with this key (or any key); the TLS "
            "connection keeps the old key for up to 24 hours. Restart them after activation:"
        )
        lines += [f"  - {flow.bundle_name} ({flow.bundle_id})" for flow in restart_flows]
    else:
        lines.append("No imported flow holds outbound connections with this key.")
    lines += [
        "",
        f"Summary: {counts.uses} components use the alias, {counts.may_use} may use it; "
        f"{counts.backends} backends, {counts.flows} flows. Only flows imported into the "
        "where-used index are listed.",
    ]
    return "\n".join(lines) + "\n"


def renewal_pack(material: KeyMaterial, report: WhereUsedReport) -> Download:
    """One ZIP for the backend administrators: <alias>.cer, <alias>_rootCA.cer, <alias>.p7b,
    the PEM chain and INSTRUCTIONS.txt. Public content only."""
    if material.alias != report.alias or material.tenant_id != report.tenant.pk:
        raise WhereUsedError("The where-used report is about another alias or tenant.")
    try:
        downloads = {
            kind: public_download(material, kind) for kind in ("cer", "root", "p7b", "pem")
        }
    except KeystoreError as error:
        raise WhereUsedError(f"No renewal pack: {error}")
    files = {kind: download.filename for kind, download in downloads.items()}
    sheet = instruction_sheet(material, report, files)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for download in downloads.values():
            archive.writestr(download.filename, download.content)
        archive.writestr("INSTRUCTIONS.txt", sheet.encode("utf-8"))
    suffix = "_new_key" if material._meta.model_name == "pendingsapkey" else ""
    stem = public_download_stem(material.alias)
    return Download(f"{stem}{suffix}_renewal_pack.zip", "application/zip", buffer.getvalue())


# -- restart ---------------------------------------------------------------------------------


def mark_restart_required(
    tenant: Tenant, alias: str, *, reason: str, at: datetime | None = None
) -> int:
    """Mark the flows whose outbound connections use `alias` (or any key) as "restart
    required"; returns how many. Meant to run inside the activation's transaction.

    "Since" is the latest activation that requires the restart: only a restart begun after it
    clears the mark (see restart_flows)."""
    at = at or timezone.now()
    return IntegrationFlow.objects.holding_connections_with(tenant, alias).update(
        restart_required=True,
        restart_required_since=at,
        restart_reason=reason[:500],
    )


@dataclass(frozen=True)
class RestartResult:
    flow: IntegrationFlow
    ok: bool
    message: str


def restart_flows(flows: Iterable[IntegrationFlow], *, actor=None) -> list[RestartResult]:
    """Restart each flow through WHEREUSED_RESTART_CALLABLE (default: only record it).

    On success the "restart required" mark is cleared (unless a newer activation marked the flow
    while it restarted) and the restart is recorded with an audit event. If the callable raises,
    the mark stays and the result carries the error. Flows in tenants where the actor may not
    change content are refused one by one.
    """
    run = restart.restart_callable()
    if hasattr(flows, "select_related"):
        flows = flows.select_related("tenant")
    label = actor_label(actor)
    results = []
    for flow in flows:
        if actor is not None and not permissions.may(actor, permissions.DEPLOY, flow.tenant_id):
            results.append(
                RestartResult(
                    flow,
                    False,
                    f"{flow}: you are not allowed to restart flows in tenant {flow.tenant.slug}.",
                )
            )
            continue
        started = timezone.now()
        if run is not None:
            try:
                run(flow)
            except Exception as error:
                logger.warning("Restarting flow %s failed: %s", flow.bundle_id, error)
                results.append(
                    RestartResult(flow, False, f"{flow}: restart failed: {_one_line(error)}")
                )
                continue
        now = timezone.now()
        with transaction.atomic():
            rows = IntegrationFlow.objects.filter(pk=flow.pk)
            rows.update(last_restart_at=now, last_restart_by_label=label)
            cleared = rows.filter(
                Q(restart_required_since__isnull=True) | Q(restart_required_since__lte=started)
            ).update(restart_required=False, restart_required_since=None, restart_reason="")
            record_audit(
                flow.tenant,
                "",
                AuditAction.OTHER,
                actor,
                label=label,
                detail=f"flow restarted: {flow.bundle_name} ({flow.bundle_id})"
                + ("" if run is not None else "; recorded only")
                + (f"; was required because {flow.restart_reason}" if flow.restart_reason else ""),
                at=now,
            )
        flow.last_restart_at, flow.last_restart_by_label = now, label
        if cleared:
            flow.restart_required, flow.restart_required_since, flow.restart_reason = (
                False,
                None,
                "",
            )
        done = "restarted" if run is not None else "restart recorded"
        results.append(RestartResult(flow, True, f"{flow}: {done}."))
    return results


# -- links for other admin pages -------------------------------------------------------------


def whereused_url(tenant_id: int, alias: str, pending: bool = False) -> str:
    url = reverse("admin:whereused_integrationflow_where_used", args=[tenant_id, alias])
    return url + "?pending=1" if pending else url


def renewal_pack_url(tenant_id: int, alias: str, pending: bool = False) -> str:
    url = reverse("admin:whereused_integrationflow_renewal_pack", args=[tenant_id, alias])
    return url + "?pending=1" if pending else url
