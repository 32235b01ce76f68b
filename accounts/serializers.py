from django.core.validators import RegexValidator
from rest_framework import serializers

from accounts.models import Agent
from lithtrix.serializers import StrictCharField


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


class AgentProfileSerializer(serializers.ModelSerializer):
    agent_id = serializers.UUIDField(source="id")

    class Meta:
        model = Agent
        fields = ["agent_id", "agent_name", "owner_identifier", "tier"]
