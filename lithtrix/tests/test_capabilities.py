import pytest

CAPABILITIES = "/v1/capabilities"


@pytest.mark.django_db
def test_capabilities_needs_no_key_and_describes_the_service(api_client):
    response = api_client.get(CAPABILITIES)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {
        "service",
        "version",
        "api_version",
        "documentation",
        "authentication",
        "limits",
        "rate_limit_headers",
        "endpoints",
    }
    assert body["service"] == "lithtrix"
    assert body["api_version"] == "v1"
    assert body["documentation"] == {"openapi": "/v1/openapi.json", "docs": "/v1/docs"}
    assert body["authentication"] == {
        "type": "http",
        "scheme": "bearer",
        "header": "Authorization",
        "format": "Bearer ltx_...",
        "obtain": "POST /v1/register",
        "rotate": "POST /v1/keys/rotate",
    }
    assert body["rate_limit_headers"] == [
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
    ]


@pytest.mark.django_db
def test_capabilities_limits_come_from_settings(api_client, settings, throttle_rates):
    settings.LITHTRIX_FREE_CALL_LIMIT = 25
    throttle_rates(agent_free="7/m")
    throttle_rates(agent_pro="1000/5m")

    limits = api_client.get(CAPABILITIES).json()["limits"]

    assert limits == {
        "free": {"call_limit": 25, "rate": "7/m", "requests_per_period": 7, "period_seconds": 60},
        "pro": {
            "call_limit": None,
            "rate": "1000/5m",
            "requests_per_period": 1000,
            "period_seconds": 300,
        },
    }


@pytest.mark.django_db
def test_capabilities_lists_every_documented_endpoint(api_client):
    endpoints = api_client.get(CAPABILITIES).json()["endpoints"]
    schema = api_client.get("/v1/openapi.json").json()

    listed = {(e["method"], e["path"]) for e in endpoints}
    documented = {(m.upper(), p) for p, methods in schema["paths"].items() for m in methods}
    assert listed == documented
    by_path = {(e["method"], e["path"]): e for e in endpoints}
    assert by_path[("GET", "/v1/me")]["authentication"] == "bearer"
    assert by_path[("POST", "/v1/register")]["authentication"] == "none"
    assert by_path[("GET", "/v1/capabilities")]["authentication"] == "none"
    assert all(isinstance(e["metered"], bool) and e["summary"] for e in endpoints)
