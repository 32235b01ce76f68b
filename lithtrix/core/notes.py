"""What this project notes on a request, in one typed object (RequestNotes), and
the middleware that turns the notes into headers on whatever answer follows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponse

from lithtrix.core.exceptions import RateLimitExceededError
from lithtrix.core.http import django_request

_NOTES_ATTR = "lithtrix_notes"


@dataclass(frozen=True)
class RateLimitState:
    limit: int
    remaining: int
    reset: int  # whole seconds until the window resets, >= 1
    limited: bool

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }

    def exceeded(self, message: str | None = None) -> RateLimitExceededError:
        """The 429 for this window: Retry-After and the limit that refused."""
        return RateLimitExceededError(
            message, headers={"Retry-After": str(self.reset), **self.headers()}
        )


@dataclass
class RequestNotes:
    """What this project notes on one request, in one typed object.

    ``rate_limit`` is None when no limit was decided, or when the count could not
    be made and the limit failed open; ``calls_remaining`` is a Free agent's
    lifetime calls left after its metered call (X-Calls-Remaining).
    """

    rate_limit_decided: bool = False
    rate_limit: RateLimitState | None = None
    calls_remaining: int | None = None

    @staticmethod
    def of(request: HttpRequest) -> RequestNotes:
        """The request's notes (DRF's Request or Django's), made on first use."""
        request = django_request(request)
        notes = request.__dict__.get(_NOTES_ATTR)
        if notes is None:
            notes = RequestNotes()
            setattr(request, _NOTES_ATTR, notes)
        return notes

    @staticmethod
    def peek(request: HttpRequest) -> RequestNotes | None:
        """The request's notes if anything was noted (the Django request)."""
        return request.__dict__.get(_NOTES_ATTR)


class RateLimitHeadersMiddleware:
    """Adds RateLimit-* to every answer of a request whose rate limit was decided,
    and X-Calls-Remaining to a Free agent's metered 200."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        add_rate_limit_headers(request, response)
        return response


def add_rate_limit_headers(request: HttpRequest, response: HttpResponse) -> None:
    """RateLimitHeadersMiddleware's headers, for an answer drawn before it runs
    (billing.metering.middleware's /v1/authorize)."""
    notes = RequestNotes.peek(request)
    if notes is None:
        return
    if notes.rate_limit is not None:
        for name, value in notes.rate_limit.headers().items():
            response[name] = value
    if notes.calls_remaining is not None and response.status_code == 200:
        response["X-Calls-Remaining"] = str(notes.calls_remaining)
