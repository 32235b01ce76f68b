from billing.tests.conftest import TEST_PUBLISHABLE_KEY


def test_config_returns_the_publishable_key_without_auth(local_stripe, api_client):
    response = api_client.get("/v1/billing/config")

    assert response.status_code == 200
    assert response.json() == {"stripe_publishable_key": TEST_PUBLISHABLE_KEY}


def test_config_ignores_an_invalid_key(local_stripe, api_client):
    response = api_client.get("/v1/billing/config", HTTP_AUTHORIZATION="Bearer ltx_bad")

    assert response.status_code == 200


def test_config_only_answers_get(local_stripe, api_client):
    response = api_client.post("/v1/billing/config", {}, format="json")

    assert response.status_code == 405
    assert response.json()["error_code"] == "METHOD_NOT_ALLOWED"


def test_config_is_rate_limited_per_client_ip(local_stripe, settings, api_client, throttle_rates):
    throttle_rates(billing_config="2/m")

    statuses = [api_client.get("/v1/billing/config").status_code for _ in range(3)]

    assert statuses == [200, 200, 429]
