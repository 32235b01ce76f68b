"""Bearer authentication with ltx_ API keys."""

from __future__ import annotations

from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request

from accounts.models import Agent
from keys import selectors
from keys.crypto import hash_key, is_well_formed
from keys.models import ApiKey
from lithtrix.errors import InvalidApiKeyError


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def presented_key_hash(header: str) -> str:
    """The hash of the well-formed ltx_ key in an Authorization header value, else
    InvalidApiKeyError (without any database query)."""
    token = bearer_token(header)
    if token is None or not is_well_formed(token):
        raise InvalidApiKeyError()
    return hash_key(token)


def authenticate_key_hash(hashed_key: str) -> tuple[Agent, ApiKey]:
    """Agent and key for a presented key's hash (one indexed query), or InvalidApiKeyError."""
    api_key = selectors.active_api_key_with_agent_by_hash(hashed_key=hashed_key)
    if api_key is None:
        raise InvalidApiKeyError()
    return api_key.agent, api_key


def authenticate_key(header: str) -> tuple[Agent, ApiKey]:
    """Agent and key for an Authorization header value, or InvalidApiKeyError.

    Missing, malformed, unknown, rotated and revoked keys are indistinguishable to
    the caller. A key without the ltx_ shape costs no database query; any other
    costs one indexed query.
    """
    return authenticate_key_hash(presented_key_hash(header))


class ApiKeyAuthentication(BaseAuthentication):
    """The default for every /v1 endpoint; public endpoints set authentication_classes = []."""

    def authenticate(self, request: Request) -> tuple[Agent, ApiKey]:
        return authenticate_key(request.META.get("HTTP_AUTHORIZATION", ""))

    def authenticate_header(self, request: Request) -> str:
        return "Bearer"
