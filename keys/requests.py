"""Typed access to what ApiKeyAuthentication puts on a DRF request.

DRF types ``request.user`` as Django's user and ``request.auth`` as a token; behind
ApiKeyAuthentication they are the Agent and its ApiKey. Views read them through
these helpers instead of the untyped attributes.
"""

from __future__ import annotations

from rest_framework.request import Request

from accounts.models import Agent
from keys.models import ApiKey
from lithtrix.core.exceptions import InvalidApiKeyError


def request_agent(request: Request) -> Agent:
    """The authenticated agent; 401 INVALID_API_KEY if the request has none."""
    agent = request.user
    if not isinstance(agent, Agent):
        raise InvalidApiKeyError()
    return agent


def request_api_key(request: Request) -> ApiKey:
    """The API key the request authenticated with; 401 INVALID_API_KEY if none."""
    api_key = request.auth
    if not isinstance(api_key, ApiKey):
        raise InvalidApiKeyError()
    return api_key
