from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from billing.metering import selectors
from billing.metering.meter import meter_presented_key
from billing.metering.serializers import UsageSerializer
from keys.requests import request_agent
from lithtrix.core.exceptions import ApiError
from lithtrix.core.responses import api_error_response, json_response


class UsageViewSet(viewsets.ViewSet):
    """GET /v1/usage — lifetime, this month's and the last 7 days' metered calls."""

    @extend_schema(
        summary="Metered calls: lifetime, this month, the last 7 UTC days",
        responses={200: UsageSerializer},
        examples=[
            OpenApiExample(
                "A Free agent",
                value={
                    "calls_total": 42,
                    "calls_this_month": 30,
                    "calls_remaining": 258,
                    "daily_breakdown": [
                        {"date": "2026-11-19", "calls": 0},
                        {"date": "2026-11-20", "calls": 4},
                        {"date": "2026-11-21", "calls": 0},
                        {"date": "2026-11-22", "calls": 9},
                        {"date": "2026-11-23", "calls": 6},
                        {"date": "2026-11-24", "calls": 3},
                        {"date": "2026-11-25", "calls": 8},
                    ],
                },
                response_only=True,
            )
        ],
    )
    def retrieve(self, request: Request) -> Response:
        return Response(UsageSerializer(selectors.usage_summary(agent=request_agent(request))).data)


@csrf_exempt
def authorize(request: HttpRequest) -> HttpResponse:
    """ANY /v1/authorize — forward-auth for gateways: authenticate, rate-limit, meter.

    A plain Django view: any method, the body is never read, and no DRF machinery
    runs on the path every proxied call takes. 200 lets the call through; otherwise
    the envelope (401, 402 OVER_LIMIT, 429) for the gateway to return.
    """
    try:
        call = meter_presented_key(request, authorization=request.headers.get("Authorization", ""))
    except ApiError as error:
        return api_error_response(error, request)
    agent_id = str(call.agent_id)
    response = json_response({"agent_id": agent_id, "tier": call.tier})
    response["X-Agent-Id"] = agent_id
    response["X-Agent-Tier"] = call.tier
    return response
