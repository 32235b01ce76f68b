from django.core.validators import RegexValidator
from rest_framework import serializers

from lithtrix.core.serializers import StrictCharField


class BillingSetupSerializer(serializers.Serializer):
    payment_method_id = StrictCharField(
        max_length=255,
        validators=[
            RegexValidator(
                r"^pm_[A-Za-z0-9_]+\Z",
                "Must be a Stripe PaymentMethod id: pm_ then letters, digits or _.",
            )
        ],
    )


class BillingConfigSerializer(serializers.Serializer):
    stripe_publishable_key = serializers.CharField()


class BillingUpgradedSerializer(serializers.Serializer):
    tier = serializers.CharField()
    call_limit = serializers.IntegerField(allow_null=True)
    message = serializers.CharField()


class BillingCancelledSerializer(serializers.Serializer):
    tier = serializers.CharField()
    cancel_at = serializers.DateTimeField(allow_null=True)
    message = serializers.CharField()
