"""Agent webhooks (webhooks/): what URLs may receive deliveries, and when to give up."""

from lithtrix.settings.env import env_bool, env_float

# Development and tests only: http:// URLs, and URLs that resolve to loopback or
# private addresses (a receiver on this machine).
LITHTRIX_WEBHOOK_ALLOW_HTTP = env_bool("LITHTRIX_WEBHOOK_ALLOW_HTTP")
LITHTRIX_WEBHOOK_ALLOW_PRIVATE = env_bool("LITHTRIX_WEBHOOK_ALLOW_PRIVATE")
# An endpoint failing this long (every attempt since its last success) is disabled.
LITHTRIX_WEBHOOK_DISABLE_AFTER_DAYS = env_float("LITHTRIX_WEBHOOK_DISABLE_AFTER_DAYS", 3)
