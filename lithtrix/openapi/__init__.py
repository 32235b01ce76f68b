"""OpenAPI 3 (drf-spectacular): what /v1/openapi.json and /v1/docs say about the API.

Conventions for views; an endpoint added later follows them and is documented like
the rest, with nothing to repeat:

- **Success**: ``extend_schema(summary=..., request=..., responses={200: Serializer},
  examples=[...])`` with realistic ``OpenApiExample`` values for the request body and
  each success answer (``EXAMPLE_API_KEY`` is an ``ltx_`` key of the real shape,
  ``pm_card_visa`` a payment method; never "string").
- **Errors**: ``responses={..., **errors(AgentAlreadyExistsError, ...)}`` names the
  ``lithtrix.core.exceptions.ApiError`` classes only this operation raises (an instance, e.g.
  ``ValidationError(details={...})``, also gives its body as the example). The
  post-processing hook adds what every operation shares:

  - 500 INTERNAL_ERROR and 503 SERVICE_UNAVAILABLE everywhere; 400 VALIDATION_ERROR,
    413 PAYLOAD_TOO_LARGE, 415 UNSUPPORTED_MEDIA_TYPE where there is a body;
  - 401 INVALID_API_KEY and 429 RATE_LIMIT_EXCEEDED on keyed operations, 429 on
    those marked ``x-rate-limit`` (any throttle); 402 OVER_LIMIT on metered ones
    (``x-metered``: the Metered permission, /v1/authorize).

  Each error answer's schema is the ErrorEnvelope with ``error_code`` narrowed to an
  ``enum`` of that operation's codes for that status (for client generators), and
  one example envelope per code.
- **Headers**: ``X-Request-Id`` on every answer; ``RateLimit-*`` on every answer to
  a keyed operation except 401; ``Retry-After`` on 429 (and optional on 503);
  ``WWW-Authenticate`` on 401; ``X-Calls-Remaining`` on the 200 of metered ones.
- **Idempotency**: on actions marked idempotent (an ``idempotency_policy`` attribute,
  see idempotency.views; ``x-idempotent`` in the schema) the hook adds the
  ``Idempotency-Key`` parameter, ``Idempotent-Replayed`` on every answer, and 409
  IDEMPOTENCY_KEY_IN_USE / 422 IDEMPOTENCY_KEY_REUSED; the view declares nothing.
- **Constraints**: every constraint the server enforces is in the schema (lengths,
  patterns; string fields refuse NUL and whitespace-only values: see
  ``StrictCharFieldExtension``), so ``make fuzz`` can check that valid data is
  accepted and invalid data refused.
- **Grouping**: the tag comes from the path (``PATH_TAGS``), and operations are
  ordered as an agent meets them (``PATH_ORDER``): register, me, keys, billing,
  usage, metering, then the service's own endpoints. Views set no tags.
- **Not for agents**: an endpoint only a third party calls (Stripe's webhook,
  GitHub's secret-scanning reports to /v1/keys/leaked) is left out with
  ``extend_schema(exclude=True)`` (plain Django views are simply not added by
  ``add_plain_view_operations``).
"""

# declarations: what views use; paths and hooks: what the schema generator runs
# (SPECTACULAR_SETTINGS). The names below are the public surface.
from lithtrix.core.openapi import (  # noqa: F401
    EXAMPLE_API_KEY,
    EXAMPLE_PAYMENT_METHOD,
    EXAMPLE_ROTATED_KEY,
    SCHEMA_LOCK,
    ApiKeyAuthenticationScheme,
    ErrorEnvelopeSerializer,
    LithtrixAutoSchema,
    StrictCharFieldExtension,
    error_class,
    error_response,
    errors,
)
from lithtrix.openapi.hooks import (  # noqa: F401
    _is_keyed,
    document_errors_and_headers,
    link_new_keys,
)
from lithtrix.openapi.paths import (  # noqa: F401
    AUTHORIZE_OPERATION,
    add_plain_view_operations,
    group_and_order,
    tag_for,
)
