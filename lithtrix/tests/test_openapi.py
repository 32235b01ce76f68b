import pytest
from django.core.management import call_command
from django.urls import URLPattern, get_resolver
from rest_framework.views import APIView

SCHEMA = "/v1/openapi.json"
ENVELOPE_REF = {"$ref": "#/components/schemas/ErrorEnvelope"}


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    from rest_framework.test import APIClient

    with django_db_blocker.unblock():
        response = APIClient().get(SCHEMA)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi+json")
    return response.json()


def served_api_routes():
    """(path, method) of every DRF view mounted under /v1, from the URL patterns."""
    routes = set()
    for pattern in get_resolver().url_patterns:
        if not isinstance(pattern, URLPattern):
            continue
        view_class = getattr(pattern.callback, "cls", None)
        actions = getattr(pattern.callback, "actions", None)
        route = str(pattern.pattern)
        if not (view_class and issubclass(view_class, APIView) and route.startswith("v1/")):
            continue
        if route in {"v1/openapi.json", "v1/docs"}:
            continue
        for method in actions or {}:
            if method in {"head", "options"}:  # answered by Django/DRF, not documented
                continue
            routes.add((f"/{route}", method))
    return routes


def operations(schema):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


def test_schema_documents_every_served_api_route(schema):
    documented = {(path, method) for path, method, _ in operations(schema)}
    assert schema["openapi"].startswith("3.")
    assert served_api_routes() <= documented
    assert ("/v1/me", "get") in documented
    assert ("/v1/capabilities", "get") in documented


def test_schema_generates_without_warnings_and_validates(tmp_path):
    # --fail-on-warn: an endpoint whose body or answer cannot be described fails here.
    call_command(
        "spectacular", file=str(tmp_path / "schema.json"), validate=True, fail_on_warn=True
    )


def test_bearer_scheme_describes_ltx_keys(schema):
    assert schema["components"]["securitySchemes"]["ApiKeyAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "ltx_ API key",
        "description": "An `ltx_` key from POST /v1/register or POST /v1/keys/rotate.",
    }
    me = schema["paths"]["/v1/me"]["get"]
    assert me["security"] == [{"ApiKeyAuth": []}]
    assert "security" not in schema["paths"]["/v1/register"]["post"]


def test_every_operation_documents_its_errors_with_the_envelope(schema):
    for path, method, operation in operations(schema):
        responses = operation["responses"]
        keyed = "security" in operation
        expected = {"500"} | ({"401", "429"} if keyed else set())
        if "requestBody" in operation:
            expected |= {"400", "413", "415"}
        assert expected <= set(responses), (path, method)
        for code, response in responses.items():
            assert response["headers"]["X-Request-Id"]["required"] is True
            if code.startswith(("4", "5")):
                assert response["content"]["application/json"]["schema"] == ENVELOPE_REF


def test_keyed_operations_document_rate_limit_headers(schema):
    me = schema["paths"]["/v1/me"]["get"]["responses"]
    for code in ("200", "429"):
        for header in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
            assert me[code]["headers"][header]["required"] is True
            assert me[code]["headers"][header]["schema"] == {"type": "integer", "minimum": 0}
    assert me["429"]["headers"]["Retry-After"]["required"] is True
    assert me["429"]["headers"]["Retry-After"]["schema"] == {"type": "integer", "minimum": 1}
    assert me["401"]["headers"]["WWW-Authenticate"]["required"] is True
    assert "RateLimit-Limit" not in me["401"]["headers"]


def test_specific_errors_are_documented_where_they_happen(schema):
    register = schema["paths"]["/v1/register"]["post"]
    assert register["responses"]["409"]["content"]["application/json"]["schema"] == ENVELOPE_REF
    assert "429" in register["responses"]  # per client IP
    assert register["x-rate-limit"] == "per client IP"


def test_error_envelope_schema(schema):
    envelope = schema["components"]["schemas"]["ErrorEnvelope"]
    assert envelope["required"] == ["status", "error_code", "message"]
    assert envelope["properties"]["status"] == {"type": "string", "enum": ["error"]}


@pytest.mark.django_db
def test_docs_page_loads_its_assets_locally(client):
    response = client.get("/v1/docs")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "/v1/openapi.json" in page
    assert "cdn" not in page.lower()


def test_authorize_is_documented_for_every_method_as_metered(schema):
    authorize = schema["paths"]["/v1/authorize"]
    assert set(authorize) == {"get", "post", "put", "patch", "delete"}
    for operation in authorize.values():
        assert operation["security"] == [{"ApiKeyAuth": []}]
        assert operation["x-metered"] is True
        assert {"200", "401", "402", "429", "500"} <= set(operation["responses"])
        ok = operation["responses"]["200"]
        assert ok["headers"]["X-Agent-Id"]["required"] is True
        assert ok["headers"]["X-Agent-Tier"]["required"] is True
        assert ok["headers"]["RateLimit-Remaining"]["required"] is True
        assert operation["responses"]["402"]["content"]["application/json"]["schema"] == (
            ENVELOPE_REF
        )


def test_billing_endpoints_and_the_stripe_webhook_are_documented(schema):
    setup = schema["paths"]["/v1/billing/setup"]["post"]
    assert {"200", "400", "401", "402", "429", "502", "503"} <= set(setup["responses"])
    config = schema["paths"]["/v1/billing/config"]["get"]
    assert "security" not in config
    assert {"200", "429", "503"} <= set(config["responses"])
    webhook = schema["paths"]["/v1/billing/webhook"]["post"]
    assert "security" not in webhook
    assert webhook["parameters"][0]["name"] == "Stripe-Signature"
    assert webhook["responses"]["400"]["content"]["application/json"]["schema"] == ENVELOPE_REF


IDEMPOTENT = {
    ("/v1/register", "post"): 32,
    ("/v1/keys/rotate", "post"): 32,
    ("/v1/keys/revoke", "post"): 1,
    ("/v1/billing/setup", "post"): 1,
    ("/v1/billing/cancel", "post"): 1,
    ("/v1/me", "delete"): 1,
}


def test_every_post_and_delete_route_honours_idempotency_key():
    """A new POST/DELETE action must opt in (``@idempotent`` and the mixin), or be listed."""
    from idempotency.views import IdempotentViewSetMixin

    exempt = {"/v1/keys/leaked"}  # signed by GitHub, naturally idempotent
    for pattern in get_resolver().url_patterns:
        if not isinstance(pattern, URLPattern) or not hasattr(pattern.callback, "actions"):
            continue
        path = f"/{pattern.pattern}"
        for method, action in pattern.callback.actions.items():
            if method not in {"post", "delete"} or path in exempt or not path.startswith("/v1/"):
                continue
            view_class = pattern.callback.cls
            assert issubclass(view_class, IdempotentViewSetMixin), path
            assert getattr(getattr(view_class, action), "idempotency_policy", None), path


def test_idempotent_operations_document_the_header_and_its_errors(schema):
    for (path, method), min_length in IDEMPOTENT.items():
        operation = schema["paths"][path][method]
        parameter = next(p for p in operation["parameters"] if p["name"] == "Idempotency-Key")
        assert parameter["in"] == "header" and parameter["schema"]["minLength"] == min_length
        assert {"400", "409", "422"} <= set(operation["responses"])
        success = next(code for code in operation["responses"] if code.startswith("2"))
        assert "Idempotent-Replayed" in operation["responses"][success]["headers"]
    assert "Idempotency-Key" not in str(schema["paths"]["/v1/me"]["get"])


def test_lifecycle_endpoints_are_documented(schema):
    paths = schema["paths"]
    assert "204" in paths["/v1/me"]["delete"]["responses"]
    rotate_body = schema["components"]["schemas"]["KeyRotateRequest"]["properties"]
    overlap = rotate_body["previous_key_expires_in"]
    assert (overlap["minimum"], overlap["maximum"]) == (0, 604800)
    components = schema["components"]["schemas"]
    listed = paths["/v1/keys"]["get"]["responses"]["200"]["content"]["application/json"]
    assert listed["schema"] == {"$ref": "#/components/schemas/KeyList"}
    assert set(components["ApiKeySummary"]["properties"]) == {
        "prefix",
        "created_at",
        "expires_at",
        "current",
    }
    assert "revoked" in components["KeyRevoked"]["properties"]
    leaked = paths["/v1/keys/leaked"]["post"]
    assert {p["name"] for p in leaked["parameters"]} >= {
        "Github-Public-Key-Identifier",
        "Github-Public-Key-Signature",
    }
    assert {"200", "400", "429", "503"} <= set(leaked["responses"])
    assert "security" not in leaked or {} in leaked["security"]
    authorize = paths["/v1/authorize"]["get"]["responses"]["200"]["headers"]
    assert "X-Calls-Remaining" in authorize
