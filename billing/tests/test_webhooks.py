"""Stripe's signed events: subscriptions that end put the agent back on Free.

dj-stripe re-fetches each event's object from Stripe; those answers come from
recorded Stripe JSON (billing/tests/fixtures).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

import pytest
import stripe
from django.contrib.admin.utils import quote
from django.utils import timezone
from django_q.models import Schedule
from djstripe import models as djstripe_models

from accounts.models import Agent, AgentEvent, Tier
from billing.metering.tiers import tier_limits
from billing.models import StripeEventReceipt
from billing.payments import provisioning
from billing.payments.stripe_events import APPLY_TASK as APPLY
from billing.tests.conftest import CUSTOMER, SUBSCRIPTION, recorded
from billing.tests.helpers import queued_jobs, run_jobs
from billing.tests.test_setup import setup
from testing.assertions import assert_envelope

WEBHOOK_URL = "/v1/billing/webhook"
SECRET = "whsec_lithtrixTestEndpointSecret0123"
BAD_SIGNATURE = {
    "status": "error",
    "error_code": "VALIDATION_ERROR",
    "message": "The Stripe signature does not match.",
}


def stripe_event(event_type: str, obj: dict, *, created: int | None = None) -> str:
    return json.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex[:24]}",
            "object": "event",
            "api_version": stripe.api_version,
            "created": created or int(time.time()),
            "data": {"object": obj, "previous_attributes": {}},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": event_type,
        }
    )


def signature(payload: str, secret: str = SECRET, timestamp: int | None = None) -> str:
    timestamp = timestamp or int(time.time())
    digest = hmac.new(
        secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256
    ).hexdigest()
    return f"t={timestamp},v1={digest}"


def deliver(api_client, payload: str, *, url: str = WEBHOOK_URL, apply: bool = True, **headers):
    """Stripe posts the event; then (``apply``) the job system runs what it enqueued."""
    headers.setdefault("HTTP_STRIPE_SIGNATURE", signature(payload))
    response = api_client.post(url, payload, content_type="application/json", **headers)
    if apply:
        run_jobs()
    return response


@pytest.fixture
def endpoint(recorded_stripe):
    return provisioning.webhook_endpoint_register(
        url="http://testserver/v1/billing/webhook", secret=SECRET
    )


@pytest.fixture
def pro_agent(stripe_account, endpoint, api_client, registered) -> Agent:
    """`registered`, upgraded with a live Pro subscription (recorded Stripe)."""
    assert setup(api_client, registered, "pm_card_visa").status_code == 200
    return Agent.objects.get(pk=registered.agent.pk)


def subscription_now(stripe_account, **changes) -> dict:
    """Make Stripe's copy of the subscription (what a re-fetch returns) say ``changes``."""
    stripe_account.objects[SUBSCRIPTION].update(changes)
    return dict(stripe_account.objects[SUBSCRIPTION])


def downgrades(agent: Agent) -> int:
    return agent.events.filter(kind=AgentEvent.Kind.SUBSCRIPTION_ENDED).count()


def test_subscription_deleted_puts_agent_back_on_free(stripe_account, pro_agent, api_client):
    canceled = subscription_now(stripe_account, status="canceled", ended_at=int(time.time()))

    response = deliver(api_client, stripe_event("customer.subscription.deleted", canceled))

    assert response.status_code == 200
    pro_agent.refresh_from_db()
    assert pro_agent.tier == Tier.FREE
    assert tier_limits(pro_agent.tier).call_limit == 300
    assert tier_limits(pro_agent.tier).rate == "60/m"
    assert downgrades(pro_agent) == 1
    assert pro_agent.events.filter(kind=AgentEvent.Kind.TIER_CHANGED).first().data == {
        "tier": "free",
        "event_id": json.loads(response.wsgi_request.body)["id"],
        "subscription_id": SUBSCRIPTION,
        "status": "canceled",
    }
    assert djstripe_models.Subscription.objects.get(id=SUBSCRIPTION).status == "canceled"


@pytest.mark.django_db(transaction=True)
def test_applying_an_event_calls_stripe_with_no_transaction_open(
    stripe_account, pro_agent, api_client, monkeypatch
):
    from django.db import connection

    canceled = subscription_now(stripe_account, status="canceled", ended_at=int(time.time()))
    response = deliver(
        api_client, stripe_event("customer.subscription.deleted", canceled), apply=False
    )
    seen: list[tuple[str, str, bool]] = []
    real = stripe_account.request

    def watched(method, url, headers, post_data=None):
        seen.append((method, url, connection.in_atomic_block))
        return real(method, url, headers, post_data)

    monkeypatch.setattr(stripe_account, "request", watched)

    run_jobs()

    assert response.status_code == 200
    assert any(url.endswith(f"/v1/subscriptions/{SUBSCRIPTION}") for _, url, _ in seen)
    assert [call for call in seen if call[2]] == []
    pro_agent.refresh_from_db()
    assert pro_agent.tier == Tier.FREE


@pytest.mark.parametrize("status", ["unpaid", "canceled", "incomplete_expired"])
def test_subscription_updated_to_an_ended_status_puts_agent_back_on_free(
    stripe_account, pro_agent, api_client, status
):
    updated = subscription_now(stripe_account, status=status)

    response = deliver(api_client, stripe_event("customer.subscription.updated", updated))

    assert response.status_code == 200
    pro_agent.refresh_from_db()
    assert pro_agent.tier == Tier.FREE
    assert downgrades(pro_agent) == 1


@pytest.mark.parametrize("status", ["active", "past_due", "trialing"])
def test_subscription_updated_to_a_paying_status_keeps_pro(
    stripe_account, pro_agent, api_client, status
):
    updated = subscription_now(stripe_account, status=status)

    response = deliver(api_client, stripe_event("customer.subscription.updated", updated))

    assert response.status_code == 200
    pro_agent.refresh_from_db()
    assert pro_agent.tier == Tier.PRO
    assert downgrades(pro_agent) == 0


def test_replayed_event_has_no_second_effect(stripe_account, pro_agent, api_client, registered):
    canceled = subscription_now(stripe_account, status="canceled")
    payload = stripe_event("customer.subscription.deleted", canceled)
    assert deliver(api_client, payload).status_code == 200
    # The agent subscribes again; then Stripe delivers the old event once more.
    stripe_account.subscriptions[0]["status"] = "canceled"
    assert setup(api_client, registered, "pm_card_visa").status_code == 200
    subscription_now(stripe_account, status="active")

    response = deliver(api_client, payload)

    assert response.status_code == 200
    pro_agent.refresh_from_db()
    assert pro_agent.tier == Tier.PRO
    assert downgrades(pro_agent) == 1
    assert djstripe_models.Event.objects.count() == 1


def test_late_active_update_after_deletion_does_not_restore_pro(
    stripe_account, pro_agent, api_client
):
    earlier = int(time.time()) - 60
    active_then = subscription_now(stripe_account, status="active")
    canceled = subscription_now(stripe_account, status="canceled")
    assert deliver(api_client, stripe_event("customer.subscription.deleted", canceled)).status_code
    changes = pro_agent.events.count()

    response = deliver(
        api_client, stripe_event("customer.subscription.updated", active_then, created=earlier)
    )

    assert response.status_code == 200
    pro_agent.refresh_from_db()
    assert pro_agent.tier == Tier.FREE
    assert pro_agent.events.count() == changes
    assert djstripe_models.Subscription.objects.get(id=SUBSCRIPTION).status == "canceled"


def test_late_unpaid_update_after_recovery_does_not_downgrade(
    stripe_account, pro_agent, api_client
):
    unpaid_then = subscription_now(stripe_account, status="unpaid")
    subscription_now(stripe_account, status="active")  # paid since; Stripe says active

    response = deliver(api_client, stripe_event("customer.subscription.updated", unpaid_then))

    assert response.status_code == 200
    pro_agent.refresh_from_db()
    assert pro_agent.tier == Tier.PRO
    assert downgrades(pro_agent) == 0


def test_old_subscription_ending_keeps_pro_while_another_is_live(
    stripe_account, pro_agent, api_client
):
    old = recorded("subscription")
    old.update(id="sub_1RLtxProOldCanceled", status="canceled", customer=CUSTOMER)
    stripe_account.add(old)

    response = deliver(api_client, stripe_event("customer.subscription.deleted", old))

    assert response.status_code == 200
    pro_agent.refresh_from_db()
    assert pro_agent.tier == Tier.PRO


def test_invoice_payment_failed_is_recorded_once_for_staff(stripe_account, pro_agent, api_client):
    invoice = recorded("invoice_payment_failed")
    stripe_account.add(invoice)
    payload = stripe_event("invoice.payment_failed", invoice)

    first = deliver(api_client, payload)
    again = deliver(api_client, payload)

    assert (first.status_code, again.status_code) == (200, 200)
    failure = pro_agent.events.get(kind=AgentEvent.Kind.PAYMENT_FAILED)
    assert failure.data == {
        "event_id": json.loads(payload)["id"],
        "invoice_id": "in_1RLtxProRenewal02",
        "amount_due": 2900,
        "currency": "usd",
        "attempt_count": 1,
        "next_payment_attempt": 1766951202,
    }
    pro_agent.refresh_from_db()
    assert pro_agent.tier == Tier.PRO  # Stripe retries; the subscription events decide


@pytest.mark.parametrize(
    "make_signature",
    [
        lambda payload: signature(payload, secret="whsec_someoneElse0123456789"),
        lambda payload: signature(payload + " "),
        lambda payload: signature(payload, timestamp=int(time.time()) - 3600),
        lambda payload: "t=1,v1=00",
        lambda payload: "",
    ],
    ids=["wrong-secret", "tampered-body", "too-old", "garbage", "empty"],
)
def test_bad_signature_is_400_and_changes_nothing(
    stripe_account, pro_agent, api_client, make_signature
):
    payload = stripe_event(
        "customer.subscription.deleted", subscription_now(stripe_account, status="canceled")
    )

    response = deliver(api_client, payload, HTTP_STRIPE_SIGNATURE=make_signature(payload))

    assert response.status_code == 400
    assert response.json() == BAD_SIGNATURE
    pro_agent.refresh_from_db()
    assert pro_agent.tier == Tier.PRO
    assert not djstripe_models.Event.objects.exists()


def test_missing_signature_is_400(stripe_account, pro_agent, api_client):
    payload = stripe_event("customer.subscription.deleted", recorded("subscription"))

    response = api_client.post(WEBHOOK_URL, payload, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {
        "status": "error",
        "error_code": "VALIDATION_ERROR",
        "message": "Missing Stripe-Signature header.",
    }


def test_debug_secret_override_header_is_ignored(settings, stripe_account, pro_agent, api_client):
    # dj-stripe honours X-Djstripe-Webhook-Secret when DEBUG is on; this URL must not.
    settings.DEBUG = True
    forged_secret = "whsec_forgedByAnyone0123456789"
    payload = stripe_event(
        "customer.subscription.deleted", subscription_now(stripe_account, status="canceled")
    )

    response = deliver(
        api_client,
        payload,
        HTTP_STRIPE_SIGNATURE=signature(payload, secret=forged_secret),
        HTTP_X_DJSTRIPE_WEBHOOK_SECRET=forged_secret,
    )

    assert response.status_code == 400
    pro_agent.refresh_from_db()
    assert pro_agent.tier == Tier.PRO


def test_webhook_only_accepts_post(endpoint, api_client):
    response = api_client.get(WEBHOOK_URL)

    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response.json()["error_code"] == "METHOD_NOT_ALLOWED"


def test_djstripe_webhook_url_works_too(stripe_account, endpoint, pro_agent, api_client):
    url = f"/stripe/webhook/{endpoint.djstripe_uuid}"
    payload = stripe_event(
        "customer.subscription.deleted", subscription_now(stripe_account, status="canceled")
    )

    forged = deliver(
        api_client, payload, url=url, HTTP_STRIPE_SIGNATURE=signature(payload, "whsec_x0123")
    )
    assert forged.status_code == 400
    pro_agent.refresh_from_db()
    assert pro_agent.tier == Tier.PRO

    response = deliver(api_client, payload, url=url)

    assert response.status_code == 200
    pro_agent.refresh_from_db()
    assert pro_agent.tier == Tier.FREE


def test_event_for_a_customer_of_no_agent_is_accepted_and_ignored(
    stripe_account, endpoint, api_client, registered
):
    canceled = recorded("subscription")
    canceled["status"] = "canceled"
    stripe_account.add(canceled)

    response = deliver(api_client, stripe_event("customer.subscription.deleted", canceled))

    assert response.status_code == 200
    registered.agent.refresh_from_db()
    assert registered.agent.tier == Tier.FREE
    assert not AgentEvent.objects.filter(kind=AgentEvent.Kind.SUBSCRIPTION_ENDED).exists()


def test_webhook_is_not_rate_limited(settings, endpoint, api_client, throttle_rates):
    throttle_rates(register="1/m")
    payload = stripe_event("customer.subscription.deleted", recorded("subscription"))

    statuses = [
        deliver(api_client, payload, HTTP_STRIPE_SIGNATURE="t=1,v1=00").status_code
        for _ in range(3)
    ]

    assert statuses == [400, 400, 400]


def test_failed_payment_is_visible_to_staff_on_the_agent_page(
    stripe_account, pro_agent, api_client, admin_client
):
    invoice = recorded("invoice_payment_failed")
    stripe_account.add(invoice)
    assert deliver(api_client, stripe_event("invoice.payment_failed", invoice)).status_code == 200

    page = admin_client.get(f"/admin/accounts/agent/{pro_agent.pk}/change/")

    assert page.status_code == 200
    html = page.content.decode()
    assert "Payment failed" in html
    assert "Stripe could not collect invoice in_1RLtxProRenewal02." in html
    assert f"/admin/djstripe/customer/?id={CUSTOMER}" in html


def test_event_whose_object_stripe_no_longer_has_is_200_and_logged(
    stripe_account, pro_agent, api_client, caplog
):
    gone = recorded("subscription")
    gone.update(id="sub_1RLtxGoneFromStripe", status="active")  # Stripe answers 404 for it

    response = deliver(api_client, stripe_event("customer.subscription.updated", gone))

    # Acknowledged (Stripe must not retry for days), logged, nothing changed.
    assert response.status_code == 200
    assert "sub_1RLtxGoneFromStripe" in caplog.text
    assert "no longer exists on Stripe" in caplog.text
    pro_agent.refresh_from_db()
    assert pro_agent.tier == Tier.PRO
    assert downgrades(pro_agent) == 0


def test_stripe_outage_during_the_refetch_is_retried_later_with_backoff(
    stripe_account, pro_agent, api_client, settings
):
    assert settings.LITHTRIX_JOB_BACKOFF_SECONDS == 60  # the default
    canceled = subscription_now(stripe_account, status="canceled")
    stripe_account.routes[("GET", f"/v1/subscriptions/{SUBSCRIPTION}")] = lambda p: (
        503,
        recorded("api_error"),
    )
    payload = stripe_event("customer.subscription.deleted", canceled)

    response = deliver(api_client, payload, apply=False)
    first = run_jobs()
    second = run_jobs(due_schedules=True)

    assert response.status_code == 200
    assert [result for func, result in first + second if func == APPLY] == [
        "failed try 1; next in 60 s",
        "failed try 2; next in 120 s",
    ]
    receipt = StripeEventReceipt.objects.get(pk=json.loads(payload)["id"])
    assert (receipt.attempts, receipt.applied_at) == (2, None)
    assert "APIError" in receipt.last_error
    retry = Schedule.objects.get(func=APPLY)
    assert retry.kwargs == "{'attempt': 3}"
    waited = (retry.next_run - timezone.now()).total_seconds()
    assert 110 < waited <= 120
    pro_agent.refresh_from_db()
    assert pro_agent.tier == Tier.PRO
    assert not djstripe_models.Event.objects.exists()
    # Stripe answers again: the scheduled retry applies the event.
    del stripe_account.routes[("GET", f"/v1/subscriptions/{SUBSCRIPTION}")]
    assert [r for func, r in run_jobs(due_schedules=True) if func == APPLY] == ["applied"]
    pro_agent.refresh_from_db()
    assert pro_agent.tier == Tier.FREE
    assert StripeEventReceipt.objects.get(pk=receipt.pk).applied_at is not None
    assert not Schedule.objects.filter(func=APPLY).exists()


def test_stripe_unreachable_during_the_refetch_leaves_the_event_for_a_retry(
    stripe_account, pro_agent, api_client, settings, closed_port, monkeypatch
):
    canceled = subscription_now(stripe_account, status="canceled")
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{closed_port}"
    monkeypatch.setattr(stripe, "default_http_client", stripe.RequestsClient(timeout=2))

    response = deliver(api_client, stripe_event("customer.subscription.deleted", canceled))

    assert response.status_code == 200
    assert StripeEventReceipt.objects.get().attempts == 1
    assert Schedule.objects.filter(func=APPLY).count() == 1
    pro_agent.refresh_from_db()
    assert pro_agent.tier == Tier.PRO


def test_webhook_stores_the_event_and_answers_before_calling_stripe(
    stripe_account, pro_agent, api_client
):
    payload = stripe_event(
        "customer.subscription.deleted", subscription_now(stripe_account, status="canceled")
    )
    calls = len(stripe_account.calls)

    response = deliver(api_client, payload, apply=False)

    assert response.status_code == 200
    assert response.json() == {"received": True, "id": json.loads(payload)["id"]}
    assert len(stripe_account.calls) == calls
    receipt = StripeEventReceipt.objects.get()
    assert (receipt.pk, receipt.type, receipt.applied_at) == (
        json.loads(payload)["id"],
        "customer.subscription.deleted",
        None,
    )
    assert queued_jobs(APPLY) == 1
    pro_agent.refresh_from_db()
    assert pro_agent.tier == Tier.PRO
    # The worker applies it.
    assert [result for func, result in run_jobs() if func == APPLY] == ["applied"]
    pro_agent.refresh_from_db()
    assert pro_agent.tier == Tier.FREE


def test_a_replayed_delivery_is_stored_and_enqueued_once(stripe_account, pro_agent, api_client):
    payload = stripe_event(
        "customer.subscription.deleted", subscription_now(stripe_account, status="canceled")
    )

    statuses = [deliver(api_client, payload, apply=False).status_code for _ in range(3)]

    assert statuses == [200, 200, 200]
    assert StripeEventReceipt.objects.count() == 1
    assert queued_jobs(APPLY) == 1


def test_events_applied_in_reverse_order_end_in_stripes_current_state(
    stripe_account, pro_agent, api_client
):
    active_then = subscription_now(stripe_account, status="active")
    canceled = subscription_now(stripe_account, status="canceled")
    deleted = stripe_event("customer.subscription.deleted", canceled)
    updated = stripe_event("customer.subscription.updated", active_then)
    assert deliver(api_client, deleted, apply=False).status_code == 200
    assert deliver(api_client, updated, apply=False).status_code == 200

    # The worker takes the later event first.
    from billing.payments.stripe_events import stripe_event_apply

    results = [stripe_event_apply(json.loads(p)["id"]) for p in (updated, deleted, updated)]

    assert results == ["applied", "applied", "skipped"]
    pro_agent.refresh_from_db()
    assert pro_agent.tier == Tier.FREE
    assert downgrades(pro_agent) == 1


def test_djstripe_url_never_honours_a_secret_chosen_by_the_sender(
    settings, stripe_account, endpoint, pro_agent, api_client
):
    # dj-stripe takes X-Djstripe-Webhook-Secret as the signing secret when DEBUG is on.
    settings.DEBUG = True
    forged_secret = "whsec_forgedByAnyone0123456789"
    payload = stripe_event(
        "customer.subscription.deleted", subscription_now(stripe_account, status="canceled")
    )

    response = deliver(
        api_client,
        payload,
        url=f"/stripe/webhook/{endpoint.djstripe_uuid}",
        HTTP_STRIPE_SIGNATURE=signature(payload, secret=forged_secret),
        HTTP_X_DJSTRIPE_WEBHOOK_SECRET=forged_secret,
    )

    assert_envelope(response, 400, "VALIDATION_ERROR")
    pro_agent.refresh_from_db()
    assert pro_agent.tier == Tier.PRO
    assert not StripeEventReceipt.objects.exists()
    assert not djstripe_models.Event.objects.exists()


def _djstripe_url(endpoint) -> str:
    return f"/stripe/webhook/{endpoint.djstripe_uuid}"


@pytest.mark.parametrize(
    ("send", "status", "error_code"),
    [
        (lambda c, url: c.get(url), 405, "METHOD_NOT_ALLOWED"),
        (
            lambda c, url: c.put(url, "{}", content_type="application/json"),
            405,
            "METHOD_NOT_ALLOWED",
        ),
        (
            lambda c, url: c.post(url, "{}", content_type="application/json"),
            400,
            "VALIDATION_ERROR",
        ),
        (
            lambda c, url: c.post(
                url, "{}", content_type="application/json", HTTP_STRIPE_SIGNATURE="t=1,v1=00"
            ),
            400,
            "VALIDATION_ERROR",
        ),
        (
            lambda c, url: c.post(
                url,
                "not json",
                content_type="text/plain",
                HTTP_STRIPE_SIGNATURE=signature("not json"),
            ),
            400,
            "VALIDATION_ERROR",
        ),
        (
            lambda c, url: c.post(
                url, "[1]", content_type="application/json", HTTP_STRIPE_SIGNATURE=signature("[1]")
            ),
            400,
            "VALIDATION_ERROR",
        ),
        (
            lambda c, url: c.post(
                f"/stripe/webhook/{uuid.uuid4()}",
                "{}",
                content_type="application/json",
                HTTP_STRIPE_SIGNATURE=signature("{}"),
            ),
            404,
            "NOT_FOUND",
        ),
        (
            lambda c, url: c.post(
                "/stripe/webhook/not-a-uuid",
                "{}",
                content_type="application/json",
                HTTP_STRIPE_SIGNATURE=signature("{}"),
            ),
            404,
            "NOT_FOUND",
        ),
    ],
    ids=[
        "get",
        "put",
        "no-signature",
        "bad-signature",
        "signed-not-json",
        "signed-not-an-event",
        "unknown-endpoint",
        "malformed-uuid",
    ],
)
def test_djstripe_url_answers_every_bad_request_with_the_envelope(
    settings, endpoint, api_client, send, status, error_code
):
    settings.DEBUG = True  # Django's HTML pages would show here if anything fell through

    response = send(api_client, _djstripe_url(endpoint))

    assert_envelope(response, status, error_code)
    assert not StripeEventReceipt.objects.exists()


@pytest.mark.parametrize(
    "body",
    ["not json", "[1]", '{"id": 1}', '{"type": "x"}'],
    ids=["not-json", "array", "id-not-a-string", "no-id"],
)
def test_signed_body_that_is_not_a_stripe_event_is_400(endpoint, api_client, body):
    response = deliver(api_client, body, apply=False)

    body_ = assert_envelope(response, 400, "VALIDATION_ERROR")
    assert body_["message"] == "The body is not a Stripe event."
    assert not StripeEventReceipt.objects.exists()


def test_received_events_are_listed_read_only_for_staff(
    stripe_account, pro_agent, api_client, admin_client
):
    payload = stripe_event(
        "customer.subscription.deleted", subscription_now(stripe_account, status="canceled")
    )
    event_id = json.loads(payload)["id"]
    deliver(api_client, payload)

    listing = admin_client.get("/admin/billing/stripeeventreceipt/", {"q": event_id})
    # The admin's own links quote the id ("_" is its escape character).
    page = admin_client.get(f"/admin/billing/stripeeventreceipt/{quote(event_id)}/change/")

    assert listing.status_code == 200
    assert event_id in listing.content.decode()
    assert page.status_code == 200
    assert "customer.subscription.deleted" in page.content.decode()
    assert "Save" not in page.content.decode()
    assert admin_client.get("/admin/billing/stripeeventreceipt/add/").status_code == 403
