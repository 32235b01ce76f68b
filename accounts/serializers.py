from django.core.validators import RegexValidator
from rest_framework import serializers

from accounts.models import Tier
from lithtrix.core.serializers import StrictCharField


class AgentRegisterSerializer(serializers.Serializer):
    # Unknown extra fields (the official client sends agree_to_terms) are ignored.
    agent_name = StrictCharField(
        max_length=100,
        validators=[
            RegexValidator(
                r"^[A-Za-z0-9_-]+\Z", "Use 1-100 characters: letters, digits, '_' and '-'."
            )
        ],
    )
    owner_identifier = StrictCharField(max_length=255)


class AgentRegisteredSerializer(serializers.Serializer):
    api_key = serializers.CharField()
    agent_id = serializers.UUIDField()
    message = serializers.CharField()


class AgentProfileSerializer(serializers.Serializer):
    # Declared fields, not a ModelSerializer: GET /v1/me answers on every call, and a
    # ModelSerializer introspects the model to build its fields each time.
    agent_id = serializers.UUIDField(source="id", read_only=True)
    agent_name = serializers.CharField(read_only=True)
    owner_identifier = serializers.CharField(read_only=True)
    tier = serializers.ChoiceField(choices=Tier.choices, read_only=True)


class AgentDeleteSerializer(serializers.Serializer):
    confirm = StrictCharField(
        max_length=100, help_text="The agent's own agent_name, to confirm the deletion."
    )

    def validate_confirm(self, value: str) -> str:
        if value != self.context["agent"].agent_name:
            raise serializers.ValidationError("Must be this agent's agent_name.")
        return value
