from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from rest_framework import serializers

from events.models import Event
from lithtrix.core.serializers import StrictCharField
from webhooks.addresses import (
    AddressRefused,
    HostNotValid,
    NameDoesNotResolve,
    NameLookupTimedOut,
    resolve,
)
from webhooks.models import WebhookDelivery

EVENT_TYPES = [choice.value for choice in Event.Type]
# How long PUT /v1/webhooks waits for the URL's host name to resolve (the request holds
# a worker meanwhile).
LOOKUP_SECONDS = 3.0


class WebhookSetSerializer(serializers.Serializer):
    url = StrictCharField(max_length=2000)

    def validate_url(self, value: str) -> str:
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError as error:
            raise serializers.ValidationError("Must be a valid URL.") from error
        schemes = {"https", "http"} if settings.LITHTRIX_WEBHOOK_ALLOW_HTTP else {"https"}
        if parts.scheme not in schemes:
            raise serializers.ValidationError(
                "Must be an https URL." if "http" not in schemes else "Must be an http(s) URL."
            )
        if not parts.hostname:
            raise serializers.ValidationError("Must name a host.")
        if parts.username is not None or parts.password is not None:
            raise serializers.ValidationError("Must not carry credentials.")
        if parts.fragment:
            raise serializers.ValidationError("Must not have a fragment.")
        try:
            resolve(
                parts.hostname,
                port or (443 if parts.scheme == "https" else 80),
                allow_private=settings.LITHTRIX_WEBHOOK_ALLOW_PRIVATE,
                timeout=LOOKUP_SECONDS,
            )
        except HostNotValid as error:
            raise serializers.ValidationError("Must name a valid host.") from error
        except NameLookupTimedOut as error:
            raise serializers.ValidationError(
                f"The host name did not resolve within {LOOKUP_SECONDS:g} s: retry once "
                "its DNS answers."
            ) from error
        except NameDoesNotResolve as error:
            raise serializers.ValidationError(
                "The host name does not resolve: check it, or retry once it is published."
            ) from error
        except AddressRefused as error:
            raise serializers.ValidationError(
                "Must resolve to a public address (not loopback, private, link-local, "
                "multicast or a metadata service)."
            ) from error
        return value


class WebhookSecretSerializer(serializers.Serializer):
    url = serializers.CharField()
    secret = serializers.CharField(help_text="whsec_...: shown once; PUT again to rotate it.")
    events = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_TYPES))


class WebhookSerializer(serializers.Serializer):
    url = serializers.CharField()
    events = serializers.ListField(child=serializers.ChoiceField(choices=EVENT_TYPES))
    created_at = serializers.DateTimeField()
    disabled_at = serializers.DateTimeField(allow_null=True)


class WebhookDeliverySerializer(serializers.Serializer):
    id = serializers.CharField()
    event_id = serializers.CharField()
    type = serializers.ChoiceField(choices=EVENT_TYPES, source="event.type")
    status = serializers.ChoiceField(choices=WebhookDelivery.Status.choices)
    attempts = serializers.IntegerField()
    last_status_code = serializers.IntegerField(allow_null=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True)


class WebhookDeliveryListSerializer(serializers.Serializer):
    deliveries = WebhookDeliverySerializer(many=True)
