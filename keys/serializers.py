from rest_framework import serializers

from keys.services import MAX_ROTATION_OVERLAP_SECONDS
from lithtrix.core.serializers import StrictCharField


class StrictIntegerField(serializers.IntegerField):
    """An IntegerField that accepts only JSON integers: "60", 60.0 and true are refused."""

    default_error_messages = {"invalid": "Must be an integer."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class KeyRotateSerializer(serializers.Serializer):
    previous_key_expires_in = StrictIntegerField(
        min_value=0,
        max_value=MAX_ROTATION_OVERLAP_SECONDS,
        required=False,
        default=0,
        help_text="Seconds the presented key keeps working (0-604800); 0: it stops now.",
    )


class EndedOverlapSerializer(serializers.Serializer):
    prefix = serializers.CharField()
    created_at = serializers.DateTimeField()


class KeyRotatedSerializer(serializers.Serializer):
    api_key = serializers.CharField()
    previous_key_expires_at = serializers.DateTimeField(
        allow_null=True,
        help_text="Until when the presented key works; null: it stopped now.",
    )
    overlap_ended = EndedOverlapSerializer(
        many=True,
        help_text=(
            "Older keys whose overlap this rotation ended now, oldest first: at most "
            "LITHTRIX_MAX_WORKING_KEYS keys of an agent work at once (5 by default)."
        ),
    )


class ApiKeySummarySerializer(serializers.Serializer):
    prefix = serializers.CharField()
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    current = serializers.BooleanField(source="is_current")


class KeyListSerializer(serializers.Serializer):
    keys = ApiKeySummarySerializer(many=True)


class KeyRevokedSerializer(serializers.Serializer):
    revoked = serializers.CharField(help_text="The revoked key's prefix.")


class LeakReportSerializer(serializers.Serializer):
    token = StrictCharField(max_length=1000)
    type = StrictCharField(max_length=200)
    # Only token and type are required: GitHub's own signed sample has no source, and
    # a leaked key must not stay live because a report lacks an optional field.
    url = StrictCharField(max_length=2000, allow_blank=True, required=False, default="")
    # GitHub's field name; DRF's metaclass moves declared fields off the class, the
    # stubs see Field.source instead.
    source = StrictCharField(  # type: ignore[assignment]
        max_length=200, allow_blank=True, required=False, default=""
    )


class LeakLabelSerializer(serializers.Serializer):
    token_hash = serializers.CharField(help_text="SHA-256 (hex) of the reported token.")
    token_type = serializers.CharField()
    # As above (Field.label in the stubs).
    label = serializers.ChoiceField(choices=["true_positive", "false_positive"])  # type: ignore[assignment]
