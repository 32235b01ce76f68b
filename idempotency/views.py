"""Idempotency-Key for viewset actions: ``@idempotent`` on the action, the mixin on the class.

    class KeyViewSet(IdempotentViewSetMixin, viewsets.ViewSet):
        @idempotent(min_key_length=32)
        def rotate(self, request): ...

The key is claimed after DRF's authentication, permissions and rate limit, in the
caller's namespace (its agent; for register, which has none, its client address):
a request that fails authentication stores nothing and binds no key. A retry of a
rotation, revocation or deletion presents a key that the first attempt killed: it
gets that first answer back (the very same request only), nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.template.response import SimpleTemplateResponse
from django.utils.module_loading import import_string
from rest_framework import exceptions as drf_exceptions
from rest_framework.request import Request

from idempotency import crypto
from idempotency.models import IdempotencyRecord
from idempotency.services import (
    KEPT_HEADERS,
    Replay,
    StoredAnswer,
    address_namespace,
    agent_namespace,
    idempotency_claim,
    idempotency_complete,
    idempotency_release,
    idempotency_replay,
)
from lithtrix.core.exceptions import (
    ApiError,
    InvalidApiKeyError,
    RateLimitExceededError,
    ValidationError,
)
from lithtrix.core.http import client_ip
from lithtrix.core.ratelimit import forget_decision
from lithtrix.core.responses import api_error_response, to_api_error

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# Printable ASCII, without leading or trailing spaces (proxies strip those).
_KEY_SHAPE = re.compile(r"^[!-~](?:[ -~]*[!-~])?\Z")
POLICY_ATTR = "idempotency_policy"
_AUTHENTICATION_FAILED = (
    InvalidApiKeyError,
    drf_exceptions.NotAuthenticated,
    drf_exceptions.AuthenticationFailed,
)

if TYPE_CHECKING:
    from rest_framework.views import APIView as _ViewBase
else:
    _ViewBase = object


@dataclass(frozen=True)
class IdempotencyPolicy:
    # Answers that carry an API key need keys nobody can guess (a UUID4 is 36).
    min_key_length: int = 1


def idempotent(*, min_key_length: int = 1) -> Callable:
    """Marks a viewset action as honouring Idempotency-Key (see IdempotentViewSetMixin)."""

    def mark(action: Callable) -> Callable:
        setattr(action, POLICY_ATTR, IdempotencyPolicy(min_key_length=min_key_length))
        return action

    return mark


def validate_key(value: str, policy: IdempotencyPolicy) -> None:
    if len(value) > MAX_KEY_LENGTH or not _KEY_SHAPE.match(value):
        raise ValidationError(
            details={HEADER: [f"Use 1-{MAX_KEY_LENGTH} printable ASCII characters."]}
        )
    if len(value) < policy.min_key_length:
        raise ValidationError(
            details={
                HEADER: [
                    f"Use at least {policy.min_key_length} characters here "
                    "(the answer carries an API key); a UUID4 is fine."
                ]
            }
        )


@dataclass
class _KeyedRequest:
    """This request's Idempotency-Key, its fingerprint and, once claimed, its record."""

    key: str
    fingerprint: str
    record: IdempotencyRecord | None = None


class _Replayed(Exception):
    """Ends DRF's dispatch with a kept answer (see handle_exception)."""

    def __init__(self, answer: StoredAnswer) -> None:
        self.answer = answer


class IdempotentViewSetMixin(_ViewBase):
    """Runs actions marked ``@idempotent`` under their Idempotency-Key, if one is sent."""

    _keyed: _KeyedRequest | None = None

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        handler = getattr(self, (request.method or "").lower(), None)
        policy = getattr(handler, POLICY_ATTR, None)
        if policy is None or f"HTTP_{HEADER.upper().replace('-', '_')}" not in request.META:
            return super().dispatch(request, *args, **kwargs)
        try:
            self._keyed = self._keyed_request(request, policy)
        except ApiError as error:
            return api_error_response(error, request)
        try:
            response = super().dispatch(request, *args, **kwargs)
            if isinstance(response, SimpleTemplateResponse):  # DRF's Response
                response.render()
        except BaseException:
            if self._keyed.record is not None:
                idempotency_release(record=self._keyed.record)
            raise
        record = self._keyed.record
        if record is None:  # not claimed: refused before, or replayed
            return response
        if not isinstance(response, HttpResponse):  # streamed: no content to keep
            idempotency_release(record=record)
            return response
        idempotency_complete(
            record=record,
            idempotency_key=self._keyed.key,
            answer=StoredAnswer(
                status=response.status_code,
                body=response.content,
                headers={name: response[name] for name in KEPT_HEADERS if name in response},
                retry_later="Retry-After" in response,
            ),
        )
        return response

    def _keyed_request(self, request: HttpRequest, policy: IdempotencyPolicy) -> _KeyedRequest:
        key = request.headers[HEADER]
        validate_key(key, policy)
        try:
            body = request.body
        except Exception as exc:  # RequestDataTooBig and the like
            raise to_api_error(exc) from None
        # The credential as sent; none for endpoints without authentication (register).
        credential = (
            request.META.get("HTTP_AUTHORIZATION", "").strip()
            if self.authentication_classes
            else ""
        )
        fingerprint = crypto.fingerprint(
            (request.method or "").encode(), request.path.encode(), credential.encode(), body
        )
        return _KeyedRequest(key=key, fingerprint=fingerprint)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """DRF's checks (authentication, permissions, rate limit), then the claim."""
        keyed = self._keyed
        if keyed is None:
            return super().initial(request, *args, **kwargs)
        try:
            super().initial(request, *args, **kwargs)
        except _AUTHENTICATION_FAILED:
            answer = self._answer_for_spent_key(request, keyed)
            if answer is None:
                raise
            raise _Replayed(answer) from None
        if self.authentication_classes:
            agent = request.user
            if agent is None or not getattr(agent, "is_authenticated", False):
                return  # nobody to hold the key for: it runs as if sent without one
            namespace = agent_namespace(agent.pk)
        else:
            namespace = address_namespace(client_ip(request._request))
        try:
            claim = idempotency_claim(
                namespace=namespace, idempotency_key=keyed.key, fingerprint=keyed.fingerprint
            )
        except RateLimitExceededError:
            forget_decision(request)  # the 429 carries its own limit's RateLimit-* headers
            raise
        if isinstance(claim, Replay):
            raise _Replayed(claim.answer)
        keyed.record = claim.record

    def _answer_for_spent_key(self, request: Request, keyed: _KeyedRequest) -> StoredAnswer | None:
        """The kept answer of this very request when its credential is one of an
        agent's keys that no longer works (the first attempt killed it)."""
        if not self.authentication_classes:
            return None
        # Which agent a credential that no longer works was issued to: the project
        # names the function (LITHTRIX_IDEMPOTENCY_CREDENTIAL_OWNER), so this app
        # imports none of the apps that own credentials.
        owner = import_string(settings.LITHTRIX_IDEMPOTENCY_CREDENTIAL_OWNER)
        agent_id = owner(request.META.get("HTTP_AUTHORIZATION", ""))
        if agent_id is None:
            return None
        return idempotency_replay(
            namespace=agent_namespace(agent_id),
            idempotency_key=keyed.key,
            fingerprint=keyed.fingerprint,
        )

    # DRF's finalize_response takes any HttpResponseBase, not only its Response.
    def handle_exception(self, exc: Exception) -> HttpResponseBase:  # type: ignore[override]
        if isinstance(exc, _Replayed):
            return _replayed(exc.answer)
        return super().handle_exception(exc)


def _replayed(answer: StoredAnswer) -> HttpResponse:
    response = HttpResponse(answer.body, status=answer.status)
    if "Content-Type" not in answer.headers:
        del response["Content-Type"]  # e.g. a 204: no body, no type
    for name, value in answer.headers.items():
        response[name] = value
    response[REPLAYED_HEADER] = "true"
    return response
