"""/v1/unsubscribe: RFC 8058 one-click unsubscribe from owner e-mail."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt

from lithtrix.core.exceptions import ApiError, MethodNotAllowedError
from lithtrix.core.responses import api_error_response
from mail.services import email_unsubscribe, unsubscribe_token_address


@csrf_exempt
def unsubscribe(request: HttpRequest) -> HttpResponse:
    """POST /v1/unsubscribe?token=... stops owner e-mail to the token's address (but
    key.leaked); GET shows a page with the button that POSTs it.

    A plain Django view: mail providers POST ``List-Unsubscribe=One-Click`` form-encoded,
    without credentials or a CSRF token; the signed token is the authority. No rate
    limit: a valid token can only repeat an idempotent insert.
    """
    if request.method not in ("GET", "POST"):
        return api_error_response(MethodNotAllowedError(headers={"Allow": "GET, POST"}), request)
    try:
        address = unsubscribe_token_address(request.GET.get("token", ""))
    except ApiError as error:
        return api_error_response(error, request)
    if request.method == "GET":
        # A link checker or a preview must not unsubscribe anyone (RFC 8058, section 3.2).
        return render(request, "mail/unsubscribe.html", {"address": address, "done": False})
    email_unsubscribe(address=address)
    if "text/html" in request.headers.get("Accept", ""):
        return render(request, "mail/unsubscribe.html", {"address": address, "done": True})
    return JsonResponse({"unsubscribed": True})
