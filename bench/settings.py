"""Benchmark-only settings: production settings plus the comparison views' needs.

Never used by the product: `bench/run.py` points DJANGO_SETTINGS_MODULE here so
bench/urls.py can mount the throwaway views next to the real ones.
"""

from lithtrix.settings import *  # noqa: F403

INSTALLED_APPS += ["rest_framework.authtoken"]  # noqa: F405 - for the TokenAuthentication view
ROOT_URLCONF = "bench.urls"
# What "a Django user would write": DRF's UserRateThrottle on the shared cache. The
# rate is never reached in a 10 s run; the cost measured is the bookkeeping.
REST_FRAMEWORK = {
    **REST_FRAMEWORK,  # noqa: F405
    "DEFAULT_THROTTLE_RATES": {**THROTTLE_RATES, "user": "1000000/min"},  # noqa: F405
}
