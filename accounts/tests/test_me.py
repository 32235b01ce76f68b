import pytest

from testing.assertions import assert_envelope

ME = "/v1/me"


@pytest.mark.django_db
def test_me_returns_the_profile(api_client, registered):
    response = api_client.get(ME, **registered.auth)

    assert response.status_code == 200
    assert response.json() == {
        "agent_id": str(registered.agent.id),
        "agent_name": "my-agent",
        "owner_identifier": "you@example.com",
        "tier": "free",
    }
    assert response["X-Request-Id"]


@pytest.mark.django_db
def test_me_shows_pro_tier(api_client, registered):
    registered.agent.tier = "pro"
    registered.agent.save()
    assert api_client.get(ME, **registered.auth).json()["tier"] == "pro"


@pytest.mark.django_db
def test_me_without_key_is_401_with_bearer_challenge(api_client):
    response = api_client.get(ME)
    assert_envelope(response, 401, "INVALID_API_KEY")
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.django_db
def test_me_wrong_method_is_405(api_client, registered):
    response = api_client.post(ME, {}, format="json", **registered.auth)
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in response["Allow"] and "POST" not in response["Allow"]


@pytest.mark.django_db
def test_me_body_matches_its_documented_serializer(api_client, registered):
    from accounts.serializers import AgentProfileSerializer

    body = api_client.get(ME, **registered.auth).json()
    assert body == AgentProfileSerializer(registered.agent).data
