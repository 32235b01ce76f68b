from rest_framework import serializers


class BillingSerializer(serializers.Serializer):
    tier = serializers.CharField()
    calls_total = serializers.IntegerField()
    call_limit = serializers.IntegerField(allow_null=True)
    over_limit = serializers.BooleanField()
    stripe_customer_id = serializers.CharField(allow_null=True)
    cancel_at = serializers.DateTimeField(allow_null=True)


class DayUsageSerializer(serializers.Serializer):
    date = serializers.DateField()
    calls = serializers.IntegerField()


class UsageSerializer(serializers.Serializer):
    calls_total = serializers.IntegerField()
    calls_this_month = serializers.IntegerField()
    calls_remaining = serializers.IntegerField(allow_null=True)
    daily_breakdown = DayUsageSerializer(many=True)
