"""A route that exists only in the owner e-mail tests: a change that records an event."""

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from accounts.models import Agent
from events.services import event_record
from lithtrix.urls import urlpatterns as project_urlpatterns


@csrf_exempt
def make_pro(request: HttpRequest, agent_id: str) -> JsonResponse:
    """Moves an agent to Pro and records billing.tier_changed, as a service would."""
    with transaction.atomic():
        agent = Agent.objects.select_for_update().get(pk=agent_id)
        agent.tier = "pro"
        agent.save(update_fields=["tier"])
        event_record(agent=agent, type="billing.tier_changed", data={"from": "free", "to": "pro"})
    return JsonResponse({"tier": agent.tier})


urlpatterns = [path("v1/test/pro/<uuid:agent_id>", make_pro), *project_urlpatterns]
