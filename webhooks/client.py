"""One HTTP POST of a signed delivery to an agent's URL, through the SSRF guard.

urllib3 connects to the checked address while TLS verifies the URL's host name
(server_hostname / assert_hostname) and the Host header names it too. No redirects,
no retries here (the job system retries), at most MAX_ANSWER_BYTES of the answer read.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import certifi
import urllib3
from django.conf import settings

from webhooks.addresses import AddressRefused, resolve

TIMEOUT_SECONDS = 5.0
MAX_ANSWER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Outcome:
    succeeded: bool
    status_code: int | None
    error: str


def post(url: str, *, body: bytes, headers: dict[str, str]) -> Outcome:
    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    try:
        destination = resolve(host, port, allow_private=settings.LITHTRIX_WEBHOOK_ALLOW_PRIVATE)
    except AddressRefused as error:
        return Outcome(succeeded=False, status_code=None, error=str(error))
    timeout = urllib3.Timeout(total=TIMEOUT_SECONDS)
    pool: urllib3.HTTPConnectionPool
    if https:
        pool = urllib3.HTTPSConnectionPool(
            destination.address,
            port,
            timeout=timeout,
            retries=False,
            maxsize=1,
            server_hostname=host,
            assert_hostname=host,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
        )
    else:
        pool = urllib3.HTTPConnectionPool(
            destination.address, port, timeout=timeout, retries=False, maxsize=1
        )
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rsplit("@", 1)[-1]
    try:
        with pool:
            response = pool.urlopen(
                "POST",
                target,
                body=body,
                headers={**headers, "Host": host_header},
                redirect=False,
                retries=False,
                preload_content=False,
                assert_same_host=False,
            )
            try:
                response.read(MAX_ANSWER_BYTES, decode_content=False)
            finally:
                response.release_conn()
    except urllib3.exceptions.HTTPError as error:
        return Outcome(succeeded=False, status_code=None, error=type(error).__name__)
    status = response.status
    return Outcome(
        succeeded=200 <= status < 300,
        status_code=status,
        error="" if 200 <= status < 300 else f"HTTP {status}",
    )
