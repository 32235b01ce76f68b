"""GET /metrics (lithtrix/core/metrics.py): who may scrape it."""

import os

# Clients in these networks scrape without a token (the client address as the rate
# limits see it: REMOTE_ADDR unless that peer is in LITHTRIX_TRUSTED_PROXIES).
LITHTRIX_METRICS_ALLOWED_NETWORKS = os.environ.get(
    "LITHTRIX_METRICS_ALLOWED_NETWORKS", "127.0.0.0/8,::1"
)
# Anyone else needs `Authorization: Bearer <this>`; unset: nobody else.
LITHTRIX_METRICS_TOKEN = os.environ.get("LITHTRIX_METRICS_TOKEN", "")
