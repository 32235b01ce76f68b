"""Post-processing hooks for the paths: /v1/authorize (a plain Django view) added
once, and operations grouped and ordered as an agent meets them."""

from __future__ import annotations

import copy
from typing import Any

from django.urls import Resolver404, resolve

from lithtrix.core.openapi import EXAMPLE_AGENT_ID, SECURITY_SCHEME_NAME, _header

# --- /v1/authorize (a plain Django view) ---------------------------------------

# No DRF on the gateway's hot path, so it is described here. It accepts any method;
# OpenAPI has no "any method", so it is documented once, as GET (what nginx
# auth_request and Traefik ForwardAuth send), and `x-any-method` says the rest
# (deploy/fuzz.py reads it: other methods must answer as GET does, not 405).
AUTHORIZE_PATH = "/v1/authorize"
AUTHORIZED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "agent_id": {"type": "string", "format": "uuid"},
        "tier": {"type": "string", "enum": ["free", "pro"]},
    },
    "required": ["agent_id", "tier"],
}
AUTHORIZE_OPERATION: dict[str, Any] = {
    "operationId": "authorize",
    "summary": "Forward-auth for gateways (any method): authenticate, rate-limit, meter",
    "description": (
        "A gateway (nginx `auth_request`, Traefik `ForwardAuth`, Envoy `ext_authz`) "
        "sends each incoming request's `Authorization` header here first. 200 lets "
        "the call through: it was authenticated, rate-limited and counted; pass "
        "`X-Agent-Id` and `X-Agent-Tier` upstream. Otherwise return the envelope "
        "to the caller as it is (401, 402 OVER_LIMIT, 429).\n\n"
        "**Any HTTP method is accepted** and answered the same way (documented "
        "once, as GET: nginx and Traefik send GET; Envoy forwards the caller's "
        "method). The body is never read."
    ),
    "security": [{SECURITY_SCHEME_NAME: []}],
    "x-metered": True,
    "x-any-method": True,
    "responses": {
        "200": {
            "description": "Let the call through; pass the X-Agent-* headers upstream.",
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/Authorized"},
                    "examples": {
                        "Allowed": {
                            "summary": "A Free agent's call, counted",
                            "value": {"agent_id": EXAMPLE_AGENT_ID, "tier": "free"},
                        }
                    },
                }
            },
            "headers": {
                "X-Agent-Id": _header("The agent's id.", {"type": "string", "format": "uuid"})
                | {"required": True},
                "X-Agent-Tier": _header("free or pro.", {"type": "string", "enum": ["free", "pro"]})
                | {"required": True},
            },
        }
    },
}


def _routed(path: str, url_name: str) -> bool:
    try:
        return resolve(path).url_name == url_name
    except Resolver404:
        return False


def add_plain_view_operations(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOK: operations of the non-DRF views agents call.

    (/v1/billing/webhook, Stripe's, is deliberately not among them.)
    """
    if _routed(AUTHORIZE_PATH, "authorize"):
        result.setdefault("components", {}).setdefault("schemas", {})["Authorized"] = (
            AUTHORIZED_SCHEMA
        )
        result.setdefault("paths", {})[AUTHORIZE_PATH] = {"get": copy.deepcopy(AUTHORIZE_OPERATION)}
    return result


# --- Grouping and order -----------------------------------------------------------

# (path prefix, tag, description), in the order an agent meets them.
PATH_TAGS: list[tuple[str, str, str]] = [
    ("/v1/register", "Register", "Sign up: an agent registers itself and gets its first key."),
    ("/v1/me", "Me", "The authenticated agent's own account."),
    ("/v1/keys", "Keys", "The agent's API keys: rotate, list, revoke."),
    ("/v1/billing", "Billing", "Tier and cap; upgrade from Free to Pro with Stripe."),
    ("/v1/usage", "Usage", "Metered calls: lifetime, this month, the last days."),
    ("/v1/authorize", "Metering", "Forward-auth for gateways in front of any API."),
]
SERVICE_TAG = ("Service", "What this service offers: the discovery document.")
TAGS = [
    {"name": name, "description": description}
    for name, description in [(tag, text) for _, tag, text in PATH_TAGS] + [SERVICE_TAG]
]
# Paths in the order they are used within their tag; unlisted ones follow, sorted.
PATH_ORDER = [
    "/v1/register",
    "/v1/me",
    "/v1/keys/rotate",
    "/v1/keys",
    "/v1/keys/revoke",
    "/v1/billing",
    "/v1/billing/config",
    "/v1/billing/setup",
    "/v1/billing/cancel",
    "/v1/usage",
    "/v1/authorize",
    "/v1/capabilities",
]
METHOD_ORDER = ["get", "post", "put", "patch", "delete", "head", "options", "trace"]


def tag_for(path: str) -> str:
    for prefix, tag, _ in PATH_TAGS:
        if path == prefix or path.startswith(prefix + "/"):
            return tag
    return SERVICE_TAG[0]


def _path_key(path: str) -> tuple[int, int, str]:
    tag_names = [tag["name"] for tag in TAGS]
    rank = PATH_ORDER.index(path) if path in PATH_ORDER else len(PATH_ORDER)
    return tag_names.index(tag_for(path)), rank, path


def group_and_order(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """drf-spectacular POSTPROCESSING_HOOK: tags from the path, paths in PATH_ORDER."""
    paths = result.get("paths", {})
    for path, operations in paths.items():
        for operation in operations.values():
            operation["tags"] = [tag_for(path)]
    used = {tag_for(path) for path in paths}
    result["tags"] = [tag for tag in TAGS if tag["name"] in used]
    result["paths"] = {
        path: dict(sorted(paths[path].items(), key=lambda item: METHOD_ORDER.index(item[0])))
        for path in sorted(paths, key=_path_key)
    }
    return result
