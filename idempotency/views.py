"""Idempotency-Key for viewset actions: ``@idempotent`` on the action, the mixin on the class.

    class KeyViewSet(IdempotentViewSetMixin, viewsets.ViewSet):
        @idempotent(min_key_length=32)
        def rotate(self, request): ...

The key is handled around the whole DRF dispatch, before authentication: a retry
of a rotation, revocation or deletion presents a key that the first attempt
killed, and must still get that first answer back.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.template.response import SimpleTemplateResponse

from idempotency import crypto
from idempotency.services import (
    KEPT_HEADERS,
    Replay,
    StoredAnswer,
    idempotency_claim,
    idempotency_complete,
    idempotency_release,
)
from lithtrix.errors import ApiError, ValidationError, api_error_response, to_api_error

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# Printable ASCII, without leading or trailing spaces (proxies strip those).
_KEY_SHAPE = re.compile(r"^[!-~](?:[ -~]*[!-~])?\Z")
POLICY_ATTR = "idempotency_policy"

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


class IdempotentViewSetMixin(_ViewBase):
    """Runs actions marked ``@idempotent`` under their Idempotency-Key, if one is sent."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        handler = getattr(self, (request.method or "").lower(), None)
        policy = getattr(handler, POLICY_ATTR, None)
        if policy is None or f"HTTP_{HEADER.upper().replace('-', '_')}" not in request.META:
            return super().dispatch(request, *args, **kwargs)
        try:
            return self._dispatch_idempotently(request, policy, args, kwargs)
        except ApiError as error:
            return api_error_response(error, request)

    def _dispatch_idempotently(
        self, request: HttpRequest, policy: IdempotencyPolicy, args: tuple, kwargs: dict
    ) -> HttpResponseBase:
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
        claim = idempotency_claim(idempotency_key=key, fingerprint=fingerprint)
        if isinstance(claim, Replay):
            return _replayed(claim.answer)
        try:
            response = super().dispatch(request, *args, **kwargs)
            if isinstance(response, SimpleTemplateResponse):  # DRF's Response
                response.render()
        except BaseException:
            idempotency_release(record=claim.record)
            raise
        if not isinstance(response, HttpResponse):  # streamed: no content to keep
            idempotency_release(record=claim.record)
            return response
        idempotency_complete(
            record=claim.record,
            idempotency_key=key,
            answer=StoredAnswer(
                status=response.status_code,
                body=response.content,
                headers={name: response[name] for name in KEPT_HEADERS if name in response},
            ),
        )
        return response


def _replayed(answer: StoredAnswer) -> HttpResponse:
    response = HttpResponse(answer.body, status=answer.status)
    if "Content-Type" not in answer.headers:
        del response["Content-Type"]  # e.g. a 204: no body, no type
    for name, value in answer.headers.items():
        response[name] = value
    response[REPLAYED_HEADER] = "true"
    return response
