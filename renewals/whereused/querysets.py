"""Business filters over the where-used index, in the domain's words.

"Uses" an alias: a component names exactly this alias (configured aliases are compared as
stored), or a script passes it to a keystore API (compared ignoring case, as the keystore does,
on an index of script rows: matched now, not when the flow was imported). "May use" it: a component
names no alias (any fitting key), tries every key (decryptors), takes its alias from a runtime
expression or an unset parameter (all stored as ANY_KEY), or names this alias behind a switch
nobody can read from the export (an authentication taken from an unset parameter: certainty
"may use" with the alias).
"""

from __future__ import annotations

from django.db.models import CharField, Count, OuterRef, Q, Value
from django.db.models.functions import Cast, Concat, Lower
from django.db.models.lookups import Exact

from keystore.querysets import TenantScopedQuerySet
from renewals.whereused.parser import ANY_KEY, Certainty, Usage

# Usages that need the key pair's private key; a trusted certificate cannot be what they use.
PRIVATE_KEY_USAGES = (Usage.CLIENT_CERTIFICATE, Usage.SIGNING, Usage.DECRYPTION)


def component_key() -> Concat:
    """One value per component of a flow: component ids repeat across flows ("MessageFlow_1")."""
    # output_field: component_id is an ImportedCharField, a CharField subclass, which Django
    # does not combine with Value's plain CharField without being told the result's type.
    return Concat(
        Cast("flow_id", CharField()), Value("/"), "component_id", output_field=CharField()
    )


def script_passes_q(alias: str | OuterRef) -> Q:
    """Script rows passing `alias` to a keystore API, ignoring case (the model's partial index
    on the lower-cased alias of script rows answers it)."""
    wanted = Lower(alias if isinstance(alias, OuterRef) else Value(alias))
    return Q(Exact(Lower("alias"), wanted), usage=Usage.NAMED_IN_SCRIPT)


def uses_q(alias: str | OuterRef) -> Q:
    """Rows that use `alias`: configured with it (not merely "may use"), or a script passing it."""
    return (Q(alias=alias) & ~Q(certainty=Certainty.MAY_USE)) | script_passes_q(alias)


class UsageQuerySet(TenantScopedQuerySet):
    def uses(self, alias: str) -> UsageQuerySet:
        """Components configured with exactly this alias, and scripts passing it to the
        keystore."""
        return self.filter(uses_q(alias))

    def may_use(self, *, key_pair: bool = True) -> UsageQuerySet:
        """Components that may pick any key; for a certificate entry (no private key) only those
        that could use a public certificate."""
        found = self.filter(alias=ANY_KEY)
        return found if key_pair else found.exclude(usage__in=PRIVATE_KEY_USAGES)

    def for_alias(self, alias: str, *, key_pair: bool = True, tenant=None) -> UsageQuerySet:
        """Everything where-used shows for an alias: its uses and the "may use" rows.

        With `tenant`, each branch names the tenant itself, `(tenant AND this alias) OR (tenant
        AND no alias) OR (tenant AND a script passing it)`, so each is an index lookup ((tenant,
        alias) twice, then (tenant, lower(alias)) of script rows) and the cost follows the
        answer, not the tenant's whole index; a separate tenant filter lets SQLite read every
        usage of the tenant instead.
        """
        scope = Q(tenant=tenant) if tenant is not None else Q()
        others = Q() if key_pair else ~Q(usage__in=PRIVATE_KEY_USAGES)
        return self.filter(
            (scope & Q(alias=alias))
            | (scope & Q(alias=ANY_KEY) & others)
            | (scope & script_passes_q(alias))
        )

    def outbound(self) -> UsageQuerySet:
        return self.filter(outbound=True)

    def component_count(self) -> int:
        return self.aggregate(n=Count(component_key(), distinct=True))["n"]


class FlowQuerySet(TenantScopedQuerySet):
    def restart_required(self) -> FlowQuerySet:
        return self.filter(restart_required=True)

    def with_usage_count(self) -> FlowQuerySet:
        return self.annotate(usage_count=Count("usages"))

    def holding_connections_with(self, tenant, alias: str) -> FlowQuerySet:
        """Flows whose outbound connections authenticate with this alias or with any key: after
        an activation they keep the old key in their TLS sockets until restarted."""
        # Through the flows' usages, so that this module needs no model (models import it).
        connected = self.filter(
            Q(usages__alias=alias) | Q(usages__alias=ANY_KEY),
            usages__tenant=tenant,
            usages__outbound=True,
        )
        return self.filter(tenant=tenant, pk__in=connected.values("pk"))
