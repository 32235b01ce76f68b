"""GET /metrics (lithtrix/core/metrics.py): who may scrape it."""

import ipaddress
import os

from django.core.exceptions import ImproperlyConfigured

# prometheus_client turns multiprocess mode on when the name is merely present, and
# an empty value then writes its files into the working directory: empty is unset,
# as everywhere else here. Settings load before the app imports prometheus_client.
if "PROMETHEUS_MULTIPROC_DIR" in os.environ and not os.environ["PROMETHEUS_MULTIPROC_DIR"].strip():
    del os.environ["PROMETHEUS_MULTIPROC_DIR"]

# Clients in these networks scrape without a token (the client address as the rate
# limits see it: REMOTE_ADDR unless that peer is in LITHTRIX_TRUSTED_PROXIES).
LITHTRIX_METRICS_ALLOWED_NETWORKS = os.environ.get(
    "LITHTRIX_METRICS_ALLOWED_NETWORKS", "127.0.0.0/8,::1"
)
try:
    for _network in LITHTRIX_METRICS_ALLOWED_NETWORKS.split(","):
        if _network.strip():
            ipaddress.ip_network(_network.strip(), strict=False)
except ValueError as _bad:
    # Refused at start, not as a 500 on every scrape.
    raise ImproperlyConfigured(f"LITHTRIX_METRICS_ALLOWED_NETWORKS: {_bad}.") from _bad
# Anyone else needs `Authorization: Bearer <this>`; unset: nobody else.
LITHTRIX_METRICS_TOKEN = os.environ.get("LITHTRIX_METRICS_TOKEN", "")
