"""Importing integration flow exports into the where-used index, and removing flows from it.

`import_flow_exports` is what the admin's "Import integration flows" page and the `import_iflows`
command call; `remove_flows` is the admin's "Remove from the where-used index" action and the
`remove_iflows` command. Both are audited.

`actor` is the user who acts (their tenant permission is checked) or None for the system.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from os import PathLike
from typing import BinaryIO, NamedTuple

from django.db import DatabaseError, IntegrityError, connections, models, router, transaction
from django.db.models import Count
from django.utils import timezone

from keystore import permissions
from keystore.models import ALIAS_MAX_LENGTH, AuditAction, AuditEvent, KeystoreEntry, Tenant
from keystore.services import actor_label, record_audit
from renewals.whereused.errors import WhereUsedError, one_line
from renewals.whereused.models import USAGE_FIELDS, IntegrationFlow, KeyUsageRecord
from renewals.whereused.parser import (
    FlowExport,
    FlowParseError,
    KeyUsage,
    KnownAliases,
    alias_lookup,
    parse_flow_zip,
)

logger = logging.getLogger(__name__)

MAX_STORED_WARNINGS = 50

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
    # Permission check (DEPLOY on the tenant):
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
        return FlowImportResult(p.name, False, f"the flow could not be stored ({one_line(error)})")


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
_INSERT_USAGE = _Statement("insert", ("tenant", "flow", *USAGE_FIELDS))
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
_USAGE_ATTNAMES = ("tenant_id", "flow_id", *USAGE_FIELDS)


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
    # Permission check (DEPLOY on the tenant):
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
