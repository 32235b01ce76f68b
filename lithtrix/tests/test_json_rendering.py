"""Every answer's JSON is drawn one way: DRF's JSONRenderer (compact, UTF-8)."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from rest_framework.renderers import JSONRenderer


def drf_rendering(body: bytes) -> bytes:
    return JSONRenderer().render(json.loads(body))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path", "keyed", "status"),
    [
        ("post", "/v1/register", False, 201),  # a viewset
        ("get", "/v1/me", True, 200),  # lithtrix.plain
        ("get", "/v1/authorize", True, 200),  # a plain Django view
        ("post", "/v1/authorize", True, 200),
        ("get", "/v1/billing", True, 200),
        ("get", "/v1/authorize", False, 401),  # the envelope from a plain view
        ("get", "/v1/me", False, 401),
        ("get", "/v1/no-such-path", False, 404),  # Django's 404 handler
        ("get", "/v1/capabilities", False, 200),
        ("get", "/healthz", False, 200),
    ],
    ids=lambda value: str(value),
)
def test_every_answer_is_rendered_as_drfs_json_renderer_does(
    registered, method, path, keyed, status
):
    client = Client()
    headers = registered.auth if keyed else {}
    body = {"agent_name": "render-agent", "owner_identifier": "o@example.com"}
    response = getattr(client, method)(path, body, content_type="application/json", **headers)

    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.content == drf_rendering(response.content)
