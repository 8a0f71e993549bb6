"""The plan page's window and gate actions: Plan activation / Cancel, Override the gate, Ask
for approval / Approve (four eyes), and the evidence report. A mixin of RenewalPlanAdmin; every
view asks keystore.permissions for the plan's tenant and calls one service function.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse

from keystore import permissions
from keystore.adminmixins import acting_user
from renewals.plans import evidence, gate, services, window
from renewals.plans.models import RenewalPlan


def parse_window(text: str) -> datetime:
    """The page's datetime-local value, in UTC as every time on the site."""
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise services.PlanError("Give the planned time as date and time (UTC).")
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


if TYPE_CHECKING:
    from keystore.adminmixins import TenantFactsAdmin as _Admin
else:
    _Admin = object


class PlanWindowViews(_Admin):
    """Routes (added by RenewalPlanAdmin.get_urls) and the context of the plan page."""

    def _change_url(self, plan: RenewalPlan) -> str:
        return reverse(self.url_name("change"), args=[plan.pk])

    def window_routes(self):
        from django.views.decorators.http import require_POST, require_safe

        return [
            ("<int:pk>/window/", self.window_view, "window", require_POST),
            ("<int:pk>/gate/", self.gate_view, "gate", require_POST),
            ("<int:pk>/evidence/", self.evidence_view, "evidence", require_safe),
            ("<int:pk>/evidence.json", self.evidence_json_view, "evidence_json", require_safe),
        ]

    def window_context(self, plan: RenewalPlan | None, tenant) -> dict:
        if plan is None:
            return {"gate_preview": gate.preview(tenant, None)}
        return {
            "gate_preview": gate.preview(tenant, plan),
            "window_url": reverse(self.url_name("window"), args=[plan.pk]),
            "gate_url": reverse(self.url_name("gate"), args=[plan.pk]),
            "evidence_url": reverse(self.url_name("evidence"), args=[plan.pk]),
            "evidence_json_url": reverse(self.url_name("evidence_json"), args=[plan.pk]),
        }

    def window_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        plan = self.get_object_for(request, pk, permissions.DEPLOY)
        actor = acting_user(request)
        try:
            if request.POST.get("action") == "cancel":
                window.cancel_activation(plan.tenant, plan.alias, actor=actor)
                done = f"The planned activation of {plan.alias} is cancelled."
            else:
                at = parse_window(request.POST.get("at", ""))
                window.schedule_activation(plan.tenant, plan.alias, at, actor=actor)
                done = (
                    f"The activation of {plan.alias} is planned for "
                    f"{at.astimezone(UTC):%Y-%m-%d %H:%M} UTC; the scheduler activates it then."
                )
        except services.PlanError as error:
            self.message_user(request, str(error), messages.ERROR)
        else:
            self.message_user(request, done, messages.SUCCESS)
        return HttpResponseRedirect(self._change_url(plan))

    def gate_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        plan = self.get_object_for(request, pk, permissions.DEPLOY)
        actor = acting_user(request)
        action = request.POST.get("action", "")
        try:
            if action == "override":
                gate.override_gate(
                    plan.tenant, plan.alias, request.POST.get("reason", ""), actor=actor
                )
                done = "The gate is overridden for this key; the reason is kept as evidence."
            elif action == "request":
                gate.request_approval(plan.tenant, plan.alias, actor=actor)
                done = "The other administrators are asked to approve the activation."
            elif action == "approve":
                gate.approve_activation(plan.tenant, plan.alias, actor=actor)
                done = "You approved the activation."
            else:
                raise services.PlanError("Choose Override, Ask for approval or Approve.")
        except services.PlanError as error:
            self.message_user(request, str(error), messages.ERROR)
        else:
            self.message_user(request, done, messages.SUCCESS)
        return HttpResponseRedirect(self._change_url(plan))

    def evidence_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        plan = self.get_object_for(request, pk, permissions.READ)
        report = evidence.evidence(plan)
        return self.render_page(
            request,
            "evidence.html",
            f"Evidence of the renewal of {plan.alias}",
            plan=plan,
            tenant=plan.tenant,
            report=report,
            plan_url=self._change_url(plan),
            json_url=reverse(self.url_name("evidence_json"), args=[plan.pk]),
        )

    def evidence_json_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        plan = self.get_object_for(request, pk, permissions.READ)
        response = JsonResponse(evidence.evidence_json(plan), json_dumps_params={"indent": 2})
        response["Content-Disposition"] = (
            f'attachment; filename="renewal-evidence-{plan.tenant.slug}-{plan.pk}.json"'
        )
        return response
