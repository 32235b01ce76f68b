import json
import re
from typing import Any

import pytest
from django.core.management import call_command
from django.urls import URLPattern, get_resolver
from rest_framework.views import APIView

from testing.assertions import assert_envelope

SCHEMA = "/v1/openapi.json"
ENVELOPE_REF = {"$ref": "#/components/schemas/ErrorEnvelope"}


def error_schema(response):
    """The envelope schema of an error answer; asserts it narrows error_code to an enum."""
    schema = response["content"]["application/json"]["schema"]
    assert schema["allOf"] == [ENVELOPE_REF]
    codes = schema["properties"]["error_code"]["enum"]
    assert codes and all(isinstance(code, str) for code in codes)
    return codes


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
        if route == "v1/keys/leaked":  # GitHub's, left out like Stripe's webhook
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
                error_schema(response)


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
    assert error_schema(register["responses"]["409"]) == [
        "AGENT_ALREADY_EXISTS",
        "IDEMPOTENCY_KEY_IN_USE",
    ]
    assert error_schema(register["responses"]["422"]) == ["IDEMPOTENCY_KEY_REUSED"]
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


DOCUMENTS = {"/v1/docs": "text/html; charset=utf-8", SCHEMA: "application/vnd.oai.openapi+json"}
DOCUMENT_METHODS = "GET, HEAD, OPTIONS"


@pytest.mark.django_db
@pytest.mark.parametrize("path", DOCUMENTS)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_documents_answer_get_and_head_with_the_document(client, path, method):
    response = client.generic(method, path)

    assert response.status_code == 200
    assert response["Content-Type"] == DOCUMENTS[path]
    assert response["Allow"] == DOCUMENT_METHODS
    assert bool(response.content) is (method == "GET")


@pytest.mark.django_db
@pytest.mark.parametrize("path", DOCUMENTS)
def test_documents_answer_options_with_json(client, path):
    response = client.options(path)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Allow"] == DOCUMENT_METHODS
    assert response.json()["renders"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", DOCUMENTS)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "TRACE", "PROPFIND"])
def test_documents_refuse_other_methods_with_the_envelope(client, path, method):
    response = client.generic(method, path)

    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert response["Allow"] == DOCUMENT_METHODS


def test_authorize_is_documented_once_for_any_method_as_metered(schema):
    authorize = schema["paths"]["/v1/authorize"]
    assert set(authorize) == {"get"}
    operation = authorize["get"]
    assert operation["x-any-method"] is True
    assert "Any HTTP method is accepted" in operation["description"]
    assert operation["security"] == [{"ApiKeyAuth": []}]
    assert operation["x-metered"] is True
    assert {"200", "401", "402", "429", "500"} <= set(operation["responses"])
    ok = operation["responses"]["200"]
    assert ok["headers"]["X-Agent-Id"]["required"] is True
    assert ok["headers"]["X-Agent-Tier"]["required"] is True
    assert ok["headers"]["RateLimit-Remaining"]["required"] is True
    assert error_schema(operation["responses"]["402"]) == ["OVER_LIMIT"]
    assert error_schema(operation["responses"]["401"]) == ["INVALID_API_KEY"]


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "options", "trace"])
def test_authorize_answers_every_method_as_it_answers_get(client, method):
    from accounts.services import agent_register

    key = agent_register(agent_name="any-method", owner_identifier="o@example.com").api_key
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"}

    got = client.generic(method.upper(), "/v1/authorize", **headers)
    get = client.get("/v1/authorize", **headers)

    assert got.status_code == get.status_code == 200
    assert got.json() == get.json()
    assert got["X-Agent-Tier"] == "free"
    assert client.generic(method.upper(), "/v1/authorize").status_code == 401


def test_billing_endpoints_are_documented_and_the_stripe_webhook_is_not(schema):
    setup = schema["paths"]["/v1/billing/setup"]["post"]
    assert {"200", "400", "401", "402", "429", "502", "503"} <= set(setup["responses"])
    assert error_schema(setup["responses"]["402"]) == ["PAYMENT_FAILED"]
    assert error_schema(setup["responses"]["502"]) == ["PAYMENT_PROVIDER_ERROR"]
    assert set(error_schema(setup["responses"]["503"])) == {
        "BILLING_UNAVAILABLE",
        "SERVICE_UNAVAILABLE",
    }
    assert setup["x-stripe-decides"] == [400, 402]
    # An agent's deletion cancels its subscription on Stripe first, in a call slot.
    delete = schema["paths"]["/v1/me"]["delete"]["responses"]
    assert "BILLING_IN_PROGRESS" in error_schema(delete["409"])
    assert error_schema(delete["502"]) == ["PAYMENT_PROVIDER_ERROR"]
    assert set(error_schema(delete["503"])) == {"BILLING_UNAVAILABLE", "SERVICE_UNAVAILABLE"}
    delete_503 = delete["503"]["content"]["application/json"]["examples"].values()
    assert any("payment provider" in e["value"]["message"] for e in delete_503), delete_503
    config = schema["paths"]["/v1/billing/config"]["get"]
    assert "security" not in config
    assert {"200", "429", "503"} <= set(config["responses"])
    assert "/v1/billing/webhook" not in schema["paths"]
    # Stripe's webhook receivers are not the agents' API (agents' own /v1/webhook is).
    assert not any("billing/webhook" in path or "stripe" in path for path in schema["paths"])


def test_operations_are_grouped_and_ordered_as_an_agent_meets_them(schema):
    tags = [tag["name"] for tag in schema["tags"]]
    assert tags[:6] == ["Register", "Me", "Keys", "Billing", "Usage", "Metering"]
    assert all(tag["description"] for tag in schema["tags"])
    order = [(path, operation["tags"]) for path, _, operation in operations(schema)]
    # Every operation has exactly one tag, a declared one, and the paths come in tag order.
    assert all(len(op_tags) == 1 and op_tags[0] in tags for _, op_tags in order)
    ranks = [tags.index(op_tags[0]) for _, op_tags in order]
    assert ranks == sorted(ranks)
    paths = [path for path, _ in order]
    assert paths[0] == "/v1/register"
    assert paths.index("/v1/me") < paths.index("/v1/keys/rotate") < paths.index("/v1/billing")
    assert paths.index("/v1/billing/config") < paths.index("/v1/billing/setup")
    assert paths.index("/v1/usage") < paths.index("/v1/authorize")


def test_every_error_answer_lists_its_codes_as_an_enum_with_an_example_each(schema):
    from lithtrix.openapi import error_class

    for path, method, operation in operations(schema):
        for code, response in operation["responses"].items():
            if not code.startswith(("4", "5")):
                continue
            codes = error_schema(response)
            examples = response["content"]["application/json"]["examples"]
            shown = {example["value"]["error_code"] for example in examples.values()}
            assert shown == set(codes), (path, method, code)
            for error_code in codes:
                # Every listed code is a real error of the API, with that status.
                assert str(error_class(error_code).status_code) == code, (path, error_code)
            for example in examples.values():
                value = example["value"]
                assert value["status"] == "error" and value["message"], (path, code)
                assert set(value) <= {"status", "error_code", "message", "details", "upgrade_url"}


def test_shared_error_codes_are_where_they_apply(schema):
    me = schema["paths"]["/v1/me"]["get"]["responses"]
    assert error_schema(me["401"]) == ["INVALID_API_KEY"]
    assert error_schema(me["429"]) == ["RATE_LIMIT_EXCEEDED"]
    assert error_schema(me["500"]) == ["INTERNAL_ERROR"]
    assert error_schema(me["503"]) == ["SERVICE_UNAVAILABLE"]
    register = schema["paths"]["/v1/register"]["post"]["responses"]
    assert error_schema(register["400"]) == ["VALIDATION_ERROR"]
    assert error_schema(register["413"]) == ["PAYLOAD_TOO_LARGE"]
    assert error_schema(register["415"]) == ["UNSUPPORTED_MEDIA_TYPE"]
    over_limit = schema["paths"]["/v1/authorize"]["get"]["responses"]["402"]
    example = next(iter(over_limit["content"]["application/json"]["examples"].values()))
    assert example["value"]["upgrade_url"] == "/v1/billing/setup"


def test_errors_helper_declares_codes_for_new_endpoints():
    from drf_spectacular.utils import OpenApiResponse

    from lithtrix.core import exceptions as api_errors
    from lithtrix.openapi import errors

    declared = errors(
        api_errors.PaymentFailedError("Your card was declined."),
        api_errors.PaymentProviderError,
        api_errors.BillingUnavailableError,
        api_errors.ServiceUnavailableError,
    )

    assert set(declared) == {402, 502, 503}
    assert all(isinstance(response, OpenApiResponse) for response in declared.values())
    assert declared[402].response["x-lithtrix-errors"][0]["message"] == "Your card was declined."
    assert [body["error_code"] for body in declared[503].response["x-lithtrix-errors"]] == [
        "BILLING_UNAVAILABLE",
        "SERVICE_UNAVAILABLE",
    ]


def test_every_request_and_success_answer_has_a_realistic_example(schema):
    from keys.crypto import is_well_formed

    for path, method, operation in operations(schema):
        if "requestBody" in operation:
            examples = operation["requestBody"]["content"]["application/json"]["examples"]
            assert examples, (path, method)
        for code, response in operation["responses"].items():
            if "content" not in response:
                continue
            examples = response["content"]["application/json"].get("examples")
            assert examples, (path, method, code)
            text = json.dumps(examples)
            assert '"string"' not in text, (path, method, code)
    register = schema["paths"]["/v1/register"]["post"]
    created = register["responses"]["201"]["content"]["application/json"]["examples"]
    key = next(iter(created.values()))["value"]["api_key"]
    assert is_well_formed(key)
    rotated = schema["paths"]["/v1/keys/rotate"]["post"]["responses"]["200"]
    key = next(iter(rotated["content"]["application/json"]["examples"].values()))["value"]
    assert is_well_formed(key["api_key"])
    setup = schema["paths"]["/v1/billing/setup"]["post"]["requestBody"]["content"]
    assert next(iter(setup["application/json"]["examples"].values()))["value"] == {
        "payment_method_id": "pm_card_visa"
    }


def test_servers_and_quickstart(schema, settings):
    assert schema["servers"] == [
        {"url": settings.LITHTRIX_PUBLIC_URL, "description": "This deployment"}
    ]
    description = schema["info"]["description"]
    assert description.index("Quickstart for agents") < description.index("POST /v1/register")
    steps = ["POST /v1/register", "Bearer ltx_", "GET /v1/me", "/v1/authorize", "/v1/billing/setup"]
    positions = [description.index(step) for step in steps]
    assert positions == sorted(positions)


def test_string_fields_state_what_the_server_refuses(schema):
    body = schema["components"]["schemas"]["AgentRegisterRequest"]["properties"]
    owner = body["owner_identifier"]
    assert owner["maxLength"] == 255 and owner["minLength"] == 1
    pattern = re.compile(owner["pattern"])
    assert pattern.search("ops@example.com")
    for refused in ["a\x00b", "   ", "\t\n", ""]:
        assert not pattern.search(refused), refused
    assert body["agent_name"]["pattern"] == "^[A-Za-z0-9_-]+$"
    setup = schema["components"]["schemas"]["BillingSetupRequest"]["properties"]
    assert setup["payment_method_id"]["maxLength"] == 255


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["a\x00b", "   "])
def test_the_server_refuses_what_the_pattern_excludes(client, value):
    response = client.post(
        "/v1/register",
        {"agent_name": "pattern-check", "owner_identifier": value},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "VALIDATION_ERROR"
    assert "owner_identifier" in response.json()["details"]


def test_new_keys_link_to_every_keyed_operation(schema):
    keyed = {
        operation["operationId"]
        for _, _, operation in operations(schema)
        if operation.get("security") == [{"ApiKeyAuth": []}]
    }
    for path, method in (("/v1/register", "post"), ("/v1/keys/rotate", "post")):
        responses = schema["paths"][path][method]["responses"]
        success = next(code for code in responses if code.startswith("2"))
        links = responses[success]["links"]
        assert set(links) == keyed
        for link in links.values():
            assert link["parameters"] == {
                "header.Authorization": "Bearer {$response.body#/api_key}"
            }
    assert "links" not in schema["paths"]["/v1/me"]["get"]["responses"]["200"]


def test_error_response_reads_the_code_from_its_description():
    from lithtrix.openapi import ErrorEnvelopeSerializer, error_response

    declared = error_response("PAYMENT_FAILED: the payment method was declined.")
    assert declared.response["x-lithtrix-errors"][0]["error_code"] == "PAYMENT_FAILED"
    # No known code: the answer will list every code of its status.
    assert error_response("NOT_A_CODE_WE_HAVE: x").response is ErrorEnvelopeSerializer
    assert error_response("Stripe failed.").response is ErrorEnvelopeSerializer


def test_hook_gives_an_undeclared_error_answer_every_code_of_its_status():
    from lithtrix.openapi import document_errors_and_headers

    operation: dict[str, Any] = {
        "operationId": "later_endpoint",
        "security": [{"ApiKeyAuth": []}],
        "responses": {
            "200": {"description": ""},
            "503": {"content": {"application/json": {"schema": ENVELOPE_REF}}},
        },
    }
    result = {"paths": {"/v1/later": {"post": operation}}}

    document_errors_and_headers(result, None, None, True)

    responses = result["paths"]["/v1/later"]["post"]["responses"]
    assert set(error_schema(responses["503"])) == {"BILLING_UNAVAILABLE", "SERVICE_UNAVAILABLE"}
    assert error_schema(responses["401"]) == ["INVALID_API_KEY"]
    assert responses["200"]["description"] == "OK"
    retry_after = responses["503"]["headers"]["Retry-After"]
    assert retry_after == {"$ref": "#/components/headers/Retry-After"}


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
            view_class = pattern.callback.cls  # type: ignore[attr-defined]  # as_view() sets it
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
    # GitHub's secret-scanning endpoint is for GitHub, not agents (like Stripe's webhook).
    assert "/v1/keys/leaked" not in paths
    assert not any("Github" in json.dumps(operation) for _, _, operation in operations(schema))
    authorize = paths["/v1/authorize"]["get"]["responses"]["200"]["headers"]
    assert "X-Calls-Remaining" in authorize


def test_lifecycle_endpoints_declare_their_error_codes(schema):
    paths = schema["paths"]
    cancel = paths["/v1/billing/cancel"]["post"]["responses"]
    assert set(error_schema(cancel["409"])) == {"BILLING_IN_PROGRESS", "IDEMPOTENCY_KEY_IN_USE"}
    assert error_schema(cancel["422"]) == ["IDEMPOTENCY_KEY_REUSED"]
    assert error_schema(cancel["502"]) == ["PAYMENT_PROVIDER_ERROR"]
    assert set(error_schema(cancel["503"])) == {"BILLING_UNAVAILABLE", "SERVICE_UNAVAILABLE"}
    setup = paths["/v1/billing/setup"]["post"]["responses"]
    assert set(error_schema(setup["409"])) == {"BILLING_IN_PROGRESS", "IDEMPOTENCY_KEY_IN_USE"}
    delete = paths["/v1/me"]["delete"]
    assert "content" not in delete["responses"]["204"]
    assert set(error_schema(delete["responses"]["409"])) == {
        "BILLING_IN_PROGRESS",
        "IDEMPOTENCY_KEY_IN_USE",
    }
    assert error_schema(delete["responses"]["502"]) == ["PAYMENT_PROVIDER_ERROR"]
    confirm = delete["requestBody"]["content"]["application/json"]
    assert next(iter(confirm["examples"].values()))["value"] == {"confirm": "research-agent"}
    revoke = paths["/v1/keys/revoke"]["post"]["responses"]
    assert error_schema(revoke["401"]) == ["INVALID_API_KEY"]
    assert error_schema(revoke["409"]) == ["IDEMPOTENCY_KEY_IN_USE"]
    # A malformed Idempotency-Key is a 400 naming the header, on operations without a body too.
    examples = revoke["400"]["content"]["application/json"]["examples"].values()
    assert any("Idempotency-Key" in example["value"].get("details", {}) for example in examples)
    # The actions that take no body still refuse a bad one, and say how.
    for path, method in [
        ("/v1/keys/revoke", "post"),
        ("/v1/billing/cancel", "post"),
        ("/v1/webhook", "delete"),
    ]:
        responses = paths[path][method]["responses"]
        assert error_schema(responses["413"]) == ["PAYLOAD_TOO_LARGE"], path
        assert error_schema(responses["415"]) == ["UNSUPPORTED_MEDIA_TYPE"], path
        said = [
            e["value"]["message"]
            for e in responses["400"]["content"]["application/json"]["examples"].values()
        ]
        assert "This endpoint takes no body; if one is sent, a JSON object." in said, path


def test_lifecycle_endpoints_have_tags_order_and_examples(schema):
    from keys.crypto import is_well_formed

    paths = schema["paths"]
    assert paths["/v1/me"]["delete"]["tags"] == ["Me"]
    assert list(paths["/v1/me"]) == ["get", "delete"]
    for path in ("/v1/keys/rotate", "/v1/keys", "/v1/keys/revoke"):
        assert next(iter(paths[path].values()))["tags"] == ["Keys"], path
    assert paths["/v1/billing/cancel"]["post"]["tags"] == ["Billing"]
    order = list(paths)
    assert order.index("/v1/keys/rotate") < order.index("/v1/keys") < order.index("/v1/keys/revoke")
    assert (
        order.index("/v1/billing/setup")
        < order.index("/v1/billing/cancel")
        < order.index("/v1/usage")
    )

    def example(path, method, code):
        content = paths[path][method]["responses"][code]["content"]["application/json"]
        return next(iter(content["examples"].values()))["value"]

    listed = example("/v1/keys", "get", "200")["keys"]
    assert [key["current"] for key in listed] == [True, False]
    assert all(key["prefix"].startswith("ltx_") and len(key["prefix"]) == 12 for key in listed)
    assert example("/v1/keys/revoke", "post", "200")["revoked"] == listed[1]["prefix"]
    rotated = example("/v1/keys/rotate", "post", "200")
    assert is_well_formed(rotated["api_key"]) and rotated["previous_key_expires_at"]
    rotate_body = paths["/v1/keys/rotate"]["post"]["requestBody"]["content"]["application/json"]
    overlap = next(iter(rotate_body["examples"].values()))["value"]
    assert overlap == {"previous_key_expires_in": 3600}
    assert {"pro", "free"} == {
        value["value"]["tier"]
        for value in paths["/v1/billing/cancel"]["post"]["responses"]["200"]["content"][
            "application/json"
        ]["examples"].values()
    }
