"""dj-stripe's webhook URL (/stripe/webhook/<uuid>), answered by the project's own view.

The namespace and name are dj-stripe's, so its admin still links to it.
"""

from django.urls import path

from billing.payments.webhooks import stripe_webhook_by_uuid_view

app_name = "djstripe"

urlpatterns = [
    path("webhook/<str:uuid>", stripe_webhook_by_uuid_view, name="djstripe_webhook_by_uuid"),
]
