"""The body of each event type as delivered (and as the OpenAPI document describes it).

``data`` always carries the agent's id; the other fields are the event's own.
"""

from __future__ import annotations

from typing import Any

from events.models import Event

_PREFIX = {"type": "string", "description": "The key's prefix (ltx_ and 8 characters)."}
_TIME_OR_NULL = {"anyOf": [{"type": "string", "format": "date-time"}, {"enum": [None]}]}
_TIER = {"type": "string", "enum": ["free", "pro"]}

# type -> (summary, data's own properties)
EVENT_DATA: dict[str, tuple[str, dict[str, Any]]] = {
    Event.Type.KEY_LEAKED: (
        "A key was reported leaked by secret scanning and revoked.",
        {
            "prefix": _PREFIX,
            "url": {"type": "string", "description": "Where the key was found ('' if unsaid)."},
            "source": {"type": "string", "description": "The scanner's source ('' if unsaid)."},
        },
    ),
    Event.Type.KEY_REVOKED_BY_SUPPORT: ("Support revoked a key.", {"prefix": _PREFIX}),
    Event.Type.KEY_REISSUED_BY_SUPPORT: (
        "Support issued a new key (sent to the owner); the listed keys stopped working.",
        {"prefix": _PREFIX, "revoked": {"type": "array", "items": _PREFIX}},
    ),
    Event.Type.USAGE_NEAR_LIMIT: (
        "A Free agent passed 80 % of its lifetime calls (once).",
        {"calls_total": {"type": "integer"}, "call_limit": {"type": "integer"}},
    ),
    Event.Type.USAGE_LIMIT_REACHED: (
        "A Free agent used its last lifetime call (once); further calls are 402.",
        {"calls_total": {"type": "integer"}, "call_limit": {"type": "integer"}},
    ),
    Event.Type.BILLING_TIER_CHANGED: (
        "The agent's tier changed.",
        {
            "from": _TIER,
            "to": _TIER,
            "reason": {
                "type": "string",
                "description": "What changed it: setup, cancel, subscription_ended, "
                "reconciliation, support, ...",
            },
        },
    ),
    Event.Type.BILLING_CANCEL_SCHEDULED: (
        "Pro ends at cancel_at (the paid period's end) unless set up again.",
        {"cancel_at": _TIME_OR_NULL},
    ),
    Event.Type.BILLING_PAYMENT_FAILED: (
        "Stripe could not collect an invoice.",
        {
            "invoice_id": {"type": "string"},
            "amount_due": {"type": "integer", "description": "In the currency's minor unit."},
            "currency": {"type": "string"},
            "attempt_count": {"type": "integer"},
            "next_payment_attempt": _TIME_OR_NULL,
            "next": {
                "type": "string",
                "enum": ["stripe_retries", "subscription_ends_unless_card_updated"],
            },
        },
    ),
    Event.Type.AGENT_DELETED: (
        "The agent was deleted (by itself or by support); its keys stopped working.",
        # No personal field: the name and owner are what the deletion erases.
        {"source": {"type": "string", "enum": ["agent", "admin"]}},
    ),
}


def component_name(event_type: str) -> str:
    """key.leaked -> KeyLeakedEvent."""
    words = event_type.replace(".", "_").split("_")
    return "".join(word.capitalize() for word in words) + "Event"


def event_schemas() -> dict[str, dict[str, Any]]:
    """One schema per event type, and WebhookEvent: one of them."""
    schemas: dict[str, dict[str, Any]] = {}
    for event_type, (summary, properties) in EVENT_DATA.items():
        schemas[component_name(event_type)] = {
            "type": "object",
            "description": summary,
            "required": ["type", "timestamp", "data"],
            "properties": {
                "type": {"type": "string", "enum": [str(event_type)]},
                "timestamp": {"type": "string", "format": "date-time"},
                "data": {
                    "type": "object",
                    "required": ["agent_id", *properties],
                    "properties": {
                        "agent_id": {"type": "string", "format": "uuid"},
                        **properties,
                    },
                },
            },
        }
    schemas["WebhookEvent"] = {
        "description": "A delivery's body (Standard Webhooks): one of the event types.",
        "oneOf": [{"$ref": f"#/components/schemas/{name}"} for name in list(schemas)],
        "discriminator": {
            "propertyName": "type",
            "mapping": {str(t): f"#/components/schemas/{component_name(t)}" for t in EVENT_DATA},
        },
    }
    return schemas


def add_event_schemas(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular post-processing hook: the event payloads, and PUT /v1/webhook's
    callback (what the agent's URL receives)."""
    result.setdefault("components", {}).setdefault("schemas", {}).update(event_schemas())
    operation = result.get("paths", {}).get("/v1/webhook", {}).get("put")
    if operation is not None:
        operation["callbacks"] = {
            "event": {
                "{$request.body#/url}": {
                    "post": {
                        "summary": "An event, signed (webhook-id, webhook-timestamp, "
                        "webhook-signature)",
                        "requestBody": {
                            "required": True,
                            "content": {
                                "application/json": {
                                    "schema": {"$ref": "#/components/schemas/WebhookEvent"}
                                }
                            },
                        },
                        "responses": {
                            "2XX": {
                                "description": "Received; any other answer "
                                "or none within 5 s is retried."
                            }
                        },
                    }
                }
            }
        }
    return result
