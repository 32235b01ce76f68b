"""Stripe's webhook: check the signature, store the event, answer 200 at once.

Two URLs, one way: /v1/billing/webhook (the endpoint whose secret signed the
request) and dj-stripe's /stripe/webhook/<uuid> (that endpoint only). The event
is stored (billing.payments.stripe_events.event_receive) and the job that applies
it enqueued in the same transaction: no Stripe call on the request path. Every
answer is the API's JSON (an envelope for every refusal).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable

import stripe
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from djstripe.models import WebhookEndpoint

from billing.payments import stripe_events
from lithtrix.core import exceptions as errors
from lithtrix.core import responses
from lithtrix.core.parsers import json_depth_exceeds
from lithtrix.core.responses import json_response

logger = logging.getLogger("billing.payments.webhooks")

BAD_SIGNATURE = "The Stripe signature does not match."
# dj-stripe's own view lets this header replace the endpoint's secret when DEBUG is on
# (for the Stripe CLI): anyone could sign events with a secret of their choosing. The
# signature is checked here against the endpoint's secret only, and the header dropped.
_SECRET_OVERRIDE = "HTTP_X_DJSTRIPE_WEBHOOK_SECRET"  # noqa: S105 - a header name


def _verified(payload: bytes, signature: str, endpoint: WebhookEndpoint) -> bool:
    try:
        stripe.WebhookSignature.verify_header(
            payload.decode("utf-8", errors="replace"),
            signature,
            endpoint.secret,
            endpoint.djstripe_tolerance,
        )
    except stripe.SignatureVerificationError:
        return False
    return True


def endpoint_signed_for(*, payload: bytes, signature: str) -> WebhookEndpoint | None:
    """The endpoint whose secret signed ``payload``."""
    for endpoint in WebhookEndpoint.objects.exclude(secret="").order_by("-djstripe_created"):
        if _verified(payload, signature, endpoint):
            return endpoint
    return None


def event_of(payload: bytes) -> dict | None:
    """The body as a Stripe event (an object with an id and livemode, as dj-stripe needs)."""
    if json_depth_exceeds(payload):
        return None
    try:
        event = json.loads(payload)
    except (ValueError, RecursionError):
        return None
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        return None
    return event if "livemode" in event else None


def _refusal(request: HttpRequest, error: errors.ApiError) -> HttpResponse:
    return responses.api_error_response(error, request)


def _receive(
    request: HttpRequest, endpoint_of: Callable[[bytes, str], WebhookEndpoint | None]
) -> HttpResponse:
    request.META.pop(_SECRET_OVERRIDE, None)
    if request.method != "POST":
        return _refusal(
            request,
            errors.MethodNotAllowedError(
                f"Method {request.method} not allowed.", headers={"Allow": "POST"}
            ),
        )
    if "stripe-signature" not in request.headers:
        return _refusal(request, errors.ValidationError("Missing Stripe-Signature header."))
    endpoint = endpoint_of(request.body, request.headers["stripe-signature"])
    if endpoint is None:
        return _refusal(request, errors.ValidationError(BAD_SIGNATURE))
    event = event_of(request.body)
    if event is None:
        return _refusal(request, errors.ValidationError("The body is not a Stripe event."))
    try:
        stripe_events.event_receive(event=event)
    except Exception:
        logger.exception("Stripe event %s (%s) not stored", event["id"], event.get("type"))
        return _refusal(
            request,
            errors.ServiceUnavailableError(
                "The event could not be stored; retry later.", headers={"Retry-After": "60"}
            ),
        )
    logger.info("Stripe event %s (%s) received", event["id"], event.get("type"))
    return json_response({"received": True, "id": event["id"]})


@csrf_exempt
def stripe_webhook_view(request: HttpRequest) -> HttpResponse:
    """POST /v1/billing/webhook — for the endpoint (manage.py billing_webhook_endpoint)
    whose secret signed the request."""
    return _receive(
        request, lambda body, signature: endpoint_signed_for(payload=body, signature=signature)
    )


@csrf_exempt
def stripe_webhook_by_uuid_view(request: HttpRequest, uuid: str) -> HttpResponse:
    """POST /stripe/webhook/<uuid> — dj-stripe's URL of one WebhookEndpoint row."""

    def endpoint_of(body: bytes, signature: str) -> WebhookEndpoint | None:
        endpoint = _endpoint_by_uuid(uuid)
        return endpoint if endpoint is not None and _verified(body, signature, endpoint) else None

    if request.method == "POST" and _endpoint_by_uuid(uuid) is None:
        return _refusal(request, errors.NotFoundError("No webhook endpoint at this URL."))
    return _receive(request, endpoint_of)


def _endpoint_by_uuid(value: str) -> WebhookEndpoint | None:
    try:
        key = uuid.UUID(value)
    except ValueError:
        return None
    return WebhookEndpoint.objects.exclude(secret="").filter(djstripe_uuid=key).first()
