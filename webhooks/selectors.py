from accounts.models import Agent
from webhooks.models import WebhookDelivery, WebhookEndpoint

RECENT_DELIVERIES = 50


def webhook_of(*, agent: Agent) -> WebhookEndpoint | None:
    return WebhookEndpoint.objects.filter(agent=agent).first()


def webhook_deliveries_recent(*, agent: Agent) -> list[WebhookDelivery]:
    return list(
        WebhookDelivery.objects.filter(endpoint__agent=agent).select_related("event")[
            :RECENT_DELIVERIES
        ]
    )
