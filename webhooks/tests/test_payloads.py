import json

import jsonschema
import pytest

from events.models import Event
from webhooks import services
from webhooks.payloads import EVENT_DATA, component_name
from webhooks.tests.test_deliveries import EVENT_DATA as RECORDED
from webhooks.tests.test_deliveries import record


@pytest.fixture(scope="module")
def served_schema(django_db_blocker):
    from rest_framework.test import APIClient

    with django_db_blocker.unblock():
        return APIClient().get("/v1/openapi.json").json()


def test_every_event_type_has_a_documented_payload():
    assert set(EVENT_DATA) == {choice.value for choice in Event.Type}
    assert set(RECORDED) == set(EVENT_DATA)


@pytest.mark.django_db
@pytest.mark.parametrize("event_type", [t.value for t in Event.Type])
def test_a_delivered_body_matches_its_documented_schema(registered, served_schema, event_type):
    body = json.loads(services.delivery_body(record(registered.agent, event_type)))
    root = {"components": served_schema["components"]}
    own = jsonschema.Draft202012Validator(
        {**root, "$ref": f"#/components/schemas/{component_name(event_type)}"}
    )
    own.validate(body)
    jsonschema.Draft202012Validator({**root, "$ref": "#/components/schemas/WebhookEvent"}).validate(
        body
    )
    other = next(t for t in EVENT_DATA if t != event_type)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(
            {**root, "$ref": f"#/components/schemas/{component_name(other)}"}
        ).validate(body)


def test_put_webhook_documents_the_callback(served_schema):
    callback = served_schema["paths"]["/v1/webhook"]["put"]["callbacks"]["event"]
    post = callback["{$request.body#/url}"]["post"]
    schema = post["requestBody"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/WebhookEvent"}
