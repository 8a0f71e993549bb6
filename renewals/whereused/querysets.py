"""Business filters over the where-used index, in the domain's words.

"Uses" an alias: a component names exactly this alias (aliases are compared as stored; the
keystore keeps them case-sensitive). "May use" it: a component names no alias (any fitting key),
tries every key (decryptors), or takes its alias from a runtime expression.
"""

from __future__ import annotations

from django.db.models import CharField, Count, Q, Value
from django.db.models.functions import Cast, Concat

from keystore.querysets import TenantScopedQuerySet
from renewals.whereused.parser import ANY_KEY, Certainty, Usage

# Usages that need the key pair's private key; a trusted certificate cannot be what they use.
PRIVATE_KEY_USAGES = (Usage.CLIENT_CERTIFICATE, Usage.SIGNING, Usage.DECRYPTION)


def may_use_q(prefix: str = "") -> Q:
    return Q(**{f"{prefix}alias": ANY_KEY}) | Q(**{f"{prefix}certainty": Certainty.MAY_USE})


def component_key() -> Concat:
    """One value per component of a flow: component ids repeat across flows ("MessageFlow_1")."""
    return Concat(Cast("flow_id", CharField()), Value("/"), "component_id")


class UsageQuerySet(TenantScopedQuerySet):
    def uses(self, alias: str) -> UsageQuerySet:
        """Components configured with exactly this alias."""
        return self.filter(alias=alias).exclude(certainty=Certainty.MAY_USE)

    def may_use(self, *, key_pair: bool = True) -> UsageQuerySet:
        """Components that may pick any key; for a certificate entry (no private key) only those
        that could use a public certificate."""
        found = self.filter(may_use_q())
        return found if key_pair else found.exclude(usage__in=PRIVATE_KEY_USAGES)

    def for_alias(self, alias: str, *, key_pair: bool = True, tenant=None) -> UsageQuerySet:
        """Everything where-used shows for an alias: its uses and the "may use" rows.

        With `tenant`, each branch names the tenant itself, `(tenant AND uses) OR (tenant AND
        no alias) OR (tenant AND may use)`, so each is an index lookup ((tenant, alias),
        (tenant, certainty)) and the cost follows the answer, not the tenant's whole index; a
        separate tenant filter lets SQLite read every usage of the tenant instead.
        """
        scope = Q(tenant=tenant) if tenant is not None else Q()
        others = Q() if key_pair else ~Q(usage__in=PRIVATE_KEY_USAGES)
        return self.filter(
            (scope & Q(alias=alias) & ~Q(certainty=Certainty.MAY_USE))
            | (scope & Q(alias=ANY_KEY) & others)
            | (scope & Q(certainty=Certainty.MAY_USE) & others)
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
